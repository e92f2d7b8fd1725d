//! The example rule set (`examples/rules/`), embedded in the binary: what `dragnet run` and
//! `dragnet check` use when no snapshot is given, and what the plane tests run on.

use dragnet_rules::compile::{source_options, CompileConfig, Compiler, Manifest};
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::{Engine, Error};

/// (file name, text) of every file of `examples/rules/`, the manifest first.
pub const FILES: &[(&str, &str)] = &[
    (
        "rules.toml",
        include_str!("../../examples/rules/rules.toml"),
    ),
    (
        "numbers.csv",
        include_str!("../../examples/rules/numbers.csv"),
    ),
    (
        "allow-numbers.csv",
        include_str!("../../examples/rules/allow-numbers.csv"),
    ),
    (
        "scam.domains",
        include_str!("../../examples/rules/scam.domains"),
    ),
    (
        "malware.hosts",
        include_str!("../../examples/rules/malware.hosts"),
    ),
    (
        "phishing.adblock",
        include_str!("../../examples/rules/phishing.adblock"),
    ),
    (
        "carrier.rpz",
        include_str!("../../examples/rules/carrier.rpz"),
    ),
    (
        "phishing.urls",
        include_str!("../../examples/rules/phishing.urls"),
    ),
    (
        "fraud.keywords",
        include_str!("../../examples/rules/fraud.keywords"),
    ),
];

/// Compiles the embedded example set (expiry judged at `now`, Unix seconds).
pub fn engine(now: u64) -> Result<Engine, Error> {
    let m = Manifest::parse(FILES[0].1, "examples/rules/rules.toml")?;
    let mut cfg = CompileConfig {
        now,
        ..CompileConfig::default()
    };
    m.apply(&mut cfg, "examples/rules/rules.toml")?;
    let mut c = Compiler::new(cfg, false);
    for e in &m.source {
        let text = FILES
            .iter()
            .find(|(n, _)| *n == e.path)
            .map(|(_, t)| *t)
            .ok_or_else(|| Error::Config {
                path: "examples/rules/rules.toml".into(),
                reason: format!("the embedded rule set lacks {}", e.path),
            })?;
        let label = format!("examples/rules/{}", e.path);
        let opts = source_options(Some(e), &label, None, false)?;
        c.add_text(text, &label, &opts)?;
    }
    let (t, _) = c.finish()?;
    let where_ = || "embedded examples/rules".to_string();
    let image = write_snapshot(&t, m.version.unwrap_or(1), 0).map_err(|source| Error::Io {
        path: where_(),
        source,
    })?;
    Engine::from_bytes(&image).map_err(|source| Error::Snapshot {
        path: where_(),
        source,
    })
}
