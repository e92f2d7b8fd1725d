//! Hit events (issue 8): every block, warn and tag a plane decides can become an event for the
//! people who call potential victims back.
//!
//! Two halves, split by a bounded lock-free queue ([`crossbeam_queue::ArrayQueue`]):
//!
//! - the data path calls [`Events::emit`]: it copies the facts into a fixed-size [`HitEvent`]
//!   (bounded byte arrays, truncation flagged), stamps the time and pushes. It never allocates,
//!   locks, logs or waits; when the queue is full the event is dropped and counted
//!   (`dragnet_events_dropped_total{reason="queue_full"}`);
//! - a consumer task ([`start`]) drains the queue, hashes numbers and client addresses with
//!   HMAC-SHA256 under the configured key ([`record::Hasher`]), renders one JSON object per event
//!   and hands it to each sink (file, webhook, NATS JetStream). A sink that is down gets its
//!   events through a bounded on-disk [`spool::Spool`], delivered in order when it returns.
//!
//! What it never does: hold the data path, write a number or client address in plain text unless
//! `events.plain` says so, or grow without bound (queue, channels and spool are all bounded).
//! Delivery is at least once: an event whose ack was lost may be sent again (NATS deduplicates
//! it by `Nats-Msg-Id`; file and webhook consumers should use the `id` field).

pub mod config;
pub mod file;
pub mod nats;
pub mod record;
pub mod sink;
pub mod spool;
pub mod webhook;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use dragnet_rules::Action;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use config::EventsConfig;

use crate::store::Plane;

/// Bytes kept of a category name.
pub const CATEGORY_BYTES: usize = 48;
/// Bytes kept of a rule id.
pub const RULE_BYTES: usize = 48;
/// Bytes kept of a caller or callee (a number, or a SIP user part).
pub const NUMBER_BYTES: usize = 40;
/// Bytes kept of a domain: RFC 1035 §2.3.4 caps a name at 255 octets on the wire, 253 as text.
pub const DOMAIN_BYTES: usize = 253;
/// Bytes kept of a URL (longer ones are cut and flagged).
pub const URL_BYTES: usize = 512;
/// Bytes kept of the ingress name (listener or peer label).
pub const INGRESS_BYTES: usize = 32;

/// The facts of a hit, borrowed from the packet being screened. Absent facts are `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub caller: Option<&'a str>,
    pub callee: Option<&'a str>,
    pub domain: Option<&'a [u8]>,
    pub url: Option<&'a [u8]>,
}

/// A byte string of at most `N` bytes, stored inline.
#[derive(Clone, Copy)]
pub struct Inline<const N: usize> {
    len: u16,
    present: bool,
    buf: [u8; N],
}

impl<const N: usize> Inline<N> {
    const EMPTY: Self = Inline {
        len: 0,
        present: false,
        buf: [0; N],
    };

    /// Copies up to `N` bytes of `v`; returns true if it had to cut.
    #[inline]
    fn set(&mut self, v: Option<&[u8]>) -> bool {
        let Some(v) = v else {
            self.present = false;
            self.len = 0;
            return false;
        };
        let n = v.len().min(N);
        self.buf[..n].copy_from_slice(&v[..n]);
        // N ≤ 512 by construction, so n fits a u16.
        self.len = n as u16;
        self.present = true;
        v.len() > N
    }

    /// The stored bytes, or `None` if the fact was absent.
    pub fn get(&self) -> Option<&[u8]> {
        self.present.then(|| &self.buf[..usize::from(self.len)])
    }
}

impl<const N: usize> std::fmt::Debug for Inline<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            None => f.write_str("None"),
        }
    }
}

/// Which facts were cut to fit their slot (bit set).
pub mod truncated {
    pub const CATEGORY: u8 = 1;
    pub const RULE: u8 = 2;
    pub const CALLER: u8 = 4;
    pub const CALLEE: u8 = 8;
    pub const DOMAIN: u8 = 16;
    pub const URL: u8 = 32;
    pub const INGRESS: u8 = 64;
}

/// One hit as it travels through the queue: fixed size, no heap.
#[derive(Debug, Clone, Copy)]
pub struct HitEvent {
    /// Unix time in milliseconds, taken at emit.
    pub ts_ms: u64,
    /// Emit order since start (unique per process; with the start time it names the event).
    pub seq: u64,
    pub plane: Plane,
    pub action: Action,
    pub source: Option<IpAddr>,
    /// Bits of [`truncated`].
    pub truncated: u8,
    pub category: Inline<CATEGORY_BYTES>,
    pub rule: Inline<RULE_BYTES>,
    pub caller: Inline<NUMBER_BYTES>,
    pub callee: Inline<NUMBER_BYTES>,
    pub domain: Inline<DOMAIN_BYTES>,
    pub url: Inline<URL_BYTES>,
    pub ingress: Inline<INGRESS_BYTES>,
}

impl HitEvent {
    const EMPTY: HitEvent = HitEvent {
        ts_ms: 0,
        seq: 0,
        plane: Plane::Sip,
        action: Action::Tag,
        source: None,
        truncated: 0,
        category: Inline::EMPTY,
        rule: Inline::EMPTY,
        caller: Inline::EMPTY,
        callee: Inline::EMPTY,
        domain: Inline::EMPTY,
        url: Inline::EMPTY,
        ingress: Inline::EMPTY,
    };

    /// Builds an event in place (no allocation).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ts_ms: u64,
        seq: u64,
        plane: Plane,
        action: Action,
        category: &str,
        rule: &str,
        source: Option<IpAddr>,
        facts: Facts<'_>,
        ingress: &str,
    ) -> HitEvent {
        let mut e = HitEvent::EMPTY;
        e.ts_ms = ts_ms;
        e.seq = seq;
        e.plane = plane;
        e.action = action;
        e.source = source;
        let mut t = 0;
        let mut flag = |cut: bool, bit: u8| {
            if cut {
                t |= bit;
            }
        };
        flag(
            e.category.set(Some(category.as_bytes())),
            truncated::CATEGORY,
        );
        flag(e.rule.set(Some(rule.as_bytes())), truncated::RULE);
        flag(
            e.caller.set(facts.caller.map(str::as_bytes)),
            truncated::CALLER,
        );
        flag(
            e.callee.set(facts.callee.map(str::as_bytes)),
            truncated::CALLEE,
        );
        flag(e.domain.set(facts.domain), truncated::DOMAIN);
        flag(e.url.set(facts.url), truncated::URL);
        flag(e.ingress.set(Some(ingress.as_bytes())), truncated::INGRESS);
        e.truncated = t;
        e
    }
}

/// Event counters. `register` wants the `dragnet` sub-registry (names come out as
/// `dragnet_events_…`).
#[derive(Debug, Clone, Default)]
pub struct EventsMetrics {
    /// Events accepted into the queue.
    pub emitted: Counter,
    /// Events delivered, by sink.
    pub delivered: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Events lost, by reason (`queue_full`, `spool_full`, `rejected`, `encode`).
    pub dropped: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Bytes waiting in the spool, by sink.
    pub spooled_bytes: Family<Vec<(&'static str, &'static str)>, Gauge>,
    /// 1 while the sink is delivering, 0 while it is down (events spool).
    pub sink_up: Family<Vec<(&'static str, &'static str)>, Gauge>,
    /// Handle resolved at start: the data path's only drop reason.
    queue_full: Counter,
}

impl EventsMetrics {
    /// Registers the event metrics under `events_` in `reg` (the `dragnet` sub-registry).
    pub fn register(reg: &mut Registry) -> EventsMetrics {
        let m = EventsMetrics::default();
        let r = reg.sub_registry_with_prefix("events");
        r.register(
            "emitted",
            "Hit events accepted into the queue",
            m.emitted.clone(),
        );
        r.register(
            "delivered",
            "Hit events delivered, by sink",
            m.delivered.clone(),
        );
        r.register(
            "dropped",
            "Hit events lost, by reason (queue_full, spool_full, rejected, encode)",
            m.dropped.clone(),
        );
        r.register(
            "spooled_bytes",
            "Bytes of hit events waiting in the on-disk spool, by sink",
            m.spooled_bytes.clone(),
        );
        r.register(
            "sink_up",
            "1 while the sink delivers, 0 while it is down and events spool",
            m.sink_up.clone(),
        );
        m.resolve()
    }

    fn resolve(mut self) -> EventsMetrics {
        self.queue_full = self.dropped_handle("queue_full");
        self
    }

    /// A drop counter handle (start-up, not the data path).
    pub fn dropped_handle(&self, reason: &'static str) -> Counter {
        self.dropped
            .get_or_create(&vec![("reason", reason)])
            .clone()
    }

    /// Events dropped because the queue was full.
    pub fn queue_full(&self) -> u64 {
        self.queue_full.get()
    }
}

/// One-in-N sampling per plane for per-hit logs: separate from events (every hit is an event,
/// few are logged). Lock-free; a plane may call it on the data path.
#[derive(Debug)]
pub struct LogSampler {
    every: u64,
    seen: [AtomicU64; Plane::ALL.len()],
}

impl LogSampler {
    /// `every` = 0 logs nothing, 1 logs every hit.
    pub fn new(every: u32) -> LogSampler {
        LogSampler {
            every: u64::from(every),
            seen: Default::default(),
        }
    }

    /// True for the first hit of each run of `every` on this plane.
    #[inline]
    pub fn sample(&self, plane: Plane) -> bool {
        if self.every == 0 {
            return false;
        }
        self.seen
            .get(plane as usize)
            .is_some_and(|c| c.fetch_add(1, Ordering::Relaxed) % self.every == 0)
    }
}

struct Shared {
    queue: ArrayQueue<HitEvent>,
    seq: AtomicU64,
    metrics: EventsMetrics,
}

/// The data path's handle: clone it into every worker (one `Arc`).
#[derive(Clone)]
pub struct Events {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared {
            Some(s) => write!(f, "Events({}/{} queued)", s.queue.len(), s.queue.capacity()),
            None => f.write_str("Events(off)"),
        }
    }
}

impl Events {
    /// A handle that drops everything silently: events are off.
    pub fn off() -> Events {
        Events { shared: None }
    }

    /// A handle and the queue's consumer end, without tasks (for [`start`] and tests).
    pub fn channel(capacity: usize, metrics: EventsMetrics) -> (Events, Receiver) {
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(capacity.max(1)),
            seq: AtomicU64::new(0),
            metrics: metrics.resolve(),
        });
        (
            Events {
                shared: Some(shared.clone()),
            },
            Receiver { shared },
        )
    }

    /// True if events are on.
    pub fn is_on(&self) -> bool {
        self.shared.is_some()
    }

    /// Records one hit. Data path: copies into a fixed slot and pushes to the bounded queue; no
    /// allocation, lock, log or wait. Full queue: the event is dropped and counted.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn emit(
        &self,
        plane: Plane,
        action: Action,
        category: &str,
        rule: &str,
        source: Option<IpAddr>,
        facts: Facts<'_>,
        ingress: &str,
    ) {
        let Some(s) = &self.shared else { return };
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        let e = HitEvent::new(
            ts_ms, seq, plane, action, category, rule, source, facts, ingress,
        );
        match s.queue.push(e) {
            Ok(()) => s.metrics.emitted.inc(),
            Err(_) => s.metrics.queue_full.inc(),
        };
    }
}

/// The consumer end of the queue (one per [`Events`] family).
pub struct Receiver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "events::Receiver({} queued)", self.shared.queue.len())
    }
}

impl Receiver {
    /// The oldest queued event.
    pub fn pop(&self) -> Option<HitEvent> {
        self.shared.queue.pop()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

pub use sink::{start, EventsTask, StartError};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn emit_copies_and_flags_truncation() {
        let (ev, rx) = Events::channel(4, EventsMetrics::default());
        let long = "9".repeat(100);
        ev.emit(
            Plane::Sip,
            Action::Block,
            "fraud",
            "r1",
            Some("192.0.2.1".parse().unwrap()),
            Facts {
                caller: Some(&long),
                callee: Some("+8613912345678"),
                ..Facts::default()
            },
            "udp0",
        );
        let e = rx.pop().unwrap();
        assert_eq!(e.caller.get().unwrap().len(), NUMBER_BYTES);
        assert_eq!(e.callee.get().unwrap(), b"+8613912345678");
        assert!(e.domain.get().is_none());
        assert_eq!(e.truncated, truncated::CALLER);
        assert_eq!(e.category.get().unwrap(), b"fraud");
        assert!(rx.pop().is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (ev, rx) = Events::channel(2, EventsMetrics::default());
        for _ in 0..5 {
            ev.emit(
                Plane::Dns,
                Action::Warn,
                "c",
                "r",
                None,
                Facts::default(),
                "i",
            );
        }
        assert_eq!(rx.len(), 2);
        assert_eq!(ev.shared.as_ref().unwrap().metrics.queue_full(), 3);
        assert_eq!(ev.shared.as_ref().unwrap().metrics.emitted.get(), 2);
        // Off: nothing, no panic.
        Events::off().emit(
            Plane::Dns,
            Action::Warn,
            "c",
            "r",
            None,
            Facts::default(),
            "i",
        );
    }

    #[test]
    fn log_sampler_one_in_n_per_plane() {
        let s = LogSampler::new(3);
        let got: Vec<bool> = (0..6).map(|_| s.sample(Plane::Sip)).collect();
        assert_eq!(got, [true, false, false, true, false, false]);
        assert!(s.sample(Plane::Dns));
        assert!(!LogSampler::new(0).sample(Plane::Sip));
    }
}
