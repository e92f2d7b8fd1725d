//! The web plane's HTTP/1.1 proxy: an explicit forward proxy (absolute-form targets and CONNECT
//! tunnels) or a transparent one (origin-form + Host), screening every request with the engine.
//!
//! Per request: the host goes through [`Engine::check_domain`](dragnet_rules::Engine) and the
//! URL through `check_url` (the Safe Browsing canonicaliser wants the URL as seen on the wire,
//! `http://host/path?query`); [`combine`] picks the verdict that decides. Then:
//! - **block**: a warning page (403 by default, per category e.g. 451) in the client's language,
//!   or a 302 to the configured `warning_url` with the category and rule in the query;
//! - **warn**: the same 302 if `warning_url` is set, else the page with status 200 and a link
//!   back. There is no "continue anyway" link: that would need a bypass token per client, and a
//!   warning that one click removes is no warning. A carrier that wants one builds it on its own
//!   warning site (the 302 carries everything the site needs).
//! - **tag**: forwarded, with `X-Dragnet-Category: <category>` (configurable) added;
//! - **allow**: forwarded.
//!
//! A CONNECT tunnel shows only its host name: it is screened on the name (and on URL rules for
//! the whole site, `host/`), and a block or a warn both refuse it with the page and the block
//! status, since nothing can be shown inside a tunnel. Tunnels go to `connect_ports` only and
//! close after `tunnel_idle_ms` without traffic.
//!
//! Forwarding streams both bodies (nothing is buffered whole), removes the hop-by-hop fields
//! (RFC 9110 §7.6.1), adds `Via` (RFC 9110 §7.6.3) both ways, honours Max-Forwards for OPTIONS
//! and TRACE (RFC 9110 §7.6.2) and keeps a small bounded pool of idle keep-alive connections per
//! origin. Local answers: 400 for a request we cannot route, 414 for a URL too long to screen,
//! 502 when the origin cannot be reached, 504 when it does not answer in time, 508 for a request
//! that already carries our own Via (a loop). Requests hyper cannot parse get hyper's own 400.
//!
//! What it never does: TLS interception (a CONNECT tunnel is screened on its host name only),
//! protocol upgrades through the forward path (`Upgrade` is hop-by-hop and removed, so plain-HTTP
//! WebSocket is not proxied), HTTP/2, caching, per-request logging.
//!
//! Cost model: one snapshot load, one domain check and one URL check per request, with the
//! URL scratch reused per client connection; hyper allocates its request and header maps, and a
//! warning page is rendered (allocating) only when one is sent.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dragnet_rules::{Action, Scratch, Verdict};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Parts, PathAndQuery, Scheme};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{parse_sockaddr, ConfigError};
use crate::store::{Active, Plane, Store};

// ---------------------------------------------------------------------------------------------
// Configuration

/// How clients reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// Clients are configured to use us: absolute-form targets (RFC 9112 §3.2.2) and CONNECT.
    Forward,
    /// Traffic is redirected to us (policy routing, an L4 balancer): origin-form targets and a
    /// Host header (RFC 9112 §3.2.1); absolute-form is accepted too, as every server must.
    Transparent,
}

/// `[web.http]`: the HTTP proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    /// Listen addresses (`ip:port`).
    pub listen: Vec<String>,
    pub mode: HttpMode,
    /// Transparent mode: every request goes to this origin (`ip:port`) whatever its Host.
    /// Unset: the Host's address (`hosts`, else the system resolver).
    pub upstream: Option<String>,
    /// Static name → IP address map consulted before the resolver (tests, pinned origins).
    /// The port comes from the request.
    pub hosts: BTreeMap<String, String>,
    /// Status of a block page unless its category says otherwise (4xx or 5xx).
    pub block_status: u16,
    /// Per-category status of the block page, e.g. `{ "gambling" = 451 }` (RFC 7725).
    pub status_by_category: BTreeMap<String, u16>,
    /// Blocks and warns answer 302 here instead of a page, with `category`, `rule` and `action`
    /// as percent-encoded query parameters. Not used for CONNECT (a tunnel cannot redirect).
    pub warning_url: Option<String>,
    /// Page languages in order of preference; the first is the default. `en` and `zh-CN` have
    /// built-in pages; any other needs `templates.default.<lang>`.
    pub languages: Vec<String>,
    /// Page templates: category (or `default`) → language → HTML file. Placeholders:
    /// `{category}`, `{rule}`, `{appeal}`, `{host}`, `{back}`, `{action}`, `{lang}` (all
    /// HTML-escaped). A category without a template in a language uses that language's default.
    pub templates: BTreeMap<String, BTreeMap<String, String>>,
    /// Where a wrongly blocked user appeals (number or URL), shown on the page.
    pub appeal: String,
    /// Request header added to a tagged request (value: the category); removed from every
    /// request a client sends, so that a client cannot forge it. Empty: no header.
    pub tag_header: String,
    /// Our pseudonym in Via (RFC 9110 §7.6.3). A request that already carries it has looped.
    /// Give each gateway in a chain its own name.
    pub via: String,
    /// Ports CONNECT may open tunnels to; others get 403.
    pub connect_ports: Vec<u16>,
    /// Client connections at once; beyond it new ones are closed at once (counted).
    pub max_connections: usize,
    /// Idle keep-alive connections kept per origin (0: no pooling).
    pub pool_per_origin: usize,
    pub timeouts: HttpTimeouts,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            listen: vec!["127.0.0.1:8080".into()],
            mode: HttpMode::Forward,
            upstream: None,
            hosts: BTreeMap::new(),
            block_status: 403,
            status_by_category: BTreeMap::new(),
            warning_url: None,
            languages: vec!["en".into()],
            templates: BTreeMap::new(),
            appeal: "12381".into(),
            tag_header: "X-Dragnet-Category".into(),
            via: "dragnet".into(),
            connect_ports: vec![443],
            max_connections: 1024,
            pool_per_origin: 8,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// `[web.http.timeouts]`, milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTimeouts {
    /// TCP connect to an origin (and name resolution); beyond it: 504.
    pub connect_ms: u64,
    /// From the request handed to the origin to its response head (the upload of the request
    /// body counts); beyond it: 504.
    pub response_ms: u64,
    /// A client must send a complete request head within this time (also the idle time of a
    /// kept-alive client connection).
    pub client_header_ms: u64,
    /// An idle pooled origin connection older than this is not reused.
    pub pool_idle_ms: u64,
    /// A CONNECT tunnel with no byte in either direction for this long is closed, so that
    /// forgotten tunnels do not hold connection slots for ever.
    pub tunnel_idle_ms: u64,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect_ms: 5_000,
            response_ms: 60_000,
            client_header_ms: 30_000,
            pool_idle_ms: 30_000,
            tunnel_idle_ms: 300_000,
        }
    }
}

fn cfg_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

fn check_text(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(cfg_err(key, "contains a control character (CR, LF, NUL …)"));
    }
    Ok(())
}

/// A language tag as RFC 5646 spells it, loosely: letters, digits and `-`.
fn is_language_tag(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 35
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// Fields a client must not name, and we must not add, as the tag header.
const RESERVED_TAG_HEADERS: [&str; 6] = [
    "host",
    "via",
    "content-length",
    "max-forwards",
    "cookie",
    "authorization",
];

impl HttpConfig {
    /// Checks everything that can be checked without binding sockets (template files are
    /// read). Errors name the key under `web.http`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.listen.is_empty() {
            return Err(cfg_err(
                "web.http.listen",
                "the HTTP proxy is enabled but listens nowhere",
            ));
        }
        for (i, a) in self.listen.iter().enumerate() {
            parse_sockaddr(&format!("web.http.listen[{i}]"), a)?;
        }
        if let Some(u) = &self.upstream {
            if self.mode != HttpMode::Transparent {
                return Err(cfg_err(
                    "web.http.upstream",
                    "only used in transparent mode; a forward proxy goes where the request says",
                ));
            }
            parse_sockaddr("web.http.upstream", u)?;
        }
        self.parsed_hosts()?;
        check_status("web.http.block_status", self.block_status)?;
        for (cat, s) in &self.status_by_category {
            check_status(&format!("web.http.status_by_category.{cat}"), *s)?;
        }
        if let Some(u) = &self.warning_url {
            check_warning_url(u)?;
        }
        Pages::load(self)?;
        check_text("web.http.appeal", &self.appeal)?;
        self.parsed_tag_header()?;
        if self.via.is_empty()
            || !self
                .via
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        {
            return Err(cfg_err(
                "web.http.via",
                format!(
                    "{:?} is not a token (letters, digits, - _ . ! % * + ` ' ~)",
                    self.via
                ),
            ));
        }
        for (i, p) in self.connect_ports.iter().enumerate() {
            if *p == 0 {
                return Err(cfg_err(
                    format!("web.http.connect_ports[{i}]"),
                    "must be 1..=65535",
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > 1 << 20 {
            return Err(cfg_err("web.http.max_connections", "must be 1..=1048576"));
        }
        if self.pool_per_origin > 1024 {
            return Err(cfg_err("web.http.pool_per_origin", "must be 0..=1024"));
        }
        let t = &self.timeouts;
        for (key, v) in [
            ("connect_ms", t.connect_ms),
            ("response_ms", t.response_ms),
            ("client_header_ms", t.client_header_ms),
            ("pool_idle_ms", t.pool_idle_ms),
            ("tunnel_idle_ms", t.tunnel_idle_ms),
        ] {
            if v == 0 || v > 3_600_000 {
                return Err(cfg_err(
                    format!("web.http.timeouts.{key}"),
                    "must be 1..=3600000 (milliseconds)",
                ));
            }
        }
        Ok(())
    }

    /// `hosts` with names lower-cased and without a trailing dot.
    fn parsed_hosts(&self) -> Result<HashMap<String, IpAddr>, ConfigError> {
        let mut out = HashMap::with_capacity(self.hosts.len());
        for (name, ip) in &self.hosts {
            let key = format!("web.http.hosts.{name}");
            let n = name.trim_end_matches('.').to_ascii_lowercase();
            if n.is_empty()
                || n.len() > 253
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return Err(cfg_err(key, format!("{name:?} is not a host name")));
            }
            let a: IpAddr = ip
                .parse()
                .map_err(|_| cfg_err(&key, format!("{ip:?} is not an IP address")))?;
            out.insert(n, a);
        }
        Ok(out)
    }

    fn parsed_tag_header(&self) -> Result<Option<HeaderName>, ConfigError> {
        if self.tag_header.is_empty() {
            return Ok(None);
        }
        let h = HeaderName::from_bytes(self.tag_header.as_bytes()).map_err(|_| {
            cfg_err(
                "web.http.tag_header",
                format!("{:?} is not a header field name", self.tag_header),
            )
        })?;
        if is_hop_by_hop(&h) || RESERVED_TAG_HEADERS.contains(&h.as_str()) {
            return Err(cfg_err(
                "web.http.tag_header",
                format!(
                    "{:?} is a field the proxy manages itself; pick another name",
                    self.tag_header
                ),
            ));
        }
        Ok(Some(h))
    }
}

fn check_status(key: &str, s: u16) -> Result<(), ConfigError> {
    if !(400..=599).contains(&s) {
        return Err(cfg_err(
            key,
            format!("{s} is not an error status (400..=599); 403 or 451 (RFC 7725) are usual"),
        ));
    }
    Ok(())
}

fn check_warning_url(u: &str) -> Result<(), ConfigError> {
    let bad = || {
        cfg_err(
            "web.http.warning_url",
            format!("{u:?} is not an absolute http:// or https:// URL without spaces"),
        )
    };
    if u.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(bad());
    }
    let uri: Uri = u.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(bad()),
    }
}

// ---------------------------------------------------------------------------------------------
// Warning pages

/// Built-in page, English.
const PAGE_EN: &str = r#"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Warning: reported fraud site</title>
</head>
<body class="{action}">
<h1>This site has been reported for fraud</h1>
<p>Your network operator's anti-fraud service stopped the request to <strong>{host}</strong>:
it is on a list of fraudulent sites (category: <strong>{category}</strong>).</p>
<p>Rule: <code>{rule}</code></p>
<p>If you think this is a mistake, contact <strong>{appeal}</strong> and quote the rule above.</p>
<p><a href="{back}">Go back</a></p>
</body>
</html>
"#;

/// Built-in page, Simplified Chinese.
const PAGE_ZH_CN: &str = r#"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>警告：涉嫌诈骗网站</title>
</head>
<body class="{action}">
<h1>该网站已被举报涉嫌诈骗</h1>
<p>您访问的 <strong>{host}</strong> 在反诈骗名单中（类别：<strong>{category}</strong>），运营商反诈骗服务已拦截此次访问。</p>
<p>规则编号：<code>{rule}</code></p>
<p>如认为拦截有误，请联系 <strong>{appeal}</strong> 并提供上述规则编号进行申诉。</p>
<p><a href="{back}">返回</a></p>
</body>
</html>
"#;

/// Largest template file accepted.
const MAX_TEMPLATE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Category,
    Rule,
    Appeal,
    Host,
    Back,
    Action,
    Lang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Field(Field),
}

/// A page split into literal text and placeholders once, at start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    /// Unknown `{…}` stay literal text, so CSS and scripts in a template survive.
    fn parse(text: &str) -> Template {
        const NAMES: [(&str, Field); 7] = [
            ("{category}", Field::Category),
            ("{rule}", Field::Rule),
            ("{appeal}", Field::Appeal),
            ("{host}", Field::Host),
            ("{back}", Field::Back),
            ("{action}", Field::Action),
            ("{lang}", Field::Lang),
        ];
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('{') {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            match NAMES.iter().find(|(n, _)| tail.starts_with(n)) {
                Some((n, f)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(*f));
                    rest = &tail[n.len()..];
                }
                None => {
                    lit.push('{');
                    rest = &tail[1..];
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Template(pieces)
    }

    fn render(&self, f: &PageFields<'_>, lang: &str, out: &mut String) {
        for p in &self.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Field(k) => escape_html(
                    match k {
                        Field::Category => f.category,
                        Field::Rule => f.rule,
                        Field::Appeal => f.appeal,
                        Field::Host => f.host,
                        Field::Back => f.back,
                        Field::Action => f.action,
                        Field::Lang => lang,
                    },
                    out,
                ),
            }
        }
    }
}

/// What a page says.
#[derive(Debug, Clone, Copy)]
struct PageFields<'a> {
    category: &'a str,
    rule: &'a str,
    appeal: &'a str,
    host: &'a str,
    back: &'a str,
    action: &'a str,
}

#[derive(Debug)]
struct LangPages {
    tag: String,
    default: Template,
    categories: HashMap<String, Template>,
}

/// The pages of every configured language.
#[derive(Debug)]
struct Pages {
    langs: Vec<LangPages>,
}

impl Pages {
    fn load(cfg: &HttpConfig) -> Result<Pages, ConfigError> {
        if cfg.languages.is_empty() {
            return Err(cfg_err(
                "web.http.languages",
                "at least one language (the first is the default)",
            ));
        }
        for (cat, by_lang) in &cfg.templates {
            for lang in by_lang.keys() {
                if !cfg.languages.iter().any(|l| l.eq_ignore_ascii_case(lang)) {
                    return Err(cfg_err(
                        format!("web.http.templates.{cat}.{lang}"),
                        format!("{lang:?} is not in web.http.languages"),
                    ));
                }
            }
        }
        let read = |key: String, path: &str| -> Result<Template, ConfigError> {
            let text = std::fs::read(path)
                .map_err(|e| cfg_err(&key, format!("cannot read {path:?}: {e}")))?;
            if text.len() > MAX_TEMPLATE {
                return Err(cfg_err(
                    key,
                    format!("{path:?} is larger than {MAX_TEMPLATE} bytes"),
                ));
            }
            let text = String::from_utf8(text)
                .map_err(|_| cfg_err(&key, format!("{path:?} is not UTF-8")))?;
            Ok(Template::parse(&text))
        };
        let mut langs = Vec::with_capacity(cfg.languages.len());
        for (i, lang) in cfg.languages.iter().enumerate() {
            let key = format!("web.http.languages[{i}]");
            if !is_language_tag(lang) {
                return Err(cfg_err(
                    key,
                    format!("{lang:?} is not a language tag (e.g. en, zh-CN)"),
                ));
            }
            if cfg.languages[..i]
                .iter()
                .any(|l| l.eq_ignore_ascii_case(lang))
            {
                return Err(cfg_err(key, format!("{lang:?} is listed twice")));
            }
            let find = |cat: &str| {
                cfg.templates.get(cat).and_then(|m| {
                    m.iter()
                        .find(|(l, _)| l.eq_ignore_ascii_case(lang))
                        .map(|(l, p)| (format!("web.http.templates.{cat}.{l}"), p))
                })
            };
            let default = match find("default") {
                Some((k, p)) => read(k, p)?,
                None if lang.eq_ignore_ascii_case("en") => Template::parse(PAGE_EN),
                None if lang.eq_ignore_ascii_case("zh-CN") => Template::parse(PAGE_ZH_CN),
                None => {
                    return Err(cfg_err(
                        key,
                        format!(
                            "no page for {lang:?}: built-in pages exist for en and zh-CN; \
                             set web.http.templates.default.{lang}"
                        ),
                    ))
                }
            };
            let mut categories = HashMap::new();
            for cat in cfg.templates.keys().filter(|c| *c != "default") {
                if let Some((k, p)) = find(cat) {
                    categories.insert(cat.clone(), read(k, p)?);
                }
            }
            langs.push(LangPages {
                tag: lang.clone(),
                default,
                categories,
            });
        }
        Ok(Pages { langs })
    }

    /// The language to answer in, by index into the configured list.
    fn language<'a>(&self, accept: impl Iterator<Item = &'a [u8]>) -> usize {
        pick_language(self.langs.iter().map(|l| l.tag.as_str()), accept)
    }

    fn tag(&self, lang: usize) -> &str {
        self.langs.get(lang).map_or("en", |l| l.tag.as_str())
    }

    fn render(&self, lang: usize, f: &PageFields<'_>, out: &mut String) {
        let Some(l) = self.langs.get(lang).or_else(|| self.langs.first()) else {
            return;
        };
        let t = l.categories.get(f.category).unwrap_or(&l.default);
        t.render(f, &l.tag, out);
    }
}

/// HTML-escapes text for element content and quoted attribute values (`& < > " '`).
fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Picks a language by Accept-Language (RFC 9110 §12.5.4): the configured language matched by
/// the range with the highest q-value; on equal q the range listed first wins. A range matches
/// a tag that equals it or starts with it and `-` (RFC 4647 §3.3.1 basic filtering: `zh`
/// matches `zh-CN`), or one it starts with and `-` (`en-US` is served `en`, as RFC 4647 §3.4
/// lookup would fall back). `q=0` means "not this one"; `*` stands for the default. No match,
/// or no header: the first configured language (index 0).
fn pick_language<'a, 'c>(
    configured: impl Iterator<Item = &'c str> + Clone,
    accept: impl Iterator<Item = &'a [u8]>,
) -> usize {
    let mut best: Option<(u16, usize)> = None;
    for value in accept {
        for item in value.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let range = parts.next().map_or(&b""[..], |r| r.trim_ascii());
            if range.is_empty() {
                continue;
            }
            let mut q = Some(1000u16);
            for p in parts {
                let p = p.trim_ascii();
                if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                    q = parse_qvalue(&p[2..]);
                }
            }
            let Some(q) = q.filter(|&q| q > 0) else {
                continue;
            };
            let ix = if range == b"*" {
                Some(0)
            } else {
                configured
                    .clone()
                    .position(|tag| language_matches(range, tag.as_bytes()))
            };
            if let Some(ix) = ix {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, ix));
                }
            }
        }
    }
    best.map_or(0, |(_, ix)| ix)
}

fn language_matches(range: &[u8], tag: &[u8]) -> bool {
    let prefix = |long: &[u8], short: &[u8]| {
        long.len() > short.len()
            && long[..short.len()].eq_ignore_ascii_case(short)
            && long[short.len()] == b'-'
    };
    range.eq_ignore_ascii_case(tag) || prefix(tag, range) || prefix(range, tag)
}

/// RFC 9110 §12.4.2: `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths. `None` for anything else.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Percent-encodes everything but RFC 3986 §2.3 unreserved characters (upper-case hex, §2.1).
fn percent_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decision

/// Which of the host's and the URL's verdicts decides: block beats warn beats tag beats no
/// match. One exception, the engine's own rule: an explicit allowlist entry (action allow with
/// a rule) beats everything (`Action::precedence`), so that `@@||help.bank.example^` under a
/// blocked domain, or an allowed URL under a blocked host, stays reachable here as it is in
/// `check_url`. On a tie the URL's verdict wins: its rule is the more specific.
///
/// `check_url` already screens the URL's host against the domain rules; `check_domain` still
/// matters when a URL cannot be canonicalised (too long, unusual characters), so that no URL
/// shape can carry a request past a domain rule.
pub fn combine(domain: Verdict, url: Verdict) -> Verdict {
    fn rank(v: &Verdict) -> u8 {
        if v.rule.is_none() {
            0
        } else {
            v.action.precedence()
        }
    }
    if rank(&domain) > rank(&url) {
        domain
    } else {
        url
    }
}

// ---------------------------------------------------------------------------------------------
// Hop-by-hop fields

/// RFC 9110 §7.6.1 (and §11.7.1, §11.7.2: proxy credentials are for the proxy they were meant
/// for), plus the pre-standard Keep-Alive and Proxy-Connection.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn is_hop_by_hop(h: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&h.as_str())
}

/// Removes the hop-by-hop fields: those the Connection field lists (RFC 9110 §7.6.1), then the
/// fixed set. A message that came with Transfer-Encoding also loses Content-Length (RFC 9112
/// §6.3: the encoding overrides the length; a proxy must not pass both on): hyper frames the
/// forwarded body itself.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut listed: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        for token in v.as_bytes().split(|&b| b == b',') {
            if let Ok(n) = HeaderName::from_bytes(token.trim_ascii()) {
                listed.push(n);
            }
        }
    }
    for n in listed {
        h.remove(n);
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        h.remove(header::CONTENT_LENGTH);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Does a Via field name `us` as a recipient (RFC 9110 §7.6.3: `protocol received-by
/// [comment]`, comma-separated)?
fn via_names(h: &HeaderMap, us: &str) -> bool {
    h.get_all(header::VIA).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|hop| {
            let mut words = hop
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            let _protocol = words.next();
            words
                .next()
                .is_some_and(|by| by.eq_ignore_ascii_case(us.as_bytes()))
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Upper bounds (seconds) of the request-duration buckets: 100 µs (a local answer) … 60 s (a
/// slow origin).
pub const HTTP_LATENCY_BUCKETS: [f64; 16] = [
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    60.0,
];

#[derive(Debug, Default)]
struct LatencyInner {
    buckets: [AtomicU64; HTTP_LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A lock-free histogram handle with [`HTTP_LATENCY_BUCKETS`] (clones share the counts). The
/// gateway's [`Histogram`](crate::metrics::Histogram) stops at 100 ms, too short for origins.
#[derive(Debug, Clone, Default)]
pub struct HttpLatency(Arc<LatencyInner>);

impl HttpLatency {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = HTTP_LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(HTTP_LATENCY_BUCKETS.len());
        if let Some(b) = self.0.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for HttpLatency {
    fn encode(&self, mut e: MetricEncoder) -> Result<(), fmt::Error> {
        // The encoder accumulates: hand it each bucket's own count.
        let mut b = Vec::with_capacity(HTTP_LATENCY_BUCKETS.len() + 1);
        let mut total = 0u64;
        for (i, n) in self.0.buckets.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            total += n;
            b.push((
                HTTP_LATENCY_BUCKETS
                    .get(i)
                    .copied()
                    .unwrap_or(f64::INFINITY),
                n,
            ));
        }
        let sum = self.0.sum_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        e.encode_histogram::<NoLabelSet>(sum, total, &b, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// HTTP proxy counters. Handles are resolved here, once: a hit is one atomic add. Verdicts are
/// counted in the [`Store`] (`dragnet_verdicts{plane="web"}`).
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
    /// Forwarded to the origin (allowed or tagged) and answered by it.
    pub forwarded: Counter,
    /// CONNECT tunnels opened.
    pub tunnelled: Counter,
    /// Answered with a block page or a redirect to the warning site.
    pub blocked: Counter,
    /// Answered with a warn page or a redirect to the warning site.
    pub warned: Counter,
    /// CONNECT to a port not in `connect_ports` (403).
    pub port_refused: Counter,
    /// Requests we could not route (400, 405, 414, 501).
    pub bad_request: Counter,
    /// Requests that carried our own Via (508).
    pub loop_detected: Counter,
    /// OPTIONS/TRACE with Max-Forwards 0, answered by us (RFC 9110 §7.6.2).
    pub answered_locally: Counter,
    /// 502: the origin could not be reached or broke the exchange.
    pub bad_gateway: Counter,
    /// 504: the origin did not connect or answer in time.
    pub gateway_timeout: Counter,
    upstream_errors: Family<Labels, Counter>,
    /// Connecting to the origin (or resolving it) failed.
    pub upstream_connect_failed: Counter,
    /// Connect or response timeout.
    pub upstream_timeout: Counter,
    /// The origin closed or garbled the exchange.
    pub upstream_broken: Counter,
    /// Origin connections opened, and requests sent on a pooled one.
    pub upstream_connections: Counter,
    pub upstream_reused: Counter,
    /// Client connections accepted, and closed at once at `max_connections`.
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    /// Client connections closed by hyper for an unparseable request (hyper answers 400) or a
    /// request head not sent in time.
    pub malformed: Counter,
    pub client_timeouts: Counter,
    /// CONNECT tunnels closed after `tunnel_idle_ms` without traffic.
    pub tunnel_idle_timeouts: Counter,
    /// From the request head in hand to the response head handed back.
    pub latency: HttpLatency,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        let requests: Family<Labels, Counter> = Family::default();
        let r = |v: &'static str| requests.get_or_create(&vec![("result", v)]).clone();
        let upstream_errors: Family<Labels, Counter> = Family::default();
        let u = |v: &'static str| upstream_errors.get_or_create(&vec![("kind", v)]).clone();
        HttpMetrics {
            forwarded: r("forwarded"),
            tunnelled: r("tunnelled"),
            blocked: r("blocked"),
            warned: r("warned"),
            port_refused: r("port_refused"),
            bad_request: r("bad_request"),
            loop_detected: r("loop"),
            answered_locally: r("answered_locally"),
            bad_gateway: r("bad_gateway"),
            gateway_timeout: r("gateway_timeout"),
            requests,
            upstream_connect_failed: u("connect"),
            upstream_timeout: u("timeout"),
            upstream_broken: u("broken"),
            upstream_errors,
            upstream_connections: Counter::default(),
            upstream_reused: Counter::default(),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            malformed: Counter::default(),
            client_timeouts: Counter::default(),
            tunnel_idle_timeouts: Counter::default(),
            latency: HttpLatency::default(),
        }
    }

    /// Registers everything under `http_` in `reg` (give it the `dragnet` sub-registry for
    /// `dragnet_http_*`).
    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("http");
        r.register(
            "requests",
            "HTTP proxy requests by result",
            self.requests.clone(),
        );
        r.register(
            "upstream_errors",
            "Origin failures by kind (connect, timeout, broken)",
            self.upstream_errors.clone(),
        );
        r.register(
            "upstream_connections",
            "Connections opened to origins",
            self.upstream_connections.clone(),
        );
        r.register(
            "upstream_reused",
            "Requests sent on a pooled keep-alive origin connection",
            self.upstream_reused.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections closed at once because max_connections was reached",
            self.connections_refused.clone(),
        );
        r.register(
            "malformed",
            "Client connections closed for a request hyper could not parse (answered 400)",
            self.malformed.clone(),
        );
        r.register(
            "tunnel_idle_timeouts",
            "CONNECT tunnels closed after tunnel_idle_ms without traffic",
            self.tunnel_idle_timeouts.clone(),
        );
        r.register(
            "client_timeouts",
            "Client connections closed because a request head did not arrive in time",
            self.client_timeouts.clone(),
        );
        r.register(
            "request_duration_seconds",
            "From the request head in hand to the response head handed back",
            self.latency.clone(),
        );
    }

    /// The count of one `result` label (tests, status).
    pub fn requests(&self, result: &'static str) -> u64 {
        self.requests.get_or_create(&vec![("result", result)]).get()
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// The body of what we answer: the origin's, streamed, or one of our own pages.
#[derive(Debug)]
struct ProxyBody(BodyKind);

#[derive(Debug)]
enum BodyKind {
    Local(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Handed back to the pool once the body has been read to its end.
        ret: Option<Checkin>,
    },
}

#[derive(Debug)]
struct Checkin {
    pool: Arc<Pool>,
    addr: SocketAddr,
    sender: SendRequest<Incoming>,
}

impl Checkin {
    fn done(self) {
        self.pool.checkin(self.addr, self.sender);
    }
}

impl ProxyBody {
    fn local(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        ProxyBody(BodyKind::Local((!b.is_empty()).then_some(b)))
    }

    fn empty() -> ProxyBody {
        ProxyBody(BodyKind::Local(None))
    }

    fn upstream(body: Incoming, ret: Checkin) -> ProxyBody {
        if body.is_end_stream() {
            // HEAD, 204, 304, Content-Length: 0: hyper may never poll it; the connection is
            // free now.
            ret.done();
            return ProxyBody(BodyKind::Upstream { body, ret: None });
        }
        ProxyBody(BodyKind::Upstream {
            body,
            ret: Some(ret),
        })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Upstream { body, ret } => {
                let r = Pin::new(&mut *body).poll_frame(cx);
                // Return the connection as soon as its response is complete, before the client
                // has seen the last byte: the client's next request finds it in the pool.
                let finished = match &r {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    Poll::Ready(Some(Err(_))) => {
                        // A broken response: the connection is not reusable.
                        *ret = None;
                        false
                    }
                    Poll::Pending => false,
                };
                if finished {
                    if let Some(c) = ret.take() {
                        c.done();
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Local(b) => b.is_none(),
            BodyKind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Origin connections

/// Why an origin exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Name not resolved, connection refused or unreachable: 502.
    Unreachable,
    /// Connect or response timeout: 504.
    Timeout,
    /// The origin closed or garbled the exchange: 502.
    Broken,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

#[derive(Debug, Default)]
struct IdleSet {
    by_origin: HashMap<SocketAddr, Vec<Idle>>,
    total: usize,
}

/// Idle keep-alive connections per origin, bounded per origin (`pool_per_origin`) and in all
/// (`max_connections`). Most recently used first; stale ones are dropped when met.
#[derive(Debug)]
struct Pool {
    idle: Mutex<IdleSet>,
    per_origin: usize,
    cap: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    metrics: Arc<HttpMetrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can leave the data half-updated; a panic elsewhere must not stop the proxy.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn checkin(&self, addr: SocketAddr, sender: SendRequest<Incoming>) {
        if self.per_origin == 0 || sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut g = lock(&self.idle);
        let set = &mut *g;
        if set.total >= self.cap {
            let timeout = self.idle_timeout;
            for v in set.by_origin.values_mut() {
                v.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < timeout);
            }
            set.by_origin.retain(|_, v| !v.is_empty());
            set.total = set.by_origin.values().map(Vec::len).sum();
            if set.total >= self.cap {
                return;
            }
        }
        let v = set.by_origin.entry(addr).or_default();
        if v.len() >= self.per_origin {
            v.remove(0);
            set.total -= 1;
        }
        v.push(Idle { sender, since: now });
        set.total += 1;
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<Idle> {
        let mut g = lock(&self.idle);
        let set = &mut *g;
        let v = set.by_origin.get_mut(&addr)?;
        let i = v.pop();
        if v.is_empty() {
            set.by_origin.remove(&addr);
        }
        if i.is_some() {
            set.total = set.total.saturating_sub(1);
        }
        i
    }

    /// A pooled connection to `addr` that is ready for a request, if any.
    async fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Incoming>> {
        while let Some(Idle { mut sender, since }) = self.take_idle(addr) {
            if sender.is_closed() || since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Ready at once unless the previous response is still being wound up.
            if let Ok(Ok(())) = tokio::time::timeout(self.connect_timeout, sender.ready()).await {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<Incoming>, Failure> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(Failure::Unreachable),
            Err(_) => return Err(Failure::Timeout),
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, Incoming>(TokioIo::new(tcp))
            .await
            .map_err(|_| Failure::Unreachable)?;
        // The connection ends when its last sender is dropped (pool eviction, a broken
        // exchange, the proxy stopped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.metrics.upstream_connections.inc();
        Ok(sender)
    }

    /// Sends `req` to `addr` on a pooled connection, or on a new one if none is idle or the
    /// pooled one turns out closed before the request was written (the request comes back
    /// untouched then, so even a request with a body is retried safely).
    async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Checkin), Failure> {
        if let Some(mut sender) = self.checkout(addr).await {
            match tokio::time::timeout(self.response_timeout, sender.try_send_request(req)).await {
                Ok(Ok(resp)) => {
                    self.metrics.upstream_reused.inc();
                    return Ok((resp, self.checkin_for(addr, sender)));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(Failure::Broken),
                },
                Err(_) => return Err(Failure::Timeout),
            }
        }
        let mut sender = self.connect(addr).await?;
        match tokio::time::timeout(self.response_timeout, sender.send_request(req)).await {
            Ok(Ok(resp)) => Ok((resp, self.checkin_for(addr, sender))),
            Ok(Err(_)) => Err(Failure::Broken),
            Err(_) => Err(Failure::Timeout),
        }
    }

    fn checkin_for(self: &Arc<Self>, addr: SocketAddr, sender: SendRequest<Incoming>) -> Checkin {
        Checkin {
            pool: self.clone(),
            addr,
            sender,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy

type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Per client connection: the engine's URL scratch, the URL being built, and a tunnel to run
/// once hyper hands the connection over after a CONNECT.
struct ConnState {
    scratch: Scratch,
    url: Vec<u8>,
    tunnel: Option<Tunnel>,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            scratch: Scratch::new(),
            url: Vec::with_capacity(512),
            tunnel: None,
        }
    }
}

/// Where a request goes.
#[derive(Debug)]
struct Target {
    /// As in the request (IPv6 in brackets).
    host: String,
    port: u16,
    /// `host[:port]` for the Host field sent upstream (RFC 9112 §3.2.2: a proxy replaces a
    /// received Host with the target URI's authority).
    authority: HeaderValue,
}

/// What screening decided.
enum Screened {
    Forward { tag: Option<HeaderValue> },
    Answer(Response<ProxyBody>),
}

#[derive(Debug)]
struct Proxy {
    store: Arc<Store>,
    metrics: Arc<HttpMetrics>,
    mode: HttpMode,
    upstream: Option<SocketAddr>,
    hosts: HashMap<String, IpAddr>,
    block_status: StatusCode,
    status_by_category: HashMap<String, StatusCode>,
    warning_url: Option<String>,
    pages: Pages,
    appeal: String,
    tag_header: Option<HeaderName>,
    via_name: String,
    via_10: HeaderValue,
    via_11: HeaderValue,
    connect_ports: Vec<u16>,
    client_header: Duration,
    connect_timeout: Duration,
    tunnel_idle: Duration,
    pool: Arc<Pool>,
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN)
}

/// A short plain-text answer of our own.
fn text(code: StatusCode, msg: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::local(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Is the host an IP literal (`192.0.2.1`, `[2001:db8::1]`)?
fn ip_literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

impl Proxy {
    fn new(
        cfg: &HttpConfig,
        store: Arc<Store>,
        metrics: Arc<HttpMetrics>,
    ) -> Result<Proxy, ConfigError> {
        let upstream = match &cfg.upstream {
            Some(u) => Some(parse_sockaddr("web.http.upstream", u)?),
            None => None,
        };
        let via = |v: &str| {
            HeaderValue::from_str(&format!("{v} {}", cfg.via))
                .map_err(|_| cfg_err("web.http.via", "not a valid header value"))
        };
        let t = &cfg.timeouts;
        let connect_timeout = Duration::from_millis(t.connect_ms);
        Ok(Proxy {
            hosts: cfg.parsed_hosts()?,
            block_status: status(cfg.block_status),
            status_by_category: cfg
                .status_by_category
                .iter()
                .map(|(c, s)| (c.clone(), status(*s)))
                .collect(),
            warning_url: cfg.warning_url.clone(),
            pages: Pages::load(cfg)?,
            appeal: cfg.appeal.clone(),
            tag_header: cfg.parsed_tag_header()?,
            via_name: cfg.via.clone(),
            via_10: via("1.0")?,
            via_11: via("1.1")?,
            connect_ports: cfg.connect_ports.clone(),
            client_header: Duration::from_millis(t.client_header_ms),
            connect_timeout,
            tunnel_idle: Duration::from_millis(t.tunnel_idle_ms),
            pool: Arc::new(Pool {
                idle: Mutex::new(IdleSet::default()),
                per_origin: cfg.pool_per_origin,
                cap: cfg.max_connections,
                idle_timeout: Duration::from_millis(t.pool_idle_ms),
                connect_timeout,
                response_timeout: Duration::from_millis(t.response_ms),
                metrics: metrics.clone(),
            }),
            mode: cfg.mode,
            upstream,
            store,
            metrics,
        })
    }

    async fn connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let state = Arc::new(Mutex::new(ConnState::new()));
        let svc = {
            let p = self.clone();
            let state = state.clone();
            service_fn(move |req| {
                let p = p.clone();
                let state = state.clone();
                async move { Ok::<_, Infallible>(p.handle(req, &state).await) }
            })
        };
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.client_header)
            .keep_alive(true);
        if let Err(e) = b
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await
        {
            if e.is_parse() {
                self.metrics.malformed.inc();
            } else if e.is_timeout() {
                self.metrics.client_timeouts.inc();
            }
        }
        // After a CONNECT hyper has handed the connection over: the tunnel runs in this task,
        // under this connection's slot of max_connections.
        let tunnel = lock(&state).tunnel.take();
        if let Some(t) = tunnel {
            t.await;
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        state: &Mutex<ConnState>,
    ) -> Response<ProxyBody> {
        let t0 = Instant::now();
        let r = if req.method() == Method::CONNECT {
            self.connect(req, state).await
        } else {
            self.request(req, state).await
        };
        self.metrics.latency.observe(t0.elapsed());
        r
    }

    fn bad_request(&self, code: StatusCode, msg: &'static str) -> Response<ProxyBody> {
        self.metrics.bad_request.inc();
        text(code, msg)
    }

    fn looped(&self) -> Response<ProxyBody> {
        self.metrics.loop_detected.inc();
        // RFC 5842 §7.2 508 Loop Detected: the request came back to us.
        text(
            StatusCode::LOOP_DETECTED,
            "508 Loop Detected: this request has already passed through this proxy (Via)\n",
        )
    }

    /// Where a non-CONNECT request goes (RFC 9112 §3.2); the status and text of the refusal if
    /// it cannot be routed.
    fn target(&self, req: &Request<Incoming>) -> Result<Target, (StatusCode, &'static str)> {
        let bad = |msg| (StatusCode::BAD_REQUEST, msg);
        let uri = req.uri();
        let authority: Authority = match (uri.scheme(), uri.authority()) {
            (Some(s), Some(a)) => {
                if *s != Scheme::HTTP {
                    return Err((
                        StatusCode::NOT_IMPLEMENTED,
                        "501 Not Implemented: only http:// URLs are proxied; https goes through CONNECT\n",
                    ));
                }
                a.clone()
            }
            _ if self.mode == HttpMode::Forward => {
                return Err(bad(
                    "400 Bad Request: this is a forward proxy; send the absolute URL (RFC 9112 section 3.2.2)\n",
                ))
            }
            _ => {
                // RFC 9112 §3.2: exactly one Host, else 400.
                let mut hosts = req.headers().get_all(header::HOST).iter();
                match (hosts.next(), hosts.next()) {
                    (Some(h), None) => Authority::try_from(h.as_bytes()).map_err(|_| {
                        bad("400 Bad Request: the Host header is not host[:port]\n")
                    })?,
                    _ => {
                        return Err(bad(
                            "400 Bad Request: exactly one Host header is required (RFC 9112 section 3.2)\n",
                        ))
                    }
                }
            }
        };
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad(
                "400 Bad Request: the target must be host[:port], without user information\n",
            ));
        }
        let header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("400 Bad Request: the target host is not valid\n"))?;
        Ok(Target {
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority: header,
        })
    }

    /// Checks host and URL; counts the verdict; builds the answer for block and warn.
    fn screen(
        &self,
        target_host: &str,
        url: &[u8],
        headers: &HeaderMap,
        scratch: &mut Scratch,
        connect: bool,
    ) -> Screened {
        let now = crate::unix_now();
        let a = self.store.load();
        let mut v = combine(
            a.engine.check_domain(target_host.as_bytes(), now),
            a.engine.check_url(url, now, scratch),
        );
        self.store.shadow_compare(Plane::Web, v.action, |e| {
            combine(
                e.check_domain(target_host.as_bytes(), now),
                e.check_url(url, now, scratch),
            )
        });
        if let Some(h) = self.store.hits() {
            v.action = h.gate(Plane::Web, v.action);
            let facts = crate::events::Facts {
                domain: Some(target_host.as_bytes()),
                url: Some(url),
                ..Default::default()
            };
            h.hit(Plane::Web, &v, &a.engine, None, facts, "");
        }
        a.count(Plane::Web, v.action, v.rule.map(|_| v.category));
        match v.action {
            Action::Allow => Screened::Forward { tag: None },
            Action::Tag => Screened::Forward {
                tag: self.tag_header.as_ref().and_then(|_| {
                    let mut s = String::new();
                    percent_encode_header(category_of(&a, &v), &mut s);
                    HeaderValue::from_str(&s).ok()
                }),
            },
            Action::Warn | Action::Block => {
                Screened::Answer(self.stop(&a, &v, target_host, headers, connect))
            }
        }
    }

    /// The block or warn answer: a redirect to the warning site, or the page.
    fn stop(
        &self,
        a: &Active,
        v: &Verdict,
        host: &str,
        headers: &HeaderMap,
        connect: bool,
    ) -> Response<ProxyBody> {
        let block = v.action == Action::Block || connect;
        if block {
            self.metrics.blocked.inc();
        } else {
            self.metrics.warned.inc();
        }
        let mut rule = String::new();
        let category = match v.rule.and_then(|r| a.engine.write_rule_id(r, &mut rule)) {
            Some(c) if !c.is_empty() => c,
            _ => "none",
        };
        let action = if v.action == Action::Warn {
            "warn"
        } else {
            "block"
        };
        if let (Some(w), false) = (&self.warning_url, connect) {
            let mut loc = String::with_capacity(w.len() + 64);
            loc.push_str(w);
            loc.push(if w.contains('?') { '&' } else { '?' });
            loc.push_str("category=");
            percent_encode(category, &mut loc);
            loc.push_str("&rule=");
            percent_encode(&rule, &mut loc);
            loc.push_str("&action=");
            loc.push_str(action);
            if let Ok(l) = HeaderValue::from_str(&loc) {
                let mut r = Response::new(ProxyBody::empty());
                *r.status_mut() = StatusCode::FOUND;
                r.headers_mut().insert(header::LOCATION, l);
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return r;
            }
        }
        let lang = self.pages.language(
            headers
                .get_all(header::ACCEPT_LANGUAGE)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        // The link back: where the user came from, if that was a web page.
        let back = headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
            .unwrap_or("javascript:history.back()");
        let mut html = String::with_capacity(2048);
        self.pages.render(
            lang,
            &PageFields {
                category,
                rule: &rule,
                appeal: &self.appeal,
                host,
                back,
                action,
            },
            &mut html,
        );
        let code = if block {
            *self
                .status_by_category
                .get(category)
                .unwrap_or(&self.block_status)
        } else {
            StatusCode::OK
        };
        let mut r = Response::new(ProxyBody::local(html));
        *r.status_mut() = code;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(l) = HeaderValue::from_str(self.pages.tag(lang)) {
            h.insert(header::CONTENT_LANGUAGE, l);
        }
        r
    }

    /// The origin's address: `upstream` (transparent), an IP literal, `hosts`, the resolver.
    async fn origin(&self, host: &str, port: u16) -> Result<SocketAddr, Failure> {
        if let (HttpMode::Transparent, Some(u)) = (self.mode, self.upstream) {
            return Ok(u);
        }
        if let Some(ip) = ip_literal(host) {
            return Ok(SocketAddr::new(ip, port));
        }
        let mut buf = [0u8; 256];
        let name = host.strip_suffix('.').unwrap_or(host).as_bytes();
        if let Some(b) = buf.get_mut(..name.len()) {
            b.copy_from_slice(name);
            b.make_ascii_lowercase();
            if let Some(ip) = std::str::from_utf8(b).ok().and_then(|n| self.hosts.get(n)) {
                return Ok(SocketAddr::new(*ip, port));
            }
        }
        match tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((host, port)))
            .await
        {
            Ok(Ok(mut addrs)) => addrs.next().ok_or(Failure::Unreachable),
            Ok(Err(_)) => Err(Failure::Unreachable),
            Err(_) => Err(Failure::Timeout),
        }
    }

    fn failed(&self, f: Failure) -> Response<ProxyBody> {
        match f {
            Failure::Unreachable => {
                self.metrics.upstream_connect_failed.inc();
                self.metrics.bad_gateway.inc();
                text(
                    StatusCode::BAD_GATEWAY,
                    "502 Bad Gateway: the origin server could not be reached\n",
                )
            }
            Failure::Broken => {
                self.metrics.upstream_broken.inc();
                self.metrics.bad_gateway.inc();
                text(
                    StatusCode::BAD_GATEWAY,
                    "502 Bad Gateway: the origin server closed the connection or sent an invalid response\n",
                )
            }
            Failure::Timeout => {
                self.metrics.upstream_timeout.inc();
                self.metrics.gateway_timeout.inc();
                text(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the origin server did not answer in time\n",
                )
            }
        }
    }

    async fn request(
        &self,
        mut req: Request<Incoming>,
        state: &Mutex<ConnState>,
    ) -> Response<ProxyBody> {
        if via_names(req.headers(), &self.via_name) {
            return self.looped();
        }
        let target = match self.target(&req) {
            Ok(t) => t,
            Err((code, msg)) => return self.bad_request(code, msg),
        };
        let screened = {
            let mut g = lock(state);
            let ConnState { scratch, url, .. } = &mut *g;
            let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
            // What check_url wants: the URL as on the wire (it canonicalises). Its port does
            // not take part in a Safe Browsing expression.
            url.clear();
            url.extend_from_slice(b"http://");
            url.extend_from_slice(target.host.as_bytes());
            url.extend_from_slice(pq.as_bytes());
            if url.len() > dragnet_rules::url::MAX_URL_LEN {
                // Too long to canonicalise: screen without the query. Every expression of the
                // shorter URL is one of the full URL's (Safe Browsing looks paths up without
                // their query too), so nothing can match that should not.
                let path = req.uri().path();
                url.truncate(7 + target.host.len());
                url.extend_from_slice(path.as_bytes());
                if url.len() > dragnet_rules::url::MAX_URL_LEN {
                    // RFC 9110 §15.5.15: refused rather than passed unscreened.
                    return self.bad_request(
                        StatusCode::URI_TOO_LONG,
                        "414 URI Too Long: the URL path is too long to be screened\n",
                    );
                }
            }
            self.screen(&target.host, url, req.headers(), scratch, false)
        };
        let tag = match screened {
            Screened::Answer(r) => return r,
            Screened::Forward { tag } => tag,
        };
        if let Some(r) = self.max_forwards(&mut req) {
            return r;
        }
        let addr = match self.origin(&target.host, target.port).await {
            Ok(a) => a,
            Err(f) => return self.failed(f),
        };
        self.prepare(&mut req, &target, tag);
        match self.pool.send(addr, req).await {
            Ok((resp, checkin)) => {
                self.metrics.forwarded.inc();
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.headers.append(
                    header::VIA,
                    if parts.version == Version::HTTP_10 {
                        self.via_10.clone()
                    } else {
                        self.via_11.clone()
                    },
                );
                Response::from_parts(parts, ProxyBody::upstream(body, checkin))
            }
            Err(f) => self.failed(f),
        }
    }

    /// RFC 9110 §7.6.2: OPTIONS and TRACE with Max-Forwards 0 are answered here; otherwise the
    /// value is decremented.
    fn max_forwards(&self, req: &mut Request<Incoming>) -> Option<Response<ProxyBody>> {
        if req.method() != Method::OPTIONS && req.method() != Method::TRACE {
            return None;
        }
        let n: u64 = req
            .headers()
            .get(header::MAX_FORWARDS)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if n > 0 {
            req.headers_mut()
                .insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
            return None;
        }
        self.metrics.answered_locally.inc();
        if req.method() == Method::OPTIONS {
            let mut r = Response::new(ProxyBody::empty());
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(
                    "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH",
                ),
            );
            return Some(r);
        }
        // TRACE: echo the request as received, without the fields that carry credentials
        // (RFC 9110 §9.3.8).
        let mut echo = String::with_capacity(512);
        let _ = write!(
            echo,
            "{} {} {:?}\r\n",
            req.method(),
            req.uri(),
            req.version()
        );
        for (k, v) in req.headers() {
            if matches!(
                k.as_str(),
                "authorization" | "proxy-authorization" | "cookie"
            ) {
                continue;
            }
            echo.push_str(k.as_str());
            echo.push_str(": ");
            echo.push_str(&String::from_utf8_lossy(v.as_bytes()));
            echo.push_str("\r\n");
        }
        echo.push_str("\r\n");
        let mut r = Response::new(ProxyBody::local(echo));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("message/http"),
        );
        Some(r)
    }

    /// Turns a client request into the one the origin gets.
    fn prepare(&self, req: &mut Request<Incoming>, target: &Target, tag: Option<HeaderValue>) {
        // Origin-form to the origin (RFC 9112 §3.2.1), our own protocol version (RFC 9110
        // §6.2), so that the origin connection stays HTTP/1.1 keep-alive.
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = Parts::default();
        parts.path_and_query = Some(pq);
        if let Ok(u) = Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
        let received = req.version();
        *req.version_mut() = Version::HTTP_11;
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        h.insert(header::HOST, target.authority.clone());
        if let Some(name) = &self.tag_header {
            // Only we set it: a client's own copy is dropped.
            h.remove(name);
            if let Some(v) = tag {
                h.insert(name.clone(), v);
            }
        }
        h.append(
            header::VIA,
            if received == Version::HTTP_10 {
                self.via_10.clone()
            } else {
                self.via_11.clone()
            },
        );
    }

    /// CONNECT host:port (RFC 9110 §9.3.6): screened on the host; a tunnel to an allowed port.
    async fn connect(
        &self,
        mut req: Request<Incoming>,
        state: &Mutex<ConnState>,
    ) -> Response<ProxyBody> {
        if self.mode != HttpMode::Forward {
            let mut r = self.bad_request(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: CONNECT is served in forward mode only\n",
            );
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
            );
            return r;
        }
        let Some(authority) = req.uri().authority().cloned() else {
            return self.bad_request(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: CONNECT needs host:port (RFC 9110 section 9.3.6)\n",
            );
        };
        let (host, Some(port)) = (authority.host(), authority.port_u16()) else {
            return self.bad_request(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: CONNECT needs host:port (RFC 9110 section 9.3.6)\n",
            );
        };
        if authority.as_str().contains('@') || host.is_empty() {
            return self.bad_request(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: CONNECT needs host:port, without user information\n",
            );
        }
        if via_names(req.headers(), &self.via_name) {
            return self.looped();
        }
        if !self.connect_ports.contains(&port) {
            self.metrics.port_refused.inc();
            return text(
                StatusCode::FORBIDDEN,
                "403 Forbidden: tunnels are allowed to the configured ports only\n",
            );
        }
        let screened = {
            let mut g = lock(state);
            let ConnState { scratch, url, .. } = &mut *g;
            // The name is all a tunnel shows; a URL rule for the whole site (`host/`) applies.
            url.clear();
            url.extend_from_slice(b"https://");
            url.extend_from_slice(host.as_bytes());
            url.push(b'/');
            self.screen(host, url, req.headers(), scratch, true)
        };
        if let Screened::Answer(r) = screened {
            return r;
        }
        // Reach the origin before saying 200: a failure can still be told (502/504).
        let addr = match self.origin(host, port).await {
            Ok(a) => a,
            Err(f) => return self.failed(f),
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return self.failed(Failure::Unreachable),
            Err(_) => return self.failed(Failure::Timeout),
        };
        let _ = tcp.set_nodelay(true);
        let upgrade = hyper::upgrade::on(&mut req);
        let (idle, metrics) = (self.tunnel_idle, self.metrics.clone());
        lock(state).tunnel = Some(Box::pin(async move {
            if let Ok(up) = upgrade.await {
                tunnel(TokioIo::new(up), tcp, idle, &metrics).await;
            }
        }));
        self.metrics.tunnelled.inc();
        Response::new(ProxyBody::empty())
    }
}

/// Copies both directions of a tunnel (each half-closed on its own EOF) until both are done, an
/// error occurs, or nothing moved for `idle`.
async fn tunnel(
    client: impl AsyncRead + AsyncWrite + Unpin,
    origin: TcpStream,
    idle: Duration,
    m: &HttpMetrics,
) {
    if super::splice::splice(client, origin, idle, None, None).await {
        m.tunnel_idle_timeouts.inc();
    }
}

fn category_of<'a>(a: &'a Active, v: &Verdict) -> &'a str {
    match v.rule.map(|_| a.engine.category(v.category)) {
        Some(c) if !c.is_empty() => c,
        _ => "none",
    }
}

/// A category as a header value: visible ASCII stays, everything else (a Chinese category
/// name) is percent-encoded as UTF-8, since field values are ASCII in practice (RFC 9110 §5.5).
fn percent_encode_header(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Binds `web.http.listen` (non-blocking, ready for `tokio::net::TcpListener::from_std`).
pub fn bind(cfg: &HttpConfig) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(cfg.listen.len());
    for (i, a) in cfg.listen.iter().enumerate() {
        let key = format!("web.http.listen[{i}]");
        let addr = parse_sockaddr(&key, a)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let l = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {key} {addr}: {e}")))?;
        l.set_nonblocking(true)?;
        out.push(l);
    }
    Ok(out)
}

/// Serves the proxy on `listener` until the future is dropped (or its task aborted): client
/// connections and their tunnels run in a set this future owns, so they stop with it. A
/// configuration that does not validate is refused (logged) and nothing is served.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    cfg: Arc<HttpConfig>,
    metrics: Arc<HttpMetrics>,
) {
    let proxy = match cfg
        .validate()
        .and_then(|()| Proxy::new(&cfg, store, metrics.clone()))
    {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::error!("web.http not started: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        metrics.connections_refused.inc();
                        drop(stream);
                        continue;
                    };
                    metrics.connections_accepted.inc();
                    let p = proxy.clone();
                    conns.spawn(async move {
                        p.connection(stream).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: do not spin; connections that end free
                    // some.
                    tracing::warn!("web.http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dragnet_rules::compile::{source_options, CompileConfig};
    use dragnet_rules::snapshot::write_snapshot;
    use dragnet_rules::{Compiler, Engine, Fact, RuleRef};

    fn cfg() -> HttpConfig {
        HttpConfig {
            enabled: true,
            ..HttpConfig::default()
        }
    }

    fn fields<'a>(category: &'a str, rule: &'a str, host: &'a str) -> PageFields<'a> {
        PageFields {
            category,
            rule,
            appeal: "12381",
            host,
            back: "javascript:history.back()",
            action: "block",
        }
    }

    #[test]
    fn template_fills_placeholders_and_escapes_them() {
        let t = Template::parse("<p class=\"{action}\">{host} {category} {rule} {appeal} {x} {");
        let mut out = String::new();
        t.render(
            &PageFields {
                category: "a<b>",
                rule: "r&\"1'",
                appeal: "<script>",
                host: "evil.example",
                back: "",
                action: "warn",
            },
            "en",
            &mut out,
        );
        assert_eq!(
            out,
            "<p class=\"warn\">evil.example a&lt;b&gt; r&amp;&quot;1&#39; &lt;script&gt; {x} {"
        );
    }

    #[test]
    fn builtin_pages_name_category_rule_and_appeal() {
        let mut c = cfg();
        c.languages = vec!["zh-CN".into(), "en".into()];
        let p = Pages::load(&c).unwrap();
        let mut en = String::new();
        p.render(
            1,
            &fields("phishing", "scam-domains:2", "evil.example"),
            &mut en,
        );
        for want in [
            "phishing",
            "scam-domains:2",
            "12381",
            "evil.example",
            "lang=\"en\"",
        ] {
            assert!(en.contains(want), "{want} missing: {en}");
        }
        let mut zh = String::new();
        p.render(0, &fields("phishing", "r1", "evil.example"), &mut zh);
        assert!(
            zh.contains("反诈骗") && zh.contains("lang=\"zh-CN\""),
            "{zh}"
        );
    }

    #[test]
    fn category_template_overrides_default_per_language() {
        let dir = std::env::temp_dir().join(format!("dragnet-http-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("gambling.en.html");
        std::fs::write(&f, "GAMBLING {rule} {host}").unwrap();
        let mut c = cfg();
        c.languages = vec!["en".into(), "zh-CN".into()];
        c.templates.insert(
            "gambling".into(),
            BTreeMap::from([("en".to_string(), f.display().to_string())]),
        );
        let p = Pages::load(&c).unwrap();
        let mut out = String::new();
        p.render(0, &fields("gambling", "g:1", "<h>"), &mut out);
        assert_eq!(out, "GAMBLING g:1 &lt;h&gt;");
        // zh-CN has no gambling page: its default.
        out.clear();
        p.render(1, &fields("gambling", "g:1", "h"), &mut out);
        assert!(out.contains("反诈骗"), "{out}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn accept_language_picks_by_q_value() {
        let conf = ["zh-CN", "en"];
        let pick = |h: &str| pick_language(conf.iter().copied(), std::iter::once(h.as_bytes()));
        assert_eq!(pick_language(conf.iter().copied(), std::iter::empty()), 0);
        assert_eq!(pick("en"), 1);
        assert_eq!(pick("en-US,en;q=0.9"), 1, "en-US falls back to en");
        assert_eq!(pick("zh"), 0, "zh matches zh-CN");
        assert_eq!(pick("fr;q=1, en;q=0.5, zh-CN;q=0.8"), 0);
        assert_eq!(pick("zh-CN;q=0.2, EN;q=0.3"), 1, "case-insensitive");
        assert_eq!(pick("en;q=0, *"), 0, "q=0 refuses, * is the default");
        assert_eq!(pick("de, fr"), 0, "nothing matches: default");
        assert_eq!(pick("zh-TW"), 0, "zh-TW is not zh-CN; default");
        assert_eq!(pick("en, zh-CN"), 1, "equal q: first listed wins");
        assert_eq!(pick("en;q=2, zh-CN;q=0.1"), 0, "bad q-value ignored");
        assert_eq!(pick(",,;q=1, en;q=1.000"), 1);
        let two = ["en;q=0.1".as_bytes(), "zh-CN;q=0.5".as_bytes()];
        assert_eq!(pick_language(conf.iter().copied(), two.into_iter()), 0);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue(b"1"), Some(1000));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"0.123"), Some(123));
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"1.5"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
        assert_eq!(parse_qvalue(b"x"), None);
        assert_eq!(parse_qvalue(b""), None);
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "foo"),
            ("x-secret-hop", "1"),
            ("foo", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("content-length", "10"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eDp5"),
            ("host", "shop.example"),
            ("cookie", "a=b"),
            ("x-end-to-end", "kept"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["cookie", "host", "x-end-to-end"]);
        // Without Transfer-Encoding, Content-Length is end-to-end and stays.
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn via_loop_detection() {
        let mut h = HeaderMap::new();
        h.append(
            header::VIA,
            HeaderValue::from_static("1.0 fred, 1.1 p.example (Apache)"),
        );
        assert!(!via_names(&h, "dragnet"));
        h.append(header::VIA, HeaderValue::from_static("HTTP/1.1 DragNet"));
        assert!(via_names(&h, "dragnet"));
        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.1 dragnet-edge"));
        assert!(!via_names(&h, "dragnet"), "another gateway's name");
    }

    fn v(action: Action, rule: Option<u32>) -> Verdict {
        Verdict {
            action,
            rule: rule.map(RuleRef),
            category: 0,
            fact: Fact::Domain,
            protected: false,
        }
    }

    #[test]
    fn stricter_verdict_wins_and_allowlist_beats_all() {
        let none = Verdict::ALLOW;
        let tag = v(Action::Tag, Some(1));
        let warn = v(Action::Warn, Some(2));
        let block = v(Action::Block, Some(3));
        let allow = v(Action::Allow, Some(4));
        assert_eq!(combine(none, none), none);
        assert_eq!(combine(block, none), block);
        assert_eq!(combine(none, block), block);
        assert_eq!(combine(tag, warn), warn);
        assert_eq!(combine(warn, tag), warn);
        assert_eq!(combine(block, warn), block);
        assert_eq!(combine(warn, block), block);
        assert_eq!(combine(tag, none), tag);
        assert_eq!(
            combine(block, allow),
            allow,
            "an allowlisted URL under a blocked host"
        );
        assert_eq!(combine(allow, block), allow);
        let url_block = v(Action::Block, Some(9));
        assert_eq!(combine(block, url_block), url_block, "tie: the URL's rule");
    }

    fn engine() -> Engine {
        let mut c = Compiler::new(CompileConfig::default(), false);
        let mut add = |file: &str, text: &str, action: Action, category: &str| {
            let mut o = source_options(None, file, None, false).unwrap();
            o.action = action;
            o.category = category.into();
            c.add_text(text, file, &o).unwrap();
        };
        add("block.domains", "evil.example\n", Action::Block, "phishing");
        add("warn.domains", "loans.example\n", Action::Warn, "loans");
        add("tag.domains", "ads.example\n", Action::Tag, "刷单");
        add(
            "allow.domains",
            "good.evil.example\n",
            Action::Allow,
            "trusted",
        );
        add(
            "block.urls",
            "shop.example/pay/\n",
            Action::Block,
            "fake-shop",
        );
        add(
            "allow.urls",
            "evil.example/appeal/\n",
            Action::Allow,
            "trusted",
        );
        let (t, _) = c.finish().unwrap();
        Engine::from_bytes(&write_snapshot(&t, 1, 0).unwrap()).unwrap()
    }

    fn screen(p: &Proxy, host: &str, path: &str, headers: &HeaderMap) -> Screened {
        let url = format!("http://{host}{path}");
        p.screen(host, url.as_bytes(), headers, &mut Scratch::new(), false)
    }

    fn proxy(c: &HttpConfig) -> (Proxy, Arc<Store>) {
        let store = Arc::new(Store::new(engine(), 0));
        let p = Proxy::new(c, store.clone(), Arc::new(HttpMetrics::new())).unwrap();
        (p, store)
    }

    fn body(r: &Response<ProxyBody>) -> String {
        match &r.body().0 {
            BodyKind::Local(Some(b)) => String::from_utf8(b.to_vec()).unwrap(),
            _ => String::new(),
        }
    }

    #[test]
    fn decisions_on_a_real_engine() {
        let mut c = cfg();
        c.status_by_category.insert("fake-shop".into(), 451);
        c.languages = vec!["en".into(), "zh-CN".into()];
        let (p, store) = proxy(&c);
        let h = HeaderMap::new();
        match screen(&p, "a.evil.example", "/x", &h) {
            Screened::Answer(r) => {
                assert_eq!(r.status(), 403);
                assert_eq!(
                    r.headers()[header::CONTENT_TYPE],
                    "text/html; charset=utf-8"
                );
                assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
                assert_eq!(r.headers()[header::CONTENT_LANGUAGE], "en");
                let b = body(&r);
                assert!(b.contains("phishing") && b.contains("block:1"), "{b}");
            }
            Screened::Forward { .. } => panic!("evil.example must be blocked"),
        }
        // A URL rule under an allowed host, with its category's status.
        let mut zh = HeaderMap::new();
        zh.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("zh-CN,zh;q=0.9,en;q=0.8"),
        );
        match screen(&p, "shop.example", "/pay/now?id=1", &zh) {
            Screened::Answer(r) => {
                assert_eq!(r.status(), 451);
                assert_eq!(r.headers()[header::CONTENT_LANGUAGE], "zh-CN");
                assert!(body(&r).contains("fake-shop"));
            }
            Screened::Forward { .. } => panic!("shop.example/pay/ must be blocked"),
        }
        assert!(matches!(
            screen(&p, "shop.example", "/", &h),
            Screened::Forward { tag: None }
        ));
        // Allowlists: a subdomain, and a URL under a blocked host.
        assert!(matches!(
            screen(&p, "good.evil.example", "/", &h),
            Screened::Forward { tag: None }
        ));
        assert!(matches!(
            screen(&p, "evil.example", "/appeal/form", &h),
            Screened::Forward { tag: None }
        ));
        // Warn without a warning URL: the page, 200.
        match screen(&p, "loans.example", "/", &h) {
            Screened::Answer(r) => {
                assert_eq!(r.status(), 200);
                assert!(body(&r).contains("loans"));
            }
            Screened::Forward { .. } => panic!("warn must answer"),
        }
        // Tag: a header, the non-ASCII category percent-encoded.
        match screen(&p, "ads.example", "/", &h) {
            Screened::Forward { tag: Some(t) } => assert_eq!(t, "%E5%88%B7%E5%8D%95"),
            _ => panic!("tag must forward with a header"),
        }
        let hits = store.hit_totals();
        let web = |action: &str| {
            hits.iter()
                .filter(|(pl, a, _, _)| *pl == Plane::Web && *a == action)
                .map(|t| t.3)
                .sum::<u64>()
        };
        assert_eq!(
            (web("block"), web("warn"), web("tag")),
            (2, 1, 1),
            "{hits:?}"
        );
        assert_eq!(p.metrics.blocked.get(), 2);
        assert_eq!(p.metrics.warned.get(), 1);
    }

    #[test]
    fn warning_url_redirects_with_encoded_parameters() {
        let mut c = cfg();
        c.warning_url = Some("https://warn.carrier.example/page?src=proxy".into());
        let (p, _) = proxy(&c);
        match screen(&p, "ads.example", "/", &HeaderMap::new()) {
            Screened::Forward { .. } => {}
            Screened::Answer(_) => panic!("tag forwards"),
        }
        let mut s = Scratch::new();
        // A CONNECT is never redirected.
        match p.screen(
            "evil.example",
            b"https://evil.example/",
            &HeaderMap::new(),
            &mut s,
            true,
        ) {
            Screened::Answer(r) => assert_eq!(r.status(), 403),
            Screened::Forward { .. } => panic!("blocked"),
        }
        match screen(&p, "loans.example", "/", &HeaderMap::new()) {
            Screened::Answer(r) => {
                assert_eq!(r.status(), 302);
                assert_eq!(
                    r.headers()[header::LOCATION],
                    "https://warn.carrier.example/page?src=proxy&category=loans&rule=warn%3A1&action=warn"
                );
                assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            }
            Screened::Forward { .. } => panic!("warn redirects"),
        }
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        let mut s = String::new();
        percent_encode("a-Z_0.~ /&=?#%刷", &mut s);
        assert_eq!(s, "a-Z_0.~%20%2F%26%3D%3F%23%25%E5%88%B7");
    }

    #[test]
    fn config_defaults_and_errors_name_the_key() {
        assert!(HttpConfig::default().validate().is_ok(), "disabled");
        cfg().validate().unwrap();
        let parse = |t: &str| -> HttpConfig { toml::from_str(t).unwrap() };
        let c = parse("enabled = true\nmode = \"transparent\"\nupstream = \"127.0.0.1:80\"\n[hosts]\n\"Shop.Example.\" = \"127.0.0.1\"\n[timeouts]\nconnect_ms = 100\n");
        c.validate().unwrap();
        assert_eq!(
            c.parsed_hosts().unwrap()["shop.example"],
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(toml::from_str::<HttpConfig>("enabeld = true\n").is_err());
        assert!(toml::from_str::<HttpConfig>("mode = \"reverse\"\n").is_err());
        for (text, key) in [
            ("listen = []", "web.http.listen"),
            ("listen = [\"nowhere\"]", "web.http.listen[0]"),
            ("upstream = \"127.0.0.1:80\"", "web.http.upstream"),
            (
                "mode = \"transparent\"\nupstream = \"x\"",
                "web.http.upstream",
            ),
            ("block_status = 200", "web.http.block_status"),
            (
                "status_by_category = { gambling = 302 }",
                "web.http.status_by_category.gambling",
            ),
            ("warning_url = \"ftp://x/\"", "web.http.warning_url"),
            ("warning_url = \"https://x/a b\"", "web.http.warning_url"),
            ("languages = []", "web.http.languages"),
            ("languages = [\"fr\"]", "web.http.languages[0]"),
            ("languages = [\"en\", \"EN\"]", "web.http.languages[1]"),
            ("languages = [\"en_US\"]", "web.http.languages[0]"),
            (
                "templates = { default = { fr = \"/x\" } }",
                "web.http.templates.default.fr",
            ),
            (
                "templates = { default = { en = \"/nonexistent/p.html\" } }",
                "web.http.templates.default.en",
            ),
            ("appeal = \"a\\nb\"", "web.http.appeal"),
            ("tag_header = \"Bad Name\"", "web.http.tag_header"),
            ("tag_header = \"Connection\"", "web.http.tag_header"),
            ("tag_header = \"Host\"", "web.http.tag_header"),
            ("via = \"a b\"", "web.http.via"),
            ("connect_ports = [443, 0]", "web.http.connect_ports[1]"),
            ("max_connections = 0", "web.http.max_connections"),
            ("pool_per_origin = 5000", "web.http.pool_per_origin"),
            (
                "timeouts = { response_ms = 0 }",
                "web.http.timeouts.response_ms",
            ),
            (
                "timeouts = { tunnel_idle_ms = 0 }",
                "web.http.timeouts.tunnel_idle_ms",
            ),
            ("hosts = { \"a b\" = \"127.0.0.1\" }", "web.http.hosts.a b"),
            (
                "hosts = { \"a.example\" = \"localhost\" }",
                "web.http.hosts.a.example",
            ),
        ] {
            let c = parse(&format!("enabled = true\n{text}\n"));
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn ip_literals() {
        assert_eq!(ip_literal("192.0.2.1"), Some(IpAddr::from([192, 0, 2, 1])));
        assert!(ip_literal("[2001:db8::1]").is_some());
        assert!(ip_literal("shop.example").is_none());
    }

    #[test]
    fn latency_histogram_encodes() {
        let m = HttpMetrics::new();
        m.latency.observe(Duration::from_micros(50));
        m.latency.observe(Duration::from_secs(100));
        m.forwarded.inc();
        let mut reg = Registry::default();
        m.register(reg.sub_registry_with_prefix("dragnet"));
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
        assert!(
            s.contains("dragnet_http_requests_total{result=\"forwarded\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("dragnet_http_request_duration_seconds_count 2"),
            "{s}"
        );
        assert!(
            s.contains("dragnet_http_request_duration_seconds_bucket{le=\"0.0001\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("dragnet_http_request_duration_seconds_bucket{le=\"+Inf\"} 2"),
            "{s}"
        );
        assert_eq!(m.latency.count(), 2);
    }
}
