//! The simulator's own pseudo-random numbers and hashing.
//!
//! Why not the `rand` crate: the generated rule sets are golden inputs for benches and tests, so
//! the same seed must give the same bytes on every platform, forever. `rand`'s algorithms and
//! value-mapping have changed between major versions; these few lines will not.
//!
//! - [`Rng`] is xoshiro256** 1.0 (Blackman & Vigna, <https://prng.di.unimi.it/>), seeded through
//!   SplitMix64 as its authors recommend. Only integer arithmetic: no floats, no `usize` in the
//!   stream, so 32- and 64-bit targets agree.
//! - Ranges use the multiply-high mapping (Lemire, "Fast random integer generation in an
//!   interval", 2019) without the rejection step: a bias of at most `n / 2^64` is irrelevant for
//!   synthetic data and keeps one draw per value, which keeps streams easy to reason about.
//! - [`FastSet`] is a `HashSet<u64>` with a fixed, cheap hasher: it only answers membership, its
//!   iteration order is never used for output, so it cannot make output depend on the platform.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// SplitMix64's output function (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): a bijective 64-bit mixer.
#[inline]
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: only used to expand a 64-bit seed into xoshiro's 256-bit state.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// Independent streams, one per generated list, so that asking for more URLs never changes the
/// numbers (each list depends only on the seed and its own count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Stream {
    Numbers = 1,
    Prefixes = 2,
    Domains = 3,
    Urls = 4,
    Keywords = 5,
    /// The key that splits the number space into "may be generated" and "negative" halves.
    NumberParity = 6,
    NegNumbers = 7,
    NegDomains = 8,
    NegUrls = 9,
    NegMessages = 10,
    PosSamples = 11,
    /// The simulator's traffic: which fact each request carries (scenario seed).
    Traffic = 12,
    /// Clean callers and callees drawn from the scenario's number plans.
    TrafficNumbers = 13,
    /// The key that spreads the generated domains over the domain formats (`rulegen::placement`).
    DomainFormats = 14,
}

/// xoshiro256** 1.0.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for one stream of one seed.
    pub(crate) fn new(seed: u64, stream: Stream) -> Self {
        let mut sm = SplitMix64::new(seed ^ mix64(stream as u64));
        let mut s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        // xoshiro's only bad state is all zeros; SplitMix64 cannot produce it from four
        // consecutive outputs, but say so in code rather than rely on it silently.
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A value in `0..n` (0 when `n == 0`).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    #[inline]
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with probability `per_mille / 1000`.
    #[inline]
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One element of a table (the default value for an empty table: never a panic).
    #[inline]
    pub(crate) fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or_default()
    }

    /// One element of a weighted table `(value, weight)`.
    pub(crate) fn weighted<T: Copy + Default>(&mut self, table: &[(T, u32)]) -> T {
        let total: u64 = table.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut x = self.below(total);
        for &(v, w) in table {
            let w = u64::from(w);
            if x < w {
                return v;
            }
            x -= w;
        }
        T::default()
    }

    /// `len` random decimal digits appended to `out` (leading zeros allowed).
    pub(crate) fn push_digits(&mut self, out: &mut String, len: usize) {
        for _ in 0..len {
            out.push(char::from(b'0' + self.below(10) as u8));
        }
    }

    /// `len` characters from `[a-z0-9]`, the first one a letter (a DNS label or a URL token).
    pub(crate) fn push_token(&mut self, out: &mut String, len: usize) {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for i in 0..len {
            let n = if i == 0 { 26 } else { ALNUM.len() as u64 };
            let c = ALNUM.get(self.below(n) as usize).copied().unwrap_or(b'x');
            out.push(char::from(c));
        }
    }
}

/// A 64-bit hash of a byte string (FNV-1a folded through [`mix64`]). Used only for dedup and
/// membership: a collision can make a generator skip a candidate, never emit a duplicate.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h ^ bytes.len() as u64)
}

/// Hasher for keys that are already `u64`s (numbers, or [`hash_bytes`] of strings).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(bytes) ^ self.0.rotate_left(5);
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(x ^ self.0);
    }
}

/// A set of 64-bit keys with the fixed hasher above.
pub(crate) type FastSet = HashSet<u64, BuildHasherDefault<U64Hasher>>;

/// How much to allocate up front for `n` entries: all of it for the sizes the simulator is
/// for (up to 10^7, saving rehashes), never more than 2^24 entries, so that an absurd count is
/// a long run, not a capacity-overflow panic.
pub(crate) fn capacity_hint(n: usize) -> usize {
    n.min(1 << 24)
}

/// An empty set sized for `n` keys (see [`capacity_hint`]).
pub(crate) fn fast_set(n: usize) -> FastSet {
    FastSet::with_capacity_and_hasher(capacity_hint(n), BuildHasherDefault::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_vector() {
        // Reference outputs of Vigna's splitmix64.c for seed 0.
        let mut sm = SplitMix64::new(0);
        assert_eq!(sm.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(sm.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(sm.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro_matches_the_reference_algorithm() {
        // xoshiro256** with state {1, 2, 3, 4}: first outputs of the reference C code.
        let mut r = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        // Worked by hand from the algorithm: 2*5 rotl 7 *9; then s[1] == 0; then 262149*5 rotl 7 *9.
        assert_eq!(got, [11520, 0, 1509978240]);
    }

    #[test]
    fn streams_are_independent_and_stable() {
        let mut a = Rng::new(7, Stream::Numbers);
        let mut b = Rng::new(7, Stream::Domains);
        let mut a2 = Rng::new(7, Stream::Numbers);
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xa2: Vec<u64> = (0..8).map(|_| a2.next_u64()).collect();
        assert_eq!(xa, xa2);
        assert_ne!(xa, xb);
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut r = Rng::new(1, Stream::Numbers);
        assert_eq!(r.below(0), 0);
        for n in [1u64, 2, 3, 7, 10, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(r.below(n) < n);
            }
        }
        for _ in 0..200 {
            let x = r.range(5, 9);
            assert!((5..=9).contains(&x));
        }
        assert_eq!(r.range(9, 5), 9);
    }

    #[test]
    fn pick_and_weighted_never_panic_on_empty_tables() {
        let mut r = Rng::new(1, Stream::Numbers);
        let empty: [&str; 0] = [];
        assert_eq!(r.pick(&empty), "");
        let empty_w: [(u8, u32); 0] = [];
        assert_eq!(r.weighted(&empty_w), 0);
        let zero_w = [(5u8, 0u32)];
        assert_eq!(r.weighted(&zero_w), 0);
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut r = Rng::new(3, Stream::Urls);
        let t = [(1u8, 0u32), (2, 5), (3, 0)];
        for _ in 0..100 {
            assert_eq!(r.weighted(&t), 2);
        }
    }

    #[test]
    fn absurd_sizes_do_not_overflow_capacity() {
        assert_eq!(capacity_hint(usize::MAX), 1 << 24);
        assert_eq!(capacity_hint(10), 10);
    }

    #[test]
    fn tokens_start_with_a_letter() {
        let mut r = Rng::new(9, Stream::Urls);
        for _ in 0..100 {
            let mut s = String::new();
            r.push_token(&mut s, 8);
            assert_eq!(s.len(), 8);
            assert!(s.as_bytes()[0].is_ascii_lowercase());
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
    }
}
