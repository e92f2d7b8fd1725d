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
//! `numbers.csv`, the domain rules spread over every domain format the compiler reads
//! (`domains.domains`, `domains.hosts`, `domains.adblock`, `domains.rpz`: [`Placement`]),
//! `urls.urls`, `keywords.keywords`, a `rules.toml` manifest and `truth.json`: samples of inputs
//! that must match ([`Positives`]) and inputs that must not ([`Negatives`]), checked against the
//! generated sets with each format's reach (a hosts line is one name, `*.x` only below x). Sizes from 10^3 to 10^7 entries per list;
//! 10^7 numbers take seconds in a release build.
//!
//! **Traffic with ground truth** (`dragnet sim run`): a [`Scenario`] (TOML: seed, duration,
//! rates per plane, scam share, number plans, look-alikes, protected numbers, trunks, the
//! expected wire answers, targets) becomes a [`Workload`] — every request with its scheduled
//! send time and its expected outcome, drawn from the same generator as `gen-rules`
//! ([`workload`]). The open-loop [`driver`] sends it with the simulator's own encoders
//! ([`sip`], [`dns`], hyper for HTTP and the check API) at the scheduled times, whatever the
//! target does, and reads each answer off the wire; the [`report`] judges it against the truth
//! (confusion matrix, false positives and negatives with their facts), with HDR latency
//! percentiles measured from the scheduled time, and writes `report.json` and a
//! self-contained `report.html` ([`html`]). [`stub`] holds the built-in peers (a UAS, a DNS
//! upstream, an HTTP origin) a gateway under test forwards to.
//!
//! **What it never does:** use the engine's or the gateway's parsers or encoders. Every file
//! format and, later, every packet is written here by hand, so a bug shared by both sides cannot
//! hide. It has no clock and no global state: the same spec gives the same bytes on every
//! platform, forever (own xoshiro256** PRNG; golden tests pin the output). The generators have
//! no clock; only the driver reads one, to keep its schedule.
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

pub mod dns;
pub mod driver;
pub mod html;
mod prng;
pub mod report;
pub mod rulegen;
pub mod scenario;
pub mod sip;
pub mod stub;
mod truth;
mod vocab;
pub mod workload;

pub use driver::{run, run_workload};
pub use report::{Observed, Report};
pub use scenario::Scenario;
pub use workload::{Expected, Plane, Workload};

use std::fmt;

/// What can stop a simulator command.
#[derive(Debug)]
#[non_exhaustive]
pub enum SimError {
    /// A scenario file that cannot be used: the file (or the stage) and the reason.
    Scenario { path: String, reason: String },
    /// A file or socket operation failed: what was being done, and the system's reason.
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl SimError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SimError {
        SimError::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Scenario { path, reason } => write!(f, "scenario {path}: {reason}"),
            SimError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SimError::Io { source, .. } => Some(source),
            SimError::Scenario { .. } => None,
        }
    }
}

pub use rulegen::{
    generate, manifest, write_dir, DomainFormat, DomainReach, GenSpec, Placement, Reach, RuleSet,
    Summary, WrittenFile, ADBLOCK_FILE, CATEGORIES_12381, DOMAINS_FILE, HOSTS_FILE, KEYWORDS_FILE,
    MANIFEST_FILE, NUMBERS_CSV_HEADER, NUMBERS_FILE, RPZ_FILE, TRUTH_FILE, URLS_FILE,
};
pub use truth::{
    negative_domains, negative_messages, negative_numbers, negative_urls, truth, Negatives,
    Positives, Truth, TRUTH_SAMPLE,
};
