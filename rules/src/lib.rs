//! # dragnet-rules — the one engine every Dragnet plane asks
//!
//! Planes (SIP, DNS, web, message check) reduce traffic to *facts* — numbers, host names, URLs,
//! message text — and ask an [`Engine`] for a [`Verdict`]: allow, tag, warn or block, with the
//! rule and category that decided.
//!
//! What this crate does:
//! - normalises facts: phone numbers to E.164 as `u64` ([`number`]), host names to lower-case
//!   ASCII ([`domain`]), URLs by the Safe Browsing canonicalisation rules ([`url`]);
//! - reads rule sources in common formats ([`formats`]) and compiles them, with safety lints, into
//!   one immutable, checksummed snapshot file ([`compile`], [`snapshot`]);
//! - answers lookups from a loaded snapshot ([`engine`]).
//!
//! What it never does: sockets, async, threads, clocks (`now` is always handed in), global state,
//! logging. The lookup functions neither allocate nor lock (a counting-allocator test proves it).
//!
//! Safety rules no rule set can remove: protected (emergency) numbers are never blocked; a
//! Bloom-family filter hit is always confirmed against an exact table before it counts; a snapshot
//! that fails any check is refused whole.

#![forbid(unsafe_code)]

pub mod compile;
pub mod domain;
pub mod engine;
pub mod error;
pub mod excerpt;
pub mod filter;
pub mod formats;
pub mod fuzzing;
pub mod hash;
pub mod number;
pub mod rule;
pub mod snapshot;
pub mod url;

pub use compile::{CompileConfig, Compiler, Manifest, Report, SourceArg};
pub use engine::{Call, Engine, Fact, Match, RuleInfo, RuleRef, Scratch, Verdict};
pub use error::{Error, Problem, SnapshotError};
pub use number::{Number, NumberPlan, Prefix};
pub use rule::{Action, Direction, DnsAction, Kind, Origin, RuleSpec};
