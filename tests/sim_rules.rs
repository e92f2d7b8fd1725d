//! The simulator's generated rule set against the real compiler and engine, in memory (no
//! gateway): `gen-rules` writes every domain format the compiler reads, and the ground truth —
//! which the simulator computes from each format's reach without the engine — agrees with what
//! the compiled snapshot decides.
//!
//! This test lives in the root package because the simulator deliberately does not depend on
//! `dragnet-rules` (a bug shared by both would hide): here the engine only CHECKS the truth, it
//! never computes it.
#![allow(clippy::unwrap_used)]

mod common;

use dragnet_rules::compile::{compile_args, CompileConfig, Manifest, SourceArg};
use dragnet_rules::formats::Format;
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::{Action, Engine, Fact as Side, Kind, Scratch};
use dragnet_simulator::workload::{self, Fact};
use dragnet_simulator::{
    generate, truth, write_dir, DomainFormat, Expected, GenSpec, Reach, Scenario, MANIFEST_FILE,
};
use std::path::Path;

/// gen-rules into `dir`, compile its manifest, load the snapshot.
fn compiled(spec: &GenSpec, dir: &Path) -> (Engine, dragnet_rules::Report) {
    write_dir(spec, dir).unwrap();
    let args = [SourceArg::Manifest(dir.join(MANIFEST_FILE))];
    let (tables, report, _) =
        compile_args(&args, CompileConfig::default(), &Manifest::default(), false).unwrap();
    let bytes = write_snapshot(&tables, 1, 0).unwrap();
    (Engine::from_bytes(&bytes).unwrap(), report)
}

/// The list name `rules.toml` gives each domain file.
fn source_of(f: DomainFormat) -> &'static str {
    match f {
        DomainFormat::Domains => "synthetic-domains",
        DomainFormat::Hosts => "synthetic-hosts",
        DomainFormat::Adblock => "synthetic-adblock",
        DomainFormat::Rpz => "synthetic-rpz",
    }
}

fn blocked(e: &Engine, name: &str) -> bool {
    e.check_domain(name.as_bytes(), 0).action == Action::Block
}

#[test]
fn every_domain_format_compiles_and_the_truth_agrees_with_the_engine() {
    for seed in [1, 7] {
        let spec = GenSpec {
            numbers: 2000,
            prefixes: 20,
            domains: 3000,
            urls: 500,
            keywords: 100,
            seed,
        };
        let dir = common::tmpdir("sim-rules", &format!("seed{seed}"));
        let (engine, report) = compiled(&spec, &dir);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let set = generate(&spec);

        // Every domain format is written, read as that format, and holds rules.
        let manifest = std::fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        for (f, want) in DomainFormat::ALL.into_iter().zip([
            Format::Domains,
            Format::Hosts,
            Format::Adblock,
            Format::Rpz,
        ]) {
            assert!(
                manifest.contains(&format!("path = \"{}\"", f.file())),
                "{f:?}"
            );
            assert_eq!(Format::from_path(f.file()), Some(want), "{f:?}");
            assert!(set.domain_placements.iter().any(|p| p.format == f), "{f:?}");
        }
        let rpz_suffix = set
            .domain_placements
            .iter()
            .filter(|p| p.format == DomainFormat::Rpz && p.reach == Reach::Suffix)
            .count();
        let domain_rules = set.domains.len() + rpz_suffix;
        assert_eq!(
            report.rules_compiled as usize,
            set.numbers.len()
                + set.prefixes.len()
                + domain_rules
                + set.urls.len()
                + set.keywords.len()
        );

        // Each listed name, a name below it, and a name beside it, against the formats' reach;
        // and the rule that decides a listed name comes from that name's own file, with the kind
        // its format gives.
        let listed = set.domain_reach();
        for (d, p) in set.domains.iter().zip(&set.domain_placements) {
            for name in [d.clone(), format!("www.{d}"), format!("not{d}")] {
                assert_eq!(
                    blocked(&engine, &name),
                    listed.covers(&name),
                    "{name} ({p:?})"
                );
            }
            let (_, matches) = engine.explain_domain(format!("x.{d}").as_bytes(), 0);
            let own = matches
                .iter()
                .chain(&engine.explain_domain(d.as_bytes(), 0).1)
                .any(|m| {
                    let info = engine.rule_info(m.rule).unwrap();
                    m.pattern == *d
                        && info.source == source_of(p.format)
                        && match p.reach {
                            Reach::Suffix => matches!(
                                info.kind,
                                Kind::DomainSuffix | Kind::DomainExact | Kind::DomainSubdomains
                            ),
                            Reach::Exact => info.kind == Kind::DomainExact,
                            Reach::Below => info.kind == Kind::DomainSubdomains,
                        }
                });
            assert!(own, "{d} ({p:?}): no rule of its own file");
        }

        // The truth file's samples.
        let t = truth(&spec);
        let (pos, neg) = (&t.positives, &t.negatives);
        for d in pos.domains.iter().chain(&pos.subdomains_of_blocked) {
            assert!(blocked(&engine, d), "positive {d} is not blocked");
        }
        for d in &neg.domains {
            assert!(!blocked(&engine, d), "negative {d} is blocked");
        }
        let mut scratch = Scratch::new();
        for u in &pos.urls {
            let v = engine.check_url(u.as_bytes(), 0, &mut scratch);
            assert_eq!(v.action, Action::Block, "positive {u}");
        }
        for u in &neg.urls {
            let v = engine.check_url(u.as_bytes(), 0, &mut scratch);
            assert_eq!(v.action, Action::Allow, "negative {u}");
        }
        for n in &pos.numbers {
            let v = engine.check_number(engine.parse_number(n).unwrap(), Side::Caller, 0);
            assert_eq!(v.action, Action::Block, "positive {n}");
        }
        for n in &neg.numbers {
            let v = engine.check_number(engine.parse_number(n).unwrap(), Side::Caller, 0);
            assert_eq!(v.action, Action::Allow, "negative {n}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The traffic the workload draws (names below listed ones, look-alikes, the formats'
/// boundaries) expects what the compiled engine decides, for every DNS query and domain check.
#[test]
fn workload_domain_expectations_agree_with_the_engine() {
    let sc = Scenario::parse(
        "seed = 11\nduration_s = 4\nscam_share = 0.4\n\
         [rates]\ndns = 500\ncheck = 300\n\
         [rules]\nnumbers = 1000\nprefixes = 10\ndomains = 4000\nurls = 300\nkeywords = 50\n\
         [domains]\nlookalike_share = 0.4\nsubdomain_share = 0.4\n",
    )
    .unwrap();
    let dir = common::tmpdir("sim-rules", "workload");
    let (engine, _) = compiled(&sc.gen_spec(), &dir);
    let w = workload::build(&sc).unwrap();
    let mut checked = 0;
    for r in w.dns.iter().chain(&w.check) {
        let name = match &r.fact {
            Fact::Query { name, .. } | Fact::CheckDomain { domain: name } => name,
            _ => continue,
        };
        let want = match r.expected {
            Expected::Blocked => true,
            Expected::Allowed => false,
            other => panic!("{name}: a domain is never {other:?}"),
        };
        assert_eq!(
            blocked(&engine, name),
            want,
            "{name} expected {:?}",
            r.expected
        );
        checked += 1;
    }
    assert!(checked > 2000, "{checked}");
    let _ = std::fs::remove_dir_all(&dir);
}
