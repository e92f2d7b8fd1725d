//! The crate's errors. Every variant names the input that failed and why.

use crate::formats::LineError;
use std::fmt;

/// A problem with one rule, found by the compiler (normalisation, lint, safety).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `file:line`, or a description of where when there is no line.
    pub at: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// Why a snapshot was refused. Loading never panics: every corruption becomes one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("not a Dragnet snapshot (bad magic bytes)")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("truncated: the {what} needs {expected} bytes but only {found} remain")]
    Truncated {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("checksum mismatch: the body's SHA-256 differs from the header's (corrupt or tampered file)")]
    ChecksumMismatch,
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error("read error: {0}")]
    Io(String),
}

/// The crate's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule source has a bad line.
    #[error("{0}")]
    InvalidRule(LineError),
    /// The compiler refused the rule set: every problem found is listed.
    #[error("rule set refused ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Refused(Vec<Problem>),
    /// A manifest or compiler configuration is wrong.
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    /// A snapshot could not be loaded.
    #[error("snapshot {path}: {source}")]
    Snapshot {
        path: String,
        #[source]
        source: SnapshotError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl std::error::Error for LineError {}

fn list(p: &[Problem]) -> String {
    let mut s = String::new();
    for (i, x) in p.iter().enumerate() {
        if i == 50 {
            s.push_str(&format!("  … and {} more\n", p.len() - 50));
            break;
        }
        s.push_str(&format!("  {x}\n"));
    }
    s.trim_end().to_string()
}

impl From<LineError> for Error {
    fn from(e: LineError) -> Self {
        Error::InvalidRule(e)
    }
}
