//! End-to-end tests of the simulator: `dragnet sim gen-rules` → `dragnet rules compile` →
//! `dragnet run` (listeners on 127.0.0.1:0, ports learnt from the lines it prints) →
//! `dragnet sim run`, and the reports it writes.
//!
//! The gateway forwards what it lets through to the simulator's built-in peers (a UAS, a DNS
//! upstream, an HTTP origin), started in this process on port 0 before the gateway. The oracle
//! must be able to pass (0 false positives and negatives over the smoke scenario) and to fail
//! (a rule set with one blocked number removed gives exactly that number's false negatives),
//! and the open-loop driver must keep its schedule against a target that never answers.
//! No sleep stands in for synchronisation, and no timing is asserted.
#![allow(clippy::unwrap_used)]

mod common;
use common::{serial, tail, Procs};

use dragnet_simulator::stub::Stubs;
use dragnet_simulator::workload::Fact;
use dragnet_simulator::{Expected, Scenario};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sim/smoke.toml")
}

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("sim-e2e", name)
}

fn dragnet(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dragnet {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// gen-rules from the scenario into `dir/rules`, then compile to `dir/rules.dnr`; `edit`
/// may change the sources in between.
fn rules(dir: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let src = dir.join("rules");
    dragnet(&[
        "sim",
        "gen-rules",
        "--scenario",
        smoke().to_str().unwrap(),
        "--out",
        src.to_str().unwrap(),
    ]);
    edit(&src);
    let snap = dir.join("rules.dnr");
    dragnet(&[
        "rules",
        "compile",
        src.join("rules.toml").to_str().unwrap(),
        "-o",
        snap.to_str().unwrap(),
    ]);
    snap
}

/// The addresses `dragnet run` printed.
#[derive(Debug)]
struct Gw {
    sip: SocketAddr,
    dns: SocketAddr,
    dns_tcp: SocketAddr,
    http: SocketAddr,
    check: SocketAddr,
    stderr: PathBuf,
}

fn start_gateway(dir: &Path, snap: &Path, stubs: &Stubs, procs: &mut Procs) -> Gw {
    let toml = format!(
        r#"
[rules]
snapshot = "{snap}"

[admin]
listen = "127.0.0.1:0"

[log]
level = "warn"

[sip]
mode = "proxy"
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
next_hop = "{uas}"

[[sip.ingress]]
cidr = "127.0.0.2/32"
trunk = "international"

[sip.tag.headers]
"X-Fraud-Category" = "{{category}}"

[dns]
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
upstreams = ["{dns}"]

[web.http]
enabled = true
listen = ["127.0.0.1:0"]
mode = "transparent"
upstream = "{http}"
"#,
        snap = snap.display(),
        uas = stubs.uas,
        dns = stubs.dns,
        http = stubs.http,
    );
    let cfg = dir.join("dragnet.toml");
    std::fs::write(&cfg, toml).unwrap();
    let stderr = dir.join("dragnet.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
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
    let end = Instant::now() + Duration::from_secs(30);
    let (mut sip, mut dns, mut http, mut admin, mut check) = (None, None, None, None, None);
    let mut dns_tcp = None;
    loop {
        let line = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| {
                panic!("no `ready` from dragnet run ({e:?})\n{}", tail(&stderr, 30))
            });
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["sip", "udp", a, ..] => sip = Some(a.parse().unwrap()),
            ["dns", "udp", a, ..] => dns = Some(a.parse().unwrap()),
            ["dns", "tcp", a, ..] => dns_tcp = Some(a.parse().unwrap()),
            ["web", "http", a, ..] => http = Some(a.parse().unwrap()),
            ["admin", url] => {
                let a = url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics");
                admin = Some(a.parse().unwrap());
            }
            ["check", url] => {
                let a = url.trim_start_matches("http://");
                let a = a.split('/').next().unwrap();
                check = Some(a.parse().unwrap());
            }
            ["ready"] => break,
            _ => {}
        }
    }
    Gw {
        sip: sip.unwrap(),
        dns: dns.unwrap(),
        dns_tcp: dns_tcp.unwrap(),
        http: http.unwrap(),
        check: check.or(admin).unwrap(),
        stderr,
    }
}

/// `dragnet sim run` against the gateway; the parsed report.json.
fn sim_run(gw: &Gw, out: &Path, extra: &[&str]) -> serde_json::Value {
    let dns_tcp = gw.dns_tcp.to_string();
    let (sip, dns, http, check) = (
        gw.sip.to_string(),
        gw.dns.to_string(),
        gw.http.to_string(),
        gw.check.to_string(),
    );
    let scenario = smoke();
    let mut args = vec![
        "sim",
        "run",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--target-sip",
        &sip,
        "--target-dns",
        &dns,
        "--target-dns-tcp",
        &dns_tcp,
        "--target-http",
        &http,
        "--target-check",
        &check,
    ];
    args.extend_from_slice(extra);
    let out_text = Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out_text.status.success(),
        "sim run: {}\n{}\n{}",
        String::from_utf8_lossy(&out_text.stdout),
        String::from_utf8_lossy(&out_text.stderr),
        tail(&gw.stderr, 20)
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &out_text.stdout);
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn stubs() -> Stubs {
    Stubs::start_local(vec!["X-Fraud-Category".into()], "X-Dragnet-Category".into()).unwrap()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn smoke_scenario_against_the_gateway_has_no_false_verdict() {
    let _g = serial();
    let dir = tmpdir("smoke");
    let snap = rules(&dir, |_| {});
    let stubs = stubs();
    let mut procs = Procs::default();
    let gw = start_gateway(&dir, &snap, &stubs, &mut procs);
    let out = dir.join("report");
    let r = sim_run(&gw, &out, &[]);
    let t = &r["totals"];
    let planes = r["planes"].as_array().unwrap();
    let errors: Vec<&serde_json::Value> = planes
        .iter()
        .flat_map(|p| p["error_examples"].as_array().unwrap().iter())
        .take(10)
        .collect();
    let fps: Vec<&serde_json::Value> = planes
        .iter()
        .flat_map(|p| p["false_positive_examples"].as_array().unwrap().iter())
        .chain(
            planes
                .iter()
                .flat_map(|p| p["false_negative_examples"].as_array().unwrap().iter()),
        )
        .take(10)
        .collect();
    assert!(u(&t["scheduled"]) >= 10_000, "{t}");
    assert_eq!(u(&t["false_positives"]), 0, "{fps:#?}");
    assert_eq!(u(&t["false_negatives"]), 0, "{fps:#?}");
    // Every request left on schedule and got an answer the oracle could judge.
    assert_eq!(t["sent"], t["scheduled"], "{t}");
    assert_eq!(u(&t["errors"]), 0, "{errors:#?}");
    assert_eq!(u(&t["unexpected"]), 0, "{errors:#?}");
    assert_eq!(
        u(&t["correct"]) + u(&t["timeouts"]),
        u(&t["scheduled"]),
        "{t}"
    );
    assert!(u(&t["timeouts"]) * 100 <= u(&t["scheduled"]), "{errors:#?}");
    // The totals are the sums of the planes, and each confusion matrix holds every request.
    assert_eq!(planes.len(), 4);
    for key in ["scheduled", "sent", "answered", "correct", "timeouts"] {
        let sum: u64 = planes.iter().map(|p| u(&p[key])).sum();
        assert_eq!(sum, u(&t[key]), "{key}");
    }
    for p in planes {
        let cells: u64 = p["confusion"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|m| m.as_object().unwrap().values().map(u))
            .sum();
        assert_eq!(cells, u(&p["scheduled"]), "{}", p["plane"]);
        assert!(u(&p["latency"]["count"]) > 0);
    }
    // Every kind of verdict was exercised.
    let sip = &planes[0]["confusion"];
    for (e, o) in [
        ("blocked", "blocked"),
        ("tagged", "tagged"),
        ("allowed", "allowed"),
        ("protected", "allowed"),
    ] {
        assert!(u(&sip[e][o]) > 0, "sip {e}→{o}: {sip}");
    }
    assert!(u(&planes[3]["confusion"]["warned"]["warned"]) > 0);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3);
    for s in [
        "Latency over time",
        "Latency percentile curve",
        "Rate over time",
        "<polyline",
    ] {
        assert!(html.contains(s), "{s}");
    }
    assert!(!html.contains("<script") && !html.contains("http-equiv"));
    // DRAGNET_KEEP_REPORT=DIR keeps a copy of the reports (to look at, or to screenshot).
    if let Ok(keep) = std::env::var("DRAGNET_KEEP_REPORT") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for f in ["report.json", "report.html"] {
            std::fs::copy(out.join(f), keep.join(f)).unwrap();
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_blocked_number_removed_is_exactly_the_false_negative() {
    let _g = serial();
    let dir = tmpdir("missing");
    // The same workload `sim run --duration 1.5` will send: pick a blocked caller it uses.
    let mut sc = Scenario::load(&smoke()).unwrap();
    sc.duration_s = 1.5;
    let w = dragnet_simulator::workload::build(&sc).unwrap();
    let victim = w
        .sip
        .iter()
        .find(|r| r.expected == Expected::Blocked)
        .and_then(|r| r.caller())
        .unwrap()
        .to_string();
    let expected_fn = w
        .iter()
        .filter(|r| r.expected == Expected::Blocked && r.caller() == Some(victim.as_str()))
        .count() as u64;
    assert!(w
        .iter()
        .all(|r| !matches!(&r.fact, Fact::Call { callee, .. } if *callee == victim)));
    let snap = rules(&dir, |src| {
        let p = src.join("numbers.csv");
        let text = std::fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{victim},")))
            .collect();
        assert_eq!(
            kept.len() + 1,
            text.lines().count(),
            "{victim} not in numbers.csv"
        );
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
    });
    let stubs = stubs();
    let mut procs = Procs::default();
    let gw = start_gateway(&dir, &snap, &stubs, &mut procs);
    let r = sim_run(&gw, &dir.join("report"), &["--duration", "1.5"]);
    assert_eq!(u(&r["totals"]["false_positives"]), 0);
    assert_eq!(u(&r["totals"]["false_negatives"]), expected_fn, "{victim}");
    for p in r["planes"].as_array().unwrap() {
        for ex in p["false_negative_examples"].as_array().unwrap() {
            let facts = ex["facts"].as_str().unwrap();
            assert!(facts.contains(&format!("caller {victim} ")), "{facts}");
            assert_eq!(ex["expected"], "blocked");
        }
    }
    let html = std::fs::read_to_string(dir.join("report/report.html")).unwrap();
    assert!(html.contains(&victim));
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stalled_target_shows_timeouts_and_the_schedule_is_kept() {
    let _g = serial();
    let dir = tmpdir("stalled");
    // A UDP socket that never reads: every INVITE and query goes unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let sc = Scenario::parse(&format!(
        r#"
seed = 3
duration_s = 1
scam_share = 0.3
[rates]
sip = 50
dns = 100
[rules]
numbers = 1000
prefixes = 10
domains = 500
urls = 100
keywords = 20
[limits]
max_outstanding = 20
timeout_ms = 300
sip_t1_ms = 50
sip_timer_b_ms = 400
[targets]
sip_udp = "{addr}"
dns_udp = "{addr}"
"#
    ))
    .unwrap();
    let r = dragnet_simulator::run(&sc, &dir, false).unwrap();
    for p in &r.planes {
        // The schedule was kept: every due request was sent or, beyond the outstanding bound,
        // counted as an overflow error — none waited.
        assert_eq!(p.sent + p.overflow, p.scheduled, "{}", p.plane);
        assert_eq!(p.timeouts, p.sent, "{}", p.plane);
        assert_eq!(p.answered, 0);
        assert_eq!(p.lateness.count, p.sent);
        assert_eq!((p.false_positives, p.false_negatives), (0, 0));
    }
    assert_eq!(r.planes[0].scheduled, 50);
    assert_eq!(r.planes[1].scheduled, 100);
    // 100 queries/s held 300 ms each is 30 in flight: the bound (20) overflows.
    assert!(r.planes[1].overflow > 0);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("no final answer within Timer B"));
    assert!(html.contains("not sent: 20 requests outstanding"));
    drop(silent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `gen-rules --numbers 10000000` completes, compiles, and the snapshot loads (minutes; run in
/// release: `cargo test --release --test sim_e2e -- --ignored`).
#[test]
#[ignore]
fn ten_million_numbers_generate_compile_and_load() {
    let _g = serial();
    let dir = tmpdir("10m");
    let src = dir.join("rules");
    let t = Instant::now();
    dragnet(&[
        "sim",
        "gen-rules",
        "--numbers",
        "10000000",
        "--domains",
        "10000",
        "--out",
        src.to_str().unwrap(),
    ]);
    let gen = t.elapsed();
    let snap = dir.join("rules.dnr");
    let t = Instant::now();
    dragnet(&[
        "rules",
        "compile",
        src.join("rules.toml").to_str().unwrap(),
        "-o",
        snap.to_str().unwrap(),
    ]);
    let compile = t.elapsed();
    let t = Instant::now();
    let inspect = dragnet(&["rules", "inspect", snap.to_str().unwrap()]);
    let load = t.elapsed();
    assert!(
        inspect.contains("10000000") || inspect.contains("10 000 000"),
        "{inspect}"
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("10^7 numbers: gen-rules {gen:.1?}, compile {compile:.1?}, inspect (load) {load:.1?}\n{inspect}\n").as_bytes(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
