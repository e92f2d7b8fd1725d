//! URL canonicalisation and lookup expressions, after Google Safe Browsing (API v4,
//! "URLs and Hashing"), plus a scanner that finds URL-like tokens in message text.
//!
//! What it does:
//! - [`canonicalize`] turns a URL as seen on the wire (HTTP request line, SMS text, rule file)
//!   into the Safe Browsing canonical form: TAB/CR/LF removed, fragment removed, percent-escapes
//!   undone until none are left, host cleaned (dots, case, every IPv4 spelling as a dotted quad,
//!   IDN as Punycode), path resolved (`/./`, `/../`, `//`), and finally the bytes `<= 0x20`,
//!   `>= 0x7f`, `#` and `%` escaped again with upper-case hex.
//! - [`for_each_expression`] visits the at most 30 lookup expressions `host/path[?query]` of a
//!   canonical URL (5 host suffixes × 6 path prefixes), in the order the spec lists them.
//! - [`rule_expression`] turns a URL-list rule into the one expression it stands for. A URL
//!   matches a rule exactly when the rule's expression is among the URL's expressions: this is
//!   exact matching on expressions, never substring search.
//! - [`find_urls`] finds `http(s)://…`, `www.…` and bare `host.tld/…` tokens in SMS or chat text.
//!
//! What it never does: no I/O, no clock, no global state, no `unsafe`, no panics on any input.
//! Userinfo and port are dropped from the host, as Safe Browsing does: neither takes part in
//! an expression.
//!
//! Cost model: [`canonicalize`] runs in time linear in the URL length (repeated unescaping is
//! computed in a single stack-based pass that reaches the same fixed point) and writes only
//! into the caller's
//! [`UrlScratch`]; for an ASCII host it never allocates once the scratch is large enough. A
//! host with non-ASCII bytes takes a slow path through IDNA (UTS #46), which allocates.
//! [`for_each_expression`] copies each expression into the caller's fixed-size [`ExprBuf`] and
//! never allocates. [`find_urls`] borrows the text and never allocates. Input is bounded by
//! [`MAX_URL_LEN`] before and after canonicalisation, so a hostile URL cannot blow up time or
//! memory.

use std::fmt;
use std::io::Write as _;
use std::net::Ipv6Addr;
use std::ops::ControlFlow;

/// Longest URL accepted, in bytes, both as given and in canonical form. Longer input is
/// refused rather than truncated: a truncated URL could match a rule the full one does not.
pub const MAX_URL_LEN: usize = 8192;

/// Longest lookup expression, in bytes. [`rule_expression`] refuses longer rules, so
/// [`for_each_expression`] can skip longer expressions without missing any match.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// URL length [`UrlScratch::new`] is sized for without growing. Browsers have long capped
/// URLs near 2 KB, so nearly all traffic fits.
pub const DEFAULT_SCRATCH_URL_LEN: usize = 2048;

/// Safe Browsing v4: at most 5 host strings (the exact host and up to 4 suffixes).
const MAX_HOSTS: usize = 5;

/// Safe Browsing v4: up to 4 path prefixes from the root (besides the exact path with and
/// without query).
const MAX_PATH_PREFIXES: usize = 4;

/// Room for escaping every byte (`%XX`) plus a rewritten IP host and a `/` path.
fn out_capacity(url_len: usize) -> usize {
    url_len.saturating_mul(3).saturating_add(64)
}

/// Why a URL could not be canonicalised, or a rule turned into an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Nothing but white space or control bytes.
    Empty,
    /// The URL as given is longer than the bound.
    TooLong {
        /// Length of the URL as given, in bytes.
        len: usize,
        /// The bound, [`MAX_URL_LEN`].
        max: usize,
    },
    /// The canonical form (escaping can triple the length) is longer than the bound.
    CanonicalTooLong {
        /// Length of the canonical form, in bytes.
        len: usize,
        /// The bound, [`MAX_URL_LEN`].
        max: usize,
    },
    /// A scheme other than `http` or `https` (`ftp:`, `mailto:`, `javascript:` …).
    UnsupportedScheme,
    /// No host name left (`http:///path`, `/relative/path`, `http://.../`).
    NoHost,
    /// A bracketed host that is not an IPv6 address (`http://[evil]/`).
    InvalidHost,
    /// A rule whose expression is longer than [`MAX_EXPRESSION_LEN`].
    ExpressionTooLong {
        /// Length of the expression, in bytes.
        len: usize,
        /// The bound, [`MAX_EXPRESSION_LEN`].
        max: usize,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("URL is empty (only white space or control characters)"),
            Self::TooLong { len, max } => write!(
                f,
                "URL is {len} bytes long, more than the {max}-byte limit; it is refused so that a \
                 hostile URL cannot cost unbounded time or memory"
            ),
            Self::CanonicalTooLong { len, max } => write!(
                f,
                "URL grows to {len} bytes when canonicalised (escaping), more than the \
                 {max}-byte limit"
            ),
            Self::UnsupportedScheme => f.write_str(
                "URL scheme is not http or https; only web links are checked against URL lists",
            ),
            Self::NoHost => f.write_str("URL has no host name to check"),
            Self::InvalidHost => f.write_str(
                "URL host is in brackets but is not a valid IPv6 address (RFC 3986 section 3.2.2)",
            ),
            Self::ExpressionTooLong { len, max } => write!(
                f,
                "URL rule expands to a {len}-byte lookup expression, more than the {max}-byte \
                 limit; shorten the rule (drop the query, or cut the path at a directory)"
            ),
        }
    }
}

impl std::error::Error for UrlError {}

/// The two schemes Safe Browsing lookups cover. The scheme is not part of an expression; it is
/// kept so that [`Canonical::full`] can print the canonical URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`, also assumed when the URL has no scheme.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// The scheme name, lower case.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// Caller-owned, reusable working memory for [`canonicalize`], in the manner of aho-corasick's
/// caller-owned search state: one per worker, reused for every URL.
///
/// [`UrlScratch::new`] sizes it for [`DEFAULT_SCRATCH_URL_LEN`]-byte URLs; canonicalising a URL
/// that fits never allocates. A longer URL grows it once, and later URLs of that size reuse
/// the room.
#[derive(Debug, Default)]
pub struct UrlScratch {
    /// The URL after removing TAB/CR/LF and the fragment, then fully unescaped.
    work: Vec<u8>,
    /// The canonical output: host, then path, then query (without `?`).
    out: Vec<u8>,
}

impl UrlScratch {
    /// Scratch sized for URLs of up to [`DEFAULT_SCRATCH_URL_LEN`] bytes.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_SCRATCH_URL_LEN)
    }

    /// Scratch sized for URLs of up to `url_len` bytes (capped at [`MAX_URL_LEN`]).
    #[must_use]
    pub fn with_capacity(url_len: usize) -> Self {
        let n = url_len.min(MAX_URL_LEN);
        Self {
            work: Vec::with_capacity(n),
            out: Vec::with_capacity(out_capacity(n)),
        }
    }
}

/// A canonical URL, borrowed from the [`UrlScratch`] that produced it.
///
/// Every byte is ASCII: the canonical form escapes everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonical<'a> {
    /// `http` or `https` (`http` when the URL had none).
    pub scheme: Scheme,
    /// Lower-case host without userinfo and port; an IPv4 address as a dotted quad; an IPv6
    /// address in brackets in RFC 5952 form.
    pub host: &'a [u8],
    /// The resolved path, starting with `/`.
    pub path: &'a [u8],
    /// The query without its `?`; `Some(b"")` for a URL ending in `?`.
    pub query: Option<&'a [u8]>,
}

impl Canonical<'_> {
    /// Appends the canonical URL `scheme://host/path[?query]` to `out`. For display and tests;
    /// it allocates if `out` is too small, so keep it off the per-request path.
    pub fn full(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.scheme.as_str().as_bytes());
        out.extend_from_slice(b"://");
        out.extend_from_slice(self.host);
        out.extend_from_slice(self.path);
        if let Some(q) = self.query {
            out.push(b'?');
            out.extend_from_slice(q);
        }
    }

    /// Appends the most specific lookup expression, `host/path[?query]`, to `out`: the first
    /// one [`for_each_expression`] visits, and what [`rule_expression`] stores for a rule.
    pub fn exact_expression(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.host);
        out.extend_from_slice(self.path);
        if let Some(q) = nonempty_query(self.query) {
            out.push(b'?');
            out.extend_from_slice(q);
        }
    }

    /// Whether the host is an IP address. Safe Browsing v4: suffixes of an IP host are not
    /// looked up, only the address itself.
    #[must_use]
    pub fn host_is_ip(&self) -> bool {
        is_ip_host(self.host)
    }
}

/// Canonicalises `url` per Safe Browsing v4 "URLs and Hashing", writing into `scratch`.
///
/// Steps, in the spec's order: trim leading and trailing white space and control bytes; remove
/// TAB, CR and LF; remove the fragment (at the first `#`, before unescaping, so `%23` stays
/// part of the URL); percent-unescape until no escape is left; take the scheme (`http` if
/// none); take the host, dropping userinfo and port, and canonicalise it; resolve the path;
/// keep the query; re-escape bytes `<= 0x20`, `>= 0x7f`, `#` and `%`.
///
/// Two choices go beyond the spec's text and follow what browsers do (WHATWG URL Standard,
/// "special" schemes), because the point is to check the host a browser will visit: `\` ends
/// the host and separates path segments like `/`, so `http://evil.com\@bank.com/` is
/// `evil.com`; and any number of slashes may follow `http:`.
///
/// # Errors
/// [`UrlError::Empty`], [`UrlError::TooLong`] (input over [`MAX_URL_LEN`]),
/// [`UrlError::CanonicalTooLong`], [`UrlError::UnsupportedScheme`], [`UrlError::NoHost`],
/// [`UrlError::InvalidHost`].
pub fn canonicalize<'s>(
    url: &[u8],
    scratch: &'s mut UrlScratch,
) -> Result<Canonical<'s>, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong {
            len: url.len(),
            max: MAX_URL_LEN,
        });
    }
    let url = trim_space_and_controls(url);
    if url.is_empty() {
        return Err(UrlError::Empty);
    }
    let UrlScratch { work, out } = scratch;

    // SB v4: "remove tab (0x09), CR (0x0d), and LF (0x0a) characters"; "if the URL ends in a
    // fragment, remove the fragment". Escapes for these (%09, %23) are not touched.
    work.clear();
    work.reserve(url.len());
    for &b in url {
        match b {
            b'\t' | b'\r' | b'\n' => {}
            b'#' => break,
            _ => work.push(b),
        }
    }
    // SB v4: "repeatedly percent-unescape the URL until it has no more percent-escapes".
    unescape_fully(work);

    let (scheme, rest) = split_scheme(work)?;
    let authority_end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'\\' | b'?'))
        .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = host_of_authority(authority)?;
    let (path, query) = match tail.iter().position(|&b| b == b'?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };

    out.clear();
    out.reserve(out_capacity(work.len()));
    write_host(host, out)?;
    let host_end = out.len();
    write_path(path, out);
    let path_end = out.len();
    if let Some(q) = query {
        // SB v4: "Do not apply these path canonicalizations to the query parameters."
        escape_into(q, out);
    }
    if out.len() > MAX_URL_LEN {
        return Err(UrlError::CanonicalTooLong {
            len: out.len(),
            max: MAX_URL_LEN,
        });
    }

    let out: &'s Vec<u8> = out;
    let (host, rest) = out.split_at(host_end);
    let (path, query_bytes) = rest.split_at(path_end - host_end);
    Ok(Canonical {
        scheme,
        host,
        path,
        query: query.map(|_| query_bytes),
    })
}

/// Convenience for the rule compiler and tests: the canonical URL as a `String`
/// (`http://host/path?query`). Allocates.
///
/// # Errors
/// As [`canonicalize`].
pub fn canonicalize_to_string(url: &str) -> Result<String, UrlError> {
    let mut scratch = UrlScratch::with_capacity(url.len());
    let c = canonicalize(url.as_bytes(), &mut scratch)?;
    let mut out = Vec::with_capacity(c.host.len() + c.path.len() + 16);
    c.full(&mut out);
    Ok(ascii_to_string(out))
}

/// Caller-owned buffer that [`for_each_expression`] assembles each expression in: fixed size,
/// so visiting expressions never allocates. Reuse one per worker.
pub struct ExprBuf {
    bytes: [u8; MAX_EXPRESSION_LEN],
}

impl ExprBuf {
    /// A zeroed buffer of [`MAX_EXPRESSION_LEN`] bytes.
    #[must_use]
    pub fn new() -> Self {
        Self {
            bytes: [0; MAX_EXPRESSION_LEN],
        }
    }
}

impl Default for ExprBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ExprBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExprBuf")
            .field("capacity", &self.bytes.len())
            .finish()
    }
}

/// Visits the Safe Browsing v4 suffix/prefix expressions of `c`, `host/path[?query]` without
/// scheme, calling `f` with each until it breaks; returns the break value, or `None` when all
/// were visited.
///
/// Order (SB v4, "Suffix/Prefix Expressions"): hosts are the exact host, then up to 4 suffixes
/// formed from the last five labels by removing the leading label each time, never the
/// top-level label alone, and none for an IP host. For each host, paths are the exact path
/// with the query, the exact path, then up to 4 prefixes from `/` adding one directory at a
/// time. An empty query adds nothing, and a prefix equal to the exact path is not repeated,
/// so for a `Canonical` from [`canonicalize`] every visited expression is distinct and there
/// are at most 30.
///
/// An expression longer than [`MAX_EXPRESSION_LEN`] is skipped: no rule can equal it, since
/// [`rule_expression`] refuses rules that long.
pub fn for_each_expression<B>(
    c: &Canonical<'_>,
    buf: &mut ExprBuf,
    mut f: impl FnMut(&[u8]) -> ControlFlow<B>,
) -> Option<B> {
    let mut hosts = [0usize; MAX_HOSTS];
    let host_count = host_suffix_starts(c.host, &mut hosts);
    let mut prefixes = [0usize; MAX_PATH_PREFIXES];
    let prefix_count = path_prefix_lens(c.path, &mut prefixes);
    let query = nonempty_query(c.query);

    for &start in &hosts[..host_count] {
        let host = c.host.get(start..).unwrap_or_default();
        if let Some(q) = query {
            if let ControlFlow::Break(b) = emit(buf, &[host, c.path, b"?", q], &mut f) {
                return Some(b);
            }
        }
        if let ControlFlow::Break(b) = emit(buf, &[host, c.path], &mut f) {
            return Some(b);
        }
        for &len in &prefixes[..prefix_count] {
            let prefix = c.path.get(..len).unwrap_or_default();
            if let ControlFlow::Break(b) = emit(buf, &[host, prefix], &mut f) {
                return Some(b);
            }
        }
    }
    None
}

/// Turns a URL-list rule (`evil.example/login/`, `https://Evil.Example/login/`,
/// `http://1.2.3.4/x.php?a=1`) into the canonical expression stored in the rule set
/// (`evil.example/login/`, `1.2.3.4/x.php?a=1`).
///
/// Matching contract: a URL `u` matches rule `r` exactly when `rule_expression(r)` is among
/// the expressions [`for_each_expression`] visits for `canonicalize(u)`. So `evil.example/`
/// covers the whole site and its subdomains (within five labels), `evil.example/login/` covers
/// that directory and `evil.example/login` only that exact path, with any query.
///
/// # Errors
/// As [`canonicalize`], plus [`UrlError::ExpressionTooLong`].
pub fn rule_expression(pattern: &str) -> Result<String, UrlError> {
    let mut scratch = UrlScratch::with_capacity(pattern.len());
    let c = canonicalize(pattern.as_bytes(), &mut scratch)?;
    let mut out =
        Vec::with_capacity(c.host.len() + c.path.len() + 1 + c.query.map_or(0, <[u8]>::len));
    c.exact_expression(&mut out);
    if out.len() > MAX_EXPRESSION_LEN {
        return Err(UrlError::ExpressionTooLong {
            len: out.len(),
            max: MAX_EXPRESSION_LEN,
        });
    }
    Ok(ascii_to_string(out))
}

/// Finds URL-like tokens in message text (SMS, chat); see [`UrlFinder`].
#[must_use]
pub fn find_urls(text: &str) -> UrlFinder<'_> {
    UrlFinder { text, pos: 0 }
}

/// Iterator over URL-like tokens in text, as slices of it. Never allocates.
///
/// A token is `http://…` or `https://…` (any case, also glued to preceding ASCII text as in
/// `visithttp://…`), `www.…`, or a bare `host.tld[:port][/…]` with at least two labels and a
/// top-level label of 2+ ASCII letters, starting at a word boundary. A token stops at white
/// space, control characters, `<`, `>`, `"`, `'` and at any non-ASCII character, so CJK text
/// and full-width punctuation around a link are not taken in (`点击http://evil.cn/x领取` gives
/// `http://evil.cn/x`); a consequence is that a host written in Unicode (`http://银行.cn`) is
/// cut at its first non-ASCII character. Trailing `.,;:!?` are trimmed, and `)`, `]`, `}` when
/// they close nothing inside the token.
///
/// E-mail addresses are not reported, neither whole nor their domain: a mailbox is not a link,
/// and reporting `bank.com` out of `help@bank.com` would fire site rules on every message that
/// merely names a contact address. `http://user@host/` with a scheme is reported (the
/// userinfo is dropped when canonicalising). Bare tokens such as `file.txt` or `Mr.Smith` are
/// reported too: with no public-suffix list on this path, the rule lookup filters them.
#[derive(Debug, Clone)]
pub struct UrlFinder<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for UrlFinder<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            if !is_token_byte(bytes[self.pos]) {
                self.pos += 1;
                continue;
            }
            let run_end = bytes[self.pos..]
                .iter()
                .position(|&b| !is_token_byte(b))
                .map_or(bytes.len(), |n| self.pos + n);
            match find_in_run(bytes, self.pos, run_end) {
                Some((start, end)) => {
                    self.pos = end;
                    // Token bounds are ASCII bytes, hence char boundaries; `get` cannot fail.
                    if let Some(token) = self.text.get(start..end) {
                        return Some(token);
                    }
                }
                None => self.pos = run_end,
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Canonicalisation steps.

/// Browsers (WHATWG URL, "basic URL parser") strip leading and trailing C0 controls and
/// spaces; SB's test `"  http://www.google.com/  "` expects the same.
fn trim_space_and_controls(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b > 0x20).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b > 0x20).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Percent-unescapes `buf` in place until no `%XX` (two hex digits) is left, in one pass.
///
/// SB asks to unescape repeatedly until nothing changes. Done naively that costs a pass per
/// level of nesting (`%252525…`), quadratic on hostile input. Here the output is kept as a
/// stack that never holds an escape: after each byte is pushed, while the top three bytes form
/// an escape, they are replaced by the byte they encode (which may complete an escape with the
/// bytes below, as in `%%32%35` → `%25` → `%`). An escape cannot overlap another (`%` is no hex
/// digit), so the rewriting is confluent and this reaches the same fixed point as repeated
/// passes, in linear time: each replacement shortens the stack by two.
fn unescape_fully(buf: &mut Vec<u8>) {
    let mut w = 0;
    for r in 0..buf.len() {
        let b = buf[r];
        buf[w] = b;
        w += 1;
        while w >= 3 && buf[w - 3] == b'%' {
            match (hex_value(buf[w - 2]), hex_value(buf[w - 1])) {
                (Some(hi), Some(lo)) => {
                    buf[w - 3] = (hi << 4) | lo;
                    w -= 2;
                }
                _ => break,
            }
        }
    }
    buf.truncate(w);
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits off the scheme. SB v4 canonicalises http(s) URLs and assumes `http://` when there is
/// no scheme (`www.google.com/` → `http://www.google.com/`). `host:port` without a scheme
/// (`www.google.com:8080/`) looks like a scheme (RFC 3986 §3.1 syntax) and is told apart by
/// the digits after the colon.
fn split_scheme(s: &[u8]) -> Result<(Scheme, &[u8]), UrlError> {
    let Some(&first) = s.first() else {
        return Err(UrlError::NoHost);
    };
    if !first.is_ascii_alphabetic() {
        return Ok((Scheme::Http, s));
    }
    let name_len = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(s.len());
    if s.get(name_len) != Some(&b':') {
        return Ok((Scheme::Http, s));
    }
    let name = &s[..name_len];
    let after = &s[name_len + 1..];
    let scheme = if name.eq_ignore_ascii_case(b"http") {
        Scheme::Http
    } else if name.eq_ignore_ascii_case(b"https") {
        Scheme::Https
    } else if looks_like_port(after) {
        return Ok((Scheme::Http, s));
    } else {
        return Err(UrlError::UnsupportedScheme);
    };
    // WHATWG URL, "special authority ignore slashes state": any run of `/` and `\` after
    // `http:` leads to the host, as a browser reads `http:evil.com` and `http:///evil.com`.
    let host_start = after
        .iter()
        .position(|&b| b != b'/' && b != b'\\')
        .unwrap_or(after.len());
    Ok((scheme, &after[host_start..]))
}

/// Digits up to the end of the authority: the port of a scheme-less `host:port`. An empty
/// port is accepted only at the end or before `?`, so `ftp://` and `ftp:/x` stay schemes.
fn looks_like_port(after_colon: &[u8]) -> bool {
    let digits = after_colon
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    match after_colon.get(digits) {
        None | Some(b'?') => true,
        Some(b'/' | b'\\') => digits > 0,
        Some(_) => false,
    }
}

/// The host inside an authority, before its own canonicalisation.
#[derive(Debug, Clone, Copy)]
enum RawHost<'a> {
    /// A registered name or an IPv4 address in any spelling.
    Name(&'a [u8]),
    /// The text between `[` and `]`.
    Bracketed(&'a [u8]),
}

/// Drops userinfo and port (SB: "The scheme, username, password, and port are disregarded").
/// Userinfo ends at the last `@`, as in browsers, so `http://bank.com@evil.com/` is `evil.com`.
fn host_of_authority(authority: &[u8]) -> Result<RawHost<'_>, UrlError> {
    let host_port = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    if host_port.first() == Some(&b'[') {
        // RFC 3986 §3.2.2: IP-literal = "[" IPv6address "]", optionally followed by ":" port.
        let close = host_port
            .iter()
            .position(|&b| b == b']')
            .ok_or(UrlError::InvalidHost)?;
        let after = &host_port[close + 1..];
        if !after.is_empty() && after[0] != b':' {
            return Err(UrlError::InvalidHost);
        }
        return Ok(RawHost::Bracketed(&host_port[1..close]));
    }
    let end = host_port
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(host_port.len());
    Ok(RawHost::Name(&host_port[..end]))
}

/// Writes the canonical host. SB v4: remove leading and trailing dots, collapse consecutive
/// dots, normalise an IPv4 address to four decimals, lower-case; an IDN is converted to
/// Punycode first. The v5 text's IPv6 rules are applied to bracketed hosts (RFC 5952 form;
/// IPv4-mapped and NAT64 64:ff9b::/96 addresses become IPv4), since v4 is silent on them.
fn write_host(host: RawHost<'_>, out: &mut Vec<u8>) -> Result<(), UrlError> {
    let name = match host {
        RawHost::Bracketed(inner) => return write_ipv6_host(inner, out),
        RawHost::Name(name) => name,
    };
    // Slow path, allocates: only hosts with non-ASCII bytes.
    let idn = if name.is_ascii() {
        None
    } else {
        idn_to_ascii(name)
    };
    let name = idn.as_deref().map_or(name, str::as_bytes);

    let start = out.len();
    let mut pending_dot = false;
    for &b in name {
        if b == b'.' {
            pending_dot = out.len() > start;
            continue;
        }
        if pending_dot {
            out.push(b'.');
            pending_dot = false;
        }
        push_escaped(out, b.to_ascii_lowercase());
    }
    if out.len() == start {
        return Err(UrlError::NoHost);
    }
    // `http://.[::1]/`: once the dots are gone this would read as an IPv6 literal, and
    // browsers refuse such a host anyway.
    if out[start] == b'[' {
        return Err(UrlError::InvalidHost);
    }
    if let Some(ip) = parse_ipv4(&out[start..]) {
        out.truncate(start);
        push_ipv4(out, ip);
    }
    Ok(())
}

/// SB v4: "If the URL uses an internationalized domain name (IDN), the client should convert
/// the URL to the ASCII Punycode representation." UTS #46 processing as in the WHATWG URL
/// Standard (which also maps full-width letters and the ideographic full stop `。`). A host
/// that is not UTF-8 or fails the conversion is kept as bytes and escaped, as SB's test
/// `http://\x01\x80.com/` → `http://%01%80.com/` shows. Only a result made of LDH characters,
/// `_` and dots is accepted, so the conversion cannot smuggle in a delimiter.
fn idn_to_ascii(name: &[u8]) -> Option<String> {
    std::str::from_utf8(name).ok()?;
    let ascii = idna::domain_to_ascii_cow(name, idna::AsciiDenyList::URL).ok()?;
    let clean = !ascii.is_empty()
        && ascii.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        });
    clean.then(|| ascii.into_owned())
}

fn write_ipv6_host(inner: &[u8], out: &mut Vec<u8>) -> Result<(), UrlError> {
    let addr: Ipv6Addr = std::str::from_utf8(inner)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(UrlError::InvalidHost)?;
    let seg = addr.segments();
    if let Some(v4) = addr.to_ipv4_mapped() {
        push_ipv4(out, u32::from(v4));
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // RFC 6052 §2.1: the well-known NAT64 prefix carries the IPv4 address in the low bits.
        push_ipv4(out, (u32::from(seg[6]) << 16) | u32::from(seg[7]));
    } else {
        // Writing into a Vec cannot fail; the room was reserved, so this does not allocate.
        write!(out, "[{addr}]").map_err(|_| UrlError::InvalidHost)?;
    }
    Ok(())
}

/// Parses every IPv4 spelling browsers accept (WHATWG URL, "IPv4 parser", after inet_aton):
/// 1 to 4 dot-separated numbers, each decimal, octal (leading `0`) or hex (`0x`); the last
/// number fills the remaining bytes (`3279880203` is `195.127.0.11`, `1.65535` is
/// `1.0.255.255`). Anything else, including a number out of range, is a name.
fn parse_ipv4(host: &[u8]) -> Option<u32> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for part in host.split(|&b| b == b'.') {
        let slot = parts.get_mut(count)?;
        *slot = parse_ipv4_number(part)?;
        count += 1;
    }
    let (last, init) = parts[..count].split_last()?;
    let mut addr: u32 = 0;
    for (i, &p) in init.iter().enumerate() {
        let byte = u8::try_from(p).ok()?;
        addr |= u32::from(byte) << (24 - 8 * i);
    }
    // The last number must fit in the bytes the others left: 32 - 8 * (count - 1) bits.
    let bits = 32 - 8 * (count - 1);
    if bits < 32 && *last >> bits != 0 {
        return None;
    }
    Some(addr | last)
}

fn parse_ipv4_number(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if s.len() >= 2 && s[0] == b'0' && (s[1] == b'x' || s[1] == b'X') {
        (&s[2..], 16)
    } else if s.len() >= 2 && s[0] == b'0' {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let mut value: u32 = 0;
    for &d in digits {
        let v = u32::from(hex_value(d)?);
        if v >= radix {
            return None;
        }
        value = value.checked_mul(radix)?.checked_add(v)?;
    }
    Some(value)
}

fn push_ipv4(out: &mut Vec<u8>, ip: u32) {
    for (i, byte) in ip.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_decimal(out, byte);
    }
}

fn push_decimal(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + (n / 10) % 10);
    }
    out.push(b'0' + n % 10);
}

/// Writes the canonical path. SB v4: replace `/./` with `/`, remove `/../` with the preceding
/// component, replace runs of slashes with one. A final `.` or `..` segment is resolved too
/// (RFC 3986 §5.2.4), as SB's test `http://www.google.com/blah/..` → `http://www.google.com/`
/// requires; a final slash survives. An empty path becomes `/` (SB: "The URL must include a
/// path component").
fn write_path(path: &[u8], out: &mut Vec<u8>) {
    let base = out.len();
    let mut trailing_slash = false;
    for segment in path.split(|&b| b == b'/' || b == b'\\') {
        match segment {
            b"" | b"." => trailing_slash = true,
            b".." => {
                trailing_slash = true;
                let parent = out[base..]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(base, |i| base + i);
                out.truncate(parent);
            }
            _ => {
                trailing_slash = false;
                out.push(b'/');
                escape_into(segment, out);
            }
        }
    }
    if out.len() == base || trailing_slash {
        out.push(b'/');
    }
}

/// SB v4: "percent-escape all characters that are <= ASCII 32, >= 127, "#", or "%". The
/// escapes should use uppercase hex characters."
fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        push_escaped(out, b);
    }
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if b <= 0x20 || b >= 0x7f || b == b'#' || b == b'%' {
        out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
    } else {
        out.push(b);
    }
}

/// The canonical form is ASCII by construction, so the lossy branch never runs.
fn ascii_to_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Expressions.

fn nonempty_query(query: Option<&[u8]>) -> Option<&[u8]> {
    query.filter(|q| !q.is_empty())
}

fn is_ip_host(host: &[u8]) -> bool {
    host.first() == Some(&b'[') || parse_ipv4(host).is_some()
}

/// Fills `starts` with offsets into `host` of the hosts to try, in the spec's order: the exact
/// host (offset 0), then the suffixes made of the last 5, 4, 3 and 2 labels that are shorter
/// than the host. SB v4: "Up to 4 hostnames formed by starting with the last five components
/// and successively removing the leading component. The top-level domain can be skipped.
/// These additional hostnames should not be checked if the host is an IP address."
fn host_suffix_starts(host: &[u8], starts: &mut [usize; MAX_HOSTS]) -> usize {
    starts[0] = 0;
    if is_ip_host(host) {
        return 1;
    }
    // dots[k] = index of the (k+1)-th dot from the end; the suffix of k+1 labels starts after it.
    let mut dots = [0usize; MAX_HOSTS];
    let mut dot_count = 0;
    for (i, &b) in host.iter().enumerate().rev() {
        if b == b'.' {
            dots[dot_count] = i;
            dot_count += 1;
            if dot_count == dots.len() {
                break;
            }
        }
    }
    let mut n = 1;
    // A suffix of `labels` labels exists and is shorter than the host when `labels <= dots`.
    for labels in (2..=dot_count.min(MAX_HOSTS)).rev() {
        starts[n] = dots[labels - 1] + 1;
        n += 1;
    }
    n
}

/// Fills `lens` with the lengths of the path prefixes to try: SB v4, "the 4 paths formed by
/// starting at the root (/) and successively appending path components, including a trailing
/// slash", leaving out the one equal to the exact path (visited already).
fn path_prefix_lens(path: &[u8], lens: &mut [usize; MAX_PATH_PREFIXES]) -> usize {
    let mut n = 0;
    for (i, &b) in path.iter().enumerate() {
        if b != b'/' {
            continue;
        }
        if n == lens.len() {
            break;
        }
        if i + 1 != path.len() {
            lens[n] = i + 1;
            n += 1;
        } else {
            // The exact path ends here; it still counts as one of the four.
            break;
        }
    }
    n
}

fn emit<B>(
    buf: &mut ExprBuf,
    pieces: &[&[u8]],
    f: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
) -> ControlFlow<B> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let Some(dest) = buf.bytes.get_mut(..len) else {
        return ControlFlow::Continue(());
    };
    let mut at = 0;
    for piece in pieces {
        dest[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    f(dest)
}

// ---------------------------------------------------------------------------------------------
// Finding URLs in text.

/// Bytes a token may contain: printable ASCII except the quotes and angle brackets that
/// delimit links in text and markup.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\'')
}

/// The first URL-like token in `bytes[start..end]`, a run of token bytes.
fn find_in_run(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    for i in start..end {
        if !bytes[i].is_ascii_alphanumeric() {
            continue;
        }
        if let Some(scheme_len) = http_scheme_len(&bytes[i..end]) {
            let host_start = i + scheme_len;
            if bytes
                .get(host_start)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[')
                && host_start < end
            {
                return Some((i, trim_token_end(bytes, i, end)));
            }
        }
        if !at_word_start(bytes, start, i) {
            continue;
        }
        if let Some(host_end) = bare_host_end(bytes, i, end) {
            let url_end = match bytes.get(host_end) {
                Some(b'/' | b':' | b'?' | b'#') if host_end < end => end,
                _ => host_end,
            };
            let token_end = trim_token_end(bytes, i, url_end);
            if token_end > i {
                return Some((i, token_end));
            }
        }
    }
    None
}

fn http_scheme_len(s: &[u8]) -> Option<usize> {
    let starts_with = |p: &[u8]| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p);
    if starts_with(b"http://") {
        Some(7)
    } else if starts_with(b"https://") {
        Some(8)
    } else {
        None
    }
}

/// A bare host starts a word: not inside another name, a path (`files/report.pdf`) or an
/// e-mail address (`help@bank.com`).
fn at_word_start(bytes: &[u8], run_start: usize, i: usize) -> bool {
    i == run_start
        || !(bytes[i - 1].is_ascii_alphanumeric()
            || matches!(
                bytes[i - 1],
                b'.' | b'-' | b'_' | b'@' | b'%' | b'/' | b'\\'
            ))
}

/// End of a bare host (`label.label[.label…]`) starting at `i`, if it looks like a domain: at
/// least two labels, the last of 2+ ASCII letters (or any, after `www.`), and not followed by
/// `@` (an e-mail address).
fn bare_host_end(bytes: &[u8], i: usize, end: usize) -> Option<usize> {
    let mut labels = 0;
    let mut last_label = (i, i);
    let mut j = i;
    loop {
        let label_start = j;
        while j < end && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
            j += 1;
        }
        if j == label_start {
            break;
        }
        labels += 1;
        last_label = (label_start, j);
        if j + 1 < end && bytes[j] == b'.' && bytes[j + 1].is_ascii_alphanumeric() {
            j += 1;
        } else {
            break;
        }
    }
    let host_end = last_label.1;
    if labels < 2 || bytes.get(host_end) == Some(&b'@') {
        return None;
    }
    let tld = &bytes[last_label.0..last_label.1];
    let www = bytes.len() >= i + 4 && bytes[i..i + 4].eq_ignore_ascii_case(b"www.");
    let tld_ok = tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    (www || tld_ok).then_some(host_end)
}

/// Trims sentence punctuation after a link, and closing brackets that close nothing inside
/// it (`(see evil.com/x)` → `evil.com/x`, but `…/Fraud_(crime)` keeps its `)`).
fn trim_token_end(bytes: &[u8], start: usize, end: usize) -> usize {
    let token = &bytes[start..end];
    let count = |c: u8| token.iter().filter(|&&b| b == c).count();
    let open = [count(b'('), count(b'['), count(b'{')];
    let mut close = [count(b')'), count(b']'), count(b'}')];
    let mut e = end;
    while e > start {
        let kind = match bytes[e - 1] {
            b'.' | b',' | b';' | b':' | b'!' | b'?' => None,
            b')' => Some(0),
            b']' => Some(1),
            b'}' => Some(2),
            _ => break,
        };
        if let Some(k) = kind {
            if close[k] <= open[k] {
                break;
            }
            close[k] -= 1;
        }
        e -= 1;
    }
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn canon(url: &[u8]) -> Result<String, UrlError> {
        let mut scratch = UrlScratch::new();
        let c = canonicalize(url, &mut scratch)?;
        let mut out = Vec::new();
        c.full(&mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    fn expressions(url: &str) -> Vec<String> {
        let mut scratch = UrlScratch::new();
        let c = canonicalize(url.as_bytes(), &mut scratch).unwrap();
        expressions_of(&c)
    }

    fn expressions_of(c: &Canonical<'_>) -> Vec<String> {
        let mut buf = ExprBuf::new();
        let mut all = Vec::new();
        let none: Option<()> = for_each_expression(c, &mut buf, |e| {
            all.push(String::from_utf8(e.to_vec()).unwrap());
            ControlFlow::Continue(())
        });
        assert!(none.is_none());
        all
    }

    fn matches(url: &str, rule: &str) -> bool {
        let want = rule_expression(rule).unwrap();
        let mut scratch = UrlScratch::new();
        let Ok(c) = canonicalize(url.as_bytes(), &mut scratch) else {
            return false;
        };
        let mut buf = ExprBuf::new();
        for_each_expression(&c, &mut buf, |e| {
            if e == want.as_bytes() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_some()
    }

    /// Every canonicalisation test case listed on the Safe Browsing v4 "URLs and Hashing" page
    /// (v4 drops the port: `www.gotaport.com:1234/` → `www.gotaport.com/`).
    #[test]
    fn safe_browsing_v4_canonicalization_cases() {
        let cases: &[(&[u8], &str)] = &[
            (b"http://host/%25%32%35", "http://host/%25"),
            (b"http://host/%25%32%35%25%32%35", "http://host/%25%25"),
            (b"http://host/%2525252525252525", "http://host/%25"),
            (b"http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
            (b"http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
            (b"http://www.google.com/", "http://www.google.com/"),
            (
                b"http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
                "http://168.188.99.26/.secure/www.ebay.com/",
            ),
            (
                b"http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            ),
            (
                b"http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
                "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
            ),
            (b"http://3279880203/blah", "http://195.127.0.11/blah"),
            (b"http://www.google.com/blah/..", "http://www.google.com/"),
            (b"www.google.com/", "http://www.google.com/"),
            (b"www.google.com", "http://www.google.com/"),
            (b"http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
            (b"http://www.GOOgle.com/", "http://www.google.com/"),
            (b"http://www.google.com.../", "http://www.google.com/"),
            (b"http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
            (b"http://www.google.com/q?", "http://www.google.com/q?"),
            (b"http://www.google.com/q?r?", "http://www.google.com/q?r?"),
            (b"http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
            (b"http://evil.com/foo#bar#baz", "http://evil.com/foo"),
            (b"http://evil.com/foo;", "http://evil.com/foo;"),
            (b"http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
            (b"http://\x01\x80.com/", "http://%01%80.com/"),
            (b"http://notrailingslash.com", "http://notrailingslash.com/"),
            (b"http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
            (b"  http://www.google.com/  ", "http://www.google.com/"),
            (b"http:// leadingspace.com/", "http://%20leadingspace.com/"),
            (b"http://%20leadingspace.com/", "http://%20leadingspace.com/"),
            (b"%20leadingspace.com/", "http://%20leadingspace.com/"),
            (b"https://www.securesite.com/", "https://www.securesite.com/"),
            (b"http://host.com/ab%23cd", "http://host.com/ab%23cd"),
            (
                b"http://host.com//twoslashes?more//slashes",
                "http://host.com/twoslashes?more//slashes",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                canon(input).as_deref(),
                Ok(*want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The suffix/prefix examples of the v4 page, in its order.
    #[test]
    fn safe_browsing_v4_expression_examples() {
        assert_eq!(
            expressions("http://a.b.c/1/2.html?param=1"),
            [
                "a.b.c/1/2.html?param=1",
                "a.b.c/1/2.html",
                "a.b.c/",
                "a.b.c/1/",
                "b.c/1/2.html?param=1",
                "b.c/1/2.html",
                "b.c/",
                "b.c/1/",
            ]
        );
        // b.c.d.e.f.g is skipped: only the last five labels and the full host are used.
        assert_eq!(
            expressions("http://a.b.c.d.e.f.g/1.html"),
            [
                "a.b.c.d.e.f.g/1.html",
                "a.b.c.d.e.f.g/",
                "c.d.e.f.g/1.html",
                "c.d.e.f.g/",
                "d.e.f.g/1.html",
                "d.e.f.g/",
                "e.f.g/1.html",
                "e.f.g/",
                "f.g/1.html",
                "f.g/",
            ]
        );
        assert_eq!(expressions("http://1.2.3.4/1/"), ["1.2.3.4/1/", "1.2.3.4/"]);
    }

    #[test]
    fn expression_edge_cases() {
        // At most 4 prefixes from the root; the exact path is not repeated among them.
        assert_eq!(
            expressions("http://a.b.c/1/2/3/4/5/"),
            [
                "a.b.c/1/2/3/4/5/",
                "a.b.c/",
                "a.b.c/1/",
                "a.b.c/1/2/",
                "a.b.c/1/2/3/",
                "b.c/1/2/3/4/5/",
                "b.c/",
                "b.c/1/",
                "b.c/1/2/",
                "b.c/1/2/3/",
            ]
        );
        assert_eq!(
            expressions("http://a.com/a/b/c/d/e.html?123"),
            [
                "a.com/a/b/c/d/e.html?123",
                "a.com/a/b/c/d/e.html",
                "a.com/",
                "a.com/a/",
                "a.com/a/b/",
                "a.com/a/b/c/",
            ]
        );
        // An empty query adds no expression; a single-label host has no suffix.
        assert_eq!(expressions("http://a.b/?"), ["a.b/"]);
        assert_eq!(expressions("http://b/"), ["b/"]);
        assert_eq!(
            expressions("http://a.b.c.d.e/1.html"),
            [
                "a.b.c.d.e/1.html",
                "a.b.c.d.e/",
                "b.c.d.e/1.html",
                "b.c.d.e/",
                "c.d.e/1.html",
                "c.d.e/",
                "d.e/1.html",
                "d.e/",
            ]
        );
        // IP hosts are tried exactly, in every spelling.
        assert_eq!(
            expressions("http://0x7f.1/a"),
            ["127.0.0.1/a", "127.0.0.1/"]
        );
        assert_eq!(
            expressions("http://[2001:470:1:18::114]/a/b"),
            [
                "[2001:470:1:18::114]/a/b",
                "[2001:470:1:18::114]/",
                "[2001:470:1:18::114]/a/",
            ]
        );
        // The full 5 x 6 grid.
        let all = expressions("http://a.b.c.d.e.f/1/2/3/4/x?q");
        assert_eq!(all.len(), 30);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 30);
    }

    #[test]
    fn for_each_expression_stops_on_break() {
        let mut scratch = UrlScratch::new();
        let c = canonicalize(b"http://a.b.c/1/2.html", &mut scratch).unwrap();
        let mut buf = ExprBuf::new();
        let mut seen = 0;
        let hit = for_each_expression(&c, &mut buf, |e| {
            seen += 1;
            if e == b"b.c/" {
                ControlFlow::Break(seen)
            } else {
                ControlFlow::Continue(())
            }
        });
        // a.b.c/1/2.html, a.b.c/, a.b.c/1/, b.c/1/2.html, then b.c/.
        assert_eq!(hit, Some(5));
        assert_eq!(seen, 5);
    }

    #[test]
    fn long_expressions_are_skipped_not_truncated() {
        let q = "q".repeat(MAX_EXPRESSION_LEN);
        let url = format!("http://a.b/x?{q}");
        assert_eq!(expressions(&url), ["a.b/x", "a.b/"]);
        assert_eq!(
            rule_expression(&url),
            Err(UrlError::ExpressionTooLong {
                len: "a.b/x?".len() + MAX_EXPRESSION_LEN,
                max: MAX_EXPRESSION_LEN
            })
        );
    }

    #[test]
    fn ipv4_spellings() {
        let cases = [
            ("http://255.0.0.1/", "http://255.0.0.1/"),
            ("http://12.0x12.01234/", "http://12.18.2.156/"),
            ("http://012.034.01.055/", "http://10.28.1.45/"),
            ("http://0x12.0x43.0x44.0x01/", "http://18.67.68.1/"),
            ("http://0X12.0X43.0X44.0X01/", "http://18.67.68.1/"),
            ("http://167838211/", "http://10.1.2.3/"),
            ("http://4294967295/", "http://255.255.255.255/"),
            ("http://1.65535/", "http://1.0.255.255/"),
            ("http://1.2.65535/", "http://1.2.255.255/"),
            ("http://0x/", "http://0.0.0.0/"),
            ("http://1.2.3.4./", "http://1.2.3.4/"),
            ("http://00000000000000000001.2.3.4/", "http://1.2.3.4/"),
            // Not addresses: stay names.
            ("http://4294967296/", "http://4294967296/"),
            ("http://123.123.0.0.1/", "http://123.123.0.0.1/"),
            ("http://1.2.3.00x0/", "http://1.2.3.00x0/"),
            ("http://276.2.3/", "http://276.2.3/"),
            ("http://1.2.256.4/", "http://1.2.256.4/"),
            ("http://1.2.65536/", "http://1.2.65536/"),
            ("http://08.1.1.1/", "http://08.1.1.1/"),
            ("http://1.2.3.4a/", "http://1.2.3.4a/"),
        ];
        for (input, want) in cases {
            assert_eq!(
                canonicalize_to_string(input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
    }

    #[test]
    fn ipv6_hosts() {
        let cases = [
            ("http://[2001:0DB8:0000::1]/", "http://[2001:db8::1]/"),
            ("http://[::ffff:1.2.3.4]/", "http://1.2.3.4/"),
            ("http://[64:ff9b::1.2.3.4]:8080/x", "http://1.2.3.4/x"),
            (
                "[2001:470:1:18::114]/a/b",
                "http://[2001:470:1:18::114]/a/b",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                canonicalize_to_string(input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
        assert_eq!(
            canonicalize_to_string("http://[evil]/"),
            Err(UrlError::InvalidHost)
        );
        assert_eq!(
            canonicalize_to_string("http://[::1/"),
            Err(UrlError::InvalidHost)
        );
        assert_eq!(
            canonicalize_to_string("http://[::1]x/"),
            Err(UrlError::InvalidHost)
        );
        assert_eq!(
            canonicalize_to_string("http://.[::1]/"),
            Err(UrlError::InvalidHost)
        );
        assert_eq!(canon(b"%2e%5B"), Err(UrlError::InvalidHost));
    }

    #[test]
    fn userinfo_port_and_browser_quirks() {
        let cases = [
            // Userinfo ends at the last '@'; the port is dropped.
            ("http://bank.com@evil.com/", "http://evil.com/"),
            ("http://a@b@evil.com:8080/x", "http://evil.com/x"),
            ("http://user:pw@Evil.COM:443/", "http://evil.com/"),
            // Backslash behaves as '/', as in browsers.
            ("http://evil.com\\@bank.com/", "http://evil.com/@bank.com/"),
            ("http://evil.com\\a\\b", "http://evil.com/a/b"),
            // Any slashes after http:.
            ("http:evil.com/x", "http://evil.com/x"),
            ("HTTPS:///evil.com", "https://evil.com/"),
            // Escaped delimiters are delimiters once unescaped.
            ("http%3A%2F%2Fwackyurl.com:80/", "http://wackyurl.com/"),
            ("http://evil.com%2Fpath%3Fq=1", "http://evil.com/path?q=1"),
            (
                "www.google.com:8080/foo.html",
                "http://www.google.com/foo.html",
            ),
            ("www.google.com:80", "http://www.google.com/"),
            // Dot segments, including escaped dots.
            (
                "http://a.com/foo/.././bar/./../foo.html",
                "http://a.com/foo.html",
            ),
            ("http://a.com//a//b///c////", "http://a.com/a/b/c/"),
            ("http://a.com/%2e%2E/x/%2e", "http://a.com/x/"),
            ("http://a.com/..", "http://a.com/"),
            ("http://a.com/a/b/c/../../..", "http://a.com/"),
            // Path case is kept; the query is not resolved.
            ("http://a.com/A/./B?x/../y", "http://a.com/A/B?x/../y"),
            ("http://some%1bhost.com/%1b", "http://some%1Bhost.com/%1B"),
            ("http://W!eird<>Ho$^.com/", "http://w!eird<>ho$^.com/"),
            // A decoded newline is data, not removed.
            ("http://a.com/%0a", "http://a.com/%0A"),
            // C0 controls and spaces at both ends are trimmed (DEL is not one of them).
            ("\x00\x1f http://a.com/ \x7f", "http://a.com/%20%7F"),
            ("\x00\x1f http://a.com/x \x01", "http://a.com/x"),
        ];
        for (input, want) in cases {
            assert_eq!(
                canonicalize_to_string(input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
    }

    #[test]
    fn idn_hosts_become_punycode() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"http://www.\xC3\xBCmlat.com/",
                "http://www.xn--mlat-zra.com/",
            ),
            (
                "http://中国银行.中国/".as_bytes(),
                "http://xn--fiqs8s856bruk.xn--fiqs8s/",
            ),
            (b"http://%E4%B8%AD%E5%9B%BD.cn/", "http://xn--fiqs8s.cn/"),
            // Full-width letters and the ideographic full stop map to ASCII (UTS #46).
            ("http://ｅｖｉｌ。com/".as_bytes(), "http://evil.com/"),
            // Not UTF-8: kept as bytes and escaped.
            (b"http://\xff\xfe.com/", "http://%FF%FE.com/"),
        ];
        for (input, want) in cases {
            assert_eq!(
                canon(input).as_deref(),
                Ok(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(canon(b""), Err(UrlError::Empty));
        assert_eq!(canon(b" \t\r\n "), Err(UrlError::Empty));
        for no_host in [
            &b"#ref"[..],
            b"/blah",
            b"?query#ref",
            b"http://",
            b"http://#ref",
            b"http://?query",
            b"http://user@/x",
            b"http://.../",
            b"http://:80/",
            b":",
        ] {
            assert_eq!(
                canon(no_host),
                Err(UrlError::NoHost),
                "{:?}",
                String::from_utf8_lossy(no_host)
            );
        }
        for other in [
            &b"ftp://ftp.myfiles.com/"[..],
            b"mailto:bryner@google.com",
            b"javascript:alert(1)",
        ] {
            assert_eq!(canon(other), Err(UrlError::UnsupportedScheme));
        }
        let long = vec![b'a'; MAX_URL_LEN + 1];
        assert_eq!(
            canon(&long),
            Err(UrlError::TooLong {
                len: MAX_URL_LEN + 1,
                max: MAX_URL_LEN
            })
        );
        // Within the input bound, but escaping triples it.
        let mut wide = b"http://a.com/".to_vec();
        wide.extend(std::iter::repeat_n(0xffu8, 4000));
        assert!(matches!(
            canon(&wide),
            Err(UrlError::CanonicalTooLong { .. })
        ));
        // Messages say what and why.
        let msg = UrlError::TooLong {
            len: 9000,
            max: 8192,
        }
        .to_string();
        assert!(msg.contains("9000") && msg.contains("8192"), "{msg}");
        assert!(UrlError::UnsupportedScheme.to_string().contains("http"));
    }

    #[test]
    fn deep_nesting_unescapes_in_linear_time() {
        // 8 KiB of "%25" nesting needs ~2700 naive passes; the stack decoder needs one.
        let mut url = b"http://a.com/%".to_vec();
        while url.len() + 2 <= MAX_URL_LEN {
            url.extend_from_slice(b"25");
        }
        assert_eq!(canon(&url).as_deref(), Ok("http://a.com/%25"));
        assert_eq!(
            canon(b"http://a.com/%%32%35").as_deref(),
            Ok("http://a.com/%25")
        );
        assert_eq!(
            canon(b"http://a.com/%2%41").as_deref(),
            Ok("http://a.com/*")
        );
    }

    #[test]
    fn rule_expressions() {
        let cases = [
            ("evil.example/login/", "evil.example/login/"),
            ("https://Evil.Example/login/", "evil.example/login/"),
            ("http://1.2.3.4/x.php?a=1", "1.2.3.4/x.php?a=1"),
            ("EVIL.example", "evil.example/"),
            (
                "http://user@evil.example:8443/a/./b#frag",
                "evil.example/a/b",
            ),
            ("evil.example/q?", "evil.example/q"),
            ("http://3279880203/", "195.127.0.11/"),
        ];
        for (rule, want) in cases {
            assert_eq!(rule_expression(rule).as_deref(), Ok(want), "{rule}");
        }
        assert_eq!(
            rule_expression("ftp://x.com/"),
            Err(UrlError::UnsupportedScheme)
        );
    }

    #[test]
    fn matching_follows_the_expressions() {
        // A site rule covers the site and its subdomains, any path.
        assert!(matches("http://evil.example/", "evil.example"));
        assert!(matches("https://WWW.evil.example/a/b?c=1", "evil.example/"));
        assert!(!matches("http://notevil.example/", "evil.example/"));
        assert!(!matches("http://evil.example.com/", "evil.example/"));
        // A directory rule covers the directory (within the first three levels).
        assert!(matches(
            "http://evil.example/login/x.php?u=1",
            "evil.example/login/"
        ));
        assert!(!matches("http://evil.example/login", "evil.example/login/"));
        assert!(!matches(
            "http://evil.example/a/b/c/d/x",
            "evil.example/a/b/c/d/"
        ));
        // A file rule covers that path with any query, a query rule only that query.
        assert!(matches(
            "http://evil.example/x.php?a=1",
            "evil.example/x.php"
        ));
        assert!(matches(
            "http://1.2.3.4/x.php?a=1",
            "http://1.2.3.4/x.php?a=1"
        ));
        assert!(!matches(
            "http://1.2.3.4/x.php?a=2",
            "http://1.2.3.4/x.php?a=1"
        ));
        assert!(!matches("http://1.2.3.4/x.php/y", "evil.example/x.php"));
        // IP hosts match exactly only; suffixes stop at five labels.
        assert!(!matches("http://1.2.3.4/", "2.3.4/"));
        assert!(!matches("http://a.b.c.d.e.f.g/", "b.c.d.e.f.g/"));
        assert!(matches("http://a.b.c.d.e.f.g/", "c.d.e.f.g/"));
        assert!(matches("http://a.b.c.d.e.f/", "b.c.d.e.f/"));
        assert!(!matches("http://a.b.c.d.e.f/", "f/"));
        // Obfuscated spellings still match.
        assert!(matches(
            "http://%65vil.EXAMPLE./%6c%6fgin/../login/",
            "evil.example/login/"
        ));
        assert!(matches("http://0xc37f000b/", "195.127.0.11/"));
    }

    #[test]
    fn fitting_urls_do_not_grow_the_scratch() {
        let mut scratch = UrlScratch::new();
        let work_cap = scratch.work.capacity();
        let out_cap = scratch.out.capacity();
        let urls: [&[u8]; 4] = [
            b"http://evil.example/login/x.php?u=1#frag",
            b"http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/",
            b"http://[2001:db8::1]/x",
            &[b'a'; DEFAULT_SCRATCH_URL_LEN],
        ];
        for url in urls {
            let _ = canonicalize(url, &mut scratch).unwrap();
            assert_eq!(scratch.work.capacity(), work_cap);
            assert_eq!(scratch.out.capacity(), out_cap);
        }
        // A longer one grows it once; the next one of that size reuses the room.
        let mut long_url = b"http://a.b/".to_vec();
        long_url.extend(std::iter::repeat_n(b'x', DEFAULT_SCRATCH_URL_LEN + 1000));
        let _ = canonicalize(&long_url, &mut scratch).unwrap();
        let grown = (scratch.work.capacity(), scratch.out.capacity());
        let _ = canonicalize(&long_url, &mut scratch).unwrap();
        assert_eq!((scratch.work.capacity(), scratch.out.capacity()), grown);
    }

    fn found(text: &str) -> Vec<&str> {
        find_urls(text).collect()
    }

    #[test]
    fn find_urls_in_chinese_sms() {
        assert_eq!(found("点击http://evil.cn/x领取"), ["http://evil.cn/x"]);
        assert_eq!(
            found(
                "【中国银行】您的账户存在风险，请点击http://boc-verify.cn/login?id=88 进行验证。"
            ),
            ["http://boc-verify.cn/login?id=88"]
        );
        assert_eq!(
            found("恭喜您中奖！详情请访问 www.lucky-prize.com 。回T退订"),
            ["www.lucky-prize.com"]
        );
        assert_eq!(
            found("您的快递异常，请登录：sf-express-help.top/pay（24小时内有效）"),
            ["sf-express-help.top/pay"]
        );
        assert_eq!(
            found("【ETC】认证失效，速登HTTPS://ETC-gov.cc/a?b=1，逾期停用。客服95588"),
            ["HTTPS://ETC-gov.cc/a?b=1"]
        );
        assert_eq!(
            found("退款请联系客服邮箱 kefu@refund-help.cn 谢谢"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn find_urls_in_english_sms() {
        assert_eq!(
            found("USPS: Your package is on hold. Update your address at https://usps-redelivery.top/track?id=A1B2."),
            ["https://usps-redelivery.top/track?id=A1B2"]
        );
        assert_eq!(
            found("Visit (example.com/login) or www.Bank-Secure.co.uk, today!"),
            ["example.com/login", "www.Bank-Secure.co.uk"]
        );
        assert_eq!(
            found("See http://en.wikipedia.org/wiki/Fraud_(crime). Or visithttp://evil.com/x!"),
            [
                "http://en.wikipedia.org/wiki/Fraud_(crime)",
                "http://evil.com/x"
            ]
        );
        assert_eq!(
            found(r#"<a href="http://evil.cn/a">click</a> and 'evil.io:8080/x'"#),
            ["http://evil.cn/a", "evil.io:8080/x"]
        );
        // E-mail addresses, numbers and abbreviations are not links.
        assert_eq!(
            found("Reply to help@evil-support.com or jane.doe@evil.com, mailto:bob@x.com"),
            Vec::<&str>::new()
        );
        assert_eq!(
            found("Pay 10.50 USD e.g. now; v1.2.3 ok; U.S. files/report.pdf http:// alone"),
            Vec::<&str>::new()
        );
        assert_eq!(found("a.com b.com,c.org"), ["a.com", "b.com", "c.org"]);
        assert_eq!(found(""), Vec::<&str>::new());
    }

    #[test]
    fn found_urls_canonicalize() {
        let text = "点击http://Evil.CN/./x领取 或 www.evil.cn/y。";
        let got: Vec<String> = find_urls(text)
            .map(|u| canonicalize_to_string(u).unwrap())
            .collect();
        assert_eq!(got, ["http://evil.cn/x", "http://www.evil.cn/y"]);
    }

    // ----- property tests ------------------------------------------------------------------

    /// Bytes biased towards what makes URL parsing interesting.
    fn url_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        const PIECES: &[&[u8]] = &[
            b"%",
            b"%25",
            b"2",
            b"5",
            b"3",
            b"e",
            b"E",
            b"A",
            b"f",
            b"/",
            b"\\",
            b".",
            b"..",
            b"@",
            b":",
            b"?",
            b"#",
            b"[",
            b"]",
            b"http://",
            b"https:",
            b"HTTP://",
            b"www.",
            b"a",
            b"B",
            b"com",
            b"0x",
            b"1",
            b"255",
            b"08",
            b" ",
            b"\t",
            b"\x80",
            b"\xc3\xbc",
            "中".as_bytes(),
            b"%E4%B8%AD",
            b"::",
            b"ffff",
            b"xn--",
            b"%2e",
            b"%2F",
            b"%3F",
            b"%40",
            b"%5B",
            b"-",
            "。".as_bytes(),
            "ｅ".as_bytes(),
            b"\x00",
            b"\x7f",
        ];
        prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|v| v.concat())
    }

    fn any_url() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![prop::collection::vec(any::<u8>(), 0..300), url_like_bytes()]
    }

    fn full_of(c: &Canonical<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        c.full(&mut v);
        v
    }

    proptest! {
        #[test]
        fn canonicalize_never_panics(url in any_url()) {
            let mut scratch = UrlScratch::new();
            let _ = canonicalize(&url, &mut scratch);
        }

        #[test]
        fn canonicalize_is_idempotent(url in any_url()) {
            let mut first = UrlScratch::new();
            if let Ok(c) = canonicalize(&url, &mut first) {
                let full = full_of(&c);
                prop_assert!(full.is_ascii());
                let mut second = UrlScratch::new();
                let again = canonicalize(&full, &mut second);
                prop_assert_eq!(again, Ok(c), "canonical form {:?}", String::from_utf8_lossy(&full));
            }
        }

        #[test]
        fn expressions_are_few_and_distinct(url in any_url()) {
            let mut scratch = UrlScratch::new();
            if let Ok(c) = canonicalize(&url, &mut scratch) {
                let all = expressions_of(&c);
                prop_assert!(!all.is_empty() && all.len() <= 30, "{} expressions", all.len());
                let distinct: HashSet<_> = all.iter().collect();
                prop_assert_eq!(distinct.len(), all.len(), "{:?}", all);
            }
        }

        /// A URL whose expression is the rule's matches it: the rule's expression is a fixed
        /// point, and `http://` + expression yields it as its first expression.
        #[test]
        fn rule_expression_matches_its_own_url(rule in any_url()) {
            let rule = String::from_utf8_lossy(&rule).into_owned();
            if let Ok(e) = rule_expression(&rule) {
                let again = rule_expression(&e);
                prop_assert_eq!(again.as_deref(), Ok(e.as_str()));
                let url = format!("http://{e}");
                prop_assert!(matches(&url, &rule), "{url} should match {rule}");
                let all = expressions(&url);
                prop_assert_eq!(all.first(), Some(&e));
            }
        }
    }

    /// Parts of a URL and of a rule drawn from a small alphabet so that they often match.
    fn url_and_rule() -> impl Strategy<Value = (String, String)> {
        let label = prop::sample::select(&["a", "b", "evil", "com", "cn", "1", "0x1", "W"][..]);
        let host = prop_oneof![
            prop::collection::vec(label, 1..8).prop_map(|l| l.join(".")),
            Just("1.2.3.4".to_owned()),
            Just("16909060".to_owned()),
        ];
        let seg = prop::sample::select(&["a", "b", "..", ".", "", "c.html", "%2e", "A", "%41"][..]);
        let path = (prop::collection::vec(seg, 0..7), any::<bool>())
            .prop_map(|(s, slash)| format!("/{}{}", s.join("/"), if slash { "/" } else { "" }));
        let query = prop::option::of(prop::sample::select(&["x=1", "", "a/b", "q?r"][..]));
        let scheme = prop::sample::select(&["http://", "https://", "", "HTTP://"][..]);
        let url = (scheme, host, path, query).prop_map(|(s, h, p, q)| {
            format!(
                "{s}{h}{p}{}",
                q.map(|q| format!("?{q}")).unwrap_or_default()
            )
        });
        let rule_tail = (
            0usize..9,
            0usize..7,
            any::<bool>(),
            prop::option::of(prop::sample::select(&["x=1", "", "y"][..])),
        );
        (url, rule_tail).prop_map(|(url, (host_drop, path_keep, slash, q))| {
            // Derive the rule from the URL: a host suffix, a path prefix, maybe a query.
            let canon = canonicalize_to_string(&url).unwrap_or_default();
            let rest = canon.split_once("://").map_or("", |(_, r)| r);
            let (host, path_query) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let path = path_query.split('?').next().unwrap_or("/");
            let labels: Vec<&str> = host.split('.').collect();
            let host = labels[host_drop.min(labels.len() - 1)..].join(".");
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let keep = path_keep.min(segs.len());
            let mut rule = format!("{host}/{}", segs[..keep].join("/"));
            if slash && keep > 0 {
                rule.push('/');
            }
            if let Some(q) = q {
                rule.push('?');
                rule.push_str(q);
            }
            (url, rule)
        })
    }

    /// The spec's matching rule restated on canonical strings, independent of the iteration.
    fn model_matches(url: &str, rule: &str) -> bool {
        let parts = |s: &str| {
            let canon = canonicalize_to_string(s).unwrap();
            let rest = canon.split_once("://").unwrap().1.to_owned();
            let (host, path_query) = rest.split_at(rest.find('/').unwrap());
            let (path, query) = match path_query.split_once('?') {
                Some((p, q)) if !q.is_empty() => (p.to_owned(), Some(q.to_owned())),
                Some((p, _)) => (p.to_owned(), None),
                None => (path_query.to_owned(), None),
            };
            (host.to_owned(), path, query)
        };
        let (uh, up, uq) = parts(url);
        let (rh, rp, rq) = parts(rule);
        let is_ip = uh.starts_with('[') || parse_ipv4(uh.as_bytes()).is_some();
        let r_labels = rh.split('.').count();
        let host_ok = rh == uh
            || (!is_ip
                && (2..=5).contains(&r_labels)
                && r_labels < uh.split('.').count()
                && uh.ends_with(&format!(".{rh}")));
        let path_ok = match rq {
            Some(q) => uq.as_deref() == Some(q.as_str()) && rp == up,
            None => {
                rp == up
                    || (rp.ends_with('/') && up.starts_with(&rp) && rp.matches('/').count() <= 4)
            }
        };
        host_ok && path_ok
    }

    proptest! {
        /// For any URL u and rule r: u matches r iff rule_expression(r) is among u's
        /// expressions, and that agrees with the spec's rule stated directly.
        #[test]
        fn matching_agrees_with_the_spec_model((url, rule) in url_and_rule()) {
            prop_assume!(canonicalize_to_string(&url).is_ok() && rule_expression(&rule).is_ok());
            prop_assert_eq!(matches(&url, &rule), model_matches(&url, &rule), "url {} rule {}", url, rule);
        }

        /// Every expression of a URL, taken as a rule, matches that URL. The one exception is
        /// a host suffix that reads as a short IPv4 spelling (`2.3.4` of `a.1.2.3.4`): as a
        /// rule it becomes `2.3.0.4`, so no rule can name it, and no rule is lost either.
        #[test]
        fn each_expression_as_a_rule_matches((url, _rule) in url_and_rule()) {
            prop_assume!(canonicalize_to_string(&url).is_ok());
            for e in expressions(&url) {
                if rule_expression(&e).as_deref() == Ok(e.as_str()) {
                    prop_assert!(matches(&url, &e), "{} should match {}", url, e);
                } else {
                    let host = e.split('/').next().unwrap_or_default();
                    prop_assert!(parse_ipv4(host.as_bytes()).is_some(), "{} from {}", e, url);
                }
            }
        }

        #[test]
        fn find_urls_never_panics_and_yields_slices(text in ".{0,200}") {
            for token in find_urls(&text) {
                prop_assert!(!token.is_empty() && token.is_ascii());
                prop_assert!(text.contains(token));
            }
        }
    }
}
