//! What happens to a plane's decision besides the plane's own action (issue 8):
//! 1. the block-rate circuit breaker ([`crate::breaker`]) may downgrade a block to a tag when a
//!    plane's block rate jumps far above its baseline (a bad rule set);
//! 2. a block, warn or tag becomes a hit event ([`crate::events`]): copied into a fixed slot and
//!    queued for the sinks, hashed there (numbers and addresses) — never waited for;
//! 3. one hit in `events.log_sample` per plane is logged, without the facts (no number, no
//!    address in the log: the events carry those, hashed).
//!
//! All of it is lock-free and allocation-free on the data path (`gateway/tests/events_no_alloc.rs`
//! and the planes' no-alloc tests). The planes reach it through [`crate::store::Store::hits`].

use std::net::IpAddr;

use dragnet_rules::{Action, Engine, Number, Verdict};

use crate::breaker::Breaker;
use crate::events::{Events, Facts, LogSampler};
use crate::store::Plane;

/// The breaker, the event queue and the log sampler of one gateway.
#[derive(Debug)]
pub struct Hits {
    pub events: Events,
    pub breaker: Breaker,
    breaker_on: bool,
    sampler: LogSampler,
}

/// A rule id written without allocating (ids longer than the buffer are cut).
#[derive(Debug)]
struct StackStr {
    buf: [u8; 128],
    len: usize,
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl StackStr {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// A number as `+E.164` (or the short code) in a stack buffer.
#[derive(Debug)]
pub struct NumberText {
    buf: [u8; 21],
    len: usize,
}

impl NumberText {
    pub fn new(n: Number) -> NumberText {
        let mut d = [0u8; 20];
        let digits = n.digits(&mut d);
        let mut buf = [0u8; 21];
        let plus = usize::from(!n.is_short_code());
        buf[0] = b'+';
        let len = (digits.len() + plus).min(buf.len());
        buf[plus..len].copy_from_slice(&digits[..len - plus]);
        NumberText { buf, len }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Hits {
    pub fn new(events: Events, breaker: Breaker, breaker_on: bool, log_every: u32) -> Hits {
        Hits {
            events,
            breaker,
            breaker_on,
            sampler: LogSampler::new(log_every),
        }
    }

    /// The breaker's verdict on `action` (unchanged when the breaker is off).
    #[inline]
    pub fn gate(&self, plane: Plane, action: Action) -> Action {
        // Only blocks are downgraded, but every decision feeds the rate.
        if !self.breaker_on {
            return action;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.breaker.gate(plane, action, now_ms)
    }

    /// Records a block, warn or tag (an allow, or a verdict without a rule, is not a hit).
    #[inline]
    pub fn hit(
        &self,
        plane: Plane,
        v: &Verdict,
        engine: &Engine,
        source: Option<IpAddr>,
        facts: Facts<'_>,
        ingress: &str,
    ) {
        if v.action == Action::Allow {
            return;
        }
        let Some(r) = v.rule else {
            return;
        };
        let mut id = StackStr {
            buf: [0; 128],
            len: 0,
        };
        let category = engine.write_rule_id(r, &mut id).unwrap_or("");
        self.events.emit(
            plane,
            v.action,
            category,
            id.as_str(),
            source,
            facts,
            ingress,
        );
        if self.sampler.sample(plane) {
            tracing::info!(
                plane = plane.as_str(),
                action = ?v.action,
                category,
                rule = id.as_str(),
                "hit (sampled; facts go to the events, hashed)"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_e164_or_short_codes() {
        let plan = dragnet_rules::NumberPlan::default();
        let n = Number::parse("+8613800138000", &plan).unwrap();
        assert_eq!(NumberText::new(n).as_str(), "+8613800138000");
        let s = Number::parse("110", &plan).unwrap();
        assert_eq!(NumberText::new(s).as_str(), "110");
    }

    #[test]
    fn long_rule_ids_are_cut_on_a_char_boundary() {
        use std::fmt::Write;
        let mut s = StackStr {
            buf: [0; 128],
            len: 0,
        };
        let long = "规".repeat(100);
        s.write_str(&long).unwrap();
        assert!(s.as_str().len() <= 128 && !s.as_str().is_empty());
    }
}
