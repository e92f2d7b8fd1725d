//! The harness the end-to-end tests share: the test lock, a skip for a missing tool, scratch
//! directories, child processes killed on drop, `dragnet run` started and read until `ready`,
//! and the admin `/metrics` scraped and polled. (Each test binary uses part of it.)
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time (see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Is `tool` installed (`tool -v` runs)? If not, say so where a CI log shows it, and let the
/// caller return.
pub fn tool_missing(tool: &str, test: &str, install: &str) -> bool {
    let found = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        // Written to the stderr handle, not with eprintln!: the test harness captures the
        // macro's output of a passing test, and a skip must show in the CI log.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {tool} not installed (test {test}); {install}"
        );
    }
    !found
}

/// A fresh scratch directory for one test (`prefix` names the test file).
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "dragnet-{prefix}-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(p: &Path, n: usize) -> String {
    let t = read(p);
    let lines: Vec<&str> = t.lines().collect();
    let from = lines.len().saturating_sub(n);
    format!(
        "--- {} (last {n} lines)\n{}",
        p.display(),
        lines[from..].join("\n")
    )
}

/// Children killed (and reaped) when the test ends, however it ends.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Procs {
    pub fn add(&mut self, c: Child) -> usize {
        self.0.push(c);
        self.0.len() - 1
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The addresses a started gateway printed.
pub struct Gateway {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
    pub stderr: PathBuf,
}

/// Runs `dragnet ARGS` to completion (stdin closed).
pub fn dragnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Its stdout, after asserting it succeeded.
pub fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `GET /v1/status` of a gateway's admin listener, as JSON.
pub fn status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) =
        dragnet_gateway::admin::request(&admin.to_string(), "GET", "/v1/status", None, &[], &[])
            .unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Starts `dragnet ARGS` in the background (killed with `procs`), stderr to the file `stderr`,
/// and returns its stdout lines through a channel: a reader thread keeps draining stdout, so
/// the caller can wait for a line with a deadline.
pub fn spawn_dragnet(
    args: &[&std::ffi::OsStr],
    stderr: &Path,
    procs: &mut Procs,
) -> (u32, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.stdout.take().unwrap();
    procs.add(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (pid, rx)
}

/// Starts `dragnet run` on `toml` and reads its stdout until `ready` (20 s deadline); `plane`
/// (`sip` or `dns`) names the listener lines whose UDP and TCP addresses are returned.
pub fn start_gateway(dir: &Path, toml: &str, procs: &mut Procs, plane: &str) -> Gateway {
    let cfg = dir.join("dragnet.toml");
    std::fs::write(&cfg, toml).unwrap();
    let stderr = dir.join("dragnet.stderr");
    let (pid, rx) = spawn_dragnet(
        &["run".as_ref(), "--config".as_ref(), cfg.as_os_str()],
        &stderr,
        procs,
    );
    let end = Instant::now() + Duration::from_secs(20);
    let (mut udp, mut tcp, mut admin) = (None, None, None);
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(e) => panic!(
                "dragnet run: no `ready` line ({e:?}); stdout so far: {seen:?}\n{}",
                tail(&stderr, 30)
            ),
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [p, "udp", a, ..] if *p == plane && udp.is_none() => udp = Some(a.parse().unwrap()),
            [p, "tcp", a, ..] if *p == plane && tcp.is_none() => tcp = Some(a.parse().unwrap()),
            ["admin", url] => {
                let a = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics");
                admin = Some(a.parse().unwrap());
            }
            ["ready"] => break,
            _ => {}
        }
        seen.push(line);
    }
    let missing = |what: &str| format!("dragnet run printed no {what} line before ready: {seen:?}");
    Gateway {
        udp: udp.unwrap_or_else(|| panic!("{}", missing(&format!("`{plane} udp`")))),
        tcp: tcp.unwrap_or_else(|| panic!("{}", missing(&format!("`{plane} tcp`")))),
        admin: admin.unwrap_or_else(|| panic!("{}", missing("`admin`"))),
        pid,
        stderr,
    }
}

/// GET /metrics with plain HTTP/1.0 (the server closes the connection after the body).
pub fn scrape(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: dragnet\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "GET /metrics: {resp}"
    );
    resp.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The value of one sample (name and exact label set, in any order); 0 when absent.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, mut got) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            None => (series, Vec::new()),
        };
        got.sort();
        if n == name && got == want {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total as u64
}

/// Polls /metrics until the sample reaches `n`; returns the last scrape.
pub fn wait_sample(gw: &Gateway, name: &str, labels: &[(&str, &str)], n: u64) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(gw.admin);
        if sample(&text, name, labels) >= n {
            return text;
        }
        if Instant::now() > end {
            panic!(
                "{name}{labels:?} stayed at {} (< {n}) for 10 s\n{text}\n{}",
                sample(&text, name, labels),
                tail(&gw.stderr, 30)
            );
        }
        // Poll pacing only: the condition is the counter, checked each round.
        std::thread::sleep(Duration::from_millis(20));
    }
}
