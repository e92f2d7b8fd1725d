//! The SIP plane: screens every new INVITE on caller and callee and forwards, tags, redirects or
//! rejects it.
//!
//! [`SipCore::handle`] is the whole decision for one received message, sans IO: bytes, source
//! address and transport in; the bytes to send (in the worker's buffer) and where, out. The
//! tokio shell ([`net`]) only moves datagrams and stream frames. Nothing here allocates,
//! locks or logs per message once a worker's buffers have grown to the largest message seen.
//!
//! Behaviour (RFC 3261 unless noted):
//! - **proxy** mode is a stateless proxy (§16.11): requests from anywhere but the next hop go to
//!   the next hop; requests *from* the next hop go to their top Route or Request-URI (IP
//!   literals only: there is no DNS on the data path); nothing else is relayed (no open relay).
//!   Our Via carries a branch derived from the received branch (so retransmissions and CANCEL
//!   map to the same one); responses are routed back by the next Via (`received`/`rport`,
//!   RFC 3581), over the TCP connection the request came on when it came on one.
//! - **redirect** mode answers each INVITE itself: 302 with the original target in Contact (tag
//!   facts as URI headers), or the reject. ACKs to it are absorbed, CANCEL gets 200 or 481.
//! - **screening**: caller from P-Asserted-Identity when the peer is trusted (RFC 3325), else
//!   From; callee from the Request-URI; ingress trunk from the source address. The engine
//!   decides; protected callees always pass untouched. Block → the configured reject (608 with
//!   Call-Info purpose=jwscard per RFC 8688, 603 with a Reason header, …); tag → headers added;
//!   warn → 302 to the announcement. Each INVITE transaction's verdict is remembered (see
//!   [`cache`]) so retransmissions get the same answer across reloads and the ACK is absorbed.
//! - **hygiene** (§16.3): 505 for another SIP version, 416 for an unknown URI scheme, 483 when
//!   Max-Forwards is 0, 420 for a Proxy-Require, 400 for a malformed request whose Via can still
//!   be read, else dropped; every case counted. Internal errors fail open (forwarded, counted).

pub mod cache;
pub mod net;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use dragnet_rules::{Action, Call, Engine, Number, Verdict};

use crate::config::{parse_secret, parse_sockaddr, Cidr, ConfigError, SipConfig, SipMode};
use crate::events::Facts;
use crate::hits::NumberText;
use crate::metrics::SipMetrics;
use crate::sip::{
    self, forward_request, forward_response, local_response, stateless_branch, to_tag_for, Host,
    Kind, Message, Uri, ViaSpec, MAGIC_COOKIE,
};
use crate::store::{Active, Plane, Store};
use cache::{Entry, TxCache};

/// Transport a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where the bytes in [`Worker::out`] go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Nothing to send (absorbed or dropped; counted).
    None,
    Udp(SocketAddr),
    /// The TCP connection with this id.
    Conn(u32),
}

/// A worker's reusable buffers (one per task; they grow to the largest message and stay).
#[derive(Debug, Default)]
pub struct Worker {
    pub out: Vec<u8>,
    text: String,
    uri: Vec<u8>,
}

impl Worker {
    pub fn new() -> Worker {
        Worker {
            out: Vec::with_capacity(4096),
            text: String::with_capacity(512),
            uri: Vec::with_capacity(512),
        }
    }
}

#[derive(Debug, Clone)]
struct Reject {
    code: u16,
    reason: String,
    jwscard: String,
    appeal: String,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Category,
    Rule,
    Action,
    Fact,
}

#[derive(Debug, Clone)]
struct Template {
    name: String,
    pieces: Vec<Piece>,
}

fn template(name: &str, v: &str) -> Template {
    let mut pieces = Vec::new();
    let mut rest = v;
    while let Some(i) = rest.find('{') {
        let (lit, tail) = rest.split_at(i);
        let var = [
            ("{category}", Piece::Category),
            ("{rule}", Piece::Rule),
            ("{action}", Piece::Action),
            ("{fact}", Piece::Fact),
        ]
        .into_iter()
        .find(|(k, _)| tail.starts_with(k));
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit.to_string()));
        }
        match var {
            Some((k, p)) => {
                pieces.push(p);
                rest = &tail[k.len()..];
            }
            None => {
                pieces.push(Piece::Lit("{".into()));
                rest = &tail[1..];
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Lit(rest.to_string()));
    }
    Template {
        name: name.to_string(),
        pieces,
    }
}

/// The standard reason phrase of a status code (RFC 3261 §21, RFC 8197, RFC 8688).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Rejected",
    }
}

/// The resolved configuration and shared state of the SIP plane.
#[derive(Debug)]
pub struct SipCore {
    mode: SipMode,
    next_hop: Option<SocketAddr>,
    locals: Vec<SocketAddr>,
    via_host: String,
    via_port: u16,
    sent_by: String,
    secret: [u8; 32],
    hasher: std::collections::hash_map::RandomState,
    trusted: Vec<Cidr>,
    ingress: Vec<(Cidr, String, bool)>,
    default_trunk: String,
    default_international: bool,
    block: Reject,
    by_category: HashMap<String, Reject>,
    tags: Vec<Template>,
    announcement: String,
    retry_after: String,
    pub cache: TxCache,
    pub metrics: SipMetrics,
    pub store: Arc<Store>,
}

/// Slots of the transaction cache: 2¹⁹ (12 MiB) holds 40 s of ≈ 13 000 new INVITEs/s.
pub const CACHE_SLOTS: usize = 1 << 19;

impl SipCore {
    /// Resolves a validated configuration. `bound_udp` is the first bound UDP address (for the
    /// Via when `advertise` is empty).
    pub fn new(
        cfg: &SipConfig,
        bound: &[SocketAddr],
        store: Arc<Store>,
        metrics: SipMetrics,
    ) -> Result<SipCore, ConfigError> {
        let e = |key: &str, reason: String| ConfigError {
            key: key.into(),
            reason,
        };
        let next_hop = match cfg.mode {
            SipMode::Proxy => Some(parse_sockaddr("sip.next_hop", &cfg.next_hop)?),
            SipMode::Redirect => None,
        };
        let first = bound
            .first()
            .copied()
            .ok_or_else(|| e("sip.listen_udp", "no listener bound".into()))?;
        let (via_host, via_port) = if cfg.advertise.is_empty() {
            (first.ip().to_string(), first.port())
        } else if let Ok(sa) = cfg.advertise.parse::<SocketAddr>() {
            (sa.ip().to_string(), sa.port())
        } else {
            match cfg.advertise.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| e("sip.advertise", format!("bad port {p:?}")))?,
                ),
                _ => (cfg.advertise.clone(), 5060),
            }
        };
        let sent_by = if via_host.contains(':') {
            format!("[{via_host}]:{via_port}")
        } else {
            format!("{via_host}:{via_port}")
        };
        let secret = if cfg.secret.is_empty() {
            random_secret()
        } else {
            parse_secret(&cfg.secret)
                .ok_or_else(|| e("sip.secret", "must be 64 hex digits".into()))?
        };
        let cidr = |key: String, s: &str| Cidr::parse(s).map_err(|r| e(&key, r));
        let trusted = cfg
            .trusted
            .iter()
            .enumerate()
            .map(|(i, c)| cidr(format!("sip.trusted[{i}]"), c))
            .collect::<Result<_, _>>()?;
        let ingress = cfg
            .ingress
            .iter()
            .enumerate()
            .map(|(i, g)| {
                Ok((
                    cidr(format!("sip.ingress[{i}].cidr"), &g.cidr)?,
                    g.trunk.clone(),
                    g.international.unwrap_or(g.trunk == "international"),
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let reason = |code: u16, r: &str| {
            if r.is_empty() {
                reason_phrase(code).to_string()
            } else {
                r.to_string()
            }
        };
        let block = Reject {
            code: cfg.block.code,
            reason: reason(cfg.block.code, &cfg.block.reason),
            jwscard: cfg.block.jwscard_url.clone(),
            appeal: cfg.block.appeal.clone(),
        };
        let by_category = cfg
            .category
            .iter()
            .map(|(name, o)| {
                let code = o.code.unwrap_or(block.code);
                let r = Reject {
                    code,
                    reason: match (&o.reason, o.code) {
                        (Some(r), _) => reason(code, r),
                        (None, Some(_)) => reason(code, ""),
                        (None, None) => block.reason.clone(),
                    },
                    jwscard: o
                        .jwscard_url
                        .clone()
                        .unwrap_or_else(|| block.jwscard.clone()),
                    appeal: o.appeal.clone().unwrap_or_else(|| block.appeal.clone()),
                };
                (name.clone(), r)
            })
            .collect();
        let mut locals: Vec<SocketAddr> = bound.to_vec();
        if let Ok(ip) = via_host.parse::<IpAddr>() {
            locals.push(SocketAddr::new(ip, via_port));
        }
        Ok(SipCore {
            mode: cfg.mode,
            next_hop,
            locals,
            via_host,
            via_port,
            sent_by,
            secret,
            hasher: std::collections::hash_map::RandomState::new(),
            trusted,
            ingress,
            default_international: cfg.default_trunk == "international",
            default_trunk: cfg.default_trunk.clone(),
            block,
            by_category,
            tags: cfg
                .tag
                .headers
                .iter()
                .map(|(k, v)| template(k, v))
                .collect(),
            announcement: cfg.warn.announcement.clone(),
            retry_after: cfg.retry_after.to_string(),
            cache: TxCache::new(CACHE_SLOTS, cfg.transaction_seconds),
            metrics,
            store,
        })
    }

    /// The mode.
    pub fn mode(&self) -> SipMode {
        self.mode
    }

    /// Handles one received message; the bytes to send are left in `w.out`.
    pub fn handle(
        &self,
        w: &mut Worker,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
        now: u64,
    ) -> Dest {
        w.out.clear();
        // RFC 5626 §3.5.1 keep-alives (CRLF) and stray whitespace: nothing to do.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return Dest::None;
        }
        let msg = match sip::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.parse_error(&e);
                return self.salvage_400(w, data, &e, src, transport, conn);
            }
        };
        let m = &self.metrics;
        match msg.kind() {
            Kind::Response { .. } => {
                match transport {
                    Transport::Udp => m.rx_udp_response.inc(),
                    Transport::Tcp => m.rx_tcp_response.inc(),
                };
                self.response(w, &msg)
            }
            Kind::Request { method, uri, .. } => {
                match transport {
                    Transport::Udp => m.rx_udp_request.inc(),
                    Transport::Tcp => m.rx_tcp_request.inc(),
                };
                self.request(w, &msg, method, uri, src, transport, conn, now)
            }
        }
    }

    /// Overload: the plane is behind. A new INVITE (no To-tag) gets 503 with Retry-After
    /// (RFC 3261 §21.5.4) at once; everything else — responses, ACK, CANCEL, in-dialog
    /// requests — is handled as usual so that calls in progress complete. Counted.
    pub fn handle_overloaded(
        &self,
        w: &mut Worker,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
        now: u64,
    ) -> Dest {
        let initial_invite = matches!(sip::parse(data), Ok(ref m)
            if matches!(m.kind(), Kind::Request { method: b"INVITE", .. })
                && m.to().ok().and_then(|t| t.tag).is_none());
        if !initial_invite {
            return self.handle(w, data, src, transport, conn, now);
        }
        self.overload(w, data, src, transport, conn)
    }

    /// Answers a request 503 + Retry-After without screening it (or drops what cannot be
    /// answered). Counted in `dragnet_sip_overload_total`.
    pub fn overload(
        &self,
        w: &mut Worker,
        data: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        w.out.clear();
        self.metrics.overload.inc();
        let Ok(msg) = sip::parse(data) else {
            self.metrics.drops.overload.inc();
            return Dest::None;
        };
        match msg.kind() {
            Kind::Request { method, .. } if method != b"ACK" => {
                let ra = [("Retry-After", self.retry_after.as_str())];
                self.answer(
                    w,
                    &msg,
                    503,
                    "Service Unavailable",
                    &ra,
                    src,
                    transport,
                    conn,
                )
            }
            _ => {
                self.metrics.drops.overload.inc();
                Dest::None
            }
        }
    }

    fn response(&self, w: &mut Worker, msg: &Message) -> Dest {
        if self.mode == SipMode::Redirect {
            self.metrics.drops.stray_response.inc();
            return Dest::None;
        }
        // Our branch says whether the request came over TCP, and on which connection.
        let conn = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .and_then(conn_of_branch);
        match forward_response(msg, &mut w.out, self.sent_by.as_bytes()) {
            Ok(hop) => {
                let tcp = hop.transport.eq_ignore_ascii_case(b"TCP")
                    || hop.transport.eq_ignore_ascii_case(b"TLS");
                if tcp {
                    return match conn {
                        Some(c) => {
                            self.metrics.forwarded_responses.inc();
                            Dest::Conn(c)
                        }
                        None => {
                            self.metrics.drops.connection_gone.inc();
                            Dest::None
                        }
                    };
                }
                let ip = match hop.host {
                    Host::V4(a) => IpAddr::V4(a),
                    Host::V6(a) => IpAddr::V6(a),
                    Host::Name(_) => {
                        self.metrics.drops.unroutable.inc();
                        return Dest::None;
                    }
                };
                // Never reflect a response to a broadcast, multicast or unspecified address
                // (RFC 4475 §3.3.10: a Via can claim anything).
                let unusable = ip.is_unspecified()
                    || ip.is_multicast()
                    || matches!(ip, IpAddr::V4(v) if v.is_broadcast());
                if unusable {
                    self.metrics.drops.unroutable.inc();
                    return Dest::None;
                }
                self.metrics.forwarded_responses.inc();
                Dest::Udp(SocketAddr::new(ip, hop.port))
            }
            Err(_) => {
                self.metrics.drops.stray_response.inc();
                Dest::None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        w: &mut Worker,
        msg: &Message,
        method: &[u8],
        ruri: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
        now: u64,
    ) -> Dest {
        let is_ack = method == b"ACK";
        let answer = |w: &mut Worker, code: u16, extra: &[(&str, &str)]| {
            if is_ack {
                // RFC 3261 §17.1.1.3: an ACK is never answered.
                self.metrics.drops.unroutable.inc();
                Dest::None
            } else {
                self.answer(
                    w,
                    msg,
                    code,
                    reason_phrase(code),
                    extra,
                    src,
                    transport,
                    conn,
                )
            }
        };
        // RFC 3261 §8.2.1 / §16.3 order of checks.
        if !msg.kind().version_supported() {
            return answer(w, 505, &[]);
        }
        let Ok(target) = sip::parse_uri(ruri) else {
            return answer(w, 400, &[]);
        };
        if matches!(target, Uri::Other { .. }) {
            return answer(w, 416, &[]);
        }
        if msg.max_forwards() == Some(0) {
            return answer(w, 483, &[]);
        }
        if msg.proxy_require().next().is_some() {
            // §16.3 step 5: we support no extension; list them all in Unsupported.
            let mut list = std::mem::take(&mut w.text);
            list.clear();
            for (i, o) in msg.proxy_require().enumerate() {
                if i > 0 {
                    list.push_str(", ");
                }
                list.push_str(&String::from_utf8_lossy(o));
            }
            let d = answer(w, 420, &[("Unsupported", list.as_str())]);
            w.text = list;
            return d;
        }
        let from_next_hop = Some(src) == self.next_hop;
        let in_dialog = msg.to().ok().and_then(|t| t.tag).is_some();
        match (self.mode, method) {
            (_, b"INVITE") if !in_dialog => self.invite(w, msg, ruri, src, transport, conn, now),
            (SipMode::Redirect, b"ACK") => {
                // ACKs of our 302s and rejects; a redirect server has no others.
                self.metrics.acks_absorbed.inc();
                Dest::None
            }
            (SipMode::Redirect, b"CANCEL") => {
                let hit = self.cache.get(self.tx_key(msg), now).is_some();
                answer(w, if hit { 200 } else { 481 }, &[])
            }
            (SipMode::Redirect, b"OPTIONS") => answer(w, 200, &[("Allow", ALLOW)]),
            (SipMode::Redirect, _) if in_dialog => answer(w, 481, &[]),
            (SipMode::Redirect, _) => answer(w, 405, &[("Allow", ALLOW)]),
            (SipMode::Proxy, b"ACK" | b"CANCEL") => {
                match self.cache.get(self.tx_key(msg), now) {
                    Some(e) if e.answered_locally => {
                        self.metrics.cache_hits.inc();
                        if is_ack {
                            self.metrics.acks_absorbed.inc();
                            Dest::None
                        } else {
                            // §9.2: the INVITE already has its final response; CANCEL gets 200.
                            answer(w, 200, &[])
                        }
                    }
                    _ => self.forward(w, msg, from_next_hop, transport, conn, &[]),
                }
            }
            (SipMode::Proxy, b"OPTIONS") if !from_next_hop && target_has_no_user(&target) => {
                // A keep-alive probe addressed to us (no user part): answer it.
                answer(w, 200, &[("Allow", ALLOW)])
            }
            (SipMode::Proxy, _) => self.forward(w, msg, from_next_hop, transport, conn, &[]),
        }
    }

    /// Screens a new INVITE and acts on the verdict.
    #[allow(clippy::too_many_arguments)]
    fn invite(
        &self,
        w: &mut Worker,
        msg: &Message,
        ruri: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
        now: u64,
    ) -> Dest {
        let t0 = Instant::now();
        let key = self.tx_key(msg);
        let from_next_hop = Some(src) == self.next_hop;
        let (entry, active) = match self.cache.get(key, now) {
            Some(e) => {
                self.metrics.cache_hits.inc();
                // The verdict stands; explain it with the generation that made it.
                let a = self
                    .store
                    .generation(e.generation)
                    .unwrap_or_else(|| self.store.load().clone());
                (e, a)
            }
            None => {
                let a = self.store.load_full();
                let mut v = self.screen(&a.engine, msg, ruri, src, now);
                self.store.shadow_compare(Plane::Sip, v.action, |e| {
                    self.screen(e, msg, ruri, src, now)
                });
                if let Some(h) = self.store.hits() {
                    v.action = h.gate(Plane::Sip, v.action);
                    if v.action != Action::Allow && v.rule.is_some() {
                        let c = self.call_facts(&a.engine, msg, ruri, src);
                        let caller = c.caller.map(NumberText::new);
                        let callee = c.callee.map(NumberText::new);
                        let facts = Facts {
                            caller: caller.as_ref().map(NumberText::as_str),
                            callee: callee.as_ref().map(NumberText::as_str),
                            ..Facts::default()
                        };
                        h.hit(Plane::Sip, &v, &a.engine, Some(src.ip()), facts, c.trunk);
                    }
                }
                a.count(Plane::Sip, v.action, v.rule.map(|_| v.category));
                let local = match (self.mode, v.action) {
                    _ if v.protected => self.mode == SipMode::Redirect,
                    (SipMode::Redirect, _) | (_, Action::Block) => true,
                    (_, Action::Warn) => !self.announcement.is_empty(),
                    _ => false,
                };
                let e = Entry {
                    verdict: v,
                    generation: a.generation,
                    answered_locally: local,
                };
                self.cache.put(key, &e, now);
                (e, a)
            }
        };
        let d = self.act(
            w,
            msg,
            ruri,
            &entry,
            &active,
            from_next_hop,
            src,
            transport,
            conn,
        );
        self.metrics
            .screen_latency
            .observe_ns(t0.elapsed().as_nanos() as u64);
        d
    }

    /// The verdict for an INVITE.
    fn screen(&self, e: &Engine, msg: &Message, ruri: &[u8], src: SocketAddr, now: u64) -> Verdict {
        e.check_call(&self.call_facts(e, msg, ruri, src), now)
    }

    /// The facts of an INVITE: caller (P-Asserted-Identity from a trusted peer, else From),
    /// callee (Request-URI), the ingress trunk by source address.
    fn call_facts<'a>(
        &'a self,
        e: &Engine,
        msg: &Message,
        ruri: &[u8],
        src: SocketAddr,
    ) -> Call<'a> {
        let plan = e.plan();
        let parse = |b: &[u8]| -> Option<Number> {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| Number::parse(s, plan).ok())
        };
        let callee = parse(ruri);
        let trusted = self.trusted.iter().any(|c| c.contains(src.ip()));
        let pai = if trusted {
            msg.p_asserted_identity()
                .and_then(|r| r.ok())
                .and_then(|n| parse(n.uri_raw))
        } else {
            None
        };
        let caller = pai.or_else(|| msg.from().ok().and_then(|f| parse(f.uri_raw)));
        let (trunk, international) = self
            .ingress
            .iter()
            .find(|(c, _, _)| c.contains(src.ip()))
            .map_or(
                (self.default_trunk.as_str(), self.default_international),
                |(_, t, i)| (t.as_str(), *i),
            );
        Call {
            caller,
            callee,
            trunk,
            international,
        }
    }

    /// Acts on a verdict.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        w: &mut Worker,
        msg: &Message,
        ruri: &[u8],
        e: &Entry,
        a: &Active,
        from_next_hop: bool,
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        let v = &e.verdict;
        if v.protected || v.action == Action::Allow {
            return match self.mode {
                SipMode::Proxy => self.forward(w, msg, from_next_hop, transport, conn, &[]),
                SipMode::Redirect => self.redirect(w, msg, ruri, None, a, src, transport, conn),
            };
        }
        match v.action {
            Action::Block => self.reject(w, msg, v, a, src, transport, conn),
            Action::Warn if !self.announcement.is_empty() => {
                let ann = self.announcement.as_bytes();
                let mut uri = std::mem::take(&mut w.uri);
                uri.clear();
                uri.extend_from_slice(ann);
                let d = self.contact_302(w, msg, &uri, src, transport, conn);
                w.uri = uri;
                d
            }
            _ => match self.mode {
                // Tag (or warn without an announcement).
                SipMode::Proxy => {
                    let mut text = std::mem::take(&mut w.text);
                    let d = {
                        let hs = self.render_tags(&mut text, v, a);
                        let pairs = hs.pairs(&text, &self.tags);
                        self.forward(w, msg, from_next_hop, transport, conn, pairs.as_slice())
                    };
                    w.text = text;
                    d
                }
                SipMode::Redirect => self.redirect(w, msg, ruri, Some(v), a, src, transport, conn),
            },
        }
    }

    /// Renders the tag headers into `text`; returns their ranges.
    fn render_tags(&self, text: &mut String, v: &Verdict, a: &Active) -> Rendered {
        text.clear();
        let mut r = Rendered::default();
        for (i, t) in self.tags.iter().enumerate().take(MAX_TAGS) {
            let start = text.len();
            for p in &t.pieces {
                match p {
                    Piece::Lit(s) => text.push_str(s),
                    Piece::Category => {
                        let c = v.rule.map_or("", |_| a.engine.category(v.category));
                        text.push_str(if c.is_empty() { "none" } else { c });
                    }
                    Piece::Rule => {
                        if let Some(r) = v.rule {
                            let _ = a.engine.write_rule_id(r, text);
                        }
                    }
                    Piece::Action => text.push_str(v.action.as_str()),
                    Piece::Fact => text.push_str(v.fact.as_str()),
                }
            }
            // Header values must not carry CR/LF/NUL (rule ids come from files).
            sanitize_tail(text, start);
            r.ranges[i] = (i, start, text.len());
            r.n = i + 1;
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn reject(
        &self,
        w: &mut Worker,
        msg: &Message,
        v: &Verdict,
        a: &Active,
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        let mut text = std::mem::take(&mut w.text);
        text.clear();
        // Rule id and category, then the Reason text, then the Call-Info value.
        let category = v
            .rule
            .and_then(|r| a.engine.write_rule_id(r, &mut text))
            .unwrap_or("");
        let rule_end = text.len();
        sanitize_tail(&mut text, 0);
        let spec = self.by_category.get(category).unwrap_or(&self.block);
        let reason_start = text.len();
        let _ = write!(
            text,
            "SIP;cause={};text=\"{}: rule ",
            spec.code,
            if spec.code == 608 || spec.code == 607 {
                "Rejected as fraud"
            } else {
                "Network Blocked"
            }
        );
        push_quoted_copy(&mut text, rule_end);
        text.push_str(", category ");
        let cat_start = text.len();
        text.push_str(if category.is_empty() {
            "none"
        } else {
            category
        });
        sanitize_quoted(&mut text, cat_start);
        if !spec.appeal.is_empty() {
            text.push_str(", appeal ");
            let ap = text.len();
            text.push_str(&spec.appeal);
            sanitize_quoted(&mut text, ap);
        }
        text.push('"');
        let reason_end = text.len();
        let ci_start = text.len();
        if spec.code == 608 && !spec.jwscard.is_empty() {
            // RFC 8688 §3: Call-Info: <URI of the jCard>;purpose=jwscard
            text.push('<');
            text.push_str(&spec.jwscard);
            text.push_str(">;purpose=jwscard");
        }
        let ci_end = text.len();
        let d = {
            let reason_hdr = &text[reason_start..reason_end];
            let ci = &text[ci_start..ci_end];
            let with_ci = [("Reason", reason_hdr), ("Call-Info", ci)];
            let hs: &[(&str, &str)] = if ci.is_empty() {
                &with_ci[..1]
            } else {
                &with_ci[..]
            };
            self.answer(w, msg, spec.code, &spec.reason, hs, src, transport, conn)
        };
        w.text = text;
        d
    }

    /// Redirect mode: 302 to the original target, with tag facts as URI headers when tagged.
    #[allow(clippy::too_many_arguments)]
    fn redirect(
        &self,
        w: &mut Worker,
        msg: &Message,
        ruri: &[u8],
        tag: Option<&Verdict>,
        a: &Active,
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        let mut uri = std::mem::take(&mut w.uri);
        uri.clear();
        uri.extend_from_slice(ruri);
        let mut text = std::mem::take(&mut w.text);
        let d = match tag {
            Some(v) => {
                let r = self.render_tags(&mut text, v, a);
                let is_sip = matches!(sip::parse_uri(ruri), Ok(Uri::Sip(_)));
                if is_sip {
                    // RFC 3261 §19.1.1: `?hname=hvalue&…`, escaped.
                    let mut sep = if ruri.contains(&b'?') { b'&' } else { b'?' };
                    for (name, value) in r.pairs(&text, &self.tags).as_slice() {
                        uri.push(sep);
                        sep = b'&';
                        escape_hnv(&mut uri, name.as_bytes());
                        uri.push(b'=');
                        escape_hnv(&mut uri, value.as_bytes());
                    }
                    self.contact_302(w, msg, &uri, src, transport, conn)
                } else {
                    // A tel: URI has no headers part: send the tags as response headers.
                    let pairs = r.pairs(&text, &self.tags);
                    self.contact_302_with(w, msg, &uri, pairs.as_slice(), src, transport, conn)
                }
            }
            None => self.contact_302(w, msg, &uri, src, transport, conn),
        };
        w.uri = uri;
        w.text = text;
        d
    }

    fn contact_302(
        &self,
        w: &mut Worker,
        msg: &Message,
        uri: &[u8],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        self.contact_302_with(w, msg, uri, &[], src, transport, conn)
    }

    #[allow(clippy::too_many_arguments)]
    fn contact_302_with(
        &self,
        w: &mut Worker,
        msg: &Message,
        uri: &[u8],
        extra: &[(&str, &str)],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        let Ok(u) = std::str::from_utf8(uri) else {
            self.metrics.fail_open.inc();
            return Dest::None;
        };
        let mut hs: [(&str, &str); MAX_TAGS + 1] = [("", ""); MAX_TAGS + 1];
        hs[0] = ("Contact", u);
        let mut n = 1;
        for (k, v) in extra.iter().take(MAX_TAGS) {
            hs[n] = (k, v);
            n += 1;
        }
        self.answer_contact(w, msg, &hs[..n], src, transport, conn)
    }

    /// A 302 whose first header is a Contact URI to be bracketed.
    fn answer_contact(
        &self,
        w: &mut Worker,
        msg: &Message,
        hs: &[(&str, &str)],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        // local_response writes `Name: value`; bracket the Contact URI ourselves in `out`.
        let tag = to_tag_for(msg, &self.secret);
        let Some(((_, contact), rest)) = hs.split_first() else {
            return Dest::None;
        };
        if local_response(msg, 302, "Moved Temporarily", &tag, rest, &mut w.out).is_err() {
            self.metrics.fail_open.inc();
            w.out.clear();
            return Dest::None;
        }
        // Insert `Contact: <uri>` before the final Content-Length line.
        let tail = b"Content-Length: 0\r\n\r\n";
        if !w.out.ends_with(tail) || contact.bytes().any(|b| b == b'\r' || b == b'\n') {
            self.metrics.fail_open.inc();
            w.out.clear();
            return Dest::None;
        }
        let at = w.out.len() - tail.len();
        w.out.truncate(at);
        w.out.extend_from_slice(b"Contact: <");
        w.out.extend_from_slice(contact.as_bytes());
        w.out.extend_from_slice(b">\r\n");
        w.out.extend_from_slice(tail);
        self.metrics.responses.count(302);
        self.reply_dest(msg, src, transport, conn)
    }

    /// A locally generated response to `msg`, sent back the way it came.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        w: &mut Worker,
        msg: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, &str)],
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        let tag = to_tag_for(msg, &self.secret);
        w.out.clear();
        match local_response(msg, code, reason, &tag, extra, &mut w.out) {
            Ok(()) => {
                self.metrics.responses.count(code);
                self.reply_dest(msg, src, transport, conn)
            }
            Err(_) => {
                w.out.clear();
                self.metrics.drops.unroutable.inc();
                Dest::None
            }
        }
    }

    /// RFC 3261 §18.2.2 with RFC 3581: a response over TCP goes back on the connection; over
    /// UDP to the source address, at the Via port unless `rport` asked for the source port.
    fn reply_dest(&self, msg: &Message, src: SocketAddr, transport: Transport, conn: u32) -> Dest {
        match transport {
            Transport::Tcp => Dest::Conn(conn),
            Transport::Udp => {
                let port = match msg.top_via() {
                    Ok(v) if v.rport.is_some() => src.port(),
                    Ok(v) => v.port.unwrap_or(5060),
                    Err(_) => src.port(),
                };
                Dest::Udp(SocketAddr::new(src.ip(), port))
            }
        }
    }

    /// Stateless forwarding (§16.11). `add` headers are appended (tags).
    fn forward(
        &self,
        w: &mut Worker,
        msg: &Message,
        from_next_hop: bool,
        transport: Transport,
        conn: u32,
        add: &[(&str, &str)],
    ) -> Dest {
        let dest = if from_next_hop {
            match self.target_of(msg) {
                Some(t) if self.locals.contains(&t) => {
                    self.metrics.drops.loop_detected.inc();
                    return Dest::None;
                }
                Some(t) => t,
                None => {
                    self.metrics.drops.relay_denied.inc();
                    return Dest::None;
                }
            }
        } else {
            match self.next_hop {
                Some(n) => n,
                None => return Dest::None,
            }
        };
        let b = stateless_branch(msg, &self.secret);
        let mut branch = [0u8; 48];
        let mut len = b.len();
        branch[..len].copy_from_slice(&b);
        if transport == Transport::Tcp {
            // Mark the connection in our own branch so the response finds its way back.
            let mut tmp = [0u8; 16];
            let mut cur = std::io::Cursor::new(&mut tmp[..]);
            let _ = std::io::Write::write_fmt(&mut cur, format_args!(".c{conn}"));
            let n = cur.position() as usize;
            branch[len..len + n].copy_from_slice(&tmp[..n]);
            len += n;
        }
        let spec = ViaSpec {
            transport: "UDP",
            host: &self.via_host,
            port: self.via_port,
            branch: &branch[..len],
            rport: false,
            stream: false,
        };
        w.out.clear();
        match forward_request(msg, &mut w.out, &spec, add) {
            Ok(()) => {}
            Err(_) if !add.is_empty() => {
                // A tag header could not be added: forward untagged (fail open), counted.
                self.metrics.fail_open.inc();
                w.out.clear();
                if forward_request(msg, &mut w.out, &spec, &[]).is_err() {
                    w.out.clear();
                    self.metrics.drops.unroutable.inc();
                    return Dest::None;
                }
            }
            Err(_) => {
                w.out.clear();
                self.metrics.drops.unroutable.inc();
                return Dest::None;
            }
        }
        self.metrics.forwarded_requests.inc();
        Dest::Udp(dest)
    }

    /// Where a request from the next hop goes: its top Route, else its Request-URI, when the
    /// host is an IP literal.
    fn target_of(&self, msg: &Message) -> Option<SocketAddr> {
        let uri = match msg.routes().next() {
            Some(Ok(r)) => r.uri,
            Some(Err(_)) => return None,
            None => match msg.kind() {
                Kind::Request { uri, .. } => sip::parse_uri(uri).ok()?,
                Kind::Response { .. } => return None,
            },
        };
        match uri {
            Uri::Sip(u) => {
                let ip = match u.host {
                    Host::V4(a) => IpAddr::V4(a),
                    Host::V6(a) => IpAddr::V6(a),
                    Host::Name(_) => return None,
                };
                Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
            }
            _ => None,
        }
    }

    /// The transaction key (RFC 3261 §17.2.3): the top Via branch and sent-by plus Call-ID;
    /// for RFC 2543 peers the fields a retransmission, its ACK and its CANCEL share. Keyed
    /// (SipHash with a per-process key) so that peers cannot aim collisions.
    pub fn tx_key(&self, msg: &Message) -> u64 {
        let mut h = self.hasher.build_hasher();
        let top = msg.top_via().ok();
        match top.and_then(|v| v.branch) {
            Some(b) if b.starts_with(MAGIC_COOKIE) => {
                h.write(b);
                h.write_u8(0xff);
                h.write(top.map_or(&[][..], |v| v.host_raw));
                h.write_u16(top.and_then(|v| v.port).unwrap_or(0));
            }
            _ => {
                h.write(msg.headers("Via").next().map_or(&[][..], |v| v.raw()));
                h.write_u8(0xff);
                h.write(msg.from().ok().and_then(|t| t.tag).unwrap_or(&[]));
                h.write_u8(0xff);
                h.write_u32(msg.cseq().0);
                if let Kind::Request { uri, .. } = msg.kind() {
                    h.write(uri);
                }
            }
        }
        h.write_u8(0xfe);
        h.write(msg.call_id());
        h.finish()
    }

    /// A request we cannot parse still gets a 400 when its Via, From, To, Call-ID and CSeq can
    /// be found (RFC 3261 §8.2 / §16.3 step 1); otherwise it is dropped. Counted either way.
    fn salvage_400(
        &self,
        w: &mut Worker,
        data: &[u8],
        e: &sip::ParseError,
        src: SocketAddr,
        transport: Transport,
        conn: u32,
    ) -> Dest {
        w.out.clear();
        if salvage_bad_request(data, e, &self.secret, &mut w.out) {
            self.metrics.responses.count(400);
            match transport {
                Transport::Tcp => Dest::Conn(conn),
                Transport::Udp => Dest::Udp(src),
            }
        } else {
            w.out.clear();
            self.metrics.drops.unroutable.inc();
            Dest::None
        }
    }
}

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";
const MAX_TAGS: usize = 8;

#[derive(Debug, Default)]
struct Rendered {
    ranges: [(usize, usize, usize); MAX_TAGS],
    n: usize,
}

struct Pairs<'t> {
    a: [(&'t str, &'t str); MAX_TAGS],
    n: usize,
}

impl<'t> Pairs<'t> {
    fn as_slice(&self) -> &[(&'t str, &'t str)] {
        &self.a[..self.n]
    }
}

impl Rendered {
    fn pairs<'t>(&self, text: &'t str, tags: &'t [Template]) -> Pairs<'t> {
        let mut a = [("", ""); MAX_TAGS];
        for (i, (t, s, e)) in self.ranges.iter().enumerate().take(self.n) {
            let name = tags.get(*t).map_or("", |t| t.name.as_str());
            a[i] = (name, text.get(*s..*e).unwrap_or(""));
        }
        Pairs { a, n: self.n }
    }
}

fn target_has_no_user(u: &Uri) -> bool {
    matches!(u, Uri::Sip(s) if s.user().is_none())
}

/// Replaces control characters from `start` on (values from rule files end up in headers).
fn sanitize_tail(text: &mut String, start: usize) {
    if text[start..].bytes().any(|b| b < b' ' || b == 0x7f) {
        let fixed: String = text[start..]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        text.truncate(start);
        text.push_str(&fixed);
    }
}

/// Makes `text[start..]` safe inside a quoted-string (RFC 3261 §25.1: `\` and `"` escaped).
fn sanitize_quoted(text: &mut String, start: usize) {
    sanitize_tail(text, start);
    if text[start..].contains(['"', '\\']) {
        let fixed: String = text[start..]
            .chars()
            .flat_map(|c| {
                let esc = c == '"' || c == '\\';
                [esc.then_some('\\'), Some(c)].into_iter().flatten()
            })
            .collect();
        text.truncate(start);
        text.push_str(&fixed);
    }
}

/// Appends `text[..len]` (written earlier) again, escaped for a quoted-string.
fn push_quoted_copy(text: &mut String, len: usize) {
    let mut i = 0;
    while i < len {
        let Some(ch) = text.get(i..).and_then(|t| t.chars().next()) else {
            break;
        };
        if ch == '"' || ch == '\\' {
            text.push('\\');
        }
        text.push(ch);
        i += ch.len_utf8();
    }
}

/// RFC 3261 §25.1 `hname`/`hvalue`: hnv-unreserved and unreserved characters stay, the rest is
/// %-escaped.
fn escape_hnv(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        let keep = b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b);
        if keep {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    }
}

/// The connection id a TCP-marked branch of ours carries (`….c<id>`).
fn conn_of_branch(b: &[u8]) -> Option<u32> {
    let i = b.iter().rposition(|&c| c == b'.')?;
    let rest = b.get(i + 1..)?.strip_prefix(b"c")?;
    if rest.is_empty() || rest.len() > 10 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Builds a 400 for an unparseable request from its raw header lines, if the lines a response
/// needs (Via, From, To, Call-ID, CSeq; long or compact names) are there. The parse error goes
/// into a Warning header (RFC 3261 §20.43, code 399).
pub fn salvage_bad_request(
    data: &[u8],
    e: &sip::ParseError,
    secret: &[u8; 32],
    out: &mut Vec<u8>,
) -> bool {
    if data.starts_with(b"SIP/") {
        return false; // a response: never answered
    }
    let first_end = data
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(data.len());
    let first = &data[..first_end];
    if first.starts_with(b"ACK ") || !first.ends_with(b"SIP/2.0") {
        return false;
    }
    let mut found = [false; 5];
    const NAMES: [(&[u8], &[u8]); 5] = [
        (b"via", b"v"),
        (b"from", b"f"),
        (b"to", b"t"),
        (b"call-id", b"i"),
        (b"cseq", b""),
    ];
    let mut lines: [(usize, usize, usize); 24] = [(0, 0, 0); 24];
    let mut n = 0;
    let mut i = first_end + 2;
    while i < data.len() && n < lines.len() {
        let end = data[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(data.len(), |p| i + p);
        let line = &data[i..end];
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = sip_trim(&line[..colon]);
            if let Some(k) = NAMES.iter().position(|(l, s)| {
                name.eq_ignore_ascii_case(l) || (!s.is_empty() && name.eq_ignore_ascii_case(s))
            }) {
                let value = sip_trim(&line[colon + 1..]);
                if !value.is_empty()
                    && value.iter().all(|&b| b >= b' ' && b != 0x7f)
                    && (k != 0 || value.starts_with(b"SIP/2.0/"))
                {
                    found[k] = true;
                    lines[n] = (k, i + colon + 1, end);
                    n += 1;
                }
            }
        }
        i = end + 2;
    }
    if !found.iter().all(|&f| f) {
        return false;
    }
    // A To-tag from the raw bytes (deterministic, so a retransmission gets the same one).
    let mut tag = [0u8; 16];
    {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(secret);
        h.update(b"400");
        h.update(data);
        let d = h.finalize();
        for (i, t) in tag.iter_mut().enumerate() {
            let nib = (d[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 15;
            *t = b"0123456789abcdef"[usize::from(nib)];
        }
    }
    out.extend_from_slice(b"SIP/2.0 400 Bad Request\r\n");
    for want in 0..5 {
        for &(k, s, e2) in &lines[..n] {
            if k != want {
                continue;
            }
            let name: &[u8] = [&b"Via"[..], b"From", b"To", b"Call-ID", b"CSeq"][k];
            let value = sip_trim(&data[s..e2]);
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            if k == 2 && !contains_tag_param(value) {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(&tag);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Warning: 399 dragnet \"");
    let mut reason = [0u8; 160];
    let mut cur = std::io::Cursor::new(&mut reason[..]);
    let _ = std::io::Write::write_fmt(&mut cur, format_args!("{e}"));
    let len = cur.position() as usize;
    for &b in &reason[..len] {
        out.push(if b == b'"' || b == b'\\' || b < b' ' {
            b'\''
        } else {
            b
        });
    }
    out.extend_from_slice(b"\"\r\nContent-Length: 0\r\n\r\n");
    true
}

fn contains_tag_param(v: &[u8]) -> bool {
    // Parameters after the closing '>' (or anywhere, for an addr-spec without brackets).
    let params = match v.iter().rposition(|&b| b == b'>') {
        Some(i) => &v[i..],
        None => v,
    };
    params.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
}

fn sip_trim(s: &[u8]) -> &[u8] {
    let a = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let b = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(a, |i| i + 1);
    &s[a..b]
}

fn random_secret() -> [u8; 32] {
    use sha2::{Digest, Sha256};
    // The OS-seeded SipHash keys of two RandomStates, the time and the PID, hashed.
    let mut h = Sha256::new();
    for _ in 0..4 {
        let mut x = std::collections::hash_map::RandomState::new().build_hasher();
        x.write_u8(1);
        h.update(x.finish().to_le_bytes());
    }
    h.update(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests;

/// Fuzz entry point (`fuzz/fuzz_targets/sip_plane.rs`, replayed by `gateway/tests/fuzz_corpus.rs`):
/// arbitrary bytes through the whole decision of both modes, over UDP and TCP, from the next
/// hop and from elsewhere. Whatever goes out must parse as SIP again.
pub fn fuzz_handle(data: &[u8]) {
    use std::sync::OnceLock;
    static CORES: OnceLock<Option<[SipCore; 2]>> = OnceLock::new();
    let Some(cores) = CORES.get_or_init(|| {
        let now = 1_795_392_000;
        let make = |mode: SipMode| {
            let mut cfg = crate::config::Config::embedded().ok()?;
            cfg.sip.mode = mode;
            let store = Arc::new(Store::new(crate::examples::engine(now).ok()?, now));
            let m = crate::metrics::Metrics::new(store.clone());
            let gw: SocketAddr = "127.0.0.1:5060".parse().ok()?;
            SipCore::new(&cfg.sip, &[gw], store, m.sip.clone()).ok()
        };
        Some([make(SipMode::Proxy)?, make(SipMode::Redirect)?])
    }) else {
        return;
    };
    let mut w = Worker::new();
    let srcs: [SocketAddr; 3] = [
        SocketAddr::from(([127, 0, 0, 1], 5080)),
        SocketAddr::from(([127, 0, 0, 1], 5070)),
        SocketAddr::from(([127, 0, 0, 2], 5080)),
    ];
    for core in cores {
        for src in srcs {
            for (t, conn) in [(Transport::Udp, 0), (Transport::Tcp, 9)] {
                let d = core.handle(&mut w, data, src, t, conn, 1_795_392_000);
                if d != Dest::None {
                    if w.out.starts_with(b"SIP/2.0 400 ") {
                        // A salvaged 400 echoes the request's Via/From/To/Call-ID/CSeq as they
                        // came (RFC 3261 §8.2.6.1; RFC 4475 §3.1.2 asks for the 400), so it
                        // may hold the very value that was wrong — but its framing is sound.
                        assert!(w.out.ends_with(b"\r\nContent-Length: 0\r\n\r\n"));
                        let head = &w.out[..w.out.len() - 2];
                        assert!(!head.contains(&0));
                        for line in head.split(|&b| b == b'\n') {
                            assert!(line.is_empty() || line.ends_with(b"\r"));
                            assert!(!line[..line.len().saturating_sub(1)].contains(&b'\r'));
                        }
                    } else if let Err(e) = sip::parse(&w.out) {
                        panic!(
                            "the plane sent something that does not parse ({e}):\n{}",
                            String::from_utf8_lossy(&w.out)
                        );
                    }
                }
                let _ = core.overload(&mut w, data, src, t, conn);
                let _ = core.handle_overloaded(&mut w, data, src, t, conn, 1_795_392_000);
            }
        }
    }
}
