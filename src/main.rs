//! `dragnet`: the one command-line binary. Thin: it parses arguments and calls the crates.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dragnet_gateway::signing;
use dragnet_rules::compile::{compile_args, CompileConfig, CompileSection, Manifest, SourceArg};
use dragnet_rules::snapshot::{hex, write_snapshot};
use dragnet_rules::{Call, Engine, Fact, Match, Number, Report, Scratch, Verdict};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(
    name = "dragnet",
    version,
    about = "Carrier-grade interception gateway against telecom and online fraud"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the gateway: the SIP plane and the admin endpoints, from a configuration file or the
    /// embedded defaults (examples/dragnet.toml) on the embedded example rules.
    Run(RunArgs),
    /// Check facts against the embedded example rule set (examples/rules), or a snapshot with --rules.
    Check(CheckArgs),
    /// Compile, inspect, check, compare and sign rule sets.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// The simulator: synthetic rule sets, and traffic with ground truth against a gateway.
    #[command(subcommand)]
    Sim(SimCmd),
    /// Check a configuration file, or print the embedded defaults.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate a configuration (every key, the files it names, the snapshot it would start
    /// with) without binding anything; errors name the key and the reason. Exit status 2 on a
    /// bad configuration. Same as `dragnet run --config FILE --check`.
    Check {
        /// The file; default: the embedded examples/dragnet.toml.
        file: Option<PathBuf>,
    },
    /// Print the embedded default configuration, every key commented.
    Default,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The configuration file (TOML); default: the embedded examples/dragnet.toml.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only check the configuration (and the snapshot it names), then exit.
    #[arg(long)]
    check: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default: bool,
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// Validate, lint and compile rule sources into one snapshot file.
    Compile {
        /// Manifests (`rules.toml`) and rule files (`FORMAT:PATH`, or a path whose extension tells
        /// the format: .csv .domains .hosts .adblock .rpz .urls .keywords).
        #[arg(required = true)]
        sources: Vec<String>,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        opts: CompileOpts,
        /// Rule-set version (monotonic); default: the manifest's `version`, else the current unix time.
        #[arg(long = "ruleset-version")]
        ruleset_version: Option<u64>,
    },
    /// Validate and lint rule sources without writing a snapshot.
    Lint {
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        opts: CompileOpts,
    },
    /// Show a snapshot's header, counts and sections (and how long it took to load).
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check facts against a snapshot and print each verdict with its reason.
    Check {
        file: PathBuf,
        #[command(flatten)]
        facts: Facts,
    },
    /// Make an ed25519 signing key pair: OUT.key (PKCS#8, mode 0600) and OUT.pub (trusted by
    /// gateways through rules.trusted_keys).
    Keygen {
        /// Where to write, as DIR/NAME: NAME.key and NAME.pub are created (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a snapshot: writes SNAPSHOT.sig beside it.
    Sign {
        snapshot: PathBuf,
        /// The private key (NAME.key from `dragnet rules keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a snapshot's SNAPSHOT.sig against trusted public keys, and say what it vouches for.
    Verify {
        snapshot: PathBuf,
        /// Trusted public keys (NAME.pub); the signature must verify against one of them.
        #[arg(long, required = true, num_args = 1..)]
        trusted: Vec<PathBuf>,
    },
    /// Sign a rollback order: lets gateways install this OLDER snapshot once (anti-rollback is
    /// lifted for exactly it; each gateway logs an audit line). Writes SNAPSHOT.rollback; hand it
    /// to `dragnet rules push --rollback` or the rules server's publish.
    Rollback {
        snapshot: PathBuf,
        /// The private key (NAME.key); gateways must trust its NAME.pub.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the order (default SNAPSHOT.rollback).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Push a signed snapshot straight to one gateway's admin API (small sites; a fleet uses the
    /// rules server). Sends SNAPSHOT with SNAPSHOT.sig.
    Push {
        snapshot: PathBuf,
        /// The gateway's admin listener, ip:port.
        #[arg(long)]
        gateway: String,
        /// File holding the gateway's admin bearer token (admin.token_file).
        #[arg(long)]
        token_file: PathBuf,
        /// A rollback order (from `dragnet rules rollback`) to install an older snapshot.
        #[arg(long)]
        rollback: Option<PathBuf>,
        /// Run it in shadow beside the active snapshot instead of installing it.
        #[arg(long)]
        shadow: bool,
    },
    /// Make a private CA and leaf certificates for a LAB (never production): ca.pem, server.pem,
    /// gateway-1..N.pem and maintainer.pem, each with its .key (mode 0600).
    Certs {
        /// Directory to write to (created; existing files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// How many gateway client certificates.
        #[arg(long, default_value_t = 2)]
        gateways: usize,
        /// Names (DNS names or IP addresses) the server's certificate carries (repeatable).
        #[arg(long = "san", default_values_t = [String::from("localhost"), String::from("127.0.0.1")])]
        sans: Vec<String>,
    },
    /// Run the rules server: keeps published snapshots content-addressed in --dir (survives
    /// restarts) and pushes the current one to every subscribed gateway over QUIC with mutual TLS.
    Serve {
        /// The store directory (DIR/objects/<sha256>, DIR/published.json); created if missing.
        #[arg(long)]
        dir: PathBuf,
        /// UDP address for QUIC.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: std::net::SocketAddr,
        /// The server's certificate chain (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM); default: the certificate's path with .key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// CA certificate(s) every client (gateway or maintainer) certificate must chain to.
        #[arg(long)]
        client_ca: PathBuf,
        /// A maintainer's certificate (PEM), pinned by its SHA-256: only these may publish and
        /// read the fleet (repeatable, at least one).
        #[arg(long = "maintainer", required = true)]
        maintainers: Vec<PathBuf>,
        /// Serve Prometheus metrics (GET /metrics) on this TCP address.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Publish a signed snapshot (SNAPSHOT with SNAPSHOT.sig) to the rules server, which pushes it
    /// to the fleet; with --rollback, an older snapshot with its signed rollback order.
    Publish {
        snapshot: PathBuf,
        #[command(flatten)]
        conn: ServerConn,
        /// A rollback order (`dragnet rules rollback`) for an older snapshot.
        #[arg(long)]
        rollback: Option<PathBuf>,
    },
    /// List the fleet: every gateway the rules server knows, the version it runs, when it was
    /// last seen and its last error.
    Fleet {
        #[command(flatten)]
        conn: ServerConn,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compare two snapshots: entries added, removed and changed.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// How many entries of each kind of change to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// How a maintainer reaches the rules server.
#[derive(Args, Debug, Clone)]
struct ServerConn {
    /// The rules server, ip:port.
    #[arg(long, default_value = "127.0.0.1:7443")]
    server: String,
    /// The name the server's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// CA certificate(s) the server's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// The maintainer's certificate (PEM), pinned on the server with --maintainer.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key; default: the certificate's path with .key.
    #[arg(long)]
    key: Option<PathBuf>,
}

impl ServerConn {
    async fn connect(&self) -> Result<dragnet_gateway::control::client::Maintainer> {
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| dragnet_gateway::control::certs::key_beside(&self.cert));
        Ok(dragnet_gateway::control::client::Maintainer::connect(
            &self.server,
            &self.server_name,
            &self.ca,
            &self.cert,
            &key,
        )
        .await?)
    }
}

fn small_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

#[derive(Args, Debug, Clone)]
struct CompileOpts {
    /// Skip bad lines (each is reported) instead of refusing the rule set.
    #[arg(long)]
    lenient: bool,
    /// Country calling code for national numbers (default 86, or the manifest's).
    #[arg(long)]
    default_country: Option<u16>,
    /// Shortest number prefix accepted, in digits including the country code.
    #[arg(long)]
    min_prefix_digits: Option<u8>,
    /// Add a protected number (repeatable); emergency numbers are always protected.
    #[arg(long = "protected")]
    protected: Vec<String>,
    /// Unix time used to drop expired rules (default: now).
    #[arg(long)]
    now: Option<u64>,
}

#[derive(Args, Debug, Clone, Default)]
struct Facts {
    /// A number checked on both sides of a call (caller, then callee).
    #[arg(long)]
    number: Vec<String>,
    #[arg(long)]
    caller: Option<String>,
    #[arg(long)]
    callee: Option<String>,
    /// Ingress trunk name for --caller/--callee.
    #[arg(long, default_value = "")]
    trunk: String,
    /// The call arrives on an international trunk.
    #[arg(long)]
    international: bool,
    #[arg(long)]
    domain: Vec<String>,
    #[arg(long)]
    url: Vec<String>,
    #[arg(long)]
    message: Vec<String>,
    /// Unix time for expiry checks (default: now).
    #[arg(long)]
    now: Option<u64>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// A compiled snapshot to use instead of the embedded example rule set.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[command(flatten)]
    facts: Facts,
}

#[derive(Subcommand, Debug)]
enum SimCmd {
    /// Write a deterministic synthetic rule set (sources + rules.toml + truth.json) to a directory:
    /// the sizes and seed of a scenario (--scenario), or of the flags (which override the scenario's).
    GenRules {
        /// A scenario file (examples/sim/*.toml): its [rules] sizes and seed.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Exact numbers (default 10000).
        #[arg(long)]
        numbers: Option<usize>,
        /// Number prefixes (default 100).
        #[arg(long)]
        prefixes: Option<usize>,
        /// Domains, spread over the .domains, .hosts, .adblock and .rpz files (default 10000).
        #[arg(long)]
        domains: Option<usize>,
        /// URL expressions (default 1000).
        #[arg(long)]
        urls: Option<usize>,
        /// Keywords (default 100).
        #[arg(long)]
        keywords: Option<usize>,
        /// Seed (default 1).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Drive a gateway (or a peer) with a scenario's traffic, open loop, and write report.json
    /// and report.html: rates, latency percentiles, and every verdict judged against the truth.
    Run(SimRunArgs),
}

#[derive(Args, Debug)]
struct SimRunArgs {
    /// The scenario file (examples/sim/smoke.toml).
    #[arg(long)]
    scenario: PathBuf,
    /// Where report.json and report.html go.
    #[arg(long)]
    out: PathBuf,
    /// SIP UDP target ip:port (overrides targets.sip_udp).
    #[arg(long)]
    target_sip: Option<std::net::SocketAddr>,
    /// DNS target ip:port, UDP and TCP (overrides targets.dns_udp).
    #[arg(long)]
    target_dns: Option<std::net::SocketAddr>,
    /// DNS TCP target when it differs from the UDP one (overrides targets.dns_tcp).
    #[arg(long)]
    target_dns_tcp: Option<std::net::SocketAddr>,
    /// HTTP proxy ip:port (overrides targets.http_proxy).
    #[arg(long)]
    target_http: Option<std::net::SocketAddr>,
    /// Check API ip:port (overrides targets.check).
    #[arg(long)]
    target_check: Option<std::net::SocketAddr>,
    /// Seconds of traffic (overrides duration_s).
    #[arg(long)]
    duration: Option<f64>,
    /// Exit with status 1 when the report has a false positive or a false negative.
    #[arg(long)]
    strict: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run(a) => run_gateway(a),
        Cmd::Check(a) => {
            let engine = match &a.rules {
                Some(p) => Engine::load(p)?,
                None => embedded_engine()?,
            };
            check(&engine, &a.facts)
        }
        Cmd::Rules(r) => rules(r),
        Cmd::Sim(SimCmd::GenRules {
            scenario,
            numbers,
            prefixes,
            domains,
            urls,
            keywords,
            seed,
            out,
        }) => {
            let mut spec = match &scenario {
                Some(p) => dragnet_simulator::Scenario::load(p)?.gen_spec(),
                None => dragnet_simulator::rulegen::GenSpec {
                    numbers: 10_000,
                    prefixes: 100,
                    domains: 10_000,
                    urls: 1_000,
                    keywords: 100,
                    seed: 1,
                },
            };
            spec.numbers = numbers.unwrap_or(spec.numbers);
            spec.prefixes = prefixes.unwrap_or(spec.prefixes);
            spec.domains = domains.unwrap_or(spec.domains);
            spec.urls = urls.unwrap_or(spec.urls);
            spec.keywords = keywords.unwrap_or(spec.keywords);
            spec.seed = seed.unwrap_or(spec.seed);
            let t = Instant::now();
            let summary = dragnet_simulator::rulegen::write_dir(&spec, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{summary}");
            println!("wrote {} in {:.2?}", out.display(), t.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sim(SimCmd::Run(a)) => sim_run(a),
        Cmd::Config(ConfigCmd::Check { file }) => run_gateway(RunArgs {
            config: file,
            check: true,
            print_default: false,
        }),
        Cmd::Config(ConfigCmd::Default) => run_gateway(RunArgs {
            config: None,
            check: false,
            print_default: true,
        }),
    }
}

fn sim_run(a: SimRunArgs) -> Result<ExitCode> {
    let mut sc = dragnet_simulator::Scenario::load(&a.scenario)?;
    let t = &mut sc.targets;
    t.sip_udp = a.target_sip.or(t.sip_udp);
    t.dns_udp = a.target_dns.or(t.dns_udp);
    t.dns_tcp = a.target_dns_tcp.or(t.dns_tcp);
    t.http_proxy = a.target_http.or(t.http_proxy);
    t.check = a.target_check.or(t.check);
    if let Some(d) = a.duration {
        sc.duration_s = d;
        sc.validate()
            .map_err(|e| anyhow::anyhow!("--duration {d}: {e}"))?;
    }
    let report = dragnet_simulator::run(&sc, &a.out, true)?;
    println!("{}", report.summary());
    println!(
        "wrote {} and {}",
        a.out.join("report.json").display(),
        a.out.join("report.html").display()
    );
    let t = &report.totals;
    if a.strict && (t.false_positives > 0 || t.false_negatives > 0) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_gateway(a: RunArgs) -> Result<ExitCode> {
    use dragnet_gateway::config::Config;
    if a.print_default {
        print!("{}", dragnet_gateway::config::DEFAULT_TOML);
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading configuration {}", p.display()))?;
            Config::from_toml(&text, &p.display().to_string())
        }
        None => Config::embedded(),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // The last-good snapshot (rules.state_dir) is read before any socket is bound.
    let init = dragnet_gateway::run::initial_snapshot(&cfg, || {
        embedded_engine().map_err(|e| format!("{e:#}"))
    })
    .map_err(anyhow::Error::msg)
    .context("rules.snapshot")?;
    if a.check {
        println!(
            "configuration OK; snapshot version {} with {} rules ({})",
            init.engine.version(),
            init.engine.rule_count(),
            init.provenance.origin
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&cfg.log);
    if let Some(n) = &init.note {
        tracing::warn!("{n}");
    }
    // One worker: everything on this thread (no cross-thread wake-ups); more: a thread each.
    let rt = if cfg.sip.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.sip.workers)
            .thread_name("dragnet")
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    rt.block_on(async move {
        let signals = install_signals()?;
        let gw = dragnet_gateway::run::Gateway::start_initial(&cfg, init).await?;
        let a = gw.store.load();
        tracing::info!(
            version = a.engine.version(),
            rules = a.engine.rule_count(),
            origin = gw.store.provenance().origin,
            file = cfg
                .rules
                .snapshot
                .as_ref()
                .map_or("embedded examples/rules".to_string(), |p| p
                    .display()
                    .to_string()),
            "snapshot loaded"
        );
        drop(a);
        // One line per listener on stdout, so scripts and tests learn the bound ports.
        if let Some(core) = &gw.sip {
            let n_udp = cfg.sip.listen_udp.len();
            for (i, addr) in gw.sip_addrs.iter().enumerate() {
                let t = if i < n_udp { "udp" } else { "tcp" };
                println!("sip {t} {addr} mode {:?}", core.mode());
            }
        }
        if gw.dns.is_some() {
            let n_udp = cfg.dns.listen_udp.len();
            for (i, addr) in gw.dns_addrs.iter().enumerate() {
                let t = if i < n_udp { "udp" } else { "tcp" };
                println!("dns {t} {addr} upstreams {}", cfg.dns.upstreams.join(","));
            }
            for addr in &gw.doq_addrs {
                println!("dns doq {addr} upstreams {}", cfg.dns.upstreams.join(","));
            }
        }
        if let Some(addr) = gw.admin_addr {
            println!("admin http://{addr}/metrics");
        }
        for addr in &gw.web_http_addrs {
            println!("web http {addr} mode {:?}", cfg.web.http.mode);
        }
        if let Some(addr) = gw.web_tls_addr {
            println!("web tls {addr} upstream {}", cfg.web.tls.upstream);
        }
        if let Some(addr) = gw.web_quic_addr {
            println!("web quic {addr} upstream {}", cfg.web.quic.upstream);
        }
        if let Some(addr) = gw.check_addr {
            println!("check http://{addr}/v1/check/{{call,domain,url,message}}");
        }
        println!("ready");
        wait_for_signals(&gw, signals).await;
        tracing::info!("shutting down");
        gw.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The signals the gateway obeys, installed before it says `ready` (a SIGHUP sent right after
/// must reload, not kill).
#[cfg(unix)]
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
fn install_signals() -> Result<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok(Signals {
        hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
    })
}

#[cfg(unix)]
async fn wait_for_signals(gw: &dragnet_gateway::run::Gateway, mut s: Signals) {
    loop {
        tokio::select! {
            _ = s.hup.recv() => match gw.reload() {
                Ok(v) => tracing::info!(version = v, "snapshot reloaded"),
                Err(e) => tracing::error!(error = %e, "reload refused; the running snapshot stays"),
            },
            _ = s.term.recv() => return,
            _ = s.int.recv() => return,
        }
    }
}

/// Returns on SIGTERM or SIGINT (SIGHUP is ignored: the rules server has nothing to reload).
#[cfg(unix)]
async fn wait_for_stop(mut s: Signals) {
    loop {
        tokio::select! {
            _ = s.hup.recv() => {}
            _ = s.term.recv() => return,
            _ = s.int.recv() => return,
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop(_s: Signals) {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
fn install_signals() -> Result<Signals> {
    Ok(Signals)
}

#[cfg(not(unix))]
async fn wait_for_signals(_gw: &dragnet_gateway::run::Gateway, _s: Signals) {
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(c: &dragnet_gateway::config::LogConfig) {
    use tracing_subscriber::filter::Targets;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| c.level.clone());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("warning: log level {spec:?} not understood ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let reg = tracing_subscriber::registry().with(filter);
    let r = if c.format == "json" {
        reg.with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        )
        .try_init()
    } else {
        reg.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if let Err(e) = r {
        eprintln!("warning: logging not initialised: {e}");
    }
}

fn base_config(o: &CompileOpts) -> CompileConfig {
    CompileConfig {
        now: o.now.unwrap_or_else(unix_now),
        ..CompileConfig::default()
    }
}

/// Compile command-line sources; flags override the manifests' `[compile]` settings.
fn compile_with(
    sources: &[String],
    o: &CompileOpts,
) -> Result<(dragnet_rules::snapshot::Tables, Report, Option<u64>)> {
    let args = sources
        .iter()
        .map(|s| SourceArg::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let overrides = Manifest {
        compile: CompileSection {
            default_country: o.default_country,
            min_prefix_digits: o.min_prefix_digits,
            extra_protected: o.protected.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    Ok(compile_args(&args, base_config(o), &overrides, o.lenient)?)
}

fn print_report(r: &Report) {
    let c = &r.counts;
    eprintln!(
        "read {} rules, compiled {} (numbers {}, prefixes {}, domains {}, urls {}, keywords {}); {} duplicates dropped, {} conflicts, {} expired, {} lines skipped, {} notes",
        r.rules_read, r.rules_compiled, c.numbers, c.prefixes, c.domains, c.urls, c.keywords, r.duplicates, r.conflicts, r.expired, r.skipped.len(), r.notes.len()
    );
    for s in &r.skipped {
        eprintln!("skipped {s}");
    }
    for n in r.notes.iter().take(20) {
        eprintln!("note {n}");
    }
    if r.notes.len() > 20 {
        eprintln!("note … {} more notes", r.notes.len() - 20);
    }
    for f in &r.findings {
        eprintln!("lint {f}");
    }
    for b in &r.blast {
        eprintln!("blast radius: {b}");
    }
}

fn rules(cmd: RulesCmd) -> Result<ExitCode> {
    match cmd {
        RulesCmd::Compile {
            sources,
            output,
            opts,
            ruleset_version,
        } => {
            let t0 = Instant::now();
            let (tables, report, mver) = compile_with(&sources, &opts)?;
            print_report(&report);
            let version = ruleset_version.or(mver).unwrap_or_else(unix_now);
            let created = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(unix_now);
            let image = write_snapshot(&tables, version, created)?;
            let tmp = output.with_extension("tmp");
            std::fs::write(&tmp, &image).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("renaming to {}", output.display()))?;
            eprintln!(
                "wrote {} ({} bytes, version {version}) in {:.2?}",
                output.display(),
                image.len(),
                t0.elapsed()
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Lint { sources, opts } => {
            let (_, report, _) = compile_with(&sources, &opts)?;
            print_report(&report);
            if report.skipped.is_empty() {
                println!("ok");
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "{} bad lines (skipped with --lenient)",
                    report.skipped.len()
                );
                Ok(ExitCode::from(2))
            }
        }
        RulesCmd::Inspect { file, json } => inspect(&file, json),
        RulesCmd::Check { file, facts } => {
            let e = Engine::load(&file)?;
            check(&e, &facts)
        }
        RulesCmd::Diff { old, new, limit } => diff(&old, &new, limit),
        RulesCmd::Keygen { out } => {
            let k = signing::keygen(&out)?;
            println!("key id {}", k.key_id);
            println!("private key {} (keep it secret)", k.key.display());
            println!("public key {}", k.public.display());
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Sign { snapshot, key } => {
            let v = signing::sign(&snapshot, &key)?;
            println!(
                "signed {} version {} sha256 {} with key id {} -> {}",
                snapshot.display(),
                v.version,
                v.sha256,
                v.key_id,
                signing::sig_path(&snapshot).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Rollback { snapshot, key, out } => {
            let bytes = std::fs::read(&snapshot)
                .with_context(|| format!("reading {}", snapshot.display()))?;
            let pkcs8 =
                std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
            let order = signing::rollback_order(&bytes, &pkcs8, unix_now())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}", key.display()))?;
            let out = out.unwrap_or_else(|| {
                let mut p = snapshot.clone().into_os_string();
                p.push(".rollback");
                PathBuf::from(p)
            });
            std::fs::write(&out, &order).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "rollback order for {} -> {} (valid {} h; each gateway obeys it once and logs it)",
                snapshot.display(),
                out.display(),
                signing::ROLLBACK_MAX_AGE / 3600
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Push {
            snapshot,
            gateway,
            token_file,
            rollback,
            shadow,
        } => {
            let bytes = std::fs::read(&snapshot)
                .with_context(|| format!("reading {}", snapshot.display()))?;
            let sig = signing::read_sig(&snapshot)?;
            let token = std::fs::read_to_string(&token_file)
                .with_context(|| format!("reading {}", token_file.display()))?;
            let mut headers = vec![("X-Dragnet-Signature", signing::to_header(&sig))];
            if let Some(r) = &rollback {
                let o = std::fs::read_to_string(r)
                    .with_context(|| format!("reading {}", r.display()))?;
                headers.push(("X-Dragnet-Rollback", signing::to_header(&o)));
            }
            let (method, path) = if shadow {
                ("PUT", "/v1/shadow")
            } else {
                ("POST", "/v1/snapshot")
            };
            let (status, body) = dragnet_gateway::admin::request(
                &gateway,
                method,
                path,
                Some(token.trim()),
                &headers,
                &bytes,
            )
            .with_context(|| format!("pushing to {gateway}"))?;
            print!("{status} {body}");
            Ok(if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCmd::Certs {
            out,
            gateways,
            sans,
        } => {
            let f = dragnet_gateway::control::certs::make_lab(&out, gateways, &sans)?;
            println!(
                "lab certificates in {} (NOT for production):",
                out.display()
            );
            println!("  CA          {}", f.ca.display());
            println!(
                "  server      {} (names: {})",
                f.server.display(),
                sans.join(", ")
            );
            for g in &f.gateways {
                println!("  gateway     {}", g.display());
            }
            println!("  maintainer  {}", f.maintainer.display());
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Serve {
            dir,
            listen,
            cert,
            key,
            client_ca,
            maintainers,
            metrics,
        } => {
            use dragnet_gateway::control::server;
            init_logging(&dragnet_gateway::config::LogConfig::default());
            let key = key.unwrap_or_else(|| dragnet_gateway::control::certs::key_beside(&cert));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("dragnet-rules")
                .build()
                .context("starting the runtime")?;
            rt.block_on(async move {
                let signals = install_signals()?;
                let mut srv = server::serve(server::ServerConfig {
                    dir,
                    listen,
                    cert,
                    key,
                    client_ca,
                    maintainers,
                    metrics,
                })
                .await?;
                println!("rules server listening on {} (QUIC)", srv.local_addr()?);
                if let Some(m) = srv.metrics_addr() {
                    println!("metrics on http://{m}/metrics");
                }
                tokio::select! {
                    _ = srv.wait() => {}
                    _ = wait_for_stop(signals) => {}
                }
                tracing::info!("rules server stopping");
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Publish {
            snapshot,
            conn,
            rollback,
        } => {
            let bytes = std::fs::read(&snapshot)
                .with_context(|| format!("reading {}", snapshot.display()))?;
            let sig = signing::read_sig(&snapshot)?;
            let order = rollback
                .as_ref()
                .map(|r| std::fs::read(r).with_context(|| format!("reading {}", r.display())))
                .transpose()?;
            let p = small_runtime()?.block_on(async {
                let m = conn.connect().await?;
                let p = m.publish(&bytes, sig, order.as_deref()).await;
                m.close().await;
                Ok::<_, anyhow::Error>(p?)
            })?;
            println!(
                "published {} version {} sha256 {} ({} bytes{}); offered to {} connected gateway(s)",
                snapshot.display(),
                p.version,
                p.sha256,
                p.size,
                if p.rollback { ", rollback" } else { "" },
                p.online
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Fleet { conn, json } => {
            let rows = small_runtime()?.block_on(async {
                let m = conn.connect().await?;
                let f = m.fleet().await;
                m.close().await;
                Ok::<_, anyhow::Error>(f?)
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!(
                    "{}",
                    dragnet_gateway::control::client::fleet_table(&rows, unix_now())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCmd::Verify { snapshot, trusted } => {
            let keys = trusted
                .iter()
                .map(|p| signing::TrustedKey::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let v = signing::verify(&snapshot, &keys)
                .with_context(|| format!("verifying {}", snapshot.display()))?;
            println!(
                "OK {} version {} sha256 {} signed by key id {}",
                snapshot.display(),
                v.version,
                v.sha256,
                v.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(file: &Path, json: bool) -> Result<ExitCode> {
    let t0 = Instant::now();
    let e = Engine::load(file)?;
    let load = t0.elapsed();
    let h = e.header();
    let m = e.meta();
    let t = e.tables();
    let size = std::fs::metadata(file)?.len();
    let filter_bytes =
        t.numbers.filter.size_bytes() + t.domains.filter.size_bytes() + t.urls.filter.size_bytes();
    let keyed = t.numbers.keys.len() + t.domains.keys.len() + t.urls.keys.len();
    let v = serde_json::json!({
        "file": file.display().to_string(),
        "format_version": h.format_version,
        "ruleset_version": h.ruleset_version,
        "created": h.created,
        "size_bytes": size,
        "body_sha256": hex(&h.body_sha256),
        "signed": h.is_signed(),
        "load_ms": load.as_secs_f64() * 1e3,
        "counts": m.counts,
        "categories": m.categories,
        "sources": m.sources,
        "scopes": m.scopes,
        "protected": m.protected,
        "policies": m.policies.len(),
        "filter_bits_per_key": if keyed > 0 { filter_bytes as f64 * 8.0 / keyed as f64 } else { 0.0 },
        "source_files": m.source_files,
        "plan": m.plan,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("snapshot      {}", file.display());
        println!(
            "format        {} (rule-set version {}, created {})",
            h.format_version, h.ruleset_version, h.created
        );
        println!(
            "size          {size} bytes, body SHA-256 {}",
            hex(&h.body_sha256)
        );
        println!(
            "signature     {}",
            if h.is_signed() { "present" } else { "none" }
        );
        println!(
            "loaded in     {:.1} ms (verified and validated)",
            load.as_secs_f64() * 1e3
        );
        let c = &m.counts;
        println!(
            "rules         {} (numbers {}, prefixes {}, domains {}, urls {}, keywords {})",
            c.rules, c.numbers, c.prefixes, c.domains, c.urls, c.keywords
        );
        println!(
            "filters       {filter_bytes} bytes, {:.2} bits per key",
            if keyed > 0 {
                filter_bytes as f64 * 8.0 / keyed as f64
            } else {
                0.0
            }
        );
        println!("categories    {}", m.categories.join(", "));
        println!("sources       {}", m.sources.join(", "));
        if !m.scopes.is_empty() {
            println!("ingress scopes {}", m.scopes.join(", "));
        }
        println!("protected     {}", m.protected.join(" "));
        println!(
            "numbering     +{} (trunk prefix '{}', international prefix '{}')",
            m.plan.country_code, m.plan.trunk_prefix, m.plan.international_prefix
        );
        for s in &m.source_files {
            println!(
                "from          {} ({}, {} rules, sha256 {})",
                s.path,
                s.format,
                s.rules,
                &s.sha256[..16.min(s.sha256.len())]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verdict_json(
    e: &Engine,
    fact: &str,
    input: &str,
    v: Verdict,
    matches: &[Match],
) -> serde_json::Value {
    let rule = v.rule.and_then(|r| e.rule_info(r));
    serde_json::json!({
        "fact": fact,
        "input": input,
        "action": v.action.as_str(),
        "protected": v.protected,
        "decided_by": v.fact.as_str(),
        "rule": rule.as_ref().map(|i| serde_json::json!({
            "id": i.id, "kind": i.kind.as_str(), "category": i.category, "source": i.source,
            "direction": i.direction.as_str(), "ingress": i.ingress, "expires": i.expires, "line": i.line,
        })),
        "matches": matches.iter().map(|m| serde_json::json!({
            "pattern": m.pattern, "action": m.action.as_str(), "fact": m.fact.as_str(),
            "rule": e.rule_info(m.rule).map(|i| i.id),
        })).collect::<Vec<_>>(),
    })
}

fn print_verdict(e: &Engine, json: bool, fact: &str, input: &str, v: Verdict, matches: &[Match]) {
    if json {
        println!("{}", verdict_json(e, fact, input, v, matches));
        return;
    }
    let mut line = format!("{fact} {input}: {}", v.action.as_str().to_uppercase());
    if v.protected {
        line.push_str(" (protected number: never blocked)");
    }
    if let Some(i) = v.rule.and_then(|r| e.rule_info(r)) {
        let win = matches
            .iter()
            .find(|m| Some(m.rule) == v.rule)
            .map(|m| m.pattern.as_str())
            .unwrap_or("");
        line.push_str(&format!(
            " by rule {} ({} {win} on {}; category {}, list {}{})",
            i.id,
            i.kind,
            v.fact.as_str(),
            i.category,
            i.source,
            i.ingress
                .map(|g| format!(", ingress {g}"))
                .unwrap_or_default()
        ));
    } else if !v.protected {
        line.push_str(" (no rule matched)");
    }
    println!("{line}");
    for m in matches.iter().filter(|m| Some(m.rule) != v.rule) {
        if let Some(i) = e.rule_info(m.rule) {
            println!(
                "  also matched: {} {} ({}, rule {})",
                m.fact.as_str(),
                m.pattern,
                m.action,
                i.id
            );
        }
    }
}

fn parse_num(e: &Engine, s: &str) -> Result<Number> {
    Number::parse(s, e.plan()).map_err(|err| anyhow::anyhow!("'{s}' is not a phone number: {err}"))
}

fn check(e: &Engine, f: &Facts) -> Result<ExitCode> {
    let now = f.now.unwrap_or_else(unix_now);
    let mut any = false;
    for n in &f.number {
        any = true;
        let num = parse_num(e, n)?;
        for (side, fact) in [("caller", Fact::Caller), ("callee", Fact::Callee)] {
            let call = match fact {
                Fact::Caller => Call {
                    caller: Some(num),
                    callee: None,
                    trunk: &f.trunk,
                    international: f.international,
                },
                _ => Call {
                    caller: None,
                    callee: Some(num),
                    trunk: &f.trunk,
                    international: f.international,
                },
            };
            let (v, m) = e.explain_call(&call, now);
            print_verdict(
                e,
                f.json,
                &format!("number as {side}"),
                &num.to_string(),
                v,
                &m,
            );
        }
    }
    if f.caller.is_some() || f.callee.is_some() {
        any = true;
        let caller = f.caller.as_deref().map(|s| parse_num(e, s)).transpose()?;
        let callee = f.callee.as_deref().map(|s| parse_num(e, s)).transpose()?;
        let call = Call {
            caller,
            callee,
            trunk: &f.trunk,
            international: f.international,
        };
        let (v, m) = e.explain_call(&call, now);
        let show = |n: Option<Number>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
        print_verdict(
            e,
            f.json,
            "call",
            &format!("{} -> {}", show(caller), show(callee)),
            v,
            &m,
        );
    }
    for d in &f.domain {
        any = true;
        let (v, m) = e.explain_domain(d.as_bytes(), now);
        print_verdict(e, f.json, "domain", d, v, &m);
    }
    for u in &f.url {
        any = true;
        let (v, m) = e.explain_url(u.as_bytes(), now);
        print_verdict(e, f.json, "url", u, v, &m);
    }
    let mut scratch = Scratch::new();
    for t in &f.message {
        any = true;
        let (v, m) = e.explain_message(t, now);
        debug_assert_eq!(v, e.check_message(t, now, &mut scratch));
        print_verdict(e, f.json, "message", t, v, &m);
    }
    if !any {
        bail!("nothing to check: give --number, --caller/--callee, --domain, --url or --message");
    }
    Ok(ExitCode::SUCCESS)
}

fn entries(e: &Engine) -> BTreeMap<(String, String), String> {
    let mut m = BTreeMap::new();
    e.for_each_entry(|kind, pat, r| {
        let what = e
            .rule_info(r)
            .map(|i| {
                format!(
                    "{} {} dir={}{}",
                    i.action,
                    i.category,
                    i.direction.as_str(),
                    i.ingress
                        .map(|g| format!(" ingress={g}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        m.entry((kind.to_string(), pat.to_string()))
            .and_modify(|v: &mut String| {
                v.push_str(" | ");
                v.push_str(&what);
            })
            .or_insert(what);
    });
    m
}

fn diff(old: &Path, new: &Path, limit: usize) -> Result<ExitCode> {
    let (a, b) = (Engine::load(old)?, Engine::load(new)?);
    let (ea, eb) = (entries(&a), entries(&b));
    let added: Vec<_> = eb.iter().filter(|(k, _)| !ea.contains_key(*k)).collect();
    let removed: Vec<_> = ea.iter().filter(|(k, _)| !eb.contains_key(*k)).collect();
    let changed: Vec<_> = eb
        .iter()
        .filter_map(|(k, v)| ea.get(k).filter(|o| *o != v).map(|o| (k, o, v)))
        .collect();
    println!(
        "old version {} ({} entries) → new version {} ({} entries)",
        a.version(),
        ea.len(),
        b.version(),
        eb.len()
    );
    if b.version() <= a.version() {
        println!(
            "warning: the new version is not greater than the old one: gateways will refuse it"
        );
    }
    println!(
        "added {}, removed {}, changed {}",
        added.len(),
        removed.len(),
        changed.len()
    );
    for ((k, p), v) in added.iter().take(limit) {
        println!("+ {k} {p}: {v}");
    }
    for ((k, p), v) in removed.iter().take(limit) {
        println!("- {k} {p}: {v}");
    }
    for ((k, p), o, v) in changed.iter().take(limit) {
        println!("~ {k} {p}: {o} → {v}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The example rule set in examples/rules, built into the binary so that `dragnet check` works on
/// a fresh machine with no files.
fn embedded_engine() -> Result<Engine> {
    Ok(dragnet_gateway::examples::engine(unix_now())?)
}
