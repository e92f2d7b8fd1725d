//! End-to-end: the real `dragnet` binary pushes signed snapshots to a running `dragnet run`
//! over its admin API (`dragnet rules push`), and the gateway verifies, installs, persists and
//! refuses them as the control plane requires (issue 6):
//! - a newer signed snapshot is installed and `/v1/status` says where it came from;
//! - an older one is refused (anti-rollback) and counted; a signed rollback order lets it in once,
//!   with an audit line in the log;
//! - a gateway killed with SIGKILL in the middle of a transfer restarts on its last-good snapshot
//!   (not on the older configured file);
//! - without the bearer token nothing changes.
#![allow(clippy::unwrap_used)]

mod common;
use common::{dragnet, ok, read, serial, status, tmpdir, Procs};

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Compiles the example rule set as `version` and signs it.
fn snapshot(dir: &Path, version: u64, key: &Path) -> PathBuf {
    let p = dir.join(format!("v{version}.snap"));
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules/rules.toml");
    ok(&dragnet(&[
        "rules",
        "compile",
        manifest,
        "-o",
        p.to_str().unwrap(),
        "--ruleset-version",
        &version.to_string(),
    ]));
    ok(&dragnet(&[
        "rules",
        "sign",
        p.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]));
    p
}

fn push(snap: &Path, admin: SocketAddr, token: &Path, extra: &[&str]) -> Output {
    let admin = admin.to_string();
    let mut args = vec![
        "rules",
        "push",
        snap.to_str().unwrap(),
        "--gateway",
        &admin,
        "--token-file",
        token.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dragnet(&args)
}

#[test]
fn pushes_are_verified_persisted_and_survive_sigkill() {
    let _g = serial();
    let dir = tmpdir("push-e2e", "main");
    let key = {
        let out = dir.join("ops");
        ok(&dragnet(&[
            "rules",
            "keygen",
            "--out",
            out.to_str().unwrap(),
        ]));
        out
    };
    let (k, public) = (key.with_extension("key"), key.with_extension("pub"));
    let token = dir.join("admin.token");
    std::fs::write(&token, "e2e-token-0123456789abcdef\n").unwrap();
    let v1 = snapshot(&dir, 1, &k);
    let v2 = snapshot(&dir, 2, &k);
    let v3 = snapshot(&dir, 3, &k);
    let v4 = snapshot(&dir, 4, &k);
    let toml = format!(
        r#"
[rules]
snapshot = "{}"
trusted_keys = ["{}"]
state_dir = "{}"
[admin]
listen = "127.0.0.1:0"
token_file = "{}"
[sip]
enabled = false
[dns]
listen_udp = ["127.0.0.1:0"]
listen_tcp = ["127.0.0.1:0"]
upstreams = ["127.0.0.1:9"]
[web.http]
enabled = false
"#,
        v1.display(),
        public.display(),
        dir.join("state").display(),
        token.display()
    );
    let mut procs = Procs::default();
    let gw = common::start_gateway(&dir, &toml, &mut procs, "dns");
    let s = status(gw.admin);
    assert_eq!(s["snapshot"]["version"], 1);
    assert_eq!(s["snapshot"]["origin"], "file");

    // Newer: installed.
    let out = ok(&push(&v2, gw.admin, &token, &[]));
    assert!(out.starts_with("200"), "{out}");
    let s = status(gw.admin);
    assert_eq!(s["snapshot"]["version"], 2);
    assert_eq!(s["snapshot"]["origin"], "push");
    assert_eq!(s["snapshot"]["applied"]["push"], 1);

    // Wrong token: refused, nothing changes.
    let bad_token = dir.join("bad.token");
    std::fs::write(&bad_token, "not-the-token-0123456789").unwrap();
    let o = push(&v3, gw.admin, &bad_token, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("401"),
        "{o:?}"
    );
    assert_eq!(status(gw.admin)["snapshot"]["version"], 2);

    // Older: refused as a rollback, counted.
    let o = push(&v1, gw.admin, &token, &[]);
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("422") && text.contains("not newer"),
        "{text}"
    );
    let s = status(gw.admin);
    assert_eq!(s["snapshot"]["version"], 2);
    assert_eq!(s["snapshot"]["refused"]["push"], 1);

    // With a signed rollback order: installed once, audited.
    ok(&dragnet(&[
        "rules",
        "rollback",
        v1.to_str().unwrap(),
        "--key",
        k.to_str().unwrap(),
    ]));
    let order = dir.join("v1.snap.rollback");
    let out = ok(&push(
        &v1,
        gw.admin,
        &token,
        &["--rollback", order.to_str().unwrap()],
    ));
    assert!(out.starts_with("200"), "{out}");
    assert_eq!(status(gw.admin)["snapshot"]["version"], 1);
    assert!(
        read(&gw.stderr).contains("AUDIT: rollback"),
        "{}",
        read(&gw.stderr)
    );
    ok(&push(&v3, gw.admin, &token, &[]));
    assert_eq!(status(gw.admin)["snapshot"]["version"], 3);

    // SIGKILL in the middle of a transfer of v4: half the body sent, then the process dies.
    let body = std::fs::read(&v4).unwrap();
    let sig = std::fs::read_to_string(dragnet_gateway::signing::sig_path(&v4)).unwrap();
    let mut s = TcpStream::connect(gw.admin).unwrap();
    write!(
        s,
        "POST /v1/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer e2e-token-0123456789abcdef\r\nX-Dragnet-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        dragnet_gateway::signing::to_header(&sig),
        body.len()
    )
    .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    s.flush().unwrap();
    let child = &mut procs.0[0];
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(s);

    // Restart with the same configuration (rules.snapshot still names v1): it runs v3.
    let gw = common::start_gateway(&dir, &toml, &mut procs, "dns");
    let s = status(gw.admin);
    assert_eq!(s["snapshot"]["version"], 3, "{s}");
    assert_eq!(s["snapshot"]["origin"], "last-good");
    let (code, body) =
        dragnet_gateway::admin::request(&gw.admin.to_string(), "GET", "/readyz", None, &[], &[])
            .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("version 3"), "{body}");
    drop(procs);
    std::fs::remove_dir_all(&dir).unwrap();
}
