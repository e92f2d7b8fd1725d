//! Hit events to a real NATS JetStream server (issue 8 acceptance): `nats-server -js` started
//! by the test on loopback with a free port and a temporary store. Events arrive on the
//! subject with the expected (hashed) fields; with the server stopped the data path keeps
//! emitting without waiting and the events spool; after a restart on the same port they are
//! delivered, in order, once each. Skips loudly when `nats-server` is not installed
//! (Debian: `apt-get install nats-server`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dragnet_gateway::events::{self, EventsConfig, EventsMetrics, Facts};
use dragnet_gateway::store::Plane;
use dragnet_rules::Action;

fn nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server we started; killed (by its PID) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(bin: &Path, port: u16, store: &Path) -> Server {
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_for("nats-server to listen", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    server
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages in the stream, read back in stream order (None while the server is unreachable).
async fn stored(port: u16) -> Option<Vec<serde_json::Value>> {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("DRAGNET").await.ok()?;
    let info = stream.info().await.ok()?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    for seq in first..=last {
        let m = stream.get_raw_message(seq).await.ok()?;
        out.push(serde_json::from_slice(&m.payload).unwrap());
    }
    Some(out)
}

async fn wait_stored(port: u16, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = stored(port).await {
            if v.len() >= n {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} messages in the stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn emit(ev: &events::Events, i: u64) {
    let caller = format!("+86138{i:08}");
    ev.emit(
        Plane::Sip,
        Action::Block,
        "fraud",
        "rule-9",
        Some("203.0.113.9".parse().unwrap()),
        Facts {
            caller: Some(&caller),
            callee: Some("+8613912345678"),
            ..Facts::default()
        },
        "udp0",
    );
}

fn seq(e: &serde_json::Value) -> u64 {
    let id = e["id"].as_str().unwrap();
    u64::from_str_radix(id.split('-').nth(1).unwrap(), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_spool_while_down_and_arrive_in_order() {
    let Some(bin) = nats_server() else {
        // To the stderr handle, not eprintln!: the harness captures a passing test's macro output.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: nats-server is not installed (apt-get install nats-server); the JetStream test did NOT run"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("dragnet-ev-nats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("events.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let port = free_port();
    let store = dir.join("store");
    let server = start_server(&bin, port, &store).await;

    let mut cfg = EventsConfig {
        enabled: true,
        hash_key_file: Some(key),
        spool_dir: dir.join("spool"),
        log_sample: 0,
        ..EventsConfig::default()
    };
    cfg.nats.enabled = true;
    cfg.nats.url = format!("nats://127.0.0.1:{port}");
    cfg.nats.subject = "dragnet.hits".into();
    cfg.nats.stream = "DRAGNET".into();
    cfg.nats.ack_timeout_ms = 500;
    let metrics = EventsMetrics::default();
    let (ev, task) = events::start(&cfg, metrics.clone()).unwrap();

    // 1. Up: events arrive with their fields, numbers and address hashed.
    for i in 0..5 {
        emit(&ev, i);
    }
    let got = wait_stored(port, 5).await;
    assert_eq!(got.len(), 5);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(seq(e), i as u64);
        assert_eq!(e["plane"], "sip");
        assert_eq!(e["action"], "block");
        assert_eq!(e["category"], "fraud");
        assert_eq!(e["rule"], "rule-9");
        assert_eq!(e["ingress"], "udp0");
        for f in ["caller", "callee", "source"] {
            let v = e[f].as_str().unwrap();
            assert!(v.starts_with("h:") && v.len() == 34, "{f} = {v}");
        }
        assert!(e["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
    let text = serde_json::to_string(&got).unwrap();
    assert!(!text.contains("8613912345678") && !text.contains("203.0.113.9"));

    // 2. Down: emitting goes on (it cannot wait: it has nothing to wait on), events spool.
    drop(server);
    let up = metrics
        .sink_up
        .get_or_create(&vec![("sink", "nats")])
        .clone();
    let spooled = metrics
        .spooled_bytes
        .get_or_create(&vec![("sink", "nats")])
        .clone();
    for i in 5..25 {
        emit(&ev, i);
    }
    wait_for("the sink to be marked down", 20, || up.get() == 0).await;
    wait_for("events in the spool", 20, || spooled.get() > 0).await;
    assert_eq!(metrics.queue_full(), 0);

    // 3. Back on the same port: the spool drains, in order, each event once.
    let server = start_server(&bin, port, &store).await;
    let got = wait_stored(port, 25).await;
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert_eq!(seqs, (0..25).collect::<Vec<u64>>(), "order or duplicates");
    wait_for("the spool to empty", 20, || spooled.get() == 0).await;
    wait_for("the sink to be up", 20, || up.get() == 1).await;
    let delivered = metrics
        .delivered
        .get_or_create(&vec![("sink", "nats")])
        .clone();
    assert!(delivered.get() >= 25);

    task.shutdown().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
