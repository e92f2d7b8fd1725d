//! Rule source formats. Every parser is line-oriented, names the file and line of every problem,
//! and is strict by default (first bad line is an error) or lenient (bad lines are skipped and
//! every one is reported).
//!
//! CONTRACT:
//! - `parse_source(text, file, opts)` dispatches on `opts.format`.
//! - A file may declare its own defaults in a comment line before its first rule:
//!   `# dragnet: action=allow category=bank source=cbrc direction=caller ingress=international expires=2027-01-01`
//!   (`!` instead of `#` in Adblock files, `;` in RPZ zone files). Options given by the caller
//!   (manifest / CLI) are the base; the file's directive overrides them.
//!
//! What the parsers do and do not do:
//! - SYNTAX only. A [`RuleSpec`]'s `pattern` is the trimmed text of the source; the compiler
//!   normalises numbers, names and URLs and reports semantic errors with the same [`Origin`].
//! - Every spec carries `Origin { file, line }` (1-based; a multi-line RPZ record carries its
//!   first line). The file name is one shared `Arc<str>`.
//! - A UTF-8 byte order mark is dropped and CRLF line endings are accepted everywhere.
//! - Legitimate content that Dragnet does not use (Adblock element hiding, RPZ `rpz-ip`
//!   triggers, hosts-file `localhost` lines) is not an error: each such line gets one entry in
//!   [`Parsed::notes`], capped at [`MAX_NOTES`] plus one summary note.
//! - Strict mode returns the first bad line as `Err`. Lenient mode skips bad lines and lists every
//!   one in [`Parsed::skipped`]. Two kinds of problem stop the file even in lenient mode, because
//!   they change the meaning of every rule after them and skipping them would silently turn, say,
//!   an allowlist into a blocklist: a bad `dragnet:` directive (unknown key, bad value, or a
//!   directive after the first rule) and a bad numbers-CSV header.
//!
//! Directive keys: `action`, `category`, `source`, `direction`, `ingress` (empty = none),
//! `expires` (see [`parse_expiry`]; `never` or empty = none), and `kind` in domains lists only
//! (`suffix`, `exact`, `subdomains`: the kind of a bare name). A value with spaces is written in
//! double quotes: `category="fake customer service"`. In RPZ zones each record's data gives its
//! action, so `action=` is refused there.
//!
//! Cost model: one pass over the text, no per-line allocation other than the [`RuleSpec`] itself
//! (its `pattern`, `category` and `source` strings); a numbers CSV of 10^7 rows parses in a few
//! seconds.

pub mod adblock;
pub mod domains;
pub mod hosts;
pub mod keywords;
pub mod numbers_csv;
pub mod rpz;
pub mod urls;

use crate::rule::{Action, Direction, DnsAction, Kind, Origin, RuleSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The formats Dragnet reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Numbers CSV with a header row (see `numbers_csv` for the columns).
    NumbersCsv,
    /// One domain per line; blocks the domain and its subdomains (`*.x` = subdomains only,
    /// `=x` = exactly x).
    Domains,
    /// A hosts file (`0.0.0.0 evil.com other.com`): exact names.
    Hosts,
    /// Adblock-style `||domain^` (suffix) and `@@||domain^` (allow); other filter syntax is
    /// reported as unsupported.
    Adblock,
    /// An RPZ zone file: QNAME triggers with NXDOMAIN/NODATA/PASSTHRU/DROP/TCP-only/CNAME/A.
    Rpz,
    /// One URL (or Safe Browsing expression) per line.
    Urls,
    /// One keyword per line (UTF-8).
    Keywords,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::NumbersCsv,
        Format::Domains,
        Format::Hosts,
        Format::Adblock,
        Format::Rpz,
        Format::Urls,
        Format::Keywords,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::NumbersCsv => "numbers-csv",
            Format::Domains => "domains",
            Format::Hosts => "hosts",
            Format::Adblock => "adblock",
            Format::Rpz => "rpz",
            Format::Urls => "urls",
            Format::Keywords => "keywords",
        }
    }
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .or(match s {
                "numbers" | "csv" => Some(Format::NumbersCsv),
                "abp" => Some(Format::Adblock),
                "zone" => Some(Format::Rpz),
                "url" => Some(Format::Urls),
                "keyword" => Some(Format::Keywords),
                "domain" => Some(Format::Domains),
                _ => None,
            })
    }
    /// Guess from a file name: `*.csv` numbers, `*.hosts`/`hosts`, `*.rpz`/`*.zone`,
    /// `*.adblock`/`*.abp`, `*.urls`, `*.keywords`, `*.domains`.
    pub fn from_path(path: &str) -> Option<Format> {
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if name == "hosts" {
            return Some(Format::Hosts);
        }
        let ext = name.rsplit('.').next()?;
        match ext {
            "csv" => Some(Format::NumbersCsv),
            "hosts" => Some(Format::Hosts),
            "rpz" | "zone" => Some(Format::Rpz),
            "adblock" | "abp" => Some(Format::Adblock),
            "urls" => Some(Format::Urls),
            "keywords" => Some(Format::Keywords),
            "domains" => Some(Format::Domains),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults for the rules of one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    pub format: Format,
    pub action: Action,
    pub category: String,
    /// The list name carried by verdicts (defaults to the file stem).
    pub source: String,
    pub direction: Direction,
    pub ingress: Option<String>,
    pub expires: Option<u64>,
    /// Skip bad lines (reporting each) instead of failing on the first.
    pub lenient: bool,
}

/// One problem on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// What a parser read: the rules, and (lenient mode) the lines it skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub rules: Vec<RuleSpec>,
    pub skipped: Vec<LineError>,
    /// Lines that were read but carry no rule and are worth saying (e.g. RPZ `rpz-ip` triggers
    /// that Dragnet does not implement, hosts-file `localhost` entries).
    pub notes: Vec<LineError>,
    /// RPZ: the SOA serial, if the zone had one.
    pub serial: Option<u32>,
}

/// At most this many notes are kept per file; the rest are counted in one summary note, because a
/// public Adblock list can hold hundreds of thousands of element-hiding rules.
pub const MAX_NOTES: usize = 1000;

impl SourceOptions {
    /// Strict, `block`, no category, both directions, no ingress, no expiry: the base a manifest
    /// entry or the CLI starts from.
    pub fn new(format: Format, source: impl Into<String>) -> SourceOptions {
        SourceOptions {
            format,
            action: Action::Block,
            category: String::new(),
            source: source.into(),
            direction: Direction::Both,
            ingress: None,
            expires: None,
            lenient: false,
        }
    }
}

/// Parse one source. Strict mode returns the first bad line as `Err`.
///
/// `file` names the source in every [`Origin`] and [`LineError`]; when `opts.source` is empty the
/// file stem becomes the list name.
pub fn parse_source(text: &str, file: &str, opts: &SourceOptions) -> Result<Parsed, LineError> {
    // Unicode §23.8: U+FEFF at the start of a UTF-8 file is a byte order mark, not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ctx = Ctx::new(file, opts);
    // At most one rule per line (a CSV or zone record may span lines, never share one), so
    // reserving a slot per line spares the copies of a growing vector of 10^7 rules. Pages that
    // stay unused are never touched and `finish` gives back a large surplus; if even the address
    // space is refused (a gigabyte of newlines), the vector simply grows as it goes.
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let _ = ctx.out.rules.try_reserve(lines);
    match opts.format {
        Format::NumbersCsv => numbers_csv::parse(text, &mut ctx)?,
        Format::Domains => domains::parse(text, &mut ctx)?,
        Format::Hosts => hosts::parse(text, &mut ctx)?,
        Format::Adblock => adblock::parse(text, &mut ctx)?,
        Format::Rpz => rpz::parse(text, &mut ctx)?,
        Format::Urls => urls::parse(text, &mut ctx)?,
        Format::Keywords => keywords::parse(text, &mut ctx)?,
    }
    Ok(ctx.finish())
}

/// Parse a rule expiry into unix seconds (UTC).
///
/// Accepts `YYYY-MM-DD` (midnight UTC at the start of that day), `YYYY-MM-DDTHH:MM:SSZ`
/// (RFC 3339 §5.6 `date-time` in UTC; `t`/`z` in lower case too, as §5.6 allows), or unix seconds.
/// An eight-digit number that reads as a date (`20270101`) is refused: it is far more likely a
/// date without dashes than a moment in 1970.
pub fn parse_expiry(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(
            "the expiry is empty: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix seconds".into(),
        );
    }
    if b.iter().all(u8::is_ascii_digit) {
        if b.len() == 8 && civil_to_unix(digits(b, 0, 4), digits(b, 4, 6), digits(b, 6, 8)).is_ok()
        {
            return Err(format!(
                "expiry `{s}` looks like a date without dashes: write {}-{}-{} (or unix seconds)",
                &s[0..4],
                &s[4..6],
                &s[6..8]
            ));
        }
        return s
            .parse::<u64>()
            .map_err(|_| format!("expiry `{s}` is too large to be unix seconds"));
    }
    let shape_ok = |len: usize| {
        b.len() == len
            && b.get(4) == Some(&b'-')
            && b.get(7) == Some(&b'-')
            && [0..4, 5..7, 8..10]
                .into_iter()
                .all(|r| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit)))
    };
    let bad_shape = || {
        format!("expiry `{s}` is not a date: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or unix seconds")
    };
    let (y, mo, d) = (digits(b, 0, 4), digits(b, 5, 7), digits(b, 8, 10));
    if shape_ok(10) {
        return civil_to_unix(y, mo, d).map_err(|e| format!("expiry `{s}`: {e}"));
    }
    if shape_ok(20)
        && matches!(b.get(10), Some(b'T' | b't'))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':')
        && matches!(b.get(19), Some(b'Z' | b'z'))
        && [11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit)))
    {
        let day = civil_to_unix(y, mo, d).map_err(|e| format!("expiry `{s}`: {e}"))?;
        let (h, mi, sec) = (digits(b, 11, 13), digits(b, 14, 16), digits(b, 17, 19));
        // RFC 3339 §5.6: time-hour 00-23, time-minute 00-59, time-second 00-60 (leap second;
        // unix time has none, so :60 lands on the next minute's first second).
        if h > 23 || mi > 59 || sec > 60 {
            return Err(format!(
                "expiry `{s}`: time {h:02}:{mi:02}:{sec:02} does not exist"
            ));
        }
        return Ok(day + h * 3600 + mi * 60 + sec);
    }
    Err(bad_shape())
}

/// The number written in ASCII digits `b[from..to]` (the caller has checked they are digits;
/// anything else reads as 0 and is then refused by the range checks).
fn digits(b: &[u8], from: usize, to: usize) -> u64 {
    b.get(from..to).map_or(0, |ds| {
        ds.iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d.wrapping_sub(b'0')).min(9))
    })
}

fn is_leap_year(y: u64) -> bool {
    // Gregorian calendar: every 4th year, except centuries, except every 4th century.
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Leap years in 1..=y.
fn leap_years_through(y: u64) -> u64 {
    y / 4 - y / 100 + y / 400
}

/// Seconds from 1970-01-01T00:00:00Z to the start of the given day (proleptic Gregorian, UTC).
fn civil_to_unix(y: u64, m: u64, d: u64) -> Result<u64, String> {
    const MONTH_DAYS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    if y < 1970 {
        return Err(format!("year {y} is before 1970, where unix time starts"));
    }
    if !(1..=12).contains(&m) {
        return Err(format!("month {m} does not exist"));
    }
    let mi = (m - 1) as usize;
    let leap = is_leap_year(y);
    let len = MONTH_DAYS[mi] + u64::from(m == 2 && leap);
    if d == 0 || d > len {
        return Err(format!(
            "day {d} does not exist: {} {y} has {len} days",
            NAMES[mi]
        ));
    }
    let days_before_year = 365 * (y - 1970) + leap_years_through(y - 1) - leap_years_through(1969);
    let days_before_month: u64 = MONTH_DAYS[..mi].iter().sum::<u64>() + u64::from(m > 2 && leap);
    Ok((days_before_year + days_before_month + d - 1) * 86_400)
}

/// The lines of a text, numbered from 1, without their `\r\n` / `\n` ending.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (line_number(i), l.strip_suffix('\r').unwrap_or(l)))
}

/// 1-based line number of the 0-based index `i`, saturating for absurdly long files.
pub(crate) fn line_number(i: usize) -> u32 {
    u32::try_from(i).map_or(u32::MAX, |n| n.saturating_add(1))
}

/// The text of a comment if it is a `dragnet:` directive (`key=value …`).
pub(crate) fn directive_body(comment: &str) -> Option<&str> {
    let c = comment.trim_start();
    let head = c.get(..8)?;
    head.eq_ignore_ascii_case("dragnet:").then(|| &c[8..])
}

/// `name` from `dir/name.ext` (what `Path::file_stem` gives, without needing a `Path`).
pub(crate) fn file_stem(file: &str) -> &str {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// The defaults every rule of one file starts from: the caller's options overridden by the
/// file's directive.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    pub(crate) action: Action,
    pub(crate) category: String,
    pub(crate) source: String,
    pub(crate) direction: Direction,
    pub(crate) ingress: Option<String>,
    pub(crate) expires: Option<u64>,
    /// Domains lists: the kind of a bare name (`example.com`).
    pub(crate) domain_kind: Kind,
}

impl Defaults {
    fn apply_directive(&mut self, body: &str, format: Format) -> Result<(), String> {
        let mut rest = body.trim();
        if rest.is_empty() {
            return Err("the `dragnet:` directive sets nothing: write key=value pairs".into());
        }
        while !rest.is_empty() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let Some(eq) = rest[..end].find('=') else {
                return Err(format!(
                    "`{}` in the `dragnet:` directive is not key=value",
                    &rest[..end]
                ));
            };
            let key = &rest[..eq];
            let after = &rest[eq + 1..];
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let close = quoted.find('"').ok_or_else(|| {
                    format!(
                        "the quoted value of `{key}` in the `dragnet:` directive is never closed"
                    )
                })?;
                (&quoted[..close], &quoted[close + 1..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            self.set(key, value, format)?;
            rest = next.trim_start();
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str, format: Format) -> Result<(), String> {
        let v = value.trim();
        match key.to_ascii_lowercase().as_str() {
            "action" if format == Format::Rpz => {
                return Err("`action=` does not apply to an RPZ zone: each record's data (CNAME or A/AAAA) gives its action".into());
            }
            "action" => {
                self.action = Action::parse(v)
                    .ok_or_else(|| format!("action `{v}` is not one of allow, tag, warn, block"))?;
            }
            "category" => self.category = v.to_string(),
            "source" if v.is_empty() => {
                return Err("`source=` needs a list name".into());
            }
            "source" => self.source = v.to_string(),
            "direction" => {
                self.direction = Direction::parse(v)
                    .ok_or_else(|| format!("direction `{v}` is not one of caller, callee, both"))?;
            }
            "ingress" => self.ingress = (!v.is_empty()).then(|| v.to_string()),
            "expires" => {
                self.expires = if v.is_empty() || v.eq_ignore_ascii_case("never") {
                    None
                } else {
                    Some(parse_expiry(v)?)
                };
            }
            "kind" if format != Format::Domains => {
                return Err(format!(
                    "`kind=` is only for domains lists; in a {format} source each line gives its kind"
                ));
            }
            "kind" => {
                self.domain_kind = match v.to_ascii_lowercase().as_str() {
                    "suffix" | "domain-suffix" => Kind::DomainSuffix,
                    "exact" | "domain-exact" => Kind::DomainExact,
                    "subdomains" | "domain-subdomains" => Kind::DomainSubdomains,
                    _ => {
                        return Err(format!(
                            "kind `{v}` is not one of suffix, exact, subdomains"
                        ))
                    }
                };
            }
            _ => {
                return Err(format!(
                    "unknown key `{key}` in the `dragnet:` directive: expected action, category, source, direction, ingress, expires{}",
                    if format == Format::Domains { ", kind" } else { "" }
                ));
            }
        }
        Ok(())
    }
}

/// The state of one parse, shared by every format: defaults, output, and the strict/lenient and
/// notes-cap bookkeeping.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) file: Arc<str>,
    format: Format,
    lenient: bool,
    pub(crate) defaults: Defaults,
    pub(crate) out: Parsed,
    /// A rule (good or bad) has been read: a directive is too late from here on.
    seen_rule: bool,
    notes_dropped: u64,
    first_dropped_line: u32,
}

impl Ctx {
    pub(crate) fn new(file: &str, opts: &SourceOptions) -> Ctx {
        let source = if opts.source.is_empty() {
            file_stem(file).to_string()
        } else {
            opts.source.clone()
        };
        Ctx {
            file: Arc::from(file),
            format: opts.format,
            lenient: opts.lenient,
            defaults: Defaults {
                action: opts.action,
                category: opts.category.clone(),
                source,
                direction: opts.direction,
                ingress: opts.ingress.clone(),
                expires: opts.expires,
                domain_kind: Kind::DomainSuffix,
            },
            out: Parsed::default(),
            seen_rule: false,
            notes_dropped: 0,
            first_dropped_line: 0,
        }
    }

    pub(crate) fn error(&self, line: u32, reason: impl Into<String>) -> LineError {
        LineError {
            file: self.file.to_string(),
            line,
            reason: reason.into(),
        }
    }

    /// A bad rule line: the error in strict mode; skipped and listed in lenient mode.
    pub(crate) fn bad(&mut self, line: u32, reason: impl Into<String>) -> Result<(), LineError> {
        self.seen_rule = true;
        let e = self.error(line, reason);
        if self.lenient {
            self.out.skipped.push(e);
            Ok(())
        } else {
            Err(e)
        }
    }

    /// A line read and deliberately not used. `reason` is only built while under the cap.
    pub(crate) fn note(&mut self, line: u32, reason: impl FnOnce() -> String) {
        if self.out.notes.len() < MAX_NOTES {
            let e = self.error(line, reason());
            self.out.notes.push(e);
        } else {
            if self.notes_dropped == 0 {
                self.first_dropped_line = line;
            }
            self.notes_dropped += 1;
        }
    }

    /// A comment line: applies it if it is a `dragnet:` directive. Errors here are fatal even in
    /// lenient mode (see the module docs).
    pub(crate) fn comment(&mut self, line: u32, comment: &str) -> Result<(), LineError> {
        let Some(body) = directive_body(comment) else {
            return Ok(());
        };
        if self.seen_rule {
            return Err(self.error(
                line,
                "a `dragnet:` directive must come before the first rule of the file (it sets the defaults for the whole file)",
            ));
        }
        let format = self.format;
        self.defaults
            .apply_directive(body, format)
            .map_err(|reason| self.error(line, reason))
    }

    /// A rule with the file's defaults.
    pub(crate) fn rule(&mut self, kind: Kind, pattern: &str, line: u32) {
        let action = self.defaults.action;
        self.rule_with(kind, pattern, line, action, None);
    }

    /// A rule whose action (and DNS answer) the line itself gives.
    pub(crate) fn rule_with(
        &mut self,
        kind: Kind,
        pattern: &str,
        line: u32,
        action: Action,
        dns: Option<DnsAction>,
    ) {
        let spec = self.spec(kind, pattern.to_string(), line, action, dns);
        self.push(spec);
    }

    pub(crate) fn spec(
        &self,
        kind: Kind,
        pattern: String,
        line: u32,
        action: Action,
        dns: Option<DnsAction>,
    ) -> RuleSpec {
        let d = &self.defaults;
        RuleSpec {
            id: None,
            kind,
            pattern,
            action,
            category: d.category.clone(),
            source: d.source.clone(),
            direction: d.direction,
            ingress: d.ingress.clone(),
            expires: d.expires,
            dns,
            origin: Origin {
                file: Arc::clone(&self.file),
                line,
            },
        }
    }

    pub(crate) fn push(&mut self, spec: RuleSpec) {
        self.seen_rule = true;
        self.out.rules.push(spec);
    }

    fn finish(mut self) -> Parsed {
        if self.notes_dropped > 0 {
            let n = self.notes_dropped;
            let e = self.error(
                self.first_dropped_line,
                format!("{n} more lines like the notes above, from this line on, were not listed (notes are capped at {MAX_NOTES})"),
            );
            self.out.notes.push(e);
        }
        if self.out.rules.capacity() / 2 > self.out.rules.len() {
            self.out.rules.shrink_to_fit();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) fn opts(format: Format) -> SourceOptions {
        SourceOptions::new(format, "test")
    }

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry("1970-01-01"), Ok(0));
        assert_eq!(parse_expiry("2027-01-01"), Ok(1_798_761_600));
        assert_eq!(parse_expiry("2000-03-01"), Ok(951_868_800));
        assert_eq!(parse_expiry("2024-02-29"), Ok(1_709_164_800));
        assert_eq!(parse_expiry("2024-12-31T23:59:59Z"), Ok(1_735_689_599));
        assert_eq!(parse_expiry("2024-12-31t23:59:59z"), Ok(1_735_689_599));
        assert_eq!(parse_expiry("2038-01-19T03:14:08Z"), Ok(1u64 << 31));
        assert_eq!(parse_expiry(" 1798761600 "), Ok(1_798_761_600));
        assert_eq!(parse_expiry("0"), Ok(0));
        assert_eq!(parse_expiry("9999-12-31"), Ok(253_402_214_400));
    }

    #[test]
    fn expiry_leap_years() {
        // 2000 is a leap year (divisible by 400), 1900 and 2100 are not (centuries).
        assert!(parse_expiry("2000-02-29").is_ok());
        assert!(parse_expiry("2100-02-29")
            .unwrap_err()
            .contains("February 2100 has 28 days"));
        assert!(parse_expiry("2023-02-29").unwrap_err().contains("28 days"));
        assert!(parse_expiry("2400-02-29").is_ok());
        // The day after Feb 29 is Mar 1.
        assert_eq!(
            parse_expiry("2024-03-01").unwrap() - parse_expiry("2024-02-29").unwrap(),
            86_400
        );
        assert_eq!(
            parse_expiry("2023-03-01").unwrap() - parse_expiry("2023-02-28").unwrap(),
            86_400
        );
    }

    #[test]
    fn expiry_matches_day_count_for_every_day() {
        // Walk day by day from 1970 to 2100: each date must be exactly one day after the last.
        let mut expect = 0u64;
        for y in 1970..2101u64 {
            for m in 1..=12u64 {
                for d in 1..=31u64 {
                    let s = format!("{y:04}-{m:02}-{d:02}");
                    if let Ok(t) = parse_expiry(&s) {
                        assert_eq!(t, expect, "{s}");
                        expect += 86_400;
                    }
                }
            }
        }
    }

    #[test]
    fn expiry_rejects_bad_input() {
        for bad in [
            "",
            "2027-13-01",
            "2027-00-10",
            "2027-04-31",
            "2027-01-00",
            "1969-12-31",
            "2027-1-1",
            "27-01-01",
            "2027/01/01",
            "2027-01-01T24:00:00Z",
            "2027-01-01T12:60:00Z",
            "2027-01-01T12:00:61Z",
            "2027-01-01T12:00:00",
            "2027-01-01T12:00:00+08:00",
            "2027-01-01 12:00:00Z",
            "tomorrow",
            "-5",
            "1.5",
            "99999999999999999999999",
            "20270101",
            "２０２７-01-01",
        ] {
            let e = parse_expiry(bad);
            assert!(e.is_err(), "{bad:?} parsed as {e:?}");
        }
        assert!(parse_expiry("20270101").unwrap_err().contains("2027-01-01"));
        // Eight digits that are no date are plain unix seconds.
        assert_eq!(parse_expiry("20271399"), Ok(20_271_399));
    }

    #[test]
    fn directive_sets_defaults() {
        let text = "# dragnet: action=allow category=\"fake customer service\" source=cbrc direction=caller ingress=international expires=2027-01-01\n\
                    # another comment\n\
                    evil.example\n";
        let p = parse_source(text, "lists/x.domains", &opts(Format::Domains)).unwrap();
        let r = &p.rules[0];
        assert_eq!(r.action, Action::Allow);
        assert_eq!(r.category, "fake customer service");
        assert_eq!(r.source, "cbrc");
        assert_eq!(r.direction, Direction::Caller);
        assert_eq!(r.ingress.as_deref(), Some("international"));
        assert_eq!(r.expires, Some(1_798_761_600));
        assert_eq!(r.origin.line, 3);
        assert_eq!(&*r.origin.file, "lists/x.domains");
    }

    #[test]
    fn directive_errors_are_fatal_even_when_lenient() {
        let mut o = opts(Format::Domains);
        o.lenient = true;
        for (text, needle) in [
            ("# dragnet: colour=red\nx.example\n", "unknown key `colour`"),
            ("# dragnet: action=alow\nx.example\n", "action `alow`"),
            (
                "# dragnet: expires=2027-02-30\nx.example\n",
                "February 2027 has 28 days",
            ),
            ("# dragnet: direction=up\n", "direction `up`"),
            ("# dragnet: kind=prefix\n", "kind `prefix`"),
            ("# dragnet: category\n", "not key=value"),
            ("# dragnet: category=\"open\n", "never closed"),
            ("# dragnet:\n", "sets nothing"),
            (
                "a.example\n# dragnet: action=allow\n",
                "before the first rule",
            ),
        ] {
            let e = parse_source(text, "f", &o).unwrap_err();
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
        let e = parse_source("x.example\n\n# dragnet: action=allow\n", "f", &o).unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse_source("# dragnet: kind=exact\n", "f", &opts(Format::Urls)).unwrap_err();
        assert!(e.reason.contains("only for domains lists"), "{e}");
    }

    #[test]
    fn directive_overrides_and_clears() {
        let mut o = opts(Format::Keywords);
        o.ingress = Some("trunk-a".into());
        o.expires = Some(5);
        let p = parse_source("# DRAGNET: ingress= expires=never\nword\n", "f", &o).unwrap();
        assert_eq!(p.rules[0].ingress, None);
        assert_eq!(p.rules[0].expires, None);
        // Without a directive the caller's options stand.
        let p = parse_source("word\n", "f", &o).unwrap();
        assert_eq!(p.rules[0].ingress.as_deref(), Some("trunk-a"));
        assert_eq!(p.rules[0].expires, Some(5));
    }

    #[test]
    fn source_defaults_to_file_stem() {
        let o = SourceOptions::new(Format::Keywords, "");
        let p = parse_source("word\n", "/etc/dragnet/cn-scam.keywords", &o).unwrap();
        assert_eq!(p.rules[0].source, "cn-scam");
        assert_eq!(file_stem("a\\b\\hosts"), "hosts");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }

    #[test]
    fn notes_are_capped_with_one_summary() {
        let mut text = String::new();
        for i in 0..1500 {
            text.push_str(&format!("example{i}.com##.ad\n"));
        }
        text.push_str("||kept.example^\n");
        let p = parse_source(&text, "f", &opts(Format::Adblock)).unwrap();
        assert_eq!(p.notes.len(), MAX_NOTES + 1);
        let last = p.notes.last().unwrap();
        assert_eq!(last.line, 1001);
        assert!(last.reason.starts_with("500 more"), "{last}");
        assert_eq!(p.rules.len(), 1);
    }

    #[test]
    fn every_format_handles_bom_and_crlf() {
        let cases = [
            (
                Format::NumbersCsv,
                "number,kind\r\n+8613800000000,prefix\r\n",
            ),
            (Format::Domains, "# c\r\nevil.example\r\n"),
            (Format::Hosts, "# c\r\n0.0.0.0 evil.example\r\n"),
            (Format::Adblock, "! c\r\n||evil.example^\r\n"),
            (Format::Rpz, "; c\r\nevil.example CNAME .\r\n"),
            (Format::Urls, "# c\r\nevil.example/login/\r\n"),
            (Format::Keywords, "# c\r\nevil.example\r\n"),
        ];
        for (format, text) in cases {
            let with_bom = format!("\u{feff}{text}");
            let p = parse_source(&with_bom, "f.x", &opts(format)).unwrap();
            assert_eq!(p.rules.len(), 1, "{format}");
            let r = &p.rules[0];
            assert_eq!(r.origin.line, 2, "{format}");
            assert!(!r.pattern.contains('\r'), "{format}: {:?}", r.pattern);
            assert!(!r.pattern.contains('\u{feff}'), "{format}");
        }
    }

    #[test]
    fn empty_input_is_no_rules() {
        for format in Format::ALL {
            let p = parse_source("", "f", &opts(format)).unwrap();
            assert!(p.rules.is_empty(), "{format}");
        }
    }
}

#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    /// Text built from the characters the parsers treat specially, so that the interesting paths
    /// (quotes, parentheses, comments, directives, escapes) are reached far more often than with
    /// uniform Unicode.
    fn tricky_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("\"".to_string()),
            Just(",".to_string()),
            Just(";".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("\\".to_string()),
            Just("#".to_string()),
            Just("!".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("*.".to_string()),
            Just("||".to_string()),
            Just("^".to_string()),
            Just("$".to_string()),
            Just("@".to_string()),
            Just("@@".to_string()),
            Just(".".to_string()),
            Just("=".to_string()),
            Just("\u{feff}".to_string()),
            Just("安全".to_string()),
            Just("dragnet: ".to_string()),
            Just("action=allow ".to_string()),
            Just("kind=exact ".to_string()),
            Just("expires=2024-02-29 ".to_string()),
            Just("number,kind,action,expires\n".to_string()),
            Just("$ORIGIN ".to_string()),
            Just("SOA ns h 1 1 1 1 1".to_string()),
            Just(" CNAME ".to_string()),
            Just(" A 192.0.2.1".to_string()),
            Just(" AAAA ::1".to_string()),
            Just("rpz-ip".to_string()),
            Just("rpz-passthru.".to_string()),
            Just("0.0.0.0 ".to_string()),
            Just("localhost".to_string()),
            Just("example.com".to_string()),
            Just("+8613800000000".to_string()),
            "[a-z0-9]{1,6}",
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    fn check(text: &str) {
        let total_lines = line_number(text.matches('\n').count());
        for format in Format::ALL {
            for lenient in [false, true] {
                let mut o = SourceOptions::new(format, "p");
                o.lenient = lenient;
                match parse_source(text, "p.txt", &o) {
                    Ok(p) => {
                        for r in &p.rules {
                            assert!(r.origin.line >= 1 && r.origin.line <= total_lines);
                            assert_eq!(r.pattern, r.pattern.trim(), "{format}");
                        }
                        for e in p.skipped.iter().chain(&p.notes) {
                            assert!(e.line <= total_lines, "{format}: {e}");
                        }
                        assert!(p.notes.len() <= MAX_NOTES + 1);
                        if !lenient {
                            assert!(p.skipped.is_empty());
                        }
                    }
                    Err(e) => assert!(e.line >= 1 && e.line <= total_lines, "{format}: {e}"),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_parser_panics_on_arbitrary_text(text in any::<String>()) {
            check(&text);
        }

        #[test]
        fn no_parser_panics_on_tricky_text(text in tricky_text()) {
            check(&text);
        }

        #[test]
        fn lenient_keeps_every_good_line_of_strict(text in tricky_text()) {
            // When strict mode accepts a file, lenient mode gives the same result.
            for format in Format::ALL {
                let mut o = SourceOptions::new(format, "p");
                if let Ok(strict) = parse_source(&text, "p", &o) {
                    o.lenient = true;
                    let lenient = parse_source(&text, "p", &o).unwrap();
                    prop_assert_eq!(strict, lenient);
                }
            }
        }

        #[test]
        fn expiry_never_panics(s in "\\PC{0,24}", y in 1970u64..10000, m in 1u64..13, d in 1u64..29) {
            let _ = parse_expiry(&s);
            let date = format!("{y:04}-{m:02}-{d:02}");
            let day = parse_expiry(&date).unwrap();
            prop_assert_eq!(day % 86_400, 0);
            prop_assert_eq!(parse_expiry(&format!("{date}T23:59:59Z")).unwrap(), day + 86_399);
        }
    }
}
