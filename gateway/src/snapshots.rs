//! The snapshot lifecycle of one gateway: verify → build → swap → persist as last-good, for every
//! way a snapshot arrives (start-up, SIGHUP reload of the configured file, a direct push on the
//! admin API, the rules server's subscription, promotion of a shadow candidate).
//!
//! Rules no configuration removes:
//! - a snapshot that fails any check (signature, checksum, format, version) is refused whole and
//!   the running one stays; every refusal is counted and logged with its reason;
//! - with trusted keys configured, nothing unsigned is installed; a push or a subscription needs
//!   trusted keys at all (a network path never installs unsigned rules);
//! - anti-rollback: a snapshot must be newer than the running one, unless `rules.allow_rollback`
//!   or a signed rollback order ([`crate::signing::RollbackOrder`]) names exactly that snapshot;
//!   each order is obeyed once and logged as an audit event;
//! - the last good snapshot is persisted in `rules.state_dir` before the swap is acknowledged, so a
//!   gateway killed at any moment restarts on a snapshot it had verified.
//!
//! Persistence: `STATE/snap-<sha256>.snap` and `.sig` are written aside (temp file, fsync, rename),
//! then the one-line pointer file `STATE/last-good` is replaced the same way, then the directory
//! is fsynced. The pointer names a complete pair or the previous one: never half of each. The
//! previous pair is kept (one step back), older ones are removed.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use crate::signing::{self, TrustedKey};
use crate::store::{Provenance, Shadow, Store};
use crate::unix_now;
use dragnet_rules::snapshot::hex;
use dragnet_rules::Engine;

/// The pointer file naming the last good snapshot pair.
pub const POINTER: &str = "last-good";
/// Where the newest obeyed rollback order's issue time is kept (each order is obeyed once).
const ROLLBACK_STATE: &str = "rollback-issued";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: &'static str,
}

/// `dragnet_snapshot_applied_total{origin}` and `dragnet_snapshot_refused_total{origin}`.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMetrics {
    applied: Family<OriginLabel, Counter>,
    refused: Family<OriginLabel, Counter>,
    persist_failures: Counter,
}

impl SnapshotMetrics {
    pub fn register(reg: &mut Registry) -> SnapshotMetrics {
        let m = SnapshotMetrics::default();
        reg.register(
            "dragnet_snapshot_applied",
            "Snapshots installed, by how they arrived (file, push, server, promote, last-good)",
            m.applied.clone(),
        );
        reg.register(
            "dragnet_snapshot_refused",
            "Snapshots refused (signature, checksum, format, anti-rollback), by how they arrived; the running one stayed",
            m.refused.clone(),
        );
        reg.register(
            "dragnet_snapshot_persist_failures",
            "Last-good snapshots that could not be written to rules.state_dir",
            m.persist_failures.clone(),
        );
        m
    }

    pub fn applied(&self, origin: &'static str) -> u64 {
        self.applied.get_or_create(&OriginLabel { origin }).get()
    }

    pub fn refused(&self, origin: &'static str) -> u64 {
        self.refused.get_or_create(&OriginLabel { origin }).get()
    }
}

/// The engine a gateway starts with and where it came from.
#[derive(Debug)]
pub struct Initial {
    pub engine: Engine,
    pub provenance: Provenance,
    /// A configured snapshot that could not be used because a newer or valid last-good won
    /// (logged by the caller once logging is up).
    pub note: Option<String>,
}

/// A snapshot read from disk and verified: bytes, engine, signing key.
struct Loaded {
    bytes: Vec<u8>,
    engine: Engine,
    key_id: Option<String>,
}

/// Which check refused an arriving snapshot: decided where the check failed, so a metric label
/// never depends on the wording of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The bytes are damaged: they differ from what was signed, or are not a valid snapshot.
    Integrity,
    /// Nothing trusted vouches for them: no signature, an unknown key, a signature that does not
    /// verify, or no trusted keys to verify with.
    Signature,
    /// Not newer than the running set (anti-rollback), and no valid, fresh, unused rollback order.
    Version,
    /// Anything else (an internal failure).
    Other,
}

impl RefusalClass {
    /// The `reason` label of `dragnet_control_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalClass::Integrity => "integrity",
            RefusalClass::Signature => "signature",
            RefusalClass::Version => "version",
            RefusalClass::Other => "other",
        }
    }
}

/// A refused snapshot: the class for metrics, the reason for people (logs, nacks, the fleet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub class: RefusalClass,
    pub reason: String,
}

impl Refusal {
    pub fn new(class: RefusalClass, reason: impl Into<String>) -> Refusal {
        Refusal {
            class,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> String {
        r.reason
    }
}

impl From<signing::SignError> for Refusal {
    fn from(e: signing::SignError) -> Refusal {
        use signing::SignError as E;
        let class = match &e {
            E::ChangedSinceSigning { .. } | E::BadSnapshot { .. } => RefusalClass::Integrity,
            E::MissingSignature { .. }
            | E::Malformed { .. }
            | E::UnknownKeyId { .. }
            | E::VersionMismatch { .. }
            | E::SignatureMismatch { .. } => RefusalClass::Signature,
            _ => RefusalClass::Other,
        };
        Refusal::new(class, e.to_string())
    }
}

fn load_pair(snap: &Path, sig: Option<&Path>, trusted: &[TrustedKey]) -> Result<Loaded, String> {
    let bytes = std::fs::read(snap).map_err(|e| format!("cannot read {}: {e}", snap.display()))?;
    let sig = match sig {
        Some(p) if p.exists() => Some(
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        ),
        _ => None,
    };
    let key_id = verify(&bytes, sig.as_deref(), trusted, true)
        .map_err(|e| format!("{}: {e}", snap.display()))?;
    let engine = Engine::from_bytes(&bytes).map_err(|e| format!("{}: {e}", snap.display()))?;
    Ok(Loaded {
        bytes,
        engine,
        key_id,
    })
}

/// Signature check: with trusted keys a valid `.sig` is required; without, a network arrival
/// (`unsigned_ok == false`) is refused outright.
fn verify(
    bytes: &[u8],
    sig: Option<&str>,
    trusted: &[TrustedKey],
    unsigned_ok: bool,
) -> Result<Option<String>, Refusal> {
    verify_hashed(bytes, None, sig, trusted, unsigned_ok)
}

/// [`verify`] with the bytes' SHA-256 when the caller has just computed it over these bytes.
fn verify_hashed(
    bytes: &[u8],
    sha: Option<[u8; 32]>,
    sig: Option<&str>,
    trusted: &[TrustedKey],
    unsigned_ok: bool,
) -> Result<Option<String>, Refusal> {
    if trusted.is_empty() {
        return if unsigned_ok {
            Ok(None)
        } else {
            Err(Refusal::new(
                RefusalClass::Signature,
                "no rules.trusted_keys configured: a pushed snapshot is never installed unverified",
            ))
        };
    }
    let sig = sig.ok_or(Refusal::new(
        RefusalClass::Signature,
        "no signature: trusted keys are configured, so every snapshot must be signed (dragnet rules sign)",
    ))?;
    match sha {
        Some(sha) => signing::verify_hashed(bytes, sha, sig, trusted),
        None => signing::verify_bytes(bytes, sig, trusted),
    }
    .map(|v| Some(v.key_id))
    .map_err(Refusal::from)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The last-good pair named by `STATE/last-good`, if any.
fn last_good_paths(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = std::fs::read_to_string(dir.join(POINTER)).ok()?;
    let name = name.trim();
    // Only names we write: `snap-<64 hex>.snap`; anything else is not followed.
    let ok = name.len() == 5 + 64 + 5
        && name.starts_with("snap-")
        && name.ends_with(".snap")
        && name[5..69].bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| {
        let p = dir.join(name);
        let s = signing::sig_path(&p);
        (p, s)
    })
}

/// Chooses the start-up snapshot: the configured file and the last-good one are both verified;
/// the newer valid one wins (a gateway that ran v7 from its rules server does not fall back to the
/// v5 file it was installed with). A broken configured file with a valid last-good starts on the
/// last-good (noted); with neither, the error. No file and no last-good: the embedded example set.
pub fn initial(
    snapshot: Option<&Path>,
    state_dir: Option<&Path>,
    trusted: &[TrustedKey],
    embedded: impl FnOnce() -> Result<Engine, String>,
) -> Result<Initial, String> {
    let file = snapshot.map(|p| {
        if trusted.is_empty() {
            load_pair(p, None, trusted)
        } else {
            load_pair(p, Some(&signing::sig_path(p)), trusted)
        }
    });
    let last = state_dir
        .and_then(last_good_paths)
        .map(|(p, s)| load_pair(&p, Some(&s), trusted));
    let pick = |l: Loaded, origin: &'static str| Initial {
        provenance: Provenance {
            origin,
            sha256: Some(sha256(&l.bytes)),
            key_id: l.key_id,
        },
        engine: l.engine,
        note: None,
    };
    match (file, last) {
        (None, None) => Ok(Initial {
            engine: embedded()?,
            provenance: Provenance {
                origin: "embedded",
                ..Provenance::default()
            },
            note: None,
        }),
        (Some(f), None) => f.map(|l| pick(l, "file")),
        (None, Some(Ok(l))) => Ok(pick(l, "last-good")),
        (None, Some(Err(e))) => Err(format!(
            "the last-good snapshot cannot be used and no rules.snapshot is configured: {e}"
        )),
        (Some(Ok(f)), Some(Ok(l))) => {
            if l.engine.version() > f.engine.version() {
                let note = format!(
                    "starting on the last-good snapshot version {} (newer than rules.snapshot version {})",
                    l.engine.version(),
                    f.engine.version()
                );
                let mut i = pick(l, "last-good");
                i.note = Some(note);
                Ok(i)
            } else {
                Ok(pick(f, "file"))
            }
        }
        (Some(Ok(f)), Some(Err(e))) => {
            let mut i = pick(f, "file");
            i.note = Some(format!("the last-good snapshot was not used: {e}"));
            Ok(i)
        }
        (Some(Err(e)), Some(Ok(l))) => {
            let mut i = pick(l, "last-good");
            i.note = Some(format!(
                "rules.snapshot refused, starting on the last-good snapshot: {e}"
            ));
            Ok(i)
        }
        (Some(Err(e)), Some(Err(_))) => Err(e),
    }
}

/// Everything a snapshot may arrive with.
#[derive(Debug)]
pub struct Arrival {
    pub bytes: Vec<u8>,
    /// The `.sig` text.
    pub sig: Option<String>,
    /// A rollback order (`dragnet rules rollback`), lifting anti-rollback for this snapshot.
    pub rollback: Option<String>,
    /// "file", "push", "server", "promote".
    pub origin: &'static str,
}

/// The gateway's snapshot lifecycle (module docs).
#[derive(Debug)]
pub struct Lifecycle {
    store: Arc<Store>,
    trusted: Vec<TrustedKey>,
    allow_rollback: bool,
    state_dir: Option<PathBuf>,
    snapshot_file: Option<PathBuf>,
    metrics: SnapshotMetrics,
    /// Serialises installs (version check, swap, persist); never taken on the data path.
    lock: Mutex<()>,
}

impl Lifecycle {
    pub fn new(
        store: Arc<Store>,
        trusted: Vec<TrustedKey>,
        allow_rollback: bool,
        state_dir: Option<PathBuf>,
        snapshot_file: Option<PathBuf>,
        metrics: SnapshotMetrics,
    ) -> Lifecycle {
        Lifecycle {
            store,
            trusted,
            allow_rollback,
            state_dir,
            snapshot_file,
            metrics,
            lock: Mutex::new(()),
        }
    }

    pub fn metrics(&self) -> &SnapshotMetrics {
        &self.metrics
    }

    pub fn has_trusted_keys(&self) -> bool {
        !self.trusted.is_empty()
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// At start: make sure the running snapshot is the persisted last-good (a configured file
    /// newer than the last-good becomes it), so a delta can be based on it after a restart.
    pub fn persist_running_file(&self) {
        let p = self.store.provenance();
        if p.origin != "file" {
            return;
        }
        let Some(file) = &self.snapshot_file else {
            return;
        };
        let (Ok(bytes), sig) = (
            std::fs::read(file),
            std::fs::read_to_string(signing::sig_path(file)).ok(),
        ) else {
            return;
        };
        if Some(sha256(&bytes)) == p.sha256 {
            self.persist(&bytes, sig.as_deref());
        }
    }

    /// (version, SHA-256) of the running snapshot.
    pub fn running(&self) -> (u64, Option<[u8; 32]>) {
        let v = self.store.load().engine.version();
        (v, self.store.provenance().sha256)
    }

    /// The running snapshot's bytes, read back from the last-good pair when it is the running one
    /// (nothing is kept in memory for this). The pair is named by its SHA-256, so the name says
    /// whether it is the running one without hashing 20 MB; bytes damaged on disk since cost
    /// only a refused delta (its result's hash is checked) and a full download.
    pub fn running_bytes(&self) -> Option<Arc<Vec<u8>>> {
        let want = self.store.provenance().sha256?;
        let (p, _) = last_good_paths(self.state_dir.as_deref()?)?;
        let named = p
            .file_name()?
            .to_str()?
            .strip_prefix("snap-")?
            .strip_suffix(".snap")?;
        if named != hex(&want) {
            return None;
        }
        std::fs::read(p).ok().map(Arc::new)
    }

    /// Reloads the configured snapshot file (SIGHUP, `POST /v1/reload`).
    pub fn reload(&self) -> Result<u64, String> {
        let Some(p) = &self.snapshot_file else {
            self.metrics
                .refused
                .get_or_create(&OriginLabel { origin: "file" })
                .inc();
            return Err("no rules.snapshot configured: the embedded example set stays".into());
        };
        let read = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                self.metrics
                    .refused
                    .get_or_create(&OriginLabel { origin: "file" })
                    .inc();
                return Err(e);
            }
        };
        let sig = if self.trusted.is_empty() {
            None
        } else {
            match signing::read_sig(p) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.metrics
                        .refused
                        .get_or_create(&OriginLabel { origin: "file" })
                        .inc();
                    tracing::error!(error = %e, "snapshot refused; the running one stays");
                    return Err(format!("{}: {e}", p.display()));
                }
            }
        };
        self.apply(Arrival {
            bytes,
            sig,
            rollback: None,
            origin: "file",
        })
        .map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Verifies, builds, swaps and persists a snapshot; the running one stays on any error.
    pub fn apply(&self, a: Arrival) -> Result<u64, String> {
        self.apply_inner(a, None).map_err(String::from)
    }

    /// [`Lifecycle::apply`] for bytes whose SHA-256 the caller has just computed over exactly
    /// them (the control plane's checked downloads and deltas): one hash of 20 MB fewer.
    pub fn apply_hashed(&self, a: Arrival, sha256: [u8; 32]) -> Result<u64, Refusal> {
        self.apply_inner(a, Some(sha256))
    }

    fn apply_inner(&self, a: Arrival, sha: Option<[u8; 32]>) -> Result<u64, Refusal> {
        let origin = a.origin;
        let r = self.install(a, sha);
        match &r {
            Ok(v) => {
                self.metrics
                    .applied
                    .get_or_create(&OriginLabel { origin })
                    .inc();
                tracing::info!(version = v, origin, "snapshot installed");
            }
            Err(e) => {
                self.metrics
                    .refused
                    .get_or_create(&OriginLabel { origin })
                    .inc();
                tracing::error!(origin, error = %e, "snapshot refused; the running one stays");
            }
        }
        r
    }

    fn install(&self, a: Arrival, known_sha: Option<[u8; 32]>) -> Result<u64, Refusal> {
        use RefusalClass::{Integrity, Other, Version};
        let key_id = verify_hashed(
            &a.bytes,
            known_sha,
            a.sig.as_deref(),
            &self.trusted,
            a.origin == "file",
        )?;
        let engine =
            Engine::from_bytes(&a.bytes).map_err(|e| Refusal::new(Integrity, e.to_string()))?;
        let _g = self
            .lock
            .lock()
            .map_err(|_| Refusal::new(Other, "internal: install lock poisoned"))?;
        let (new, running) = (engine.version(), self.store.load().engine.version());
        let mut audit = None;
        if new <= running && !self.allow_rollback {
            let Some(order) = &a.rollback else {
                return Err(Refusal::new(Version, format!(
                    "version {new} is not newer than the running version {running}; refused as a rollback (an operator can force one with a signed order: dragnet rules rollback)"
                )));
            };
            // An order that does not hold leaves the anti-rollback refusal standing.
            let o = signing::verify_rollback(order, &a.bytes, &self.trusted)
                .map_err(|e| Refusal::new(Version, e))?;
            let now = unix_now();
            if o.issued + signing::ROLLBACK_MAX_AGE < now {
                return Err(Refusal::new(
                    Version,
                    format!(
                        "rollback order issued at {} is older than {} s: refused (issue a new one)",
                        o.issued,
                        signing::ROLLBACK_MAX_AGE
                    ),
                ));
            }
            if o.issued <= self.last_rollback_issued() {
                return Err(Refusal::new(
                    Version,
                    format!(
                        "rollback order issued at {} was already obeyed (or an older one): refused as a replay",
                        o.issued
                    ),
                ));
            }
            audit = Some(o);
        }
        let sha = known_sha.unwrap_or_else(|| sha256(&a.bytes));
        // Persist before the swap is acknowledged: after Ok, a restart comes back on this one.
        self.persist(&a.bytes, a.sig.as_deref());
        self.store.swap(engine, unix_now());
        self.store.set_provenance(Provenance {
            origin: a.origin,
            sha256: Some(sha),
            key_id,
        });
        if let Some(o) = audit {
            self.remember_rollback(o.issued);
            tracing::warn!(
                target: "dragnet::audit",
                event = "rollback",
                from = running,
                to = new,
                sha256 = %hex(&sha),
                key_id = %o.key_id,
                issued = o.issued,
                origin = a.origin,
                "AUDIT: rollback to an older snapshot forced by a signed order"
            );
        }
        Ok(new)
    }

    /// Loads a candidate to run in shadow beside the active snapshot (verified like any other
    /// arrival; anti-rollback is checked at promotion, not here).
    pub fn load_candidate(&self, bytes: Vec<u8>, sig: Option<String>) -> Result<u64, String> {
        verify(&bytes, sig.as_deref(), &self.trusted, false)?;
        let engine = Engine::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let v = engine.version();
        self.store
            .set_shadow(Shadow::new(engine, Arc::new(bytes), sig, unix_now()));
        tracing::info!(version = v, "candidate snapshot running in shadow");
        Ok(v)
    }

    /// Makes the shadow candidate active (through [`Lifecycle::apply`]: verified, version-checked,
    /// persisted). On refusal the candidate keeps running in shadow.
    pub fn promote(&self) -> Result<u64, String> {
        let s = self
            .store
            .shadow()
            .ok_or("no candidate is running in shadow (PUT /v1/shadow first)")?;
        let v = self.apply(Arrival {
            bytes: s.bytes.as_ref().clone(),
            sig: s.sig.clone(),
            rollback: None,
            origin: "promote",
        })?;
        self.store.take_shadow();
        Ok(v)
    }

    fn last_rollback_issued(&self) -> u64 {
        self.state_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join(ROLLBACK_STATE)).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn remember_rollback(&self, issued: u64) {
        if let Some(d) = &self.state_dir {
            if let Err(e) = write_atomic(d, ROLLBACK_STATE, format!("{issued}\n").as_bytes()) {
                tracing::error!(error = %e, "cannot record the rollback order as obeyed");
            }
        }
    }

    /// Writes the last-good pair (module docs). Failures are logged and counted: the swap goes on
    /// (the rules are good; only the restart path is weaker, and the metric says so).
    fn persist(&self, bytes: &[u8], sig: Option<&str>) {
        let Some(dir) = &self.state_dir else {
            return;
        };
        if let Err(e) = persist_pair(dir, bytes, sig) {
            self.metrics.persist_failures.inc();
            tracing::error!(dir = %dir.display(), error = %e, "cannot persist the last-good snapshot");
        }
    }
}

fn persist_pair(dir: &Path, bytes: &[u8], sig: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("snap-{}.snap", hex(&sha256(bytes)));
    let previous = last_good_paths(dir);
    if let Some(sig) = sig {
        write_atomic(dir, &format!("{name}.sig"), sig.as_bytes())?;
    } else {
        let _ = std::fs::remove_file(dir.join(format!("{name}.sig")));
    }
    write_atomic(dir, &name, bytes)?;
    write_atomic(dir, POINTER, format!("{name}\n").as_bytes())?;
    // Keep the new pair and the one before it; remove older ones.
    let keep: Vec<PathBuf> = [Some(dir.join(&name)), previous.map(|(p, _)| p)]
        .into_iter()
        .flatten()
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            let snap = n.strip_suffix(".sig").unwrap_or(&n);
            if n.starts_with("snap-")
                && !keep
                    .iter()
                    .any(|k| k.file_name().is_some_and(|f| f == snap))
            {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    Ok(())
}

/// temp file, fsync, rename, fsync the directory.
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The rules server's offers go through the same lifecycle as a push: verify (trusted keys are
/// required), build, anti-rollback unless a signed rollback order came with it, persist, swap.
impl crate::control::Target for Lifecycle {
    fn running(&self) -> (u64, Option<[u8; 32]>) {
        Lifecycle::running(self)
    }

    fn running_bytes(&self) -> Option<Arc<Vec<u8>>> {
        Lifecycle::running_bytes(self)
    }

    fn apply(
        &self,
        snapshot: Vec<u8>,
        sha256: [u8; 32],
        sig: String,
        rollback: Option<Vec<u8>>,
    ) -> Result<u64, Refusal> {
        let rollback = match rollback.map(String::from_utf8) {
            None => None,
            Some(Ok(o)) => Some(o),
            Some(Err(_)) => {
                self.metrics
                    .refused
                    .get_or_create(&OriginLabel { origin: "server" })
                    .inc();
                return Err(Refusal::new(
                    RefusalClass::Version,
                    "the rollback order is not UTF-8 text: refused",
                ));
            }
        };
        Lifecycle::apply_hashed(
            self,
            Arrival {
                bytes: snapshot,
                sig: Some(sig),
                rollback,
                origin: "server",
            },
            sha256,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dragnet_rules::snapshot::write_snapshot;

    struct Fixture {
        dir: PathBuf,
        pkcs8: Vec<u8>,
        trusted: Vec<TrustedKey>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir =
                std::env::temp_dir().join(format!("dragnet-life-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let k = signing::keygen(&dir.join("ops")).unwrap();
            Fixture {
                pkcs8: std::fs::read(&k.key).unwrap(),
                trusted: vec![TrustedKey::load(&k.public).unwrap()],
                dir,
            }
        }
        fn snap(&self, version: u64) -> (Vec<u8>, String) {
            let e = crate::examples::engine(0).unwrap();
            let b = write_snapshot(e.tables(), version, 0).unwrap();
            let (_, sig) = signing::sign_bytes(&b, &self.pkcs8).unwrap();
            (b, sig)
        }
        fn lifecycle(&self, version: u64) -> Lifecycle {
            let (b, _) = self.snap(version);
            let store = Arc::new(Store::new(Engine::from_bytes(&b).unwrap(), 0));
            Lifecycle::new(
                store,
                self.trusted.clone(),
                false,
                Some(self.dir.join("state")),
                None,
                SnapshotMetrics::default(),
            )
        }
        fn push(&self, v: u64) -> Arrival {
            let (bytes, sig) = self.snap(v);
            Arrival {
                bytes,
                sig: Some(sig),
                rollback: None,
                origin: "push",
            }
        }
    }

    /// Each refusal is classed where its check failed (the control plane's metric label),
    /// whatever its message says.
    #[test]
    fn refusals_carry_the_class_of_the_failed_check() {
        use crate::control::Target;
        let f = Fixture::new("classes");
        let l = f.lifecycle(5);
        let class = |bytes: Vec<u8>, sig: String, rollback: Option<Vec<u8>>| {
            let sha = sha256(&bytes);
            Target::apply(&l, bytes, sha, sig, rollback)
                .unwrap_err()
                .class
        };
        // Not newer than the running 5, with no order (or an order that is not text).
        let (b, s) = f.snap(4);
        assert_eq!(class(b.clone(), s.clone(), None), RefusalClass::Version);
        assert_eq!(class(b, s, Some(vec![0xff, 0xfe])), RefusalClass::Version);
        // Damaged after signing.
        let (mut b, s) = f.snap(6);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert_eq!(class(b, s, None), RefusalClass::Integrity);
        // Signed by a key this gateway does not trust.
        let other = Fixture::new("classes-other");
        let (b, s) = other.snap(7);
        assert_eq!(class(b, s, None), RefusalClass::Signature);
        // A signature text that is not one.
        let (b, _) = f.snap(8);
        assert_eq!(
            class(b, "not a signature".into(), None),
            RefusalClass::Signature
        );
        // Bytes damaged before they were signed: the signature holds, the snapshot's own body
        // checksum does not.
        let (mut b, _) = f.snap(8);
        let last = b.len() - 1;
        b[last] ^= 1;
        let (_, s) = signing::sign_bytes(&b, &f.pkcs8).unwrap();
        assert_eq!(class(b, s, None), RefusalClass::Integrity);
        // And the good one goes in.
        let (b, s) = f.snap(9);
        let sha = sha256(&b);
        assert_eq!(Target::apply(&l, b, sha, s, None), Ok(9));
        let _ = std::fs::remove_dir_all(&other.dir);
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    /// The delta base comes from the last-good pair by name, unhashed: damage on disk since the
    /// install is caught by the delta's result hash, so it costs a full download, never a wrong
    /// install.
    #[test]
    fn a_damaged_delta_base_fails_the_result_hash() {
        let f = Fixture::new("base");
        let l = f.lifecycle(1);
        let (good, sig) = f.snap(2);
        let a = Arrival {
            bytes: good.clone(),
            sig: Some(sig),
            rollback: None,
            origin: "push",
        };
        l.apply(a).unwrap();
        let (_, running) = l.running();
        let running = running.unwrap();
        assert_eq!(*l.running_bytes().unwrap(), good);
        let (next, _) = f.snap(3);
        let d = crate::control::delta::make(&good, &next);
        // Damage the stored pair in place (same name).
        let (p, _) = last_good_paths(&f.dir.join("state")).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&p, &b).unwrap();
        let base = l.running_bytes().unwrap();
        let e = crate::control::delta::apply_to_known_base(&base, running, &d).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        // A pair that is not the running one is not offered as a base at all.
        l.apply(f.push(4)).unwrap();
        std::fs::write(
            f.dir.join("state").join(POINTER),
            format!("snap-{}.snap\n", hex(&running)),
        )
        .unwrap();
        assert!(l.running_bytes().is_none());
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[test]
    fn install_persists_last_good_and_a_restart_starts_on_it() {
        let f = Fixture::new("persist");
        let l = f.lifecycle(1);
        assert_eq!(l.apply(f.push(2)).unwrap(), 2);
        assert_eq!(l.running().0, 2);
        assert_eq!(l.metrics.applied("push"), 1);
        // Bytes for a delta come back from disk and match the running SHA-256.
        let b = l.running_bytes().unwrap();
        assert_eq!(Some(sha256(&b)), l.running().1);
        // A restart: no configured file, the last-good wins over the embedded set.
        let state = f.dir.join("state");
        let i = initial(None, Some(&state), &f.trusted, || unreachable!()).unwrap();
        assert_eq!((i.engine.version(), i.provenance.origin), (2, "last-good"));
        // A configured older file: the newer last-good wins, noted.
        let file = f.dir.join("rules.snap");
        let (b1, s1) = f.snap(1);
        std::fs::write(&file, b1).unwrap();
        std::fs::write(signing::sig_path(&file), s1).unwrap();
        let i = initial(Some(&file), Some(&state), &f.trusted, || unreachable!()).unwrap();
        assert_eq!(i.engine.version(), 2);
        assert!(i.note.unwrap().contains("newer"));
        // A corrupt configured file with a good last-good: start on the last-good.
        std::fs::write(&file, b"garbage").unwrap();
        let i = initial(Some(&file), Some(&state), &f.trusted, || unreachable!()).unwrap();
        assert_eq!((i.engine.version(), i.provenance.origin), (2, "last-good"));
        // Three installs: only the last two pairs stay on disk.
        l.apply(f.push(3)).unwrap();
        l.apply(f.push(4)).unwrap();
        let snaps = std::fs::read_dir(&state)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("snap-") && n.ends_with(".snap")
            })
            .count();
        assert_eq!(snaps, 2);
        std::fs::remove_dir_all(&f.dir).unwrap();
    }

    #[test]
    fn refusals_keep_the_running_snapshot_and_the_last_good() {
        let f = Fixture::new("refuse");
        let l = f.lifecycle(1);
        l.apply(f.push(5)).unwrap();
        // Unsigned, tampered, corrupt, older: all refused, v5 stays, last-good stays v5.
        let mut a = f.push(6);
        a.sig = None;
        assert!(l.apply(a).unwrap_err().contains("no signature"));
        let mut a = f.push(6);
        let n = a.bytes.len();
        a.bytes[n - 1] ^= 1;
        assert!(
            l.apply(a).unwrap_err().contains("changed since signing"),
            "tampered"
        );
        let mut a = f.push(6);
        a.bytes.truncate(100);
        assert!(l.apply(a).is_err());
        let e = l.apply(f.push(4)).unwrap_err();
        assert!(e.contains("not newer"), "{e}");
        assert_eq!(l.running().0, 5);
        assert_eq!(l.metrics.refused("push"), 4);
        let i = initial(
            None,
            Some(&f.dir.join("state")),
            &f.trusted,
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(i.engine.version(), 5);
        // Without trusted keys a push is refused outright.
        let bare = Lifecycle::new(
            Arc::new(Store::new(crate::examples::engine(0).unwrap(), 0)),
            Vec::new(),
            false,
            None,
            None,
            SnapshotMetrics::default(),
        );
        assert!(bare.apply(f.push(9)).unwrap_err().contains("trusted_keys"));
        std::fs::remove_dir_all(&f.dir).unwrap();
    }

    #[test]
    fn a_signed_rollback_order_is_obeyed_once() {
        let f = Fixture::new("rollback");
        let l = f.lifecycle(1);
        l.apply(f.push(7)).unwrap();
        let (b3, s3) = f.snap(3);
        let order = signing::rollback_order(&b3, &f.pkcs8, unix_now()).unwrap();
        let arrival = || Arrival {
            bytes: b3.clone(),
            sig: Some(s3.clone()),
            rollback: Some(order.clone()),
            origin: "push",
        };
        assert_eq!(l.apply(arrival()).unwrap(), 3);
        assert_eq!(l.running().0, 3);
        // Back up to 7, then a replay of the same order is refused.
        l.apply(f.push(7)).unwrap();
        let e = l.apply(arrival()).unwrap_err();
        assert!(e.contains("replay"), "{e}");
        // An order for another snapshot does not lift anti-rollback for this one.
        let (b2, _) = f.snap(2);
        let other = signing::rollback_order(&b2, &f.pkcs8, unix_now() + 1).unwrap();
        let mut a = arrival();
        a.rollback = Some(other);
        assert!(l.apply(a).unwrap_err().contains("not this snapshot"));
        // A stale order is refused.
        let old = signing::rollback_order(&b3, &f.pkcs8, 10).unwrap();
        let mut a = arrival();
        a.rollback = Some(old);
        assert!(l.apply(a).unwrap_err().contains("older than"));
        assert_eq!(l.running().0, 7);
        std::fs::remove_dir_all(&f.dir).unwrap();
    }

    #[test]
    fn shadow_candidate_counts_differences_and_promotes() {
        use dragnet_rules::compile::{source_options, CompileConfig};
        use dragnet_rules::Compiler;
        let f = Fixture::new("shadow");
        let l = f.lifecycle(1);
        // The candidate blocks one more domain than the active example set.
        let mut c = Compiler::new(CompileConfig::default(), false);
        let opts = source_options(None, "extra.domains", None, false).unwrap();
        c.add_text("allowed-today.example\n", "extra.domains", &opts)
            .unwrap();
        let (t, _) = c.finish().unwrap();
        let b = write_snapshot(&t, 2, 0).unwrap();
        let (_, sig) = signing::sign_bytes(&b, &f.pkcs8).unwrap();
        l.load_candidate(b, Some(sig)).unwrap();
        let store = &l.store;
        let name = b"www.allowed-today.example";
        let a = store.load();
        let v = a.engine.check_domain(name, 0);
        assert_eq!(v.action, dragnet_rules::Action::Allow);
        store.shadow_compare(crate::store::Plane::Dns, v.action, |e| {
            e.check_domain(name, 0)
        });
        store.shadow_compare(crate::store::Plane::Dns, v.action, |e| {
            e.check_domain(b"unrelated.example", 0)
        });
        let s = store.shadow().unwrap();
        let d = s.differences();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].plane, d[0].active, d[0].candidate, d[0].count),
            ("dns", "allow", "block", 1)
        );
        assert_eq!(s.compared()[1], ("dns", 2));
        assert_eq!(l.promote().unwrap(), 2);
        assert!(store.shadow().is_none());
        assert_eq!(
            store.load().engine.check_domain(name, 0).action,
            dragnet_rules::Action::Block
        );
        assert_eq!(store.provenance().origin, "promote");
        std::fs::remove_dir_all(&f.dir).unwrap();
    }
}
