//! The SIP plane's per-message cost, sans IO: parse + screen + splice of one INVITE (clean →
//! forward, blocked → 608, tagged → forward with headers), the relay of a response, and parse
//! alone. The engine holds 10⁶ blocked numbers (10⁴ under `cargo test`); every INVITE is a new
//! transaction (4 096 distinct ones, the clock moved so that their cache entries have expired),
//! so the figures include the cache insert and the screening, not a retransmission shortcut.
//!
//! `cargo bench --bench sip`

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dragnet_gateway::config::Config;
use dragnet_gateway::metrics::Metrics;
use dragnet_gateway::sip::parse;
use dragnet_gateway::sip_plane::{Dest, SipCore, Transport, Worker};
use dragnet_gateway::store::Store;
use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::Engine;

const N: usize = 4096;

mod common;
use common::Rng;

/// Blocked numbers end in an even digit, clean ones in an odd digit.
fn mobile(r: &mut Rng, blocked: bool) -> String {
    let body = r.next() % 1_000_000_000;
    let body = if blocked { body & !1 } else { body | 1 };
    format!("+8613{body:09}")
}

fn engine(numbers: usize, r: &mut Rng) -> (Engine, Vec<String>) {
    let mut csv = String::from("number,category\n");
    let mut hits = Vec::new();
    for i in 0..numbers {
        let n = mobile(r, true);
        if i % (numbers / N).max(1) == 0 {
            hits.push(n.clone());
        }
        csv.push_str(&n);
        csv.push_str(",fraud\n");
    }
    csv.push_str("+86170,tag-me\n");
    let mut tags = String::from("number,kind,action,category,direction\n");
    for p in 0..300 {
        tags.push_str(&format!(
            "+86170{p:04},prefix,tag,virtual-operator,caller\n"
        ));
    }
    let mut c = Compiler::new(
        CompileConfig {
            now: 1,
            ..CompileConfig::default()
        },
        false,
    );
    let o = source_options(None, "n.csv", None, false).expect("options");
    c.add_text(&csv.replace("+86170,tag-me\n", ""), "n.csv", &o)
        .expect("numbers");
    c.add_text(&tags, "t.csv", &o).expect("tags");
    let (t, _) = c.finish().expect("compile");
    let e = Engine::from_bytes(&write_snapshot(&t, 1, 1).expect("image")).expect("load");
    (e, hits)
}

fn invite(caller: &str, callee: &str, i: usize) -> Vec<u8> {
    format!(
        "INVITE sip:{callee}@127.0.0.1:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{i}-bench\r\n\
         From: <sip:{caller}@127.0.0.1;user=phone>;tag={i}SIPpTag00\r\n\
         To: <sip:{callee}@127.0.0.1;user=phone>\r\n\
         Call-ID: {i}-bench@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{caller}@127.0.0.1:5080>\r\n\
         P-Asserted-Identity: <sip:{caller}@127.0.0.1;user=phone>\r\n\
         Max-Forwards: 70\r\n\
         Subject: bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 129\r\n\r\n\
         v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    let numbers = if measuring { 1_000_000 } else { 10_000 };
    let mut r = Rng(7);
    let (engine, hits) = engine(numbers, &mut r);
    let store = Arc::new(Store::new(engine, 1));
    let metrics = Metrics::new(store.clone());
    let cfg = Config::embedded().expect("config");
    let gw: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
    let core = SipCore::new(&cfg.sip, &[gw], store, metrics.sip.clone()).expect("core");
    let uac: SocketAddr = "127.0.0.1:5080".parse().expect("addr");
    let clean: Vec<Vec<u8>> = (0..N)
        .map(|i| invite(&mobile(&mut r, false), &mobile(&mut r, false), i))
        .collect();
    let blocked: Vec<Vec<u8>> = (0..N)
        .map(|i| invite(&mobile(&mut r, false), &hits[i % hits.len()], N + i))
        .collect();
    let tagged: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let caller = format!("+86170{:04}{:05}", i % 300, r.next() % 100_000);
            invite(&caller, &mobile(&mut r, false), 2 * N + i)
        })
        .collect();
    let response = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-bench\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n\
Call-ID: 1-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    let mut g = c.benchmark_group(format!("sip/1e{}", numbers.ilog10()));
    g.throughput(Throughput::Elements(1));
    let mut w = Worker::new();
    for (name, set, want_forward) in [
        ("invite_clean_forward", &clean, true),
        ("invite_blocked_608", &blocked, false),
        ("invite_tagged_forward", &tagged, true),
    ] {
        // Check once what the bench measures.
        let d = core.handle(&mut w, &set[0], uac, Transport::Udp, 0, 1);
        assert_eq!(
            matches!(d, Dest::Udp(a) if a != uac),
            want_forward,
            "{name}"
        );
        let mut i = 0usize;
        // The clock advances 1 s per full pass, so every entry has expired when it comes round.
        let mut now = 1_000u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                if i == N {
                    i = 0;
                    now += 41;
                }
                black_box(core.handle(&mut w, black_box(&set[i]), uac, Transport::Udp, 0, now))
            })
        });
    }
    g.bench_function("response_relay", |b| {
        b.iter(|| {
            black_box(core.handle(
                &mut w,
                black_box(response),
                "127.0.0.1:5070".parse().expect("addr"),
                Transport::Udp,
                0,
                1,
            ))
        })
    });
    g.bench_function("parse_only", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % N;
            black_box(parse(black_box(&clean[i])).map(|m| m.headers_len()))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
