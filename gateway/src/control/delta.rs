//! Snapshot deltas: send a gateway that runs snapshot A only what it needs to rebuild snapshot B.
//!
//! A rule-set update changes a few thousand entries among 10⁶, yet the new snapshot is ~18 MB.
//! The rules server sends a *delta* instead: [`make`] describes B as pieces of A plus new bytes,
//! [`apply`] rebuilds B's exact bytes on the gateway. The delta carries no trust of its own: the
//! gateway then verifies B's ed25519 signature over B's SHA-256 exactly as for a full download.
//! What the delta must be is exact, bounded and robust: [`apply`] refuses a delta made against
//! another base, reads nothing outside the base, writes no more than the declared length (itself
//! capped at [`MAX_TARGET_LEN`]) and checks the result's SHA-256 before returning it.
//!
//! Pure code: no I/O, no clock, no `unsafe`, no panics on any input (fuzzed by
//! `fuzz/fuzz_targets/delta_apply.rs`).
//!
//! # Format (version 1)
//!
//! ```text
//! offset size  field
//!      0    8  magic "DRGNDLTA"
//!      8    4  format version (u32 LE) = 1
//!     12   32  SHA-256 of the base (the snapshot the gateway already has)
//!     44   32  SHA-256 of the target (the snapshot to rebuild)
//!     76    8  base length (u64 LE)
//!     84    8  target length (u64 LE), at most MAX_TARGET_LEN
//!     92    …  ops, then END
//! ```
//!
//! Hashes are SHA-256 (FIPS 180-4). Ops (numbers are unsigned LEB128 varints, DWARF 5 §7.6, of at
//! most 10 bytes):
//!
//! ```text
//! 0x00                       END: the last byte of the delta
//! 0x01 zigzag(d) len         COPY base[o .. o+len], o = (end of the previous COPY, or 0) + d
//! 0x02 len bytes[len]        INSERT bytes
//! ```
//!
//! A COPY offset is relative to where the previous COPY ended (zigzag-coded so it may go
//! backwards): in an updated snapshot almost every COPY resumes a few bytes from where the last
//! one stopped, so its offset costs one byte instead of three or four. `len` is never 0.
//!
//! # How `make` finds matches (rsync-style)
//!
//! As in Tridgell and Mackerras, "The rsync algorithm" (ANU TR-CS-96-05, 1996, §3), with both
//! files on one side: the base is cut into fixed blocks of [`BLOCK`] bytes, each indexed by a
//! hash (memory: 8 bytes per slot, 2–4 slots per block for the table's load factor, so about
//! half the base's size with 32-byte blocks). A hash is rolled over every position of the
//! target; a hit is confirmed byte for byte, then extended backwards over the pending literal and
//! forwards as far as the bytes agree. Before consulting the index, `make` tries the position
//! where the last COPY would simply continue, which resynchronises after an overwrite without a
//! lookup and keeps COPY offsets local in runs of repeated blocks. Expected time
//! O(|base| + |target|): a false candidate costs one block compare, a true one is consumed.
//!
//! Snapshot tables are sorted arrays of u64 keys and u32 rule ids: adding one entry shifts
//! everything after it by 8 or 4 bytes. A shifted run is found again within one block of the
//! change (the next block boundary of the base) and extended back to it, so each insertion or
//! removal costs an INSERT of the new bytes and one COPY, ~15 bytes.
//!
//! Block size 32 was chosen by measurement (`block_size_measurement` below: a 10⁵-number
//! snapshot, 2.2 MB, plus 1 000 numbers): delta 9.57 % of the full snapshot with 16-byte
//! blocks, 9.68 % with 32, 10.19 % with 64, 11.88 % with 128. 16 saves 1 % of the delta for
//! twice the index memory; above 32, matches between nearby changes are lost.
//!
//! Most of a realistic delta is two sections that change as a whole, not the new entries: the
//! number set's binary fuse filter (`NFF`, rebuilt from scratch on any change, ~1.1 bytes per
//! key) and its bucket directory (`NDIR`, prefix sums of bucket sizes: one new key adds 1 to every
//! later entry). 10⁶ numbers + 1 000: 21.7 MB snapshot, 1.68 MB delta (7.8 %), of which 1.13 MB
//! filter and 0.52 MB directory.

use sha2::{Digest, Sha256};
use std::fmt;

/// Magic at the start of every delta.
pub const MAGIC: [u8; 8] = *b"DRGNDLTA";
/// The one format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the fixed header before the ops.
pub const HEADER_LEN: usize = 92;
/// Largest target a delta may declare (1 GiB, ~50× a 10⁶-rule snapshot): bounds what a hostile
/// delta can make the gateway allocate.
pub const MAX_TARGET_LEN: u64 = 1 << 30;
/// Block size of the base index (bytes), chosen by measurement (see the module docs).
pub const BLOCK: usize = 32;

const OP_END: u8 = 0x00;
const OP_COPY: u8 = 0x01;
const OP_INSERT: u8 = 0x02;

/// Why a delta was refused. `at` is a byte offset into the delta, `op` the 0-based op number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeltaError {
    /// The delta ends before a complete header, op or END.
    Truncated { at: usize, what: &'static str },
    /// The first 8 bytes are not "DRGNDLTA": this is not a Dragnet snapshot delta.
    BadMagic,
    /// A format version this gateway does not read.
    UnsupportedVersion { found: u32 },
    /// The delta was made against another snapshot than the one the gateway has.
    WrongBase {
        expected_len: u64,
        expected_sha256: [u8; 32],
        actual_len: usize,
        actual_sha256: [u8; 32],
    },
    /// The declared target length exceeds [`MAX_TARGET_LEN`].
    TargetTooLarge { declared: u64 },
    /// A varint longer than 10 bytes or above 2⁶⁴−1.
    BadVarint { op: u64, at: usize },
    /// An op byte that is not END, COPY or INSERT.
    UnknownOp { op: u64, at: usize, tag: u8 },
    /// A COPY or INSERT of 0 bytes (never written by `make`).
    EmptyOp { op: u64, at: usize },
    /// A COPY that would read outside the base (`offset` may be negative).
    CopyOutOfBase {
        op: u64,
        at: usize,
        offset: i128,
        len: u64,
        base_len: usize,
    },
    /// An op that would write past the declared target length.
    OutputOverrun {
        op: u64,
        at: usize,
        written: usize,
        len: u64,
        declared: u64,
    },
    /// Bytes after the END op.
    TrailingBytes { at: usize },
    /// END came before the declared target length was reached.
    ShortOutput { written: usize, declared: u64 },
    /// The rebuilt snapshot's SHA-256 differs from the one the delta declares.
    TargetHashMismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeltaError::Truncated { at, what } => {
                write!(f, "snapshot delta truncated: it ends at byte {at} inside {what}")
            }
            DeltaError::BadMagic => {
                write!(f, "not a snapshot delta: the first 8 bytes are not \"DRGNDLTA\"")
            }
            DeltaError::UnsupportedVersion { found } => write!(
                f,
                "snapshot delta format version {found} is not supported \
                 (this gateway reads {FORMAT_VERSION})"
            ),
            DeltaError::WrongBase {
                expected_len,
                expected_sha256,
                actual_len,
                actual_sha256,
            } => write!(
                f,
                "snapshot delta was made against another base snapshot ({expected_len} bytes, \
                 SHA-256 {}) than the one this gateway runs ({actual_len} bytes, SHA-256 {}): \
                 fetch the full snapshot",
                hex(expected_sha256),
                hex(actual_sha256)
            ),
            DeltaError::TargetTooLarge { declared } => write!(
                f,
                "snapshot delta declares a target of {declared} bytes, \
                 above the limit of {MAX_TARGET_LEN}"
            ),
            DeltaError::BadVarint { op, at } => write!(
                f,
                "snapshot delta op #{op} at byte {at}: a number is longer than 10 bytes \
                 or above 2^64-1"
            ),
            DeltaError::UnknownOp { op, at, tag } => write!(
                f,
                "snapshot delta op #{op} at byte {at}: unknown op code 0x{tag:02x} \
                 (expected END 0x00, COPY 0x01 or INSERT 0x02)"
            ),
            DeltaError::EmptyOp { op, at } => {
                write!(f, "snapshot delta op #{op} at byte {at}: copies or inserts 0 bytes")
            }
            DeltaError::CopyOutOfBase {
                op,
                at,
                offset,
                len,
                base_len,
            } => write!(
                f,
                "snapshot delta op #{op} at byte {at}: COPY of {len} bytes from base offset {offset} \
                 reads outside the {base_len}-byte base"
            ),
            DeltaError::OutputOverrun {
                op,
                at,
                written,
                len,
                declared,
            } => write!(
                f,
                "snapshot delta op #{op} at byte {at}: adding {len} bytes to the {written} already \
                 rebuilt exceeds the declared target length {declared}"
            ),
            DeltaError::TrailingBytes { at } => {
                write!(f, "snapshot delta has bytes after its END op (at byte {at})")
            }
            DeltaError::ShortOutput { written, declared } => write!(
                f,
                "snapshot delta ended after rebuilding {written} bytes of the declared {declared}"
            ),
            DeltaError::TargetHashMismatch { expected, actual } => write!(
                f,
                "snapshot rebuilt from the delta has SHA-256 {}, but the delta declares {}: \
                 the delta is corrupt; fetch the full snapshot",
                hex(actual),
                hex(expected)
            ),
        }
    }
}

impl std::error::Error for DeltaError {}

/// The parsed fixed header.
struct Header {
    base_sha256: [u8; 32],
    target_sha256: [u8; 32],
    base_len: u64,
    target_len: u64,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}

fn read_header(delta: &[u8]) -> Result<Header, DeltaError> {
    if delta.len() < MAGIC.len() {
        return Err(DeltaError::Truncated {
            at: delta.len(),
            what: "the magic",
        });
    }
    if delta[..MAGIC.len()] != MAGIC {
        return Err(DeltaError::BadMagic);
    }
    if delta.len() < HEADER_LEN {
        return Err(DeltaError::Truncated {
            at: delta.len(),
            what: "the header",
        });
    }
    let version = u32::from_le_bytes(array(delta, 8));
    if version != FORMAT_VERSION {
        return Err(DeltaError::UnsupportedVersion { found: version });
    }
    Ok(Header {
        base_sha256: array(delta, 12),
        target_sha256: array(delta, 44),
        base_len: u64::from_le_bytes(array(delta, 76)),
        target_len: u64::from_le_bytes(array(delta, 84)),
    })
}

/// The SHA-256 of the snapshot a delta was made against, or `None` if `delta` has no valid
/// header. Lets a gateway pick, without applying anything, a delta that fits what it runs.
pub fn base_sha256(delta: &[u8]) -> Option<[u8; 32]> {
    read_header(delta).ok().map(|h| h.base_sha256)
}

/// The SHA-256 of the snapshot a delta rebuilds, or `None` if `delta` has no valid header.
pub fn target_sha256(delta: &[u8]) -> Option<[u8; 32]> {
    read_header(delta).ok().map(|h| h.target_sha256)
}

/// Reads ops one by one, tracking the byte offset and op number for errors.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    op: u64,
}

impl Reader<'_> {
    fn varint(&mut self, what: &'static str) -> Result<u64, DeltaError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.b.get(self.at) else {
                return Err(DeltaError::Truncated { at: self.at, what });
            };
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            // The 10th byte may carry only the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(DeltaError::BadVarint {
                    op: self.op,
                    at: self.at - 1,
                });
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DeltaError::BadVarint {
            op: self.op,
            at: self.at,
        })
    }
}

/// Rebuild the target snapshot from `base` (the snapshot the gateway runs) and `delta`.
///
/// Checks, in order: the header, that `base` is the snapshot the delta was made against (length
/// and SHA-256), the declared target length against [`MAX_TARGET_LEN`], every op's bounds, and
/// finally the rebuilt bytes' length and SHA-256. The result is still an unverified snapshot: the
/// caller verifies its signature as for a full download.
pub fn apply(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, DeltaError> {
    apply_to_known_base(base, sha256(base), delta)
}

/// [`apply`] for a caller that already knows `base`'s SHA-256 (a gateway hashed its running
/// snapshot when it installed it): the same checks without hashing the base again. A wrong
/// `base_sha256` cannot produce a wrong result: the rebuilt bytes' SHA-256 is still checked.
pub fn apply_to_known_base(
    base: &[u8],
    base_sha256: [u8; 32],
    delta: &[u8],
) -> Result<Vec<u8>, DeltaError> {
    let h = read_header(delta)?;
    let actual_sha256 = base_sha256;
    if h.base_len != base.len() as u64 || h.base_sha256 != actual_sha256 {
        return Err(DeltaError::WrongBase {
            expected_len: h.base_len,
            expected_sha256: h.base_sha256,
            actual_len: base.len(),
            actual_sha256,
        });
    }
    if h.target_len > MAX_TARGET_LEN {
        return Err(DeltaError::TargetTooLarge {
            declared: h.target_len,
        });
    }
    // Reserve what a genuine delta needs (about the base's size), not blindly what the header
    // declares: a hostile 100-byte delta must not reserve 1 GiB up front. Growth past this is
    // still bounded by the declared length.
    let reserve = usize::try_from(h.target_len)
        .unwrap_or(usize::MAX)
        .min(base.len().saturating_add(delta.len()));
    let mut out: Vec<u8> = Vec::with_capacity(reserve);
    let mut r = Reader {
        b: delta,
        at: HEADER_LEN,
        op: 0,
    };
    let mut copy_end: u64 = 0;
    // The result is hashed as it is written, a cache-sized piece at a time, instead of in a
    // second pass over 20 MB that has left the cache by then.
    let mut hasher = Sha256::new();
    let mut emit = |out: &mut Vec<u8>, src: &[u8]| {
        for piece in src.chunks(32 * 1024) {
            out.extend_from_slice(piece);
            hasher.update(piece);
        }
    };
    loop {
        let op_at = r.at;
        let Some(&tag) = delta.get(r.at) else {
            return Err(DeltaError::Truncated {
                at: r.at,
                what: "the ops (no END op)",
            });
        };
        r.at += 1;
        let (op, declared) = (r.op, h.target_len);
        let room = move |len: u64, written: usize| {
            if (written as u64).saturating_add(len) > declared {
                Err(DeltaError::OutputOverrun {
                    op,
                    at: op_at,
                    written,
                    len,
                    declared,
                })
            } else {
                Ok(())
            }
        };
        match tag {
            OP_END => {
                if r.at != delta.len() {
                    return Err(DeltaError::TrailingBytes { at: r.at });
                }
                break;
            }
            OP_COPY => {
                let z = r.varint("a COPY offset")?;
                let len = r.varint("a COPY length")?;
                if len == 0 {
                    return Err(DeltaError::EmptyOp {
                        op: r.op,
                        at: op_at,
                    });
                }
                // Zigzag: even = forwards, odd = backwards.
                let d = i128::from(z >> 1) * if z & 1 == 0 { 1 } else { -1 };
                let offset = i128::from(copy_end) + d;
                let end = offset + i128::from(len);
                if offset < 0 || end > base.len() as i128 {
                    return Err(DeltaError::CopyOutOfBase {
                        op: r.op,
                        at: op_at,
                        offset,
                        len,
                        base_len: base.len(),
                    });
                }
                room(len, out.len())?;
                // In range: 0 <= offset < end <= base.len().
                let (o, e) = (offset as usize, end as usize);
                emit(&mut out, &base[o..e]);
                copy_end = e as u64;
            }
            OP_INSERT => {
                let len = r.varint("an INSERT length")?;
                if len == 0 {
                    return Err(DeltaError::EmptyOp {
                        op: r.op,
                        at: op_at,
                    });
                }
                room(len, out.len())?;
                let bytes = usize::try_from(len)
                    .ok()
                    .and_then(|n| delta.get(r.at..r.at.checked_add(n)?))
                    .ok_or(DeltaError::Truncated {
                        at: delta.len(),
                        what: "the bytes of an INSERT",
                    })?;
                emit(&mut out, bytes);
                r.at += bytes.len();
            }
            _ => {
                return Err(DeltaError::UnknownOp {
                    op: r.op,
                    at: op_at,
                    tag,
                })
            }
        }
        r.op += 1;
    }
    if out.len() as u64 != h.target_len {
        return Err(DeltaError::ShortOutput {
            written: out.len(),
            declared: h.target_len,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != h.target_sha256 {
        return Err(DeltaError::TargetHashMismatch {
            expected: h.target_sha256,
            actual,
        });
    }
    Ok(out)
}

/// Describe `target` as a delta against `base` (see the module docs for the format and the
/// matching). Always succeeds; for unrelated inputs the delta is `target` plus ~100 bytes.
/// Targets above [`MAX_TARGET_LEN`] make a delta that [`apply`] refuses.
pub fn make(base: &[u8], target: &[u8]) -> Vec<u8> {
    make_hashed(base, sha256(base), target, sha256(target))
}

/// [`make`] for a caller that already holds both SHA-256s (the rules server's store is
/// content-addressed): saves hashing 2 × 20 MB on the way to the first delta offer.
pub fn make_hashed(
    base: &[u8],
    base_sha256: [u8; 32],
    target: &[u8],
    target_sha256: [u8; 32],
) -> Vec<u8> {
    make_with_block(base, base_sha256, target, target_sha256, BLOCK)
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let d = u64::from_le_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(y.try_into().unwrap_or_default());
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..]
        .iter()
        .zip(&b[i..])
        .take_while(|(x, y)| x == y)
        .count()
}

// The rolling hash: a polynomial over the window, wrapping in 2⁶⁴ (Rabin–Karp). The multiplier
// is odd so that no byte's contribution vanishes; `mix` spreads the weak low bits before the
// hash picks a bucket.
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn mix(h: u64) -> u64 {
    let h = (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn window_hash(w: &[u8]) -> u64 {
    w.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(PRIME).wrapping_add(u64::from(b) + 1)
    })
}

/// Open-addressed index of the base's blocks: each slot holds a 32-bit tag of the block's hash
/// and the block number + 1 (0 = empty). First occurrence of a repeated block wins.
struct Index {
    slots: Vec<(u32, u32)>,
    mask: usize,
    /// One bit per hash bucket, ~16 buckets per block: a rolled position whose bit is clear has
    /// no candidate, found in a 1–2 MB bitmap that stays in cache instead of a miss into the
    /// 8-bytes-per-slot table. Most positions of a rebuilt section (a filter, a directory) are
    /// answered here: it made `make` 2× faster on a 21.7 MB snapshot.
    bits: Vec<u64>,
    bmask: usize,
}

/// The bitmap's bucket of a hash (bits independent of the slot index's low bits).
fn bucket(h: u64) -> usize {
    (h >> 24) as usize
}

impl Index {
    fn build(base: &[u8], block: usize) -> Index {
        // Block numbers are stored as u32: bases above 2³² blocks index only their first 2³²−1.
        let blocks = (base.len() / block).min(u32::MAX as usize - 1);
        let cap = (blocks * 2).max(1).next_power_of_two();
        let nbits = (blocks * 16).max(64).next_power_of_two();
        let mut ix = Index {
            slots: vec![(0, 0); cap],
            mask: cap - 1,
            bits: vec![0; nbits / 64],
            bmask: nbits - 1,
        };
        for n in 0..blocks {
            let h = mix(window_hash(&base[n * block..(n + 1) * block]));
            let b = bucket(h) & ix.bmask;
            if let Some(w) = ix.bits.get_mut(b / 64) {
                *w |= 1 << (b % 64);
            }
            let mut s = (h as usize) & ix.mask;
            loop {
                let slot = &mut ix.slots[s];
                if slot.1 == 0 {
                    *slot = ((h >> 32) as u32, n as u32 + 1);
                    break;
                }
                if slot.0 == (h >> 32) as u32 {
                    break; // same tag: very likely the same content, keep the first
                }
                s = (s + 1) & ix.mask;
            }
        }
        ix
    }

    /// Block numbers whose tag equals `h`'s, in probe order.
    fn candidates(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let tag = (h >> 32) as u32;
        let start = (h as usize) & self.mask;
        let b = bucket(h) & self.bmask;
        let maybe = self
            .bits
            .get(b / 64)
            .is_some_and(|w| w & (1 << (b % 64)) != 0);
        // No bit, no probe: an empty range.
        (0..if maybe { self.mask + 1 } else { 0 })
            .map(move |i| self.slots[(start + i) & self.mask])
            .take_while(|s| s.1 != 0)
            .filter(move |s| s.0 == tag)
            .map(|s| s.1 as usize - 1)
    }
}

/// Writes ops, tracking where the last COPY ended for the relative offsets.
struct Writer {
    out: Vec<u8>,
    copy_end: u64,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn insert(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.push(OP_INSERT);
            self.varint(bytes.len() as u64);
            self.out.extend_from_slice(bytes);
        }
    }

    fn copy(&mut self, offset: usize, len: usize) {
        let (o, prev) = (offset as u64, self.copy_end);
        let z = if o >= prev {
            (o - prev) << 1
        } else {
            ((prev - o) << 1) | 1
        };
        self.out.push(OP_COPY);
        self.varint(z);
        self.varint(len as u64);
        self.copy_end = o + len as u64;
    }
}

fn make_with_block(
    base: &[u8],
    base_sha256: [u8; 32],
    target: &[u8],
    target_sha256: [u8; 32],
    block: usize,
) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::with_capacity(HEADER_LEN + 1024),
        copy_end: 0,
    };
    w.out.extend_from_slice(&MAGIC);
    w.out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    w.out.extend_from_slice(&base_sha256);
    w.out.extend_from_slice(&target_sha256);
    w.out.extend_from_slice(&(base.len() as u64).to_le_bytes());
    w.out
        .extend_from_slice(&(target.len() as u64).to_le_bytes());

    let ix = Index::build(base, block);
    // PRIME^block, to remove the byte leaving the window.
    let out_weight = (0..block).fold(1u64, |p, _| p.wrapping_mul(PRIME));
    let mut pending = 0; // start of the literal not yet emitted
    let mut i = 0; // start of the current window
    let mut h = target.get(..block).map_or(0, window_hash);
    while i + block <= target.len() {
        let window = &target[i..i + block];
        // Where the last COPY would continue if the bytes since were overwritten in place.
        let cont = (w.copy_end as usize).checked_add(i - pending);
        let found = cont
            .filter(|&c| base.get(c..c + block) == Some(window))
            .or_else(|| {
                ix.candidates(mix(h))
                    .map(|n| n * block)
                    .find(|&o| base.get(o..o + block) == Some(window))
            });
        if let Some(mut o) = found {
            let mut t = i;
            while t > pending && o > 0 && target[t - 1] == base[o - 1] {
                t -= 1;
                o -= 1;
            }
            let fwd = common_prefix(&target[i + block..], &base[o + (i - t) + block..]);
            let len = (i - t) + block + fwd;
            w.insert(&target[pending..t]);
            w.copy(o, len);
            i = t + len;
            pending = i;
            if let Some(next) = target.get(i..i + block) {
                h = window_hash(next);
            }
            continue;
        }
        // Roll the window one byte forwards.
        if let Some(&next) = target.get(i + block) {
            h = h
                .wrapping_mul(PRIME)
                .wrapping_sub((u64::from(target[i]) + 1).wrapping_mul(out_weight))
                .wrapping_add(u64::from(next) + 1);
        }
        i += 1;
    }
    w.insert(&target[pending..]);
    w.out.push(OP_END);
    w.out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid header for `base` declaring `target_len` bytes with hash `target_sha`.
    fn header(base: &[u8], target_len: u64, target_sha: [u8; 32]) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        d.extend_from_slice(&sha256(base));
        d.extend_from_slice(&target_sha);
        d.extend_from_slice(&(base.len() as u64).to_le_bytes());
        d.extend_from_slice(&target_len.to_le_bytes());
        assert_eq!(d.len(), HEADER_LEN);
        d
    }

    fn round_trip(base: &[u8], target: &[u8]) -> Vec<u8> {
        let d = make(base, target);
        assert_eq!(apply(base, &d).unwrap(), target);
        assert_eq!(base_sha256(&d), Some(sha256(base)));
        assert_eq!(target_sha256(&d), Some(sha256(target)));
        d
    }

    /// Counts the ops of a well-formed delta (END excluded).
    fn ops(d: &[u8]) -> usize {
        inserts(d).0
    }

    /// Op count and the (target offset, length) of every INSERT of a well-formed delta.
    fn inserts(d: &[u8]) -> (usize, Vec<(usize, usize)>) {
        let mut r = Reader {
            b: d,
            at: HEADER_LEN,
            op: 0,
        };
        let (mut n, mut written, mut ins) = (0, 0, Vec::new());
        loop {
            let tag = d[r.at];
            r.at += 1;
            match tag {
                OP_END => return (n, ins),
                OP_COPY => {
                    r.varint("").unwrap();
                    written += r.varint("").unwrap() as usize;
                }
                _ => {
                    let len = r.varint("").unwrap() as usize;
                    ins.push((written, len));
                    written += len;
                    r.at += len;
                }
            }
            n += 1;
        }
    }

    /// splitmix64: deterministic test data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next_u64() as u8).collect()
        }
    }

    fn le_u64s(keys: &[u64]) -> Vec<u8> {
        keys.iter().flat_map(|k| k.to_le_bytes()).collect()
    }

    #[test]
    fn empty_identical_and_unrelated_inputs_round_trip() {
        let mut rng = Rng(1);
        let a = rng.bytes(5000);
        let b = rng.bytes(3000);
        round_trip(&[], &[]);
        round_trip(&[], &b);
        round_trip(&a, &[]);
        let same = round_trip(&a, &a);
        assert_eq!(ops(&same), 1, "an unchanged snapshot is one COPY");
        let unrelated = round_trip(&a, &b);
        assert!(
            unrelated.len() <= HEADER_LEN + b.len() + 8,
            "{}",
            unrelated.len()
        );
        round_trip(&a[..10], &a[..31]); // shorter than a block
    }

    #[test]
    fn one_entry_added_or_removed_in_a_sorted_table_costs_two_ops() {
        let mut rng = Rng(2);
        let mut keys: Vec<u64> = (0..20_000).map(|_| rng.next_u64() >> 8).collect();
        keys.sort_unstable();
        let base = le_u64s(&keys);
        // Insertion of one key: COPY, INSERT 8 bytes, COPY.
        let mut added = keys.clone();
        added.insert(7_777, (keys[7_776] + keys[7_777]) / 2);
        let d = round_trip(&base, &le_u64s(&added));
        assert!(ops(&d) <= 3, "{} ops", ops(&d));
        assert!(d.len() < HEADER_LEN + 40, "{} bytes", d.len());
        // Removal of one key: two COPYs.
        let mut removed = keys.clone();
        removed.remove(12_345);
        let d = round_trip(&base, &le_u64s(&removed));
        assert!(ops(&d) <= 2, "{} ops", ops(&d));
        // A u32 column (rule ids) with 4-byte shifts, 100 changes spread out.
        let rules: Vec<u32> = (0..50_000).map(|_| rng.next_u64() as u32).collect();
        let mut changed = rules.clone();
        for k in 0..100 {
            let at = 100 + k * 480;
            if k % 2 == 0 {
                changed.insert(at, rng.next_u64() as u32);
            } else {
                changed.remove(at);
            }
        }
        let col = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>();
        let d = round_trip(&col(&rules), &col(&changed));
        assert!(ops(&d) <= 3 * 100 + 1, "{} ops", ops(&d));
        assert!(d.len() < HEADER_LEN + 100 * 16, "{} bytes", d.len());
    }

    #[test]
    fn repeated_blocks_and_overwrites_round_trip() {
        let base = vec![7u8; 10_000];
        let mut t = base.clone();
        t[5_000] = 8;
        let d = round_trip(&base, &t);
        assert!(d.len() < HEADER_LEN + 30, "{} bytes", d.len());
        let mut rng = Rng(3);
        let base = rng.bytes(10_000);
        let mut t = base.clone();
        t[4_000..4_003].copy_from_slice(b"abc");
        let d = round_trip(&base, &t);
        assert!(ops(&d) <= 3, "{} ops", ops(&d));
        // Moved blocks: the second half first.
        let mut moved = base[5_000..].to_vec();
        moved.extend_from_slice(&base[..5_000]);
        let d = round_trip(&base, &moved);
        assert!(ops(&d) <= 2, "{} ops", ops(&d));
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Overwrite(usize, Vec<u8>),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(p, b)| Edit::Insert(p, b)),
            (any::<usize>(), 1usize..40).prop_map(|(p, n)| Edit::Delete(p, n)),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(p, b)| Edit::Overwrite(p, b)),
        ]
    }

    /// Random bytes, or bytes from a 3-letter alphabet (many repeated blocks, many false hits).
    fn data(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..max),
            prop::collection::vec(0u8..3, 0..max),
        ]
    }

    fn edited(base: &[u8], edits: &[Edit]) -> Vec<u8> {
        let mut t = base.to_vec();
        for e in edits {
            match e {
                Edit::Insert(p, b) => {
                    let p = p % (t.len() + 1);
                    t.splice(p..p, b.iter().copied());
                }
                Edit::Delete(p, n) if !t.is_empty() => {
                    let p = p % t.len();
                    let end = (p + n).min(t.len());
                    t.drain(p..end);
                }
                Edit::Overwrite(p, b) if !t.is_empty() => {
                    let p = p % t.len();
                    for (i, x) in b.iter().enumerate() {
                        if let Some(y) = t.get_mut(p + i) {
                            *y = *x;
                        }
                    }
                }
                _ => {}
            }
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn edited_target_round_trips(base in data(6000), edits in prop::collection::vec(edit(), 0..12)) {
            let target = edited(&base, &edits);
            let d = make(&base, &target);
            prop_assert_eq!(apply(&base, &d).unwrap(), target);
        }

        #[test]
        fn unrelated_target_round_trips(base in data(3000), target in data(3000)) {
            let d = make(&base, &target);
            prop_assert_eq!(apply(&base, &d).unwrap(), target);
        }

        #[test]
        fn random_bytes_never_panic(base in data(300), junk in prop::collection::vec(any::<u8>(), 0..400)) {
            // Raw junk, and junk ops behind a valid header (past the base check).
            let _ = apply(&base, &junk);
            let _ = base_sha256(&junk);
            let _ = target_sha256(&junk);
            let mut d = header(&base, base.len() as u64, sha256(&base));
            d.extend_from_slice(&junk);
            if let Ok(out) = apply(&base, &d) {
                prop_assert_eq!(out, base);
            }
        }

        #[test]
        fn corrupted_delta_is_refused_or_exact(
            base in data(3000),
            edits in prop::collection::vec(edit(), 1..6),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let target = edited(&base, &edits);
            let mut d = make(&base, &target);
            for (p, x) in flips {
                let p = p % d.len();
                d[p] ^= x.max(1);
            }
            if let Ok(out) = apply(&base, &d) {
                prop_assert_eq!(out, target);
            }
        }
    }

    #[test]
    fn truncated_deltas_are_refused() {
        let mut rng = Rng(4);
        let base = rng.bytes(2000);
        let mut target = base.clone();
        target.splice(700..700, rng.bytes(50));
        let d = make(&base, &target);
        for n in 0..d.len() {
            let e = apply(&base, &d[..n]).unwrap_err();
            assert!(
                matches!(e, DeltaError::Truncated { .. }),
                "prefix of {n} bytes: {e}"
            );
        }
        assert!(base_sha256(&d[..HEADER_LEN - 1]).is_none());
        assert!(target_sha256(&d[..HEADER_LEN]).is_some());
    }

    #[test]
    fn a_delta_for_another_base_is_refused() {
        let base = b"base snapshot bytes, version one".repeat(10);
        let other = b"base snapshot bytes, version two".repeat(10);
        let d = make(&base, b"target");
        let e = apply(&other, &d).unwrap_err();
        assert!(matches!(e, DeltaError::WrongBase { .. }), "{e}");
        assert!(e.to_string().contains("another base snapshot"), "{e}");
        // Same hash prefix is irrelevant: a different length alone is refused too.
        let mut lying = d.clone();
        lying[76..84].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(
            apply(&base, &lying),
            Err(DeltaError::WrongBase { .. })
        ));
    }

    #[test]
    fn hostile_ops_are_refused_with_op_number_and_offset() {
        let base = b"0123456789abcdef".repeat(4); // 64 bytes
        let t = b"0123456789".to_vec();
        let sha = sha256(&t);
        let with = |target_len: u64, ops: &[u8]| {
            let mut d = header(&base, target_len, sha);
            d.extend_from_slice(ops);
            apply(&base, &d)
        };
        // The good one: COPY(0, 10), END.
        assert_eq!(with(10, &[1, 0, 10, 0]).unwrap(), t);
        // COPY past the end of the base (offset 60 + 10 > 64): op #1 at byte 95.
        let e = with(10, &[2, 1, 1, 1, 120, 10, 0]).unwrap_err();
        assert!(
            matches!(
                e,
                DeltaError::CopyOutOfBase {
                    op: 1,
                    at: 95,
                    offset: 60,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("op #1 at byte 95"), "{e}");
        // COPY before the start of the base (zigzag 3 = -1).
        let e = with(10, &[1, 3, 10, 0]).unwrap_err();
        assert!(
            matches!(e, DeltaError::CopyOutOfBase { offset: -1, .. }),
            "{e:?}"
        );
        // Huge COPY length.
        let e = with(
            10,
            &[
                1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0,
            ],
        );
        assert!(matches!(e, Err(DeltaError::CopyOutOfBase { .. })), "{e:?}");
        // Output longer than declared.
        let e = with(5, &[1, 0, 10, 0]).unwrap_err();
        assert!(
            matches!(e, DeltaError::OutputOverrun { op: 0, .. }),
            "{e:?}"
        );
        let e = with(5, &[2, 6, b'a', b'b', b'c', b'd', b'e', b'f', 0]).unwrap_err();
        assert!(matches!(e, DeltaError::OutputOverrun { .. }), "{e:?}");
        // Output shorter than declared.
        let e = with(11, &[1, 0, 10, 0]).unwrap_err();
        assert!(
            matches!(
                e,
                DeltaError::ShortOutput {
                    written: 10,
                    declared: 11
                }
            ),
            "{e:?}"
        );
        // INSERT whose length runs past the delta.
        let e = with(10, &[2, 10, b'0', b'1', 0]).unwrap_err();
        assert!(matches!(e, DeltaError::Truncated { .. }), "{e:?}");
        let e = with(
            10,
            &[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0],
        )
        .unwrap_err();
        assert!(matches!(e, DeltaError::OutputOverrun { .. }), "{e:?}");
        // Varint of 11 bytes, and a 10th byte above the u64 range.
        let e = with(
            10,
            &[
                1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 0,
            ],
        )
        .unwrap_err();
        assert!(matches!(e, DeltaError::BadVarint { op: 0, .. }), "{e:?}");
        let e = with(
            10,
            &[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 1, 0,
            ],
        )
        .unwrap_err();
        assert!(matches!(e, DeltaError::BadVarint { .. }), "{e:?}");
        // Unknown op, empty ops, trailing bytes, no END.
        let e = with(10, &[1, 0, 10, 7]).unwrap_err();
        assert!(
            matches!(e, DeltaError::UnknownOp { op: 1, tag: 7, .. }),
            "{e:?}"
        );
        assert!(matches!(
            with(10, &[1, 0, 0, 0]),
            Err(DeltaError::EmptyOp { .. })
        ));
        assert!(matches!(
            with(10, &[2, 0, 0]),
            Err(DeltaError::EmptyOp { .. })
        ));
        assert!(matches!(
            with(10, &[1, 0, 10, 0, 0]),
            Err(DeltaError::TrailingBytes { at: 96 })
        ));
        assert!(matches!(
            with(10, &[1, 0, 10]),
            Err(DeltaError::Truncated { .. })
        ));
        // Right length, wrong bytes.
        let e = with(10, &[1, 2, 10, 0]).unwrap_err();
        assert!(matches!(e, DeltaError::TargetHashMismatch { .. }), "{e:?}");
        // Huge declared length: refused before any op runs.
        let e = with(MAX_TARGET_LEN + 1, &[0]).unwrap_err();
        assert!(matches!(e, DeltaError::TargetTooLarge { .. }), "{e:?}");
        let e = with(u64::MAX, &[0]).unwrap_err();
        assert!(matches!(e, DeltaError::TargetTooLarge { .. }), "{e:?}");
        // A COPY repeated to blow up memory stops at the declared length.
        let mut bomb = vec![1, 0, 64];
        for _ in 0..2000 {
            bomb.extend_from_slice(&[1, 129, 1, 64]); // back 64, copy 64
        }
        bomb.push(0);
        let e = with(1000, &bomb).unwrap_err();
        assert!(
            matches!(e, DeltaError::OutputOverrun { op: 15, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn bad_header_is_refused() {
        let d = make(b"a", b"b");
        let mut m = d.clone();
        m[0] = b'X';
        assert!(matches!(apply(b"a", &m), Err(DeltaError::BadMagic)));
        assert!(base_sha256(&m).is_none());
        let mut v = d.clone();
        v[8] = 2;
        let e = apply(b"a", &v).unwrap_err();
        assert!(
            matches!(e, DeltaError::UnsupportedVersion { found: 2 }),
            "{e:?}"
        );
        assert!(target_sha256(&v).is_none());
        assert!(matches!(
            apply(b"a", b"DRGN"),
            Err(DeltaError::Truncated { at: 4, .. })
        ));
    }

    /// Replays the fuzz target's logic over its seed corpus (fuzz/corpus/delta_apply/).
    #[test]
    fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/delta_apply");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let applied = fuzz_one(&std::fs::read(e.path()).unwrap());
            if e.file_name().to_string_lossy().starts_with("apply-valid") {
                assert!(applied, "{:?} is a valid delta", e.path());
            }
            n += 1;
        }
        assert!(n >= 2, "the delta corpus is empty");
    }

    /// Same as fuzz/fuzz_targets/delta_apply.rs; true if a delta was applied.
    fn fuzz_one(data: &[u8]) -> bool {
        if data.len() < 3 {
            return false;
        }
        let mode = data[0] % 3;
        let n = (usize::from(u16::from_le_bytes([data[1], data[2]]))).min(data.len() - 3);
        let (base, rest) = data[3..].split_at(n);
        match mode {
            0 => apply(base, rest).is_ok(),
            1 => {
                let mut d = make(base, base);
                d.truncate(HEADER_LEN);
                d.extend_from_slice(rest);
                let out = apply(base, &d);
                if let Ok(out) = &out {
                    assert_eq!(out, base);
                }
                out.is_ok()
            }
            _ => {
                assert_eq!(apply(base, &make(base, rest)).unwrap(), rest);
                true
            }
        }
    }

    fn snapshot(numbers: &[u64]) -> Vec<u8> {
        use dragnet_rules::compile::{source_options, CompileConfig};
        use dragnet_rules::snapshot::write_snapshot;
        use dragnet_rules::Compiler;
        let mut csv = String::from("number,action,category\n");
        for n in numbers {
            csv.push_str(&format!("+86138{n:08},block,fraud\n"));
        }
        let mut c = Compiler::new(CompileConfig::default(), false);
        let opts = source_options(None, "n.csv", None, false).unwrap();
        c.add_text(&csv, "n.csv", &opts).unwrap();
        let (t, _) = c.finish().unwrap();
        write_snapshot(&t, 1, 0).unwrap()
    }

    /// `n` distinct 8-digit numbers, then `extra` more distinct from them.
    fn numbers(n: usize, extra: usize, seed: u64) -> (Vec<u64>, Vec<u64>) {
        let mut rng = Rng(seed);
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        while all.len() < n + extra {
            let x = rng.next_u64() % 100_000_000;
            if seen.insert(x) {
                all.push(x);
            }
        }
        let added = all.split_off(n);
        (all, added)
    }

    /// Prints sizes and times (times for the report only, never asserted).
    fn realistic(n: usize, blocks: &[usize]) -> (usize, usize) {
        let (old, added) = numbers(n, 1000, 42);
        let a = snapshot(&old);
        let mut new = old.clone();
        new.extend_from_slice(&added);
        let b = snapshot(&new);
        let mut last = (0, 0);
        for &block in blocks {
            let t0 = std::time::Instant::now();
            let d = make_with_block(&a, sha256(&a), &b, sha256(&b), block);
            let made = t0.elapsed();
            let t1 = std::time::Instant::now();
            let out = apply(&a, &d).unwrap();
            let applied = t1.elapsed();
            assert!(out == b, "the delta rebuilds the new snapshot exactly");
            let (_, mut ins) = inserts(&d);
            ins.sort_by_key(|&(_, len)| std::cmp::Reverse(len));
            ins.truncate(4);
            println!("largest INSERTs (target offset, length): {ins:?}");
            println!(
                "{n} numbers + 1000, block {block}: base {} B, target {} B, delta {} B ({:.2} %), {} ops, make {made:?}, apply {applied:?}",
                a.len(),
                b.len(),
                d.len(),
                100.0 * d.len() as f64 / b.len() as f64,
                ops(&d),
            );
            last = (d.len(), b.len());
        }
        last
    }

    #[test]
    fn a_known_base_digest_is_checked_and_cannot_forge_the_result() {
        let base: Vec<u8> = (0..10_000u32).flat_map(u32::to_le_bytes).collect();
        let mut target = base.clone();
        target.splice(4000..4000, *b"inserted bytes");
        let d = make(&base, &target);
        assert_eq!(
            apply_to_known_base(&base, sha256(&base), &d).unwrap(),
            target
        );
        // A digest that is not the delta's base: refused before any work.
        let mut wrong = sha256(&base);
        wrong[0] ^= 1;
        assert!(matches!(
            apply_to_known_base(&base, wrong, &d),
            Err(DeltaError::WrongBase { .. })
        ));
        // Other bytes claimed to be the base: the rebuilt snapshot's hash refuses them.
        let mut other = base.clone();
        other[100] ^= 1;
        assert!(apply_to_known_base(&other, sha256(&base), &d).is_err());
    }

    #[test]
    fn realistic_snapshot_update_is_a_small_delta() {
        let (delta, full) = realistic(100_000, &[BLOCK]);
        assert!(
            delta * 5 < full,
            "delta {delta} B is not < 20 % of {full} B"
        );
    }

    /// `cargo test -p dragnet-gateway --release control::delta -- --ignored --nocapture`
    #[test]
    #[ignore = "10⁶ numbers: slow in the dev profile; run by hand for the sizes in the docs"]
    fn realistic_million() {
        realistic(1_000_000, &[BLOCK]);
    }

    #[test]
    #[ignore = "measurement behind BLOCK; run by hand"]
    fn block_size_measurement() {
        realistic(100_000, &[16, 32, 64, 128]);
    }
}
