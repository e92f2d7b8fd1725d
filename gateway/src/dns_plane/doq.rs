//! DNS over QUIC (RFC 9250): the DNS plane's third listener, beside UDP and TCP.
//!
//! One quinn server endpoint per `dns.listen_doq` address, ALPN `doq` (RFC 9250 §4.1). Each
//! client-initiated bidirectional stream carries one query with a two-octet length prefix; the
//! answer goes back on the same stream with the prefix, then the stream is finished (§4.2).
//! The decision is [`DnsCore::decide`] with `stream = true` (no UDP size limit, tcp-only rules
//! forwarded), exactly as for TCP.
//!
//! Message IDs (§4.2.1): a DoQ query carries ID 0 and so does its answer. A forwarded query
//! leaves over UDP with a fresh random non-zero ID (RFC 5452 §4.3; UDP cannot do without one)
//! from a socket of its own with a random port, TCP if the answer is truncated (RFC 7766), and
//! the answer's ID is set back to 0. Upstream failure is SERVFAIL, as on the other transports.
//!
//! Bounds: a stream takes at most 65535 + 2 octets (QUIC flow control: a client that sends more
//! breaks the connection's flow control and loses it), 100 streams at once per connection, no
//! unidirectional streams (§4.2: DoQ uses none), 4096 connections (beyond: refused before the
//! handshake), 1024 forwarded queries in flight, a read timeout per stream and an idle timeout
//! per connection. No 0-RTT: the TLS config keeps early data off, so replay (§4.5) cannot arise.
//!
//! Errors (§4.3): a stream that ends before the message its prefix announced, a non-zero
//! Message ID, or a query that does not arrive within the read timeout are protocol errors
//! (§4.3.3): we send STOP_SENDING and RESET_STREAM with DOQ_PROTOCOL_ERROR on that stream and
//! count it. §4.3.3 says a peer SHOULD close the whole connection instead; we deliberately keep
//! it, so one bad stream (one app behind a shared client) does not cost the client its other
//! queries in flight. A query the policy answers with silence (RPZ drop, an unreadable header)
//! is reset with DOQ_INTERNAL_ERROR, the code §4.3.2 gives for "no response will come". A client
//! that cancels (§4.3.1) gets its stream reset with DOQ_REQUEST_CANCELLED.
//!
//! Cost model: DoQ is not the allocation-free path of UDP: each stream allocates its message and
//! answer, and the policy decision runs on one [`DnsWorker`] shared under a mutex per listener
//! set (held only for the synchronous `decide`, never across an await), so `dns.rate_limit`
//! counts a client's DoQ queries across all its connections. Answers are not cached (like TCP).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::unix_now;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, Incoming, RecvStream, SendStream, VarInt};
use rustls::crypto::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{DnsCore, DnsWorker, Step};
use crate::config::{ConfigError, DnsConfig};
use crate::dns::{echo_question_case, is_truncated, parse_query, response_matches, set_id};

/// RFC 9250 §4.1: the ALPN token that selects DoQ in the handshake.
pub const ALPN: &[u8] = b"doq";

/// RFC 9250 §4.3 (registry in §8.4): application error codes for streams and connections.
pub mod code {
    use quinn::VarInt;
    /// No error: closing with nothing to signal.
    pub const DOQ_NO_ERROR: VarInt = VarInt::from_u32(0x0);
    /// The implementation cannot pursue the transaction (§4.3.2).
    pub const DOQ_INTERNAL_ERROR: VarInt = VarInt::from_u32(0x1);
    /// The peer broke the protocol (§4.3.3).
    pub const DOQ_PROTOCOL_ERROR: VarInt = VarInt::from_u32(0x2);
    /// The transaction was cancelled (§4.3.1).
    pub const DOQ_REQUEST_CANCELLED: VarInt = VarInt::from_u32(0x3);
    /// Closing for excessive load.
    pub const DOQ_EXCESSIVE_LOAD: VarInt = VarInt::from_u32(0x4);
    /// No more specific code applies.
    pub const DOQ_UNSPECIFIED_ERROR: VarInt = VarInt::from_u32(0x5);
}

/// The length prefix plus the largest DNS message it can announce (RFC 9250 §4.2).
pub const MAX_STREAM_DATA: u32 = 65_535 + 2;
/// Client streams open at once per connection (QUIC MAX_STREAMS).
pub const MAX_STREAMS: u32 = 100;
/// Connections served at once over all DoQ listeners.
pub const MAX_CONNECTIONS: usize = 4096;
/// Forwarded DoQ queries in flight at once (each holds an upstream socket).
pub const MAX_UPSTREAM_IN_FLIGHT: usize = 1024;
/// A connection with no traffic for this long is closed (QUIC max_idle_timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream must deliver its whole query, and accept its whole answer, within this.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection-level receive window: room for many small queries, not for 100 large ones.
const CONN_RECEIVE_WINDOW: u32 = 512 * 1024;

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads `dns.tls_cert` and `dns.tls_key` (PEM) and checks that the key belongs to the
/// certificate. Errors name the key and say what is wrong with the file.
pub fn load_identity(cert_path: &str, key_path: &str) -> Result<Identity, ConfigError> {
    let e = |key: &str, reason: String| ConfigError {
        key: key.into(),
        reason,
    };
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|x| e(key, format!("cannot read {path:?}: {x}")))
    };
    let cert_pem = read("dns.tls_cert", cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|x| {
            e(
                "dns.tls_cert",
                format!("{cert_path:?} is not valid PEM: {x}"),
            )
        })?;
    if certs.is_empty() {
        return Err(e(
            "dns.tls_cert",
            format!("{cert_path:?} holds no \"BEGIN CERTIFICATE\" block"),
        ));
    }
    let key_pem = read("dns.tls_key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|x| {
        e(
            "dns.tls_key",
            format!("{key_path:?} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {x}"),
        )
    })?;
    let id = Identity { certs, key };
    // Build a TLS config once to catch a key that does not match the certificate.
    tls_config(id.clone_key()).map_err(|x| {
        e(
            "dns.tls_key",
            format!("{key_path:?} cannot be used with the certificate in {cert_path:?}: {x}"),
        )
    })?;
    Ok(id)
}

impl Identity {
    fn clone_key(&self) -> Identity {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A self-signed certificate for "localhost" and `ips` (for tests and trials only: clients must
/// be told to trust it).
pub fn self_signed(ips: &[IpAddr]) -> Result<Identity, ConfigError> {
    let mut names = vec!["localhost".to_string()];
    names.extend(ips.iter().map(|ip| ip.to_string()));
    let ck = rcgen::generate_simple_self_signed(names).map_err(|x| ConfigError {
        key: "dns.tls_cert".into(),
        reason: format!("cannot generate a self-signed certificate: {x}"),
    })?;
    Ok(Identity {
        certs: vec![ck.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
    })
}

/// TLS 1.3 only (QUIC requires it, RFC 9001 §4.2), ALPN `doq`, no client certificates, no
/// early data.
fn tls_config(id: Identity) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(id.certs, id.key)?;
    c.alpn_protocols = vec![ALPN.to_vec()];
    Ok(c)
}

/// The QUIC server configuration for `dns.listen_doq`: the configured certificate, or a
/// self-signed one for "localhost" and the listen addresses (logged as not for production).
pub fn server_config(
    d: &DnsConfig,
    listen: &[SocketAddr],
) -> Result<quinn::ServerConfig, ConfigError> {
    let id = if d.tls_cert.is_empty() && d.tls_key.is_empty() {
        let ips: Vec<IpAddr> = listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        tracing::warn!(
            names = ?ips,
            "dns.tls_cert is not set: DNS-over-QUIC uses a self-signed certificate generated at start; not for production"
        );
        self_signed(&ips)?
    } else {
        load_identity(&d.tls_cert, &d.tls_key)?
    };
    let cfg_err = |reason: String| ConfigError {
        key: "dns.tls_cert".into(),
        reason,
    };
    let tls = tls_config(id).map_err(|x| cfg_err(format!("unusable for TLS 1.3: {x}")))?;
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|x| cfg_err(format!("unusable for QUIC: {x}")))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        // RFC 9250 §4.2: queries use client-initiated bidirectional streams only.
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(MAX_STREAM_DATA))
        .receive_window(VarInt::from_u32(CONN_RECEIVE_WINDOW))
        .send_window(u64::from(MAX_STREAMS) * u64::from(MAX_STREAM_DATA))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(VarInt::from_u32(
            IDLE_TIMEOUT.as_millis() as u32,
        ))))
        .datagram_receive_buffer_size(None);
    sc.transport_config(Arc::new(t));
    Ok(sc)
}

/// Binds one endpoint per address (port 0 allowed; read the port from `local_addr`). Needs a
/// tokio runtime. Errors name the address.
pub fn bind(addrs: &[SocketAddr], cfg: &quinn::ServerConfig) -> io::Result<Vec<Endpoint>> {
    addrs
        .iter()
        .map(|a| {
            Endpoint::server(cfg.clone(), *a).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind DNS-over-QUIC (UDP) {a}: {e}"),
                )
            })
        })
        .collect()
}

/// What the DoQ listeners share.
struct Plane {
    core: Arc<DnsCore>,
    /// Policy state (rate limits, scratch) for all DoQ queries; see the module's cost model.
    worker: Mutex<DnsWorker>,
    connections: Arc<Semaphore>,
    upstream_slots: Semaphore,
    random: &'static dyn SecureRandom,
    rr: AtomicUsize,
}

/// Starts serving on `endpoints`. Dropping the returned set closes them (DOQ_NO_ERROR) and
/// with them every connection.
pub fn spawn(core: Arc<DnsCore>, endpoints: Vec<Endpoint>) -> JoinSet<()> {
    let plane = Arc::new(Plane {
        core,
        worker: Mutex::new(DnsWorker::new()),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        upstream_slots: Semaphore::new(MAX_UPSTREAM_IN_FLIGHT),
        random: rustls::crypto::ring::default_provider().secure_random,
        rr: AtomicUsize::new(0),
    });
    let mut set = JoinSet::new();
    for ep in endpoints {
        set.spawn(accept_loop(plane.clone(), ep));
    }
    set
}

/// Closes the endpoint when the accept task ends or is aborted (the gateway is dropped).
struct CloseOnDrop(Endpoint);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(code::DOQ_NO_ERROR, b"shutting down");
    }
}

async fn accept_loop(p: Arc<Plane>, ep: Endpoint) {
    let ep = CloseOnDrop(ep);
    while let Some(incoming) = ep.0.accept().await {
        match p.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(p.clone(), incoming, permit));
            }
            // Over the connection bound: refused before the handshake costs us anything.
            Err(_) => incoming.refuse(),
        }
    }
}

async fn connection(p: Arc<Plane>, incoming: Incoming, _permit: OwnedSemaphorePermit) {
    // The handshake is bounded by the idle timeout.
    let Ok(connecting) = incoming.accept() else {
        return;
    };
    let Ok(conn) = connecting.await else {
        return;
    };
    let client = conn.remote_address().ip();
    let mut streams = JoinSet::new();
    // Ends when the client closes, the idle timeout fires or the endpoint closes; the stream
    // tasks still running are aborted with it.
    while let Ok((send, recv)) = conn.accept_bi().await {
        streams.spawn(stream(p.clone(), client, send, recv));
        while streams.try_join_next().is_some() {}
    }
}

/// Why a stream's query could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ReadFail {
    /// RFC 9250 §4.3.3: FIN before the announced message was complete.
    Incomplete,
    /// The client reset its side (§4.3.1 cancellation) or the connection is gone.
    Gone,
}

/// Reads one length-prefixed message (RFC 9250 §4.2). Does not wait for the FIN: the answer
/// can leave as soon as the message is complete.
async fn read_query(recv: &mut RecvStream) -> Result<Vec<u8>, ReadFail> {
    let fail = |e: quinn::ReadExactError| match e {
        quinn::ReadExactError::FinishedEarly(_) => ReadFail::Incomplete,
        quinn::ReadExactError::ReadError(_) => ReadFail::Gone,
    };
    let mut len = [0u8; 2];
    recv.read_exact(&mut len).await.map_err(fail)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    recv.read_exact(&mut msg).await.map_err(fail)?;
    Ok(msg)
}

/// RFC 9250 §4.2.1: the Message ID of a DoQ query MUST be 0; anything else is a protocol
/// error (§4.3.3). A message too short to have an ID is left to `decide`.
fn id_is_valid(msg: &[u8]) -> bool {
    msg.len() < 2 || msg[..2] == [0, 0]
}

fn abort(send: &mut SendStream, recv: &mut RecvStream, code: VarInt) {
    let _ = recv.stop(code);
    let _ = send.reset(code);
}

async fn stream(p: Arc<Plane>, client: IpAddr, mut send: SendStream, mut recv: RecvStream) {
    let m = &p.core.metrics;
    let msg = match tokio::time::timeout(STREAM_TIMEOUT, read_query(&mut recv)).await {
        Ok(Ok(msg)) => msg,
        Ok(Err(ReadFail::Gone)) => {
            abort(&mut send, &mut recv, code::DOQ_REQUEST_CANCELLED);
            return;
        }
        // An incomplete message, or one that never completes: §4.3.3.
        Ok(Err(ReadFail::Incomplete)) | Err(_) => {
            m.doq_protocol_errors.inc();
            abort(&mut send, &mut recv, code::DOQ_PROTOCOL_ERROR);
            return;
        }
    };
    m.doq_queries.inc();
    if !id_is_valid(&msg) {
        m.doq_protocol_errors.inc();
        abort(&mut send, &mut recv, code::DOQ_PROTOCOL_ERROR);
        return;
    }
    // The lock is held for the synchronous decision only, never across an await.
    let decided = {
        let mut w = p.worker.lock().unwrap_or_else(PoisonError::into_inner);
        match p.core.decide(&mut w, &msg, client, true, unix_now()) {
            Step::Reply => Some(Some(w.out.clone())),
            Step::Forward => Some(None),
            Step::Drop => None,
        }
    };
    let answer = match decided {
        Some(Some(reply)) => reply,
        Some(None) => forward(&p, &msg).await,
        None => {
            abort(&mut send, &mut recv, code::DOQ_INTERNAL_ERROR);
            return;
        }
    };
    let Ok(n) = u16::try_from(answer.len()) else {
        abort(&mut send, &mut recv, code::DOQ_INTERNAL_ERROR);
        return;
    };
    let mut framed = Vec::with_capacity(answer.len() + 2);
    framed.extend_from_slice(&n.to_be_bytes());
    framed.extend_from_slice(&answer);
    match tokio::time::timeout(STREAM_TIMEOUT, send.write_all(&framed)).await {
        Ok(Ok(())) => {
            // RFC 9250 §4.2: FIN after the (only) response.
            let _ = send.finish();
        }
        Ok(Err(_)) => {} // stopped by the client or connection lost: nothing left to say
        Err(_) => {
            // The client does not take its answer (no flow-control credit): give up on it.
            let _ = send.reset(code::DOQ_UNSPECIFIED_ERROR);
        }
    }
}

/// Forwards `msg` (ID 0) upstream and returns the answer with ID 0, or SERVFAIL.
async fn forward(p: &Plane, msg: &[u8]) -> Vec<u8> {
    let core = &p.core;
    let mut out = Vec::new();
    let Ok(q) = parse_query(msg) else {
        return out; // decide forwards only what parses
    };
    core.metrics.forwarded.inc();
    match exchange(p, msg).await {
        Ok(mut resp) => {
            // RFC 9250 §4.2.1: an answer relayed onto DoQ carries ID 0; the question as asked.
            set_id(&mut resp, 0);
            echo_question_case(&q, &mut resp);
            resp
        }
        Err(e) => {
            if e.kind() == io::ErrorKind::TimedOut {
                core.metrics.upstream_timeouts.inc();
            } else {
                core.metrics.upstream_errors.inc();
            }
            tracing::trace!(error = %e, "DoQ upstream query failed");
            core.servfail(&q, true, &mut out);
            out
        }
    }
}

/// A random non-zero ID for the upstream query (RFC 5452 §4.3; RFC 9250 §4.2.1: "generated
/// according to the rules of the protocol in use").
fn upstream_id(random: &dyn SecureRandom) -> io::Result<u16> {
    let mut b = [0u8; 2];
    for _ in 0..16 {
        random
            .fill(&mut b)
            .map_err(|_| io::Error::other("no randomness for a query ID"))?;
        let id = u16::from_be_bytes(b);
        if id != 0 {
            return Ok(id);
        }
    }
    Err(io::Error::other("no non-zero query ID"))
}

fn any_addr_for(a: &SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(ip) if ip.is_loopback() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// One query over UDP from a fresh socket (random port, RFC 5452 §9.2), TCP if truncated.
async fn exchange(p: &Plane, msg: &[u8]) -> io::Result<Vec<u8>> {
    let core = &p.core;
    let limit = Duration::from_millis(core.timeout_ms);
    let ix = p.rr.fetch_add(1, Ordering::Relaxed);
    let addr = *core
        .upstreams
        .get(ix % core.upstreams.len().max(1))
        .ok_or_else(|| io::Error::other("no upstream resolver"))?;
    let mut query = msg.to_vec();
    set_id(&mut query, upstream_id(p.random)?);
    let q = parse_query(&query)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let udp = async {
        let _slot = p
            .upstream_slots
            .acquire()
            .await
            .map_err(|_| io::Error::other("upstream slots closed"))?;
        let sock = UdpSocket::bind(any_addr_for(&addr)).await?;
        let sent = Instant::now();
        sock.send_to(&query, addr).await?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            // RFC 5452 §9.1: only from the server asked, with our ID and our question.
            if from == addr && response_matches(&q, &buf[..n]) {
                core.metrics
                    .upstream_latency
                    .observe_ns(sent.elapsed().as_nanos() as u64);
                buf.truncate(n);
                return Ok::<Vec<u8>, io::Error>(buf);
            }
        }
    };
    let resp = tokio::time::timeout(limit, udp)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream timed out"))??;
    if is_truncated(&resp) {
        core.metrics.tcp_retries.inc();
        let resp = super::net::tcp_exchange(addr, &query, limit).await?;
        if !response_matches(&q, &resp) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "upstream TCP answer does not match the query",
            ));
        }
        return Ok(resp);
    }
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_id_zero_is_a_valid_doq_query() {
        assert!(id_is_valid(&[0, 0, 1, 0]));
        assert!(!id_is_valid(&[0x12, 0x34, 1, 0]));
        assert!(!id_is_valid(&[0, 1]));
        // Too short for an ID: decide answers or drops it.
        assert!(id_is_valid(&[]));
        assert!(id_is_valid(&[7]));
    }

    #[test]
    fn upstream_ids_are_never_zero() {
        let r = rustls::crypto::ring::default_provider().secure_random;
        let ids: Vec<u16> = (0..200).map(|_| upstream_id(r).unwrap()).collect();
        assert!(ids.iter().all(|&i| i != 0));
        // Random, not a counter: 200 draws from 65535 values are not all equal.
        assert!(ids.iter().any(|&i| i != ids[0]));
    }

    #[test]
    fn self_signed_identity_makes_a_doq_server_config() {
        let id = self_signed(&["127.0.0.1".parse().unwrap()]).unwrap();
        let c = tls_config(id).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"doq".to_vec()]);
        assert_eq!(c.max_early_data_size, 0, "no 0-RTT");
        let d = DnsConfig::default();
        server_config(&d, &["127.0.0.1:0".parse().unwrap()]).unwrap();
    }

    fn temp(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("dragnet-doq-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn pem_files_are_checked_and_errors_name_the_key() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = temp("a.crt", &a.cert.pem());
        let key = temp("a.key", &a.key_pair.serialize_pem());
        let other_key = temp("b.key", &b.key_pair.serialize_pem());
        let junk = temp("junk.pem", "not pem at all\n");
        let id = load_identity(&cert, &key).unwrap();
        assert_eq!(id.certs.len(), 1);

        let e = load_identity(&cert, &other_key).unwrap_err();
        assert_eq!(e.key, "dns.tls_key", "{e}");
        let e = load_identity(&junk, &key).unwrap_err();
        assert_eq!(e.key, "dns.tls_cert", "{e}");
        assert!(e.reason.contains("CERTIFICATE"), "{e}");
        let e = load_identity(&cert, &junk).unwrap_err();
        assert_eq!(e.key, "dns.tls_key", "{e}");
        let e = load_identity("/nonexistent/dragnet.crt", &key).unwrap_err();
        assert_eq!(e.key, "dns.tls_cert", "{e}");
        assert!(e.reason.contains("cannot read"), "{e}");
    }
}
