//! The Bloom-family pre-filter: a compact "certainly not" for the common clean case.
//!
//! A binary fuse filter (xorf `BinaryFuse8`, ≈9 bits per key, false-positive rate ≈ 2⁻⁸) chosen by
//! measurement against `bloomfilter` and `fastbloom` — see `rules/DESIGN.md`. The filter is stored
//! in the snapshot as its descriptor and fingerprint bytes and used in place, never rebuilt at
//! load. A hit only means "look in the exact table": **a filter hit alone never decides anything.**

use xorf::{BinaryFuse8, BinaryFuse8Ref, DmaSerializable, Filter, FilterRef};

/// Length of the serialised descriptor (seed u64 + three u32).
pub const DESCRIPTOR_LEN: usize = <BinaryFuse8 as DmaSerializable>::DESCRIPTOR_LEN;

/// A fuse filter over u64 keys, or nothing for an empty set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Empty when the set is empty (every lookup is then a "no").
    pub(crate) descriptor: Vec<u8>,
    pub(crate) fingerprints: Vec<u8>,
}

impl KeyFilter {
    /// Build from keys (duplicates allowed: they are removed first, as the fuse construction
    /// requires distinct keys).
    pub fn build(keys: &[u64]) -> Result<KeyFilter, String> {
        if keys.is_empty() {
            return Ok(KeyFilter::default());
        }
        let mut uniq = keys.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        let f = BinaryFuse8::try_from(&uniq[..])
            .map_err(|e| format!("building the fuse filter over {} keys: {e}", uniq.len()))?;
        let mut descriptor = vec![0u8; DESCRIPTOR_LEN];
        f.dma_copy_descriptor_to(&mut descriptor);
        Ok(KeyFilter {
            descriptor,
            fingerprints: f.dma_fingerprints().to_vec(),
        })
    }

    /// Check that the stored descriptor cannot index outside the fingerprints, so that
    /// `contains` can never panic on a crafted snapshot.
    pub fn validate(&self) -> Result<(), String> {
        if self.descriptor.is_empty() {
            return if self.fingerprints.is_empty() {
                Ok(())
            } else {
                Err("fingerprints without a descriptor".into())
            };
        }
        if self.descriptor.len() != DESCRIPTOR_LEN {
            return Err(format!(
                "descriptor is {} bytes, expected {DESCRIPTOR_LEN}",
                self.descriptor.len()
            ));
        }
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.descriptor[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let (len, mask, count_len) = (word(8), word(12), word(16));
        // hash_of_hash: h0 < count_len; h1, h2 stay inside the aligned block of `len` that
        // follows, so every index is < count_len + 2·len when len is a power of two.
        let ok = len.is_power_of_two()
            && mask == len - 1
            && count_len % len == 0
            && (count_len as usize)
                .checked_add(2 * len as usize)
                .is_some_and(|end| end <= self.fingerprints.len());
        if ok {
            Ok(())
        } else {
            Err(format!(
                "inconsistent fuse descriptor (segment length {len}, mask {mask}, count length \
                 {count_len}) for {} fingerprints",
                self.fingerprints.len()
            ))
        }
    }

    /// `false` means the key is certainly absent; `true` means "maybe: confirm exactly".
    #[inline]
    pub fn may_contain(&self, key: u64) -> bool {
        if self.descriptor.is_empty() {
            return false;
        }
        BinaryFuse8Ref::from_dma(&self.descriptor, &self.fingerprints).contains(&key)
    }

    pub fn size_bytes(&self) -> usize {
        self.descriptor.len() + self.fingerprints.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<u64> = (0..50_000u64)
            .map(|i| i * 7919 + 8_613_000_000_000)
            .collect();
        let f = KeyFilter::build(&keys).unwrap();
        f.validate().unwrap();
        assert!(keys.iter().all(|&k| f.may_contain(k)));
        let fp = (0..100_000u64)
            .map(|i| 1 + i * 7919 * 3 + 447_000_000_000)
            .filter(|k| !keys.contains(k) && f.may_contain(*k))
            .count();
        assert!(fp < 1_000, "false positives {fp} of 100000");
    }

    #[test]
    fn tiny_and_empty_sets() {
        let e = KeyFilter::build(&[]).unwrap();
        assert!(!e.may_contain(1));
        e.validate().unwrap();
        for n in 1..40u64 {
            let keys: Vec<u64> = (0..n).map(|i| i * 31 + 5).collect();
            let f = KeyFilter::build(&keys).unwrap();
            f.validate().unwrap();
            assert!(keys.iter().all(|&k| f.may_contain(k)), "n={n}");
        }
    }

    #[test]
    fn crafted_descriptor_is_refused() {
        let mut f = KeyFilter::build(&[1, 2, 3, 4, 5]).unwrap();
        f.descriptor[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(f.validate().is_err());
        let mut g = KeyFilter::build(&[1, 2, 3]).unwrap();
        g.fingerprints.truncate(1);
        assert!(g.validate().is_err());
    }
}
