//! Starting a gateway from its configuration: bind the planes' sockets, build the planes on the
//! snapshot store, serve the admin endpoints, reload on request.

use crate::unix_now;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::{parse_sockaddr, Config, ConfigError};
use crate::metrics::Metrics;
use crate::signing::{self, TrustedKey};
use crate::sip_plane::net::{self, Bound};
use crate::sip_plane::SipCore;
use crate::snapshots::{Initial, Lifecycle};
use crate::store::{Provenance, Store};
use dragnet_rules::Engine;

/// Why a gateway could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Io(std::io::Error),
    /// The hit-event sinks could not start (spool directory, key file …).
    Events(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "configuration: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
            StartError::Events(e) => write!(f, "events: {e}"),
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
    /// The snapshot lifecycle: reload, push, shadow, promote, last-good.
    pub snapshots: Arc<Lifecycle>,
    /// The hit-event consumer and sinks (drained by [`Gateway::shutdown`]).
    events_task: Option<crate::events::EventsTask>,
    _tasks: JoinSet<()>,
    /// The planes' UDP worker threads (stopped and joined on drop).
    _threads: Vec<crate::mmsg::Workers>,
}

impl Gateway {
    /// Binds and starts everything the configuration enables, on the current tokio runtime,
    /// with `engine` (of unknown provenance: tests, benches).
    pub async fn start(cfg: &Config, engine: Engine) -> Result<Gateway, StartError> {
        let origin = if cfg.rules.snapshot.is_some() {
            "file"
        } else {
            "embedded"
        };
        let init = Initial {
            engine,
            provenance: Provenance {
                origin,
                ..Provenance::default()
            },
            note: None,
        };
        Gateway::start_initial(cfg, init).await
    }

    /// Binds and starts everything the configuration enables, on the current tokio runtime,
    /// with the snapshot [`initial_snapshot`] chose.
    pub async fn start_initial(cfg: &Config, init: Initial) -> Result<Gateway, StartError> {
        cfg.validate()?;
        let trusted = cfg.rules.load_trusted_keys()?;
        let token = cfg.admin.load_token()?;
        let store = Arc::new(Store::new(init.engine, unix_now()));
        store.set_provenance(init.provenance);
        let metrics = Arc::new(if cfg.control.enabled {
            Metrics::with_control(store.clone())
        } else {
            Metrics::new(store.clone())
        });
        let lifecycle = Arc::new(Lifecycle::new(
            store.clone(),
            trusted,
            cfg.rules.allow_rollback,
            cfg.rules.state_dir.clone(),
            cfg.rules.snapshot.clone(),
            metrics.snapshots.clone(),
        ));
        lifecycle.persist_running_file();
        let (events, events_task) = crate::events::start(&cfg.events, metrics.events.clone())
            .map_err(|e| StartError::Events(e.to_string()))?;
        let breaker = crate::breaker::Breaker::new(&cfg.breaker, &metrics.breaker);
        store.set_hits(crate::hits::Hits::new(
            events,
            breaker,
            cfg.breaker.enabled,
            cfg.events.log_sample,
        ));
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
        // The control-plane subscription starts after the last-good snapshot is running (read
        // before any socket was bound), so the server is told what this gateway already has.
        let mut control_status: Option<crate::admin::ControlStatus> = None;
        if let (true, Some(cm)) = (cfg.control.enabled, metrics.control.clone()) {
            let target: Arc<dyn crate::control::Target> = lifecycle.clone();
            // In the gateway's task set: stopped with the other tasks.
            tasks.spawn(crate::control::client::subscribe(
                cfg.control.clone(),
                target,
                cm.clone(),
            ));
            let (server, name) = (cfg.control.server.clone(), cfg.control.display_name());
            control_status = Some(Arc::new(move || control_json(&server, &name, &cm)));
        }
        let mut admin_addr = None;
        if !cfg.admin.listen.is_empty() {
            let a = parse_sockaddr("admin.listen", &cfg.admin.listen)?;
            let l = tokio::net::TcpListener::bind(a).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind admin {a}: {e}"))
            })?;
            admin_addr = Some(l.local_addr()?);
            let mut planes: Vec<(&'static str, Vec<String>)> = Vec::new();
            let n_udp = cfg.sip.listen_udp.len();
            let list = |addrs: &[SocketAddr], n_udp: usize| -> Vec<String> {
                addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{} {a}", if i < n_udp { "udp" } else { "tcp" }))
                    .collect()
            };
            if sip.is_some() {
                planes.push(("sip", list(&sip_addrs, n_udp)));
            }
            if dns.is_some() {
                let mut l = list(&dns_addrs, cfg.dns.listen_udp.len());
                l.extend(doq_addrs.iter().map(|a| format!("doq {a}")));
                planes.push(("dns", l));
            }
            let mut web: Vec<String> = web_http_addrs.iter().map(|a| format!("http {a}")).collect();
            web.extend(web_tls_addr.map(|a| format!("tls {a}")));
            web.extend(web_quic_addr.map(|a| format!("quic {a}")));
            if !web.is_empty() {
                planes.push(("web", web));
            }
            if cfg.check.enabled {
                planes.push(("check", vec![format!("http {}", check_addr.unwrap_or(a))]));
            }
            let mut app = crate::admin::Admin::new(
                metrics.clone(),
                store.clone(),
                lifecycle.clone(),
                token,
                planes,
                control_status,
            )
            .router();
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
            snapshots: lifecycle,
            events_task: Some(events_task),
            _tasks: tasks,
            _threads: threads,
        })
    }

    /// Reloads the configured snapshot file (SIGHUP). A bad file is refused with the reason; the
    /// running snapshot stays. With trusted keys, the file must carry a valid signature; unless
    /// `rules.allow_rollback`, its version must be newer than the running one. Every refusal
    /// counts in `dragnet_snapshot_reload_failures` (and `dragnet_snapshot_refused{origin="file"}`).
    pub fn reload(&self) -> Result<u64, String> {
        let r = self.snapshots.reload();
        if r.is_err() {
            self.metrics.reload_failures.inc();
        }
        r
    }

    /// Stops: delivers the hit events still queued (to their sinks or spools), then drops
    /// every task and thread.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.events_task.take() {
            t.shutdown().await;
        }
    }

    /// Swaps in an engine directly (tests, pushes).
    pub fn swap(&self, e: Engine) -> u32 {
        self.store.swap(e, unix_now())
    }
}

/// `/v1/status`'s `control` object: the subscription as this gateway sees it.
fn control_json(
    server: &str,
    name: &str,
    m: &crate::control::client::ControlMetrics,
) -> serde_json::Value {
    use crate::control::proto::OfferKind;
    let refused: serde_json::Map<String, serde_json::Value> =
        ["integrity", "signature", "version", "delta", "other"]
            .into_iter()
            .map(|c| (c.to_string(), m.refused_count(c).into()))
            .collect();
    serde_json::json!({
        "server": server,
        "name": name,
        "connected": m.connected.get() == 1,
        "applied": m.applied.get(),
        "refused": refused,
        "offers": {
            "full": m.offers_count(OfferKind::Full),
            "delta": m.offers_count(OfferKind::Delta),
        },
        "reconnects": m.reconnects.get(),
        "last_apply_unix": m.last_apply_seconds.get(),
    })
}

/// Chooses the snapshot a gateway starts with: `rules.snapshot` and the last-good one in
/// `rules.state_dir`, both verified, the newer valid one wins ([`crate::snapshots::initial`]).
pub fn initial_snapshot(
    cfg: &Config,
    embedded: impl FnOnce() -> Result<Engine, String>,
) -> Result<Initial, String> {
    let keys = cfg.rules.load_trusted_keys().map_err(|e| e.to_string())?;
    crate::snapshots::initial(
        cfg.rules.snapshot.as_deref(),
        cfg.rules.state_dir.as_deref(),
        &keys,
        embedded,
    )
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dragnet_rules::snapshot::write_snapshot;
    use std::path::PathBuf;

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
