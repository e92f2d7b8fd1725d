//! The rules server (`dragnet rules serve`): the content-addressed store, the subscribers, the
//! fleet table and the maintainers' requests (design and trust model in the [module docs](super)).
//!
//! Store layout under `--dir`:
//!
//! ```text
//! objects/<sha256 hex>       a published snapshot, named by the SHA-256 of its bytes
//! objects/<sha256 hex>.sig   the detached signature text it was published with
//! published.json             the ordered history; the last entry is what gateways are offered
//! ```
//!
//! Every file is written aside, fsynced, then renamed over its name (and the directory fsynced),
//! so a crash leaves either the old or the new file, never half of one; objects are written before
//! the history that names them. On start the history is reloaded and its last entry becomes
//! current again, so a restarted server offers reconnecting gateways what it offered before.
//!
//! Cost model: a snapshot is held in memory once while it is current (shared by every
//! subscriber's offer); a delta is computed once per (base, target) pair on a blocking thread and
//! cached ([`DELTA_CACHE`] pairs); a subscriber is one task that is idle between publishes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

use super::proto::{
    read_frame, write_frame, write_frame_shared, Limits, Message, OfferKind, ProtoError,
};
use super::{certs, delta, parse_hex_bytes, parse_sha, sha256, sha_hex, ControlError};
use crate::unix_now;

/// How long a new stream may take to say what it is for.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a gateway may take to verify, build and swap a snapshot before answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long sending one frame may take (a 256 MiB snapshot to a slow gateway).
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
/// (base, target) delta pairs kept; beyond, the cache is emptied (a fleet rarely runs more than a
/// handful of versions at once).
pub const DELTA_CACHE: usize = 64;
/// The largest `.sig` text accepted with a publish.
const MAX_SIG: usize = 4096;
/// Application close code for a server shutting down.
const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0);
/// Application close code for a connection without a usable client certificate.
const CLOSE_NO_IDENTITY: VarInt = VarInt::from_u32(1);

/// `dragnet rules serve`'s options.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The store directory (created if missing).
    pub dir: PathBuf,
    /// UDP address to listen on (port 0: any; read it from [`RulesServer::local_addr`]).
    pub listen: SocketAddr,
    /// The server's certificate chain (PEM) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificate(s) that every client certificate must chain to.
    pub client_ca: PathBuf,
    /// Certificates (PEM) of the maintainers: only these may publish and read the fleet.
    pub maintainers: Vec<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics`) on this TCP address.
    pub metrics: Option<SocketAddr>,
}

/// One entry of `published.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// The rule-set version in the snapshot's header.
    pub version: u64,
    /// Hex SHA-256 of the snapshot bytes (the object's name).
    pub sha256: String,
    pub size: u64,
    /// Unix seconds.
    pub published_at: u64,
    /// Hex SHA-256 of the publishing maintainer's certificate.
    pub publisher: String,
    /// An operator's rollback to an older snapshot.
    pub rollback: bool,
    /// The rollback order (hex) carried with the offer; the gateways verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_order: Option<String>,
}

/// What the server knows of one gateway (a row of `dragnet rules fleet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// The name from its hello.
    pub name: String,
    /// Hex SHA-256 of its client certificate.
    pub fingerprint: String,
    /// Its address as last seen.
    pub remote: String,
    /// The version and SHA-256 it runs (as it reported, then as it acknowledged).
    pub version: u64,
    pub sha256: Option<String>,
    /// Unix seconds of the last message from it.
    pub last_seen: u64,
    pub connected: bool,
    /// The reason of its last nack (cleared by the next ack).
    pub last_error: Option<String>,
    /// "delta" or "full".
    pub last_offer_kind: Option<String>,
    /// Payload bytes of the last offer.
    pub last_offer_bytes: u64,
    /// Payload bytes sent to it in total.
    pub bytes_sent: u64,
}

type Labels = Vec<(&'static str, &'static str)>;

/// The server's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    registry: Arc<Registry>,
    pub subscribers: Gauge,
    pub publishes: Counter,
    pub offers: Family<Labels, Counter>,
    pub acks: Counter,
    pub nacks: Counter,
    pub bytes_sent: Counter,
    pub protocol_errors: Counter,
    pub handshakes_refused: Counter,
}

impl ServerMetrics {
    fn new() -> ServerMetrics {
        let mut r = Registry::with_prefix("dragnet_rules_server");
        let m = ServerMetrics {
            registry: Arc::new(Registry::default()),
            subscribers: Gauge::default(),
            publishes: Counter::default(),
            offers: Family::default(),
            acks: Counter::default(),
            nacks: Counter::default(),
            bytes_sent: Counter::default(),
            protocol_errors: Counter::default(),
            handshakes_refused: Counter::default(),
        };
        r.register(
            "subscribers",
            "Gateways subscribed right now",
            m.subscribers.clone(),
        );
        r.register(
            "publishes",
            "Snapshots published (rollbacks included)",
            m.publishes.clone(),
        );
        r.register(
            "offers",
            "Snapshots offered to gateways, by kind (delta, full)",
            m.offers.clone(),
        );
        r.register("acks", "Offers a gateway installed", m.acks.clone());
        r.register("nacks", "Offers a gateway refused", m.nacks.clone());
        r.register(
            "sent_bytes",
            "Snapshot and delta payload bytes sent",
            m.bytes_sent.clone(),
        );
        r.register(
            "protocol_errors",
            "Streams ended by a protocol error (malformed, unknown or unexpected messages, timeouts)",
            m.protocol_errors.clone(),
        );
        r.register(
            "handshakes_refused",
            "Connections refused in the TLS handshake (no or untrusted client certificate)",
            m.handshakes_refused.clone(),
        );
        ServerMetrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }

    fn offer(&self, kind: OfferKind) -> Counter {
        self.offers
            .get_or_create(&vec![("kind", kind.as_str())])
            .clone()
    }
}

/// The snapshot gateways are offered now.
#[derive(Debug)]
struct Current {
    entry: HistoryEntry,
    sha: [u8; 32],
    /// Shared with every offer in flight: quinn sends slices of it without copying.
    bytes: Bytes,
    sig: String,
}

/// The on-disk store; its methods block (call them off the runtime's workers).
#[derive(Debug)]
struct Store {
    dir: PathBuf,
    history: Vec<HistoryEntry>,
}

fn store_err(path: &Path, reason: impl std::fmt::Display) -> ControlError {
    ControlError::Store {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes `bytes` to `path` aside, fsyncs, renames over, fsyncs the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ControlError> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| store_err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| store_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| store_err(path, e))?;
    if let Some(d) = path.parent() {
        // The rename is durable only once the directory is.
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| store_err(d, e))?;
    }
    Ok(())
}

impl Store {
    fn open(dir: &Path) -> Result<Store, ControlError> {
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(|e| store_err(&objects, e))?;
        let hp = dir.join("published.json");
        let history = match std::fs::read(&hp) {
            Ok(b) => serde_json::from_slice::<Vec<HistoryEntry>>(&b).map_err(|e| {
                store_err(
                    &hp,
                    format!("not a history this server wrote ({e}); move it aside to start empty"),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(store_err(&hp, e)),
        };
        for (i, h) in history.iter().enumerate() {
            if parse_sha(&h.sha256).is_none() {
                return Err(store_err(
                    &hp,
                    format!("entry {i}: sha256 {:?} is not 64 hex digits", h.sha256),
                ));
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            history,
        })
    }

    fn object(&self, sha: &[u8; 32]) -> PathBuf {
        self.dir.join("objects").join(sha_hex(sha))
    }

    fn sig(&self, sha: &[u8; 32]) -> PathBuf {
        self.dir
            .join("objects")
            .join(format!("{}.sig", sha_hex(sha)))
    }

    /// The object's bytes and signature text, checked against its name.
    fn read(&self, sha: &[u8; 32]) -> Result<(Vec<u8>, String), ControlError> {
        let p = self.object(sha);
        let bytes = std::fs::read(&p).map_err(|e| store_err(&p, e))?;
        if sha256(&bytes) != *sha {
            return Err(store_err(
                &p,
                "its content no longer matches its name (damaged on disk)",
            ));
        }
        let sp = self.sig(sha);
        let sig = std::fs::read_to_string(&sp).map_err(|e| store_err(&sp, e))?;
        Ok((bytes, sig))
    }

    /// Just the bytes (a delta base); None when not held.
    fn read_bytes(&self, sha: &[u8; 32]) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.object(sha)).ok()?;
        (sha256(&bytes) == *sha).then_some(bytes)
    }

    /// Stores the object (if new) and its signature, then appends to the history.
    fn put(
        &mut self,
        sha: &[u8; 32],
        bytes: &[u8],
        sig: &str,
        entry: HistoryEntry,
    ) -> Result<(), ControlError> {
        let p = self.object(sha);
        if self.read_bytes(sha).is_none() {
            write_atomic(&p, bytes)?;
        }
        write_atomic(&self.sig(sha), sig.as_bytes())?;
        let mut h = self.history.clone();
        h.push(entry);
        let json = serde_json::to_vec_pretty(&h).map_err(|e| store_err(&self.dir, e))?;
        write_atomic(&self.dir.join("published.json"), &json)?;
        self.history = h;
        Ok(())
    }
}

type DeltaCell = Arc<OnceCell<Option<Bytes>>>;
/// Deltas by (base SHA-256, target SHA-256).
type DeltaCache = HashMap<([u8; 32], [u8; 32]), DeltaCell>;

/// What the server's tasks share.
#[derive(Debug)]
struct Shared {
    store: Arc<Mutex<Store>>,
    current: watch::Sender<Option<Arc<Current>>>,
    /// Serialises publishes (the store write and the current swap happen together).
    publish_lock: tokio::sync::Mutex<()>,
    fleet: Mutex<BTreeMap<(String, String), GatewayStatus>>,
    deltas: Mutex<DeltaCache>,
    maintainers: HashSet<[u8; 32]>,
    metrics: ServerMetrics,
    limits: Limits,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking holder cannot leave these maps half-updated in a way that matters more than
    // losing the whole fleet view would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running rules server. Dropping it closes the endpoint and every connection.
#[derive(Debug)]
pub struct RulesServer {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    accept: JoinHandle<()>,
    metrics_task: Option<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

/// Starts a rules server: loads the certificates and the store, binds, and serves until the
/// returned handle is shut down or dropped. Needs a tokio runtime.
pub async fn serve(cfg: ServerConfig) -> Result<RulesServer, ControlError> {
    let mut maintainers = HashSet::new();
    for m in &cfg.maintainers {
        maintainers.insert(certs::fingerprint_file(m)?);
    }
    if maintainers.is_empty() {
        return Err(ControlError::Invalid(
            "no --maintainer certificate: nobody could publish".into(),
        ));
    }
    let sc = certs::server_config(&cfg.cert, &cfg.key, &cfg.client_ca)?;
    let dir = cfg.dir.clone();
    let (store, current) = tokio::task::spawn_blocking(move || -> Result<_, ControlError> {
        let store = Store::open(&dir)?;
        let current = match store.history.last() {
            None => None,
            Some(last) => {
                let sha = parse_sha(&last.sha256).unwrap_or_default();
                let (bytes, sig) = store.read(&sha)?;
                Some(Arc::new(Current {
                    entry: last.clone(),
                    sha,
                    bytes: Bytes::from(bytes),
                    sig,
                }))
            }
        };
        Ok((store, current))
    })
    .await
    .map_err(|e| ControlError::Invalid(format!("loading the store failed: {e}")))??;

    let endpoint = Endpoint::server(sc, cfg.listen).map_err(|e| ControlError::Connect {
        server: cfg.listen.to_string(),
        reason: format!("cannot listen (UDP): {e}"),
    })?;
    let metrics = ServerMetrics::new();
    let (metrics_task, metrics_addr) = match cfg.metrics {
        None => (None, None),
        Some(a) => {
            let (t, a) = serve_metrics(a, metrics.clone()).await?;
            (Some(t), Some(a))
        }
    };
    let shared = Arc::new(Shared {
        store: Arc::new(Mutex::new(store)),
        current: watch::Sender::new(current),
        publish_lock: tokio::sync::Mutex::new(()),
        fleet: Mutex::new(BTreeMap::new()),
        deltas: Mutex::new(HashMap::new()),
        maintainers,
        metrics,
        limits: Limits::default(),
    });
    let accept = tokio::spawn(accept_loop(shared.clone(), endpoint.clone()));
    Ok(RulesServer {
        shared,
        endpoint,
        accept,
        metrics_task,
        metrics_addr,
    })
}

async fn serve_metrics(
    addr: SocketAddr,
    m: ServerMetrics,
) -> Result<(JoinHandle<()>, SocketAddr), ControlError> {
    use axum::routing::get;
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ControlError::Invalid(format!("--metrics {addr}: cannot listen: {e}")))?;
    let local = l
        .local_addr()
        .map_err(|e| ControlError::Invalid(format!("--metrics {addr}: {e}")))?;
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = m.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let t = tokio::spawn(async move {
        if let Err(e) = axum::serve(l, router).await {
            tracing::warn!(error = %e, "rules server metrics listener failed");
        }
    });
    Ok((t, local))
}

impl RulesServer {
    /// The UDP address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ControlError> {
        self.endpoint
            .local_addr()
            .map_err(|e| ControlError::Invalid(format!("no local address: {e}")))
    }

    /// The metrics listener's address, when `metrics` was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Every gateway seen since start, by name then certificate.
    pub fn fleet(&self) -> Vec<GatewayStatus> {
        fleet_rows(&self.shared)
    }

    /// The published history, oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        lock(&self.shared.store).history.clone()
    }

    pub fn metrics(&self) -> &ServerMetrics {
        &self.shared.metrics
    }

    /// Closes every connection and the endpoint, and waits (briefly) until the socket is free.
    pub async fn shutdown(self) {
        self.endpoint
            .close(CLOSE_SHUTDOWN, b"rules server shutting down");
        self.accept.abort();
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
    }

    /// Serves until the endpoint stops (it does not stop on its own: for the CLI, which selects
    /// on a signal beside it).
    pub async fn wait(&mut self) {
        let _ = (&mut self.accept).await;
    }
}

impl Drop for RulesServer {
    fn drop(&mut self) {
        self.endpoint
            .close(CLOSE_SHUTDOWN, b"rules server shutting down");
        self.accept.abort();
        if let Some(t) = &self.metrics_task {
            t.abort();
        }
    }
}

fn fleet_rows(s: &Shared) -> Vec<GatewayStatus> {
    lock(&s.fleet).values().cloned().collect()
}

async fn accept_loop(shared: Arc<Shared>, ep: Endpoint) {
    while let Some(incoming) = ep.accept().await {
        tokio::spawn(connection(shared.clone(), incoming));
    }
}

/// The SHA-256 of the client's end-entity certificate (verified by the handshake).
fn peer_fingerprint(conn: &Connection) -> Option<[u8; 32]> {
    let id = conn.peer_identity()?;
    let chain = id
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    chain.first().map(|c| certs::fingerprint(c.as_ref()))
}

async fn connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.handshakes_refused.inc();
            tracing::info!(%remote, error = %e, "rules server: connection refused in the handshake");
            return;
        }
    };
    let Some(fp) = peer_fingerprint(&conn) else {
        shared.metrics.handshakes_refused.inc();
        conn.close(CLOSE_NO_IDENTITY, b"a client certificate is required");
        return;
    };
    let maintainer = shared.maintainers.contains(&fp);
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let peer = Peer {
                    conn: conn.clone(),
                    fp,
                    maintainer,
                };
                tokio::spawn(stream(shared.clone(), peer, send, recv));
            }
            Err(_) => return,
        }
    }
}

/// Who is on the other end of a stream.
#[derive(Debug, Clone)]
struct Peer {
    conn: Connection,
    fp: [u8; 32],
    maintainer: bool,
}

async fn reply_error(send: &mut SendStream, message: String) {
    let _ = write_frame(
        send,
        &Message::Error { message },
        &[],
        FIRST_MESSAGE_TIMEOUT,
    )
    .await;
    let _ = send.finish();
}

async fn stream(shared: Arc<Shared>, peer: Peer, mut send: SendStream, mut recv: RecvStream) {
    let not_maintainer = || {
        format!(
            "certificate {} is not a maintainer's (pinned with --maintainer): gateways may only subscribe",
            sha_hex(&peer.fp)
        )
    };
    // Only a maintainer's first frame carries a payload (a publish): from any other certificate
    // a payload is refused at its prefix, before a byte of it is read or reserved.
    let limits = if peer.maintainer {
        shared.limits
    } else {
        Limits {
            max_payload: 0,
            ..shared.limits
        }
    };
    let first = read_frame(&mut recv, &limits, Some(FIRST_MESSAGE_TIMEOUT)).await;
    let (msg, payload) = match first {
        Ok(m) => m,
        Err(ProtoError::Closed) => return,
        Err(ProtoError::PayloadTooLarge { .. }) if !peer.maintainer => {
            tracing::info!(remote = %peer.conn.remote_address(), "rules server: a non-maintainer sent a payload");
            reply_error(&mut send, not_maintainer()).await;
            // STOP_SENDING (RFC 9000 §19.5; dropping the stream would send it too, said here
            // on purpose): the sender's writes fail now instead of waiting for credit.
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            return;
        }
        Err(e) => {
            shared.metrics.protocol_errors.inc();
            tracing::info!(remote = %peer.conn.remote_address(), error = %e, "rules server: bad first message");
            reply_error(&mut send, e.to_string()).await;
            return;
        }
    };
    match msg {
        Message::Hello {
            name,
            version,
            sha256,
        } => subscriber(shared, peer, name, version, sha256, send, recv).await,
        Message::Publish { sig, rollback } => {
            if !peer.maintainer {
                reply_error(&mut send, not_maintainer()).await;
                return;
            }
            let answer = match publish(&shared, &peer, sig, rollback, payload).await {
                Ok(m) => m,
                Err(e) => Message::Error { message: e },
            };
            let _ = write_frame(&mut send, &answer, &[], FIRST_MESSAGE_TIMEOUT).await;
            let _ = send.finish();
        }
        Message::FleetRequest => {
            if !peer.maintainer {
                reply_error(&mut send, not_maintainer()).await;
                return;
            }
            let rows = fleet_rows(&shared);
            match serde_json::to_vec(&rows) {
                Ok(json) => {
                    let _ = write_frame(&mut send, &Message::Fleet, &json, SEND_TIMEOUT).await;
                    let _ = send.finish();
                }
                Err(e) => reply_error(&mut send, format!("cannot encode the fleet: {e}")).await,
            }
        }
        other => {
            shared.metrics.protocol_errors.inc();
            reply_error(
                &mut send,
                ProtoError::Unexpected {
                    got: other.kind(),
                    expected: "hello, publish or fleet_request",
                }
                .to_string(),
            )
            .await;
        }
    }
}

/// Stores a maintainer's snapshot and makes it current. Errors are the text sent back.
async fn publish(
    shared: &Arc<Shared>,
    peer: &Peer,
    sig: String,
    rollback: Option<String>,
    bytes: Vec<u8>,
) -> Result<Message, String> {
    let header = dragnet_rules::snapshot::Header::parse(&bytes)
        .map_err(|e| format!("not a dragnet snapshot: its header does not parse: {e}"))?;
    if sig.trim().is_empty() {
        return Err(
            "the signature (.sig) is missing: sign the snapshot (dragnet rules sign) first".into(),
        );
    }
    if sig.len() > MAX_SIG {
        return Err(format!(
            "the signature text is {} bytes; a .sig is at most {MAX_SIG}",
            sig.len()
        ));
    }
    let order = match &rollback {
        None => None,
        Some(h) => Some(
            parse_hex_bytes(h)
                .filter(|b| !b.is_empty())
                .ok_or("the rollback order is not hex bytes")?,
        ),
    };
    let sha = sha256(&bytes);
    let entry = HistoryEntry {
        version: header.ruleset_version,
        sha256: sha_hex(&sha),
        size: bytes.len() as u64,
        published_at: unix_now(),
        publisher: sha_hex(&peer.fp),
        rollback: order.is_some(),
        rollback_order: rollback,
    };
    let _serial = shared.publish_lock.lock().await;
    let bytes = Bytes::from(bytes);
    {
        let store = shared.store.clone();
        let (b, s, e) = (bytes.clone(), sig.clone(), entry.clone());
        tokio::task::spawn_blocking(move || lock(&store).put(&sha, &b, &s, e))
            .await
            .map_err(|e| format!("storing failed: {e}"))?
            .map_err(|e| e.to_string())?;
    }
    shared.metrics.publishes.inc();
    tracing::info!(
        version = entry.version,
        sha256 = %entry.sha256,
        rollback = entry.rollback,
        publisher = %entry.publisher,
        "rules server: published"
    );
    let online = fleet_rows(shared).iter().filter(|g| g.connected).count();
    let answer = Message::Published {
        version: entry.version,
        sha256: entry.sha256.clone(),
        size: entry.size,
        online,
        rollback: entry.rollback,
    };
    shared.current.send_replace(Some(Arc::new(Current {
        entry,
        sha,
        bytes,
        sig,
    })));
    Ok(answer)
}

/// The payload of an offer of `cur` to a gateway running `base`: a cached delta when the server
/// holds the base and the delta is smaller, else the snapshot.
async fn choose(shared: &Arc<Shared>, base: Option<[u8; 32]>, cur: &Current) -> (OfferKind, Bytes) {
    let full = (OfferKind::Full, cur.bytes.clone());
    let Some(base) = base.filter(|b| *b != cur.sha) else {
        return full;
    };
    let cell = {
        let mut d = lock(&shared.deltas);
        if d.len() >= DELTA_CACHE && !d.contains_key(&(base, cur.sha)) {
            d.clear();
        }
        d.entry((base, cur.sha)).or_default().clone()
    };
    let store = shared.store.clone();
    let (target, target_sha) = (cur.bytes.clone(), cur.sha);
    let made = cell
        .get_or_init(|| async move {
            tokio::task::spawn_blocking(move || {
                let b = lock(&store).read_bytes(&base)?;
                // Both digests are known: `read_bytes` checked the base's against its name.
                let d = delta::make_hashed(&b, base, &target, target_sha);
                (d.len() < target.len()).then(|| Bytes::from(d))
            })
            .await
            .ok()
            .flatten()
        })
        .await;
    match made {
        Some(d) => (OfferKind::Delta, d.clone()),
        None => full,
    }
}

/// How an offer ended.
enum Answer {
    Installed,
    Refused,
}

fn update(shared: &Shared, key: &(String, String), f: impl FnOnce(&mut GatewayStatus)) {
    if let Some(g) = lock(&shared.fleet).get_mut(key) {
        f(g);
    }
}

/// Offers `cur` (delta when possible; full when the gateway asks for it) and reads the answer.
async fn offer(
    shared: &Arc<Shared>,
    key: &(String, String),
    send: &mut SendStream,
    recv: &mut RecvStream,
    running: Option<[u8; 32]>,
    cur: &Current,
) -> Result<Answer, ProtoError> {
    let small = Limits {
        max_payload: 0,
        ..shared.limits
    };
    let mut base = running;
    loop {
        let (kind, payload) = choose(shared, base, cur).await;
        let msg = Message::Offer {
            version: cur.entry.version,
            sha256: cur.entry.sha256.clone(),
            kind,
            base_sha256: match kind {
                OfferKind::Delta => base.map(|b| sha_hex(&b)),
                OfferKind::Full => None,
            },
            sig: cur.sig.clone(),
            rollback: cur.entry.rollback_order.clone(),
        };
        write_frame_shared(send, &msg, payload.clone(), SEND_TIMEOUT).await?;
        let n = payload.len() as u64;
        shared.metrics.offer(kind).inc();
        shared.metrics.bytes_sent.inc_by(n);
        update(shared, key, |g| {
            g.last_offer_kind = Some(kind.as_str().into());
            g.last_offer_bytes = n;
            g.bytes_sent = g.bytes_sent.saturating_add(n);
        });
        let (answer, _) = read_frame(recv, &small, Some(ANSWER_TIMEOUT)).await?;
        let now = unix_now();
        match answer {
            Message::Ack { version, sha256 } => {
                shared.metrics.acks.inc();
                update(shared, key, |g| {
                    g.version = version;
                    g.sha256 = Some(sha256);
                    g.last_error = None;
                    g.last_seen = now;
                });
                return Ok(Answer::Installed);
            }
            Message::Nack {
                error, want_full, ..
            } => {
                shared.metrics.nacks.inc();
                tracing::info!(gateway = %key.0, error = %error, "rules server: a gateway refused an offer");
                update(shared, key, |g| {
                    g.last_error = Some(error);
                    g.last_seen = now;
                });
                if want_full && kind == OfferKind::Delta {
                    base = None;
                    continue;
                }
                return Ok(Answer::Refused);
            }
            other => {
                return Err(ProtoError::Unexpected {
                    got: other.kind(),
                    expected: "ack or nack",
                })
            }
        }
    }
}

/// Marks a gateway disconnected and the gauge decremented however its task ends.
struct Subscription {
    shared: Arc<Shared>,
    key: (String, String),
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.metrics.subscribers.dec();
        let now = unix_now();
        update(&self.shared, &self.key, |g| {
            g.connected = false;
            g.last_seen = now;
        });
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    peer: Peer,
    name: String,
    version: u64,
    sha256: Option<String>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let name: String = name.chars().filter(|c| !c.is_control()).take(255).collect();
    let mut running = sha256.as_deref().and_then(parse_sha);
    let key = (name.clone(), sha_hex(&peer.fp));
    {
        let mut f = lock(&shared.fleet);
        let g = f.entry(key.clone()).or_insert_with(|| GatewayStatus {
            name,
            fingerprint: key.1.clone(),
            remote: String::new(),
            version: 0,
            sha256: None,
            last_seen: 0,
            connected: false,
            last_error: None,
            last_offer_kind: None,
            last_offer_bytes: 0,
            bytes_sent: 0,
        });
        g.remote = peer.conn.remote_address().to_string();
        g.version = version;
        g.sha256 = running.map(|s| sha_hex(&s));
        g.last_seen = unix_now();
        g.connected = true;
    }
    shared.metrics.subscribers.inc();
    let _sub = Subscription {
        shared: shared.clone(),
        key: key.clone(),
    };
    let mut rx = shared.current.subscribe();
    // The publish this gateway refused: not offered again until something is published after it
    // (the same bytes published again, say with a rollback order, are a new publish).
    let mut refused: Option<Arc<Current>> = None;
    loop {
        let cur = rx.borrow_and_update().clone();
        if let Some(cur) = cur {
            let was_refused = refused.as_ref().is_some_and(|r| Arc::ptr_eq(r, &cur));
            if running != Some(cur.sha) && !was_refused {
                match offer(&shared, &key, &mut send, &mut recv, running, &cur).await {
                    Ok(Answer::Installed) => {
                        running = Some(cur.sha);
                        refused = None;
                    }
                    Ok(Answer::Refused) => refused = Some(cur),
                    Err(e) => {
                        shared.metrics.protocol_errors.inc();
                        let msg = e.to_string();
                        tracing::info!(gateway = %key.0, error = %msg, "rules server: subscription ended");
                        update(&shared, &key, |g| g.last_error = Some(msg));
                        peer.conn.close(VarInt::from_u32(2), b"protocol error");
                        return;
                    }
                }
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = peer.conn.closed() => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dragnet-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn entry(sha: &[u8; 32], v: u64) -> HistoryEntry {
        HistoryEntry {
            version: v,
            sha256: sha_hex(sha),
            size: 3,
            published_at: 1,
            publisher: "ab".into(),
            rollback: false,
            rollback_order: None,
        }
    }

    #[test]
    fn the_store_survives_reopening_and_checks_its_objects() {
        let d = dir("reopen");
        let mut s = Store::open(&d).unwrap();
        let sha = sha256(b"abc");
        s.put(&sha, b"abc", "sig", entry(&sha, 2)).unwrap();
        s.put(&sha, b"abc", "sig2", entry(&sha, 2)).unwrap();
        let s2 = Store::open(&d).unwrap();
        assert_eq!(s2.history.len(), 2);
        assert_eq!(s2.read(&sha).unwrap(), (b"abc".to_vec(), "sig2".into()));
        // A damaged object is refused, not served.
        std::fs::write(s2.object(&sha), b"abd").unwrap();
        assert!(s2.read(&sha).is_err());
        assert!(s2.read_bytes(&sha).is_none());
        // A damaged history is named.
        std::fs::write(d.join("published.json"), b"{").unwrap();
        let e = Store::open(&d).unwrap_err();
        assert!(e.to_string().contains("published.json"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn metrics_encode() {
        let m = ServerMetrics::new();
        m.offer(OfferKind::Delta).inc();
        let t = m.encode();
        assert!(
            t.contains("dragnet_rules_server_offers_total{kind=\"delta\"} 1"),
            "{t}"
        );
        assert!(t.contains("dragnet_rules_server_subscribers 0"), "{t}");
    }
}
