//! Hit events and the circuit breaker wired into a running gateway (issue 8): a DNS query for a
//! blocked name through the real UDP socket becomes one JSON line in the file sink, with the
//! client address hashed by default. (The breaker's trip and recovery are tested with a
//! hand-driven clock in `gateway/src/breaker.rs`; the planes call the same `gate`.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dragnet_gateway::config::Config;
use dragnet_gateway::run::Gateway;

/// A query for `name`, type A, with Message ID `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dragnet-evgw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn base_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::embedded().unwrap();
    cfg.sip.enabled = false;
    cfg.admin.listen = String::new();
    cfg.check.enabled = false;
    cfg.web.http.enabled = false;
    cfg.dns.listen_udp = vec!["127.0.0.1:0".into()];
    cfg.dns.listen_tcp = vec![];
    // Nothing listens there: blocked names never reach it, allowed ones are not asked here.
    cfg.dns.upstreams = vec!["127.0.0.1:9".into()];
    let key = dir.join("events.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    cfg.events.enabled = true;
    cfg.events.hash_key_file = Some(key);
    cfg.events.spool_dir = dir.join("spool");
    cfg.events.file.enabled = true;
    cfg.events.file.path = dir.join("events.jsonl");
    cfg
}

fn ask(sock: &std::net::UdpSocket, to: std::net::SocketAddr, id: u16, name: &str) -> Vec<u8> {
    sock.send_to(&query(id, name), to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_query_becomes_a_hashed_event_in_the_file_sink() {
    let dir = tmp("file");
    let cfg = base_config(&dir);
    let gw = Gateway::start(&cfg, dragnet_gateway::examples::engine(0).unwrap())
        .await
        .unwrap();
    let to = gw.dns_addrs[0];
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let a = tokio::task::spawn_blocking(move || ask(&sock, to, 7, "login.evil.example"))
        .await
        .unwrap();
    assert_eq!(a[3] & 0x0f, 3, "blocked: NXDOMAIN");
    // Shutdown drains the queue into the sinks.
    gw.shutdown().await;
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let e: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(e["plane"], "dns", "{e}");
    assert_eq!(e["action"], "block", "{e}");
    assert_eq!(e["domain"], "login.evil.example", "{e}");
    assert!(!e["rule"].as_str().unwrap().is_empty(), "{e}");
    let src = e["source"].as_str().unwrap();
    assert!(src.starts_with("h:") && !text.contains("127.0.0.1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
