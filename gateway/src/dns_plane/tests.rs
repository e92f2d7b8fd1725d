//! The DNS plane's decisions, sans IO.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;

use super::{DnsCore, DnsWorker, Step};
use crate::config::{Config, DnsPolicy};
use crate::metrics::Metrics;
use crate::store::Store;

const NOW: u64 = 1_795_392_000;

fn core_with(edit: impl FnOnce(&mut Config)) -> DnsCore {
    let mut cfg = Config::embedded().unwrap();
    edit(&mut cfg);
    cfg.validate().unwrap();
    let store = Arc::new(Store::new(crate::examples::engine(NOW).unwrap(), NOW));
    let m = Metrics::new(store.clone());
    DnsCore::new(&cfg.dns, store, m.dns.clone()).unwrap()
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// (step, rcode, answer count, first answer's type and RDATA)
fn ask(c: &DnsCore, name: &str, qtype: u16) -> (Step, u8, u16, Option<(u16, Vec<u8>)>) {
    let mut w = DnsWorker::new();
    let step = c.decide(&mut w, &query(name, qtype), local(), false, NOW);
    if step != Step::Reply {
        return (step, 0, 0, None);
    }
    let o = &w.out;
    assert_eq!(&o[..2], &[0x12, 0x34], "ID echoed");
    assert!(o[2] & 0x80 != 0, "QR set");
    let rcode = o[3] & 0x0f;
    let an = u16::from_be_bytes([o[6], o[7]]);
    // Skip the header and the echoed question.
    let mut i = 12 + name.len() + 2 + 4;
    let first = (an > 0).then(|| {
        if o[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while o[i] != 0 {
                i += o[i] as usize + 1;
            }
            i += 1;
        }
        let t = u16::from_be_bytes([o[i], o[i + 1]]);
        let len = u16::from_be_bytes([o[i + 8], o[i + 9]]) as usize;
        (t, o[i + 10..i + 10 + len].to_vec())
    });
    (step, rcode, an, first)
}

#[test]
fn listed_names_are_answered_by_policy_and_the_rest_forwarded() {
    let c = core_with(|_| {});
    assert_eq!(ask(&c, "evil.example", 1).1, 3, "NXDOMAIN");
    assert_eq!(
        ask(&c, "login.evil.example", 1).1,
        3,
        "subdomain of a listed suffix"
    );
    assert_eq!(
        ask(&c, "notevil.example", 1).0,
        Step::Forward,
        "label boundary"
    );
    assert_eq!(
        ask(&c, "help.parcel-redelivery.test", 1).0,
        Step::Forward,
        "allow exception"
    );
    assert_eq!(ask(&c, "parcel-redelivery.test", 1).1, 3);
    assert_eq!(ask(&c, "www.example.com", 1).0, Step::Forward);
}

#[test]
fn category_sinkhole_answers_the_family_asked() {
    let c = core_with(|_| {});
    let (_, rc, an, first) = ask(&c, "dropper.malware.example", 1);
    assert_eq!((rc, an), (0, 1));
    assert_eq!(first.unwrap(), (1, vec![127, 0, 0, 1]));
    let (_, _, _, first) = ask(&c, "dropper.malware.example", 28);
    assert_eq!(
        first.unwrap().1,
        "::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec()
    );
    let (_, rc, an, _) = ask(&c, "dropper.malware.example", 15);
    assert_eq!((rc, an), (0, 0), "MX to a sinkhole: NODATA");
}

#[test]
fn rpz_rule_actions_win() {
    let c = core_with(|cfg| cfg.dns.block = DnsPolicy::Refused);
    assert_eq!(
        ask(&c, "loan-fast.example", 1).1,
        3,
        "RPZ CNAME . = NXDOMAIN despite block=refused"
    );
    let (_, rc, an, _) = ask(&c, "brush-orders.test", 1);
    assert_eq!((rc, an), (0, 0), "RPZ NODATA");
    assert_eq!(
        ask(&c, "partner.loan-fast.example", 1).0,
        Step::Forward,
        "RPZ passthru"
    );
    let (_, _, _, first) = ask(&c, "prize-claim.example", 1);
    let (t, rdata) = first.unwrap();
    assert_eq!(t, 5, "CNAME");
    assert_eq!(rdata, b"\x07warning\x07carrier\x07example\x00".to_vec());
    assert_eq!(
        ask(&c, "lottery-win.example", 1).3.unwrap().1,
        vec![192, 0, 2, 10]
    );
    // Without an RPZ action, the configured block policy applies.
    assert_eq!(ask(&c, "evil.example", 1).1, 5, "REFUSED");
}

#[test]
fn configured_policies() {
    let c = core_with(|cfg| {
        cfg.dns.block = DnsPolicy::Cname;
        cfg.dns.cname = "wg.example".into();
        cfg.dns.category.insert("phishing".into(), DnsPolicy::Drop);
    });
    assert_eq!(
        ask(&c, "evil.example", 1).0,
        Step::Drop,
        "category phishing → drop"
    );
    let c = core_with(|cfg| {
        cfg.dns.block = DnsPolicy::Cname;
        cfg.dns.cname = "wg.example".into();
    });
    assert_eq!(
        ask(&c, "evil.example", 1).3.unwrap(),
        (5, b"\x02wg\x07example\x00".to_vec())
    );
    let c = core_with(|cfg| cfg.dns.block = DnsPolicy::Log);
    assert_eq!(ask(&c, "evil.example", 1).0, Step::Forward, "log only");
}

#[test]
fn clients_outside_the_allowlist_and_over_the_rate_are_refused() {
    let c = core_with(|cfg| cfg.dns.allow = vec!["10.0.0.0/8".into()]);
    assert_eq!(ask(&c, "www.example.com", 1).1, 5);
    assert_eq!(c.metrics.refused_clients.get(), 1);
    let c = core_with(|cfg| cfg.dns.rate_limit = 3);
    let mut w = DnsWorker::new();
    let q = query("www.example.com", 1);
    let steps: Vec<Step> = (0..5)
        .map(|_| c.decide(&mut w, &q, local(), false, NOW))
        .collect();
    assert_eq!(steps[..3], [Step::Forward; 3]);
    assert_eq!(steps[3..], [Step::Reply; 2], "beyond the rate: REFUSED");
    assert_eq!(
        c.decide(&mut w, &q, local(), false, NOW + 1),
        Step::Forward,
        "a new second"
    );
}

#[test]
fn malformed_queries_get_formerr_or_silence() {
    let c = core_with(|_| {});
    let mut w = DnsWorker::new();
    let mut q = query("www.example.com", 1);
    q[5] = 2; // QDCOUNT 2
    assert_eq!(c.decide(&mut w, &q, local(), false, NOW), Step::Reply);
    assert_eq!(w.out[3] & 0x0f, 1, "FORMERR");
    assert_eq!(
        c.decide(&mut w, b"\x12\x34\x01", local(), false, NOW),
        Step::Drop
    );
    assert_eq!(c.metrics.malformed.get(), 2);
}

#[test]
fn rpz_tcp_only_truncates_udp_and_forwards_tcp() {
    // No example rule is tcp-only; a snapshot with one is compiled here.
    use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
    let mut comp = Compiler::new(
        CompileConfig {
            now: NOW,
            ..CompileConfig::default()
        },
        false,
    );
    let rpz = "$ORIGIN rpz.test.\n$TTL 60\n@ IN SOA ns. h. 1 1 1 1 1\nslow-lane.example CNAME rpz-tcp-only.\n";
    let opts = source_options(None, "t.rpz", None, false).unwrap();
    comp.add_text(rpz, "t.rpz", &opts).unwrap();
    let (t, _) = comp.finish().unwrap();
    let e = dragnet_rules::Engine::from_bytes(
        &dragnet_rules::snapshot::write_snapshot(&t, 1, NOW).unwrap(),
    )
    .unwrap();
    let c = core_with(|_| {});
    c.store.swap(e, NOW);
    let mut w = DnsWorker::new();
    let q = query("slow-lane.example", 1);
    assert_eq!(c.decide(&mut w, &q, local(), false, NOW), Step::Reply);
    assert!(w.out[2] & 0x02 != 0, "TC over UDP");
    assert_eq!(
        c.decide(&mut w, &q, local(), true, NOW),
        Step::Forward,
        "over TCP: answered normally"
    );
}
