//! The SIP hot path does not allocate: a counting global allocator (counting per thread, so the
//! tests of this binary can run in parallel) around the codec's parse path and around the
//! plane's whole decision — screen, reject, tag, forward, relay a response, absorb an ACK.
#![allow(clippy::unwrap_used)]

use dragnet_gateway::sip::{parse, parse_uri};

mod common;
use common::counting_alloc::allocations;

const INVITE: &[u8] = b"INVITE sip:+8613912345678@gw.example;user=phone SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKnashds8;received=2001:db8::9\r\n\
Max-Forwards: 70\r\n\
To: <sip:+8613912345678@gw.example;user=phone>\r\n\
f: \"Alice\" <sip:+8613800138000@sbc.example;user=phone>;tag=1928301774\r\n\
P-Asserted-Identity: <tel:+8613800138000>\r\n\
i: a84b4c76e66710@pc33.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
l: 0\r\n\r\n";

#[test]
fn parsing_and_fact_extraction_do_not_allocate() {
    let warm = parse(INVITE).unwrap();
    let _ = warm.top_via();
    let ((via, from, to, pai, n_vias, cid, cseq, mf, uri), n) = allocations(|| {
        let m = parse(INVITE).unwrap();
        let via = m.top_via().unwrap();
        let from = m.from().unwrap();
        let to = m.to().unwrap();
        let pai = m.p_asserted_identity();
        let n_vias = m.vias().count();
        let cid = m.call_id();
        let cseq = m.cseq();
        let mf = m.max_forwards();
        let uri = parse_uri(b"sip:+8613912345678@gw.example;user=phone").unwrap();
        (via, from, to, pai, n_vias, cid, cseq, mf, uri)
    });
    assert_eq!(n, 0, "the parse path allocated");
    assert_eq!(via.branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(from.tag, Some(&b"1928301774"[..]));
    assert!(to.tag.is_none());
    assert!(pai.is_some());
    assert_eq!(n_vias, 2);
    assert_eq!(cid, b"a84b4c76e66710@pc33.example");
    assert_eq!(cseq.0, 314_159);
    assert_eq!(mf, Some(70));
    assert!(matches!(uri, dragnet_gateway::sip::Uri::Sip(_)));
}

fn invite(caller: &str, callee: &str, branch: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{callee}@127.0.0.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch}\r\n\
         From: <sip:{caller}@127.0.0.1;user=phone>;tag=abc\r\n\
         To: <sip:{callee}@127.0.0.1;user=phone>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: 1 INVITE\r\n\
         P-Asserted-Identity: <sip:{caller}@127.0.0.1;user=phone>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn the_plane_decision_does_not_allocate() {
    use dragnet_gateway::config::Config;
    use dragnet_gateway::sip_plane::{Dest, SipCore, Transport, Worker};
    use std::sync::Arc;
    let now = 1_795_392_000;
    let cfg = Config::embedded().unwrap();
    let store = Arc::new(dragnet_gateway::store::Store::new(
        dragnet_gateway::examples::engine(now).unwrap(),
        now,
    ));
    let metrics = dragnet_gateway::metrics::Metrics::new(store.clone());
    let gw = "127.0.0.1:5060".parse().unwrap();
    let core = SipCore::new(&cfg.sip, &[gw], store.clone(), metrics.sip.clone()).unwrap();
    let uac = "127.0.0.1:5080".parse().unwrap();
    let next = "127.0.0.1:5070".parse().unwrap();
    // Clean, blocked (608 + Reason + Call-Info), tagged, protected: each once to warm the
    // worker's buffers, then again as new transactions under the counter.
    let calls = [
        ("+8613912345678", "+8613987654321"),
        ("+8613912345678", "+8613800138000"),
        ("+8617112345678", "+8613987654321"),
        ("+8613800138000", "110"),
    ];
    let response = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKuac\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n\
Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut w = Worker::new();
    let warm: Vec<Vec<u8>> = calls
        .iter()
        .enumerate()
        .map(|(i, (a, b))| invite(a, b, &format!("z9hG4bKwarm{i}")))
        .collect();
    let hot: Vec<Vec<u8>> = calls
        .iter()
        .enumerate()
        .map(|(i, (a, b))| invite(a, b, &format!("z9hG4bKhot{i}")))
        .collect();
    for m in &warm {
        core.handle(&mut w, m, uac, Transport::Udp, 0, now);
    }
    core.handle(&mut w, response, next, Transport::Udp, 0, now);
    let (dests, n) = allocations(|| {
        let mut out = [Dest::None; 6];
        for (i, m) in hot.iter().enumerate() {
            out[i] = core.handle(&mut w, m, uac, Transport::Udp, 0, now);
        }
        // A retransmission of the blocked INVITE (cache hit) and a relayed response.
        out[4] = core.handle(&mut w, &hot[1], uac, Transport::Udp, 0, now);
        out[5] = core.handle(&mut w, response, next, Transport::Udp, 0, now);
        out
    });
    assert_eq!(n, 0, "the plane's decision path allocated {n} times");
    assert_eq!(dests[0], Dest::Udp(next));
    assert_eq!(dests[1], Dest::Udp(uac), "blocked: answered");
    assert_eq!(dests[2], Dest::Udp(next));
    assert_eq!(dests[3], Dest::Udp(next));
    assert_eq!(dests[4], Dest::Udp(uac));
    assert_eq!(dests[5], Dest::Udp(uac));

    // Shadow mode: with a candidate running, every decision is taken twice, still without
    // allocating, and the comparisons are counted.
    let candidate = dragnet_gateway::examples::engine(now).unwrap();
    store.set_shadow(dragnet_gateway::store::Shadow::new(
        candidate,
        Arc::new(Vec::new()),
        None,
        now,
    ));
    let shadowed: Vec<Vec<u8>> = calls
        .iter()
        .enumerate()
        .map(|(i, (a, b))| invite(a, b, &format!("z9hG4bKshadow{i}")))
        .collect();
    let (_, n) = allocations(|| {
        for m in &shadowed {
            core.handle(&mut w, m, uac, Transport::Udp, 0, now);
        }
    });
    assert_eq!(
        n, 0,
        "the decision path with a shadow candidate allocated {n} times"
    );
    let s = store.shadow().unwrap();
    assert_eq!(s.compared()[0], ("sip", 4));
    assert!(s.differences().is_empty(), "the same rules decide the same");
}
