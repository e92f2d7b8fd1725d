//! The rule model shared by the source formats, the compiler and the engine.
//!
//! A [`RuleSpec`] is one rule as read from a source file, before normalisation: its pattern is the
//! text of the file, its [`Origin`] names the file and line so that every later error can point at
//! it. The compiler normalises specs into the snapshot; the engine answers with [`Action`]s.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// What a rule asks the gateway to do. Ordered by precedence of *matching rules*:
/// an explicit `Allow` (allowlist) beats `Block`, which beats `Warn`, which beats `Tag`.
/// (When no rule matches at all, the verdict is `Allow` with no rule.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Action {
    Allow = 0,
    Tag = 1,
    Warn = 2,
    Block = 3,
}

impl Action {
    /// Precedence among matching rules: higher wins. Allowlist > block > warn > tag.
    #[inline]
    pub const fn precedence(self) -> u8 {
        match self {
            Action::Allow => 4,
            Action::Block => 3,
            Action::Warn => 2,
            Action::Tag => 1,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Tag => "tag",
            Action::Warn => "warn",
            Action::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" | "pass" | "passthru" => Some(Action::Allow),
            "tag" => Some(Action::Tag),
            "warn" => Some(Action::Warn),
            "block" | "deny" | "reject" => Some(Action::Block),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of a call a number rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Direction {
    Caller = 1,
    Callee = 2,
    #[default]
    Both = 3,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim().to_ascii_lowercase().as_str() {
            "caller" | "from" | "calling" | "orig" => Some(Direction::Caller),
            "callee" | "to" | "called" | "term" => Some(Direction::Callee),
            "both" | "any" | "" => Some(Direction::Both),
            _ => None,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Caller => "caller",
            Direction::Callee => "callee",
            Direction::Both => "both",
        }
    }
    #[inline]
    pub const fn covers_caller(self) -> bool {
        (self as u8) & 1 != 0
    }
    #[inline]
    pub const fn covers_callee(self) -> bool {
        (self as u8) & 2 != 0
    }
}

/// What a rule's pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum Kind {
    /// One phone number (E.164 or a national short code), exact.
    Number = 0,
    /// Every number that starts with these digits (E.164 digits, country code first).
    NumberPrefix = 1,
    /// Exactly this host name.
    DomainExact = 2,
    /// This host name and every name below it (`evil.com`, `a.evil.com`), on label boundaries.
    DomainSuffix = 3,
    /// Only names strictly below this one (RPZ `*.evil.com`): `a.evil.com` but not `evil.com`.
    DomainSubdomains = 4,
    /// A Safe Browsing URL expression: `host/path` (a path ending in `/` is a prefix).
    Url = 5,
    /// A keyword looked for in message text and URLs (case-insensitive for ASCII).
    Keyword = 6,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::NumberPrefix => "number-prefix",
            Kind::DomainExact => "domain-exact",
            Kind::DomainSuffix => "domain-suffix",
            Kind::DomainSubdomains => "domain-subdomains",
            Kind::Url => "url",
            Kind::Keyword => "keyword",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "number" | "exact" | "" => Some(Kind::Number),
            "prefix" | "number-prefix" => Some(Kind::NumberPrefix),
            "domain" | "domain-suffix" | "suffix" => Some(Kind::DomainSuffix),
            "domain-exact" | "host" => Some(Kind::DomainExact),
            "domain-subdomains" | "subdomains" | "wildcard" => Some(Kind::DomainSubdomains),
            "url" => Some(Kind::Url),
            "keyword" => Some(Kind::Keyword),
            _ => None,
        }
    }
    pub const fn is_number(self) -> bool {
        matches!(self, Kind::Number | Kind::NumberPrefix)
    }
    pub const fn is_domain(self) -> bool {
        matches!(
            self,
            Kind::DomainExact | Kind::DomainSuffix | Kind::DomainSubdomains
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the DNS plane answers a matching query (RPZ actions, draft-vixie-dnsop-dns-rpz §3).
/// `None` on a rule means "the plane's configured default for the rule's action".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "data")]
pub enum DnsAction {
    /// `CNAME .`: answer NXDOMAIN.
    NxDomain,
    /// `CNAME *.`: answer NOERROR with no records.
    NoData,
    /// `CNAME rpz-drop.`: send no answer.
    Drop,
    /// `CNAME rpz-tcp-only.`: answer truncated over UDP, forward over TCP.
    TcpOnly,
    /// `CNAME walled.garden.example.`: answer with a CNAME to this name (local data).
    Redirect(String),
    /// `A`/`AAAA` local data: answer with these addresses (a sinkhole / warning page).
    Local(Vec<IpAddr>),
}

/// Where a rule came from: file and 1-based line. Cheap to clone (the file name is shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One rule as read from a source, before normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// The rule's own id if the source gives one (CSV `id` column); else the compiler names it
    /// `<source>:<line>`.
    pub id: Option<String>,
    pub kind: Kind,
    /// The pattern as written in the source (trimmed); the compiler normalises it.
    pub pattern: String,
    pub action: Action,
    pub category: String,
    /// The list this rule belongs to (e.g. `cn-national-fraud`), for verdicts and appeals.
    pub source: String,
    /// For number rules: which side of the call. Ignored for other kinds.
    pub direction: Direction,
    /// Only on calls arriving on this ingress: a trunk name, or `international`.
    pub ingress: Option<String>,
    /// Unix seconds after which the rule no longer applies (numbers are recycled).
    pub expires: Option<u64>,
    pub dns: Option<DnsAction>,
    pub origin: Origin,
}
