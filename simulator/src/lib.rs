//! # dragnet-simulator
//!
//! Deterministic synthetic inputs for Dragnet's tests and benches.
//!
//! **What it does now: rule generation** ([`rulegen`]). From a [`GenSpec`] (counts and a seed)
//! it produces a realistic block list: E.164 numbers (mostly Chinese mobiles, some landlines and
//! 400 numbers, about a tenth foreign), number prefixes of virtual operators and high-risk
//! ranges, phishing domains (registrable names, brand look-alikes, deep names, random-looking
//! names), Safe Browsing URL expressions (prefixes and exact URLs, on dedicated and shared
//! hosting), and Chinese and English fraud keywords. [`write_dir`] streams them as
//! `numbers.csv`, `domains.domains`, `urls.urls`, `keywords.keywords`, a `rules.toml` manifest
//! and `truth.json`: samples of inputs that must match ([`Positives`]) and inputs that must not
//! ([`Negatives`]), checked against the generated sets. Sizes from 10^3 to 10^7 entries per list;
//! 10^7 numbers take seconds in a release build.
//!
//! **What it will do (later issues):** SIP, DNS, TLS/QUIC and HTTP traffic built with its own
//! encoders, drivers that replay it against a running gateway, and reports of verdicts, rates
//! and latencies against the truth.
//!
//! **What it never does:** use the engine's or the gateway's parsers or encoders. Every file
//! format and, later, every packet is written here by hand, so a bug shared by both sides cannot
//! hide. It has no clock and no global state: the same spec gives the same bytes on every
//! platform, forever (own xoshiro256** PRNG; golden tests pin the output).
//!
//! **Cost model:** one pass per list; memory is one 64-bit key per entry of the list being
//! generated (the dedup set), plus the domain and URL sets while the truth is built. Files are
//! written through a `BufWriter`, never held whole. [`generate`] holds everything in memory and
//! is meant for small sets.
//!
//! ```
//! let spec = dragnet_simulator::GenSpec { numbers: 10, seed: 7, ..Default::default() };
//! let rules = dragnet_simulator::generate(&spec);
//! assert_eq!(rules.numbers.len(), 10);
//! assert!(rules.numbers.iter().all(|n| n.starts_with('+')));
//! ```

#![forbid(unsafe_code)]

mod prng;
pub mod rulegen;
mod truth;
mod vocab;

pub use rulegen::{
    generate, manifest, write_dir, GenSpec, RuleSet, Summary, WrittenFile, CATEGORIES_12381,
    DOMAINS_FILE, KEYWORDS_FILE, MANIFEST_FILE, NUMBERS_CSV_HEADER, NUMBERS_FILE, TRUTH_FILE,
    URLS_FILE,
};
pub use truth::{
    negative_domains, negative_messages, negative_numbers, negative_urls, truth, Negatives,
    Positives, Truth, TRUTH_SAMPLE,
};
