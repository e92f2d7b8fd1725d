//! End-to-end tests of the `dragnet` binary: the real executable, real files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn dragnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dragnet"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = dragnet(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "dragnet {args:?} failed:\n{out}\n{err}");
    out.into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = dragnet(args);
    assert!(!o.status.success(), "dragnet {args:?} should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for one test: removed when the test passes, kept (for a look)
/// when it fails.
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tmpdir(name: &str) -> TmpDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "dragnet-cli-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/rules/rules.toml")
        .display()
        .to_string()
}

fn line_for<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn example_rule_set_gives_the_right_verdicts() {
    let d = tmpdir("examples");
    let snap = d.join("example.dnr").display().to_string();
    ok(&["rules", "compile", &examples(), "-o", &snap]);
    let out = ok(&[
        "rules",
        "check",
        &snap,
        "--number",
        "+8613800138000",
        "--caller",
        "+8617055550000",
        "--domain",
        "evil.example",
        "--domain",
        "login.secure.evil.example",
        "--domain",
        "notevil.example",
        "--url",
        "https://shop.example/pay/confirm/step2?o=1",
        "--message",
        "您的账户存在风险，请转入安全账户",
    ]);
    assert!(
        line_for(&out, "number as callee +8613800138000").contains("BLOCK by rule cn-fraud-0001"),
        "{out}"
    );
    assert!(
        line_for(&out, "call +8617055550000").contains("TAG"),
        "{out}"
    );
    assert!(
        line_for(&out, "domain evil.example:").contains("BLOCK"),
        "{out}"
    );
    assert!(
        line_for(&out, "domain login.secure.evil.example").contains("BLOCK"),
        "{out}"
    );
    assert!(
        line_for(&out, "domain notevil.example").contains("ALLOW (no rule matched)"),
        "{out}"
    );
    assert!(
        line_for(&out, "url https://shop.example").contains("BLOCK"),
        "{out}"
    );
    assert!(line_for(&out, "message").contains("WARN"), "{out}");
    // The embedded defaults give the same answers without any file.
    let emb = ok(&[
        "check",
        "--number",
        "+8613800138000",
        "--domain",
        "notevil.example",
    ]);
    assert!(
        line_for(&emb, "number as callee").contains("BLOCK by rule cn-fraud-0001"),
        "{emb}"
    );
    assert!(
        line_for(&emb, "domain notevil.example").contains("ALLOW"),
        "{emb}"
    );
    // JSON output carries the reason.
    let j = ok(&[
        "rules",
        "check",
        &snap,
        "--json",
        "--domain",
        "a.evil.example",
    ]);
    let v: serde_json::Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
    assert_eq!(v["action"], "block");
    assert_eq!(v["rule"]["category"], "phishing");
    // Inspect reports the load.
    let i = ok(&["rules", "inspect", &snap]);
    assert!(
        i.contains("rule-set version 1") && i.contains("loaded in"),
        "{i}"
    );
}

#[test]
fn unsafe_rule_sets_are_refused_naming_the_line() {
    let d = tmpdir("refuse");
    std::fs::write(
        d.join("n.csv"),
        "number,category\n+8613800138000,fraud\n110,fraud\n",
    )
    .unwrap();
    std::fs::write(d.join("d.domains"), "evil.example\ncom\n").unwrap();
    let out = d.join("x.dnr").display().to_string();
    let err = fails(&[
        "rules",
        "compile",
        &d.join("n.csv").display().to_string(),
        "-o",
        &out,
    ]);
    assert!(
        err.contains("n.csv:3") && err.contains("protected"),
        "{err}"
    );
    let err = fails(&[
        "rules",
        "compile",
        &d.join("d.domains").display().to_string(),
        "-o",
        &out,
    ]);
    assert!(
        err.contains("d.domains:2") && err.contains("public suffix"),
        "{err}"
    );
    assert!(
        !Path::new(&out).exists(),
        "no snapshot is written for a refused set"
    );
    // A syntax error names file and line; --lenient skips and reports it.
    std::fs::write(
        d.join("bad.hosts"),
        "0.0.0.0 ok.example\nnot-an-ip bad.example\n",
    )
    .unwrap();
    let err = fails(&[
        "rules",
        "compile",
        &d.join("bad.hosts").display().to_string(),
        "-o",
        &out,
    ]);
    assert!(err.contains("bad.hosts:2"), "{err}");
    let o = dragnet(&[
        "rules",
        "compile",
        "--lenient",
        &d.join("bad.hosts").display().to_string(),
        "-o",
        &out,
    ]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("skipped")
            && String::from_utf8_lossy(&o.stderr).contains("bad.hosts:2")
    );
}

#[test]
fn damaged_snapshots_are_refused_with_a_clear_error() {
    let d = tmpdir("damaged");
    let snap = d.join("s.dnr");
    ok(&[
        "rules",
        "compile",
        &examples(),
        "-o",
        &snap.display().to_string(),
    ]);
    let bytes = std::fs::read(&snap).unwrap();
    let trunc = d.join("trunc.dnr");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["rules", "inspect", &trunc.display().to_string()]);
    assert!(
        err.contains("trunc.dnr") && err.contains("truncated"),
        "{err}"
    );
    let mut flipped = bytes.clone();
    let mid = bytes.len() - 40;
    flipped[mid] ^= 0x10;
    let flip = d.join("flip.dnr");
    std::fs::write(&flip, &flipped).unwrap();
    let err = fails(&[
        "rules",
        "check",
        &flip.display().to_string(),
        "--domain",
        "x.example",
    ]);
    assert!(err.contains("checksum mismatch"), "{err}");
    let err = fails(&[
        "rules",
        "inspect",
        &d.join("missing.dnr").display().to_string(),
    ]);
    assert!(err.contains("missing.dnr"), "{err}");
}

#[test]
fn diff_shows_what_changed() {
    let d = tmpdir("diff");
    std::fs::write(d.join("a.domains"), "one.example\ntwo.example\n").unwrap();
    std::fs::write(d.join("b.domains"), "two.example\nthree.example\n").unwrap();
    let (a, b) = (
        d.join("a.dnr").display().to_string(),
        d.join("b.dnr").display().to_string(),
    );
    ok(&[
        "rules",
        "compile",
        &d.join("a.domains").display().to_string(),
        "-o",
        &a,
        "--ruleset-version",
        "1",
    ]);
    ok(&[
        "rules",
        "compile",
        &d.join("b.domains").display().to_string(),
        "-o",
        &b,
        "--ruleset-version",
        "2",
    ]);
    let out = ok(&["rules", "diff", &a, &b]);
    assert!(out.contains("added 1, removed 1, changed 0"), "{out}");
    assert!(out.contains("+ domain-suffix three.example"), "{out}");
    assert!(out.contains("- domain-suffix one.example"), "{out}");
}

#[test]
fn a_generated_million_entry_set_compiles_and_answers_its_truth() {
    let d = tmpdir("gen");
    ok(&[
        "sim",
        "gen-rules",
        "--numbers",
        "900000",
        "--prefixes",
        "1000",
        "--domains",
        "90000",
        "--urls",
        "9000",
        "--keywords",
        "1000",
        "--seed",
        "7",
        "--out",
        &d.display().to_string(),
    ]);
    let snap = d.join("gen.dnr").display().to_string();
    ok(&[
        "rules",
        "compile",
        &d.join("rules.toml").display().to_string(),
        "-o",
        &snap,
    ]);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("truth.json")).unwrap()).unwrap();
    let first = |k: &str, sub: &str| truth[k][sub][0].as_str().unwrap().to_string();
    let out = ok(&[
        "rules",
        "check",
        &snap,
        "--callee",
        &first("positives", "numbers"),
        "--domain",
        &first("positives", "domains"),
        "--domain",
        &first("negatives", "domains"),
    ]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
    assert!(lines[0].contains("BLOCK"), "{out}");
    assert!(lines[1].contains("BLOCK"), "{out}");
    assert!(lines[2].contains("ALLOW"), "{out}");
    let i = ok(&["rules", "inspect", "--json", &snap]);
    let v: serde_json::Value = serde_json::from_str(&i).unwrap();
    assert!(v["counts"]["rules"].as_u64().unwrap() >= 1_000_000, "{i}");
}

#[test]
fn signed_snapshots_verify_only_against_their_key() {
    let d = tmpdir("signing");
    let snap = d.join("rules.snap").display().to_string();
    let ops = d.join("ops").display().to_string();
    let other = d.join("other").display().to_string();
    let out = ok(&["rules", "keygen", "--out", &ops]);
    let id = line_for(&out, "key id ")["key id ".len()..].to_string();
    assert_eq!(id.len(), 8, "{out}");
    ok(&["rules", "keygen", "--out", &other]);
    // A key is never overwritten.
    let err = fails(&["rules", "keygen", "--out", &ops]);
    assert!(err.contains("already exists"), "{err}");
    ok(&[
        "rules",
        "compile",
        &examples(),
        "-o",
        &snap,
        "--ruleset-version",
        "42",
    ]);
    let out = ok(&["rules", "sign", &snap, "--key", &format!("{ops}.key")]);
    assert!(out.contains("version 42"), "{out}");
    assert!(d.join("rules.snap.sig").exists());
    let out = ok(&[
        "rules",
        "verify",
        &snap,
        "--trusted",
        &format!("{other}.pub"),
        &format!("{ops}.pub"),
    ]);
    let line = line_for(&out, "OK ");
    assert!(line.contains("version 42"), "{out}");
    assert!(line.ends_with(&format!("signed by key id {id}")), "{out}");

    let o = dragnet(&[
        "rules",
        "verify",
        &snap,
        "--trusted",
        &format!("{other}.pub"),
    ]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("unknown key id {id}")), "{err}");

    // One changed byte after signing is caught.
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&snap, bytes).unwrap();
    let err = fails(&["rules", "verify", &snap, "--trusted", &format!("{ops}.pub")]);
    assert!(err.contains("changed since signing"), "{err}");
}

#[test]
fn config_check_names_the_bad_key_and_default_prints_the_embedded_file() {
    let out = ok(&["config", "default"]);
    assert!(
        out.contains("[control]") && out.contains("[events]"),
        "{out}"
    );
    // The printed defaults are themselves a valid configuration.
    let dir = tmpdir("config-check");
    let good = dir.join("good.toml");
    std::fs::write(&good, &out).unwrap();
    let o = ok(&["config", "check", good.to_str().unwrap()]);
    assert!(o.contains("configuration OK"), "{o}");
    // A wrong key, a bad value, and control without trusted keys: each named, exit status 2.
    for (text, key) in [
        ("[dns]\nlisten_udpp = []\n", "listen_udpp"),
        ("[admin]\nlisten = \"not an address\"\n", "admin.listen"),
        (
            "[control]\nenabled = true\nserver = \"127.0.0.1:7443\"\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n",
            "rules.trusted_keys",
        ),
    ] {
        let f = dir.join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let o = dragnet(&["config", "check", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(key), "{text:?}: {err}");
    }
}
