//! The UDP workers' packet cache: upstream answers by question, for their TTL.
//!
//! A fixed, set-associative table: a key (the [`crate::dns::cache_key`] bytes) hashes with a
//! per-worker random seed to one bucket of [`WAYS`] ways; a bucket is one 64-byte line holding
//! each way's tag (32 hash bits) and expiry, and way `w` of bucket `b` owns entry `b * WAYS + w`,
//! which holds the key's bytes followed by the answer's. A lookup reads one bucket line and, on
//! a tag match, one entry: no pointer chasing through a general hash map, no key comparison
//! unless 32 bits of hash agree, and a bounded amount of work whatever the names are (a flood of
//! names that collide in one bucket only evicts that bucket's entries; the seed keeps the
//! placement unpredictable from outside).
//!
//! Replacement: an insert takes an empty or expired way of its bucket, else the way that expires
//! first. An entry's buffer is allocated when the way is first used and then reused (it grows
//! only for an answer longer than any it held), so a warm cache serves and refills without
//! allocating. Memory: `capacity` (rounded up to whole buckets) × about 40 octets of table, plus
//! the answers actually held.

/// Ways per bucket: eight 32-bit tags and eight 32-bit expiries fill one 64-byte cache line.
pub const WAYS: usize = 8;

/// Initial size of an entry's buffer: a key plus a typical answer fit without growing.
const ENTRY_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// 0: empty; else 32 bits of the key's hash with the lowest bit set.
    tags: [u32; WAYS],
    /// Unix seconds (low 32 bits) from which the way's entry is stale.
    expires: [u32; WAYS],
}

#[derive(Debug, Default)]
struct Entry {
    /// The key's bytes, then the answer's.
    bytes: Vec<u8>,
    key_len: u16,
    /// Unix seconds when it was stored (for aging its TTLs).
    stored: u64,
}

/// A hit: the cached answer and the seconds since it was stored.
#[derive(Debug)]
pub struct Hit<'c> {
    pub answer: &'c [u8],
    pub age: u32,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PacketCache {
    buckets: Vec<Bucket>,
    entries: Vec<Entry>,
    seed: u64,
    len: usize,
}

/// 64-bit multiply, folded: the mixing step of the key hash.
#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

/// A seeded hash of a short key, eight octets at a time (keys are ≤ 260 octets). Not a
/// cryptographic MAC: the seed only keeps bucket placement unpredictable, and a bucket bounds
/// what a collision can cost.
fn hash(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed ^ (key.len() as u64).wrapping_mul(P1);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w), P0);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(w), P0);
    }
    mix(h, P1)
}

impl PacketCache {
    /// A cache of at least `capacity` answers (0: a cache that holds nothing). `seed`: random,
    /// per worker.
    pub fn new(capacity: usize, seed: u64) -> PacketCache {
        let n = capacity.div_ceil(WAYS);
        PacketCache {
            buckets: vec![Bucket::default(); n],
            entries: (0..n * WAYS).map(|_| Entry::default()).collect(),
            seed,
            len: 0,
        }
    }

    /// Answers held (stale ones included until they are looked up or replaced).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Answers the table can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    fn place(&self, key: &[u8]) -> (usize, u32) {
        let h = hash(self.seed, key);
        // Multiply-shift range reduction: any bucket count, no modulo.
        let b = ((u128::from(h) * self.buckets.len() as u128) >> 64) as usize;
        (b, (h as u32) | 1)
    }

    /// The way of `bucket` that holds `key`.
    fn way(&self, b: usize, tag: u32, key: &[u8]) -> Option<usize> {
        let bucket = &self.buckets[b];
        (0..WAYS).find(|&w| {
            let e = &self.entries[b * WAYS + w];
            bucket.tags[w] == tag && e.bytes.get(..usize::from(e.key_len)) == Some(key)
        })
    }

    fn find(&self, key: &[u8]) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let (b, tag) = self.place(key);
        self.way(b, tag, key).map(|w| (b, w))
    }

    /// The answer stored under `key`, if it is still fresh at `now` (Unix seconds). A stale one
    /// is dropped.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<Hit<'_>> {
        let (b, w) = self.find(key)?;
        let e = &self.entries[b * WAYS + w];
        if now as u32 >= self.buckets[b].expires[w] || now < e.stored {
            self.buckets[b].tags[w] = 0;
            self.len -= 1;
            return None;
        }
        Some(Hit {
            answer: &e.bytes[usize::from(e.key_len)..],
            age: (now - e.stored) as u32,
        })
    }

    /// Drops the answer stored under `key` (it could not be served).
    pub fn remove(&mut self, key: &[u8]) {
        if let Some((b, w)) = self.find(key) {
            self.buckets[b].tags[w] = 0;
            self.len -= 1;
        }
    }

    /// Stores `answer` under `key` for `ttl` seconds from `now`, replacing what was stored under
    /// the same key, else an empty or stale way, else the way that expires first.
    pub fn insert(&mut self, key: &[u8], answer: &[u8], now: u64, ttl: u32) {
        if self.buckets.is_empty() || ttl == 0 {
            return;
        }
        let Ok(key_len) = u16::try_from(key.len()) else {
            return;
        };
        let (b, tag) = self.place(key);
        let now32 = now as u32;
        let w = self.way(b, tag, key).unwrap_or_else(|| {
            let bucket = &self.buckets[b];
            (0..WAYS)
                .find(|&w| bucket.tags[w] == 0 || bucket.expires[w] <= now32)
                .or_else(|| (0..WAYS).min_by_key(|&w| bucket.expires[w]))
                .unwrap_or_default()
        });
        let bucket = &mut self.buckets[b];
        if bucket.tags[w] == 0 {
            self.len += 1;
        }
        bucket.tags[w] = tag;
        bucket.expires[w] = now.saturating_add(u64::from(ttl)).min(u64::from(u32::MAX)) as u32;
        let e = &mut self.entries[b * WAYS + w];
        if e.bytes.capacity() == 0 {
            e.bytes.reserve(ENTRY_BYTES.max(key.len() + answer.len()));
        }
        e.bytes.clear();
        e.bytes.extend_from_slice(key);
        e.bytes.extend_from_slice(answer);
        e.key_len = key_len;
        e.stored = now;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        format!("\x07name{i:03}\x07example\x00\x00\x01\x00\x01\x04").into_bytes()
    }

    #[test]
    fn stores_serves_ages_and_expires() {
        let mut c = PacketCache::new(64, 7);
        assert!(c.get(&key(1), 100).is_none());
        c.insert(&key(1), b"answer one", 100, 30);
        let h = c.get(&key(1), 110).unwrap();
        assert_eq!((h.answer, h.age), (&b"answer one"[..], 10));
        assert!(c.get(&key(2), 110).is_none(), "another key misses");
        assert!(c.get(&key(1), 130).is_none(), "stale at stored + ttl");
        assert!(c.get(&key(1), 110).is_none(), "a stale entry is dropped");
        assert!(c.is_empty());
        c.insert(&key(1), b"v1", 200, 60);
        c.insert(&key(1), b"version two", 201, 60);
        assert_eq!(c.len(), 1, "same key replaces");
        assert_eq!(c.get(&key(1), 202).unwrap().answer, b"version two");
        c.remove(&key(1));
        assert!(c.get(&key(1), 202).is_none() && c.is_empty());
        c.insert(&key(3), b"x", 200, 0);
        assert!(c.get(&key(3), 200).is_none(), "TTL 0 is not cached");
        let mut none = PacketCache::new(0, 1);
        none.insert(&key(1), b"x", 1, 10);
        assert!(none.get(&key(1), 1).is_none());
    }

    #[test]
    fn a_full_bucket_evicts_what_expires_first() {
        // One bucket: every key lands in it.
        let mut c = PacketCache::new(WAYS, 3);
        assert_eq!(c.capacity(), WAYS);
        for i in 0..WAYS as u32 {
            c.insert(&key(i), b"a", 1000, 100 + i);
        }
        assert_eq!(c.len(), WAYS);
        c.insert(&key(99), b"new", 1000, 500);
        assert!(c.get(&key(0), 1001).is_none(), "shortest-lived way evicted");
        for i in 1..WAYS as u32 {
            assert!(c.get(&key(i), 1001).is_some(), "key {i} kept");
        }
        assert_eq!(c.get(&key(99), 1001).unwrap().answer, b"new");
        // Once stale, ways are reused before live ones are evicted.
        c.insert(&key(200), b"b", 1101, 100);
        assert!(c.get(&key(1), 1101).is_none());
        assert!(c.get(&key(2), 1101).is_some());
        assert_eq!(c.len(), WAYS);
    }

    #[test]
    fn many_keys_spread_over_the_buckets() {
        let mut c = PacketCache::new(4096, 11);
        for i in 0..3000 {
            c.insert(&key(i), &i.to_be_bytes(), 10, 60);
        }
        let kept = (0..3000)
            .filter(|i| {
                c.get(&key(*i), 11)
                    .is_some_and(|h| h.answer == i.to_be_bytes())
            })
            .count();
        // 3000 keys in 512 buckets of 8: (mean 5.9 a bucket) a few buckets overflow, most keys stay.
        assert!(kept > 2800, "kept {kept}");
    }
}
