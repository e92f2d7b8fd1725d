//! Starting a gateway from its configuration: bind the planes' sockets, build the planes on the
//! snapshot store, serve the admin endpoints, reload on request.

use crate::unix_now;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::task::JoinSet;

use crate::config::{parse_sockaddr, Config, ConfigError};
use crate::metrics::Metrics;
use crate::signing::{self, TrustedKey};
use crate::sip_plane::net::{self, Bound};
use crate::sip_plane::SipCore;
use crate::store::Store;
use dragnet_rules::Engine;

/// Why a gateway could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "configuration: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Parses a list of `ip:port` under `key` (errors name `key[i]`).
fn parse_addrs(key: &str, v: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    v.iter()
        .enumerate()
        .map(|(i, a)| parse_sockaddr(&format!("{key}[{i}]"), a))
        .collect()
}

/// A running gateway. Dropping it stops every task.
#[derive(Debug)]
pub struct Gateway {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub sip: Option<Arc<SipCore>>,
    /// SIP addresses bound (UDP first, then TCP).
    pub sip_addrs: Vec<SocketAddr>,
    pub dns: Option<Arc<crate::dns_plane::DnsCore>>,
    /// DNS addresses bound (UDP first, then TCP).
    pub dns_addrs: Vec<SocketAddr>,
    /// DNS-over-QUIC addresses bound (`dns.listen_doq`, RFC 9250), in the configured order.
    pub doq_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Where the check API answers (its own listener, or the admin one).
    pub check_addr: Option<SocketAddr>,
    /// The HTTP proxy's listeners (`web.http.listen`), bound.
    pub web_http_addrs: Vec<SocketAddr>,
    /// The transparent TLS port (`web.tls.listen`), bound.
    pub web_tls_addr: Option<SocketAddr>,
    /// The QUIC relay (`web.quic.listen`), bound.
    pub web_quic_addr: Option<SocketAddr>,
    snapshot: Option<PathBuf>,
    /// `rules.trusted_keys`, parsed: non-empty, every reload must be signed by one of them.
    trusted: Vec<TrustedKey>,
    /// `rules.allow_rollback`.
    allow_rollback: bool,
    _tasks: JoinSet<()>,
    /// The planes' UDP worker threads (stopped and joined on drop).
    _threads: Vec<crate::mmsg::Workers>,
}

impl Gateway {
    /// Binds and starts everything the configuration enables, on the current tokio runtime.
    pub async fn start(cfg: &Config, engine: Engine) -> Result<Gateway, StartError> {
        cfg.validate()?;
        let trusted = cfg.rules.load_trusted_keys()?;
        let store = Arc::new(Store::new(engine, unix_now()));
        let metrics = Arc::new(Metrics::new(store.clone()));
        let mut tasks = JoinSet::new();
        let mut threads = Vec::new();
        let mut sip = None;
        let mut sip_addrs = Vec::new();
        if cfg.sip.enabled {
            let s = &cfg.sip;
            let bound = Bound::bind(
                &parse_addrs("sip.listen_udp", &s.listen_udp)?,
                &parse_addrs("sip.listen_tcp", &s.listen_tcp)?,
                s.socket_buffer,
            )?;
            sip_addrs = bound.local_addrs()?;
            let core = Arc::new(SipCore::new(
                s,
                &sip_addrs,
                store.clone(),
                metrics.sip.clone(),
            )?);
            let mode = match s.mode {
                crate::config::SipMode::Proxy => "proxy",
                crate::config::SipMode::Redirect => "redirect",
            };
            metrics.sip.mode.get_or_create(&vec![("mode", mode)]).set(1);
            let (mut set, workers) = net::spawn(
                core.clone(),
                bound,
                s.workers,
                s.queue,
                s.max_tcp_connections,
            )?;
            // Keep the plane's tasks in our set.
            tasks.spawn(async move { while set.join_next().await.is_some() {} });
            threads.push(workers);
            sip = Some(core);
        }
        let mut dns = None;
        let mut dns_addrs = Vec::new();
        let mut doq_addrs = Vec::new();
        if cfg.dns.enabled {
            let d = &cfg.dns;
            let (udp, tcp) = crate::dns_plane::net::bind(
                &parse_addrs("dns.listen_udp", &d.listen_udp)?,
                &parse_addrs("dns.listen_tcp", &d.listen_tcp)?,
            )?;
            for s in &udp {
                dns_addrs.push(s.local_addr()?);
            }
            for s in &tcp {
                dns_addrs.push(s.local_addr()?);
            }
            let core = Arc::new(crate::dns_plane::DnsCore::new(
                d,
                store.clone(),
                metrics.dns.clone(),
            )?);
            let (mut set, workers) =
                crate::dns_plane::net::spawn(core.clone(), udp, tcp, d.workers)?;
            tasks.spawn(async move { while set.join_next().await.is_some() {} });
            threads.push(workers);
            if !d.listen_doq.is_empty() {
                let listen = parse_addrs("dns.listen_doq", &d.listen_doq)?;
                let server = crate::dns_plane::doq::server_config(d, &listen)?;
                let endpoints = crate::dns_plane::doq::bind(&listen, &server)?;
                for e in &endpoints {
                    doq_addrs.push(e.local_addr()?);
                }
                let mut set = crate::dns_plane::doq::spawn(core.clone(), endpoints);
                tasks.spawn(async move { while set.join_next().await.is_some() {} });
            }
            dns = Some(core);
        }
        let mut web_http_addrs = Vec::new();
        if cfg.web.http.enabled {
            let w = Arc::new(cfg.web.http.clone());
            for l in crate::web::http::bind(&w)? {
                let l = tokio::net::TcpListener::from_std(l)?;
                web_http_addrs.push(l.local_addr()?);
                let (store, cfg, m) = (store.clone(), w.clone(), metrics.web_http.clone());
                tasks.spawn(crate::web::http::serve(l, store, cfg, m));
            }
        }
        let mut web_tls_addr = None;
        if cfg.web.tls.enabled {
            let w = &cfg.web.tls;
            let a = parse_sockaddr("web.tls.listen", &w.listen)?;
            let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind web.tls {a}: {e}"))
            })?;
            web_tls_addr = Some(l.local_addr()?);
            let (store, cfg, m) = (store.clone(), Arc::new(w.clone()), metrics.web_tls.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::web::sni::serve(l, store, cfg, m).await {
                    tracing::error!(error = %e, "the TLS SNI port stopped");
                }
            });
        }
        let mut web_quic_addr = None;
        if cfg.web.quic.enabled {
            let w = &cfg.web.quic;
            let a = parse_sockaddr("web.quic.listen", &w.listen)?;
            let sock = tokio::net::UdpSocket::bind(a).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind web.quic {a}: {e}"))
            })?;
            web_quic_addr = Some(sock.local_addr()?);
            let (store, cfg, m) = (store.clone(), Arc::new(w.clone()), metrics.web_quic.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::web::quic_relay::serve(sock, store, cfg, m).await {
                    tracing::error!(error = %e, "the QUIC relay stopped");
                }
            });
        }
        let check = cfg.check.enabled.then(|| {
            let c = &cfg.check;
            let limits = crate::check::CheckLimits {
                max_body: c.max_body,
                max_batch: c.max_batch,
                max_text: c.max_text,
            };
            let s = &cfg.sip;
            let trunks = s
                .ingress
                .iter()
                .map(|g| {
                    (
                        g.trunk.clone(),
                        g.international.unwrap_or(g.trunk == "international"),
                    )
                })
                .chain([(s.default_trunk.clone(), s.default_trunk == "international")]);
            Arc::new(
                crate::check::CheckApi::new(store.clone(), limits, metrics.check.clone())
                    .with_trunks(trunks),
            )
            .router()
        });
        let mut check_addr = None;
        let check = match check {
            Some(router) if !cfg.check.listen.is_empty() => {
                let a = parse_sockaddr("check.listen", &cfg.check.listen)?;
                let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot bind check API {a}: {e}"))
                })?;
                check_addr = Some(l.local_addr()?);
                tasks.spawn(async move {
                    let _ = axum::serve(l, router).await;
                });
                None
            }
            other => other,
        };
        let mut admin_addr = None;
        if !cfg.admin.listen.is_empty() {
            let a = parse_sockaddr("admin.listen", &cfg.admin.listen)?;
            let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind admin {a}: {e}"))
            })?;
            admin_addr = Some(l.local_addr()?);
            let mut app = admin_router(metrics.clone(), store.clone());
            if let Some(router) = check {
                // The check API shares the admin listener.
                check_addr = admin_addr;
                app = app.merge(router);
            }
            tasks.spawn(async move {
                let _ = axum::serve(l, app).await;
            });
        }
        Ok(Gateway {
            store,
            metrics,
            sip,
            sip_addrs,
            dns,
            dns_addrs,
            doq_addrs,
            admin_addr,
            check_addr,
            web_http_addrs,
            web_tls_addr,
            web_quic_addr,
            snapshot: cfg.rules.snapshot.clone(),
            trusted,
            allow_rollback: cfg.rules.allow_rollback,
            _tasks: tasks,
            _threads: threads,
        })
    }

    /// Reloads the configured snapshot file. A bad file is refused with the reason; the running
    /// snapshot stays active. With trusted keys, the file must carry a valid signature
    /// ([`load_snapshot_file`]); unless `rules.allow_rollback`, its version must be newer than the
    /// running one. Every refusal counts in `dragnet_snapshot_reload_failures`.
    pub fn reload(&self) -> Result<u64, String> {
        let Some(p) = &self.snapshot else {
            return Err("no rules.snapshot configured: the embedded example set stays".into());
        };
        let checked = load_snapshot_file(p, &self.trusted).and_then(|e| {
            let (new, running) = (e.version(), self.store.load().engine.version());
            if new <= running && !self.allow_rollback {
                return Err(format!(
                    "{}: version {new} is not newer than the running version {running}; refused as a rollback (set rules.allow_rollback = true to allow it)",
                    p.display()
                ));
            }
            Ok(e)
        });
        match checked {
            Ok(e) => {
                let v = e.version();
                self.store.swap(e, unix_now());
                Ok(v)
            }
            Err(e) => {
                self.metrics.reload_failures.inc();
                Err(e)
            }
        }
    }

    /// Swaps in an engine directly (tests, pushes).
    pub fn swap(&self, e: Engine) -> u32 {
        self.store.swap(e, unix_now())
    }
}

/// Loads a snapshot file for start-up or reload. With trusted keys, the bytes are read once,
/// verified against `SNAPSHOT.sig` and built from that same buffer, so the file cannot be swapped
/// between the check and the load. Without, the file is streamed as before.
pub fn load_snapshot_file(path: &Path, trusted: &[TrustedKey]) -> Result<Engine, String> {
    if trusted.is_empty() {
        return Engine::load(path).map_err(|e| e.to_string());
    }
    let sig = signing::read_sig(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    signing::verify_bytes(&bytes, &sig, trusted).map_err(|e| format!("{}: {e}", path.display()))?;
    Engine::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn admin_router(metrics: Arc<Metrics>, store: Arc<Store>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let s = store.clone();
                async move {
                    // A gateway never runs without a valid snapshot: the store always has one.
                    let a = s.load();
                    (
                        StatusCode::OK,
                        format!("ready: snapshot version {}\n", a.engine.version()),
                    )
                        .into_response()
                }
            }),
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dragnet_rules::snapshot::write_snapshot;

    /// A gateway with no listeners at all: only the store, the metrics and reload.
    fn quiet_config(snapshot: &Path, keys: Vec<PathBuf>) -> Config {
        let mut c = Config::default();
        c.sip.enabled = false;
        c.dns.enabled = false;
        c.check.enabled = false;
        c.admin.listen = String::new();
        c.rules.snapshot = Some(snapshot.to_path_buf());
        c.rules.trusted_keys = keys;
        c
    }

    /// Writes the example rule set as snapshot `version` to `path` (aside, then renamed over, as
    /// an operator would), signed with `key` when given; an unsigned write removes the old `.sig`.
    fn install(path: &Path, version: u64, key: Option<&Path>) {
        let e = crate::examples::engine(0).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, write_snapshot(e.tables(), version, 0).unwrap()).unwrap();
        std::fs::rename(&tmp, path).unwrap();
        let _ = std::fs::remove_file(signing::sig_path(path));
        if let Some(k) = key {
            signing::sign(path, k).unwrap();
        }
    }

    #[tokio::test]
    async fn reload_refuses_unsigned_snapshots_and_rollbacks() {
        let d = std::env::temp_dir().join(format!("dragnet-run-signed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let k = signing::keygen(&d.join("ops")).unwrap();
        let snap = d.join("rules.snap");
        install(&snap, 1, Some(&k.key));
        let cfg = quiet_config(&snap, vec![k.public.clone()]);
        let keys = cfg.rules.load_trusted_keys().unwrap();
        let engine = load_snapshot_file(&snap, &keys).unwrap();
        let gw = Gateway::start(&cfg, engine).await.unwrap();
        let running = || gw.store.load().engine.version();
        assert_eq!(running(), 1);

        install(&snap, 2, None);
        let e = gw.reload().unwrap_err();
        assert!(e.contains("is missing"), "{e}");
        assert_eq!(running(), 1);
        assert_eq!(gw.metrics.reload_failures.get(), 1);
        // Start-up refuses it too.
        assert!(load_snapshot_file(&snap, &keys).is_err());

        install(&snap, 2, Some(&k.key));
        assert_eq!(gw.reload().unwrap(), 2);
        assert_eq!(running(), 2);

        install(&snap, 1, Some(&k.key));
        let e = gw.reload().unwrap_err();
        assert!(e.contains("rollback"), "{e}");
        assert_eq!(running(), 2);
        assert_eq!(gw.metrics.reload_failures.get(), 2);

        // Signed by a key the gateway does not trust: refused, naming the key id.
        let other = signing::keygen(&d.join("other")).unwrap();
        install(&snap, 3, Some(&other.key));
        let e = gw.reload().unwrap_err();
        assert!(e.contains("unknown key id"), "{e}");
        assert_eq!(running(), 2);
        assert_eq!(gw.metrics.reload_failures.get(), 3);
        drop(gw);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn allow_rollback_lets_an_older_version_back_in() {
        let d = std::env::temp_dir().join(format!("dragnet-run-rollback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let snap = d.join("rules.snap");
        install(&snap, 5, None);
        let mut cfg = quiet_config(&snap, Vec::new());
        let gw = Gateway::start(&cfg, Engine::load(&snap).unwrap())
            .await
            .unwrap();
        install(&snap, 5, None);
        assert!(gw.reload().unwrap_err().contains("not newer"));
        cfg.rules.allow_rollback = true;
        let gw = Gateway::start(&cfg, Engine::load(&snap).unwrap())
            .await
            .unwrap();
        install(&snap, 4, None);
        assert_eq!(gw.reload().unwrap(), 4);
        drop(gw);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
