//! The shell of the SIP plane: UDP worker threads and tokio TCP tasks around [`SipCore`].
//!
//! UDP: `workers` threads per socket each read batches of datagrams (`recvmmsg`, blocking for
//! the first, [`crate::mmsg`]), handle every datagram inline into their own buffers, and send
//! the batch's answers and forwards with one `sendmmsg`: no hand-off, no copy into a queue,
//! no event loop between the socket and the screening. The socket's receive buffer is the
//! queue (`sip.socket_buffer` bytes). Its bound: when a worker has read `sip.queue` datagrams
//! back to back without the socket running dry (a batch that came back short means it ran
//! dry), the plane is not keeping up, and from then until the socket is empty again new
//! INVITEs are answered 503 + Retry-After straight away (cheap) while responses, ACKs, CANCELs
//! and in-dialog requests are still handled, so calls in progress complete. It recovers by
//! itself when load falls. TCP: one task per connection frames messages (RFC 3261 §18.3) and
//! handles them inline; a connection table lets responses that arrive over UDP find the
//! connection their request came on. No lock and no allocation per message once the pools
//! are warm; nothing is logged per message.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::unix_now;

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Dest, SipCore, Transport, Worker};
use crate::mmsg::{self, RecvBatch, SendBatch, Workers, BATCH};
use crate::sip::{frame, MAX_MESSAGE};

/// A TCP connection idle this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(600);
const BUF_CAPACITY: usize = 2048;
const CONN_QUEUE: usize = 256;
const SLOT_BITS: u32 = 20;

/// Recycled message buffers.
#[derive(Debug)]
struct Pool(ArrayQueue<Vec<u8>>);

impl Pool {
    fn get(&self) -> Vec<u8> {
        self.0
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY))
    }
    fn put(&self, mut b: Vec<u8>) {
        b.clear();
        if b.capacity() <= 4 * MAX_MESSAGE.max(BUF_CAPACITY) {
            let _ = self.0.push(b);
        }
    }
}

#[derive(Debug)]
struct Conn {
    id: u32,
    tx: mpsc::Sender<Vec<u8>>,
}

/// Open TCP connections, indexed by the low bits of their id (lock-free lookups).
#[derive(Debug)]
struct Conns {
    slots: Box<[ArcSwapOption<Conn>]>,
    free: ArrayQueue<u32>,
    generation: AtomicU32,
    open: AtomicUsize,
}

impl Conns {
    fn new(max: usize) -> Conns {
        let max = max.clamp(1, 1 << SLOT_BITS);
        let free = ArrayQueue::new(max);
        for i in 0..max as u32 {
            let _ = free.push(i);
        }
        Conns {
            slots: (0..max).map(|_| ArcSwapOption::empty()).collect(),
            free,
            generation: AtomicU32::new(1),
            open: AtomicUsize::new(0),
        }
    }

    fn insert(&self, tx: mpsc::Sender<Vec<u8>>) -> Option<u32> {
        let slot = self.free.pop()?;
        let g = self.generation.fetch_add(1, Ordering::Relaxed) & ((1 << (32 - SLOT_BITS)) - 1);
        let id = (g << SLOT_BITS) | slot;
        self.slots[slot as usize].store(Some(Arc::new(Conn { id, tx })));
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    fn get(&self, id: u32) -> Option<Arc<Conn>> {
        let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
        let c = self.slots.get(slot)?.load_full()?;
        (c.id == id).then_some(c)
    }

    fn remove(&self, id: u32) {
        let slot = id & ((1 << SLOT_BITS) - 1);
        if let Some(s) = self.slots.get(slot as usize) {
            s.store(None);
            let _ = self.free.push(slot);
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Shared state of the running plane.
#[derive(Debug)]
struct Shared {
    core: Arc<SipCore>,
    /// The socket requests are forwarded from (its address is in our Via).
    udp: Option<Arc<std::net::UdpSocket>>,
    conns: Conns,
    pool: Pool,
}

impl Shared {
    /// Sends what `handle` left in `w.out` (UDP from `via`, else from the first UDP socket).
    fn send(&self, w: &Worker, dest: Dest, via: Option<&std::net::UdpSocket>) {
        match dest {
            Dest::None => {}
            Dest::Udp(to) => {
                let Some(sock) = via.or(self.udp.as_deref()) else {
                    self.core.metrics.drops.send_failed.inc();
                    return;
                };
                if sock.send_to(&w.out, to).is_err() {
                    self.core.metrics.drops.send_failed.inc();
                }
            }
            Dest::Conn(id) => match self.conns.get(id) {
                Some(c) => {
                    let mut b = self.pool.get();
                    b.extend_from_slice(&w.out);
                    if c.tx.try_send(b).is_err() {
                        self.core.metrics.drops.send_failed.inc();
                    }
                }
                None => {
                    self.core.metrics.drops.connection_gone.inc();
                }
            },
        }
    }
}

/// The running SIP plane's sockets, bound before the core is built (its Via needs them).
#[derive(Debug)]
pub struct Bound {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
}

impl Bound {
    /// Binds every listen address (UDP with `socket_buffer` bytes of receive and send buffer,
    /// as far as the kernel allows); errors name the address.
    pub fn bind(udp: &[SocketAddr], tcp: &[SocketAddr], socket_buffer: usize) -> io::Result<Bound> {
        let named = |a: &SocketAddr, what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot bind SIP {what} {a}: {e}"))
        };
        let mut b = Bound {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for a in udp {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(*a),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            // Best effort: the kernel caps these at net.core.{r,w}mem_max.
            let _ = s.set_recv_buffer_size(socket_buffer);
            let _ = s.set_send_buffer_size(socket_buffer);
            s.bind(&(*a).into()).map_err(|e| named(a, "UDP", e))?;
            let s: std::net::UdpSocket = s.into();
            mmsg::blocking(&s)?;
            b.udp.push(s);
        }
        for a in tcp {
            let s = std::net::TcpListener::bind(a).map_err(|e| named(a, "TCP", e))?;
            s.set_nonblocking(true)?;
            b.tcp.push(s);
        }
        Ok(b)
    }

    /// The addresses actually bound (port 0 resolved), UDP first.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let mut v = Vec::new();
        for s in &self.udp {
            v.push(s.local_addr()?);
        }
        for s in &self.tcp {
            v.push(s.local_addr()?);
        }
        Ok(v)
    }
}

/// Starts the plane: UDP worker threads (stopped when the returned [`Workers`] is dropped)
/// and TCP tasks on the current runtime (stopped when the JoinSet is dropped or aborted).
pub fn spawn(
    core: Arc<SipCore>,
    bound: Bound,
    workers: usize,
    queue: usize,
    max_tcp: usize,
) -> io::Result<(JoinSet<()>, Workers)> {
    let udp: Vec<Arc<std::net::UdpSocket>> = bound.udp.into_iter().map(Arc::new).collect();
    let shared = Arc::new(Shared {
        core,
        udp: udp.first().cloned(),
        conns: Conns::new(max_tcp),
        pool: Pool(ArrayQueue::new(1024)),
    });
    let mut threads = Workers::new();
    for (si, sock) in udp.into_iter().enumerate() {
        for wi in 0..workers.max(1) {
            let (shared, sock, stop) = (shared.clone(), sock.clone(), threads.stop_flag());
            let queue = queue.max(1);
            threads.spawn(format!("sip-udp-{si}-{wi}"), move || {
                udp_worker(&shared, &sock, queue, &stop)
            })?;
        }
    }
    let mut set = JoinSet::new();
    for l in bound.tcp {
        let l = TcpListener::from_std(l)?;
        set.spawn(tcp_acceptor(shared.clone(), l));
    }
    Ok((set, threads))
}

/// Largest answer or forward that goes out in a batch; a larger one is sent on its own.
const SEND_SLOT: usize = 8192;

fn udp_worker(shared: &Shared, sock: &std::net::UdpSocket, queue: usize, stop: &AtomicBool) {
    let mut w = Worker::new();
    let mut rb = RecvBatch::new(BATCH, MAX_MESSAGE);
    let mut sb = SendBatch::new(BATCH, SEND_SLOT);
    let metrics = &shared.core.metrics;
    // Datagrams read back to back since the socket was last found empty.
    let mut burst = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let n = match rb.recv(sock, true) {
            Ok(n) => n,
            // Timeout (time to look at the stop flag), a signal, or an ICMP error of an earlier
            // send surfacing here: none is ours to act on.
            Err(_) => {
                burst = 0;
                continue;
            }
        };
        let now = unix_now();
        for i in 0..n {
            let Some((bytes, src, _)) = rb.get(i) else {
                continue;
            };
            burst += 1;
            let d = if burst > queue {
                shared
                    .core
                    .handle_overloaded(&mut w, bytes, src, Transport::Udp, 0, now)
            } else {
                shared
                    .core
                    .handle(&mut w, bytes, src, Transport::Udp, 0, now)
            };
            match d {
                Dest::Udp(to) => {
                    if sb.is_full() {
                        let failed = sb.flush(sock);
                        metrics.drops.send_failed.inc_by(failed as u64);
                    }
                    if !sb.push(&w.out, to) {
                        shared.send(&w, d, Some(sock));
                    }
                }
                d => shared.send(&w, d, Some(sock)),
            }
        }
        if !sb.is_empty() {
            let failed = sb.flush(sock);
            metrics.drops.send_failed.inc_by(failed as u64);
        }
        if n < BATCH {
            // The batch came back short: the socket ran dry.
            burst = 0;
        }
    }
}

async fn tcp_acceptor(shared: Arc<Shared>, l: TcpListener) {
    loop {
        let (stream, peer) = match l.accept().await {
            Ok(x) => x,
            Err(_) => {
                // EMFILE and friends: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let Some(id) = shared.conns.insert(tx) else {
            shared.core.metrics.tcp_refused.inc();
            drop(stream);
            continue;
        };
        shared.core.metrics.tcp_accepted.inc();
        let _ = stream.set_nodelay(true);
        tokio::spawn(tcp_conn(shared.clone(), stream, peer, id, rx));
    }
}

async fn tcp_conn(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u32,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer_shared = shared.clone();
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            let r = wr.write_all(&b).await;
            writer_shared.pool.put(b);
            if r.is_err() {
                break;
            }
        }
    });
    let mut w = Worker::new();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16_384];
    'conn: loop {
        let n = match tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame(&buf) {
                Ok(Some(f)) => {
                    if f.pings > 0 {
                        // RFC 5626 §3.5.1: answer each CRLFCRLF ping with a CRLF pong.
                        if let Some(c) = shared.conns.get(id) {
                            let mut b = shared.pool.get();
                            for _ in 0..f.pings {
                                b.extend_from_slice(b"\r\n");
                            }
                            let _ = c.tx.try_send(b);
                        }
                    }
                    if f.len > 0 {
                        let msg = &buf[f.skip..f.total()];
                        let d =
                            shared
                                .core
                                .handle(&mut w, msg, peer, Transport::Tcp, id, unix_now());
                        shared.send(&w, d, None);
                    }
                    buf.drain(..f.total());
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised: answer 400 if we can, then close.
                    shared.core.metrics.parse_error(&e);
                    let d = shared.core.handle(
                        &mut w,
                        &buf[..buf.len().min(MAX_MESSAGE)],
                        peer,
                        Transport::Tcp,
                        id,
                        unix_now(),
                    );
                    shared.send(&w, d, None);
                    break 'conn;
                }
            }
        }
    }
    shared.conns.remove(id);
    // The writer ends when its queue is closed (the slot dropped our sender) and drained.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}
