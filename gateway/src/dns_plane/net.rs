//! The tokio shell of the DNS plane.
//!
//! Shared-nothing UDP workers: each owns its upstream socket, its table of queries in flight
//! (indexed by the random ID it gave them, RFC 5452 §9) and its packet cache, so nothing on the
//! path is locked or shared. A worker drains the client socket (answers built in place, cache
//! hits served with their TTLs aged, misses forwarded), drains its upstream socket (answers
//! checked against the question they belong to, cached, returned with the client's ID and the
//! client's letter case), and every 50 ms gives SERVFAIL to what has waited `timeout_ms`.
//! A truncated upstream answer is retried over TCP (RFC 7766) in a task of its own.
//!
//! TCP clients (RFC 7766, two-octet length prefix): one task per connection; its forwarded
//! queries go upstream over the connection's own UDP socket (TCP if truncated), uncached.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::unix_now;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::{DnsCore, DnsWorker, Step};
use crate::dns::{
    age_ttls, answer_ttl, cache_key, echo_question_case, is_truncated, parse_query, rcode,
    response_matches, set_id, CACHE_KEY_LEN,
};

/// Binds the DNS listeners; errors name the address.
pub fn bind(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
) -> io::Result<(Vec<std::net::UdpSocket>, Vec<std::net::TcpListener>)> {
    let named = |a: &SocketAddr, what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("cannot bind DNS {what} {a}: {e}"))
    };
    let mut u = Vec::new();
    for a in udp {
        let s = std::net::UdpSocket::bind(a).map_err(|e| named(a, "UDP", e))?;
        s.set_nonblocking(true)?;
        u.push(s);
    }
    let mut t = Vec::new();
    for a in tcp {
        let s = std::net::TcpListener::bind(a).map_err(|e| named(a, "TCP", e))?;
        s.set_nonblocking(true)?;
        t.push(s);
    }
    Ok((u, t))
}

/// Starts the plane's tasks on the current runtime.
pub fn spawn(
    core: Arc<DnsCore>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    workers: usize,
) -> io::Result<JoinSet<()>> {
    let mut set = JoinSet::new();
    for s in udp {
        let s = Arc::new(UdpSocket::from_std(s)?);
        for i in 0..workers.max(1) {
            set.spawn(udp_worker(core.clone(), s.clone(), i as u64));
        }
    }
    for l in tcp {
        let l = TcpListener::from_std(l)?;
        set.spawn(tcp_acceptor(core.clone(), l));
    }
    Ok(set)
}

fn unspecified_for(a: &SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(ip) if ip.is_loopback() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The query as sent upstream (our ID in it).
    query: Vec<u8>,
    sent: Instant,
}

struct Cached {
    resp: Vec<u8>,
    stored: u64,
    ttl: u32,
}

/// xorshift64*: the IDs of forwarded queries (unpredictable enough with a random seed; the
/// upstream socket's random port adds 16 more bits, RFC 5452 §9.2).
struct Ids(u64);
impl Ids {
    fn next(&mut self) -> u16 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16
    }
}

fn seed(i: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(i);
    h.finish() | 1
}

struct UdpState {
    pending: Vec<Option<Pending>>,
    in_flight: usize,
    order: VecDeque<(Instant, u16)>,
    cache: HashMap<Box<[u8]>, Cached>,
    pool: Vec<Vec<u8>>,
    ids: Ids,
    rr: usize,
}

async fn udp_worker(core: Arc<DnsCore>, sock: Arc<UdpSocket>, i: u64) {
    let mut ups = Vec::new();
    for a in &core.upstreams {
        match UdpSocket::bind(unspecified_for(a)).await {
            Ok(s) => ups.push(s),
            Err(e) => {
                tracing::error!(upstream = %a, error = %e, "cannot open an upstream socket; DNS worker stops");
                return;
            }
        }
    }
    let mut st = UdpState {
        pending: (0..65_536).map(|_| None).collect(),
        in_flight: 0,
        order: VecDeque::with_capacity(4096),
        cache: HashMap::with_capacity(core.cache_entries.min(1 << 16)),
        pool: Vec::new(),
        ids: Ids(seed(i)),
        rr: 0,
    };
    let mut w = DnsWorker::new();
    let mut buf = vec![0u8; 65_535];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(core.timeout_ms);
    loop {
        // Readiness of the client socket and of every upstream socket, and the timer.
        let upstream_ready = async {
            let futs: Vec<_> = ups.iter().map(|u| Box::pin(u.readable())).collect();
            futures_select_any(futs).await;
        };
        tokio::select! {
            r = sock.readable() => {
                if r.is_ok() {
                    drain_clients(&core, &sock, &ups, &mut st, &mut w, &mut buf).await;
                }
            }
            _ = upstream_ready => {
                drain_upstreams(&core, &sock, &ups, &mut st, &mut w, &mut buf).await;
            }
            _ = tick.tick() => {
                expire(&core, &sock, &mut st, &mut w, timeout).await;
            }
        }
    }
}

/// Waits for the first of several readiness futures (no extra crate for one `select_all`).
async fn futures_select_any<F: std::future::Future + Unpin>(mut futs: Vec<F>) {
    if futs.is_empty() {
        std::future::pending::<()>().await;
    }
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    match sock.try_send_to(bytes, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.send_to(bytes, to).await,
        r => r,
    }
}

async fn drain_clients(
    core: &DnsCore,
    sock: &UdpSocket,
    ups: &[UdpSocket],
    st: &mut UdpState,
    w: &mut DnsWorker,
    buf: &mut [u8],
) {
    let mut n_read = 0usize;
    loop {
        let (n, client) = match sock.try_recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => continue,
        };
        n_read += 1;
        let now = unix_now();
        let pkt = &buf[..n];
        match core.decide(w, pkt, client.ip(), false, now) {
            Step::Reply => {
                let _ = send(sock, &w.out, client).await;
            }
            Step::Drop => {}
            Step::Forward => forward(core, sock, ups, st, w, pkt, client, now).await,
        }
        if n_read % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    core: &DnsCore,
    sock: &UdpSocket,
    ups: &[UdpSocket],
    st: &mut UdpState,
    w: &mut DnsWorker,
    pkt: &[u8],
    client: SocketAddr,
    now: u64,
) {
    let Ok(q) = parse_query(pkt) else { return };
    let mut key = [0u8; CACHE_KEY_LEN];
    let k = cache_key(&q, &mut key);
    if let Some(c) = st.cache.get(k) {
        let elapsed = now.saturating_sub(c.stored);
        if elapsed < u64::from(c.ttl) {
            w.out.clear();
            w.out.extend_from_slice(&c.resp);
            if age_ttls(&mut w.out, elapsed as u32) {
                set_id(&mut w.out, q.id());
                echo_question_case(&q, &mut w.out);
                if w.out.len() > q.response_limit(core.udp_size, false) {
                    core.truncated(&q, &mut w.out);
                }
                core.metrics.cache_hits.inc();
                let _ = send(sock, &w.out, client).await;
                return;
            }
        }
        st.cache.remove(k);
    }
    core.metrics.cache_misses.inc();
    if st.in_flight >= 60_000 {
        // The table is nearly full: answer SERVFAIL rather than overwrite a query in flight.
        core.servfail(&q, false, &mut w.out);
        let _ = send(sock, &w.out, client).await;
        return;
    }
    let mut id = st.ids.next();
    while st.pending[usize::from(id)].is_some() {
        id = st.ids.next();
    }
    let mut b = st.pool.pop().unwrap_or_default();
    b.clear();
    b.extend_from_slice(pkt);
    set_id(&mut b, id);
    let ix = st.rr % ups.len().max(1);
    st.rr = st.rr.wrapping_add(1);
    let (Some(up), Some(addr)) = (ups.get(ix), core.upstreams.get(ix)) else {
        return;
    };
    if send(up, &b, *addr).await.is_err() {
        core.metrics.upstream_errors.inc();
        core.servfail(&q, false, &mut w.out);
        let _ = send(sock, &w.out, client).await;
        st.pool.push(b);
        return;
    }
    core.metrics.forwarded.inc();
    let sent = Instant::now();
    st.pending[usize::from(id)] = Some(Pending {
        client,
        client_id: q.id(),
        query: b,
        sent,
    });
    st.in_flight += 1;
    st.order.push_back((sent, id));
}

async fn drain_upstreams(
    core: &Arc<DnsCore>,
    sock: &Arc<UdpSocket>,
    ups: &[UdpSocket],
    st: &mut UdpState,
    w: &mut DnsWorker,
    buf: &mut [u8],
) {
    for (ix, up) in ups.iter().enumerate() {
        loop {
            let (n, from) = match up.try_recv_from(buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            // RFC 5452 §9.1: only from the server we asked, with our ID and our question.
            if Some(&from) != core.upstreams.get(ix) || n < 12 {
                core.metrics.upstream_errors.inc();
                continue;
            }
            let resp = &buf[..n];
            let id = u16::from_be_bytes([resp[0], resp[1]]);
            let Some(p) = st.pending[usize::from(id)].take() else {
                continue; // late (already timed out) or forged
            };
            let Ok(q) = parse_query(&p.query) else {
                st.pending[usize::from(id)] = Some(p);
                continue;
            };
            if !response_matches(&q, resp) {
                core.metrics.upstream_errors.inc();
                st.pending[usize::from(id)] = Some(p);
                continue;
            }
            st.in_flight -= 1;
            core.metrics
                .upstream_latency
                .observe_ns(p.sent.elapsed().as_nanos() as u64);
            if is_truncated(resp) {
                // RFC 7766 §5: the whole answer over TCP, in a task of its own.
                core.metrics.tcp_retries.inc();
                let (core, sock, addr) = (core.clone(), sock.clone(), core.upstreams[ix]);
                let query = p.query;
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let r =
                        tcp_exchange(addr, &query, Duration::from_millis(core.timeout_ms)).await;
                    let Ok(q) = parse_query(&query) else { return };
                    match r {
                        Ok(mut resp) if response_matches(&q, &resp) => {
                            set_id(&mut resp, p.client_id);
                            if resp.len() > q.response_limit(core.udp_size, false) {
                                core.truncated(&q, &mut out);
                                set_id(&mut out, p.client_id);
                            } else {
                                out = resp;
                            }
                        }
                        _ => {
                            core.metrics.upstream_errors.inc();
                            core.servfail(&q, false, &mut out);
                            set_id(&mut out, p.client_id);
                        }
                    }
                    let _ = send(&sock, &out, p.client).await;
                });
                continue;
            }
            // Cache NOERROR and NXDOMAIN answers for their TTL (RFC 2308 §5 for negative ones).
            let now = unix_now();
            if matches!(rcode(resp), Some(0 | 3)) && core.cache_entries > 0 {
                if let Some(ttl) = answer_ttl(resp).filter(|t| *t > 0) {
                    if st.cache.len() >= core.cache_entries {
                        evict(&mut st.cache, now);
                    }
                    let mut key = [0u8; CACHE_KEY_LEN];
                    let k = cache_key(&q, &mut key);
                    st.cache.insert(
                        k.into(),
                        Cached {
                            resp: resp.to_vec(),
                            stored: now,
                            ttl: ttl.min(core.cache_max_ttl),
                        },
                    );
                }
            }
            w.out.clear();
            w.out.extend_from_slice(resp);
            set_id(&mut w.out, p.client_id);
            if w.out.len() > q.response_limit(core.udp_size, false) {
                core.truncated(&q, &mut w.out);
                set_id(&mut w.out, p.client_id);
            }
            let _ = send(sock, &w.out, p.client).await;
            st.pool.push(p.query);
        }
    }
}

/// Makes room: drops expired entries, or (if none) an arbitrary tenth of the cache.
fn evict(cache: &mut HashMap<Box<[u8]>, Cached>, now: u64) {
    let before = cache.len();
    cache.retain(|_, c| now.saturating_sub(c.stored) < u64::from(c.ttl));
    if cache.len() == before {
        let drop_n = (before / 10).max(1);
        let keys: Vec<Box<[u8]>> = cache.keys().take(drop_n).cloned().collect();
        for k in keys {
            cache.remove(&k);
        }
    }
}

async fn expire(
    core: &DnsCore,
    sock: &UdpSocket,
    st: &mut UdpState,
    w: &mut DnsWorker,
    timeout: Duration,
) {
    let now = Instant::now();
    while let Some(&(sent, id)) = st.order.front() {
        if now.duration_since(sent) < timeout {
            break;
        }
        st.order.pop_front();
        let slot = &mut st.pending[usize::from(id)];
        if slot.as_ref().is_some_and(|p| p.sent == sent) {
            if let Some(p) = slot.take() {
                st.in_flight -= 1;
                core.metrics.upstream_timeouts.inc();
                if let Ok(q) = parse_query(&p.query) {
                    core.servfail(&q, false, &mut w.out);
                    set_id(&mut w.out, p.client_id);
                    let _ = send(sock, &w.out, p.client).await;
                }
                st.pool.push(p.query);
            }
        }
    }
}

/// One query over TCP (RFC 7766 / RFC 1035 §4.2.2 length prefix), bounded by `limit`.
pub async fn tcp_exchange(addr: SocketAddr, query: &[u8], limit: Duration) -> io::Result<Vec<u8>> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let len = u16::try_from(query.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
        let mut msg = Vec::with_capacity(query.len() + 2);
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(query);
        s.write_all(&msg).await?;
        let n = s.read_u16().await?;
        let mut resp = vec![0u8; usize::from(n)];
        s.read_exact(&mut resp).await?;
        Ok(resp)
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream TCP timed out"))?
}

/// One query over UDP from `up`, waiting for the matching answer (TCP if truncated).
async fn udp_exchange(
    core: &DnsCore,
    up: &UdpSocket,
    query: &[u8],
    addr: SocketAddr,
) -> io::Result<Vec<u8>> {
    let limit = Duration::from_millis(core.timeout_ms);
    let q = parse_query(query)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let fut = async {
        up.send_to(query, addr).await?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = up.recv_from(&mut buf).await?;
            if from == addr && response_matches(&q, &buf[..n]) {
                buf.truncate(n);
                return Ok::<Vec<u8>, io::Error>(buf);
            }
        }
    };
    let resp = tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream timed out"))??;
    if is_truncated(&resp) {
        core.metrics.tcp_retries.inc();
        return tcp_exchange(addr, query, limit).await;
    }
    Ok(resp)
}

async fn tcp_acceptor(core: Arc<DnsCore>, l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(tcp_conn(core.clone(), s, peer));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn tcp_conn(core: Arc<DnsCore>, mut s: TcpStream, peer: SocketAddr) {
    let mut w = DnsWorker::new();
    let mut up: Option<UdpSocket> = None;
    let mut rr = 0usize;
    loop {
        // RFC 7766 §6.2.3: idle connections are closed after a while.
        let len = match tokio::time::timeout(Duration::from_secs(10), s.read_u16()).await {
            Ok(Ok(n)) => usize::from(n),
            _ => return,
        };
        let mut pkt = vec![0u8; len];
        if s.read_exact(&mut pkt).await.is_err() {
            return;
        }
        let now = unix_now();
        let answer: Vec<u8> = match core.decide(&mut w, &pkt, peer.ip(), true, now) {
            Step::Reply => w.out.clone(),
            Step::Drop => continue,
            Step::Forward => {
                let Some(addr) = core
                    .upstreams
                    .get(rr % core.upstreams.len().max(1))
                    .copied()
                else {
                    return;
                };
                rr = rr.wrapping_add(1);
                if up.is_none() {
                    up = UdpSocket::bind(unspecified_for(&addr)).await.ok();
                }
                core.metrics.forwarded.inc();
                let r = match &up {
                    Some(u) => udp_exchange(&core, u, &pkt, addr).await,
                    None => Err(io::Error::other("no upstream socket")),
                };
                match r {
                    Ok(resp) => resp,
                    Err(_) => {
                        core.metrics.upstream_errors.inc();
                        match parse_query(&pkt) {
                            Ok(q) => {
                                core.servfail(&q, true, &mut w.out);
                                w.out.clone()
                            }
                            Err(_) => continue,
                        }
                    }
                }
            }
        };
        let Ok(n) = u16::try_from(answer.len()) else {
            continue;
        };
        let mut msg = Vec::with_capacity(answer.len() + 2);
        msg.extend_from_slice(&n.to_be_bytes());
        msg.extend_from_slice(&answer);
        if s.write_all(&msg).await.is_err() {
            return;
        }
    }
}
