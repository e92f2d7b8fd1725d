//! Signed snapshots: ed25519 key pairs, detached `SNAPSHOT.sig` files, and their verification
//! against a set of trusted public keys (issue 6).
//!
//! Why detached: a snapshot is built by the compiler, then signed by whoever holds the key (often
//! another machine, another team); the snapshot bytes never change after compilation, so a
//! signature file beside them can be added, replaced or checked without touching the image.
//!
//! Files:
//! - `NAME.key`: the private key, PKCS#8 v2 DER as ring produces it (RFC 5958 §2, RFC 8410 §7),
//!   mode 0600;
//! - `NAME.pub`: one line, `<public key: 64 hex digits> <key id: 8 hex digits>`. The key id is
//!   the first 4 bytes (8 hex digits) of SHA-256 of the 32-byte public key: a short name that lets
//!   a gateway pick the right trusted key and an operator tell keys apart;
//! - `SNAPSHOT.sig`: text, one `name: value` per line (see [`SIG_MAGIC`] and [`sign_bytes`]).
//!
//! The signature is ed25519 (RFC 8032 §5.1) over a domain-separated message:
//! `"dragnet-snapshot-v1\0" || version (u64 big-endian) || SHA-256(snapshot bytes)`. The prefix
//! keeps a snapshot signature from ever being valid for any other message the same key might sign.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

use dragnet_rules::snapshot::{hex, Header};

/// The domain separator that starts every signed message.
pub const DOMAIN: &[u8] = b"dragnet-snapshot-v1\0";
/// The first line of a `.sig` file (its format and version).
pub const SIG_MAGIC: &str = "dragnet-snapshot-signature v1";
/// A `.sig` file larger than this is not one of ours (guards the read).
const MAX_SIG_LEN: u64 = 4096;
/// A `.pub` file larger than this is not one of ours.
const MAX_PUB_LEN: u64 = 1024;

/// What a valid signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key id (8 hex digits) of the key that signed.
    pub key_id: String,
    /// The snapshot's rule-set version, as both the header and the signature state it.
    pub version: u64,
    /// SHA-256 of the whole snapshot file, hex.
    pub sha256: String,
}

/// The files [`keygen`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    pub key: PathBuf,
    pub public: PathBuf,
    pub key_id: String,
}

/// A public key a gateway trusts to sign snapshots (a parsed `.pub` file).
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key_id: String,
    public: [u8; 32],
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({})", self.key_id)
    }
}

/// Why keys could not be made or read, or a snapshot could not be signed or verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// A file could not be read or written.
    Io { path: String, reason: String },
    /// `keygen` refuses to overwrite an existing key file.
    Exists { path: String },
    /// A private key file is not a PKCS#8 ed25519 key.
    BadPrivateKey { path: String, reason: String },
    /// A `.pub` file is not one of ours.
    BadPublicKey { path: String, reason: String },
    /// The snapshot's header cannot be read, so its version is unknown.
    BadSnapshot { reason: String },
    /// Trusted keys are configured but the snapshot has no `.sig` beside it.
    MissingSignature { path: String },
    /// The `.sig` file is not in the expected format.
    Malformed { line: usize, reason: String },
    /// The `.sig` names a key id that is not among the trusted keys.
    UnknownKeyId {
        key_id: String,
        trusted: Vec<String>,
    },
    /// The snapshot's SHA-256 differs from the one signed.
    ChangedSinceSigning { signed: String, found: String },
    /// The version in the `.sig` differs from the version in the snapshot's header.
    VersionMismatch { signed: u64, snapshot: u64 },
    /// The ed25519 signature does not verify with the named key.
    SignatureMismatch { key_id: String },
    /// The system random number generator or the signer failed.
    Crypto(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Io { path, reason } => write!(f, "{path}: {reason}"),
            SignError::Exists { path } => write!(
                f,
                "{path} already exists: refusing to overwrite a key (remove it first, or choose another name)"
            ),
            SignError::BadPrivateKey { path, reason } => {
                write!(f, "{path}: not an ed25519 private key (PKCS#8): {reason}")
            }
            SignError::BadPublicKey { path, reason } => {
                write!(f, "{path}: not a dragnet public key file: {reason}")
            }
            SignError::BadSnapshot { reason } => {
                write!(f, "the snapshot's header cannot be read: {reason}")
            }
            SignError::MissingSignature { path } => write!(
                f,
                "signature file {path} is missing: trusted keys are configured, so every snapshot must be signed (dragnet rules sign)"
            ),
            SignError::Malformed { line, reason } => {
                write!(f, "malformed signature file at line {line}: {reason}")
            }
            SignError::UnknownKeyId { key_id, trusted } => write!(
                f,
                "signed by unknown key id {key_id}: not among the trusted keys [{}]",
                trusted.join(", ")
            ),
            SignError::ChangedSinceSigning { signed, found } => write!(
                f,
                "the snapshot changed since signing: its SHA-256 is {found} but {signed} was signed"
            ),
            SignError::VersionMismatch { signed, snapshot } => write!(
                f,
                "the signature is for version {signed} but the snapshot's header says version {snapshot}"
            ),
            SignError::SignatureMismatch { key_id } => write!(
                f,
                "signature mismatch: the signature does not verify with trusted key {key_id} (forged or corrupted .sig)"
            ),
            SignError::Crypto(r) => write!(f, "cryptography failed: {r}"),
        }
    }
}

impl std::error::Error for SignError {}

fn io_err(path: &Path, e: &std::io::Error) -> SignError {
    SignError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// `path` with `suffix` appended to its file name (`a/rules.snap` → `a/rules.snap.sig`); unlike
/// `with_extension`, a name's own dots are kept.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where the detached signature of `snapshot` lives: `SNAPSHOT.sig`.
pub fn sig_path(snapshot: &Path) -> PathBuf {
    with_suffix(snapshot, ".sig")
}

/// The key id: the first 4 bytes of SHA-256 of the raw 32-byte public key, as 8 hex digits.
pub fn key_id(public: &[u8]) -> String {
    hex(&Sha256::digest(public)[..4])
}

/// The message that is signed (module docs): domain, version big-endian, SHA-256 of the file.
fn message(version: u64, sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 8 + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(sha256);
    m
}

fn snapshot_version(snapshot: &[u8]) -> Result<u64, SignError> {
    Header::parse(snapshot)
        .map(|h| h.ruleset_version)
        .map_err(|e| SignError::BadSnapshot {
            reason: e.to_string(),
        })
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, SignError> {
    let len = std::fs::metadata(path).map_err(|e| io_err(path, &e))?.len();
    if len > max {
        return Err(SignError::Io {
            path: path.display().to_string(),
            reason: format!("{len} bytes is too large (at most {max} expected)"),
        });
    }
    std::fs::read(path).map_err(|e| io_err(path, &e))
}

impl TrustedKey {
    /// Parses the text of a `.pub` file: `<64 hex digits> [<key id>]`. A key id given must match
    /// the key (a mismatch means a hand-edited or mixed-up file).
    pub fn parse(text: &str) -> Result<TrustedKey, String> {
        let mut words = text.split_whitespace();
        let Some(k) = words.next() else {
            return Err("the file is empty (expected the public key as 64 hex digits)".into());
        };
        let public = parse_hex::<32>(k).ok_or_else(|| {
            format!(
                "the public key must be 64 hex digits (32 bytes), found {:?}",
                k.chars().take(80).collect::<String>()
            )
        })?;
        let id = key_id(&public);
        if let Some(given) = words.next() {
            if !given.eq_ignore_ascii_case(&id) {
                return Err(format!(
                    "the key id {given:?} does not belong to this key (its id is {id})"
                ));
            }
        }
        if words.next().is_some() {
            return Err("unexpected text after the key id".into());
        }
        Ok(TrustedKey { key_id: id, public })
    }

    /// Reads and parses a `.pub` file.
    pub fn load(path: &Path) -> Result<TrustedKey, SignError> {
        let bad = |reason: String| SignError::BadPublicKey {
            path: path.display().to_string(),
            reason,
        };
        let bytes = read_limited(path, MAX_PUB_LEN)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            bad("binary, not text (a private .key file? trust the .pub file beside it)".into())
        })?;
        TrustedKey::parse(&text).map_err(bad)
    }

    /// The key id (8 hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The `.pub` line for this key (with its newline).
    pub fn to_line(&self) -> String {
        format!("{} {}\n", hex(&self.public), self.key_id)
    }
}

/// Makes a new ed25519 key pair: `OUT.key` (PKCS#8, mode 0600) and `OUT.pub`. Refuses to
/// overwrite either file, so a key in use is never lost by a typo.
pub fn keygen(out: &Path) -> Result<KeyFiles, SignError> {
    let key = with_suffix(out, ".key");
    let public = with_suffix(out, ".pub");
    for p in [&key, &public] {
        if p.exists() {
            return Err(SignError::Exists {
                path: p.display().to_string(),
            });
        }
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| SignError::Crypto("the system random number generator failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| SignError::Crypto(format!("ring refused its own new key: {e}")))?;
    let mut pk = [0u8; 32];
    pk.copy_from_slice(pair.public_key().as_ref());
    let trusted = TrustedKey {
        key_id: key_id(&pk),
        public: pk,
    };
    write_private(&key, pkcs8.as_ref())?;
    std::fs::write(&public, trusted.to_line()).map_err(|e| io_err(&public, &e))?;
    Ok(KeyFiles {
        key,
        public,
        key_id: trusted.key_id,
    })
}

/// Writes a private key readable by its owner only (created 0600, never widened by a umask).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SignError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| io_err(path, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(path, &e))
}

/// Signs snapshot bytes with a PKCS#8 ed25519 key; returns what was signed and the `.sig` text:
///
/// ```text
/// dragnet-snapshot-signature v1
/// key-id: 1a2b3c4d
/// version: 42
/// sha256: <64 hex digits>
/// signature: <128 hex digits>
/// ```
pub fn sign_bytes(snapshot: &[u8], pkcs8: &[u8]) -> Result<(Verified, String), String> {
    let version = snapshot_version(snapshot).map_err(|e| e.to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
    let sha: [u8; 32] = Sha256::digest(snapshot).into();
    let sig = pair.sign(&message(version, &sha));
    let v = Verified {
        key_id: key_id(pair.public_key().as_ref()),
        version,
        sha256: hex(&sha),
    };
    let text = format!(
        "{SIG_MAGIC}\nkey-id: {}\nversion: {}\nsha256: {}\nsignature: {}\n",
        v.key_id,
        v.version,
        v.sha256,
        hex(sig.as_ref())
    );
    Ok((v, text))
}

/// Signs the snapshot file with the key file; writes `SNAPSHOT.sig` (aside, then renamed over,
/// so a gateway reloading meanwhile never reads half a signature).
pub fn sign(snapshot: &Path, key: &Path) -> Result<Verified, SignError> {
    let pkcs8 = read_limited(key, MAX_SIG_LEN)?;
    let bytes = std::fs::read(snapshot).map_err(|e| io_err(snapshot, &e))?;
    // Parse the key first, so a wrong --key is named as such (not as a snapshot problem).
    Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| SignError::BadPrivateKey {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let (v, text) = sign_bytes(&bytes, &pkcs8).map_err(|reason| SignError::BadSnapshot {
        reason: format!("{}: {reason}", snapshot.display()),
    })?;
    let out = sig_path(snapshot);
    let tmp = with_suffix(&out, ".tmp");
    std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, &e))?;
    std::fs::rename(&tmp, &out).map_err(|e| io_err(&out, &e))?;
    Ok(v)
}

/// A parsed `.sig` file.
struct SigFile {
    key_id: String,
    version: u64,
    sha256: [u8; 32],
    signature: [u8; 64],
}

fn parse_sig(text: &str) -> Result<SigFile, SignError> {
    let bad = |line: usize, reason: String| SignError::Malformed { line, reason };
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l.trim_end() == SIG_MAGIC => {}
        _ => return Err(bad(1, format!("expected {SIG_MAGIC:?}"))),
    }
    let fields = ["key-id", "version", "sha256", "signature"];
    let mut values = [""; 4];
    for (i, (name, value)) in fields.iter().zip(values.iter_mut()).enumerate() {
        let n = i + 2;
        let l = lines
            .next()
            .ok_or_else(|| bad(n, format!("missing (expected \"{name}: ...\")")))?;
        let v = l
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(|| bad(n, format!("expected \"{name}: ...\"")))?;
        *value = v.trim();
    }
    if let Some((i, _)) = lines.enumerate().find(|(_, l)| !l.trim().is_empty()) {
        return Err(bad(i + 6, "unexpected text after the signature".into()));
    }
    let [id, version, sha, sig] = values;
    if parse_hex::<4>(id).is_none() {
        return Err(bad(2, "the key id must be 8 hex digits".into()));
    }
    let version = version
        .parse::<u64>()
        .map_err(|_| bad(3, "the version must be a whole number".into()))?;
    let sha256 =
        parse_hex::<32>(sha).ok_or_else(|| bad(4, "sha256 must be 64 hex digits".into()))?;
    let signature = parse_hex::<64>(sig)
        .ok_or_else(|| bad(5, "the signature must be 128 hex digits".into()))?;
    Ok(SigFile {
        key_id: id.to_ascii_lowercase(),
        version,
        sha256,
        signature,
    })
}

/// Verifies snapshot bytes against the text of their `.sig` and the trusted keys. The checks go
/// from the most to the least specific explanation: format, key, content, version, signature.
pub fn verify_bytes(
    snapshot: &[u8],
    sig_text: &str,
    trusted: &[TrustedKey],
) -> Result<Verified, SignError> {
    verify_hashed(snapshot, Sha256::digest(snapshot).into(), sig_text, trusted)
}

/// [`verify_bytes`] for a caller that has just computed `sha256` over exactly these `snapshot`
/// bytes (a delta's checked result, a download checked against its offer): the same checks
/// without hashing 20 MB again. Never pass a digest that came from the network.
pub fn verify_hashed(
    snapshot: &[u8],
    sha256: [u8; 32],
    sig_text: &str,
    trusted: &[TrustedKey],
) -> Result<Verified, SignError> {
    let s = parse_sig(sig_text)?;
    let key = trusted
        .iter()
        .find(|k| k.key_id == s.key_id)
        .ok_or_else(|| SignError::UnknownKeyId {
            key_id: s.key_id.clone(),
            trusted: trusted.iter().map(|k| k.key_id.clone()).collect(),
        })?;
    let sha = sha256;
    if sha != s.sha256 {
        return Err(SignError::ChangedSinceSigning {
            signed: hex(&s.sha256),
            found: hex(&sha),
        });
    }
    let version = snapshot_version(snapshot)?;
    if version != s.version {
        return Err(SignError::VersionMismatch {
            signed: s.version,
            snapshot: version,
        });
    }
    UnparsedPublicKey::new(&ED25519, &key.public)
        .verify(&message(s.version, &s.sha256), &s.signature)
        .map_err(|_| SignError::SignatureMismatch {
            key_id: key.key_id.clone(),
        })?;
    Ok(Verified {
        key_id: key.key_id.clone(),
        version,
        sha256: hex(&sha),
    })
}

/// Reads `SNAPSHOT.sig` (a missing file is [`SignError::MissingSignature`]).
pub fn read_sig(snapshot: &Path) -> Result<String, SignError> {
    let p = sig_path(snapshot);
    if !p.exists() {
        return Err(SignError::MissingSignature {
            path: p.display().to_string(),
        });
    }
    let bytes = read_limited(&p, MAX_SIG_LEN)?;
    String::from_utf8(bytes).map_err(|_| SignError::Malformed {
        line: 1,
        reason: "not UTF-8 text".into(),
    })
}

/// Verifies the snapshot file against `SNAPSHOT.sig` and the trusted keys.
pub fn verify(snapshot: &Path, trusted: &[TrustedKey]) -> Result<Verified, SignError> {
    let sig = read_sig(snapshot)?;
    let bytes = std::fs::read(snapshot).map_err(|e| io_err(snapshot, &e))?;
    verify_bytes(&bytes, &sig, trusted)
}

/// The domain separator of a rollback order (never valid as a snapshot signature, and back).
pub const ROLLBACK_DOMAIN: &[u8] = b"dragnet-rollback-v1\0";
/// The first line of a rollback order.
pub const ROLLBACK_MAGIC: &str = "dragnet-rollback-order v1";
/// A rollback order older than this is refused (seconds): an order is for the incident at hand,
/// not a standing permission a compromised server could replay next month.
pub const ROLLBACK_MAX_AGE: u64 = 24 * 3600;

/// An operator's signed permission to install one *older* snapshot (anti-rollback lifted for
/// exactly that snapshot, once): `dragnet rules rollback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackOrder {
    pub key_id: String,
    pub version: u64,
    pub sha256: [u8; 32],
    /// Unix seconds when it was issued; a gateway accepts each order once (it remembers the
    /// newest `issued` it obeyed) and none older than [`ROLLBACK_MAX_AGE`].
    pub issued: u64,
}

fn rollback_message(version: u64, sha256: &[u8; 32], issued: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(ROLLBACK_DOMAIN.len() + 48);
    m.extend_from_slice(ROLLBACK_DOMAIN);
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(sha256);
    m.extend_from_slice(&issued.to_be_bytes());
    m
}

/// Writes a rollback order for `snapshot` (its bytes), signed with the PKCS#8 key, issued at
/// `issued` (Unix seconds). Text, one `name: value` per line:
/// ```text
/// dragnet-rollback-order v1
/// key-id: 1a2b3c4d
/// version: 41
/// sha256: <64 hex digits>
/// issued: 1795000000
/// signature: <128 hex digits>
/// ```
pub fn rollback_order(snapshot: &[u8], pkcs8: &[u8], issued: u64) -> Result<String, String> {
    let version = snapshot_version(snapshot).map_err(|e| e.to_string())?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
        .map_err(|e| format!("not an ed25519 private key (PKCS#8): {e}"))?;
    let sha: [u8; 32] = Sha256::digest(snapshot).into();
    let sig = pair.sign(&rollback_message(version, &sha, issued));
    Ok(format!(
        "{ROLLBACK_MAGIC}\nkey-id: {}\nversion: {version}\nsha256: {}\nissued: {issued}\nsignature: {}\n",
        key_id(pair.public_key().as_ref()),
        hex(&sha),
        hex(sig.as_ref())
    ))
}

/// Checks a rollback order: format, trusted key, signature, and that it names exactly these
/// snapshot bytes. Its age and whether it was used already are the caller's to check (they need
/// the clock and the gateway's memory).
pub fn verify_rollback(
    order: &str,
    snapshot: &[u8],
    trusted: &[TrustedKey],
) -> Result<RollbackOrder, String> {
    let mut lines = order.lines();
    if lines.next().map(str::trim_end) != Some(ROLLBACK_MAGIC) {
        return Err(format!(
            "rollback order: line 1: expected {ROLLBACK_MAGIC:?}"
        ));
    }
    let mut get = |n: usize, name: &str| -> Result<String, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("rollback order: line {n}: expected \"{name}: ...\""))
    };
    let id = get(2, "key-id")?.to_ascii_lowercase();
    let version = get(3, "version")?
        .parse::<u64>()
        .map_err(|_| "rollback order: line 3: the version must be a whole number".to_string())?;
    let sha256 = parse_hex::<32>(&get(4, "sha256")?)
        .ok_or("rollback order: line 4: sha256 must be 64 hex digits")?;
    let issued = get(5, "issued")?
        .parse::<u64>()
        .map_err(|_| "rollback order: line 5: issued must be Unix seconds".to_string())?;
    let signature = parse_hex::<64>(&get(6, "signature")?)
        .ok_or("rollback order: line 6: the signature must be 128 hex digits")?;
    let key = trusted.iter().find(|k| k.key_id == id).ok_or_else(|| {
        format!("rollback order signed by unknown key id {id}: not among the trusted keys")
    })?;
    UnparsedPublicKey::new(&ED25519, &key.public)
        .verify(&rollback_message(version, &sha256, issued), &signature)
        .map_err(|_| format!("rollback order: the signature does not verify with key {id}"))?;
    let sha: [u8; 32] = Sha256::digest(snapshot).into();
    if sha != sha256 || snapshot_version(snapshot).ok() != Some(version) {
        return Err(format!(
            "rollback order names version {version} sha256 {}, not this snapshot (sha256 {})",
            hex(&sha256),
            hex(&sha)
        ));
    }
    Ok(RollbackOrder {
        key_id: id,
        version,
        sha256,
        issued,
    })
}

/// A `.sig` or rollback order on one line (`;` for newlines), for an HTTP header
/// (`X-Dragnet-Signature: $(tr '\n' ';' < SNAPSHOT.sig)`); the fields never contain `;`.
pub fn to_header(text: &str) -> String {
    text.trim_end().replace('\n', ";")
}

/// The inverse of [`to_header`].
pub fn from_header(line: &str) -> String {
    let mut s = line.trim().replace(';', "\n");
    s.push('\n');
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dragnet_rules::snapshot::write_snapshot;

    fn snapshot(version: u64) -> Vec<u8> {
        let e = crate::examples::engine(0).unwrap();
        write_snapshot(e.tables(), version, 0).unwrap()
    }

    fn pair() -> (Vec<u8>, TrustedKey) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let line = format!("{}\n", hex(kp.public_key().as_ref()));
        (pkcs8.as_ref().to_vec(), TrustedKey::parse(&line).unwrap())
    }

    #[test]
    fn round_trip() {
        let snap = snapshot(7);
        let (sk, pk) = pair();
        let (signed, text) = sign_bytes(&snap, &sk).unwrap();
        assert_eq!(signed.version, 7);
        assert_eq!(signed.key_id, pk.key_id());
        let v = verify_bytes(&snap, &text, std::slice::from_ref(&pk)).unwrap();
        assert_eq!(v, signed);
        assert_eq!(v.sha256, hex(&Sha256::digest(&snap)));
    }

    #[test]
    fn a_tampered_byte_is_a_changed_snapshot() {
        let mut snap = snapshot(7);
        let (sk, pk) = pair();
        let (_, text) = sign_bytes(&snap, &sk).unwrap();
        let last = snap.len() - 1;
        snap[last] ^= 1;
        let e = verify_bytes(&snap, &text, &[pk]).unwrap_err();
        assert!(matches!(e, SignError::ChangedSinceSigning { .. }), "{e}");
        assert!(e.to_string().contains("changed since signing"), "{e}");
    }

    #[test]
    fn verify_hashed_checks_the_given_digest_like_its_own() {
        let snap = snapshot(7);
        let (sk, pk) = pair();
        let (signed, text) = sign_bytes(&snap, &sk).unwrap();
        let keys = std::slice::from_ref(&pk);
        let sha: [u8; 32] = Sha256::digest(&snap).into();
        assert_eq!(verify_hashed(&snap, sha, &text, keys).unwrap(), signed);
        let mut other = sha;
        other[0] ^= 1;
        let e = verify_hashed(&snap, other, &text, keys).unwrap_err();
        assert!(matches!(e, SignError::ChangedSinceSigning { .. }), "{e}");
    }

    #[test]
    fn another_key_is_an_unknown_key_id() {
        let snap = snapshot(7);
        let (sk, signer) = pair();
        let (_, other) = pair();
        let (_, text) = sign_bytes(&snap, &sk).unwrap();
        let e = verify_bytes(&snap, &text, std::slice::from_ref(&other)).unwrap_err();
        assert_eq!(
            e,
            SignError::UnknownKeyId {
                key_id: signer.key_id().into(),
                trusted: vec![other.key_id().into()],
            }
        );
        assert!(e.to_string().contains("unknown key id"), "{e}");
        // With both trusted, it verifies.
        verify_bytes(&snap, &text, &[other, signer]).unwrap();
    }

    #[test]
    fn a_wrong_version_in_the_sig_is_refused() {
        let snap = snapshot(7);
        let (sk, pk) = pair();
        let (_, text) = sign_bytes(&snap, &sk).unwrap();
        let edited = text.replace("version: 7\n", "version: 8\n");
        assert_ne!(edited, text);
        let e = verify_bytes(&snap, &edited, &[pk]).unwrap_err();
        assert_eq!(
            e,
            SignError::VersionMismatch {
                signed: 8,
                snapshot: 7
            }
        );
    }

    #[test]
    fn a_signature_over_other_bytes_is_a_mismatch() {
        let snap = snapshot(7);
        let (sk, pk) = pair();
        let (_, text) = sign_bytes(&snap, &sk).unwrap();
        // Same key id, a signature of a different message: flip one hex digit of it.
        let i = text.find("signature: ").unwrap() + "signature: ".len();
        let mut b = text.into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(b).unwrap();
        let e = verify_bytes(&snap, &forged, &[pk]).unwrap_err();
        assert!(matches!(e, SignError::SignatureMismatch { .. }), "{e}");
    }

    #[test]
    fn a_malformed_sig_names_its_line() {
        let snap = snapshot(7);
        let (sk, pk) = pair();
        let (_, text) = sign_bytes(&snap, &sk).unwrap();
        let cases: Vec<(String, usize)> = vec![
            (String::new(), 1),
            ("hello\n".into(), 1),
            (text.replace("key-id:", "key:"), 2),
            (text.replace("version: 7", "version: seven"), 3),
            (text.replace("sha256: ", "sha256: zz"), 4),
            (text.lines().take(4).collect::<Vec<_>>().join("\n"), 5),
            (format!("{text}\nmore\n"), 7),
        ];
        for (t, line) in cases {
            match verify_bytes(&snap, &t, std::slice::from_ref(&pk)) {
                Err(SignError::Malformed { line: l, .. }) => assert_eq!(l, line, "{t}"),
                other => panic!("{t:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn public_key_files_are_checked() {
        let (_, pk) = pair();
        assert_eq!(TrustedKey::parse(&pk.to_line()).unwrap(), pk);
        for bad in [
            "",
            "abc",
            "zz00000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(TrustedKey::parse(bad).is_err(), "{bad:?}");
        }
        let wrong_id = format!("{} 00000000", hex(&pk.public));
        let e = TrustedKey::parse(&wrong_id).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
    }

    #[test]
    fn files_round_trip_and_the_private_key_is_private() {
        let d = std::env::temp_dir().join(format!("dragnet-signing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let k = keygen(&d.join("ops.v1")).unwrap();
        assert_eq!(k.key, d.join("ops.v1.key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            keygen(&d.join("ops.v1")),
            Err(SignError::Exists { .. })
        ));
        let snap = d.join("rules.snap");
        std::fs::write(&snap, snapshot(3)).unwrap();
        let pk = TrustedKey::load(&k.public).unwrap();
        assert_eq!(pk.key_id(), k.key_id);
        assert!(matches!(
            verify(&snap, std::slice::from_ref(&pk)),
            Err(SignError::MissingSignature { .. })
        ));
        let s = sign(&snap, &k.key).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(verify(&snap, &[pk]).unwrap(), s);
        // A public key is not a private key.
        assert!(matches!(
            sign(&snap, &k.public),
            Err(SignError::BadPrivateKey { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rollback_orders_name_one_snapshot_and_one_key() {
        let d = std::env::temp_dir().join(format!("dragnet-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let k = keygen(&d.join("ops")).unwrap();
        let trusted = vec![TrustedKey::load(&k.public).unwrap()];
        let pkcs8 = std::fs::read(&k.key).unwrap();
        let e = crate::examples::engine(0).unwrap();
        let v3 = dragnet_rules::snapshot::write_snapshot(e.tables(), 3, 0).unwrap();
        let v4 = dragnet_rules::snapshot::write_snapshot(e.tables(), 4, 0).unwrap();
        let order = rollback_order(&v3, &pkcs8, 1000).unwrap();
        let o = verify_rollback(&order, &v3, &trusted).unwrap();
        assert_eq!(
            (o.version, o.issued, o.key_id.as_str()),
            (3, 1000, k.key_id.as_str())
        );
        // Through a header and back.
        assert_eq!(
            verify_rollback(&from_header(&to_header(&order)), &v3, &trusted).unwrap(),
            o
        );
        // Not for another snapshot.
        let err = verify_rollback(&order, &v4, &trusted).unwrap_err();
        assert!(err.contains("not this snapshot"), "{err}");
        // Tampered issue time: the signature no longer verifies.
        let forged = order.replace("issued: 1000", "issued: 2000");
        assert!(verify_rollback(&forged, &v3, &trusted)
            .unwrap_err()
            .contains("does not verify"));
        // Unknown key.
        let other = keygen(&d.join("other")).unwrap();
        let other = vec![TrustedKey::load(&other.public).unwrap()];
        assert!(verify_rollback(&order, &v3, &other)
            .unwrap_err()
            .contains("unknown key id"));
        // A snapshot signature is not a rollback order.
        let (_, sig) = sign_bytes(&v3, &pkcs8).unwrap();
        assert!(verify_rollback(&sig, &v3, &trusted).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
