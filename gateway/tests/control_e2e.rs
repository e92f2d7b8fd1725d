//! The rules server and subscribed gateways end to end (issue 6): real quinn with mutual TLS on
//! 127.0.0.1, everything in-process. Conditions are awaited by polling with a 10 s deadline.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dragnet_gateway::control::certs::{self, key_beside, LabFiles};
use dragnet_gateway::control::client::{self, ControlMetrics, Maintainer};
use dragnet_gateway::control::config::ControlConfig;
use dragnet_gateway::control::proto::OfferKind;
use dragnet_gateway::control::server::{self, RulesServer, ServerConfig};
use dragnet_gateway::control::{sha256, sha_hex, ControlError, Refusal, RefusalClass, Target};
use dragnet_gateway::signing::{self, TrustedKey};
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::Engine;

/// The rollback order the test gateways accept (the real one is verified by the gateway).
const ORDER: &[u8] = b"lab rollback order";

/// (version, SHA-256, bytes) of the running snapshot.
type Running = (u64, Option<[u8; 32]>, Option<Arc<Vec<u8>>>);

/// A gateway's install logic, small: verify, refuse older versions unless a rollback order
/// came, build, swap.
struct TestTarget {
    keys: Vec<TrustedKey>,
    state: Mutex<Running>,
}

impl TestTarget {
    fn new(keys: Vec<TrustedKey>) -> Arc<TestTarget> {
        Arc::new(TestTarget {
            keys,
            state: Mutex::new((0, None, None)),
        })
    }
    fn version(&self) -> u64 {
        self.state.lock().unwrap().0
    }
}

impl Target for TestTarget {
    fn running(&self) -> (u64, Option<[u8; 32]>) {
        let s = self.state.lock().unwrap();
        (s.0, s.1)
    }
    fn running_bytes(&self) -> Option<Arc<Vec<u8>>> {
        self.state.lock().unwrap().2.clone()
    }
    fn apply(
        &self,
        snapshot: Vec<u8>,
        sha: [u8; 32],
        sig: String,
        rollback: Option<Vec<u8>>,
    ) -> Result<u64, Refusal> {
        // The subscriber hands over the SHA-256 of exactly these bytes.
        assert_eq!(
            sha,
            sha256(&snapshot),
            "the digest passed to apply is the bytes'"
        );
        let v = signing::verify_bytes(&snapshot, &sig, &self.keys).map_err(Refusal::from)?;
        let running = self.version();
        let forced = rollback.as_deref() == Some(ORDER);
        if v.version <= running && !forced {
            return Err(Refusal::new(
                RefusalClass::Version,
                format!(
                    "version {} is not newer than the running version {running} (anti-rollback)",
                    v.version
                ),
            ));
        }
        let e = Engine::from_bytes(&snapshot)
            .map_err(|e| Refusal::new(RefusalClass::Integrity, e.to_string()))?;
        let sha = sha256(&snapshot);
        *self.state.lock().unwrap() = (e.version(), Some(sha), Some(Arc::new(snapshot)));
        Ok(e.version())
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dragnet-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lab(dir: &Path, gateways: usize) -> LabFiles {
    certs::make_lab(
        &dir.join("pki"),
        gateways,
        &["localhost".into(), "127.0.0.1".into()],
    )
    .unwrap()
}

/// A signing key: (PKCS#8 bytes, the trusted public key).
fn key(dir: &Path, name: &str) -> (Vec<u8>, TrustedKey) {
    let k = signing::keygen(&dir.join(name)).unwrap();
    (
        std::fs::read(&k.key).unwrap(),
        TrustedKey::load(&k.public).unwrap(),
    )
}

fn snapshot(version: u64) -> Vec<u8> {
    let e = dragnet_gateway::examples::engine(0).unwrap();
    write_snapshot(e.tables(), version, 0).unwrap()
}

fn sign(snap: &[u8], pkcs8: &[u8]) -> String {
    signing::sign_bytes(snap, pkcs8).unwrap().1
}

fn server_config(dir: &Path, l: &LabFiles, listen: &str) -> ServerConfig {
    ServerConfig {
        dir: dir.join("store"),
        listen: listen.parse().unwrap(),
        cert: l.server.clone(),
        key: key_beside(&l.server),
        client_ca: l.ca.clone(),
        maintainers: vec![l.maintainer.clone()],
        metrics: Some("127.0.0.1:0".parse().unwrap()),
    }
}

fn gateway_config(server: &RulesServer, l: &LabFiles, cert: &Path, name: &str) -> ControlConfig {
    ControlConfig {
        enabled: true,
        server: server.local_addr().unwrap().to_string(),
        server_name: "localhost".into(),
        ca: l.ca.clone(),
        cert: cert.to_path_buf(),
        key: key_beside(cert),
        name: name.into(),
        backoff_min_ms: 20,
        backoff_max_ms: 200,
    }
}

async fn maintainer(
    server: &RulesServer,
    l: &LabFiles,
    cert: &Path,
) -> Result<Maintainer, ControlError> {
    Maintainer::connect(
        &server.local_addr().unwrap().to_string(),
        "localhost",
        &l.ca,
        cert,
        &key_beside(cert),
    )
    .await
}

/// Polls `f` until it holds; fails the test after 10 s.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn row(s: &RulesServer, name: &str) -> Option<server::GatewayStatus> {
    s.fleet().into_iter().find(|g| g.name == name)
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_push_refuse_rollback_and_restart() {
    let dir = temp("fleet");
    let l = lab(&dir, 3);
    let (sk, pk) = key(&dir, "ops");
    let (other_sk, _) = key(&dir, "rogue");
    let srv = server::serve(server_config(&dir, &l, "127.0.0.1:0"))
        .await
        .unwrap();
    let addr = srv.local_addr().unwrap();

    let targets = [
        TestTarget::new(vec![pk.clone()]),
        TestTarget::new(vec![pk.clone()]),
    ];
    let metrics = [ControlMetrics::default(), ControlMetrics::default()];
    let mut handles = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let cfg = gateway_config(&srv, &l, &l.gateways[i], &format!("gw-{}", i + 1));
        cfg.validate().unwrap();
        handles.push(client::spawn(cfg, t.clone(), metrics[i].clone()));
    }
    wait_for("both gateways subscribed", || {
        srv.fleet().iter().filter(|g| g.connected).count() == 2
    })
    .await;
    let m = maintainer(&srv, &l, &l.maintainer).await.unwrap();

    // v2: both run it, the fleet says so.
    let v2 = snapshot(2);
    let p = m.publish(&v2, sign(&v2, &sk), None).await.unwrap();
    assert_eq!((p.version, p.online, p.rollback), (2, 2, false));
    assert_eq!(p.sha256, sha_hex(&sha256(&v2)));
    wait_for("both acknowledged v2", || {
        srv.fleet()
            .iter()
            .all(|g| g.version == 2 && g.sha256.as_deref() == Some(&p.sha256))
    })
    .await;
    assert!(targets.iter().all(|t| t.version() == 2));
    assert!(metrics.iter().all(|m| m.applied.get() == 1));

    // v3 differs a little from v2: offered as a delta and applied.
    let v3 = snapshot(3);
    let p3 = m.publish(&v3, sign(&v3, &sk), None).await.unwrap();
    wait_for("both acknowledged v3", || {
        srv.fleet().iter().all(|g| g.version == 3)
    })
    .await;
    for g in srv.fleet() {
        assert_eq!(g.last_offer_kind.as_deref(), Some("delta"), "{g:?}");
        assert!(g.last_offer_bytes < v3.len() as u64, "{g:?}");
        assert_eq!(g.sha256.as_deref(), Some(p3.sha256.as_str()));
    }
    assert!(metrics
        .iter()
        .all(|m| m.offers_count(OfferKind::Delta) == 1));
    let text = srv.metrics().encode();
    assert!(
        text.contains("dragnet_rules_server_offers_total{kind=\"delta\"} 2"),
        "{text}"
    );

    // Refused, loudly, by the gateways; they keep v3.
    let bad_sig = snapshot(4);
    let mut corrupt = snapshot(5);
    let corrupt_sig = sign(&corrupt, &sk);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let older = snapshot(1);
    let cases: [(&[u8], String, &str, &str); 3] = [
        (
            &bad_sig,
            sign(&bad_sig, &other_sk),
            "unknown key id",
            "signature",
        ),
        (&corrupt, corrupt_sig, "changed since signing", "integrity"),
        (&older, sign(&older, &sk), "not newer", "version"),
    ];
    for (snap, sig, error, class) in cases {
        let before = metrics[0].refused_count(class);
        m.publish(snap, sig, None).await.unwrap();
        wait_for(error, || {
            srv.fleet()
                .iter()
                .all(|g| g.last_error.as_deref().is_some_and(|e| e.contains(error)))
        })
        .await;
        assert!(targets.iter().all(|t| t.version() == 3));
        assert_eq!(metrics[0].refused_count(class), before + 1, "{error}");
        assert!(srv.fleet().iter().all(|g| g.version == 3));
    }
    // The nack is visible to a maintainer over the wire too.
    let rows = m.fleet().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|g| g.last_error.as_deref().unwrap().contains("not newer")));
    assert!(client::fleet_table(&rows, 0).contains("not newer"));

    // An operator's rollback to v2 (an older version) carries its order; the gateways accept it.
    let p = m.publish(&v2, sign(&v2, &sk), Some(ORDER)).await.unwrap();
    assert!(p.rollback);
    wait_for("both rolled back to v2", || {
        targets.iter().all(|t| t.version() == 2) && srv.fleet().iter().all(|g| g.version == 2)
    })
    .await;
    assert!(srv.fleet().iter().all(|g| g.last_error.is_none()));

    // Metrics over HTTP.
    let page = http_get(srv.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        page.contains("dragnet_rules_server_subscribers 2"),
        "{page}"
    );
    assert!(
        page.contains("dragnet_rules_server_nacks_total 6"),
        "{page}"
    );
    assert!(
        page.contains("dragnet_rules_server_publishes_total 6"),
        "{page}"
    );

    // Restart: the history is reloaded; the gateways reconnect; a new gateway gets the current
    // (rolled-back) snapshot.
    let history = srv.history();
    assert_eq!(history.len(), 6);
    m.close().await;
    srv.shutdown().await;
    wait_for("gateways noticed the server went away", || {
        metrics.iter().all(|m| m.connected.get() == 0)
    })
    .await;
    // The old socket is released once its last connection is gone: retry the bind briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let srv = loop {
        match server::serve(server_config(&dir, &l, &addr.to_string())).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(srv.history(), history);
    let third = TestTarget::new(vec![pk.clone()]);
    let cfg = gateway_config(&srv, &l, &l.gateways[2], "gw-3");
    handles.push(client::spawn(cfg, third.clone(), ControlMetrics::default()));
    wait_for("three gateways on the restarted server run v2", || {
        let f = srv.fleet();
        f.len() == 3 && f.iter().all(|g| g.connected && g.version == 2)
    })
    .await;
    assert_eq!(third.version(), 2);
    assert!(metrics.iter().all(|m| m.reconnects.get() >= 1));
    assert_eq!(
        row(&srv, "gw-3").unwrap().last_offer_kind.as_deref(),
        Some("full")
    );

    for h in handles {
        h.abort();
    }
    srv.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_maintainers_publish_and_foreign_certificates_are_refused() {
    let dir = temp("authz");
    let l = lab(&dir, 1);
    let foreign = certs::make_lab(&dir.join("other-pki"), 1, &["localhost".into()]).unwrap();
    let (sk, _) = key(&dir, "ops");
    let srv = server::serve(server_config(&dir, &l, "127.0.0.1:0"))
        .await
        .unwrap();

    // A gateway's certificate is valid, but not a maintainer's.
    let gw = maintainer(&srv, &l, &l.gateways[0]).await.unwrap();
    let v2 = snapshot(2);
    let e = gw.publish(&v2, sign(&v2, &sk), None).await.unwrap_err();
    assert!(e.to_string().contains("not a maintainer"), "{e}");
    // A payload larger than the stream's flow-control window: refused at its prefix (the server
    // stops the stream), answered with the same reason, not left hanging on credit.
    let big = vec![0u8; 20 * 1024 * 1024];
    let e = gw.publish(&big, sign(&v2, &sk), None).await.unwrap_err();
    assert!(e.to_string().contains("not a maintainer"), "{e}");
    let e = gw.fleet().await.unwrap_err();
    assert!(matches!(e, ControlError::Refused(_)), "{e}");
    assert!(srv.history().is_empty());

    // A certificate from another CA: the handshake is refused, nothing gets through.
    let r = async {
        let m = maintainer(&srv, &l, &foreign.maintainer).await?;
        m.fleet().await
    }
    .await;
    assert!(r.is_err(), "{r:?}");
    wait_for("the refused handshake is counted", || {
        srv.metrics().handshakes_refused.get() >= 1
    })
    .await;

    // A maintainer without a .sig, or with something that is not a snapshot, is refused at the door.
    let m = maintainer(&srv, &l, &l.maintainer).await.unwrap();
    let e = m.publish(&v2, String::new(), None).await.unwrap_err();
    assert!(e.to_string().contains(".sig"), "{e}");
    let e = m
        .publish(b"not a snapshot", "x".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");
    assert!(srv.history().is_empty());
    m.close().await;
    srv.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
