//! The gateway's configuration: one TOML file, every key known (`deny_unknown_fields`), every
//! error naming the key and the reason. `examples/dragnet.toml` is the embedded default that
//! `dragnet run` uses when no file is given; it documents every key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub rules: RulesConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub sip: SipConfig,
    pub dns: DnsConfig,
    pub check: CheckConfig,
    pub web: WebConfig,
    pub events: crate::events::EventsConfig,
    pub breaker: crate::breaker::BreakerConfig,
    pub control: crate::control::config::ControlConfig,
}

/// The web plane: `[web.http]` (HTTP proxy), `[web.tls]` (transparent TLS port, SNI) and
/// `[web.quic]` (QUIC relay, Initial SNI); each is off by default and documented on its struct.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub http: crate::web::http::HttpConfig,
    pub tls: crate::web::sni::SniConfig,
    pub quic: crate::web::quic_relay::QuicRelayConfig,
}

/// The check API (`POST /v1/check/{call,domain,url,message}`): SBCs and SMS firewalls ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    pub enabled: bool,
    /// Its own listener, or "" to serve it on the admin listener.
    pub listen: String,
    /// Largest request body accepted (bytes; 413 beyond).
    pub max_body: usize,
    /// Most elements in one batch (413 beyond).
    pub max_batch: usize,
    /// Longest message text (bytes; 422 beyond).
    pub max_text: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        let l = crate::check::CheckLimits::default();
        CheckConfig {
            enabled: true,
            listen: String::new(),
            max_body: l.max_body,
            max_batch: l.max_batch,
            max_text: l.max_text,
        }
    }
}

impl CheckConfig {
    fn validate(&self, admin: &AdminConfig) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !self.listen.is_empty() {
            parse_sockaddr("check.listen", &self.listen)?;
        } else if admin.listen.is_empty() {
            return Err(err(
                "check.listen",
                "the check API is enabled but has no listener: set check.listen, or admin.listen to share it",
            ));
        }
        for (key, v) in [
            ("check.max_body", self.max_body),
            ("check.max_batch", self.max_batch),
            ("check.max_text", self.max_text),
        ] {
            if v == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Where the rule snapshot comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// A compiled snapshot (`dragnet rules compile`). Unset: the example rule set embedded in
    /// the binary. SIGHUP reloads this file; a bad file is refused and the running one kept.
    pub snapshot: Option<PathBuf>,
    /// Public key files (`dragnet rules keygen`, `NAME.pub`) trusted to sign snapshots. Non-empty:
    /// start-up and every reload refuse a snapshot whose `SNAPSHOT.sig` is missing or does not
    /// verify against one of them (issue 6). Empty: signatures are not checked.
    pub trusted_keys: Vec<PathBuf>,
    /// Let a reload install a snapshot whose version is not newer than the running one. Off: such
    /// a reload is refused (anti-rollback: a replayed old, validly signed snapshot could otherwise
    /// undo a block list).
    pub allow_rollback: bool,
    /// Where the gateway keeps its last good snapshot (`last-good` pointer, `snap-<sha256>.snap`
    /// and `.sig`) and the rollback orders it obeyed. Set it whenever snapshots arrive by push or
    /// from a rules server: on start the newer of `snapshot` and the last-good one runs, so a
    /// restart (or a crash mid-transfer) comes back on the last snapshot it had verified.
    pub state_dir: Option<PathBuf>,
}

impl RulesConfig {
    /// Reads and parses every trusted key file; errors name `rules.trusted_keys[i]`.
    pub fn load_trusted_keys(&self) -> Result<Vec<crate::signing::TrustedKey>, ConfigError> {
        self.trusted_keys
            .iter()
            .enumerate()
            .map(|(i, p)| {
                crate::signing::TrustedKey::load(p)
                    .map_err(|e| err(format!("rules.trusted_keys[{i}]"), e.to_string()))
            })
            .collect()
    }
}

/// The admin HTTP listener: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Empty string disables it.
    pub listen: String,
    /// A file holding the bearer token (RFC 6750) that the mutating endpoints require
    /// (`POST /v1/snapshot`, `/v1/reload`, `/v1/shadow…`). Unset: those endpoints answer 403.
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    /// Reads the token (trimmed); errors name `admin.token_file`.
    pub fn load_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(p) = &self.token_file else {
            return Ok(None);
        };
        let t = std::fs::read_to_string(p).map_err(|e| {
            err(
                "admin.token_file",
                format!("cannot read {}: {e}", p.display()),
            )
        })?;
        let t = t.trim();
        // RFC 6750 §2.1 b64token characters; short tokens are guessable.
        if t.len() < 16 {
            return Err(err(
                "admin.token_file",
                format!("{}: the token must be at least 16 characters", p.display()),
            ));
        }
        if !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            return Err(err(
                "admin.token_file",
                format!(
                    "{}: the token may hold only letters, digits and -._~+/= (RFC 6750 §2.1)",
                    p.display()
                ),
            ));
        }
        Ok(Some(t.to_string()))
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9090".into(),
            token_file: None,
        }
    }
}

/// Logging (tracing).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing target list such as
    /// `info,dragnet_gateway::sip=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `human` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "human".into(),
        }
    }
}

/// How the SIP plane sits in the call path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipMode {
    /// Stateless forwarding to `next_hop` (RFC 3261 §16.11).
    Proxy,
    /// Answer every INVITE: 302 to the original target (with tags) or the reject.
    Redirect,
}

/// The SIP plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub enabled: bool,
    pub mode: SipMode,
    /// UDP listen addresses (`ip:port`).
    pub listen_udp: Vec<String>,
    /// TCP listen addresses (`ip:port`).
    pub listen_tcp: Vec<String>,
    /// The host[:port] written in our Via and recognised in responses. Default: the first UDP
    /// listen address.
    pub advertise: String,
    /// Proxy mode: where screened requests go (`ip:port`, UDP). Requests that come *from* it are
    /// routed by their Route / Request-URI (IP literals only); nothing else is relayed.
    pub next_hop: String,
    /// Worker tasks for UDP (and runtime threads). 1 = one core.
    pub workers: usize,
    /// Backlog bound: after this many datagrams read back to back without the socket running
    /// dry, new INVITEs get 503 until it does (responses and in-dialog requests still flow).
    pub queue: usize,
    /// UDP receive/send buffer (bytes) asked of the kernel: the queue in front of the plane.
    pub socket_buffer: usize,
    /// Retry-After (seconds) on a 503 for overload.
    pub retry_after: u32,
    /// Most TCP connections at once; beyond it new ones are closed at once (counted).
    pub max_tcp_connections: usize,
    /// Seconds a verdict is remembered per INVITE transaction, so that a retransmission, its
    /// ACK and CANCEL get the same answer even across a snapshot reload. ≥ 32 (64·T1).
    pub transaction_seconds: u32,
    /// 64 hex digits: the key of the stateless branch and To-tag derivation. Give the same one
    /// to every gateway behind one address; unset = random at start.
    pub secret: String,
    /// Peers (CIDRs) whose P-Asserted-Identity is believed (RFC 3325 trust domain); others are
    /// screened on From.
    pub trusted: Vec<String>,
    /// Ingress trunk of a source that matches no `[[sip.ingress]]` entry.
    pub default_trunk: String,
    /// Source networks → ingress trunk names (first match wins).
    pub ingress: Vec<IngressConfig>,
    /// How a block is answered, unless a category says otherwise.
    pub block: RejectConfig,
    /// Per-category overrides of `block` (key: the rule category).
    pub category: BTreeMap<String, RejectOverride>,
    pub tag: TagConfig,
    pub warn: WarnConfig,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            enabled: true,
            mode: SipMode::Proxy,
            listen_udp: vec!["127.0.0.1:5060".into()],
            listen_tcp: vec!["127.0.0.1:5060".into()],
            advertise: String::new(),
            next_hop: "127.0.0.1:5070".into(),
            workers: 1,
            queue: 1024,
            socket_buffer: 4 << 20,
            retry_after: 5,
            max_tcp_connections: 1024,
            transaction_seconds: 40,
            secret: String::new(),
            trusted: vec!["127.0.0.0/8".into(), "::1/128".into()],
            default_trunk: "domestic".into(),
            ingress: Vec::new(),
            block: RejectConfig::default(),
            category: BTreeMap::new(),
            tag: TagConfig::default(),
            warn: WarnConfig::default(),
        }
    }
}

/// One `[[sip.ingress]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    pub cidr: String,
    pub trunk: String,
    /// Calls on this trunk come from abroad (rules scoped to `international`). Default: the
    /// trunk is named `international`.
    pub international: Option<bool>,
}

/// How a blocked call is answered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectConfig {
    /// 608 (RFC 8688, with Call-Info purpose=jwscard), 603 (with a Reason header: the "603+"
    /// practice), 607, or any 4xx–6xx code.
    pub code: u16,
    /// Reason phrase; empty = the standard one for the code.
    pub reason: String,
    /// RFC 8688 §3: the URL of the jCard that explains the rejection and how to appeal.
    pub jwscard_url: String,
    /// Where the callee's or caller's operator appeals (a number or URL), put in the Reason text.
    pub appeal: String,
}

impl Default for RejectConfig {
    fn default() -> Self {
        RejectConfig {
            code: 608,
            reason: String::new(),
            jwscard_url: "https://fraud-appeal.example/jwscard".into(),
            appeal: "12381".into(),
        }
    }
}

/// A per-category override; unset keys inherit `[sip.block]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectOverride {
    pub code: Option<u16>,
    pub reason: Option<String>,
    pub jwscard_url: Option<String>,
    pub appeal: Option<String>,
}

/// What a tag adds to the forwarded INVITE (or to the 302 Contact as URI headers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagConfig {
    /// Header name → value template; `{category}`, `{rule}`, `{action}`, `{fact}` are replaced.
    pub headers: BTreeMap<String, String>,
}

impl Default for TagConfig {
    fn default() -> Self {
        let mut headers = BTreeMap::new();
        headers.insert("X-Fraud-Category".into(), "{category}".into());
        headers.insert("X-Fraud-Rule".into(), "{rule}".into());
        headers.insert(
            "X-Caller-Label".into(),
            "Suspected fraud ({category})".into(),
        );
        TagConfig { headers }
    }
}

/// Warn: the call is redirected (302) to an announcement that warns the caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarnConfig {
    /// A SIP URI; empty = a warn is handled like a tag.
    pub announcement: String,
}

impl Default for WarnConfig {
    fn default() -> Self {
        WarnConfig {
            announcement: "sip:fraud-warning@127.0.0.1:5090".into(),
        }
    }
}

/// What a DNS answer to a listed name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsPolicy {
    /// RCODE NXDOMAIN with a synthetic SOA (RFC 2308).
    Nxdomain,
    /// NOERROR with no records.
    Nodata,
    /// RCODE REFUSED.
    Refused,
    /// A/AAAA of the warning page (`sinkhole_v4` / `sinkhole_v6`).
    Sinkhole,
    /// A CNAME to `cname` (a walled garden).
    Cname,
    /// Answer normally (forward); the hit is only counted.
    Log,
    /// No answer at all.
    Drop,
}

/// The DNS plane.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub enabled: bool,
    pub listen_udp: Vec<String>,
    pub listen_tcp: Vec<String>,
    /// DNS-over-QUIC listen addresses (`ip:port`, RFC 9250; the standard port is 853, never 53).
    /// Empty: DoQ is off.
    pub listen_doq: Vec<String>,
    /// PEM file with the DoQ certificate chain (end-entity first). Empty, with `tls_key` empty:
    /// a self-signed certificate is generated at start (not for production).
    pub tls_cert: String,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: String,
    /// Resolvers everything else is forwarded to (`ip:port`), tried in turn.
    pub upstreams: Vec<String>,
    /// Milliseconds before an upstream query is given up (SERVFAIL to the client).
    pub timeout_ms: u64,
    /// Client networks served; others get REFUSED (not an open resolver).
    pub allow: Vec<String>,
    /// UDP worker tasks.
    pub workers: usize,
    /// Our EDNS UDP payload size (RFC 6891), also the cap of answers over UDP.
    pub udp_size: u16,
    /// Answers cached per worker (packet cache of upstream answers).
    pub cache_entries: usize,
    /// Longest time an upstream answer is cached, seconds.
    pub cache_max_ttl: u32,
    /// Queries per second per client address (0 = no limit); beyond it: REFUSED.
    pub rate_limit: u32,
    /// TTL of synthesized records and of negative answers.
    pub answer_ttl: u32,
    pub negative_ttl: u32,
    /// What a block is answered with, unless the rule (RPZ) or its category says otherwise.
    pub block: DnsPolicy,
    /// What a warn is answered with (e.g. `sinkhole` to a warning page).
    pub warn: DnsPolicy,
    pub sinkhole_v4: Vec<String>,
    pub sinkhole_v6: Vec<String>,
    pub cname: String,
    /// Per-category block policy (key: the rule category).
    pub category: BTreeMap<String, DnsPolicy>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            listen_udp: vec!["127.0.0.1:5053".into()],
            listen_tcp: vec!["127.0.0.1:5053".into()],
            listen_doq: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            upstreams: vec!["127.0.0.53:53".into()],
            timeout_ms: 2000,
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            workers: 1,
            udp_size: 1232,
            cache_entries: 100_000,
            cache_max_ttl: 3600,
            rate_limit: 0,
            answer_ttl: 60,
            negative_ttl: 60,
            block: DnsPolicy::Nxdomain,
            warn: DnsPolicy::Sinkhole,
            sinkhole_v4: vec!["127.0.0.1".into()],
            sinkhole_v6: vec!["::1".into()],
            cname: "walled-garden.example".into(),
            category: BTreeMap::new(),
        }
    }
}

/// A configuration error: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The embedded default file (`examples/dragnet.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../examples/dragnet.toml");

impl Config {
    /// Parses and validates a TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("{origin}:{line}")
                })
                .unwrap_or_else(|| origin.to_string());
            err(at, e.message().trim().to_string())
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::from_toml(DEFAULT_TOML, "embedded examples/dragnet.toml")
    }

    /// Checks everything that can be checked without binding sockets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.admin.listen.is_empty() {
            parse_sockaddr("admin.listen", &self.admin.listen)?;
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(err("log.format", "must be \"human\" or \"json\""));
        }
        self.rules.load_trusted_keys()?;
        self.admin.load_token()?;
        self.dns.validate()?;
        self.check.validate(&self.admin)?;
        self.web.http.validate()?;
        self.web.tls.validate()?;
        self.web.quic.validate()?;
        self.events.validate()?;
        self.breaker.validate()?;
        self.control.validate()?;
        if self.control.enabled && self.rules.trusted_keys.is_empty() {
            return Err(err(
                "rules.trusted_keys",
                "control is enabled: the gateway verifies every snapshot the rules server offers, so at least one trusted key is needed",
            ));
        }
        if self.control.enabled && self.rules.state_dir.is_none() {
            return Err(err(
                "rules.state_dir",
                "control is enabled: the last-good snapshot must be kept on disk (and deltas are made against it)",
            ));
        }
        let s = &self.sip;
        if !s.enabled {
            return Ok(());
        }
        if s.listen_udp.is_empty() && s.listen_tcp.is_empty() {
            return Err(err(
                "sip.listen_udp",
                "the SIP plane is enabled but listens nowhere (set listen_udp or listen_tcp)",
            ));
        }
        for (i, a) in s.listen_udp.iter().enumerate() {
            parse_sockaddr(&format!("sip.listen_udp[{i}]"), a)?;
        }
        for (i, a) in s.listen_tcp.iter().enumerate() {
            parse_sockaddr(&format!("sip.listen_tcp[{i}]"), a)?;
        }
        if s.mode == SipMode::Proxy {
            if s.listen_udp.is_empty() {
                return Err(err(
                    "sip.listen_udp",
                    "proxy mode forwards over UDP from the first UDP listener: give at least one",
                ));
            }
            if s.next_hop.is_empty() {
                return Err(err("sip.next_hop", "proxy mode needs a next hop (ip:port)"));
            }
            parse_sockaddr("sip.next_hop", &s.next_hop)?;
        }
        if !s.advertise.is_empty() {
            check_hostport("sip.advertise", &s.advertise)?;
        }
        if s.workers == 0 || s.workers > 256 {
            return Err(err("sip.workers", "must be 1..=256"));
        }
        if s.queue == 0 || s.queue > 1 << 20 {
            return Err(err("sip.queue", "must be 1..=1048576"));
        }
        if s.socket_buffer < 65_536 || s.socket_buffer > 1 << 30 {
            return Err(err("sip.socket_buffer", "must be 65536..=1073741824 bytes"));
        }
        if s.max_tcp_connections == 0 || s.max_tcp_connections > 1 << 20 {
            return Err(err("sip.max_tcp_connections", "must be 1..=1048576"));
        }
        if s.transaction_seconds < 32 {
            return Err(err(
                "sip.transaction_seconds",
                "must be at least 32 (64 × T1, RFC 3261 §17.2.1), or retransmissions could get a different answer",
            ));
        }
        if !s.secret.is_empty() {
            parse_secret(&s.secret).ok_or_else(|| err("sip.secret", "must be 64 hex digits"))?;
        }
        for (i, c) in s.trusted.iter().enumerate() {
            Cidr::parse(c).map_err(|e| err(format!("sip.trusted[{i}]"), e))?;
        }
        check_token("sip.default_trunk", &s.default_trunk, true)?;
        for (i, g) in s.ingress.iter().enumerate() {
            Cidr::parse(&g.cidr).map_err(|e| err(format!("sip.ingress[{i}].cidr"), e))?;
            check_token(&format!("sip.ingress[{i}].trunk"), &g.trunk, false)?;
        }
        check_reject("sip.block", s.block.code, &s.block.reason)?;
        check_text("sip.block.jwscard_url", &s.block.jwscard_url)?;
        check_text("sip.block.appeal", &s.block.appeal)?;
        for (name, o) in &s.category {
            let key = format!("sip.category.{name}");
            check_reject(
                &key,
                o.code.unwrap_or(s.block.code),
                o.reason.as_deref().unwrap_or(""),
            )?;
            for v in [&o.jwscard_url, &o.appeal].into_iter().flatten() {
                check_text(&key, v)?;
            }
        }
        for (name, v) in &s.tag.headers {
            check_token(&format!("sip.tag.headers.{name}"), name, false)?;
            check_text(&format!("sip.tag.headers.{name}"), v)?;
        }
        if s.tag.headers.len() > 8 {
            return Err(err("sip.tag.headers", "at most 8 headers"));
        }
        if !s.warn.announcement.is_empty() {
            let a = s.warn.announcement.as_bytes();
            if !matches!(
                crate::sip::parse_uri(a),
                Ok(crate::sip::Uri::Sip(_) | crate::sip::Uri::Tel(_))
            ) || a.iter().any(|&b| b == b'>' || b <= b' ')
            {
                return Err(err(
                    "sip.warn.announcement",
                    "must be a sip:, sips: or tel: URI without spaces",
                ));
            }
        }
        Ok(())
    }
}

impl DnsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let d = self;
        if !d.enabled {
            return Ok(());
        }
        if d.listen_udp.is_empty() && d.listen_tcp.is_empty() && d.listen_doq.is_empty() {
            return Err(err(
                "dns.listen_udp",
                "the DNS plane is enabled but listens nowhere",
            ));
        }
        for (i, a) in d.listen_udp.iter().enumerate() {
            parse_sockaddr(&format!("dns.listen_udp[{i}]"), a)?;
        }
        for (i, a) in d.listen_tcp.iter().enumerate() {
            parse_sockaddr(&format!("dns.listen_tcp[{i}]"), a)?;
        }
        for (i, a) in d.listen_doq.iter().enumerate() {
            let key = format!("dns.listen_doq[{i}]");
            if parse_sockaddr(&key, a)?.port() == 53 {
                // RFC 9250 §4.1.1: DoQ MUST NOT use UDP port 53 (confusion with plain DNS).
                return Err(err(
                    key,
                    "DNS-over-QUIC must not use port 53 (RFC 9250 §4.1.1); the standard port is 853",
                ));
            }
        }
        match (d.tls_cert.is_empty(), d.tls_key.is_empty()) {
            (true, true) => {}
            (false, true) => {
                return Err(err(
                    "dns.tls_key",
                    "dns.tls_cert is set but its key is not (set both, or neither for a self-signed certificate)",
                ))
            }
            (true, false) => {
                return Err(err(
                    "dns.tls_cert",
                    "dns.tls_key is set but its certificate is not (set both, or neither for a self-signed certificate)",
                ))
            }
            (false, false) => {
                crate::dns_plane::doq::load_identity(&d.tls_cert, &d.tls_key)?;
            }
        }
        if d.upstreams.is_empty() {
            return Err(err(
                "dns.upstreams",
                "at least one upstream resolver (ip:port)",
            ));
        }
        for (i, a) in d.upstreams.iter().enumerate() {
            parse_sockaddr(&format!("dns.upstreams[{i}]"), a)?;
        }
        for (i, c) in d.allow.iter().enumerate() {
            Cidr::parse(c).map_err(|e| err(format!("dns.allow[{i}]"), e))?;
        }
        if d.timeout_ms == 0 || d.timeout_ms > 60_000 {
            return Err(err("dns.timeout_ms", "must be 1..=60000"));
        }
        if d.workers == 0 || d.workers > 256 {
            return Err(err("dns.workers", "must be 1..=256"));
        }
        if d.udp_size < 512 {
            return Err(err(
                "dns.udp_size",
                "must be at least 512 (RFC 6891 §6.2.5)",
            ));
        }
        for (i, a) in d.sinkhole_v4.iter().enumerate() {
            a.parse::<std::net::Ipv4Addr>().map_err(|_| {
                err(
                    format!("dns.sinkhole_v4[{i}]"),
                    format!("{a:?} is not an IPv4 address"),
                )
            })?;
        }
        for (i, a) in d.sinkhole_v6.iter().enumerate() {
            a.parse::<std::net::Ipv6Addr>().map_err(|_| {
                err(
                    format!("dns.sinkhole_v6[{i}]"),
                    format!("{a:?} is not an IPv6 address"),
                )
            })?;
        }
        let mut wire = [0u8; 255];
        let uses_cname = d.block == DnsPolicy::Cname
            || d.warn == DnsPolicy::Cname
            || d.category.values().any(|p| *p == DnsPolicy::Cname);
        if uses_cname && crate::dns::name_to_wire(d.cname.as_bytes(), &mut wire).is_none() {
            return Err(err(
                "dns.cname",
                format!("{:?} is not a domain name", d.cname),
            ));
        }
        Ok(())
    }
}

fn check_reject(key: &str, code: u16, reason: &str) -> Result<(), ConfigError> {
    if !(400..=699).contains(&code) {
        return Err(err(
            format!("{key}.code"),
            format!("{code} is not a final error code (400..=699)"),
        ));
    }
    check_text(&format!("{key}.reason"), reason)
}

fn check_text(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(err(key, "contains a control character (CR, LF, NUL …)"));
    }
    Ok(())
}

fn check_token(key: &str, v: &str, empty_ok: bool) -> Result<(), ConfigError> {
    if v.is_empty() && !empty_ok {
        return Err(err(key, "must not be empty"));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
    {
        return Err(err(
            key,
            format!("{v:?} is not a token (letters, digits, - _ . ! % * + ` ' ~)"),
        ));
    }
    Ok(())
}

fn check_hostport(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.parse::<SocketAddr>().is_ok() || v.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (v, None),
    };
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| err(key, format!("port {p:?} is not 1..=65535")))?;
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(err(key, format!("{v:?} is not host[:port]")));
    }
    Ok(())
}

/// Parses `ip:port` (IPv6 as `[::1]:5060`).
pub fn parse_sockaddr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse::<SocketAddr>()
        .map_err(|_| err(key, format!("{v:?} is not ip:port (IPv6 as [::1]:5060)")))
}

/// Parses a 64-hex-digit secret.
pub fn parse_secret(v: &str) -> Option<[u8; 32]> {
    let b = v.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let h = (b[2 * i] as char).to_digit(16)?;
        let l = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (h * 16 + l) as u8;
    }
    Some(out)
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        let c = Cidr { addr, len };
        if c.masked(addr) != addr {
            return Err(format!("{s:?}: host bits set below the /{len} prefix"));
        }
        Ok(c)
    }

    fn masked(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V4(v) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(v) & m).into())
            }
            IpAddr::V6(v) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v) & m).into())
            }
        }
    }

    /// IPv4-mapped IPv6 sources (`::ffff:10.1.2.3`) match IPv4 networks.
    pub fn contains(&self, a: IpAddr) -> bool {
        let a = match a {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        a.is_ipv4() == self.addr.is_ipv4() && self.masked(a) == self.addr
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.sip.mode, SipMode::Proxy);
        assert!(c.sip.enabled);
    }

    #[test]
    fn the_check_api_needs_a_listener_and_sane_limits() {
        let mut c = Config::embedded().unwrap();
        assert!(c.check.enabled && c.check.listen.is_empty());
        c.admin.listen = String::new();
        assert_eq!(c.validate().unwrap_err().key, "check.listen");
        c.check.listen = "127.0.0.1:8081".into();
        c.validate().unwrap();
        c.check.max_batch = 0;
        assert_eq!(c.validate().unwrap_err().key, "check.max_batch");
        c.check.enabled = false;
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Config::from_toml(
            "[sip]\nmode = \"proxy\"\nnext_hopp = \"1.2.3.4:5\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "t.toml:3");
        assert!(e.reason.contains("next_hopp"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[sip]\nnext_hop = \"nowhere\"\n", "sip.next_hop"),
            ("[sip]\nblock.code = 302\n", "sip.block.code"),
            (
                "[sip]\ntransaction_seconds = 5\n",
                "sip.transaction_seconds",
            ),
            ("[sip]\ntrusted = [\"10.0.0.1/8\"]\n", "sip.trusted[0]"),
            ("[sip]\nsecret = \"abc\"\n", "sip.secret"),
            (
                "[sip.category.spam]\ncode = 200\n",
                "sip.category.spam.code",
            ),
            (
                "[sip.tag.headers]\n\"Bad Name\" = \"x\"\n",
                "sip.tag.headers.Bad Name",
            ),
            (
                "[sip.warn]\nannouncement = \"http://x\"\n",
                "sip.warn.announcement",
            ),
            (
                "[[sip.ingress]]\ncidr = \"10.0.0.0/33\"\ntrunk = \"intl\"\n",
                "sip.ingress[0].cidr",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            (
                "[dns]\nlisten_doq = [\"127.0.0.1:53\"]\n",
                "dns.listen_doq[0]",
            ),
            (
                "[dns]\nlisten_doq = [\"127.0.0.1:853\"]\ntls_cert = \"/nonexistent/c.pem\"\n",
                "dns.tls_key",
            ),
            (
                "[dns]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n",
                "dns.tls_cert",
            ),
        ] {
            let e = Config::from_toml(text, "t").unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn trusted_keys_must_parse() {
        use std::path::Path;
        let d = std::env::temp_dir().join(format!("dragnet-config-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let k = crate::signing::keygen(&d.join("ops")).unwrap();
        let junk = d.join("junk.pub");
        std::fs::write(&junk, "not a key\n").unwrap();
        let toml = |keys: &[&Path]| {
            let list: Vec<String> = keys
                .iter()
                .map(|p| format!("{:?}", p.display().to_string()))
                .collect();
            format!(
                "[rules]\ntrusted_keys = [{}]\nallow_rollback = true\n",
                list.join(", ")
            )
        };
        let c = Config::from_toml(&toml(&[&k.public]), "t").unwrap();
        assert!(c.rules.allow_rollback);
        assert_eq!(c.rules.load_trusted_keys().unwrap()[0].key_id(), k.key_id);
        let e = Config::from_toml(&toml(&[&k.public, &junk]), "t").unwrap_err();
        assert_eq!(e.key, "rules.trusted_keys[1]", "{e}");
        assert!(e.reason.contains("64 hex digits"), "{e}");
        let e = Config::from_toml(&toml(&[&d.join("missing.pub")]), "t").unwrap_err();
        assert_eq!(e.key, "rules.trusted_keys[0]", "{e}");
        // The private key is not a public key file.
        let e = Config::from_toml(&toml(&[&k.key]), "t").unwrap_err();
        assert_eq!(e.key, "rules.trusted_keys[0]", "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let z = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(z.contains("192.0.2.1".parse().unwrap()));
        assert!(!z.contains("::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    }
}
