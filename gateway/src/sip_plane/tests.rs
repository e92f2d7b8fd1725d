//! The SIP plane's decisions, sans IO: bytes in, bytes and destination out.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::Engine;

use super::{Dest, SipCore, Transport, Worker};
use crate::config::{Config, SipMode};
use crate::metrics::Metrics;
use crate::sip::{self, Kind};
use crate::store::Store;

const NOW: u64 = 1_795_392_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const GW: &str = "127.0.0.1:5060";
const NEXT: &str = "127.0.0.1:5070";
const UAC: &str = "127.0.0.1:5080";

fn core_with(mode: SipMode, edit: impl FnOnce(&mut Config)) -> SipCore {
    let mut cfg = Config::embedded().unwrap();
    cfg.sip.mode = mode;
    cfg.sip.next_hop = NEXT.into();
    edit(&mut cfg);
    cfg.validate().unwrap();
    let store = Arc::new(Store::new(crate::examples::engine(NOW).unwrap(), NOW));
    let metrics = Metrics::new(store.clone());
    SipCore::new(&cfg.sip, &[addr(GW)], store, metrics.sip.clone()).unwrap()
}

fn core(mode: SipMode) -> SipCore {
    core_with(mode, |_| {})
}

/// An engine where +8613800138000 is *allowed* (to prove a reload does not change an answer).
fn engine_allowing() -> Engine {
    let mut c = Compiler::new(
        CompileConfig {
            now: NOW,
            ..CompileConfig::default()
        },
        false,
    );
    let text = "number,action,category\n+8613800138000,allow,trusted\n+8613900000001,block,fraud\n";
    let opts = source_options(None, "n.csv", None, false).unwrap();
    c.add_text(text, "n.csv", &opts).unwrap();
    let (t, _) = c.finish().unwrap();
    Engine::from_bytes(&write_snapshot(&t, 99, NOW).unwrap()).unwrap()
}

fn invite(caller: &str, callee: &str, branch: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{callee}@127.0.0.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch}\r\n\
         From: <sip:{caller}@127.0.0.1;user=phone>;tag=abc\r\n\
         To: <sip:{callee}@127.0.0.1;user=phone>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{caller}@127.0.0.1:5080>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn handle(c: &SipCore, w: &mut Worker, m: &[u8], src: &str) -> (Dest, String) {
    let d = c.handle(w, m, addr(src), Transport::Udp, 0, NOW);
    (d, String::from_utf8_lossy(&w.out).into_owned())
}

fn status(out: &str) -> u16 {
    match sip::parse(out.as_bytes()).unwrap().kind() {
        Kind::Response { status, .. } => status,
        Kind::Request { .. } => 0,
    }
}

#[test]
fn allowed_call_is_forwarded_to_the_next_hop_with_our_via() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let (d, out) = handle(
        &c,
        &mut w,
        &invite("+8613912345678", "+8613987654321", "z9hG4bK1"),
        UAC,
    );
    assert_eq!(d, Dest::Udp(addr(NEXT)));
    let m = sip::parse(out.as_bytes()).unwrap();
    let top = m.top_via().unwrap();
    assert_eq!(top.host_raw, b"127.0.0.1");
    assert_eq!(top.port, Some(5060));
    assert_eq!(m.max_forwards(), Some(69));
    assert!(!out.contains("X-Fraud"), "an allowed call is not tagged");
}

#[test]
fn blocked_callee_gets_608_with_jwscard_and_reason() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let (d, out) = handle(
        &c,
        &mut w,
        &invite("+8613912345678", "+8613800138000", "z9hG4bK2"),
        UAC,
    );
    assert_eq!(
        d,
        Dest::Udp(addr(UAC)),
        "the answer goes back to the sender"
    );
    assert_eq!(status(&out), 608, "{out}");
    assert!(
        out.contains("Call-Info: <https://fraud-appeal.example/jwscard>;purpose=jwscard"),
        "{out}"
    );
    assert!(out.contains("Reason: SIP;cause=608;text=\"Rejected as fraud: rule cn-fraud-0001, category impersonating-police, appeal 12381\""), "{out}");
    let m = sip::parse(out.as_bytes()).unwrap();
    assert!(m.to().unwrap().tag.is_some(), "the reject has a To-tag");
}

#[test]
fn category_override_answers_603_plus_on_the_international_trunk() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    // +861… caller presented on the international trunk (127.0.0.2 in the example config).
    let m = invite("+8613912345678", "+8613987654321", "z9hG4bK3");
    let (_, out) = handle(&c, &mut w, &m, "127.0.0.2:5080");
    assert_eq!(status(&out), 603, "{out}");
    assert!(
        out.contains(
            "Reason: SIP;cause=603;text=\"Network Blocked: rule cn-spoof-mobile, category spoofing"
        ),
        "{out}"
    );
    assert!(!out.contains("Call-Info"), "603 carries no jwscard");
    // The same call from the domestic side passes.
    let (d, _) = handle(
        &c,
        &mut w,
        &invite("+8613912345678", "+8613987654321", "z9hG4bK3b"),
        UAC,
    );
    assert_eq!(d, Dest::Udp(addr(NEXT)));
}

#[test]
fn tagged_call_carries_the_configured_headers() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let (d, out) = handle(
        &c,
        &mut w,
        &invite("+8617112345678", "+8613987654321", "z9hG4bK4"),
        UAC,
    );
    assert_eq!(d, Dest::Udp(addr(NEXT)));
    assert!(
        out.contains("X-Fraud-Category: virtual-operator\r\n"),
        "{out}"
    );
    assert!(out.contains("X-Fraud-Rule: cn-tag-0171\r\n"), "{out}");
    assert!(
        out.contains("X-Caller-Label: Suspected fraud (virtual-operator)\r\n"),
        "{out}"
    );
}

#[test]
fn protected_callee_passes_untouched_even_from_a_blocked_caller() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    for callee in ["110", "112", "+86110"] {
        let m = invite("+8613800138000", callee, &format!("z9hG4bKp{callee}"));
        let (d, out) = handle(&c, &mut w, &m, UAC);
        assert_eq!(d, Dest::Udp(addr(NEXT)), "{callee}: {out}");
        assert!(out.starts_with("INVITE "), "{out}");
        assert!(!out.contains("X-Fraud"), "protected calls are not tagged");
    }
}

#[test]
fn pai_is_believed_only_from_trusted_peers() {
    let mut w = Worker::new();
    let with_pai = |b: &str| {
        let m = String::from_utf8(invite("+8613912345678", "+8613987654321", b)).unwrap();
        m.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nP-Asserted-Identity: <sip:+8613800138000@127.0.0.1;user=phone>\r\n",
        )
        .into_bytes()
    };
    // Trusted (127.0.0.0/8 in the defaults): the asserted identity is the blocked number.
    let c = core(SipMode::Proxy);
    let (_, out) = handle(&c, &mut w, &with_pai("z9hG4bK5"), UAC);
    assert_eq!(status(&out), 608, "{out}");
    // Not trusted: screened on From, which is clean.
    let c = core_with(SipMode::Proxy, |cfg| {
        cfg.sip.trusted = vec!["10.0.0.0/8".into()]
    });
    let (d, _) = handle(&c, &mut w, &with_pai("z9hG4bK6"), UAC);
    assert_eq!(d, Dest::Udp(addr(NEXT)));
}

#[test]
fn retransmission_gets_the_same_answer_across_a_reload_and_the_ack_is_absorbed() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let m = invite("+8613912345678", "+8613800138000", "z9hG4bKretx");
    let (_, first) = handle(&c, &mut w, &m, UAC);
    assert_eq!(status(&first), 608);
    // The rule set changes: the callee is now allowed.
    c.store.swap(engine_allowing(), NOW);
    let fresh = invite("+8613912345678", "+8613800138000", "z9hG4bKnew");
    let (d, _) = handle(&c, &mut w, &fresh, UAC);
    assert_eq!(d, Dest::Udp(addr(NEXT)), "a new call sees the new rules");
    let (_, again) = handle(&c, &mut w, &m, UAC);
    assert_eq!(
        again, first,
        "the retransmission gets byte-identical answer (same To-tag)"
    );
    // The hop-by-hop ACK to our reject (same branch, RFC 3261 §17.1.1.3) is absorbed.
    let tag = sip::parse(first.as_bytes())
        .unwrap()
        .to()
        .unwrap()
        .tag
        .unwrap()
        .to_vec();
    let ack = format!(
        "ACK sip:+8613800138000@127.0.0.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKretx\r\n\
         From: <sip:+8613912345678@127.0.0.1;user=phone>;tag=abc\r\n\
         To: <sip:+8613800138000@127.0.0.1;user=phone>;tag={}\r\n\
         Call-ID: call-z9hG4bKretx\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8(tag).unwrap()
    );
    let (d, out) = handle(&c, &mut w, ack.as_bytes(), UAC);
    assert_eq!((d, out.as_str()), (Dest::None, ""));
    assert_eq!(c.metrics.acks_absorbed.get(), 1);
    // A CANCEL of the rejected INVITE: 200, since the INVITE already has its final answer.
    let cancel = String::from_utf8(m.clone())
        .unwrap()
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let (_, out) = handle(&c, &mut w, cancel.as_bytes(), UAC);
    assert_eq!(status(&out), 200, "{out}");
}

#[test]
fn cancel_and_ack_of_a_forwarded_invite_follow_it() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let m = invite("+8613912345678", "+8613987654321", "z9hG4bKfw");
    let (_, fwd) = handle(&c, &mut w, &m, UAC);
    let inv_branch = sip::parse(fwd.as_bytes())
        .unwrap()
        .top_via()
        .unwrap()
        .branch
        .unwrap()
        .to_vec();
    let cancel = String::from_utf8(m)
        .unwrap()
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let (d, out) = handle(&c, &mut w, cancel.as_bytes(), UAC);
    assert_eq!(d, Dest::Udp(addr(NEXT)));
    let cm = sip::parse(out.as_bytes()).unwrap();
    assert_eq!(
        cm.top_via().unwrap().branch.unwrap(),
        inv_branch.as_slice(),
        "RFC 3261 §16.11: the CANCEL gets the INVITE's branch"
    );
}

#[test]
fn responses_are_routed_back_by_via_and_strays_dropped() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let resp = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
        Via: SIP/2.0/UDP 10.1.2.3:5080;branch=z9hG4bKuac;received=192.0.2.7;rport=6000\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let (d, out) = handle(&c, &mut w, resp.as_bytes(), NEXT);
    assert_eq!(
        d,
        Dest::Udp(addr("192.0.2.7:6000")),
        "received + rport win (RFC 3581 §4)"
    );
    assert!(!out.contains("z9hG4bKours"), "our Via is removed");
    let stray = resp.replace(
        "127.0.0.1:5060;branch=z9hG4bKours",
        "198.51.100.1:5060;branch=z9hG4bKx",
    );
    let (d, _) = handle(&c, &mut w, stray.as_bytes(), NEXT);
    assert_eq!(d, Dest::None);
    assert_eq!(c.metrics.drops.get("stray_response"), 1);
}

#[test]
fn no_open_relay_requests_from_the_next_hop_go_to_ip_targets_only() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let bye = |ruri: &str| {
        format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye{}\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            ruri.len()
        )
    };
    let (d, _) = handle(&c, &mut w, bye("sip:alice@192.0.2.9:5099").as_bytes(), NEXT);
    assert_eq!(d, Dest::Udp(addr("192.0.2.9:5099")));
    let (d, _) = handle(&c, &mut w, bye("sip:alice@host.example").as_bytes(), NEXT);
    assert_eq!(
        d,
        Dest::None,
        "no DNS on the data path: a name target is not relayed"
    );
    let (d, _) = handle(&c, &mut w, bye("sip:alice@127.0.0.1:5060").as_bytes(), NEXT);
    assert_eq!(d, Dest::None, "a request back to ourselves is a loop");
    // From anyone else, whatever the target, it goes to the next hop only.
    let (d, _) = handle(&c, &mut w, bye("sip:alice@192.0.2.9:5099").as_bytes(), UAC);
    assert_eq!(d, Dest::Udp(addr(NEXT)));
}

#[test]
fn protocol_hygiene_answers() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let base = String::from_utf8(invite("+8613912345678", "+8613987654321", "z9hG4bKh")).unwrap();
    let cases: [(String, u16); 4] = [
        (base.replace("Max-Forwards: 70", "Max-Forwards: 0"), 483),
        (base.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505),
        (
            base.replacen(
                "sip:+8613987654321@127.0.0.1:5060;user=phone",
                "mailto:x@example.com",
                1,
            ),
            416,
        ),
        (
            base.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nProxy-Require: foo"),
            420,
        ),
    ];
    for (m, code) in cases {
        let (d, out) = handle(&c, &mut w, m.as_bytes(), UAC);
        assert_eq!(status(&out), code, "{m}\n→ {out}");
        assert_eq!(d, Dest::Udp(addr(UAC)));
    }
    // Malformed but routable: 400 with the parser's reason in a Warning header.
    let bad = base.replace("Content-Length: 0", "Content-Length: 999");
    let (d, out) = handle(&c, &mut w, bad.as_bytes(), UAC);
    assert_eq!(status(&out), 400, "{out}");
    assert!(
        out.contains("Warning: 399 dragnet \"Content-Length"),
        "{out}"
    );
    assert_eq!(d, Dest::Udp(addr(UAC)));
    // Unroutable garbage: dropped and counted.
    let (d, out) = handle(&c, &mut w, b"\x16\x03\x01 not sip at all\r\n\r\n", UAC);
    assert_eq!((d, out.as_str()), (Dest::None, ""));
    assert!(c.metrics.drops.get("unroutable") >= 1);
    // Keep-alive CRLFs: nothing.
    assert_eq!(handle(&c, &mut w, b"\r\n\r\n", UAC).0, Dest::None);
}

#[test]
fn overload_answers_503_with_retry_after() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let m = invite("+8613912345678", "+8613987654321", "z9hG4bKo");
    let d = c.overload(&mut w, &m, addr(UAC), Transport::Udp, 0);
    let out = String::from_utf8_lossy(&w.out).into_owned();
    assert_eq!(d, Dest::Udp(addr(UAC)));
    assert_eq!(status(&out), 503);
    assert!(out.contains("Retry-After: 5\r\n"), "{out}");
    assert_eq!(c.metrics.overload.get(), 1);
    // Behind on load: a new INVITE gets 503 unscreened, but a response and an in-dialog
    // request still flow, so calls in progress complete.
    let d = c.handle_overloaded(&mut w, &m, addr(UAC), Transport::Udp, 0, NOW);
    assert_eq!(d, Dest::Udp(addr(UAC)));
    assert_eq!(status(&String::from_utf8_lossy(&w.out)), 503);
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKuac\r\nFrom: <sip:a@x>;tag=1\r\n\
        To: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let d = c.handle_overloaded(&mut w, resp.as_bytes(), addr(NEXT), Transport::Udp, 0, NOW);
    assert_eq!(
        d,
        Dest::Udp(addr(UAC)),
        "responses are relayed under overload"
    );
    let bye = String::from_utf8(m)
        .unwrap()
        .replacen("INVITE sip", "BYE sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
        .replace("user=phone>\r\nCall-ID", "user=phone>;tag=x\r\nCall-ID");
    let d = c.handle_overloaded(&mut w, bye.as_bytes(), addr(UAC), Transport::Udp, 0, NOW);
    assert_eq!(
        d,
        Dest::Udp(addr(NEXT)),
        "in-dialog requests are forwarded under overload"
    );
    assert_eq!(c.metrics.overload.get(), 2);
}

#[test]
fn redirect_mode_answers_302_reject_or_announcement() {
    let c = core(SipMode::Redirect);
    let mut w = Worker::new();
    let (_, out) = handle(
        &c,
        &mut w,
        &invite("+8613912345678", "+8613987654321", "z9hG4bKr1"),
        UAC,
    );
    assert_eq!(status(&out), 302, "{out}");
    assert!(
        out.contains("Contact: <sip:+8613987654321@127.0.0.1:5060;user=phone>\r\n"),
        "{out}"
    );
    let (_, out) = handle(
        &c,
        &mut w,
        &invite("+8617112345678", "+8613987654321", "z9hG4bKr2"),
        UAC,
    );
    assert!(
        out.contains("Contact: <sip:+8613987654321@127.0.0.1:5060;user=phone?X-Caller-Label=Suspected%20fraud%20(virtual-operator)&X-Fraud-Category=virtual-operator&X-Fraud-Rule=cn-tag-0171>"),
        "{out}"
    );
    let (_, out) = handle(
        &c,
        &mut w,
        &invite("+8613912345678", "+8613800138000", "z9hG4bKr3"),
        UAC,
    );
    assert_eq!(status(&out), 608);
    let (_, out) = handle(
        &c,
        &mut w,
        &invite("01087654321", "+8613987654321", "z9hG4bKr4"),
        UAC,
    );
    assert_eq!(status(&out), 302);
    assert!(
        out.contains("Contact: <sip:fraud-warning@127.0.0.1:5090>"),
        "{out}"
    );
    let opts = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKopt\r\n\
        From: <sip:probe@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let (_, out) = handle(&c, &mut w, opts.as_bytes(), UAC);
    assert_eq!(status(&out), 200);
}

#[test]
fn tcp_requests_are_answered_on_their_connection_and_their_responses_find_it() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    let m = String::from_utf8(invite("+8613912345678", "+8613987654321", "z9hG4bKt"))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let d = c.handle(&mut w, m.as_bytes(), addr(UAC), Transport::Tcp, 77, NOW);
    assert_eq!(d, Dest::Udp(addr(NEXT)));
    let fwd = String::from_utf8_lossy(&w.out).into_owned();
    let ours = sip::parse(fwd.as_bytes()).unwrap().top_via().unwrap();
    let branch = String::from_utf8(ours.branch.unwrap().to_vec()).unwrap();
    assert!(branch.ends_with(".c77"), "{branch}");
    let resp = format!(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bKt\r\nFrom: <sip:a@x>;tag=1\r\n\
         To: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let d = c.handle(&mut w, resp.as_bytes(), addr(NEXT), Transport::Udp, 0, NOW);
    assert_eq!(d, Dest::Conn(77));
    // A blocked call over TCP is answered on the connection.
    let b = String::from_utf8(invite("+8613912345678", "+8613800138000", "z9hG4bKtb"))
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    assert_eq!(
        c.handle(&mut w, b.as_bytes(), addr(UAC), Transport::Tcp, 78, NOW),
        Dest::Conn(78)
    );
}

#[test]
fn verdicts_are_counted_by_category() {
    let store = {
        let c = core(SipMode::Proxy);
        let mut w = Worker::new();
        handle(
            &c,
            &mut w,
            &invite("+8613912345678", "+8613800138000", "z9hG4bKm1"),
            UAC,
        );
        handle(
            &c,
            &mut w,
            &invite("+8613912345678", "+8613987654321", "z9hG4bKm2"),
            UAC,
        );
        c.store.clone()
    };
    let t = store.hit_totals();
    let get = |a: &str, cat: &str| {
        t.iter()
            .find(|(_, x, c, _)| *x == a && c == cat)
            .map_or(0, |e| e.3)
    };
    assert_eq!(get("block", "impersonating-police"), 1, "{t:?}");
    assert_eq!(get("allow", "none"), 1, "{t:?}");
}

#[test]
fn a_response_is_never_reflected_to_broadcast_or_multicast() {
    let c = core(SipMode::Proxy);
    let mut w = Worker::new();
    for bad in ["255.255.255.255", "224.0.0.1", "0.0.0.0"] {
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
             Via: SIP/2.0/UDP {bad}:5080;branch=z9hG4bKuac\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let (d, _) = handle(&c, &mut w, resp.as_bytes(), NEXT);
        assert_eq!(d, Dest::None, "{bad}");
    }
}
