//! Overload through the real UDP shell: a backlog beyond `sip.queue` gets 503 + Retry-After for
//! new INVITEs, counted, and the plane recovers once the socket has drained.
//!
//! Deterministic without sleeps: the datagrams are sent to the bound socket before the plane's
//! worker thread is started, so its first batch holds them all.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use std::sync::Arc;

use dragnet_gateway::config::Config;
use dragnet_gateway::metrics::Metrics;
use dragnet_gateway::sip_plane::net::{spawn, Bound};
use dragnet_gateway::sip_plane::SipCore;
use dragnet_gateway::store::Store;

fn invite(i: usize, caller_port: u16) -> Vec<u8> {
    format!(
        "INVITE sip:+8613987654321@127.0.0.1;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{caller_port};branch=z9hG4bK-ovl-{i}\r\n\
         From: <sip:+8613912345678@127.0.0.1;user=phone>;tag=t{i}\r\n\
         To: <sip:+8613987654321@127.0.0.1;user=phone>\r\n\
         Call-ID: ovl-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Receives one datagram on a std socket without blocking the runtime's only thread.
async fn recv(s: &UdpSocket) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nothing arrived in 10 s"
                );
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn backlog_beyond_the_queue_gets_503_and_the_plane_recovers() {
    let next_hop = UdpSocket::bind("127.0.0.1:0").unwrap();
    next_hop.set_nonblocking(true).unwrap();
    let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
    uac.set_nonblocking(true).unwrap();
    let uac_port = uac.local_addr().unwrap().port();
    let mut cfg = Config::embedded().unwrap();
    cfg.sip.next_hop = next_hop.local_addr().unwrap().to_string();
    cfg.sip.queue = 3;
    let bound = Bound::bind(
        &["127.0.0.1:0".parse().unwrap()],
        &[],
        cfg.sip.socket_buffer,
    )
    .unwrap();
    let addrs = bound.local_addrs().unwrap();
    let plane: SocketAddr = addrs[0];
    let store = Arc::new(Store::new(dragnet_gateway::examples::engine(0).unwrap(), 0));
    let metrics = Arc::new(Metrics::new(store.clone()));
    let core = Arc::new(SipCore::new(&cfg.sip, &addrs, store, metrics.sip.clone()).unwrap());

    // Ten INVITEs queue up in the socket before the plane's worker thread exists (loopback
    // delivers within send_to), so its first read takes them all back to back.
    for i in 0..10 {
        uac.send_to(&invite(i, uac_port), plane).unwrap();
    }
    let (_tasks, _workers) = spawn(core, bound, 1, cfg.sip.queue, 16).unwrap();
    let mut forwarded = 0;
    let mut refused = 0;
    for _ in 0..10 {
        tokio::select! {
            m = recv(&next_hop) => { assert!(m.starts_with("INVITE "), "{m}"); forwarded += 1; }
            m = recv(&uac) => {
                assert!(m.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{m}");
                assert!(m.contains("\r\nRetry-After: 5\r\n"), "{m}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        (forwarded, refused),
        (3, 7),
        "the first `queue` are handled, the rest refused"
    );
    assert_eq!(metrics.sip.overload.get(), 7);
    assert_eq!(metrics.sip.responses.get("503"), 7);

    // The socket has drained: the next INVITE is screened and forwarded again.
    uac.send_to(&invite(99, uac_port), plane).unwrap();
    let m = recv(&next_hop).await;
    assert!(
        m.starts_with("INVITE ") && m.contains("z9hG4bK-ovl-99"),
        "{m}"
    );
    assert_eq!(metrics.sip.overload.get(), 7, "recovered");
}
