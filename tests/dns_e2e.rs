//! End-to-end tests of the DNS plane: the real `dragnet run` binary between `dig` and a small
//! fake upstream resolver written here.
//!
//! Each test writes a configuration (listeners on `127.0.0.1:0`, the SIP plane off, the
//! upstream below), starts the binary, learns its ports from the lines it prints before
//! `ready`, asks `dig` (or a plain `UdpSocket`, for what `dig` cannot send) and asserts on:
//! - what the client got: status, flags, answer and authority sections of `dig`'s output, or
//!   the header of a raw reply;
//! - what reached the upstream: every question it received, so a blocked name is proven never
//!   to have left the gateway;
//! - the gateway's own counters on the admin `/metrics`.
//!
//! The upstream (RFC 1035 by hand, std only) answers `A 192.0.2.1`, TTL 300, for every name;
//! under `big.test` it sets TC over UDP and gives 40 A records over TCP; under `slow.test` it
//! never answers.
//!
//! The tests run one at a time (a lock): they share the two cores. No sleep stands in for
//! synchronisation: each wait polls a condition (a line, a reply, a counter) up to a deadline.
//! Without `dig` on the PATH the tests say so loudly on stderr and pass.
#![allow(clippy::unwrap_used)]

mod common;
use common::{sample, serial, tool_missing, wait_sample, Gateway, Procs};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Is dig installed? If not, say so where a CI log shows it, and let the caller return.
fn dig_missing(test: &str) -> bool {
    tool_missing("dig", test, "install it (Debian: dnsutils)")
}

/// `dragnet run` with this configuration; the dns listeners' addresses.
fn start_gateway(dir: &Path, toml: &str, procs: &mut Procs) -> Gateway {
    common::start_gateway(dir, toml, procs, "dns")
}

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("dns-e2e", name)
}

// ---------------------------------------------------------------------------------------------
// DNS wire format, by hand (RFC 1035 §4.1), for the fake upstream and the raw-socket clients.

const TYPE_A: u16 = 1;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// A standard query with one question, RD set (RFC 1035 §4.1.1–4.1.2).
fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    q
}

/// A reply's header fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    flags: u16,
    ancount: u16,
}

impl Header {
    fn read(b: &[u8]) -> Option<Header> {
        (b.len() >= 12).then(|| Header {
            id: u16_at(b, 0),
            flags: u16_at(b, 2),
            ancount: u16_at(b, 6),
        })
    }

    fn rcode(&self) -> u16 {
        self.flags & 0x000f
    }
}

/// Is `name` `zone` or under it (label-wise)?
fn under(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The fake upstream's reply to a query; `None` for no reply (unparseable, or `slow.test`).
/// Also returns the question's name, lower-cased, when the question could be read.
fn upstream_reply(q: &[u8], over_tcp: bool) -> (Option<String>, Option<Vec<u8>>) {
    if q.len() < 12 || u16_at(q, 4) != 1 || u16_at(q, 2) & FLAG_QR != 0 {
        return (None, None);
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let Some(&len) = q.get(i) else {
            return (None, None);
        };
        i += 1;
        if len == 0 {
            break;
        }
        // Queries carry no compression; anything else is not for us.
        let Some(l) = q.get(i..i + usize::from(len)).filter(|_| len < 64) else {
            return (None, None);
        };
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += usize::from(len);
    }
    if q.len() < i + 4 {
        return (None, None);
    }
    let name = labels.join(".");
    let qtype = u16_at(q, i);
    let question = &q[12..i + 4];
    if under(&name, "slow.test") {
        return (Some(name), None);
    }
    let big = under(&name, "big.test");
    let mut flags = FLAG_QR | (u16_at(q, 2) & FLAG_RD) | FLAG_RA;
    let addrs: Vec<[u8; 4]> = match (qtype == TYPE_A, big, over_tcp) {
        (false, _, _) => Vec::new(), // NODATA for every other type
        (true, true, false) => {
            flags |= FLAG_TC; // RFC 2181 §9: too big for UDP, no records
            Vec::new()
        }
        (true, true, true) => (1..=40).map(|n| [192, 0, 2, n]).collect(),
        (true, false, _) => vec![[192, 0, 2, 1]],
    };
    let mut r = Vec::with_capacity(12 + question.len() + 16 * addrs.len());
    r.extend_from_slice(&q[..2]);
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    for a in &addrs {
        // Owner: a pointer to the question's name at offset 12 (RFC 1035 §4.1.4).
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(a);
    }
    (Some(name), Some(r))
}

/// The fake upstream resolver: UDP and TCP on one port of 127.0.0.1.
struct Upstream {
    addr: SocketAddr,
    /// Questions received (UDP and TCP), and those over TCP.
    queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    /// Every question's name, in arrival order.
    names: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        // One port for both transports: the gateway retries a truncated answer over TCP to
        // the same ip:port (RFC 7766 §5).
        let (udp, tcp) = (0..100)
            .find_map(|_| {
                let u = UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = u.local_addr().ok()?.port();
                let t = TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some((u, t))
            })
            .expect("no port free for both UDP and TCP on 127.0.0.1");
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let record = {
            let (queries, names) = (queries.clone(), names.clone());
            move |name: Option<String>| {
                if let Some(n) = name {
                    queries.fetch_add(1, Ordering::SeqCst);
                    names.lock().unwrap().push(n);
                }
            }
        };
        let udp_thread = {
            let (stop, record) = (stop.clone(), record.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    // Woken by the datagram Drop sends.
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (name, reply) = upstream_reply(&buf[..n], false);
                    record(name);
                    if let Some(r) = reply {
                        let _ = udp.send_to(&r, from);
                    }
                }
            })
        };
        let tcp_thread = {
            let (stop, tcp_queries) = (stop.clone(), tcp_queries.clone());
            std::thread::spawn(move || {
                for conn in tcp.incoming() {
                    // Woken by the connection Drop opens.
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut s) = conn else { continue };
                    // Served inline: the gateway sends one query per connection. The read
                    // timeout bounds a peer that never writes.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    // RFC 1035 §4.2.2: a two-octet length before each message.
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).is_err() {
                            break;
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if s.read_exact(&mut q).is_err() {
                            break;
                        }
                        let (name, reply) = upstream_reply(&q, true);
                        if name.is_some() {
                            tcp_queries.fetch_add(1, Ordering::SeqCst);
                        }
                        record(name);
                        let Some(r) = reply else { continue };
                        let mut msg = (r.len() as u16).to_be_bytes().to_vec();
                        msg.extend_from_slice(&r);
                        if s.write_all(&msg).is_err() {
                            break;
                        }
                    }
                }
            })
        };
        Upstream {
            addr,
            queries,
            tcp_queries,
            names,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }

    /// Asserts that none of `blocked` ever reached the upstream.
    fn assert_never_saw(&self, blocked: &[&str]) {
        let seen = self.names();
        for b in blocked {
            assert!(
                !seen.iter().any(|n| n == b),
                "the blocked name {b} reached the upstream; it saw {seen:?}"
            );
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both blocking loops so they see the flag.
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(b"stop", self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway process.

/// A passed test stops its processes and the upstream and removes its directory (a failed
/// one leaves the directory for a look at the gateway's stderr).
fn finish(procs: Procs, up: Upstream, dir: &Path) {
    drop(procs);
    drop(up);
    let _ = std::fs::remove_dir_all(dir);
}

/// The examples' category policy (examples/dragnet.toml), which the built-in defaults lack.
const MALWARE_SINKHOLE: &str = r#"malware = "sinkhole""#;

/// A configuration: DNS on 127.0.0.1:0 forwarding to `up`, SIP off. `dns_keys` go under
/// `[dns]`, `categories` under `[dns.category]`; `rules` is the body of `[rules]`.
fn config(up: SocketAddr, dns_keys: &str, categories: &str, rules: &str) -> String {
    format!(
        r#"
[rules]
{rules}

[admin]
listen = "127.0.0.1:0"

[log]
level = "warn"

[sip]
enabled = false

[dns]
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
upstreams = ["{up}"]
{dns_keys}

[dns.category]
{categories}
"#
    )
}

fn verdicts(text: &str, action: &str, category: &str) -> u64 {
    sample(
        text,
        "dragnet_verdicts_total",
        &[("plane", "dns"), ("action", action), ("category", category)],
    )
}

fn answers(text: &str, rcode: &str) -> u64 {
    sample(text, "dragnet_dns_answers_total", &[("rcode", rcode)])
}

// ---------------------------------------------------------------------------------------------
// dig.

/// One resource record as dig prints it: owner, TTL, type, data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// What dig printed.
#[derive(Debug)]
struct Dig {
    /// `NOERROR`, `NXDOMAIN` …; "" when no reply came (`timed_out`).
    status: String,
    /// Header flags (`qr`, `aa`, `tc`, `rd`, `ra` …).
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    /// The `;; SERVER:` line (it names the transport, `(UDP)` or `(TCP)`).
    server: String,
    timed_out: bool,
    text: String,
}

impl Dig {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    fn answer_data(&self, rtype: &str) -> Vec<&str> {
        self.answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.as_str())
            .collect()
    }

    fn has_soa_authority(&self) -> bool {
        self.authority.iter().any(|r| r.rtype == "SOA")
    }
}

fn parse_dig(text: &str) -> Dig {
    let mut d = Dig {
        status: String::new(),
        flags: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        server: String::new(),
        timed_out: text.contains("timed out") && !text.contains("->>HEADER<<-"),
        text: text.to_string(),
    };
    #[derive(PartialEq)]
    enum Sec {
        None,
        Answer,
        Authority,
    }
    let mut sec = Sec::None;
    for line in text.lines() {
        if let Some((_, rest)) = line.split_once("status: ") {
            d.status = rest.split(',').next().unwrap_or("").trim().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        } else if let Some(rest) = line.strip_prefix(";; SERVER:") {
            d.server = rest.trim().to_string();
        } else if line.starts_with(";; ANSWER SECTION:") {
            sec = Sec::Answer;
        } else if line.starts_with(";; AUTHORITY SECTION:") {
            sec = Sec::Authority;
        } else if line.trim().is_empty() || line.starts_with(';') {
            sec = Sec::None;
        } else if sec != Sec::None {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() >= 5 {
                let rr = Rr {
                    name: w[0].to_string(),
                    ttl: w[1].parse().unwrap_or(u32::MAX),
                    rtype: w[3].to_string(),
                    data: w[4..].join(" "),
                };
                match sec {
                    Sec::Answer => d.answer.push(rr),
                    _ => d.authority.push(rr),
                }
            }
        }
    }
    d
}

/// `dig @ADDR -p PORT +tries=1 ARGS…` (`+time=2` unless ARGS set it). dig bounds itself with
/// +tries and +time, so its run always ends.
fn dig(at: SocketAddr, args: &[&str]) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", at.ip()))
        .args(["-p", &at.port().to_string(), "+tries=1"]);
    if !args.iter().any(|a| a.starts_with("+time=")) {
        cmd.arg("+time=2");
    }
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    parse_dig(&text)
}

/// Asserts a forwarded answer: NOERROR with the upstream's A 192.0.2.1.
fn assert_forwarded(d: &Dig, name: &str) {
    assert!(
        d.status == "NOERROR" && d.answer_data("A") == ["192.0.2.1"],
        "{name}: expected the upstream's A 192.0.2.1\n{}",
        d.text
    );
}

/// Asserts a policy NXDOMAIN: no answer, the synthetic SOA in the authority section (RFC 2308 §3).
fn assert_nxdomain(d: &Dig, name: &str) {
    assert!(
        d.status == "NXDOMAIN" && d.answer.is_empty() && d.has_soa_authority(),
        "{name}: expected NXDOMAIN with a SOA in AUTHORITY\n{}",
        d.text
    );
}

/// Asserts NODATA: NOERROR, no answer, the SOA in the authority section (RFC 2308 §2.2).
fn assert_nodata(d: &Dig, name: &str) {
    assert!(
        d.status == "NOERROR" && d.answer.is_empty() && d.has_soa_authority(),
        "{name}: expected NODATA (NOERROR, no answer, SOA in AUTHORITY)\n{}",
        d.text
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn blocked_names_get_nxdomain_and_never_reach_the_upstream() {
    let _one = serial();
    if dig_missing("blocked_names_get_nxdomain_and_never_reach_the_upstream") {
        return;
    }
    let dir = tmpdir("block");
    let up = Upstream::start();
    let mut procs = Procs::default();
    let gw = start_gateway(&dir, &config(up.addr, "", MALWARE_SINKHOLE, ""), &mut procs);

    let blocked = [
        "evil.example",                 // scam.domains: the name …
        "login.account.evil.example",   // … and every subdomain
        "x.refund-center.test",         // *.refund-center.test: subdomains only
        "pay.wallet-check.test",        // =pay.wallet-check.test: exactly
        "parcel-redelivery.test",       // adblock ||parcel-redelivery.test^
        "track.parcel-redelivery.test", // … and its subdomains
    ];
    let forwarded = [
        "notevil.example",             // a look-alike, not a subdomain (label boundary)
        "refund-center.test",          // the *. rule does not cover the name itself
        "x.pay.wallet-check.test",     // the = rule does not cover subdomains
        "help.parcel-redelivery.test", // the @@ exception wins
        "plain.test",                  // no rule
    ];
    for name in blocked {
        assert_nxdomain(&dig(gw.udp, &[name, "A"]), name);
    }
    for name in forwarded {
        assert_forwarded(&dig(gw.udp, &[name, "A"]), name);
    }
    // Names match without regard to case (RFC 4343 §3); the question comes back as asked.
    let d = dig(gw.udp, &["EvIl.ExAmPlE", "A"]);
    assert_nxdomain(&d, "EvIl.ExAmPlE");
    assert!(
        d.text.contains(";EvIl.ExAmPlE."),
        "question case\n{}",
        d.text
    );
    // The answers must come with the gateway's header: a response (qr), recursion available.
    let d = dig(gw.udp, &["evil.example", "A"]);
    assert!(d.has_flag("qr") && d.has_flag("ra"), "{}", d.text);
    // The synthetic SOA is owned by the queried name or its ancestor, with the negative TTL.
    let soa = d.authority.iter().find(|r| r.rtype == "SOA").unwrap();
    assert!(
        "evil.example.".ends_with(&soa.name) && soa.ttl <= 60,
        "SOA owner/TTL: {soa:?}\n{}",
        d.text
    );

    // The upstream saw the forwarded names, once each, and none of the blocked ones.
    up.assert_never_saw(&blocked);
    let mut seen = up.names();
    seen.sort();
    let mut want: Vec<String> = forwarded.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "questions at the upstream");
    assert_eq!(up.count(), forwarded.len());

    let text = wait_sample(
        &gw,
        "dragnet_dns_queries_total",
        &[],
        (blocked.len() + forwarded.len() + 2) as u64,
    );
    assert_eq!(
        sample(&text, "dragnet_dns_queries_total", &[]),
        (blocked.len() + forwarded.len() + 2) as u64,
        "{text}"
    );
    assert_eq!(
        sample(&text, "dragnet_dns_forwarded_total", &[]),
        forwarded.len() as u64,
        "{text}"
    );
    assert_eq!(
        answers(&text, "nxdomain"),
        (blocked.len() + 2) as u64,
        "{text}"
    );
    assert_eq!(
        verdicts(&text, "block", "phishing"),
        (blocked.len() + 2) as u64,
        "{text}"
    );
    assert_eq!(
        verdicts(&text, "allow", "phishing"),
        1,
        "the @@ exception\n{text}"
    );
    finish(procs, up, &dir);
}

#[test]
fn each_policy_answers_as_configured() {
    let _one = serial();
    if dig_missing("each_policy_answers_as_configured") {
        return;
    }
    let dir = tmpdir("policy");
    let up = Upstream::start();
    let mut procs = Procs::default();
    let gw = start_gateway(&dir, &config(up.addr, "", MALWARE_SINKHOLE, ""), &mut procs);

    // [dns.category] malware = "sinkhole": the warning page's addresses, per query type.
    let d = dig(gw.udp, &["dropper.malware.example", "A"]);
    assert!(
        d.status == "NOERROR" && d.answer_data("A") == ["127.0.0.1"],
        "sinkhole A\n{}",
        d.text
    );
    assert!(d.answer[0].ttl <= 60, "answer_ttl 60\n{}", d.text);
    let d = dig(gw.udp, &["c2.malware.example", "AAAA"]);
    assert!(
        d.status == "NOERROR" && d.answer_data("AAAA") == ["::1"],
        "sinkhole AAAA\n{}",
        d.text
    );
    assert_nodata(
        &dig(gw.udp, &["dropper.malware.example", "MX"]),
        "sinkhole, MX",
    );

    // RPZ actions (carrier.rpz) win over the configured policies.
    assert_nxdomain(&dig(gw.udp, &["loan-fast.example", "A"]), "RPZ CNAME .");
    assert_nxdomain(
        &dig(gw.udp, &["www.loan-fast.example", "A"]),
        "RPZ *. CNAME .",
    );
    assert_nodata(&dig(gw.udp, &["brush-orders.test", "A"]), "RPZ CNAME *.");
    let d = dig(gw.udp, &["prize-claim.example", "A"]);
    assert!(
        d.status == "NOERROR" && d.answer_data("CNAME") == ["warning.carrier.example."],
        "RPZ CNAME to a walled garden\n{}",
        d.text
    );
    let d = dig(gw.udp, &["lottery-win.example", "A"]);
    assert!(
        d.status == "NOERROR" && d.answer_data("A") == ["192.0.2.10"],
        "RPZ local data\n{}",
        d.text
    );
    assert_forwarded(
        &dig(gw.udp, &["partner.loan-fast.example", "A"]),
        "RPZ rpz-passthru.",
    );

    // Only the passthru name went upstream (the CNAME target is not chased either).
    assert_eq!(up.names(), ["partner.loan-fast.example"]);
    let text = wait_sample(&gw, "dragnet_dns_queries_total", &[], 9);
    assert_eq!(verdicts(&text, "block", "malware"), 3, "{text}");
    // NXDOMAIN/NODATA triggers are blocks; the rewrites (CNAME, local data) are warnings.
    assert_eq!(verdicts(&text, "block", "fraud"), 3, "{text}");
    assert_eq!(verdicts(&text, "warn", "fraud"), 2, "{text}");
    assert_eq!(verdicts(&text, "allow", "fraud"), 1, "{text}");
    assert_eq!(
        sample(&text, "dragnet_dns_forwarded_total", &[]),
        1,
        "{text}"
    );
    drop(procs);

    // block = "refused" for what has no category policy (malware here), phishing dropped.
    let mut procs = Procs::default();
    let gw = start_gateway(
        &dir,
        &config(up.addr, r#"block = "refused""#, r#"phishing = "drop""#, ""),
        &mut procs,
    );
    let d = dig(gw.udp, &["dropper.malware.example", "A"]);
    assert!(
        d.status == "REFUSED" && d.answer.is_empty(),
        "block = refused\n{}",
        d.text
    );
    let d = dig(gw.udp, &["evil.example", "A", "+time=1"]);
    assert!(
        d.timed_out && d.status.is_empty(),
        "phishing = drop: no answer at all\n{}",
        d.text
    );
    // The RPZ rule's own action still wins over block = "refused".
    assert_nxdomain(&dig(gw.udp, &["loan-fast.example", "A"]), "RPZ over block");
    let text = wait_sample(&gw, "dragnet_dns_dropped_total", &[], 1);
    assert_eq!(sample(&text, "dragnet_dns_dropped_total", &[]), 1, "{text}");
    assert_eq!(answers(&text, "refused"), 1, "{text}");
    drop(procs);

    // block = "cname": a CNAME to the walled garden, for any query type.
    let mut procs = Procs::default();
    let gw = start_gateway(
        &dir,
        &config(up.addr, "block = \"cname\"\ncname = \"wg.example\"", "", ""),
        &mut procs,
    );
    for qtype in ["A", "AAAA"] {
        let d = dig(gw.udp, &["evil.example", qtype]);
        assert!(
            d.status == "NOERROR"
                && d.answer_data("CNAME") == ["wg.example."]
                && d.answer.len() == 1
                && d.answer[0].name == "evil.example.",
            "block = cname, {qtype}\n{}",
            d.text
        );
    }
    assert_eq!(
        up.count(),
        1,
        "nothing more went upstream: {:?}",
        up.names()
    );
    finish(procs, up, &dir);
}

#[test]
fn tcp_truncation_timeout_and_cache() {
    let _one = serial();
    if dig_missing("tcp_truncation_timeout_and_cache") {
        return;
    }
    let dir = tmpdir("transport");
    let up = Upstream::start();
    let mut procs = Procs::default();
    let gw = start_gateway(
        &dir,
        &config(up.addr, "timeout_ms = 300", MALWARE_SINKHOLE, ""),
        &mut procs,
    );

    // DNS over TCP (RFC 7766): a forwarded and a blocked name.
    let d = dig(gw.tcp, &["+tcp", "tcp-forwarded.test", "A"]);
    assert_forwarded(&d, "over TCP");
    assert!(d.server.contains("(TCP)"), "{}", d.text);
    let d = dig(gw.tcp, &["+tcp", "evil.example", "A"]);
    assert_nxdomain(&d, "over TCP");
    assert!(d.server.contains("(TCP)"), "{}", d.text);

    // A truncated upstream answer is fetched again over TCP by the gateway; the client gets
    // all 40 records over UDP (+ignore: dig would otherwise retry over TCP itself).
    let d = dig(gw.udp, &["+bufsize=4096", "+ignore", "big.test", "A"]);
    let mut got: Vec<&str> = d.answer_data("A");
    got.sort();
    let mut want: Vec<String> = (1..=40).map(|n| format!("192.0.2.{n}")).collect();
    want.sort();
    assert!(
        d.status == "NOERROR" && !d.has_flag("tc") && got == want && d.server.contains("(UDP)"),
        "40 records over UDP after the gateway's TCP retry\n{}",
        d.text
    );
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1, "{:?}", up.names());

    // An upstream that never answers: SERVFAIL after timeout_ms, well before dig gives up.
    let d = dig(gw.udp, &["+time=3", "never.slow.test", "A"]);
    assert!(
        d.status == "SERVFAIL" && d.answer.is_empty(),
        "upstream timeout\n{}",
        d.text
    );

    // The packet cache: the second query is answered without the upstream.
    let before = up.count();
    let first = dig(gw.udp, &["cached.test", "A"]);
    let second = dig(gw.udp, &["cached.test", "A"]);
    assert_forwarded(&first, "cached.test, first");
    assert_forwarded(&second, "cached.test, second");
    assert!(
        first.answer[0].ttl <= 300 && second.answer[0].ttl <= 300,
        "TTLs\n{}\n{}",
        first.text,
        second.text
    );
    assert_eq!(up.count(), before + 1, "{:?}", up.names());
    // The same name in other letters: the cached answer, with the client's own case
    // (RFC 4343 §4.1; 0x20-randomising clients depend on it).
    let third = dig(gw.udp, &["CACHED.Test", "A"]);
    assert!(
        third.status == "NOERROR"
            && third.answer.len() == 1
            && third.answer[0].name == "CACHED.Test."
            && third.answer[0].data == "192.0.2.1",
        "cached answer in the client's case\n{}",
        third.text
    );
    assert_eq!(up.count(), before + 1, "{:?}", up.names());

    // Over TCP from the client: the truncation retry and the timeout take the other path.
    let d = dig(gw.tcp, &["+tcp", "tcp.big.test", "A"]);
    assert!(
        d.status == "NOERROR" && d.answer_data("A").len() == 40,
        "40 records over TCP\n{}",
        d.text
    );
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 2, "{:?}", up.names());
    let d = dig(gw.tcp, &["+tcp", "+time=3", "tcp.slow.test", "A"]);
    assert!(
        d.status == "SERVFAIL" && d.answer.is_empty(),
        "upstream timeout over TCP\n{}",
        d.text
    );

    let text = wait_sample(&gw, "dragnet_dns_cache_hits_total", &[], 2);
    assert_eq!(
        sample(&text, "dragnet_dns_cache_hits_total", &[]),
        2,
        "{text}"
    );
    assert!(
        sample(&text, "dragnet_dns_tcp_retries_total", &[]) >= 1,
        "{text}"
    );
    assert_eq!(
        sample(&text, "dragnet_dns_upstream_timeouts_total", &[]),
        1,
        "{text}"
    );
    assert_eq!(answers(&text, "servfail"), 2, "{text}");
    finish(procs, up, &dir);
}

#[test]
fn bad_input_unknown_clients_and_floods_are_refused() {
    let _one = serial();
    if dig_missing("bad_input_unknown_clients_and_floods_are_refused") {
        return;
    }
    let dir = tmpdir("input");
    let up = Upstream::start();
    let mut procs = Procs::default();
    let gw = start_gateway(
        &dir,
        &config(
            up.addr,
            "allow = [\"127.0.0.2/32\"]\nrate_limit = 5",
            "",
            "",
        ),
        &mut procs,
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];

    // A header claiming two questions, then garbage: FORMERR with our ID (RFC 1035 §4.1.1).
    let mut bad = vec![0xbe, 0xef, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0xff, 0x13, 0x37, 0x00, 0x42]);
    sock.send_to(&bad, gw.udp).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let h = Header::read(&buf[..n]).unwrap();
    assert!(
        h.id == 0xbeef && h.flags & FLAG_QR != 0 && h.rcode() == 1,
        "FORMERR expected: {h:?} {:02x?}",
        &buf[..n]
    );

    // Five bytes: not even a header, so no answer. A well-formed query sent after it is the
    // first thing that comes back (one worker, in order): had the five bytes been answered,
    // that answer would have come first.
    sock.send_to(&[1, 2, 3, 4, 5], gw.udp).unwrap();
    sock.send_to(&query_bytes(0x5151, "after.test", TYPE_A), gw.udp)
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let h = Header::read(&buf[..n]).unwrap();
    // From 127.0.0.1, outside allow: REFUSED (no open resolver).
    assert!(
        h.id == 0x5151 && h.rcode() == 5,
        "the first reply after the 5-byte datagram: {h:?}"
    );

    // dig from 127.0.0.1 is refused; from 127.0.0.2 (in allow) it is served.
    let d = dig(gw.udp, &["allowed.test", "A"]);
    assert!(
        d.status == "REFUSED" && d.answer.is_empty(),
        "client outside allow\n{}",
        d.text
    );
    assert_forwarded(
        &dig(gw.udp, &["-b", "127.0.0.2", "allowed.test", "A"]),
        "from 127.0.0.2",
    );

    // rate_limit = 5 per second per client: a burst of 20 from 127.0.0.2 (within at most two
    // seconds, so one second holds at least 10) gets some REFUSED.
    let flood = UdpSocket::bind("127.0.0.2:0").unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for i in 0..20u16 {
        flood
            .send_to(&query_bytes(0x7000 + i, "evil.example", TYPE_A), gw.udp)
            .unwrap();
    }
    let mut by_id = BTreeMap::new();
    while by_id.len() < 20 {
        let n = flood
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("only {} replies to the burst: {e}", by_id.len()));
        let h = Header::read(&buf[..n]).unwrap();
        by_id.insert(h.id, h.rcode());
    }
    let refused = by_id.values().filter(|&&r| r == 5).count();
    assert!(
        refused >= 1 && by_id.values().all(|&r| r == 5 || r == 3),
        "burst rcodes (3 = NXDOMAIN, 5 = REFUSED): {by_id:?}"
    );

    let text = wait_sample(&gw, "dragnet_dns_malformed_total", &[], 2);
    assert_eq!(
        sample(&text, "dragnet_dns_malformed_total", &[]),
        2,
        "{text}"
    );
    assert_eq!(answers(&text, "formerr"), 1, "{text}");
    assert_eq!(
        sample(&text, "dragnet_dns_refused_clients_total", &[]),
        2,
        "{text}"
    );
    let limited = sample(&text, "dragnet_dns_rate_limited_total", &[]);
    assert!(limited >= 1 && limited == refused as u64, "{text}");
    // Refused clients never reach the upstream; the one allowed query did.
    assert_eq!(up.names(), ["allowed.test"]);
    finish(procs, up, &dir);
}

#[test]
fn sighup_reload_under_load_answers_every_query_once() {
    let _one = serial();
    if dig_missing("sighup_reload_under_load_answers_every_query_once") {
        return;
    }
    let dir = tmpdir("reload");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules/rules.toml");
    let snap = dir.join("rules.snap");
    let compile = |out: &Path, version: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_dragnet"))
            .args(["rules", "compile"])
            .arg(&manifest)
            .arg("-o")
            .arg(out)
            .args(["--ruleset-version", version])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dragnet rules compile: {:?}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    compile(&snap, "1");
    let up = Upstream::start();
    let mut procs = Procs::default();
    let rules = format!("snapshot = {:?}", snap.display().to_string());
    let gw = start_gateway(
        &dir,
        &config(up.addr, "", MALWARE_SINKHOLE, &rules),
        &mut procs,
    );

    const TOTAL: u16 = 2000;
    const WINDOW: usize = 32;
    let blocked = ["evil.example", "x.refund-center.test", "loan-fast.example"];
    let name_of = |i: u16| -> (String, bool) {
        match i % 4 {
            0 => (
                blocked[usize::from(i / 4) % blocked.len()].to_string(),
                true,
            ),
            1 => (format!("n{i}.load.test"), false), // a cache miss each time
            _ => ("www.load.test".to_string(), false), // cache hits
        }
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    // id → replies (rcode, ancount) received.
    let mut got: BTreeMap<u16, Vec<(u16, u16)>> = BTreeMap::new();
    let mut received = 0usize;
    let mut recv_one = |got: &mut BTreeMap<u16, Vec<(u16, u16)>>| {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("a reply did not come ({e}); {received} so far"));
        let h = Header::read(&buf[..n]).unwrap();
        got.entry(h.id).or_default().push((h.rcode(), h.ancount));
        received += 1;
    };
    let mut reload: Option<JoinHandle<()>> = None;
    let mut in_flight = 0usize;
    for i in 0..TOTAL {
        // A steady pace: at most WINDOW queries outstanding, the next sent as one is answered.
        while in_flight >= WINDOW {
            recv_one(&mut got);
            in_flight -= 1;
        }
        if i == 500 {
            // Recompile to the same path (write aside, rename over: the gateway never reads
            // half a file), then SIGHUP, while the load goes on.
            let (snap, tmp, pid) = (snap.clone(), dir.join("rules.snap.tmp"), gw.pid);
            let manifest = manifest.clone();
            reload = Some(std::thread::spawn(move || {
                let o = Command::new(env!("CARGO_BIN_EXE_dragnet"))
                    .args(["rules", "compile"])
                    .arg(&manifest)
                    .arg("-o")
                    .arg(&tmp)
                    .args(["--ruleset-version", "2"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(o.status.success(), "recompile: {o:?}");
                std::fs::rename(&tmp, &snap).unwrap();
                let s = Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(s.success(), "kill -HUP {pid}: {s:?}");
            }));
        }
        if i == 1500 {
            // The last quarter goes to the new snapshot: wait (with a deadline) for the swap.
            wait_sample(&gw, "dragnet_snapshot_swaps_total", &[], 1);
        }
        let (name, _) = name_of(i);
        sock.send_to(&query_bytes(i, &name, TYPE_A), gw.udp)
            .unwrap();
        in_flight += 1;
    }
    while in_flight > 0 {
        recv_one(&mut got);
        in_flight -= 1;
    }
    // A last query: any duplicate answer to the others would have come before its answer.
    sock.send_to(&query_bytes(TOTAL, "last.load.test", TYPE_A), gw.udp)
        .unwrap();
    while !got.contains_key(&TOTAL) {
        recv_one(&mut got);
    }
    reload.unwrap().join().unwrap();

    for i in 0..TOTAL {
        let (name, is_blocked) = name_of(i);
        let r = got.get(&i).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            r.len(),
            1,
            "query {i} ({name}) got {} answers: {r:?}",
            r.len()
        );
        let (rcode, ancount) = r[0];
        if is_blocked {
            assert!(
                rcode == 3 && ancount == 0,
                "query {i} ({name}): blocked, expected NXDOMAIN, got rcode {rcode}"
            );
        } else {
            assert!(
                rcode == 0 && ancount == 1,
                "query {i} ({name}): forwarded, got rcode {rcode} with {ancount} answers"
            );
        }
    }
    assert_eq!(
        got.len(),
        usize::from(TOTAL) + 1,
        "answers to IDs never sent"
    );
    up.assert_never_saw(&blocked);

    let text = wait_sample(&gw, "dragnet_snapshot_swaps_total", &[], 1);
    assert_eq!(sample(&text, "dragnet_snapshot_version", &[]), 2, "{text}");
    assert_eq!(
        verdicts(&text, "block", "phishing") + verdicts(&text, "block", "fraud"),
        u64::from(TOTAL / 4),
        "{text}"
    );
    finish(procs, up, &dir);
}
