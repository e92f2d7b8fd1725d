//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` (Linux).
//!
//! A loaded plane pays most of its CPU in the kernel, and a good part of that is the fixed cost
//! of a system call and of a wake-up per datagram. Reading up to [`BATCH`] datagrams with one
//! `recvmmsg` (MSG_WAITFORONE: block for the first, take what else is queued) and writing the
//! answers of a batch with one `sendmmsg` amortises both; under light load a batch is one
//! datagram and nothing is lost. All memory is allocated once per worker: no allocation per
//! datagram. This is the only module of the gateway with `unsafe` code: the two system calls
//! and the conversions between `sockaddr_storage` and [`SocketAddr`]; each block says why it
//! is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams read or written with one system call.
pub const BATCH: usize = 32;

fn to_storage(a: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in
            // (that is its purpose, POSIX <sys/socket.h>); we write a fully initialised value.
            let sin =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            *sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            *sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote an AF_INET address of at least sockaddr_in's size into
            // storage that is large and aligned enough for it.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 / sockaddr_in6.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Points one message header at its buffer and address (`name_len` 0: no address, for a
/// connected socket). The pointers stay valid while the batch's boxed buffers live and are not
/// resized, which they never are; they are rebuilt before every call.
fn point(
    h: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    buf: &mut [u8],
    addr: &mut libc::sockaddr_storage,
    name_len: libc::socklen_t,
) {
    *iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    h.msg_hdr.msg_name = if name_len == 0 {
        std::ptr::null_mut()
    } else {
        (addr as *mut libc::sockaddr_storage).cast()
    };
    h.msg_hdr.msg_namelen = name_len;
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_control = std::ptr::null_mut();
    h.msg_hdr.msg_controllen = 0;
    h.msg_hdr.msg_flags = 0;
    h.msg_len = 0;
}

/// Buffers for one `recvmmsg`: `n` datagrams of at most `size` bytes each.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    size: usize,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    got: usize,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` point only into this value's own heap
// buffers (rebuilt before every call), never into another thread's memory.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.hdrs.len())
            .field("size", &self.size)
            .field("got", &self.got)
            .finish()
    }
}

impl RecvBatch {
    /// `n` slots (at least 1, at most [`BATCH`]) of `size` bytes. A datagram longer than `size`
    /// is reported truncated by [`RecvBatch::get`].
    pub fn new(n: usize, size: usize) -> RecvBatch {
        let n = n.clamp(1, BATCH);
        RecvBatch {
            bufs: vec![0u8; n * size].into_boxed_slice(),
            size,
            // SAFETY: all-zero is a valid value of these plain C structs (integers and null
            // pointers).
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            got: 0,
        }
    }

    /// Reads up to the batch size. `wait`: block (up to the socket's SO_RCVTIMEO) for the first
    /// datagram, then take only what is already queued; else never block. Returns how many
    /// were read; `WouldBlock`/`TimedOut` when none were there.
    pub fn recv(&mut self, fd: &impl AsRawFd, wait: bool) -> io::Result<usize> {
        self.got = 0;
        let storage = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for i in 0..self.hdrs.len() {
            let slot = &mut self.bufs[i * self.size..(i + 1) * self.size];
            point(
                &mut self.hdrs[i],
                &mut self.iovs[i],
                slot,
                &mut self.addrs[i],
                storage,
            );
        }
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        let fd: RawFd = fd.as_raw_fd();
        // SAFETY: every header points at live buffers owned by `self` of the lengths given;
        // the kernel writes at most those lengths. vlen = hdrs.len().
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.got = r as usize;
        Ok(self.got)
    }

    /// Datagrams read by the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.got
    }

    pub fn is_empty(&self) -> bool {
        self.got == 0
    }

    /// Datagram `i`: its bytes, its source, and whether it was longer than the slot
    /// (MSG_TRUNC). `None` for an unknown address family.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        if i >= self.got {
            return None;
        }
        let h = &self.hdrs[i];
        let n = (h.msg_len as usize).min(self.size);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let src = from_storage(&self.addrs[i], h.msg_hdr.msg_namelen)?;
        Some((&self.bufs[i * self.size..i * self.size + n], src, truncated))
    }
}

/// Datagrams queued for one `sendmmsg`.
pub struct SendBatch {
    bufs: Box<[u8]>,
    size: usize,
    lens: Box<[usize]>,
    addrs: Box<[libc::sockaddr_storage]>,
    addr_lens: Box<[libc::socklen_t]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    queued: usize,
}

// SAFETY: as for RecvBatch: pointers only into this value's own buffers, rebuilt per call.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("slots", &self.hdrs.len())
            .field("queued", &self.queued)
            .finish()
    }
}

impl SendBatch {
    pub fn new(n: usize, size: usize) -> SendBatch {
        let n = n.clamp(1, BATCH);
        SendBatch {
            bufs: vec![0u8; n * size].into_boxed_slice(),
            size,
            lens: vec![0; n].into_boxed_slice(),
            // SAFETY: all-zero is valid for these plain C structs.
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            addr_lens: vec![0; n].into_boxed_slice(),
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            queued: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a copy of `bytes` for `to`. False when the batch is full (flush first) or the
    /// datagram is larger than a slot (send it on its own).
    pub fn push(&mut self, bytes: &[u8], to: SocketAddr) -> bool {
        if self.is_full() || bytes.len() > self.size {
            return false;
        }
        let i = self.queued;
        self.bufs[i * self.size..i * self.size + bytes.len()].copy_from_slice(bytes);
        self.lens[i] = bytes.len();
        self.addr_lens[i] = to_storage(&to, &mut self.addrs[i]);
        self.queued += 1;
        true
    }

    /// Queues a copy of `bytes` for a connected socket's peer (no address: the kernel uses
    /// the route it cached at `connect`, one lookup fewer per datagram).
    pub fn push_connected(&mut self, bytes: &[u8]) -> bool {
        if self.is_full() || bytes.len() > self.size {
            return false;
        }
        let i = self.queued;
        self.bufs[i * self.size..i * self.size + bytes.len()].copy_from_slice(bytes);
        self.lens[i] = bytes.len();
        self.addr_lens[i] = 0;
        self.queued += 1;
        true
    }

    /// Sends everything queued; returns how many datagrams could not be sent (their errors
    /// are not retried: UDP is best effort, the sender retransmits). The batch is empty after.
    pub fn flush(&mut self, fd: &impl AsRawFd) -> usize {
        let total = self.queued;
        for i in 0..total {
            let start = i * self.size;
            let slot = &mut self.bufs[start..start + self.lens[i]];
            point(
                &mut self.hdrs[i],
                &mut self.iovs[i],
                slot,
                &mut self.addrs[i],
                self.addr_lens[i],
            );
        }
        let fd = fd.as_raw_fd();
        let mut sent = 0;
        let mut failed = 0;
        while sent < total {
            // SAFETY: headers sent..total point at live buffers owned by `self`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(sent),
                    (total - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The datagram at `sent` failed (e.g. no route, or a full buffer on a
            // non-blocking socket): count it and go on with the rest.
            failed += 1;
            sent += 1;
        }
        self.queued = 0;
        failed
    }
}

/// Waits until one of `fds` is readable, or `timeout` passes (at most 16 descriptors; the
/// rest are not watched). Interrupted waits return early; the caller just tries again.
pub fn wait_readable(fds: &[RawFd], timeout: std::time::Duration) {
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 16];
    let n = fds.len().min(p.len());
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = *fd;
        slot.events = libc::POLLIN;
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is a live array of `n` initialised pollfd values.
    unsafe {
        libc::poll(p.as_mut_ptr(), n as libc::nfds_t, ms);
    }
}

/// How long a blocked worker waits for a datagram before it looks at its stop flag: the bound
/// on how long a stopped plane keeps its threads (and so its sockets).
pub const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Prepares a UDP socket for worker threads: blocking, with [`STOP_POLL`] as its receive
/// timeout, and a short send timeout so that a full send buffer cannot stall a worker.
pub fn blocking(sock: &std::net::UdpSocket) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(STOP_POLL))?;
    sock.set_write_timeout(Some(std::time::Duration::from_millis(50)))
}

/// A plane's worker threads: dropping this asks them to stop and waits for them (at most
/// about [`STOP_POLL`]), so that their sockets are closed when it returns.
#[derive(Debug, Default)]
pub struct Workers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub fn new() -> Workers {
        Workers::default()
    }

    /// The flag a worker polls between batches.
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }

    /// Starts a named worker thread.
    pub fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        self.handles
            .push(std::thread::Builder::new().name(name).spawn(f)?);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn addresses_round_trip() {
        for a in [
            "127.0.0.1:5060".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap(),
            "[fe80::1%7]:5061".parse().unwrap(),
            "203.0.113.9:65535".parse().unwrap(),
        ] {
            // SAFETY: all-zero is valid for sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            let len = to_storage(&a, &mut s);
            assert_eq!(from_storage(&s, len), Some(a));
        }
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = b.local_addr().unwrap();
        let mut sb = SendBatch::new(8, 64);
        for i in 0..8u8 {
            assert!(sb.push(&[i; 10], to));
        }
        assert!(!sb.push(b"x", to), "a full batch refuses more");
        assert!(!SendBatch::new(1, 4).push(b"too long", to));
        // A connected socket's datagrams carry no address.
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.connect(to).unwrap();
        let mut cb = SendBatch::new(2, 64);
        assert!(cb.push_connected(b"via connect"));
        assert_eq!(cb.flush(&c), 0);
        let mut one = [0u8; 64];
        let (n, src) = b.recv_from(&mut one).unwrap();
        assert_eq!(
            (&one[..n], src),
            (&b"via connect"[..], c.local_addr().unwrap())
        );
        assert_eq!(sb.flush(&a), 0);
        assert!(sb.is_empty());
        let mut rb = RecvBatch::new(4, 8);
        let mut seen = Vec::new();
        while seen.len() < 8 {
            let n = rb.recv(&b, true).unwrap();
            assert!((1..=4).contains(&n));
            for i in 0..n {
                let (bytes, src, trunc) = rb.get(i).unwrap();
                assert_eq!(src, a.local_addr().unwrap());
                assert!(trunc, "10 bytes into an 8-byte slot are reported truncated");
                assert_eq!(bytes.len(), 8);
                seen.push(bytes[0]);
            }
        }
        assert_eq!(seen, (0..8).collect::<Vec<u8>>());
        b.set_nonblocking(true).unwrap();
        let e = rb.recv(&b, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(rb.is_empty() && rb.get(0).is_none());
    }
}
