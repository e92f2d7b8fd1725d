//! `Events::emit` is on the data path: it must not allocate (STYLE.md, "Hot path"). A counting
//! global allocator (per thread) around emits with every fact present, long (truncated) facts,
//! and a full queue.
#![allow(clippy::unwrap_used)]

use dragnet_gateway::events::{Events, EventsMetrics, Facts};
use dragnet_gateway::store::Plane;
use dragnet_rules::Action;

mod common;
use common::counting_alloc::allocations;

#[test]
fn emit_does_not_allocate() {
    let (ev, rx) = Events::channel(4, EventsMetrics::default());
    let long_url = vec![b'a'; 4000];
    let source = Some("2001:db8::7".parse().unwrap());
    let facts = Facts {
        caller: Some("+8613800138000"),
        callee: Some("+8613912345678"),
        domain: Some(b"login.bank-example.cn"),
        url: Some(&long_url),
    };
    // Warm up (first use of the clock, the counters).
    ev.emit(
        Plane::Sip,
        Action::Block,
        "fraud",
        "r1",
        source,
        facts,
        "udp0",
    );
    let ((), n) = allocations(|| {
        for _ in 0..10 {
            // Three fit, the rest hit a full queue: both paths counted.
            ev.emit(
                Plane::Web,
                Action::Warn,
                "phishing",
                "rule-77",
                source,
                facts,
                "http",
            );
            ev.emit(
                Plane::Dns,
                Action::Tag,
                "c",
                "r",
                None,
                Facts::default(),
                "",
            );
        }
        Events::off().emit(Plane::Sip, Action::Block, "c", "r", None, facts, "x");
    });
    assert_eq!(n, 0, "emit allocated");
    assert_eq!(rx.len(), 4);
    let first = rx.pop().unwrap();
    assert_eq!(first.callee.get().unwrap(), b"+8613912345678");
    let second = rx.pop().unwrap();
    assert_eq!(
        second.url.get().unwrap().len(),
        dragnet_gateway::events::URL_BYTES
    );
    assert_ne!(second.truncated, 0);
}
