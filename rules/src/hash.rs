//! Stable 64-bit keys for names and URL expressions.
//!
//! The keys are stored in snapshots, so the function is fixed forever for a format version: it must
//! not depend on the platform, the Rust version or a random seed (unlike `std`'s `DefaultHasher`).
//!
//! Host names are hashed **right to left** (FNV-1a over the reversed, ASCII-lower-cased bytes,
//! finished with the murmur3 64-bit finaliser). Walking a name once from its end yields the key of
//! every label suffix on the way — `com`, `evil.com`, `a.evil.com` — so the engine checks all the
//! suffixes of a name in one pass over its bytes, with no allocation and no re-hashing.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The murmur3 64-bit finaliser: spreads FNV's weak low bits over the whole word.
#[inline]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Incremental right-to-left hasher. Feed bytes from the last to the first; `key()` is the key of
/// the bytes fed so far (i.e. of the current suffix).
#[derive(Clone, Copy, Debug)]
pub struct SuffixHasher(u64);

impl Default for SuffixHasher {
    fn default() -> Self {
        SuffixHasher(FNV_OFFSET)
    }
}

impl SuffixHasher {
    #[inline]
    pub fn push(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
    }
    #[inline]
    pub const fn key(self) -> u64 {
        fmix64(self.0)
    }
}

/// The key of a whole byte string (a normalised host name or a URL expression). ASCII case is
/// ignored, so `Evil.COM` and `evil.com` have the same key.
#[inline]
pub fn key_of(bytes: &[u8]) -> u64 {
    let mut h = SuffixHasher::default();
    for &b in bytes.iter().rev() {
        h.push(b);
    }
    h.key()
}

/// Visit the keys of every label suffix of `host` (a name without trailing dot), longest last:
/// for `a.evil.com` the callback sees (`com`, 7), (`evil.com`, 2), (`a.evil.com`, 0) as
/// `(key, start offset)`. Stops early when the callback returns `false`.
#[inline]
pub fn for_each_suffix(host: &[u8], mut f: impl FnMut(u64, usize) -> bool) {
    let mut h = SuffixHasher::default();
    let mut i = host.len();
    while i > 0 {
        i -= 1;
        let b = host[i];
        if b == b'.' {
            // The suffix after this dot is complete.
            if i + 1 < host.len() && !f(h.key(), i + 1) {
                return;
            }
        }
        h.push(b);
    }
    if !host.is_empty() {
        f(h.key(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keys_equal_whole_keys() {
        let host = b"a.b.evil.com";
        let mut seen = Vec::new();
        for_each_suffix(host, |k, off| {
            seen.push((k, off));
            true
        });
        assert_eq!(seen.len(), 4);
        for (k, off) in seen {
            assert_eq!(k, key_of(&host[off..]), "suffix at {off}");
        }
    }

    #[test]
    fn case_insensitive_and_distinct() {
        assert_eq!(key_of(b"Evil.COM"), key_of(b"evil.com"));
        assert_ne!(key_of(b"evil.com"), key_of(b"notevil.com"));
        assert_ne!(key_of(b"evil.com"), key_of(b"evil.co"));
    }

    const KEY_OF_COM: u64 = 6_493_189_348_510_184_485;

    #[test]
    fn stable_value() {
        // The key is part of the snapshot format: it must never change within a format version.
        assert_eq!(key_of(b""), fmix64(FNV_OFFSET));
        assert_eq!(key_of(b"com"), KEY_OF_COM);
    }
}
