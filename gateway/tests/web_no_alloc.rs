//! The web plane's sans-IO readers allocate nothing per segment or datagram (STYLE.md: nothing
//! between the socket read and the verdict allocates): `tls::HelloReader::feed` over a TCP
//! stream whole and byte by byte, and `quic::InitialSniffer::feed` over RFC 9001/9369 client
//! Initials, a forged one and junk. The allocator counts per thread (tests/common), so the tests
//! of this binary can run in parallel.
#![allow(clippy::unwrap_used)]

use dragnet_gateway::web::quic::{peek_initial, InitialSniffer};
use dragnet_gateway::web::tls::{parse_client_hello, HelloReader};

mod common;
use common::counting_alloc::allocations;

// The fuzz seeds carry one leading control byte (the cut point, or the datagram count).
/// RFC 8448 §3: the client's handshake record (SNI "server").
const RFC8448_SEED: &[u8] = include_bytes!("../../fuzz/corpus/tls_hello/rfc8448-simple-1rtt");
/// RFC 9001 Appendix A.2: the protected client Initial (SNI "example.com").
const V1_SEED: &[u8] = include_bytes!("../../fuzz/corpus/quic_initial/rfc9001-a2-v1");
/// RFC 9369 Appendix A.2: the same ClientHello in a QUIC v2 Initial.
const V2_SEED: &[u8] = include_bytes!("../../fuzz/corpus/quic_initial/rfc9369-a2-v2");

#[test]
fn hello_reader_feed_does_not_allocate() {
    let stream = &RFC8448_SEED[1..];
    let mut r = Box::new(HelloReader::new());
    let ((whole, bytewise, not_tls, bare), n) = allocations(|| {
        let whole = matches!(r.feed(stream), Ok(Some(i)) if i.sni() == Some("server"));
        let again = r.feed(stream).is_ok();
        r.reset();
        let mut bytewise = false;
        for b in stream {
            if let Ok(Some(i)) = r.feed(std::slice::from_ref(b)) {
                bytewise = i.sni() == Some("server");
                break;
            }
        }
        r.reset();
        let not_tls = r.feed(b"GET / HTTP/1.1\r\n").is_err();
        r.reset();
        let bare = matches!(parse_client_hello(&stream[5..]), Ok(Some(_)));
        (whole && again, bytewise, not_tls, bare)
    });
    assert_eq!(n, 0, "HelloReader::feed allocated {n} times");
    assert!(whole && bytewise && not_tls && bare);
}

#[test]
fn initial_sniffer_feed_does_not_allocate() {
    let v1 = &V1_SEED[1..];
    let v2 = &V2_SEED[1..];
    assert_eq!((v1.len(), v2.len()), (1200, 1200));
    let mut forged = v1.to_vec();
    forged[1199] ^= 1;
    let junk = [0x40u8; 1200];
    let mut s = Box::new(InitialSniffer::new());
    let (decided, n) = allocations(|| {
        let mut decided = [false; 3];
        for (i, d) in [v1, v2, &forged[..]].into_iter().enumerate() {
            s.reset();
            let _ = peek_initial(d);
            decided[i] = matches!(s.feed(d), Ok(Some(h)) if h.sni() == Some("example.com"));
            let _ = s.feed(d);
            let _ = s.feed(&d[..600]);
            let _ = s.feed(&junk);
        }
        decided
    });
    assert_eq!(n, 0, "InitialSniffer::feed allocated {n} times");
    assert_eq!(decided, [true, true, false]);
}

#[test]
fn relay_classification_and_decided_flows_do_not_allocate() {
    use dragnet_gateway::store::Store;
    use dragnet_gateway::web::quic_relay::{
        Classifier, Flow, QuicRelayConfig, QuicRelayMetrics, Step,
    };
    use std::sync::Arc;
    use std::time::Instant;

    let v1 = &V1_SEED[1..];
    let store = Arc::new(Store::new(dragnet_gateway::examples::engine(0).unwrap(), 0));
    let metrics = Arc::new(QuicRelayMetrics::default());
    let mut c = Classifier::new(Arc::new(QuicRelayConfig::default()), store, metrics.clone());
    let now = Instant::now();
    // Warm the sniffer pool with one classification.
    let mut warm = Flow::new(now);
    assert_eq!(c.on_datagram(&mut warm, v1, now, 0), Step::Release);
    c.retire(&mut warm);
    let short_header = [0x40u8; 1200];
    let mut other_dcid = v1.to_vec();
    other_dcid[6] ^= 0x55;
    let (steps, n) = allocations(|| {
        // A whole classification from one datagram (RFC 9001 A.2, "example.com": allowed) …
        let mut f = Flow::new(now);
        let first = c.on_datagram(&mut f, v1, now, 0);
        let held = f.take_held().len();
        // … then what a decided flow sees: retransmissions, 1-RTT packets, the client's
        // continuation Initials (another connection ID, not decryptable with its own keys).
        let again = c.on_datagram(&mut f, v1, now, 0);
        let short = c.on_datagram(&mut f, &short_header, now, 0);
        let cont = c.on_datagram(&mut f, &other_dcid, now, 0);
        c.retire(&mut f);
        (first, held, again, short, cont)
    });
    assert_eq!(n, 0, "the relay's classification allocated {n} times");
    assert_eq!(
        steps,
        (
            Step::Release,
            0,
            Step::Forward,
            Step::Forward,
            Step::Forward
        )
    );
    assert_eq!(metrics.verdicts.get(dragnet_rules::Action::Allow), 2);
}
