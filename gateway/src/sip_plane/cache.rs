//! The per-transaction verdict cache.
//!
//! A stateless proxy keeps no transactions, yet RFC 3261 §17.2.1 wants a retransmitted INVITE to
//! get the same final response, and the ACK to a locally generated reject must be absorbed
//! (§16.7 / §17.2.1: the ACK of a non-2xx belongs to the INVITE transaction). This cache remembers,
//! per INVITE transaction, the verdict, the snapshot generation that made it and whether we
//! answered the INVITE ourselves — for `transaction_seconds` (≥ 64·T1 = 32 s, Timer B/H).
//!
//! It is a fixed array of slots (two candidate slots per key), each a small seqlock: a sequence
//! number (odd while a writer is inside) and three data words. No lock, no allocation after start.
//! Writers claim a slot by moving its sequence from even to odd with one compare-exchange and skip
//! caching if another writer holds it; readers read the sequence, the data, then the sequence
//! again, and take the entry only if it did not move — so a torn read is a miss, never a wrong
//! verdict, even when other writers put the same key back in between (the ABA case that comparing
//! keys alone misses: the concurrency test below caught it). A miss only means the INVITE is
//! judged again, which differs only if a reload happened in between.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use dragnet_rules::{Action, Fact, RuleRef, Verdict};

const EMPTY: u64 = 0;

#[derive(Debug)]
struct Slot {
    /// Even: stable; odd: a writer is inside. Only ever grows.
    seq: AtomicU64,
    key: AtomicU64,
    /// rule (32) | category (16) | action (4) | fact (4) | flags (8)
    a: AtomicU64,
    /// generation (32) | expiry, Unix seconds (32)
    b: AtomicU64,
}

/// What was decided for one INVITE transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub verdict: Verdict,
    pub generation: u32,
    /// We sent the final response ourselves (reject or 302): its ACK is ours to absorb.
    pub answered_locally: bool,
}

const F_RULE: u64 = 1;
const F_PROTECTED: u64 = 2;
const F_LOCAL: u64 = 4;

fn action_bits(a: Action) -> u64 {
    match a {
        Action::Allow => 0,
        Action::Tag => 1,
        Action::Warn => 2,
        Action::Block => 3,
    }
}

fn action_from(b: u64) -> Action {
    match b & 3 {
        1 => Action::Tag,
        2 => Action::Warn,
        3 => Action::Block,
        _ => Action::Allow,
    }
}

fn fact_bits(f: Fact) -> u64 {
    match f {
        Fact::None => 0,
        Fact::Caller => 1,
        Fact::Callee => 2,
        Fact::Domain => 3,
        Fact::Url => 4,
        Fact::Keyword => 5,
    }
}

fn fact_from(b: u64) -> Fact {
    match b & 15 {
        1 => Fact::Caller,
        2 => Fact::Callee,
        3 => Fact::Domain,
        4 => Fact::Url,
        5 => Fact::Keyword,
        _ => Fact::None,
    }
}

fn pack(e: &Entry) -> u64 {
    let v = &e.verdict;
    let mut flags = 0;
    if v.rule.is_some() {
        flags |= F_RULE;
    }
    if v.protected {
        flags |= F_PROTECTED;
    }
    if e.answered_locally {
        flags |= F_LOCAL;
    }
    (u64::from(v.rule.map_or(0, |r| r.0)) << 32)
        | (u64::from(v.category) << 16)
        | (action_bits(v.action) << 12)
        | (fact_bits(v.fact) << 8)
        | flags
}

fn unpack(a: u64, generation: u32) -> Entry {
    let flags = a & 0xff;
    Entry {
        verdict: Verdict {
            action: action_from(a >> 12),
            rule: (flags & F_RULE != 0).then_some(RuleRef((a >> 32) as u32)),
            category: (a >> 16) as u16,
            fact: fact_from(a >> 8),
            protected: flags & F_PROTECTED != 0,
        },
        generation,
        answered_locally: flags & F_LOCAL != 0,
    }
}

/// The cache. `slots` is rounded up to a power of two.
#[derive(Debug)]
pub struct TxCache {
    slots: Box<[Slot]>,
    mask: usize,
    ttl: u32,
}

impl TxCache {
    pub fn new(slots: usize, ttl_seconds: u32) -> TxCache {
        let n = slots.max(2).next_power_of_two();
        TxCache {
            slots: (0..n)
                .map(|_| Slot {
                    seq: AtomicU64::new(0),
                    key: AtomicU64::new(EMPTY),
                    a: AtomicU64::new(0),
                    b: AtomicU64::new(0),
                })
                .collect(),
            mask: n - 1,
            ttl: ttl_seconds,
        }
    }

    fn fix(key: u64) -> u64 {
        if key == EMPTY {
            0x5555
        } else {
            key
        }
    }

    fn pair(&self, key: u64) -> [usize; 2] {
        let i = (key as usize) & self.mask;
        [i, i ^ 1]
    }

    /// The entry for `key`, if present and not expired at `now` (Unix seconds).
    #[inline]
    pub fn get(&self, key: u64, now: u64) -> Option<Entry> {
        let key = Self::fix(key);
        for i in self.pair(key) {
            let s = &self.slots[i];
            let s1 = s.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                continue; // a writer is inside: treat as a miss
            }
            let k = s.key.load(Ordering::Relaxed);
            let a = s.a.load(Ordering::Relaxed);
            let b = s.b.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) != s1 || k != key {
                continue;
            }
            if (b & 0xffff_ffff) < now {
                return None;
            }
            return Some(unpack(a, (b >> 32) as u32));
        }
        None
    }

    /// Remembers `e` for `key` until `now + ttl`. Best effort: skipped if both candidate slots
    /// are being written by others at this instant.
    #[inline]
    pub fn put(&self, key: u64, e: &Entry, now: u64) {
        let key = Self::fix(key);
        let [i, j] = self.pair(key);
        // Prefer the slot that already holds this key, then an expired or empty one.
        let expired = |s: &Slot| {
            s.key.load(Ordering::Relaxed) == EMPTY
                || (s.b.load(Ordering::Relaxed) & 0xffff_ffff) < now
        };
        let order = if self.slots[j].key.load(Ordering::Relaxed) == key
            || (!expired(&self.slots[i]) && expired(&self.slots[j]))
        {
            [j, i]
        } else {
            [i, j]
        };
        for ix in order {
            let s = &self.slots[ix];
            let seq = s.seq.load(Ordering::Relaxed);
            if seq & 1 == 1
                || s.seq
                    .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // The data stores must not become visible before the odd sequence.
            fence(Ordering::Release);
            s.key.store(key, Ordering::Relaxed);
            s.a.store(pack(e), Ordering::Relaxed);
            let exp = (now + u64::from(self.ttl)).min(u64::from(u32::MAX));
            s.b.store((u64::from(e.generation) << 32) | exp, Ordering::Relaxed);
            s.seq.store(seq + 2, Ordering::Release);
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(action: Action, rule: Option<u32>, local: bool) -> Entry {
        Entry {
            verdict: Verdict {
                action,
                rule: rule.map(RuleRef),
                category: 7,
                fact: Fact::Callee,
                protected: false,
            },
            generation: 3,
            answered_locally: local,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let c = TxCache::new(64, 40);
        let e = entry(Action::Block, Some(12345), true);
        c.put(0xdead_beef, &e, 1000);
        assert_eq!(c.get(0xdead_beef, 1000), Some(e));
        assert_eq!(c.get(0xdead_beef, 1040), Some(e));
        assert_eq!(c.get(0xdead_beef, 1041), None, "expired after ttl");
        assert_eq!(c.get(0xdead_bee0, 1000), None);
        let a = entry(Action::Allow, None, false);
        c.put(0, &a, 5);
        assert_eq!(c.get(0, 5), Some(a), "key 0 is remapped, not lost");
    }

    #[test]
    fn two_candidate_slots_per_key() {
        let c = TxCache::new(2, 40);
        let e1 = entry(Action::Block, Some(1), true);
        let e2 = entry(Action::Tag, Some(2), false);
        c.put(2, &e1, 10);
        c.put(4, &e2, 10);
        assert_eq!(c.get(2, 10), Some(e1));
        assert_eq!(c.get(4, 10), Some(e2));
    }

    #[test]
    fn concurrent_writers_never_yield_a_foreign_entry() {
        let c = std::sync::Arc::new(TxCache::new(4, 40));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200_000u32 {
                        let key = u64::from(i % 8) + 1;
                        // The rule id encodes the key, so a torn read would show.
                        let e = entry(Action::Block, Some(key as u32 * 1000 + t), true);
                        c.put(key, &e, 1);
                        if let Some(got) = c.get(key, 1) {
                            assert_eq!(got.verdict.rule.unwrap().0 / 1000, key as u32);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
