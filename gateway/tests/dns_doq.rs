//! DNS-over-QUIC (RFC 9250) end to end: a real gateway with DoQ on 127.0.0.1:0, a fake UDP
//! resolver upstream, and a quinn client that trusts the test's own certificate.
//!
//! Every wait has a deadline; nothing sleeps.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dragnet_gateway::config::Config;
use dragnet_gateway::run::Gateway;
use rustls::pki_types::CertificateDer;
use tokio::net::UdpSocket;

const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// A query for `name`, type A, with Message ID `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The fake resolver: every question gets one A record, 192.0.2.1. Records the IDs it saw.
async fn fake_resolver(sock: UdpSocket, ids: Arc<Mutex<Vec<u16>>>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let q = &buf[..n];
        ids.lock().unwrap().push(u16::from_be_bytes([q[0], q[1]]));
        // Header and question only (drop any OPT), then the answer.
        let mut end = 12;
        while q[end] != 0 {
            end += usize::from(q[end]) + 1;
        }
        end += 1 + 4;
        let mut r = q[..end].to_vec();
        r[2] = 0x81; // QR, RD
        r[3] = 0x80; // RA, NOERROR
        r[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let _ = sock.send_to(&r, from).await;
    }
}

struct Pki {
    dir: PathBuf,
    cert: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("dragnet-doq-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("doq.crt"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("doq.key"), ck.key_pair.serialize_pem()).unwrap();
        Pki {
            dir,
            cert: ck.cert.der().clone(),
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn client(pki: &Pki, server: SocketAddr) -> (quinn::Endpoint, quinn::Connection) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.cert.clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"doq".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = within("handshake", ep.connect(server, "localhost").unwrap())
        .await
        .unwrap();
    (ep, conn)
}

/// Sends `msg` framed on a new stream, finishes it, and reads the framed answer.
async fn ask(conn: &quinn::Connection, msg: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = within("open stream", conn.open_bi()).await.unwrap();
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    send.write_all(&framed).await.unwrap();
    send.finish().unwrap();
    let all = within("answer", recv.read_to_end(65_537)).await.unwrap();
    let n = usize::from(u16::from_be_bytes([all[0], all[1]]));
    assert_eq!(all.len(), n + 2, "one length-prefixed answer, then FIN");
    all[2..].to_vec()
}

fn rcode(a: &[u8]) -> u8 {
    a[3] & 0x0f
}

fn id(a: &[u8]) -> u16 {
    u16::from_be_bytes([a[0], a[1]])
}

#[tokio::test(flavor = "current_thread")]
async fn doq_answers_policy_and_forwards_with_id_zero() {
    let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    let resolver = tokio::spawn(fake_resolver(up, seen_ids.clone()));
    let pki = Pki::new();

    let mut cfg = Config::embedded().unwrap();
    cfg.sip.enabled = false;
    cfg.admin.listen = String::new();
    cfg.check.enabled = false;
    cfg.web.http.enabled = false;
    cfg.dns.listen_udp = vec![];
    cfg.dns.listen_tcp = vec![];
    cfg.dns.listen_doq = vec!["127.0.0.1:0".into()];
    cfg.dns.tls_cert = pki.dir.join("doq.crt").to_string_lossy().into_owned();
    cfg.dns.tls_key = pki.dir.join("doq.key").to_string_lossy().into_owned();
    cfg.dns.upstreams = vec![up_addr.to_string()];
    let gw = Gateway::start(&cfg, dragnet_gateway::examples::engine(0).unwrap())
        .await
        .unwrap();
    assert_eq!(gw.doq_addrs.len(), 1);
    let server = gw.doq_addrs[0];
    assert_ne!(server.port(), 0, "the bound port is reported");
    let (_ep, conn) = client(&pki, server).await;

    // A listed name: answered by policy (NXDOMAIN), ID 0 kept.
    let a = ask(&conn, &query(0, "login.evil.example")).await;
    assert_eq!((id(&a), rcode(&a)), (0, 3));
    assert!(seen_ids.lock().unwrap().is_empty(), "not forwarded");

    // An unlisted name: forwarded with a random non-zero ID, answered with ID 0.
    let a = ask(&conn, &query(0, "notevil.example")).await;
    assert_eq!((id(&a), rcode(&a)), (0, 0));
    assert_eq!(&a[a.len() - 4..], &[192, 0, 2, 1]);
    assert!(a.windows(16).any(|w| w == b"\x07notevil\x07example"));
    let up_ids = seen_ids.lock().unwrap().clone();
    assert_eq!(up_ids.len(), 1);
    assert_ne!(up_ids[0], 0, "RFC 9250 §4.2.1: a fresh ID upstream");

    // Two queries on two streams of the one connection, at once.
    let (qx, qy) = (query(0, "evil.example"), query(0, "www.notevil.example"));
    let (x, y) = tokio::join!(ask(&conn, &qx), ask(&conn, &qy));
    assert_eq!((id(&x), rcode(&x)), (0, 3));
    assert_eq!((id(&y), rcode(&y)), (0, 0));
    assert_eq!(&y[y.len() - 4..], &[192, 0, 2, 1]);

    // A stream whose message ends before its length prefix says: no answer, the stream is
    // reset with DOQ_PROTOCOL_ERROR, and the connection carries on.
    let (mut send, mut recv) = within("open stream", conn.open_bi()).await.unwrap();
    send.write_all(&[0, 40, 0, 0, 1, 0, 0]).await.unwrap();
    send.finish().unwrap();
    let r = within("reset", recv.read_to_end(65_537)).await;
    assert_eq!(
        r.unwrap_err(),
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(quinn::VarInt::from_u32(2)))
    );
    // A non-zero Message ID is a protocol error too (§4.3.3).
    let (mut send, mut recv) = within("open stream", conn.open_bi()).await.unwrap();
    let q = query(0x1234, "evil.example");
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    send.write_all(&framed).await.unwrap();
    send.finish().unwrap();
    assert!(within("reset", recv.read_to_end(65_537)).await.is_err());

    let a = ask(&conn, &query(0, "login.evil.example")).await;
    assert_eq!((id(&a), rcode(&a)), (0, 3), "the connection survived");
    assert!(conn.close_reason().is_none());

    let m = &gw.metrics.dns;
    assert_eq!(m.doq_queries.get(), 6, "complete messages read");
    assert_eq!(m.doq_protocol_errors.get(), 2);
    assert_eq!(m.forwarded.get(), 2);
    conn.close(quinn::VarInt::from_u32(0), b"");
    resolver.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_self_signed_certificate_is_made_when_none_is_configured() {
    let mut cfg = Config::embedded().unwrap();
    cfg.sip.enabled = false;
    cfg.admin.listen = String::new();
    cfg.check.enabled = false;
    cfg.web.http.enabled = false;
    cfg.dns.listen_udp = vec![];
    cfg.dns.listen_tcp = vec![];
    cfg.dns.listen_doq = vec!["127.0.0.1:0".into()];
    let gw = Gateway::start(&cfg, dragnet_gateway::examples::engine(0).unwrap())
        .await
        .unwrap();
    assert_eq!(gw.doq_addrs.len(), 1);
    assert!(gw.dns_addrs.is_empty(), "DoQ alone is a valid DNS plane");
}
