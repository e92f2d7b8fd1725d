//! Publish → all-acknowledged for 100 subscribed gateways (issue 6's measurement).
//!
//! `cargo bench --bench control_push` (release). One process: a rules server and 100 subscribers
//! on loopback, each with its own QUIC connection, mutual TLS and a lab certificate. Each
//! subscriber's target verifies the signature and SHA-256 of what it is offered (as a gateway
//! does) but does not build an engine, so the figures are distribution, not compilation. Two
//! publishes: a full 10⁶-number snapshot to gateways that run nothing, then the same set plus
//! 1 000 numbers, offered as a delta against the first. Printed per phase: the time from the
//! publish request to each gateway's installation (p50, p99, max over the 100), the payload
//! bytes the server sent and the CPU seconds the process used (server and every subscriber
//! share this machine's cores, so on a small machine the p99 is their summed work).
//! `DRAGNET_BENCH_GATEWAYS` changes the fleet size.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dragnet_gateway::control::certs::{self, key_beside};
use dragnet_gateway::control::client::{self, ControlMetrics, Maintainer};
use dragnet_gateway::control::config::ControlConfig;
use dragnet_gateway::control::server::{self, ServerConfig};
use dragnet_gateway::control::{Refusal, Target};
use dragnet_gateway::signing::{self, TrustedKey};
use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
use dragnet_rules::formats::Format;
use dragnet_rules::snapshot::write_snapshot;

mod common;
use common::Rng;

const NUMBERS: usize = 1_000_000;
const DELTA_NUMBERS: usize = 1_000;

/// (version, SHA-256, bytes) of the running snapshot.
type Running = (u64, Option<[u8; 32]>, Option<Arc<Vec<u8>>>);

/// Verifies like a gateway, keeps the bytes (the base of the next delta), records when.
struct BenchTarget {
    keys: Vec<TrustedKey>,
    state: Mutex<Running>,
    installed: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Target for BenchTarget {
    fn running(&self) -> (u64, Option<[u8; 32]>) {
        let s = self.state.lock().expect("state");
        (s.0, s.1)
    }
    fn running_bytes(&self) -> Option<Arc<Vec<u8>>> {
        self.state.lock().expect("state").2.clone()
    }
    fn apply(
        &self,
        snap: Vec<u8>,
        sha: [u8; 32],
        sig: String,
        _: Option<Vec<u8>>,
    ) -> Result<u64, Refusal> {
        // As the gateway's lifecycle does: the subscriber's digest, not a second hash.
        let v = signing::verify_hashed(&snap, sha, &sig, &self.keys).map_err(Refusal::from)?;
        *self.state.lock().expect("state") = (v.version, Some(sha), Some(Arc::new(snap)));
        self.installed
            .lock()
            .expect("installed")
            .push((v.version, Instant::now()));
        Ok(v.version)
    }
}

/// +86 mobile numbers, deterministic; `extra` more after the first `n`.
fn numbers_csv(n: usize, extra: usize) -> String {
    let mut r = Rng(7);
    let mut csv = String::with_capacity((n + extra) * 16);
    csv.push_str("number\n");
    for _ in 0..n + extra {
        let second = [3, 5, 8][(r.next() % 3) as usize];
        csv.push_str(&format!("+861{second}{:09}\n", r.next() % 1_000_000_000));
    }
    csv
}

fn image(n: usize, extra: usize, version: u64) -> Vec<u8> {
    let mut c = Compiler::new(
        CompileConfig {
            now: 1,
            ..CompileConfig::default()
        },
        false,
    );
    let o = source_options(None, "n.csv", Some(Format::NumbersCsv), false).expect("options");
    c.add_text(&numbers_csv(n, extra), "n.csv", &o)
        .expect("source");
    let (t, _) = c.finish().expect("compile");
    write_snapshot(&t, version, 1).expect("write")
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (Linux; 0 elsewhere):
/// printed per phase, because on a small machine 100 in-process gateways share its cores and the
/// p99 is then their summed work, not the network.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // then it only checks that the measurement works, on a small set and two gateways.
    let measuring = std::env::args().any(|a| a == "--bench");
    let gateways: usize = std::env::var("DRAGNET_BENCH_GATEWAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if measuring { 100 } else { 2 });
    let numbers = if measuring { NUMBERS } else { 10_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(gateways, numbers));
}

async fn run(gateways: usize, numbers: usize) {
    let dir = std::env::temp_dir().join(format!("dragnet-bench-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let t = Instant::now();
    let full = image(numbers, 0, 1);
    let next = image(numbers, DELTA_NUMBERS, 2);
    eprintln!(
        "compiled {numbers} and {} numbers in {:.1?}: {} and {} bytes",
        numbers + DELTA_NUMBERS,
        t.elapsed(),
        full.len(),
        next.len()
    );
    // What the server does once per (base, target) before the first delta offer.
    let t = Instant::now();
    let d = dragnet_gateway::control::delta::make(&full, &next);
    eprintln!(
        "delta made once by the server: {} bytes in {:.1?}",
        d.len(),
        t.elapsed()
    );
    let l = certs::make_lab(&dir.join("pki"), gateways, &["localhost".into()]).expect("lab");
    let k = signing::keygen(&dir.join("ops")).expect("keygen");
    let sk = std::fs::read(&k.key).expect("key");
    let pk = TrustedKey::load(&k.public).expect("pub");

    let srv = server::serve(ServerConfig {
        dir: dir.join("store"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        cert: l.server.clone(),
        key: key_beside(&l.server),
        client_ca: l.ca.clone(),
        maintainers: vec![l.maintainer.clone()],
        metrics: None,
    })
    .await
    .expect("serve");
    let addr = srv.local_addr().expect("addr").to_string();
    let installed = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (i, cert) in l.gateways.iter().enumerate() {
        let target = Arc::new(BenchTarget {
            keys: vec![pk.clone()],
            state: Mutex::new((0, None, None)),
            installed: installed.clone(),
        });
        let cfg = ControlConfig {
            enabled: true,
            server: addr.clone(),
            ca: l.ca.clone(),
            cert: cert.clone(),
            key: key_beside(cert),
            name: format!("gw-{i}"),
            ..ControlConfig::default()
        };
        handles.push(client::spawn(cfg, target, ControlMetrics::default()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.fleet().iter().filter(|g| g.connected).count() < gateways {
        assert!(Instant::now() < deadline, "subscribers did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = Maintainer::connect(
        &addr,
        "localhost",
        &l.ca,
        &l.maintainer,
        &key_beside(&l.maintainer),
    )
    .await
    .expect("maintainer");

    println!(
        "{:<28} {:>12} {:>14} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "publish", "payload/gw", "sent total", "stored", "p50", "p99", "max", "cpu s"
    );
    for (label, version, snap) in [
        (format!("full, {numbers} numbers"), 1, &full),
        (format!("delta, +{DELTA_NUMBERS} numbers"), 2, &next),
    ] {
        let sig = signing::sign_bytes(snap, &sk).expect("sign").1;
        let sent_before = srv.metrics().bytes_sent.get();
        let (t0, cpu0) = (Instant::now(), cpu_seconds());
        m.publish(snap, sig, None).await.expect("publish");
        // Upload to the server, stored and its offers started: the rest is distribution.
        let stored = t0.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let n = installed
                .lock()
                .expect("installed")
                .iter()
                .filter(|(v, _)| *v == version)
                .count();
            if n >= gateways {
                break;
            }
            assert!(Instant::now() < deadline, "{label}: only {n} installed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut times: Vec<Duration> = installed
            .lock()
            .expect("installed")
            .iter()
            .filter(|(v, _)| *v == version)
            .map(|(_, at)| at.duration_since(t0))
            .collect();
        let cpu = cpu_seconds() - cpu0;
        times.sort();
        let sent = srv.metrics().bytes_sent.get() - sent_before;
        let kinds: Vec<String> = srv
            .fleet()
            .iter()
            .filter_map(|g| g.last_offer_kind.clone())
            .collect();
        let kind = if kinds.iter().all(|k| k == "delta") {
            "delta"
        } else if kinds.iter().all(|k| k == "full") {
            "full"
        } else {
            "mixed"
        };
        println!(
            "{:<28} {:>12} {:>14} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>7.2}",
            format!("{label} ({kind})"),
            sent / gateways as u64,
            sent,
            stored,
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            cpu
        );
    }
    for h in handles {
        h.abort();
    }
    m.close().await;
    srv.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
