//! The shell of the DNS plane: UDP worker threads and tokio TCP tasks around [`DnsCore`].
//!
//! Shared-nothing UDP workers, one thread each: each owns its upstream sockets, its table of
//! queries in flight (indexed by the random ID it gave them, RFC 5452 §9) and its packet
//! cache ([`super::cache`]), so nothing on the path is locked or shared. A worker reads the
//! client socket and its upstream sockets in batches (`recvmmsg`, [`crate::mmsg`]): each query
//! parsed once; answers built in place, cache hits served with their TTLs aged, misses
//! forwarded; upstream answers checked against the question they belong to, cached, returned
//! with the client's ID and the client's letter case. What a batch produced goes out with one
//! `sendmmsg` per socket. With nothing in flight the worker neither reads its upstream sockets
//! nor polls: it sleeps in the client socket's `recvmmsg` (MSG_WAITFORONE, up to
//! [`crate::mmsg::STOP_POLL`]). With queries in flight, when every socket is empty it sleeps in
//! `poll` (at most 50 ms); every 50 ms it gives SERVFAIL to what has waited `timeout_ms`. A
//! truncated upstream answer is retried over TCP (RFC 7766) in a task on the runtime.
//!
//! TCP clients (RFC 7766, two-octet length prefix): one task per connection; its forwarded
//! queries go upstream over the connection's own UDP socket (TCP if truncated), uncached.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::unix_now;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::cache::PacketCache;
use super::{DnsCore, DnsWorker, Step};
use crate::dns::{
    age_ttls, answer_ttl, cache_key, echo_question_case, is_truncated, parse_query, rcode,
    response_matches, set_id, Query, CACHE_KEY_LEN,
};
use crate::mmsg::{self, RecvBatch, SendBatch, Workers, BATCH};

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

/// Starts the plane: UDP worker threads (stopped when the returned [`Workers`] is dropped)
/// and TCP tasks on the current runtime (which also runs the workers' TCP retries).
pub fn spawn(
    core: Arc<DnsCore>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    workers: usize,
) -> io::Result<(JoinSet<()>, Workers)> {
    let rt = tokio::runtime::Handle::current();
    let mut threads = Workers::new();
    for (si, s) in udp.into_iter().enumerate() {
        // Blocking with a receive timeout: an idle worker sleeps in recvmmsg (see udp_worker).
        mmsg::blocking(&s)?;
        let s = Arc::new(s);
        for i in 0..workers.max(1) {
            let (core, s, rt, stop) = (core.clone(), s.clone(), rt.clone(), threads.stop_flag());
            let seed_ix = (si * 1024 + i) as u64;
            threads.spawn(format!("dns-udp-{si}-{i}"), move || {
                udp_worker(core, s, seed_ix, rt, stop)
            })?;
        }
    }
    let mut set = JoinSet::new();
    for l in tcp {
        let l = TcpListener::from_std(l)?;
        set.spawn(tcp_acceptor(core.clone(), l));
    }
    Ok((set, threads))
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
    cache: PacketCache,
    pool: Vec<Vec<u8>>,
    ids: Ids,
    rr: usize,
}

/// Largest answer or query that goes out in a batch; a larger one is sent on its own.
const SEND_SLOT: usize = 4096;
/// How often queries in flight are checked against `timeout_ms`.
const TICK: Duration = Duration::from_millis(50);

/// Sockets and batches of one worker thread.
struct Io {
    sock: Arc<std::net::UdpSocket>,
    ups: Vec<std::net::UdpSocket>,
    to_clients: SendBatch,
    to_ups: Vec<SendBatch>,
}

impl Io {
    /// Queues an answer for a client (sent at the end of the batch).
    fn answer(&mut self, core: &DnsCore, bytes: &[u8], to: SocketAddr) {
        if self.to_clients.is_full() {
            self.flush_clients(core);
        }
        if !self.to_clients.push(bytes, to) && self.sock.send_to(bytes, to).is_err() {
            core.metrics.send_failed.inc();
        }
    }

    fn flush_clients(&mut self, core: &DnsCore) {
        for _ in 0..self.to_clients.flush(&*self.sock) {
            core.metrics.send_failed.inc();
        }
    }

    /// Queues a query for upstream `ix`.
    fn query(&mut self, core: &DnsCore, ix: usize, bytes: &[u8]) {
        let (Some(b), Some(up)) = (self.to_ups.get_mut(ix), self.ups.get(ix)) else {
            return;
        };
        if b.is_full() {
            for _ in 0..b.flush(up) {
                core.metrics.upstream_errors.inc();
            }
        }
        if !b.push_connected(bytes) && up.send(bytes).is_err() {
            core.metrics.upstream_errors.inc();
        }
    }

    fn flush(&mut self, core: &DnsCore) {
        for (b, up) in self.to_ups.iter_mut().zip(&self.ups) {
            if !b.is_empty() {
                for _ in 0..b.flush(up) {
                    core.metrics.upstream_errors.inc();
                }
            }
        }
        if !self.to_clients.is_empty() {
            self.flush_clients(core);
        }
    }
}

fn udp_worker(
    core: Arc<DnsCore>,
    sock: Arc<std::net::UdpSocket>,
    i: u64,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) {
    let mut ups = Vec::new();
    for a in &core.upstreams {
        // Connected: the kernel keeps the route and drops datagrams from anyone else.
        match std::net::UdpSocket::bind(unspecified_for(a)).and_then(|s| {
            s.connect(a)?;
            s.set_nonblocking(true)?;
            Ok(s)
        }) {
            Ok(s) => ups.push(s),
            Err(e) => {
                tracing::error!(upstream = %a, error = %e, "cannot open an upstream socket; DNS worker stops");
                return;
            }
        }
    }
    let mut fds = vec![sock.as_raw_fd()];
    fds.extend(ups.iter().map(|u| u.as_raw_fd()));
    let mut io = Io {
        to_ups: ups
            .iter()
            .map(|_| SendBatch::new(BATCH, SEND_SLOT))
            .collect(),
        ups,
        sock,
        to_clients: SendBatch::new(BATCH, SEND_SLOT),
    };
    let mut st = UdpState {
        pending: (0..65_536).map(|_| None).collect(),
        in_flight: 0,
        order: VecDeque::with_capacity(4096),
        cache: PacketCache::new(core.cache_entries, seed(i ^ 0x5eed_cace)),
        pool: Vec::new(),
        ids: Ids(seed(i)),
        rr: 0,
    };
    let mut w = DnsWorker::new();
    let mut from_clients = RecvBatch::new(BATCH, 65_535);
    let mut from_ups = RecvBatch::new(BATCH, 65_535);
    let timeout = Duration::from_millis(core.timeout_ms);
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        // Nothing in flight: nothing can come from upstream and nothing can time out, so the
        // worker sleeps in recvmmsg itself (MSG_WAITFORONE, up to the socket's receive
        // timeout) rather than in poll followed by a read: one system call per wake-up.
        let waiting = st.in_flight == 0;
        if let Ok(n) = from_clients.recv(&*io.sock, waiting) {
            idle = n == 0 && !waiting;
            let now = unix_now();
            for k in 0..n {
                let Some((pkt, client, truncated)) = from_clients.get(k) else {
                    continue;
                };
                if truncated {
                    core.metrics.malformed.inc();
                    continue;
                }
                let q = match parse_query(pkt) {
                    Ok(q) => q,
                    Err(err) => {
                        if core.malformed(&mut w, pkt, err) == Step::Reply {
                            io.answer(&core, &w.out, client);
                        }
                        continue;
                    }
                };
                match core.decide_query(&mut w, &q, client.ip(), false, now) {
                    Step::Reply => io.answer(&core, &w.out, client),
                    Step::Drop => {}
                    Step::Forward => forward(&core, &mut io, &mut st, &mut w, &q, pkt, client, now),
                }
            }
            io.flush(&core);
        }
        if waiting {
            // Blocked above until a datagram came or the receive timeout passed; the stop
            // flag is looked at next.
            continue;
        }
        for ix in 0..io.ups.len() {
            let Ok(n) = from_ups.recv(&io.ups[ix], false) else {
                continue;
            };
            idle &= n == 0;
            for k in 0..n {
                if let Some((resp, from, _)) = from_ups.get(k) {
                    upstream_answer(&core, &mut io, &mut st, &mut w, &rt, ix, resp, from);
                }
            }
            io.flush(&core);
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            expire(&core, &mut io, &mut st, &mut w, timeout);
            io.flush(&core);
        }
        if idle {
            mmsg::wait_readable(&fds, TICK);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn forward(
    core: &DnsCore,
    io: &mut Io,
    st: &mut UdpState,
    w: &mut DnsWorker,
    q: &Query<'_>,
    pkt: &[u8],
    client: SocketAddr,
    now: u64,
) {
    let mut key = [0u8; CACHE_KEY_LEN];
    let k = cache_key(q, &mut key);
    if let Some(hit) = st.cache.get(k, now) {
        w.out.clear();
        w.out.extend_from_slice(hit.answer);
        if age_ttls(&mut w.out, hit.age) {
            set_id(&mut w.out, q.id());
            echo_question_case(q, &mut w.out);
            if w.out.len() > q.response_limit(core.udp_size, false) {
                core.truncated(q, &mut w.out);
            }
            core.metrics.cache_hits.inc();
            io.answer(core, &w.out, client);
            return;
        }
        st.cache.remove(k);
    }
    core.metrics.cache_misses.inc();
    if st.in_flight >= 60_000 {
        // The table is nearly full: answer SERVFAIL rather than overwrite a query in flight.
        core.servfail(q, false, &mut w.out);
        io.answer(core, &w.out, client);
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
    let ix = st.rr % io.ups.len().max(1);
    st.rr = st.rr.wrapping_add(1);
    io.query(core, ix, &b);
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

/// One datagram from upstream `ix`.
#[allow(clippy::too_many_arguments)]
fn upstream_answer(
    core: &Arc<DnsCore>,
    io: &mut Io,
    st: &mut UdpState,
    w: &mut DnsWorker,
    rt: &tokio::runtime::Handle,
    ix: usize,
    resp: &[u8],
    from: SocketAddr,
) {
    // RFC 5452 §9.1: only from the server we asked, with our ID and our question.
    if Some(&from) != core.upstreams.get(ix) || resp.len() < 12 {
        core.metrics.upstream_errors.inc();
        return;
    }
    let id = u16::from_be_bytes([resp[0], resp[1]]);
    let Some(p) = st.pending[usize::from(id)].take() else {
        return; // late (already timed out) or forged
    };
    let Ok(q) = parse_query(&p.query) else {
        st.pending[usize::from(id)] = Some(p);
        return;
    };
    if !response_matches(&q, resp) {
        core.metrics.upstream_errors.inc();
        st.pending[usize::from(id)] = Some(p);
        return;
    }
    st.in_flight -= 1;
    core.metrics
        .upstream_latency
        .observe_ns(p.sent.elapsed().as_nanos() as u64);
    if is_truncated(resp) {
        // RFC 7766 §5: the whole answer over TCP, in a task of its own.
        core.metrics.tcp_retries.inc();
        let (core, sock, addr) = (core.clone(), io.sock.clone(), core.upstreams[ix]);
        let query = p.query;
        rt.spawn(async move {
            let mut out = Vec::new();
            let r = tcp_exchange(addr, &query, Duration::from_millis(core.timeout_ms)).await;
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
            if sock.send_to(&out, p.client).is_err() {
                core.metrics.send_failed.inc();
            }
        });
        return;
    }
    // Cache NOERROR and NXDOMAIN answers for their TTL (RFC 2308 §5 for negative ones).
    let now = unix_now();
    if matches!(rcode(resp), Some(0 | 3)) && core.cache_entries > 0 {
        if let Some(ttl) = answer_ttl(resp).filter(|t| *t > 0) {
            let mut key = [0u8; CACHE_KEY_LEN];
            let k = cache_key(&q, &mut key);
            st.cache.insert(k, resp, now, ttl.min(core.cache_max_ttl));
        }
    }
    w.out.clear();
    w.out.extend_from_slice(resp);
    set_id(&mut w.out, p.client_id);
    if w.out.len() > q.response_limit(core.udp_size, false) {
        core.truncated(&q, &mut w.out);
        set_id(&mut w.out, p.client_id);
    }
    io.answer(core, &w.out, p.client);
    st.pool.push(p.query);
}

fn expire(core: &DnsCore, io: &mut Io, st: &mut UdpState, w: &mut DnsWorker, timeout: Duration) {
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
                    io.answer(core, &w.out, p.client);
                }
                st.pool.push(p.query);
            }
        }
    }
}

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
