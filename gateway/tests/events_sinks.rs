//! The event pipeline end to end, without NATS: the webhook sink against a local HTTP server
//! that fails (retry, then spool, then delivery in order), the file sink (rotation, hashing by
//! default), queue overflow, and configuration errors naming the key. No sleeps as
//! synchronisation: conditions are polled against a deadline.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dragnet_gateway::config::Config;
use dragnet_gateway::events::{self, EventsConfig, EventsMetrics, Facts};
use dragnet_gateway::store::Plane;
use dragnet_rules::Action;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const KEY: &str = "a test key of thirty-two bytes!!";

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dragnet-ev-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key_file(dir: &Path) -> PathBuf {
    let p = dir.join("events.key");
    std::fs::write(&p, KEY).unwrap();
    p
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn number(i: usize) -> String {
    format!("+86139{i:08}")
}

fn emit(ev: &events::Events, i: usize) {
    ev.emit(
        Plane::Sip,
        Action::Block,
        "fraud",
        "rule-1",
        Some("198.51.100.23".parse().unwrap()),
        Facts {
            caller: Some(&number(i)),
            callee: Some("+8613800138000"),
            ..Facts::default()
        },
        "udp0",
    );
}

/// A webhook receiver: answers 503 to the first `fail` requests, then 200; keeps the bodies.
struct Hook {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn hook(fail: usize) -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (rq, bd) = (requests.clone(), bodies.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (rq, bd) = (rq.clone(), bd.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (rq, bd) = (rq.clone(), bd.clone());
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let n = rq.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail {
                            503
                        } else {
                            bd.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            200
                        };
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Hook {
        addr,
        requests,
        bodies,
    }
}

fn base(dir: &Path) -> EventsConfig {
    EventsConfig {
        enabled: true,
        hash_key_file: Some(key_file(dir)),
        spool_dir: dir.join("spool"),
        log_sample: 0,
        ..EventsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_then_spools_then_delivers_in_order() {
    let dir = temp("webhook");
    // Two attempts per delivery (retries = 1): the first two deliveries fail (4 × 503), the
    // batch spools, and the spool drains once the receiver answers 200.
    let h = hook(4).await;
    let mut cfg = base(&dir);
    cfg.webhook.enabled = true;
    cfg.webhook.url = format!("http://{}/hits", h.addr);
    cfg.webhook.batch = 5;
    cfg.webhook.flush_ms = 20;
    cfg.webhook.retries = 1;
    cfg.webhook.backoff_ms = 10;
    cfg.webhook.backoff_max_ms = 50;
    let metrics = EventsMetrics::default();
    let (ev, task) = events::start(&cfg, metrics.clone()).unwrap();
    for i in 0..12 {
        emit(&ev, i);
    }
    let bodies = h.bodies.clone();
    let count = move || {
        bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.as_array().unwrap().len())
            .sum::<usize>()
    };
    wait_for("12 events at the webhook", 20, || count() == 12).await;
    assert!(
        h.requests.load(Ordering::SeqCst) >= 5,
        "the 503s were retried"
    );
    let got: Vec<serde_json::Value> = h
        .bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect();
    // In emit order, hashed by default.
    let ids: Vec<u64> = got
        .iter()
        .map(|e| {
            u64::from_str_radix(e["id"].as_str().unwrap().split('-').nth(1).unwrap(), 16).unwrap()
        })
        .collect();
    assert_eq!(ids, (0..12).collect::<Vec<u64>>());
    for e in &got {
        assert!(e["caller"].as_str().unwrap().starts_with("h:"));
        assert_eq!(e["plane"], "sip");
        assert_eq!(e["action"], "block");
        assert_eq!(e["rule"], "rule-1");
    }
    let delivered = metrics
        .delivered
        .get_or_create(&vec![("sink", "webhook")])
        .clone();
    wait_for("delivered counter", 5, || delivered.get() == 12).await;
    let spooled = metrics
        .spooled_bytes
        .get_or_create(&vec![("sink", "webhook")])
        .clone();
    wait_for("spool drained", 5, || spooled.get() == 0).await;
    task.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_rotates_and_hashes_by_default() {
    let dir = temp("file");
    let mut cfg = base(&dir);
    cfg.file.enabled = true;
    cfg.file.path = dir.join("out").join("events.jsonl");
    cfg.file.max_bytes = 4096;
    cfg.file.keep = 3;
    let (ev, task) = events::start(&cfg, EventsMetrics::default()).unwrap();
    // ~330 bytes a line: 200 lines is about 16 files' worth; only 1 + keep stay.
    for i in 0..200 {
        emit(&ev, i);
        if i % 20 == 19 {
            // Let the consumer keep up with a queue of the default size (no drops wanted).
            tokio::task::yield_now().await;
        }
    }
    task.shutdown().await;
    let path = cfg.file.path.clone();
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let mut all = String::new();
    for p in [rotated(3), rotated(2), rotated(1), path.clone()] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.len() as u64 <= cfg.file.max_bytes,
            "{} too big",
            p.display()
        );
        all.push_str(&text);
    }
    assert!(!rotated(4).exists());
    // Hashing by default: no number and no client address in plain text anywhere.
    for i in 0..200 {
        assert!(!all.contains(&number(i)[1..]), "plain caller in the file");
    }
    assert!(!all.contains("8613800138000"));
    assert!(!all.contains("198.51.100.23"));
    // The newest events are in the live file, in order, each line a JSON object.
    let lines: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["id"].as_str().unwrap().split('-').nth(1), Some("c7"));
    let seqs: Vec<u64> = lines
        .iter()
        .map(|e| {
            u64::from_str_radix(e["id"].as_str().unwrap().split('-').nth(1).unwrap(), 16).unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(last["caller"].as_str().unwrap().starts_with("h:"));
    assert_eq!(last["source"].as_str().unwrap().len(), 34);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_overflow_is_counted_and_metrics_are_exported() {
    let dir = temp("overflow");
    let mut cfg = base(&dir);
    cfg.queue = 8;
    let mut reg = prometheus_client::registry::Registry::default();
    let metrics = EventsMetrics::register(reg.sub_registry_with_prefix("dragnet"));
    // A runtime-free burst: `channel` without the consumer, so nothing drains.
    let (ev, _rx) = events::Events::channel(cfg.queue, metrics.clone());
    for i in 0..20 {
        emit(&ev, i);
    }
    assert_eq!(metrics.queue_full(), 12);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("dragnet_events_dropped_total{reason=\"queue_full\"} 12"),
        "{text}"
    );
    assert!(text.contains("dragnet_events_emitted_total 8"), "{text}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = temp("config");
    let key = key_file(&dir);
    let check = |extra: &str| {
        let t = format!("[admin]\nlisten = \"\"\n[check]\nenabled = false\n{extra}");
        Config::from_toml(&t, "test.toml")
            .map(|_| ())
            .map_err(|e| e.key)
    };
    check("").unwrap();
    assert_eq!(
        check("[events]\nenabled = true").unwrap_err(),
        "events.hash_key_file"
    );
    let with_key = format!(
        "[events]\nenabled = true\nhash_key_file = {:?}\n",
        key.display().to_string()
    );
    check(&with_key).unwrap();
    assert_eq!(
        check(&format!(
            "{with_key}[events.webhook]\nenabled = true\nurl = \"ftp://x\""
        ))
        .unwrap_err(),
        "events.webhook.url"
    );
    assert_eq!(
        check(&format!(
            "{with_key}[events.nats]\nenabled = true\nsubject = \"\""
        ))
        .unwrap_err(),
        "events.nats.subject"
    );
    assert_eq!(
        check("[breaker]\nenabled = true\nfactor = 0.5").unwrap_err(),
        "breaker.factor"
    );
    // Unknown keys are refused with the file and line.
    let e = check("[events]\nenabeld = true").unwrap_err();
    assert!(e.starts_with("test.toml:"), "{e}");
}
