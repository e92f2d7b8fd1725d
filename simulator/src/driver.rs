//! The open-loop drivers: each plane's requests leave at their scheduled time, whatever the
//! target does with the earlier ones.
//!
//! Per plane one task walks the schedule: it sleeps until a request is due (never when it is
//! already late), notes the lateness (actual − scheduled send), and hands the request to its
//! own task. A plane never has more than `limits.max_outstanding` requests in flight: a request
//! due beyond that bound is not sent and counts as an error (`overflow`) — the schedule never
//! waits for the target. Latency is measured from the *scheduled* time, so a stall shows in
//! full (no coordinated omission).
//!
//! Transports, all with the simulator's own encoders:
//! - SIP over UDP: INVITE retransmitted on RFC 3261 Timer A (T1, doubling) until a provisional
//!   or final answer or Timer B (timeout); ACK to every final answer (same branch for a
//!   reject, §17.1.1.3; a new transaction to the Contact for a 2xx, §13.2.2.4), then BYE for an
//!   answered call. One socket per ingress trunk, bound to the trunk's source address.
//! - DNS over UDP (one socket, answers matched by ID) and TCP (RFC 7766 framing, a connection
//!   per query).
//! - HTTP GET in absolute form through the proxy and check-API POSTs, with hyper over a small
//!   pool of keep-alive connections.

use crate::dns;
use crate::report::{Observed, Record, Report, RunInfo};
use crate::scenario::{DnsAnswer, Scenario};
use crate::sip::{addr_uri, Invite, Message};
use crate::workload::{self, Fact, Plane, Request, Workload};
use crate::SimError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What one request's task reports: outcome, wire summary, time of the final answer.
type Outcome = (Observed, String, Option<Instant>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map still holds valid entries; a panicked task must not stop the run.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------------------------
// SIP

/// A final or provisional answer, as the INVITE's task needs it.
#[derive(Debug)]
struct SipAnswer {
    code: u16,
    line: String,
    cseq_method: String,
    to: String,
    contact: Option<String>,
    tagged: bool,
}

#[derive(Debug)]
struct SipDriver {
    socks: Vec<(Arc<UdpSocket>, String)>,
    target: SocketAddr,
    target_str: String,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<SipAnswer>>>,
    t1: Duration,
    timer_b: Duration,
    expect: crate::scenario::ExpectSip,
    run: u64,
    byes: AtomicUsize,
}

impl SipDriver {
    async fn new(sc: &Scenario, target: SocketAddr, run: u64) -> Result<Arc<Self>, SimError> {
        let mut sources: Vec<IpAddr> = sc.trunks.iter().map(|t| t.source).collect();
        if sources.is_empty() {
            sources.push(if target.ip().is_loopback() {
                target.ip()
            } else if target.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            });
        }
        let mut socks = Vec::new();
        for ip in sources {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))
                .await
                .map_err(|e| SimError::io(format!("binding a SIP socket on {ip}"), e))?;
            let local = s
                .local_addr()
                .map_err(|e| SimError::io("reading the SIP socket's address", e))?;
            // An unspecified bind address is no Via sent-by: name the target's side instead.
            let shown = if local.ip().is_unspecified() {
                SocketAddr::new(target.ip(), local.port())
            } else {
                local
            };
            socks.push((Arc::new(s), shown.to_string()));
        }
        let d = Arc::new(SipDriver {
            socks,
            target,
            target_str: target.to_string(),
            pending: Mutex::new(HashMap::new()),
            t1: Duration::from_millis(sc.limits.sip_t1_ms),
            timer_b: Duration::from_millis(sc.limits.sip_timer_b_ms),
            expect: sc.expect.sip.clone(),
            run,
            byes: AtomicUsize::new(0),
        });
        for (s, _) in &d.socks {
            let s = Arc::clone(s);
            let d2 = Arc::clone(&d);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((n, _)) = s.recv_from(&mut buf).await else {
                        continue;
                    };
                    let Some(bytes) = buf.get(..n) else { continue };
                    d2.dispatch(bytes);
                }
            });
        }
        Ok(d)
    }

    fn dispatch(&self, bytes: &[u8]) {
        let Ok(m) = Message::parse(bytes) else { return };
        let Some(code) = m.code() else { return };
        let Some(cid) = m.header("Call-ID") else {
            return;
        };
        let tag_lc = self.expect.tag_header.to_ascii_lowercase();
        let contact = m.header("Contact").map(str::to_string);
        let tagged = m.header(&self.expect.tag_header).is_some()
            || contact
                .as_deref()
                .is_some_and(|c| c.to_ascii_lowercase().contains(&tag_lc));
        let answer = SipAnswer {
            code,
            line: match &m.start {
                crate::sip::StartLine::Response { code, reason } => {
                    format!("SIP/2.0 {code} {reason}")
                }
                crate::sip::StartLine::Request { .. } => String::new(),
            },
            cseq_method: m.cseq_method().unwrap_or("").to_string(),
            to: m.header("To").unwrap_or("").to_string(),
            contact,
            tagged,
        };
        if let Some(tx) = lock(&self.pending).get(cid) {
            let _ = tx.send(answer);
        }
    }

    fn classify(&self, a: &SipAnswer) -> Observed {
        if self.expect.block_codes.contains(&a.code) {
            return Observed::Blocked;
        }
        let redirect = self.expect.mode == "redirect";
        match a.code {
            200..=299 if a.tagged => Observed::Tagged,
            200..=299 => Observed::Allowed,
            300..=399 => {
                let c = a.contact.as_deref().unwrap_or("");
                if !self.expect.warn_contact.is_empty() && c.contains(&self.expect.warn_contact) {
                    Observed::Warned
                } else if redirect && a.tagged {
                    Observed::Tagged
                } else if redirect {
                    Observed::Allowed
                } else {
                    Observed::Unexpected
                }
            }
            _ => Observed::Unexpected,
        }
    }

    async fn call(self: Arc<Self>, req: &Request, trunk: usize) -> Outcome {
        let (caller, callee) = match &req.fact {
            Fact::Call { caller, callee, .. } => (caller.as_str(), callee.as_str()),
            _ => return (Observed::Error, "not a call".into(), None),
        };
        let Some((sock, local)) = self.socks.get(trunk).or_else(|| self.socks.first()) else {
            return (Observed::Error, "no SIP socket".into(), None);
        };
        let call_id = format!("{:x}-{}@dragnet-sim", self.run, req.seq);
        let branch = format!("z9hG4bK{:x}i{}", self.run, req.seq);
        let from_tag = format!("s{:x}", req.seq);
        let inv = Invite {
            caller,
            callee,
            target: &self.target_str,
            local,
            call_id: &call_id,
            from_tag: &from_tag,
            branch: &branch,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(call_id.clone(), tx);
        let msg = inv.encode();
        let start = Instant::now();
        if let Err(e) = sock.send_to(&msg, self.target).await {
            lock(&self.pending).remove(&call_id);
            return (Observed::Error, format!("send: {e}"), None);
        }
        // RFC 3261 §17.1.1.2: Timer A starts at T1 and doubles; a provisional answer stops it;
        // Timer B (64·T1 by default) ends the transaction.
        let mut interval = self.t1;
        let mut next = start + interval;
        let deadline = start + self.timer_b;
        let mut provisional = false;
        let mut retransmits = 0u32;
        let fin = loop {
            tokio::select! {
                a = rx.recv() => match a {
                    Some(a) if a.cseq_method == "INVITE" && a.code >= 200 => break Some(a),
                    Some(a) if a.cseq_method == "INVITE" => provisional = true,
                    Some(_) => {}
                    None => break None,
                },
                _ = tokio::time::sleep_until(next), if !provisional && next < deadline => {
                    let _ = sock.send_to(&msg, self.target).await;
                    retransmits += 1;
                    interval *= 2;
                    next += interval;
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let Some(a) = fin else {
            lock(&self.pending).remove(&call_id);
            return (
                Observed::Timeout,
                format!("no final answer within Timer B ({retransmits} retransmissions)"),
                None,
            );
        };
        let done = Instant::now();
        let observed = self.classify(&a);
        if (200..300).contains(&a.code) {
            let ruri = a.contact.as_deref().map(addr_uri).map(str::to_string);
            let ack_branch = format!("z9hG4bK{:x}a{}", self.run, req.seq);
            let _ = sock
                .send_to(&inv.ack(&a.to, ruri.as_deref(), &ack_branch), self.target)
                .await;
            let bye_branch = format!("z9hG4bK{:x}b{}", self.run, req.seq);
            let bye = inv.bye(&a.to, ruri.as_deref(), &bye_branch);
            // The BYE's transaction outlives the INVITE's record (Timer E, §17.1.2.2).
            self.byes.fetch_add(1, Ordering::SeqCst);
            let me = Arc::clone(&self);
            let sock = Arc::clone(sock);
            tokio::spawn(async move {
                let end = Instant::now() + me.timer_b;
                let mut interval = me.t1;
                let _ = sock.send_to(&bye, me.target).await;
                let mut next = Instant::now() + interval;
                loop {
                    tokio::select! {
                        a = rx.recv() => match a {
                            Some(a) if a.cseq_method == "BYE" && a.code >= 200 => break,
                            Some(_) => {}
                            None => break,
                        },
                        _ = tokio::time::sleep_until(next) => {
                            let _ = sock.send_to(&bye, me.target).await;
                            interval = (interval * 2).min(Duration::from_secs(4));
                            next += interval;
                        }
                        _ = tokio::time::sleep_until(end) => break,
                    }
                }
                lock(&me.pending).remove(&call_id);
                me.byes.fetch_sub(1, Ordering::SeqCst);
            });
        } else {
            let _ = sock
                .send_to(&inv.ack(&a.to, None, &branch), self.target)
                .await;
            lock(&self.pending).remove(&call_id);
        }
        (observed, a.line, Some(done))
    }
}

// ------------------------------------------------------------------------------------------
// DNS

#[derive(Debug)]
struct DnsDriver {
    udp: Option<(Arc<UdpSocket>, SocketAddr)>,
    tcp: Option<SocketAddr>,
    pending: Mutex<HashMap<u16, oneshot::Sender<(dns::Answer, Instant)>>>,
    next_id: AtomicU16,
    expect: crate::scenario::ExpectDns,
}

impl DnsDriver {
    async fn new(sc: &Scenario) -> Result<Arc<Self>, SimError> {
        let udp = match sc.targets.dns_udp {
            Some(t) => {
                let bind: SocketAddr = if t.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let s = UdpSocket::bind(bind)
                    .await
                    .map_err(|e| SimError::io("binding the DNS socket", e))?;
                Some((Arc::new(s), t))
            }
            None => None,
        };
        let d = Arc::new(DnsDriver {
            udp,
            tcp: sc.targets.dns_tcp.or(sc.targets.dns_udp),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU16::new((sc.seed as u16) ^ 0x5A5A),
            expect: sc.expect.dns.clone(),
        });
        if let Some((s, _)) = &d.udp {
            let s = Arc::clone(s);
            let d2 = Arc::clone(&d);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((n, _)) = s.recv_from(&mut buf).await else {
                        continue;
                    };
                    let now = Instant::now();
                    let Some(Ok(a)) = buf.get(..n).map(dns::decode) else {
                        continue;
                    };
                    if let Some(tx) = lock(&d2.pending).remove(&a.id) {
                        let _ = tx.send((a, now));
                    }
                }
            });
        }
        Ok(d)
    }

    fn classify(&self, a: &dns::Answer) -> (Observed, String) {
        let class = match a.rcode {
            3 => Some(DnsAnswer::Nxdomain),
            5 => Some(DnsAnswer::Refused),
            0 if a.truncated => None,
            0 if a.addrs.is_empty() => Some(DnsAnswer::Nodata),
            0 if a.addrs.iter().any(|x| self.expect.sinkhole.contains(x)) => {
                Some(DnsAnswer::Sinkhole)
            }
            0 => Some(DnsAnswer::Answer),
            _ => None,
        };
        let wire = match class {
            Some(c) => format!("{c:?}").to_ascii_uppercase(),
            None if a.truncated => "TC".to_string(),
            None => format!("RCODE {}", a.rcode),
        };
        let observed = match class {
            Some(c) if c == self.expect.block => Observed::Blocked,
            Some(c) if c == self.expect.warn => Observed::Warned,
            Some(DnsAnswer::Answer) => Observed::Allowed,
            _ => Observed::Unexpected,
        };
        (observed, wire)
    }

    async fn query(self: Arc<Self>, req: &Request, deadline: Instant) -> Outcome {
        let Fact::Query { name, qtype, tcp } = &req.fact else {
            return (Observed::Error, "not a query".into(), None);
        };
        if *tcp || self.udp.is_none() {
            return self.query_tcp(name, *qtype, deadline).await;
        }
        let Some((sock, target)) = &self.udp else {
            return (Observed::Error, "no DNS target".into(), None);
        };
        let (tx, rx) = oneshot::channel();
        let mut id = 0;
        {
            let mut p = lock(&self.pending);
            for _ in 0..64 {
                let cand = self.next_id.fetch_add(1, Ordering::Relaxed);
                if !p.contains_key(&cand) {
                    id = cand;
                    break;
                }
            }
            p.insert(id, tx);
        }
        let q = match dns::encode_query(id, name, *qtype) {
            Ok(q) => q,
            Err(e) => {
                lock(&self.pending).remove(&id);
                return (
                    Observed::Error,
                    format!("cannot encode {name}: {e:?}"),
                    None,
                );
            }
        };
        if let Err(e) = sock.send_to(&q, *target).await {
            lock(&self.pending).remove(&id);
            return (Observed::Error, format!("send: {e}"), None);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok((a, at))) => {
                let (o, w) = self.classify(&a);
                (o, w, Some(at))
            }
            _ => {
                lock(&self.pending).remove(&id);
                (Observed::Timeout, "no answer".into(), None)
            }
        }
    }

    async fn query_tcp(&self, name: &str, qtype: u16, deadline: Instant) -> Outcome {
        let Some(target) = self.tcp else {
            return (Observed::Error, "no DNS TCP target".into(), None);
        };
        let q = match dns::encode_query(0x7CC7, name, qtype) {
            Ok(q) => q,
            Err(e) => {
                return (
                    Observed::Error,
                    format!("cannot encode {name}: {e:?}"),
                    None,
                )
            }
        };
        let work = async {
            let mut s = TcpStream::connect(target)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut framed = Vec::with_capacity(q.len() + 2);
            framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
            framed.extend_from_slice(&q);
            s.write_all(&framed)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(buf)
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(buf)) => {
                let at = Instant::now();
                match dns::decode(&buf) {
                    Ok(a) => {
                        let (o, w) = self.classify(&a);
                        (o, format!("{w} (TCP)"), Some(at))
                    }
                    Err(e) => (
                        Observed::Unexpected,
                        format!("undecodable: {e:?}"),
                        Some(at),
                    ),
                }
            }
            Ok(Err(e)) => (Observed::Error, e, None),
            Err(_) => (Observed::Timeout, "no answer (TCP)".into(), None),
        }
    }
}

// ------------------------------------------------------------------------------------------
// HTTP and the check API

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

#[derive(Debug)]
struct HttpPool {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
}

/// At most this many idle connections are kept per target.
const POOL: usize = 64;

impl HttpPool {
    fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(HttpPool {
            addr,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn sender(&self) -> Result<Sender, String> {
        loop {
            let s = lock(&self.idle).pop();
            match s {
                Some(s) if !s.is_closed() && s.is_ready() => return Ok(s),
                Some(_) => continue,
                None => break,
            }
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request and its whole body.
    async fn send(
        &self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let mut s = self.sender().await?;
        s.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = s
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let mut idle = lock(&self.idle);
        if idle.len() < POOL {
            idle.push(s);
        }
        Ok((parts.status.as_u16(), parts.headers, body))
    }
}

fn classify_http(
    e: &crate::scenario::ExpectHttp,
    status: u16,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Observed {
    let marked = !e.page_marker.is_empty()
        && body
            .windows(e.page_marker.len())
            .any(|w| w == e.page_marker.as_bytes());
    if status == e.block_status && marked {
        Observed::Blocked
    } else if status == e.warn_status && marked {
        Observed::Warned
    } else if (200..300).contains(&status) && headers.contains_key("x-sim-saw-tag") {
        Observed::Tagged
    } else if (200..300).contains(&status) {
        Observed::Allowed
    } else {
        Observed::Unexpected
    }
}

async fn http_get(
    pool: &HttpPool,
    e: &crate::scenario::ExpectHttp,
    req: &Request,
    deadline: Instant,
) -> Outcome {
    let Fact::Get { url } = &req.fact else {
        return (Observed::Error, "not a GET".into(), None);
    };
    let host = url
        .split_once("://")
        .map_or("", |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or("")
        .to_string();
    // RFC 9112 §3.2.2: absolute-form to a proxy, Host as the authority.
    let r = hyper::Request::get(url.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT_LANGUAGE, "en")
        .header(hyper::header::USER_AGENT, "dragnet-sim")
        .body(Full::new(Bytes::new()));
    let r = match r {
        Ok(r) => r,
        Err(err) => return (Observed::Error, format!("bad URL {url}: {err}"), None),
    };
    match tokio::time::timeout_at(deadline, pool.send(r)).await {
        Ok(Ok((status, headers, body))) => {
            let o = classify_http(e, status, &headers, &body);
            (o, format!("HTTP {status}"), Some(Instant::now()))
        }
        Ok(Err(err)) => (Observed::Error, err, None),
        Err(_) => (Observed::Timeout, "no answer".into(), None),
    }
}

async fn check(pool: &HttpPool, req: &Request, trunks: &[String], deadline: Instant) -> Outcome {
    let ingress = |t: &usize| trunks.get(*t).cloned();
    let (path, body) = match &req.fact {
        Fact::CheckCall {
            caller,
            callee,
            trunk,
        } => {
            let mut v = serde_json::json!({"caller": caller, "callee": callee});
            if let Some(i) = ingress(trunk) {
                v["ingress"] = serde_json::Value::String(i);
            }
            ("call", v)
        }
        Fact::CheckDomain { domain } => ("domain", serde_json::json!({ "domain": domain })),
        Fact::CheckUrl { url } => ("url", serde_json::json!({ "url": url })),
        Fact::CheckMessage { text } => ("message", serde_json::json!({ "text": text })),
        _ => return (Observed::Error, "not a check".into(), None),
    };
    let r = hyper::Request::post(format!("/v1/check/{path}"))
        .header(hyper::header::HOST, pool.addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    let r = match r {
        Ok(r) => r,
        Err(err) => return (Observed::Error, format!("request: {err}"), None),
    };
    match tokio::time::timeout_at(deadline, pool.send(r)).await {
        Ok(Ok((status, _, body))) => {
            let at = Some(Instant::now());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if status != 200 {
                let mut text = String::from_utf8_lossy(&body).into_owned();
                text.truncate(160);
                return (Observed::Unexpected, format!("HTTP {status} {text}"), at);
            }
            let action = v["action"].as_str().unwrap_or("");
            let o = match action {
                "block" => Observed::Blocked,
                "warn" => Observed::Warned,
                "tag" => Observed::Tagged,
                "allow" => Observed::Allowed,
                _ => Observed::Unexpected,
            };
            let rule = v["rule"].as_str().unwrap_or("-");
            let protected = if v["protected"].as_bool() == Some(true) {
                " protected"
            } else {
                ""
            };
            (o, format!("{action} rule {rule}{protected}"), at)
        }
        Ok(Err(err)) => (Observed::Error, err, None),
        Err(_) => (Observed::Timeout, "no answer".into(), None),
    }
}

// ------------------------------------------------------------------------------------------
// The run

/// One plane's connections.
#[derive(Clone, Debug)]
enum Driver {
    Sip(Arc<SipDriver>),
    Dns(Arc<DnsDriver>),
    Http(Arc<HttpPool>, Arc<crate::scenario::ExpectHttp>),
    Check(Arc<HttpPool>, Arc<Vec<String>>),
}

impl Driver {
    async fn exec(self, req: &Request, deadline: Instant) -> Outcome {
        match self {
            Driver::Sip(d) => {
                let trunk = match &req.fact {
                    Fact::Call { trunk, .. } => *trunk,
                    _ => 0,
                };
                d.call(req, trunk).await
            }
            Driver::Dns(d) => d.query(req, deadline).await,
            Driver::Http(p, e) => http_get(&p, &e, req, deadline).await,
            Driver::Check(p, t) => check(&p, req, &t, deadline).await,
        }
    }
}

/// Walks one plane's schedule (see the module doc).
async fn drive_plane(
    reqs: Arc<Vec<Request>>,
    driver: Driver,
    start: Instant,
    max_outstanding: usize,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Record>,
) {
    let outstanding = Arc::new(AtomicUsize::new(0));
    for i in 0..reqs.len() {
        let Some(req) = reqs.get(i) else { break };
        let due = start + Duration::from_nanos(req.at_ns);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let lateness_ns = Instant::now().saturating_duration_since(due).as_nanos() as u64;
        if outstanding.load(Ordering::SeqCst) >= max_outstanding {
            let _ = tx.send(Record {
                plane: req.plane,
                seq: req.seq,
                sched_ns: req.at_ns,
                lateness_ns,
                latency_ns: None,
                observed: Observed::Error,
                wire: format!("not sent: {max_outstanding} requests outstanding"),
                overflow: true,
            });
            continue;
        }
        outstanding.fetch_add(1, Ordering::SeqCst);
        let (reqs, driver, tx, out) = (
            Arc::clone(&reqs),
            driver.clone(),
            tx.clone(),
            Arc::clone(&outstanding),
        );
        tokio::spawn(async move {
            let Some(req) = reqs.get(i) else { return };
            let (observed, wire, done) = driver.exec(req, due + timeout).await;
            out.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(Record {
                plane: req.plane,
                seq: req.seq,
                sched_ns: req.at_ns,
                lateness_ns,
                latency_ns: done.map(|d| d.saturating_duration_since(due).as_nanos() as u64),
                observed,
                wire,
                overflow: false,
            });
        });
    }
}

/// Starts the stubs the scenario asks for; returns a line per stub.
async fn start_stubs(sc: &Scenario) -> Result<Vec<String>, SimError> {
    let mut lines = Vec::new();
    if let Some(a) = sc.stubs.uas {
        let (l, _) = crate::stub::start_uas(a, vec![sc.expect.sip.tag_header.clone()])
            .await
            .map_err(|e| SimError::io(format!("starting the UAS on {a}"), e))?;
        lines.push(format!("stub uas udp {l}"));
    }
    if let Some(a) = sc.stubs.dns {
        let (l, _) = crate::stub::start_dns(a)
            .await
            .map_err(|e| SimError::io(format!("starting the DNS upstream on {a}"), e))?;
        lines.push(format!("stub dns udp+tcp {l}"));
    }
    if let Some(a) = sc.stubs.http {
        let (l, _) = crate::stub::start_http(a, sc.expect.http.tag_header.clone())
            .await
            .map_err(|e| SimError::io(format!("starting the HTTP origin on {a}"), e))?;
        lines.push(format!("stub http {l}"));
    }
    Ok(lines)
}

async fn drive(
    sc: &Scenario,
    w: &Workload,
    progress: bool,
) -> Result<(Vec<Record>, f64, BTreeMap<Plane, (String, f64)>), SimError> {
    for line in start_stubs(sc).await? {
        println!("{line}");
    }
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut plans: Vec<(Plane, Arc<Vec<Request>>, Driver, Duration)> = Vec::new();
    let mut targets = BTreeMap::new();
    let t = &sc.targets;
    let timeout = Duration::from_millis(sc.limits.timeout_ms);
    if let (false, Some(a)) = (w.sip.is_empty(), t.sip_udp) {
        let d = SipDriver::new(sc, a, run).await?;
        targets.insert(Plane::Sip, (format!("udp {a}"), sc.rates.sip));
        // The SIP transaction bounds itself (Timer B); the deadline is unused.
        let b = Duration::from_millis(sc.limits.sip_timer_b_ms);
        plans.push((Plane::Sip, Arc::new(w.sip.clone()), Driver::Sip(d), b));
    }
    if !w.dns.is_empty() {
        let d = DnsDriver::new(sc).await?;
        let shown = match (t.dns_udp, t.dns_tcp) {
            (Some(u), Some(tc)) => format!("udp {u}, tcp {tc}"),
            (Some(u), None) => format!("udp+tcp {u}"),
            (None, Some(tc)) => format!("tcp {tc}"),
            (None, None) => "-".into(),
        };
        targets.insert(Plane::Dns, (shown, sc.rates.dns));
        plans.push((Plane::Dns, Arc::new(w.dns.clone()), Driver::Dns(d), timeout));
    }
    if let (false, Some(a)) = (w.http.is_empty(), t.http_proxy) {
        targets.insert(Plane::Http, (format!("proxy {a}"), sc.rates.http));
        let drv = Driver::Http(HttpPool::new(a), Arc::new(sc.expect.http.clone()));
        plans.push((Plane::Http, Arc::new(w.http.clone()), drv, timeout));
    }
    if let (false, Some(a)) = (w.check.is_empty(), t.check) {
        targets.insert(
            Plane::Check,
            (format!("http://{a}/v1/check"), sc.rates.check),
        );
        let drv = Driver::Check(HttpPool::new(a), Arc::new(w.trunks.clone()));
        plans.push((Plane::Check, Arc::new(w.check.clone()), drv, timeout));
    }
    let total: usize = plans.iter().map(|p| p.1.len()).sum();
    let bar = if progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} answered or timed out ({per_sec}) {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    // A little head room so that the first requests are not late because of the set-up.
    let start = Instant::now() + Duration::from_millis(20);
    let mut sip_driver = None;
    for (_, reqs, driver, timeout) in plans {
        if let Driver::Sip(d) = &driver {
            sip_driver = Some(Arc::clone(d));
        }
        tokio::spawn(drive_plane(
            reqs,
            driver,
            start,
            sc.limits.max_outstanding,
            timeout,
            tx.clone(),
        ));
    }
    drop(tx);
    let mut records = Vec::with_capacity(total);
    let mut fp_fn = 0u64;
    while let Some(r) = rx.recv().await {
        bar.inc(1);
        if r.observed == Observed::Unexpected || r.observed == Observed::Timeout {
            fp_fn += 1;
            bar.set_message(format!("{fp_fn} timeouts/unexpected"));
        }
        records.push(r);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    // Let answered calls finish their BYE (bounded by Timer B).
    if let Some(d) = sip_driver {
        let end = Instant::now() + d.timer_b;
        while d.byes.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((records, elapsed, targets))
}

/// Runs a scenario (targets already set), writes `report.json` and `report.html` to `out`,
/// and returns the report. `progress`: a live bar on stderr when it is a terminal.
pub fn run(sc: &Scenario, out: &Path, progress: bool) -> Result<Report, SimError> {
    sc.check_targets().map_err(|reason| SimError::Scenario {
        path: "(targets)".into(),
        reason,
    })?;
    let w = workload::build(sc).map_err(|reason| SimError::Scenario {
        path: "(rule set)".into(),
        reason,
    })?;
    run_workload(sc, &w, out, progress)
}

/// [`run`] with a workload built beforehand (e.g. to inspect its requests).
pub fn run_workload(
    sc: &Scenario,
    w: &Workload,
    out: &Path,
    progress: bool,
) -> Result<Report, SimError> {
    std::fs::create_dir_all(out)
        .map_err(|e| SimError::io(format!("creating {}", out.display()), e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sc.limits.threads)
        .enable_all()
        .build()
        .map_err(|e| SimError::io("starting the runtime", e))?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (records, elapsed_s, targets) = runtime.block_on(drive(sc, w, progress))?;
    let info = RunInfo {
        scenario: sc.name.clone(),
        seed: sc.seed,
        started_unix,
        duration_s: sc.duration_s,
        elapsed_s,
        targets,
    };
    let report = Report::build(&info, w, &records);
    let json = out.join("report.json");
    std::fs::write(&json, report.to_json())
        .map_err(|e| SimError::io(format!("writing {}", json.display()), e))?;
    let html = out.join("report.html");
    std::fs::write(&html, crate::html::render(&report))
        .map_err(|e| SimError::io(format!("writing {}", html.display()), e))?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn http_answers_are_classified_by_status_marker_and_reflected_tag() {
        let e = crate::scenario::ExpectHttp::default();
        let mut h = hyper::HeaderMap::new();
        assert_eq!(
            classify_http(&e, 403, &h, b"<p>appeal 12381</p>"),
            Observed::Blocked
        );
        assert_eq!(
            classify_http(&e, 403, &h, b"forbidden by origin"),
            Observed::Unexpected
        );
        assert_eq!(
            classify_http(&e, 200, &h, b"warning 12381"),
            Observed::Warned
        );
        assert_eq!(classify_http(&e, 200, &h, b"origin ok"), Observed::Allowed);
        assert_eq!(classify_http(&e, 502, &h, b""), Observed::Unexpected);
        h.insert(
            "x-sim-saw-tag",
            hyper::header::HeaderValue::from_static("loans"),
        );
        assert_eq!(classify_http(&e, 200, &h, b"origin ok"), Observed::Tagged);
    }
}
