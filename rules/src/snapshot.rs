//! The snapshot file: one immutable, versioned, checksummed (and signable) compiled rule set.
//!
//! ```text
//! offset size  field
//!      0    8  magic "DRGNSNAP"
//!      8    4  format version (u32 LE) = FORMAT_VERSION
//!     12    4  header length (u32 LE) = 160
//!     16    8  rule-set version (u64 LE; monotonic: a gateway refuses to go backwards)
//!     24    8  creation time (unix seconds)
//!     32    8  body length in bytes
//!     40   32  SHA-256 of the body
//!     72    8  flags (bit 0: signed)
//!     80    8  signing key id (first 8 bytes of SHA-256 of the ed25519 public key), or zeros
//!     88   64  ed25519 signature over bytes 0..80 (which include the body hash), or zeros
//!    152    8  header check: first 8 bytes of SHA-256 of bytes 0..152 (a flipped header bit
//!                 — version, time, flags — is caught even where the body hash cannot see it)
//!    160    …  body: sections, each `tag[4] | zero[4] | len u64 LE | data | pad to 8`
//! ```
//!
//! Sections hold flat little-endian arrays that load straight into typed vectors: a 10⁷-entry
//! snapshot is read with one pass of `read` + SHA-256 and no parsing of text (only the small
//! `META` section is JSON). Nothing in a file is trusted before the body hash matches, and nothing
//! after it is trusted either: every index is range-checked before the engine is built (a snapshot
//! may be corrupt in ways a checksum does not catch if it was produced by a buggy or hostile tool).

use crate::error::SnapshotError;
use crate::filter::KeyFilter;
use crate::rule::{Action, Direction, DnsAction, Kind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

pub const MAGIC: [u8; 8] = *b"DRGNSNAP";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 160;
/// Largest section we accept (guards allocation on a corrupt length field): 4 GiB.
const MAX_SECTION: u64 = 1 << 32;

/// The fixed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub ruleset_version: u64,
    pub created: u64,
    pub body_len: u64,
    pub body_sha256: [u8; 32],
    pub flags: u64,
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
}

impl Header {
    pub fn is_signed(&self) -> bool {
        self.flags & 1 != 0
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.ruleset_version.to_le_bytes());
        b[24..32].copy_from_slice(&self.created.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..72].copy_from_slice(&self.body_sha256);
        b[72..80].copy_from_slice(&self.flags.to_le_bytes());
        b[80..88].copy_from_slice(&self.key_id);
        b[88..152].copy_from_slice(&self.signature);
        let check = Sha256::digest(&b[..152]);
        b[152..160].copy_from_slice(&check[..8]);
        b
    }

    /// The bytes an ed25519 signature covers (everything up to the key id, body hash included).
    pub fn signed_bytes(&self) -> [u8; 80] {
        let all = self.to_bytes();
        let mut b = [0u8; 80];
        b.copy_from_slice(&all[..80]);
        b
    }

    pub fn parse(b: &[u8]) -> Result<Header, SnapshotError> {
        if b.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated {
                what: "header",
                expected: HEADER_LEN as u64,
                found: b.len() as u64,
            });
        }
        if b[0..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if Sha256::digest(&b[..152])[..8] != b[152..160] {
            // A wrong format version is the likelier story when that field is unknown.
            let v = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
            if v != FORMAT_VERSION {
                return Err(SnapshotError::UnsupportedFormat {
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
            return Err(SnapshotError::Corrupt("header checksum mismatch".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        let format_version = u32_at(8);
        if format_version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedFormat {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        if u32_at(12) as usize != HEADER_LEN {
            return Err(SnapshotError::Corrupt(format!(
                "header length {} (expected {HEADER_LEN})",
                u32_at(12)
            )));
        }
        let mut body_sha256 = [0u8; 32];
        body_sha256.copy_from_slice(&b[40..72]);
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&b[80..88]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[88..152]);
        Ok(Header {
            format_version,
            ruleset_version: u64_at(16),
            created: u64_at(24),
            body_len: u64_at(32),
            body_sha256,
            flags: u64_at(72),
            key_id,
            signature,
        })
    }
}

/// One rule's shared attributes. Many rules share one policy (a list of 10⁶ numbers with the
/// same action and category is one policy), which keeps the per-rule record at 8 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    pub action: Action,
    pub kind: Kind,
    pub direction: Direction,
    /// Index into `Meta::categories`.
    pub category: u16,
    /// Index into `Meta::sources`.
    pub source: u16,
    /// 0 = any ingress; otherwise 1 + index into `Meta::scopes`.
    pub scope: u16,
    /// Unix seconds; 0 = never expires.
    pub expires: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsAction>,
}

/// How national numbers are read (stored so that `check` reads numbers as the compiler did).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMeta {
    pub country_code: u16,
    pub trunk_prefix: String,
    pub international_prefix: String,
    pub max_short_code_digits: u8,
}

/// Counts by kind, for `inspect` and `/v1/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub rules: u64,
    pub numbers: u64,
    pub prefixes: u64,
    pub domains: u64,
    pub urls: u64,
    pub keywords: u64,
}

/// Where the rules came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub format: String,
    pub rules: u64,
    pub sha256: String,
}

/// The small, JSON-encoded part of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub plan: PlanMeta,
    pub min_prefix_digits: u8,
    /// The protected (emergency) numbers as configured, for display.
    pub protected: Vec<String>,
    pub categories: Vec<String>,
    pub sources: Vec<String>,
    pub scopes: Vec<String>,
    pub policies: Vec<Policy>,
    /// Keywords (normalised) and the rule each belongs to.
    pub keywords: Vec<(String, u32)>,
    pub counts: Counts,
    pub source_files: Vec<SourceFile>,
}

/// An exact table of u64 keys (numbers) → rules, fronted by a filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTable {
    pub filter: KeyFilter,
    /// Sorted by `(number_hash(key), key)`; equal keys adjacent (one entry per rule).
    pub keys: Vec<u64>,
    pub rules: Vec<u32>,
    /// Bucket directory over the hashes (see [`build_directory`]).
    pub dir: Vec<u32>,
}

/// An exact table of strings (host names, URL expressions) by key, fronted by a filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrTable {
    pub filter: KeyFilter,
    /// Sorted (the keys are already well-mixed hashes).
    pub keys: Vec<u64>,
    /// Bucket directory over the keys (see [`build_directory`]).
    pub dir: Vec<u32>,
    pub rules: Vec<u32>,
    /// Per entry: (offset, length) into `blob`.
    pub spans: Vec<u32>,
    pub blob: Vec<u8>,
}

/// Everything a snapshot holds, as flat tables. The writer and the reader share it; the engine is
/// built from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub meta: Meta,
    /// Per rule: (policy, source line).
    pub rules: Vec<u32>,
    /// Rules that carry their own id: (rule, offset, length) into `id_blob`, sorted by rule.
    pub id_index: Vec<u32>,
    pub id_blob: Vec<u8>,
    /// Keys of protected numbers (short form and international form), sorted.
    pub protected: Vec<u64>,
    pub numbers: KeyTable,
    /// Digit trie of number prefixes: 12 u32 per node: children for digits 0–9 (0 = none; the
    /// root is node 0 and never a child), then start and count into `trie_rules`.
    pub trie: Vec<u32>,
    pub trie_rules: Vec<u32>,
    pub domains: StrTable,
    pub urls: StrTable,
}

pub(crate) const TRIE_STRIDE: usize = 12;

/// The hash a number's exact-table position is sorted by (its key is not uniform: numbers
/// cluster by country and operator; the murmur3 finaliser spreads them).
#[inline]
pub fn number_hash(key: u64) -> u64 {
    crate::hash::fmix64(key)
}

/// A directory of `2^bits + 1` start offsets into a table sorted by hash: entries whose hash
/// has top bits `b` are at `dir[b]..dir[b + 1]`. With about four entries per bucket a
/// confirmation touches the directory and one or two cache lines of keys, instead of the
/// ~24 dependent cache misses of a binary search over 10⁷ keys.
pub fn build_directory(sorted_hashes: impl ExactSizeIterator<Item = u64>) -> Vec<u32> {
    let n = sorted_hashes.len();
    let bits = directory_bits(n);
    let mut dir = vec![0u32; (1usize << bits) + 1];
    for h in sorted_hashes {
        dir[bucket(h, bits) + 1] += 1;
    }
    for b in 1..dir.len() {
        dir[b] += dir[b - 1];
    }
    dir
}

/// Directory size for `n` entries: about four entries per bucket.
pub fn directory_bits(n: usize) -> u32 {
    (n / 4).max(1).ilog2().min(28)
}

#[inline]
pub fn bucket(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

// Section tags.
const T_META: [u8; 4] = *b"META";
const T_RULES: [u8; 4] = *b"RULS";
const T_IDIX: [u8; 4] = *b"IDIX";
const T_IDBL: [u8; 4] = *b"IDBL";
const T_PROT: [u8; 4] = *b"PROT";
const T_NFD: [u8; 4] = *b"NFLD";
const T_NFF: [u8; 4] = *b"NFLF";
const T_NKEY: [u8; 4] = *b"NKEY";
const T_NRUL: [u8; 4] = *b"NRUL";
const T_NDIR: [u8; 4] = *b"NDIR";
const T_DDIR: [u8; 4] = *b"DDIR";
const T_UDIR: [u8; 4] = *b"UDIR";
const T_TRIE: [u8; 4] = *b"PTRI";
const T_TRUL: [u8; 4] = *b"PRUL";
const T_DFD: [u8; 4] = *b"DFLD";
const T_DFF: [u8; 4] = *b"DFLF";
const T_DKEY: [u8; 4] = *b"DKEY";
const T_DRUL: [u8; 4] = *b"DRUL";
const T_DSPN: [u8; 4] = *b"DSPN";
const T_DBLB: [u8; 4] = *b"DBLB";
const T_UFD: [u8; 4] = *b"UFLD";
const T_UFF: [u8; 4] = *b"UFLF";
const T_UKEY: [u8; 4] = *b"UKEY";
const T_URUL: [u8; 4] = *b"URUL";
const T_USPN: [u8; 4] = *b"USPN";
const T_UBLB: [u8; 4] = *b"UBLB";

const SECTION_ORDER: [[u8; 4]; 26] = [
    T_META, T_RULES, T_IDIX, T_IDBL, T_PROT, T_NFD, T_NFF, T_NKEY, T_NRUL, T_NDIR, T_TRIE, T_TRUL,
    T_DFD, T_DFF, T_DKEY, T_DRUL, T_DDIR, T_DSPN, T_DBLB, T_UFD, T_UFF, T_UKEY, T_URUL, T_UDIR,
    T_USPN, T_UBLB,
];

fn tag_str(t: [u8; 4]) -> String {
    String::from_utf8_lossy(&t).into_owned()
}

/// Streams sections out and hashes them on the way.
struct BodyWriter<W: Write> {
    out: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> BodyWriter<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hasher.update(b);
        self.len += b.len() as u64;
        self.out.write_all(b)
    }
    fn section(&mut self, tag: [u8; 4], data: &[u8]) -> std::io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&tag);
        h[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        self.put(&h)?;
        self.put(data)?;
        let pad = (8 - data.len() % 8) % 8;
        self.put(&[0u8; 8][..pad])
    }
    fn u32s(&mut self, tag: [u8; 4], v: &[u32]) -> std::io::Result<()> {
        if cfg!(target_endian = "little") {
            self.section(tag, bytemuck::cast_slice(v))
        } else {
            let le: Vec<u32> = v.iter().map(|x| x.to_le()).collect();
            self.section(tag, bytemuck::cast_slice(&le))
        }
    }
    fn u64s(&mut self, tag: [u8; 4], v: &[u64]) -> std::io::Result<()> {
        if cfg!(target_endian = "little") {
            self.section(tag, bytemuck::cast_slice(v))
        } else {
            let le: Vec<u64> = v.iter().map(|x| x.to_le()).collect();
            self.section(tag, bytemuck::cast_slice(&le))
        }
    }
}

/// Write the body (all sections) to `out`; returns (length, SHA-256).
fn write_body<W: Write>(t: &Tables, out: W) -> std::io::Result<(u64, [u8; 32])> {
    let mut w = BodyWriter {
        out,
        hasher: Sha256::new(),
        len: 0,
    };
    let meta = serde_json::to_vec(&t.meta).map_err(std::io::Error::other)?;
    w.section(T_META, &meta)?;
    w.u32s(T_RULES, &t.rules)?;
    w.u32s(T_IDIX, &t.id_index)?;
    w.section(T_IDBL, &t.id_blob)?;
    w.u64s(T_PROT, &t.protected)?;
    w.section(T_NFD, &t.numbers.filter.descriptor)?;
    w.section(T_NFF, &t.numbers.filter.fingerprints)?;
    w.u64s(T_NKEY, &t.numbers.keys)?;
    w.u32s(T_NRUL, &t.numbers.rules)?;
    w.u32s(T_NDIR, &t.numbers.dir)?;
    w.u32s(T_TRIE, &t.trie)?;
    w.u32s(T_TRUL, &t.trie_rules)?;
    for (s, tags) in [
        (
            &t.domains,
            [T_DFD, T_DFF, T_DKEY, T_DRUL, T_DDIR, T_DSPN, T_DBLB],
        ),
        (
            &t.urls,
            [T_UFD, T_UFF, T_UKEY, T_URUL, T_UDIR, T_USPN, T_UBLB],
        ),
    ] {
        w.section(tags[0], &s.filter.descriptor)?;
        w.section(tags[1], &s.filter.fingerprints)?;
        w.u64s(tags[2], &s.keys)?;
        w.u32s(tags[3], &s.rules)?;
        w.u32s(tags[4], &s.dir)?;
        w.u32s(tags[5], &s.spans)?;
        w.section(tags[6], &s.blob)?;
    }
    w.out.flush()?;
    Ok((w.len, w.hasher.finalize().into()))
}

/// Serialise tables into a complete snapshot file image (header + body), unsigned.
pub fn write_snapshot(t: &Tables, ruleset_version: u64, created: u64) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let (body_len, body_sha256) = write_body(t, &mut body)?;
    let header = Header {
        format_version: FORMAT_VERSION,
        ruleset_version,
        created,
        body_len,
        body_sha256,
        flags: 0,
        key_id: [0; 8],
        signature: [0; 64],
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads sections from a stream into typed vectors, hashing as it goes.
struct BodyReader<R: Read> {
    inp: R,
    hasher: Sha256,
    remaining: u64,
}

impl<R: Read> BodyReader<R> {
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), SnapshotError> {
        if buf.len() as u64 > self.remaining {
            return Err(SnapshotError::Truncated {
                what,
                expected: buf.len() as u64,
                found: self.remaining,
            });
        }
        self.inp.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                SnapshotError::Truncated {
                    what,
                    expected: buf.len() as u64,
                    found: 0,
                }
            } else {
                SnapshotError::Io(e.to_string())
            }
        })?;
        self.hasher.update(&*buf);
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    /// Read the next section header, check its tag, return its data length.
    fn begin(&mut self, tag: [u8; 4], elem: u64) -> Result<u64, SnapshotError> {
        let mut h = [0u8; 16];
        self.fill(&mut h, "section header")?;
        if h[0..4] != tag {
            return Err(SnapshotError::Corrupt(format!(
                "expected section {}, found {:?}",
                tag_str(tag),
                String::from_utf8_lossy(&h[0..4])
            )));
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(&h[8..16]);
        let len = u64::from_le_bytes(l);
        if len > MAX_SECTION || len > self.remaining || len % elem != 0 {
            return Err(SnapshotError::Corrupt(format!(
                "section {} has an impossible length {len}",
                tag_str(tag)
            )));
        }
        Ok(len)
    }

    fn end(&mut self, len: u64) -> Result<(), SnapshotError> {
        let pad = ((8 - len % 8) % 8) as usize;
        let mut p = [0u8; 8];
        self.fill(&mut p[..pad], "section padding")
    }

    fn bytes(&mut self, tag: [u8; 4]) -> Result<Vec<u8>, SnapshotError> {
        let len = self.begin(tag, 1)?;
        let mut v = vec![0u8; len as usize];
        self.fill(&mut v, "section data")?;
        self.end(len)?;
        Ok(v)
    }

    fn u32s(&mut self, tag: [u8; 4]) -> Result<Vec<u32>, SnapshotError> {
        let len = self.begin(tag, 4)?;
        let mut v = vec![0u32; (len / 4) as usize];
        self.fill(bytemuck::cast_slice_mut(&mut v), "section data")?;
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(|x| *x = u32::from_le(*x));
        }
        self.end(len)?;
        Ok(v)
    }

    fn u64s(&mut self, tag: [u8; 4]) -> Result<Vec<u64>, SnapshotError> {
        let len = self.begin(tag, 8)?;
        let mut v = vec![0u64; (len / 8) as usize];
        self.fill(bytemuck::cast_slice_mut(&mut v), "section data")?;
        if cfg!(target_endian = "big") {
            v.iter_mut().for_each(|x| *x = u64::from_le(*x));
        }
        self.end(len)?;
        Ok(v)
    }

    fn str_table(&mut self, tags: [[u8; 4]; 7]) -> Result<StrTable, SnapshotError> {
        Ok(StrTable {
            filter: KeyFilter {
                descriptor: self.bytes(tags[0])?,
                fingerprints: self.bytes(tags[1])?,
            },
            keys: self.u64s(tags[2])?,
            rules: self.u32s(tags[3])?,
            dir: self.u32s(tags[4])?,
            spans: self.u32s(tags[5])?,
            blob: self.bytes(tags[6])?,
        })
    }
}

/// Read a snapshot from a stream: header, then every section, then check the body hash. The
/// returned tables have passed the checksum but NOT the structural validation (the engine does
/// that when it is built from them).
pub fn read_snapshot<R: Read>(mut inp: R) -> Result<(Header, Tables), SnapshotError> {
    let mut hb = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match inp.read(&mut hb[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SnapshotError::Io(e.to_string())),
        }
    }
    let header = Header::parse(&hb[..got])?;
    let mut r = BodyReader {
        inp,
        hasher: Sha256::new(),
        remaining: header.body_len,
    };
    let meta_bytes = r.bytes(T_META)?;
    let rules = r.u32s(T_RULES)?;
    let id_index = r.u32s(T_IDIX)?;
    let id_blob = r.bytes(T_IDBL)?;
    let protected = r.u64s(T_PROT)?;
    let numbers = KeyTable {
        filter: KeyFilter {
            descriptor: r.bytes(T_NFD)?,
            fingerprints: r.bytes(T_NFF)?,
        },
        keys: r.u64s(T_NKEY)?,
        rules: r.u32s(T_NRUL)?,
        dir: r.u32s(T_NDIR)?,
    };
    let trie = r.u32s(T_TRIE)?;
    let trie_rules = r.u32s(T_TRUL)?;
    let domains = r.str_table([T_DFD, T_DFF, T_DKEY, T_DRUL, T_DDIR, T_DSPN, T_DBLB])?;
    let urls = r.str_table([T_UFD, T_UFF, T_UKEY, T_URUL, T_UDIR, T_USPN, T_UBLB])?;
    if r.remaining != 0 {
        return Err(SnapshotError::Corrupt(format!(
            "{} bytes after the last section",
            r.remaining
        )));
    }
    // Anything after the declared body is garbage appended to the file.
    let mut extra = [0u8; 1];
    if matches!(r.inp.read(&mut extra), Ok(n) if n > 0) {
        return Err(SnapshotError::Corrupt(
            "trailing bytes after the declared body length".into(),
        ));
    }
    let digest: [u8; 32] = r.hasher.finalize().into();
    if digest != header.body_sha256 {
        return Err(SnapshotError::ChecksumMismatch);
    }
    let meta: Meta = serde_json::from_slice(&meta_bytes)
        .map_err(|e| SnapshotError::Corrupt(format!("META section: {e}")))?;
    Ok((
        header,
        Tables {
            meta,
            rules,
            id_index,
            id_blob,
            protected,
            numbers,
            trie,
            trie_rules,
            domains,
            urls,
        },
    ))
}

/// The section tags in file order, for `inspect`.
pub fn section_names() -> impl Iterator<Item = String> {
    SECTION_ORDER.into_iter().map(tag_str)
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}
