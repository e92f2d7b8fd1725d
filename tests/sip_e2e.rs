//! End-to-end tests of the SIP plane: the real `dragnet run` binary between real SIPp agents.
//!
//! Each test writes a configuration (listeners on `127.0.0.1:0`), starts the binary, learns its
//! ports from the lines it prints before `ready`, starts a SIPp UAS as the next hop where one is
//! needed, drives a SIPp UAC with a CSV of callers and callees, and then asserts on:
//! - what the UAC saw: one `OUTCOME …` line per call in its `-trace_logs` file
//!   (`tests/sipp/uac.xml`): the final code, the 302 Contact, the Reason and Call-Info of a reject;
//! - what reached the UAS: one line per INVITE in its `-trace_logs` file (`tests/sipp/uas.xml`),
//!   with the X-Fraud-Category header the gateway adds to a tagged call;
//! - the gateway's own counters on the admin `/metrics`.
//!
//! The tests run one at a time (a lock): they share the two cores, and SIPp's defaults (the
//! control port, the media ports) are per machine. No sleep stands in for synchronisation: each
//! wait polls a condition (a line, a bound port, a process exit, a counter) up to a deadline.
//! Without `sipp` on the PATH the tests say so loudly on stderr and pass.
#![allow(clippy::unwrap_used)]

mod common;
use common::{read, sample, serial, tail, tool_missing, wait_sample, Gateway, Procs};

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Is SIPp installed? If not, say so where a CI log shows it, and let the caller return.
fn sipp_missing(test: &str) -> bool {
    tool_missing("sipp", test, "install SIPp (Debian: sip-tester)")
}

/// `dragnet run` with this configuration; the sip listeners' addresses.
fn start_gateway(dir: &Path, toml: &str, procs: &mut Procs) -> Gateway {
    common::start_gateway(dir, toml, procs, "sip")
}

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("sip-e2e", name)
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
        .display()
        .to_string()
}

/// A port on 127.0.0.1 that is free for UDP and TCP now (SIPp binds both in TCP mode).
fn free_port() -> u16 {
    for _ in 0..100 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A SIPp media port: SIPp binds it and the one two above (RTP audio and video echo).
fn free_media_port() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX - 2 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no pair of free UDP media ports on 127.0.0.1");
}

/// A passed test stops its processes and removes its directory (a failed one leaves it).
fn finish(procs: Procs, dir: &Path) {
    drop(procs);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits for a child to exit, killing it at the deadline.
fn wait_exit(c: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what} did not finish within {deadline:?}; killed");
        }
        // Poll pacing only: the condition is the exit, checked each round.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The proxy or redirect configuration for a test; `next_hop` is the UAS.
fn config(mode: &str, next_hop: u16) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[log]
level = "warn"

[sip]
mode = "{mode}"
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
next_hop = "127.0.0.1:{next_hop}"

[[sip.ingress]]
cidr = "127.0.0.2/32"
trunk = "international"

[sip.category.spoofing]
code = 603

[sip.warn]
announcement = "sip:fraud-warning@127.0.0.1:5090"
"#
    )
}

/// A SIPp UAS on 127.0.0.1 (the proxy's next hop), running until the test ends.
struct Uas {
    port: u16,
    log: PathBuf,
    messages: PathBuf,
}

fn start_uas(dir: &Path, procs: &mut Procs) -> Uas {
    let port = free_port();
    let log = dir.join("uas.log");
    let messages = dir.join("uas.msg");
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario("uas.xml"))
        .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin"])
        .args(["-p", &port.to_string()])
        .args(["-mp", &free_media_port().to_string()])
        .arg("-trace_logs")
        .arg("-log_file")
        .arg(&log)
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(&messages)
        .arg("-trace_err")
        .arg("-error_file")
        .arg(dir.join("uas.err"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("uas.stdout")).unwrap())
        .stderr(File::create(dir.join("uas.stderr")).unwrap())
        .spawn()
        .unwrap();
    procs.add(child);
    // Ready when its UDP port is bound: the first forwarded INVITE would otherwise meet a closed
    // port and wait for a retransmission. Read from /proc (Linux) rather than probed with a
    // bind of our own, which could make SIPp's bind fail; elsewhere, the retransmission covers it.
    let end = Instant::now() + Duration::from_secs(10);
    while udp_bound_on_loopback(port) == Some(false) {
        assert!(
            Instant::now() < end,
            "SIPp UAS did not bind 127.0.0.1:{port}\n{}",
            tail(&dir.join("uas.stderr"), 20)
        );
        // Poll pacing only: the condition is the bound port, checked each round.
        std::thread::sleep(Duration::from_millis(20));
    }
    Uas {
        port,
        log,
        messages,
    }
}

/// Is a UDP socket bound to 127.0.0.1:`port`? From /proc/net/udp; `None` where it is absent.
fn udp_bound_on_loopback(port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    // local_address is hex, host byte order on little-endian machines: 0100007F:PPPP.
    let want = [
        format!("0100007F:{port:04X}"),
        format!("7F000001:{port:04X}"),
    ];
    Some(table.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| want.iter().any(|w| w == a))
    }))
}

/// An INVITE that reached the UAS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reached {
    caller: String,
    callee: String,
    /// The X-Fraud-Category value, "" when the header was absent.
    category: String,
}

/// The user part of a SIP URI somewhere in `s` (`…sip:USER@…`).
fn user_of(s: &str) -> String {
    s.split_once("sip:")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(u, _)| u.to_string())
        .unwrap_or_default()
}

/// The INVITEs the UAS logged: `INVITE <ruri> from=<From value> category=<value>`.
fn reached(uas: &Uas) -> Vec<Reached> {
    let mut v: Vec<Reached> = read(&uas.log)
        .lines()
        .filter(|l| l.starts_with("INVITE "))
        .map(|l| {
            let (head, category) = l.rsplit_once(" category=").unwrap_or((l, ""));
            let (ruri, from) = head.split_once(" from=").unwrap_or((head, ""));
            Reached {
                caller: user_of(from),
                callee: user_of(ruri),
                category: category.trim().to_string(),
            }
        })
        .collect();
    v.sort();
    v
}

/// Every message the UAS received (its `-trace_msg` file), as (first line, From user, To user,
/// whole text).
fn uas_received(uas: &Uas) -> Vec<(String, String, String, String)> {
    let text = read(&uas.messages);
    let mut out = Vec::new();
    for block in text.split("-----------------------------------------------") {
        let mut lines = block.lines();
        let _stamp = lines.next();
        if !lines.next().is_some_and(|l| l.contains("message received")) {
            continue;
        }
        let msg: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        let header = |name: &str| {
            msg.iter()
                .find(|l| l.to_ascii_lowercase().starts_with(name))
                .map_or(String::new(), |l| user_of(l))
        };
        out.push((
            msg.first().map_or(String::new(), |l| l.to_string()),
            header("from:"),
            header("to:"),
            msg.join("\n"),
        ));
    }
    out
}

/// Nothing of a rejected call reached the UAS: every message it received (INVITE, ACK, BYE,
/// also any ACK the gateway should have absorbed) belongs to an allowed (caller, callee) pair,
/// and none came from `foreign_ip` (a UAC whose calls were all rejected).
fn assert_uas_saw_only(uas: &Uas, allowed: &[(&str, &str)], foreign_ip: Option<&str>) {
    let got = uas_received(uas);
    assert!(
        !got.is_empty(),
        "the UAS received nothing\n{}",
        tail(&uas.messages, 40)
    );
    for (first, from, to, text) in &got {
        let ok = allowed.iter().any(|(a, b)| a == from && b == to)
            && foreign_ip.is_none_or(|ip| !text.contains(ip));
        assert!(
            ok,
            "a message of a rejected call reached the UAS: {first} ({from} -> {to})\n{text}"
        );
    }
}

/// What the UAC saw for one call.
#[derive(Debug, Clone)]
struct Outcome {
    code: u16,
    /// `reason=…`, `callinfo=…`, `contact=…` as logged (values trimmed; "" when absent).
    fields: BTreeMap<String, String>,
}

impl Outcome {
    fn field(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
}

/// A finished UAC run.
struct UacRun {
    status: ExitStatus,
    /// By (caller, callee).
    outcomes: BTreeMap<(String, String), Outcome>,
    dir: PathBuf,
    name: String,
}

impl UacRun {
    /// Everything useful for a failure message.
    fn diagnostics(&self) -> String {
        let f = |ext: &str| self.dir.join(format!("{}.{ext}", self.name));
        format!(
            "SIPp UAC {} exited {:?}\n{}\n{}\n{}",
            self.name,
            self.status,
            tail(&f("log"), 20),
            tail(&f("err"), 20),
            tail(&f("msg"), 60),
        )
    }

    fn outcome(&self, caller: &str, callee: &str) -> &Outcome {
        self.outcomes
            .get(&(caller.to_string(), callee.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "no outcome for the call {caller} -> {callee}\n{}",
                    self.diagnostics()
                )
            })
    }

    fn assert_all_ok(&self, calls: usize) {
        assert!(
            self.status.success() && self.outcomes.len() == calls,
            "expected {calls} calls to finish, got {}\n{}",
            self.outcomes.len(),
            self.diagnostics()
        );
    }
}

/// Parses `OUTCOME caller=C callee=D code=N [key=value …]`. Values may hold spaces (a Reason
/// header), so the keys are found by their known names in their logged order.
fn parse_outcome(line: &str) -> Option<((String, String), Outcome)> {
    let rest = line.strip_prefix("OUTCOME caller=")?;
    let (caller, rest) = rest.split_once(" callee=")?;
    let (callee, rest) = rest.split_once(" code=")?;
    let (code, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let rest = format!(" {rest}");
    let mut starts: Vec<(usize, &str)> = ["reason", "callinfo", "contact"]
        .into_iter()
        .filter_map(|k| rest.find(&format!(" {k}=")).map(|i| (i, k)))
        .collect();
    starts.sort();
    let mut fields = BTreeMap::new();
    for (j, (at, key)) in starts.iter().enumerate() {
        // The value runs to the next known key, or to the end of the line.
        let end = starts.get(j + 1).map_or(rest.len(), |(next, _)| *next);
        let value = &rest[at + key.len() + 2..end];
        fields.insert(key.to_string(), value.trim().to_string());
    }
    Some((
        (caller.to_string(), callee.to_string()),
        Outcome {
            code: code.parse().ok()?,
            fields,
        },
    ))
}

/// How the UAC reaches the gateway.
struct UacSpec<'a> {
    name: &'a str,
    target: SocketAddr,
    local_ip: &'a str,
    /// SIPp transport: `u1` (UDP, one socket) or `t1` (TCP, one connection).
    transport: &'a str,
    calls: &'a [(&'a str, &'a str)],
}

/// Runs a SIPp UAC to completion (`-m` = the number of calls), bounded by `-timeout`.
fn run_uac(dir: &Path, spec: &UacSpec) -> UacRun {
    let csv = dir.join(format!("{}.csv", spec.name));
    let mut text = String::from("SEQUENTIAL\n");
    for (caller, callee) in spec.calls {
        text.push_str(&format!("{caller};{callee};\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let f = |ext: &str| dir.join(format!("{}.{ext}", spec.name));
    let mut child = Command::new("sipp")
        .arg(spec.target.to_string())
        .arg("-sf")
        .arg(scenario("uac.xml"))
        .arg("-inf")
        .arg(&csv)
        .args(["-i", spec.local_ip, "-t", spec.transport, "-nostdin"])
        .args(["-p", &free_port().to_string()])
        .args(["-mp", &free_media_port().to_string()])
        .args(["-m", &spec.calls.len().to_string()])
        .args(["-r", "50", "-timeout", "30s", "-timeout_error"])
        .args(["-recv_timeout", "5000"])
        .arg("-trace_logs")
        .arg("-log_file")
        .arg(f("log"))
        .arg("-trace_err")
        .arg("-error_file")
        .arg(f("err"))
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(f("msg"))
        .arg("-trace_stat")
        .arg("-stf")
        .arg(f("stat.csv"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(f("stdout")).unwrap())
        .stderr(File::create(f("stderr")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(40), "SIPp UAC");
    let outcomes = read(&f("log")).lines().filter_map(parse_outcome).collect();
    UacRun {
        status,
        outcomes,
        dir: dir.to_path_buf(),
        name: spec.name.to_string(),
    }
}

/// The URI of a bracketed Contact value (`<sip:…>;params` → `sip:…`).
fn contact_uri(contact: &str) -> &str {
    contact
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
}

const BLOCKED: &str = "+8613800138000"; // cn-fraud-0001: block both ways, impersonating-police
const VIRTUAL_OP: &str = "+8617155550000"; // cn-tag-0171: tag caller, virtual-operator
const MOBILE: &str = "+8613912345678"; // cn-spoof-mobile: block only from trunk international
const WARNED: &str = "01087654321"; // cn-fraud-0004: warn caller, loans
const PLAIN_A: &str = "13700002222"; // no rule
const PLAIN_B: &str = "13700003333"; // no rule

fn assert_608(o: &Outcome, run: &UacRun) {
    assert_eq!(o.code, 608, "{o:?}\n{}", run.diagnostics());
    // RFC 8688 §3: the 608 carries the jCard URI with purpose=jwscard.
    assert!(
        o.field("callinfo").contains("purpose=jwscard")
            && o.field("callinfo")
                .contains("https://fraud-appeal.example/jwscard"),
        "608 without Call-Info ;purpose=jwscard: {o:?}"
    );
}

#[test]
fn proxy_mode_screens_calls_between_sipp_agents() {
    let _one = serial();
    if sipp_missing("proxy_mode_screens_calls_between_sipp_agents") {
        return;
    }
    let dir = tmpdir("proxy");
    let mut procs = Procs::default();
    let uas = start_uas(&dir, &mut procs);
    let gw = start_gateway(&dir, &config("proxy", uas.port), &mut procs);

    let calls = [
        (MOBILE, PLAIN_B),     // allowed: the +861 rule is for trunk international only
        (BLOCKED, PLAIN_B),    // listed caller: 608
        (PLAIN_A, BLOCKED),    // listed callee: 608
        (VIRTUAL_OP, PLAIN_B), // prefix rule: tagged, forwarded
        (BLOCKED, "110"),      // protected callee: passes untouched despite the caller
        (PLAIN_A, PLAIN_B),    // allowed
    ];
    let run = run_uac(
        &dir,
        &UacSpec {
            name: "uac-domestic",
            target: gw.udp,
            local_ip: "127.0.0.1",
            transport: "u1",
            calls: &calls,
        },
    );
    run.assert_all_ok(calls.len());
    for (caller, callee) in [
        (MOBILE, PLAIN_B),
        (VIRTUAL_OP, PLAIN_B),
        (BLOCKED, "110"),
        (PLAIN_A, PLAIN_B),
    ] {
        let o = run.outcome(caller, callee);
        assert_eq!(
            o.code,
            200,
            "{caller} -> {callee}: {o:?}\n{}",
            run.diagnostics()
        );
    }
    assert_608(run.outcome(BLOCKED, PLAIN_B), &run);
    assert_608(run.outcome(PLAIN_A, BLOCKED), &run);

    // The ingress-scoped rule: the same mobile caller from 127.0.0.2 (trunk international).
    let intl = [(MOBILE, PLAIN_B)];
    let run2 = run_uac(
        &dir,
        &UacSpec {
            name: "uac-international",
            target: gw.udp,
            local_ip: "127.0.0.2",
            transport: "u1",
            calls: &intl,
        },
    );
    run2.assert_all_ok(1);
    let o = run2.outcome(MOBILE, PLAIN_B);
    assert_eq!(
        o.code,
        603,
        "[sip.category.spoofing] code = 603: {o:?}\n{}",
        run2.diagnostics()
    );
    // RFC 3326 Reason, as the 603+ convention: cause and the rule's category.
    let reason = o.field("reason");
    assert!(
        reason.starts_with("SIP;cause=603") && reason.contains("spoofing"),
        "603 Reason header: {o:?}"
    );

    // Only the allowed calls reached the UAS; only the +86171 caller was tagged.
    let got = reached(&uas);
    let mut want = vec![
        Reached {
            caller: MOBILE.into(),
            callee: PLAIN_B.into(),
            category: String::new(),
        },
        Reached {
            caller: VIRTUAL_OP.into(),
            callee: PLAIN_B.into(),
            category: "virtual-operator".into(),
        },
        Reached {
            caller: BLOCKED.into(),
            callee: "110".into(),
            category: String::new(),
        },
        Reached {
            caller: PLAIN_A.into(),
            callee: PLAIN_B.into(),
            category: String::new(),
        },
    ];
    want.sort();
    assert_eq!(got, want, "INVITEs at the UAS\n{}", tail(&uas.messages, 80));
    assert_uas_saw_only(
        &uas,
        &[
            (MOBILE, PLAIN_B),
            (VIRTUAL_OP, PLAIN_B),
            (BLOCKED, "110"),
            (PLAIN_A, PLAIN_B),
        ],
        Some("127.0.0.2"),
    );

    // The hop-by-hop ACKs to the three rejects are absorbed, not forwarded.
    let text = wait_sample(&gw, "dragnet_sip_acks_absorbed_total", &[], 3);
    let verdict = |action: &str, category: &str| {
        sample(
            &text,
            "dragnet_verdicts_total",
            &[("plane", "sip"), ("action", action), ("category", category)],
        )
    };
    // Verdicts are counted once per INVITE transaction (retransmissions hit the cache).
    assert_eq!(verdict("block", "impersonating-police"), 2, "{text}");
    assert_eq!(verdict("block", "spoofing"), 1, "{text}");
    assert_eq!(verdict("tag", "virtual-operator"), 1, "{text}");
    // Responses are counted per send: a retransmitted INVITE is answered again.
    let sent = |code: &str| sample(&text, "dragnet_sip_responses_sent_total", &[("code", code)]);
    assert!(sent("608") >= 2 && sent("603") >= 1, "{text}");
    assert_eq!(sent("302"), 0, "{text}");
    finish(procs, &dir);
}

#[test]
fn redirect_mode_answers_302_or_the_reject() {
    let _one = serial();
    if sipp_missing("redirect_mode_answers_302_or_the_reject") {
        return;
    }
    let dir = tmpdir("redirect");
    let mut procs = Procs::default();
    // No UAS: a redirect server answers every INVITE itself. next_hop is not used.
    let gw = start_gateway(&dir, &config("redirect", 9), &mut procs);
    let calls = [
        (PLAIN_A, PLAIN_B),    // allowed: 302 to the original target
        (BLOCKED, PLAIN_B),    // block: 608
        (WARNED, PLAIN_B),     // warn (caller): 302 to the announcement
        (VIRTUAL_OP, PLAIN_B), // tag: 302 to the target with the tags as URI headers
        (BLOCKED, "110"),      // protected callee: 302 to the target
    ];
    let run = run_uac(
        &dir,
        &UacSpec {
            name: "uac-redirect",
            target: gw.udp,
            local_ip: "127.0.0.1",
            transport: "u1",
            calls: &calls,
        },
    );
    run.assert_all_ok(calls.len());
    // The UAC's Request-URI (tests/sipp/uac.xml): sip:[field1]@[remote_ip]:[remote_port];user=phone
    let target = |callee: &str| format!("sip:{callee}@{};user=phone", gw.udp);

    for (caller, callee) in [(PLAIN_A, PLAIN_B), (BLOCKED, "110")] {
        let o = run.outcome(caller, callee);
        assert_eq!(
            o.code,
            302,
            "{caller} -> {callee}: {o:?}\n{}",
            run.diagnostics()
        );
        assert_eq!(contact_uri(o.field("contact")), target(callee), "{o:?}");
    }
    assert_608(run.outcome(BLOCKED, PLAIN_B), &run);
    let o = run.outcome(WARNED, PLAIN_B);
    assert_eq!(o.code, 302, "{o:?}\n{}", run.diagnostics());
    assert_eq!(
        contact_uri(o.field("contact")),
        "sip:fraud-warning@127.0.0.1:5090",
        "{o:?}"
    );
    // RFC 3261 §19.1.1: tag facts ride as escaped URI headers of the Contact.
    let o = run.outcome(VIRTUAL_OP, PLAIN_B);
    assert_eq!(o.code, 302, "{o:?}\n{}", run.diagnostics());
    let c = contact_uri(o.field("contact"));
    assert!(
        c.starts_with(&format!("{}?", target(PLAIN_B)))
            && c.contains("X-Fraud-Category=virtual-operator"),
        "tagged 302 Contact: {o:?}"
    );

    // Every final response was ACKed, and every ACK absorbed.
    let text = wait_sample(&gw, "dragnet_sip_acks_absorbed_total", &[], 5);
    let sent = |code: &str| sample(&text, "dragnet_sip_responses_sent_total", &[("code", code)]);
    assert!(sent("302") >= 4 && sent("608") >= 1, "{text}");
    let verdict = |action: &str, category: &str| {
        sample(
            &text,
            "dragnet_verdicts_total",
            &[("plane", "sip"), ("action", action), ("category", category)],
        )
    };
    assert_eq!(verdict("warn", "loans"), 1, "{text}");
    assert_eq!(verdict("block", "impersonating-police"), 1, "{text}");
    finish(procs, &dir);
}

#[test]
fn proxy_mode_over_tcp_answers_on_the_connection() {
    let _one = serial();
    if sipp_missing("proxy_mode_over_tcp_answers_on_the_connection") {
        return;
    }
    let dir = tmpdir("tcp");
    let mut procs = Procs::default();
    let uas = start_uas(&dir, &mut procs);
    let gw = start_gateway(&dir, &config("proxy", uas.port), &mut procs);
    let calls = [(PLAIN_A, PLAIN_B), (BLOCKED, PLAIN_B)];
    let run = run_uac(
        &dir,
        &UacSpec {
            name: "uac-tcp",
            target: gw.tcp,
            local_ip: "127.0.0.1",
            transport: "t1",
            calls: &calls,
        },
    );
    run.assert_all_ok(calls.len());
    let o = run.outcome(PLAIN_A, PLAIN_B);
    assert_eq!(o.code, 200, "{o:?}\n{}", run.diagnostics());
    assert_608(run.outcome(BLOCKED, PLAIN_B), &run);
    assert_eq!(
        reached(&uas),
        vec![Reached {
            caller: PLAIN_A.into(),
            callee: PLAIN_B.into(),
            category: String::new()
        }],
        "INVITEs at the UAS\n{}",
        tail(&uas.messages, 80)
    );
    assert_uas_saw_only(&uas, &[(PLAIN_A, PLAIN_B)], None);
    let text = wait_sample(&gw, "dragnet_sip_acks_absorbed_total", &[], 1);
    // INVITE, ACK, BYE of the allowed call and INVITE, ACK of the blocked one, all on TCP.
    let tcp_requests = sample(
        &text,
        "dragnet_sip_messages_received_total",
        &[("transport", "tcp"), ("kind", "request")],
    );
    assert!(tcp_requests >= 5, "{text}");
    assert_eq!(
        sample(
            &text,
            "dragnet_sip_messages_received_total",
            &[("transport", "udp"), ("kind", "request")]
        ),
        0,
        "{text}"
    );
    // SIPp -t t1 opens one connection; every response came back on it (SIPp would have
    // refused a stray one as an unexpected message, and the gateway never connects out).
    assert_eq!(
        sample(&text, "dragnet_sip_tcp_connections_accepted_total", &[]),
        1,
        "{text}"
    );
    finish(procs, &dir);
}
