//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test
//! (`rules/tests/fuzz_corpus.rs`): each takes arbitrary bytes and must never panic.

use crate::compile::{CompileConfig, Compiler};
use crate::domain::{ascii_host, normalize_domain};
use crate::engine::{Engine, Fact, Scratch};
use crate::formats::{parse_source, Format, SourceOptions};
use crate::number::{Number, NumberPlan, Prefix};
use crate::rule::{Action, Direction};
use crate::url::{canonicalize, UrlScratch};

/// Load arbitrary bytes as a snapshot; if (improbably) accepted, exercise every lookup.
pub fn snapshot_load(data: &[u8]) {
    if let Ok(e) = Engine::from_bytes(data) {
        let n = Number::parse("+8613800138000", e.plan());
        if let Ok(n) = n {
            let _ = e.check_number(n, Fact::Callee, 0);
        }
        let _ = e.check_domain(b"a.b.example", 0);
        let mut s = Scratch::new();
        let _ = e.check_message("x http://a.example/b", 0, &mut s);
        e.for_each_entry(|_, _, _| {});
    }
}

/// Parse arbitrary text in every format (first byte picks the format), then compile it.
pub fn rule_formats(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let format = Format::ALL[sel as usize % Format::ALL.len()];
    for lenient in [false, true] {
        let opts = SourceOptions {
            format,
            action: Action::Block,
            category: "fuzz".into(),
            source: "fuzz".into(),
            direction: Direction::Both,
            ingress: None,
            expires: None,
            lenient,
        };
        let _ = parse_source(&text, "fuzz", &opts);
        let mut c = Compiler::new(CompileConfig::default(), lenient);
        if c.add_text(&text, "fuzz", &opts).is_ok() {
            if let Ok((t, _)) = c.finish() {
                if let Ok(img) = crate::snapshot::write_snapshot(&t, 1, 0) {
                    // What the compiler writes, the engine must accept.
                    assert!(
                        Engine::from_bytes(&img).is_ok(),
                        "compiled snapshot refused"
                    );
                }
            }
        }
    }
}

/// Every normaliser on arbitrary bytes.
pub fn normalize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let plan = NumberPlan::default();
    if let Ok(n) = Number::parse(&text, &plan) {
        // Normalisation is idempotent.
        assert_eq!(Number::parse(&n.to_string(), &plan).ok(), Some(n));
    }
    let _ = Prefix::parse(&text, &plan);
    if let Ok(d) = normalize_domain(&text) {
        assert_eq!(normalize_domain(&d).ok().as_deref(), Some(d.as_str()));
    }
    let mut buf = [0u8; 256];
    let _ = ascii_host(data, &mut buf);
    let mut us = UrlScratch::new();
    let _ = canonicalize(data, &mut us);
}
