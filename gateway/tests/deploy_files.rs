//! The files under `deploy/` against the gateway they deploy.
//!
//! - Every metric named in a PromQL expression of the Grafana dashboard
//!   (`deploy/grafana/dragnet.json`) or of the alert rules (`deploy/prometheus/alerts.yml`) must
//!   be exported by the gateway: we build [`Metrics`] on the example engine, count one decision
//!   per plane so that the labelled families have samples, encode it, and compare names. A
//!   dashboard or an alert on a metric nobody exports shows "No data" or never fires, silently.
//! - `promtool check rules` and `promtool test rules` pass (Debian package `prometheus`), and the
//!   dashboard's expressions parse as PromQL.
//! - `systemd-analyze verify` accepts `deploy/systemd/dragnet.service`.
//! - `kubectl kustomize deploy/kubernetes` renders (offline, no cluster).
//!
//! A missing tool skips its check with a loud message on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dragnet_gateway::metrics::Metrics;
use dragnet_gateway::store::{Plane, Shadow, Store};
use dragnet_rules::Action;

/// Metrics of modules still being added (issue 8: hit events, the block-rate breaker; the
/// control plane). Each may be named before its module lands; once any of its files exists,
/// the name must be exported like every other.
const PENDING: &[(&str, &[&str])] = &[
    ("dragnet_events_emitted_total", EVENTS),
    ("dragnet_events_dropped_total", EVENTS),
    ("dragnet_events_delivered_total", EVENTS),
    ("dragnet_breaker_tripped", BREAKER),
    ("dragnet_breaker_downgraded_total", BREAKER),
    ("dragnet_control_connected", CONTROL),
    ("dragnet_control_refused_total", CONTROL),
    ("dragnet_control_applied_total", CONTROL),
];
const EVENTS: &[&str] = &["gateway/src/events/mod.rs", "gateway/src/events.rs"];
const BREAKER: &[&str] = &["gateway/src/breaker.rs", "gateway/src/breaker/mod.rs"];
const CONTROL: &[&str] = &["gateway/src/control/mod.rs", "gateway/src/control.rs"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Every sample name the gateway's `/metrics` can carry: the names of the samples present, and
/// for each `# TYPE` line the names its type implies (a histogram's `_bucket`, `_sum`, `_count`;
/// a counter's `_total`).
fn exported() -> BTreeSet<String> {
    let store = Arc::new(Store::new(
        dragnet_gateway::examples::engine(0).expect("example engine"),
        0,
    ));
    {
        let active = store.load();
        for plane in Plane::ALL {
            active.count(plane, Action::Block, Some(0));
            active.count(plane, Action::Allow, None);
        }
    }
    // A candidate in shadow, so that the shadow families are encoded.
    store.set_shadow(Shadow::new(
        dragnet_gateway::examples::engine(0).expect("example engine"),
        Arc::new(Vec::new()),
        None,
        0,
    ));
    let metrics = Metrics::with_control(store);
    // Families whose labels are only known when something happens are empty until then, and an
    // empty family is not encoded at all: give each one sample.
    metrics
        .sip
        .parse_error(&dragnet_gateway::sip::ParseError::Empty);
    metrics.snapshots.applied("file");
    metrics.snapshots.refused("file");
    let control = metrics
        .control
        .as_ref()
        .expect("with_control registers the control families");
    control.refused_count("signature");
    control.offers_count(dragnet_gateway::control::proto::OfferKind::Full);
    metrics
        .events
        .delivered
        .get_or_create(&vec![("sink", "file")])
        .inc();
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                panic!("malformed TYPE line in the exposition: {line}");
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    assert!(
        names.contains("dragnet_verdicts_total") && names.contains("dragnet_snapshot_version"),
        "the exposition lacks the core families:\n{text}"
    );
    names
}

/// Identifiers (`[A-Za-z0-9_:]+`) that start with `dragnet_`: metric names. Recording-rule names
/// (`level:metric:op`) start with something else and are left alone.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("dragnet_"))
        .map(str::to_string)
        .collect()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The `expr:` values of a Prometheus rule file: plain scalars and `>-`/`|` block scalars (the
/// only forms alerts.yml uses).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let t = line.trim_start();
        if t.starts_with('#') {
            continue;
        }
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('>') || rest.starts_with('|') {
            let own = indent(line);
            let mut e = String::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > own) {
                e.push_str(lines[i].trim());
                e.push('\n');
                i += 1;
            }
            out.push(e);
        } else {
            out.push(rest.trim_matches(['\'', '"']).to_string());
        }
    }
    out
}

/// The PromQL strings of a Grafana dashboard: panel targets, annotation queries and template
/// variable queries (`expr`, `query` and `definition` keys, at any depth).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone());
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/dragnet.json"))
        .expect("deploy/grafana/dragnet.json is not valid JSON")
}

/// Names not exported, less the pending ones whose module has not landed (reported).
fn unexported(used: &BTreeSet<String>, exported: &BTreeSet<String>, what: &str) -> Vec<String> {
    let root = repo();
    let mut missing = Vec::new();
    for name in used.difference(exported) {
        match PENDING.iter().find(|(n, _)| n == name) {
            Some((_, files)) if !files.iter().any(|f| root.join(f).exists()) => {
                eprintln!(
                    "NOTE: {what} names {name}, allowed until one of {files:?} exists \
                     (its module is still being added)"
                );
            }
            _ => missing.push(name.clone()),
        }
    }
    missing
}

#[test]
fn alert_rules_name_only_exported_metrics() {
    let text = read("deploy/prometheus/alerts.yml");
    let exprs = rule_exprs(&text);
    let alerts = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(alerts >= 10, "only {alerts} alerts found in alerts.yml");
    assert_eq!(
        exprs.len(),
        alerts,
        "every alert needs exactly one expr the test can read: {exprs:#?}"
    );
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for core in [
        "dragnet_snapshot_reload_failures_total",
        "dragnet_verdicts_total",
        "dragnet_sip_overload_total",
        "dragnet_dns_answers_total",
        "dragnet_events_dropped_total",
        "dragnet_breaker_tripped",
    ] {
        assert!(used.contains(core), "no alert uses {core}");
    }
    let missing = unexported(&used, &exported(), "alerts.yml");
    assert!(
        missing.is_empty(),
        "alerts.yml uses metrics the gateway does not export: {missing:?}"
    );
}

#[test]
fn dashboard_names_only_exported_metrics() {
    let d = dashboard();
    let mut exprs = Vec::new();
    dashboard_exprs(&d, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for core in [
        "dragnet_verdicts_total",
        "dragnet_snapshot_version",
        "dragnet_snapshot_reload_failures_total",
        "dragnet_sip_screen_duration_seconds_bucket",
        "dragnet_dns_upstream_duration_seconds_bucket",
        "dragnet_events_dropped_total",
        "dragnet_breaker_tripped",
    ] {
        assert!(used.contains(core), "the dashboard has no panel on {core}");
    }
    let missing = unexported(&used, &exported(), "dragnet.json");
    assert!(
        missing.is_empty(),
        "the dashboard uses metrics the gateway does not export: {missing:?}"
    );
}

#[test]
fn dashboard_takes_its_datasource_from_a_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no `datasource` variable of type prometheus"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut queried = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = &p["title"];
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            queried += 1;
        }
    }
    assert!(queried > 20, "only {queried} queries in the dashboard");
    // Panels must not overlap on the grid (Grafana would shuffle them).
    let mut cells = BTreeSet::new();
    for p in panels {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(x + w <= 24, "panel {} is wider than the grid", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {} overlaps another",
                    p["title"]
                );
            }
        }
    }
}

fn tool(name: &str, probe_args: &str, package: &str) -> bool {
    let found = Command::new(name)
        .args(probe_args.split_whitespace())
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        // Straight to the process's stderr, past the test harness's capture of eprintln!, so
        // that a skipped check shows in every CI log, passing or not.
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n==================== SKIPPED ====================\n\
             `{name}` is not on PATH: install the Debian package `{package}`.\n\
             The check that needs it did NOT run.\n\
             =================================================\n"
        );
    }
    found
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dragnet-deploy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn promtool_accepts_the_rules_and_their_tests() {
    if !tool("promtool", "--version", "prometheus") {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    let (ok, out) = run(Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool check rules alerts.yml failed:\n{out}");
    let (ok, out) = run(Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(&dir));
    assert!(ok, "promtool test rules alerts_test.yml failed:\n{out}");
}

/// The dashboard's queries are PromQL once Grafana's variables are substituted: wrap each in a
/// recording rule and let promtool parse them.
#[test]
fn promtool_parses_the_dashboard_queries() {
    if !tool("promtool", "--version", "prometheus") {
        return;
    }
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard(), &mut exprs);
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for e in exprs.iter().filter(|e| !e.starts_with("label_values(")) {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$job", "dragnet")
            .replace("$instance", ".*");
        yaml.push_str(&format!(
            "      - record: dashboard:expr_{n}\n        expr: '{}'\n",
            e.replace('\n', " ").replace('\'', "''")
        ));
        n += 1;
    }
    assert!(n > 20, "only {n} dashboard queries");
    let dir = scratch("dashboard");
    let file = dir.join("dashboard_rules.yml");
    std::fs::write(&file, yaml).expect("write rules");
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "a dashboard query is not valid PromQL:\n{out}");
}

/// `systemd-analyze verify` on the unit. It insists that ExecStart's binary exists, which it
/// does not on a build machine (/usr/bin/dragnet is installed by the operator), so a copy of the
/// unit points at this test's own executable instead; nothing else is changed. Messages about the
/// `dragnet` user or group not existing are tolerated: that account is created at install time
/// by dragnet.sysusers.conf, not on the machine that runs the tests.
#[test]
fn systemd_analyze_verifies_the_unit() {
    if !tool("systemd-analyze", "--version", "systemd") {
        return;
    }
    let unit = read("deploy/systemd/dragnet.service");
    for must in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=dragnet",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == must),
            "dragnet.service lacks `{must}`"
        );
    }
    let exe = std::env::current_exe().expect("test executable");
    let dir = scratch("systemd");
    let copy = dir.join("dragnet.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/dragnet", &exe.to_string_lossy()),
    )
    .expect("write unit");
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let _ = std::fs::remove_dir_all(&dir);
    let tolerated = |l: &str| {
        let l = l.to_ascii_lowercase();
        (l.contains("user") || l.contains("group"))
            && (l.contains("not exist") || l.contains("unknown") || l.contains("failed to resolve"))
    };
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty() && !tolerated(l))
        .collect();
    assert!(
        bad.is_empty() && (ok || !out.trim().is_empty()),
        "systemd-analyze verify dragnet.service:\n{out}"
    );
    for l in out.lines().filter(|l| tolerated(l)) {
        eprintln!("tolerated (the account is made at install time): {l}");
    }
}

/// The plain Kubernetes manifests render offline (`kubectl kustomize` needs no cluster) into the
/// objects the deployment needs.
#[test]
fn kubectl_renders_the_kustomization() {
    if !tool("kubectl", "version --client", "kubernetes-client") {
        return;
    }
    let (ok, out) = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes")));
    assert!(ok, "kubectl kustomize deploy/kubernetes failed:\n{out}");
    for must in [
        "kind: DaemonSet",
        "kind: ConfigMap",
        "kind: Service",
        "hostNetwork: true",
        "dnsPolicy: ClusterFirstWithHostNet",
        "readOnlyRootFilesystem: true",
        "path: /readyz",
        "path: /healthz",
    ] {
        assert!(
            out.contains(must),
            "rendered manifests lack `{must}`:\n{out}"
        );
    }
}
