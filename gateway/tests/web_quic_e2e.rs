//! The QUIC relay end to end, on real sockets on 127.0.0.1: a quinn client → the relay → a
//! quinn server with an rcgen certificate for one allowed and one blocked name of the example
//! rule set. An allowed name connects and echoes a stream through the relay; a blocked one never
//! reaches the server, and the client's handshake times out (a short idle timeout keeps the test
//! quick).
//!
//! Every wait has a deadline; nothing sleeps.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dragnet_gateway::store::{Plane, Store};
use dragnet_gateway::web::quic_relay::{serve, DropReason, QuicRelayConfig, QuicRelayMetrics};
use dragnet_rules::Action;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UdpSocket;

const DEADLINE: Duration = Duration::from_secs(10);
/// Not in the example rules: allowed.
const ALLOWED: &str = "www.notevil.example";
/// Blocked by the example rules (examples/rules/phishing.adblock: `||fake-bank-login.example^`).
const BLOCKED: &str = "secure.fake-bank-login.example";

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The origin: a quinn server that echoes every bidirectional stream. Returns its address and
/// a count of the connections it accepted.
fn origin(cert: &CertificateDer<'static>, key: Vec<u8>) -> (quinn::Endpoint, Arc<AtomicUsize>) {
    let tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().unwrap()).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (server, count) = (ep.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let Ok(data) = recv.read_to_end(1 << 16).await else {
                        return;
                    };
                    let _ = send.write_all(&data).await;
                    let _ = send.finish();
                }
            });
        }
    });
    (ep, accepted)
}

async fn relay(upstream: SocketAddr) -> (SocketAddr, Arc<QuicRelayMetrics>, Arc<Store>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let cfg = QuicRelayConfig {
        enabled: true,
        listen: addr.to_string(),
        upstream: upstream.to_string(),
        ..QuicRelayConfig::default()
    };
    let store = Arc::new(Store::new(dragnet_gateway::examples::engine(0).unwrap(), 0));
    let metrics = Arc::new(QuicRelayMetrics::default());
    tokio::spawn(serve(sock, store.clone(), Arc::new(cfg), metrics.clone()));
    (addr, metrics, store)
}

/// A client endpoint of its own (its own 4-tuple) that trusts `cert`, with a 1-second idle
/// timeout so that a blocked handshake fails quickly.
fn client(cert: &CertificateDer<'static>) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(1).try_into().unwrap()));
    cc.transport_config(Arc::new(t));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(cc);
    ep
}

fn web_hits(store: &Store, action: &str) -> u64 {
    store
        .hit_totals()
        .iter()
        .filter(|(p, a, ..)| *p == Plane::Web && *a == action)
        .map(|t| t.3)
        .sum()
}

#[tokio::test]
async fn allowed_name_connects_and_exchanges_a_stream() {
    let ck = rcgen::generate_simple_self_signed(vec![ALLOWED.into(), BLOCKED.into()]).unwrap();
    let cert = ck.cert.der().clone();
    let (server, accepted) = origin(&cert, ck.key_pair.serialize_der());
    let (relay, m, store) = relay(server.local_addr().unwrap()).await;
    let ep = client(&cert);
    let conn = within("handshake", ep.connect(relay, ALLOWED).unwrap())
        .await
        .unwrap();
    let (mut send, mut recv) = within("open stream", conn.open_bi()).await.unwrap();
    send.write_all(b"hello through the relay").await.unwrap();
    send.finish().unwrap();
    let echo = within("echo", recv.read_to_end(1 << 16)).await.unwrap();
    assert_eq!(echo, b"hello through the relay");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(m.verdicts.get(Action::Allow), 1);
    assert_eq!(m.verdicts.get(Action::Block), 0);
    assert_eq!(m.flows_opened.get(), 1);
    assert_eq!(m.flows_open.get(), 1);
    assert!(m.bytes_to_upstream.get() >= 1200);
    assert!(
        m.bytes_to_client.get() > 1000,
        "the server's flight came back"
    );
    assert_eq!(m.dropped(DropReason::Blocked), 0);
    // The client's later Initials address the server's connection ID (RFC 9000 §7.2): they
    // follow the flow's verdict and are not taken for new connection attempts.
    assert_eq!(m.reclassified.get(), 0);
    assert_eq!(web_hits(&store, "allow"), 1);
    conn.close(quinn::VarInt::from_u32(0), b"done");
}

#[tokio::test]
async fn blocked_name_never_reaches_the_server() {
    let ck = rcgen::generate_simple_self_signed(vec![ALLOWED.into(), BLOCKED.into()]).unwrap();
    let cert = ck.cert.der().clone();
    let (server, accepted) = origin(&cert, ck.key_pair.serialize_der());
    let (relay, m, store) = relay(server.local_addr().unwrap()).await;
    let ep = client(&cert);
    let r = within("handshake failure", ep.connect(relay, BLOCKED).unwrap()).await;
    assert!(
        matches!(r, Err(quinn::ConnectionError::TimedOut)),
        "expected a handshake timeout, got {r:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(m.verdicts.get(Action::Block), 1);
    assert!(m.dropped(DropReason::Blocked) >= 1);
    assert_eq!(m.bytes_to_upstream.get(), 0, "nothing was forwarded");
    assert_eq!(web_hits(&store, "block"), 1);

    // The same relay still serves an allowed name (another client, another flow).
    let ep = client(&cert);
    let conn = within("handshake", ep.connect(relay, ALLOWED).unwrap())
        .await
        .unwrap();
    let (mut send, mut recv) = within("open stream", conn.open_bi()).await.unwrap();
    send.write_all(b"x").await.unwrap();
    send.finish().unwrap();
    assert_eq!(within("echo", recv.read_to_end(16)).await.unwrap(), b"x");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(m.verdicts.get(Action::Allow), 1);
    conn.close(quinn::VarInt::from_u32(0), b"done");
}
