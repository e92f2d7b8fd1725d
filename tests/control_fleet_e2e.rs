//! End-to-end: the control plane with the real binaries on loopback (issue 6). One rules server
//! (`dragnet rules serve`), two gateways (`dragnet run` with `[control]`), a maintainer
//! (`dragnet rules publish|fleet`), lab certificates from `dragnet rules certs`:
//! - publish v2 → both gateways run it (`/v1/status` and `/metrics` say so);
//! - publish v3 (one fraud number more) → offered as a delta, applied, and the gateways block
//!   the new number;
//! - a corrupt body, a signature by an untrusted key, an older version → refused by both
//!   gateways, v3 kept, the reason in `dragnet rules fleet` and in
//!   `dragnet_control_refused_total{reason}`;
//! - a maintainer certificate from another CA, and a gateway's certificate trying to publish →
//!   refused by the server;
//! - a gateway restarted while the server still offers the refused version comes back on its
//!   last-good v3.
//!
//! Every wait is a condition polled with a deadline.
#![allow(clippy::unwrap_used)]

mod common;
use common::{dragnet, ok, read, sample, scrape, serial, tail, tmpdir, Gateway, Procs};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Compiles `rules` (a manifest) as `version` and signs it with `key`.
fn snapshot(dir: &Path, rules: &Path, version: u64, key: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.snap"));
    ok(&dragnet(&[
        "rules",
        "compile",
        p(rules),
        "-o",
        p(&out),
        "--ruleset-version",
        &version.to_string(),
    ]));
    ok(&dragnet(&["rules", "sign", p(&out), "--key", p(key)]));
    out
}

/// Polls `f` every 20 ms until it holds; panics after 20 s with `what` and the last state.
fn wait_until(what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if Instant::now() > end => panic!("{what}: not within 20 s; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn status(gw: &Gateway) -> serde_json::Value {
    common::status(gw.admin)
}

fn runs(gw: &Gateway, version: u64) -> Result<(), String> {
    let s = status(gw);
    if s["snapshot"]["version"] == version {
        Ok(())
    } else {
        Err(s.to_string())
    }
}

fn check_call(gw: &Gateway, caller: &str) -> serde_json::Value {
    let body = format!(r#"{{"caller":"{caller}","callee":"+8601012345678"}}"#);
    let (code, text) = dragnet_gateway::admin::request(
        &gw.admin.to_string(),
        "POST",
        "/v1/check/call",
        None,
        &[("Content-Type", "application/json".into())],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Starts `dragnet rules serve` and returns its QUIC address (read from its stdout).
fn start_server(dir: &Path, pki: &Path, procs: &mut Procs) -> (SocketAddr, PathBuf) {
    let stderr = dir.join("server.stderr");
    let (store, cert, ca, maintainer) = (
        dir.join("store"),
        pki.join("server.pem"),
        pki.join("ca.pem"),
        pki.join("maintainer.pem"),
    );
    let args: Vec<&std::ffi::OsStr> = vec![
        "rules".as_ref(),
        "serve".as_ref(),
        "--dir".as_ref(),
        store.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--cert".as_ref(),
        cert.as_os_str(),
        "--client-ca".as_ref(),
        ca.as_os_str(),
        "--maintainer".as_ref(),
        maintainer.as_os_str(),
    ];
    let (_, rx) = common::spawn_dragnet(&args, &stderr, procs);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("rules serve: no address ({e:?})\n{}", tail(&stderr, 30)));
        if let Some(rest) = line.strip_prefix("rules server listening on ") {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (addr, stderr);
        }
    }
}

fn gateway_toml(
    dir: &Path,
    pki: &Path,
    n: usize,
    server: SocketAddr,
    v1: &Path,
    public: &Path,
) -> String {
    format!(
        r#"
[rules]
snapshot = "{snap}"
trusted_keys = ["{public}"]
state_dir = "{state}"
[admin]
listen = "127.0.0.1:0"
[sip]
enabled = false
[dns]
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
upstreams = ["127.0.0.1:9"]
[web.http]
enabled = false
[control]
enabled = true
server = "{server}"
server_name = "localhost"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
name = "gw-{n}"
backoff_min_ms = 50
backoff_max_ms = 500
"#,
        snap = v1.display(),
        public = public.display(),
        state = dir.join("state").display(),
        ca = pki.join("ca.pem").display(),
        cert = pki.join(format!("gateway-{n}.pem")).display(),
        key = pki.join(format!("gateway-{n}.key")).display(),
    )
}

/// `dragnet rules publish` as the lab maintainer (or with `cert` instead).
fn publish(pki: &Path, server: SocketAddr, snap: &Path, cert: Option<&Path>) -> Output {
    let default = pki.join("maintainer.pem");
    let cert = cert.unwrap_or(&default);
    dragnet(&[
        "rules",
        "publish",
        p(snap),
        "--server",
        &server.to_string(),
        "--ca",
        p(&pki.join("ca.pem")),
        "--cert",
        p(cert),
    ])
}

fn fleet(server: SocketAddr, ca: &Path, cert: &Path) -> Output {
    dragnet(&[
        "rules",
        "fleet",
        "--json",
        "--server",
        &server.to_string(),
        "--ca",
        p(ca),
        "--cert",
        p(cert),
    ])
}

fn fleet_rows(pki: &Path, server: SocketAddr) -> Vec<serde_json::Value> {
    let o = fleet(server, &pki.join("ca.pem"), &pki.join("maintainer.pem"));
    serde_json::from_str(&ok(&o)).unwrap()
}

#[test]
fn a_fleet_of_two_follows_the_rules_server_and_refuses_bad_snapshots() {
    let _g = serial();
    let dir = tmpdir("control-e2e", "fleet");
    let pki = dir.join("pki");
    ok(&dragnet(&[
        "rules",
        "certs",
        "--out",
        p(&pki),
        "--gateways",
        "2",
        "--san",
        "localhost",
    ]));
    let ops = dir.join("ops");
    ok(&dragnet(&["rules", "keygen", "--out", p(&ops)]));
    let (key, public) = (ops.with_extension("key"), ops.with_extension("pub"));
    let rogue = dir.join("rogue");
    ok(&dragnet(&["rules", "keygen", "--out", p(&rogue)]));

    let manifest = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rules/rules.toml"
    ));
    let v1 = snapshot(&dir, manifest, 1, &key, "v1");
    let v2 = snapshot(&dir, manifest, 2, &key, "v2");
    // v3: the example set plus one fraud number.
    let rules3 = dir.join("rules3");
    std::fs::create_dir_all(&rules3).unwrap();
    for e in std::fs::read_dir(manifest.parent().unwrap()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), rules3.join(e.file_name())).unwrap();
    }
    let mut csv = std::fs::read_to_string(rules3.join("numbers.csv")).unwrap();
    csv.push_str("e2e-control-3,+8613912345678,number,block,fraud,both,,,added in v3\n");
    std::fs::write(rules3.join("numbers.csv"), csv).unwrap();
    let v3 = snapshot(&dir, &rules3.join("rules.toml"), 3, &key, "v3");

    let mut procs = Procs::default();
    let (server, server_log) = start_server(&dir, &pki, &mut procs);
    let mut gws = Vec::new();
    for n in 1..=2 {
        let gdir = dir.join(format!("gw{n}"));
        std::fs::create_dir_all(&gdir).unwrap();
        let toml = gateway_toml(&gdir, &pki, n, server, &v1, &public);
        gws.push(common::start_gateway(&gdir, &toml, &mut procs, "dns"));
    }
    for gw in &gws {
        common::wait_sample(gw, "dragnet_control_connected", &[], 1);
        assert_eq!(status(gw)["snapshot"]["version"], 1);
    }

    // v2: both run it, installed from the server.
    let out = ok(&publish(&pki, server, &v2, None));
    assert!(out.contains("version 2"), "{out}");
    for gw in &gws {
        wait_until("v2 on a gateway", || runs(gw, 2));
        let s = status(gw);
        assert_eq!(s["snapshot"]["origin"], "server", "{s}");
        assert_eq!(s["control"]["connected"], true, "{s}");
        assert_eq!(s["control"]["applied"], 1, "{s}");
        let m = scrape(gw.admin);
        assert_eq!(sample(&m, "dragnet_snapshot_version", &[]), 2, "{m}");
        assert_eq!(sample(&m, "dragnet_control_applied_total", &[]), 1, "{m}");
    }
    assert_eq!(check_call(&gws[0], "+8613912345678")["action"], "allow");

    // v3 as a delta against v2: applied, and the new number is blocked.
    ok(&publish(&pki, server, &v3, None));
    for gw in &gws {
        wait_until("v3 on a gateway", || runs(gw, 3));
        let m = scrape(gw.admin);
        assert_eq!(
            sample(&m, "dragnet_control_offers_total", &[("kind", "delta")]),
            1,
            "v3 should have come as a delta\n{m}"
        );
        let v = check_call(gw, "+8613912345678");
        assert_eq!(v["action"], "block", "{v}");
        assert_eq!(v["rule"], "e2e-control-3", "{v}");
    }
    wait_until("fleet shows v3 everywhere", || {
        let rows = fleet_rows(&pki, server);
        let good = rows.len() == 2
            && rows
                .iter()
                .all(|r| r["version"] == 3 && r["connected"] == true && r["last_error"].is_null());
        if good {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });

    // Refusals: each keeps v3 on both gateways, counted by reason, visible in the fleet table.
    let bad = |name: &str, bytes: Vec<u8>, sig: String| -> PathBuf {
        let f = dir.join(format!("{name}.snap"));
        std::fs::write(&f, bytes).unwrap();
        std::fs::write(dragnet_gateway::signing::sig_path(&f), sig).unwrap();
        f
    };
    let v4 = snapshot(&dir, manifest, 4, &key, "v4");
    let mut corrupt = std::fs::read(&v4).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let v4_sig = std::fs::read_to_string(dragnet_gateway::signing::sig_path(&v4)).unwrap();
    let corrupt = bad("corrupt", corrupt, v4_sig);
    let v5 = snapshot(&dir, manifest, 5, &rogue.with_extension("key"), "v5-rogue");
    let cases: [(&Path, &str, &str); 3] = [
        (&corrupt, "integrity", "changed since signing"),
        (&v5, "signature", "unknown key id"),
        (&v1, "version", "not newer"),
    ];
    for (snap, reason, words) in cases {
        ok(&publish(&pki, server, snap, None));
        for gw in &gws {
            common::wait_sample(
                gw,
                "dragnet_control_refused_total",
                &[("reason", reason)],
                1,
            );
            assert_eq!(status(gw)["snapshot"]["version"], 3);
        }
        wait_until("the fleet names the refusal", || {
            let rows = fleet_rows(&pki, server);
            let all = rows.iter().all(|r| {
                r["version"] == 3 && r["last_error"].as_str().is_some_and(|e| e.contains(words))
            });
            if all && rows.len() == 2 {
                Ok(())
            } else {
                Err(format!("{rows:?}"))
            }
        });
    }
    assert!(
        read(&gws[0].stderr).contains("snapshot refused; the running one stays"),
        "{}",
        tail(&gws[0].stderr, 20)
    );

    // Credentials: a maintainer from another CA is refused in the handshake; a gateway's
    // certificate is a valid client but not a maintainer.
    let other = dir.join("other-pki");
    ok(&dragnet(&[
        "rules",
        "certs",
        "--out",
        p(&other),
        "--gateways",
        "1",
    ]));
    let o = fleet(server, &pki.join("ca.pem"), &other.join("maintainer.pem"));
    assert!(
        !o.status.success(),
        "a foreign certificate read the fleet: {o:?}"
    );
    let o = publish(&pki, server, &v4, Some(&pki.join("gateway-1.pem")));
    assert!(
        !o.status.success(),
        "a gateway certificate published: {o:?}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("maintainer"), "{err}");
    for gw in &gws {
        assert_eq!(status(gw)["snapshot"]["version"], 3);
    }

    // Restart gateway 1: its configured file is v1 and the server offers the (refused) v1, yet it
    // runs its last-good v3.
    let pid = gws[0].pid;
    let child = procs.0.iter_mut().find(|c| c.id() == pid).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let gdir = dir.join("gw1");
    let toml = gateway_toml(&gdir, &pki, 1, server, &v1, &public);
    let gw = common::start_gateway(&gdir, &toml, &mut procs, "dns");
    let s = status(&gw);
    assert_eq!(s["snapshot"]["version"], 3, "{s}");
    assert_eq!(s["snapshot"]["origin"], "last-good", "{s}");
    common::wait_sample(&gw, "dragnet_control_connected", &[], 1);
    common::wait_sample(
        &gw,
        "dragnet_control_refused_total",
        &[("reason", "version")],
        1,
    );
    assert_eq!(status(&gw)["snapshot"]["version"], 3);
    assert!(
        read(&server_log).contains("gw-1"),
        "the server logs its subscribers\n{}",
        tail(&server_log, 20)
    );
    drop(procs);
    std::fs::remove_dir_all(&dir).unwrap();
}
