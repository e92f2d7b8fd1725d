//! End to end: a real quinn client's first Initial datagrams, caught on a plain UDP socket
//! (nothing answers), give the name the client asked for.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use dragnet_gateway::web::quic::{peek_initial, InitialSniffer, QuicError, Version};

async fn sniff_quinn(
    server_name: &str,
    alpn: Vec<Vec<u8>>,
) -> (usize, dragnet_gateway::web::tls::HelloInfo) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = sock.local_addr().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = alpn;
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    let _connecting = endpoint.connect(server, server_name).unwrap();

    let mut sniffer = InitialSniffer::new();
    let mut buf = [0u8; 65536];
    let mut datagrams = 0;
    loop {
        // A guard against a hang, not a timing assertion.
        let (n, _) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf))
            .await
            .expect("quinn sent no (further) Initial datagram")
            .unwrap();
        datagrams += 1;
        let d = &buf[..n];
        let h = peek_initial(d).unwrap();
        assert_eq!(h.version, Version::V1);
        assert!(h.dcid().len() >= 8, "RFC 9000 §7.2");
        match sniffer.feed(d) {
            Ok(Some(info)) => return (datagrams, info),
            Ok(None) => {}
            Err(QuicError::Decrypt) => panic!("quinn's Initial failed to decrypt"),
            Err(e) => panic!("quinn's Initial refused: {e}"),
        }
    }
}

#[tokio::test]
async fn quinn_first_datagram_gives_sni() {
    let (datagrams, info) = sniff_quinn("fraud-site.example.net", vec![b"h3".to_vec()]).await;
    assert_eq!(datagrams, 1);
    assert_eq!(info.sni(), Some("fraud-site.example.net"));
    assert!(info.alpn_h3);
    assert!(!info.ech);
}

#[tokio::test]
async fn quinn_hello_over_several_datagrams() {
    // 40 ALPN names of 100 bytes make a ~4.3 KB ClientHello: quinn spreads its CRYPTO data
    // over several Initial packets and datagrams.
    let mut alpn: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'a' + i % 26; 100]).collect();
    alpn.push(b"h3".to_vec());
    let (datagrams, info) = sniff_quinn("Big-Hello.Example.ORG", alpn).await;
    assert!(
        datagrams >= 2,
        "expected a multi-datagram hello, got {datagrams}"
    );
    assert_eq!(info.sni(), Some("big-hello.example.org"));
}
