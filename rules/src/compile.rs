//! The compiler: rule sources → validated, linted, compact [`Tables`] → a snapshot.
//!
//! It refuses (all problems at once, each with file and line) what would be unsafe or absurd:
//! a number prefix shorter than the configured minimum, a domain that is a public suffix (`com`,
//! `co.uk`), an empty or one-character keyword, and any block or warn rule that would hit a
//! protected (emergency) number as callee. It reports duplicates, conflicts, skipped lines and a
//! blast-radius estimate. Input order does not change the output: the same sources give the same
//! snapshot body.

use crate::domain::{is_public_suffix, normalize_domain};
use crate::error::{Error, Problem};
use crate::filter::KeyFilter;
use crate::formats::{parse_expiry, parse_source, Format, LineError, SourceOptions};
use crate::hash::key_of;
use crate::number::{Number, NumberPlan, Prefix};
use crate::rule::{Action, Direction, Kind, RuleSpec};
use crate::snapshot::{
    build_directory, hex, number_hash, Counts, KeyTable, Meta, PlanMeta, Policy, SourceFile,
    StrTable, Tables, TRIE_STRIDE,
};
use crate::url::rule_expression;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Emergency and protected numbers used when the configuration names none. Never empty.
pub const DEFAULT_PROTECTED: [&str; 9] = [
    "110", "112", "119", "120", "122", "911", "999", "96110", "12381",
];

/// How the compiler reads and checks rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileConfig {
    pub plan: NumberPlan,
    pub plan_meta: PlanMeta,
    pub min_prefix_digits: u8,
    /// Shortest prefix for a rule scoped to an ingress (e.g. `+861` callers on the international
    /// trunk: domestic mobiles presented from abroad). Scoping bounds the blast radius, so the
    /// minimum is lower; it still cannot be a bare country code.
    pub min_scoped_prefix_digits: u8,
    /// Protected numbers as written (normalised with `plan`). Never empty.
    pub protected: Vec<String>,
    /// Unix seconds "now": rules that expired before it are dropped (and counted).
    pub now: u64,
}

impl Default for CompileConfig {
    fn default() -> Self {
        CompileConfig {
            plan: NumberPlan::default(),
            plan_meta: PlanMeta {
                country_code: 86,
                trunk_prefix: "0".into(),
                international_prefix: "00".into(),
                max_short_code_digits: 6,
            },
            min_prefix_digits: 5,
            min_scoped_prefix_digits: 3,
            protected: DEFAULT_PROTECTED.iter().map(|s| s.to_string()).collect(),
            now: 0,
        }
    }
}

/// `[compile]` in a manifest.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileSection {
    pub default_country: Option<u16>,
    pub trunk_prefix: Option<String>,
    pub international_prefix: Option<String>,
    pub max_short_code_digits: Option<u8>,
    pub min_prefix_digits: Option<u8>,
    pub min_scoped_prefix_digits: Option<u8>,
    /// Replaces the default protected list (must not be empty).
    pub protected: Option<Vec<String>>,
    /// Added to the protected list.
    #[serde(default)]
    pub extra_protected: Vec<String>,
}

/// `[[source]]` in a manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub path: String,
    pub format: Option<String>,
    pub action: Option<String>,
    pub category: Option<String>,
    pub name: Option<String>,
    pub direction: Option<String>,
    pub ingress: Option<String>,
    pub expires: Option<String>,
    pub lenient: Option<bool>,
}

/// A rule-set manifest (`rules.toml`): compiler settings and the list of sources.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: Option<u64>,
    #[serde(default)]
    pub compile: CompileSection,
    #[serde(default)]
    pub source: Vec<SourceEntry>,
}

impl Manifest {
    pub fn parse(text: &str, path: &str) -> Result<Manifest, Error> {
        toml::from_str(text).map_err(|e| Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Apply `[compile]` onto a configuration.
    pub fn apply(&self, cfg: &mut CompileConfig, path: &str) -> Result<(), Error> {
        let c = &self.compile;
        let bad = |reason: String| Error::Config {
            path: path.into(),
            reason,
        };
        let pm = &mut cfg.plan_meta;
        if let Some(v) = c.default_country {
            pm.country_code = v;
        }
        if let Some(v) = &c.trunk_prefix {
            pm.trunk_prefix = v.clone();
        }
        if let Some(v) = &c.international_prefix {
            pm.international_prefix = v.clone();
        }
        if let Some(v) = c.max_short_code_digits {
            pm.max_short_code_digits = v;
        }
        cfg.plan = NumberPlan::new(
            pm.country_code,
            &pm.trunk_prefix,
            &pm.international_prefix,
            pm.max_short_code_digits,
        )
        .map_err(|e| bad(format!("[compile] numbering plan: {e}")))?;
        if let Some(v) = c.min_prefix_digits {
            if v == 0 {
                return Err(bad("[compile] min_prefix_digits must be at least 1".into()));
            }
            cfg.min_prefix_digits = v;
        }
        if let Some(v) = c.min_scoped_prefix_digits {
            if v < 2 {
                return Err(bad(
                    "[compile] min_scoped_prefix_digits must be at least 2".into()
                ));
            }
            cfg.min_scoped_prefix_digits = v;
        }
        if let Some(p) = &c.protected {
            if p.is_empty() {
                return Err(bad(
                    "[compile] protected must not be empty: emergency numbers are always protected"
                        .into(),
                ));
            }
            cfg.protected = p.clone();
        }
        cfg.protected.extend(c.extra_protected.iter().cloned());
        Ok(())
    }
}

/// Build `SourceOptions` for a file from a manifest entry (or defaults).
pub fn source_options(
    entry: Option<&SourceEntry>,
    path: &str,
    format: Option<Format>,
    lenient: bool,
) -> Result<SourceOptions, Error> {
    let bad = |reason: String| Error::Config {
        path: path.into(),
        reason,
    };
    let format = match (entry.and_then(|e| e.format.as_deref()), format) {
        (Some(f), _) => Format::parse(f).ok_or_else(|| bad(format!("unknown format '{f}'")))?,
        (None, Some(f)) => f,
        (None, None) => Format::from_path(path).ok_or_else(|| {
            bad("cannot tell the format from the file name: name it FORMAT:PATH (formats: numbers-csv, domains, hosts, adblock, rpz, urls, keywords)".into())
        })?,
    };
    let stem = Path::new(path)
        .file_stem()
        .map_or_else(|| "rules".to_string(), |s| s.to_string_lossy().into_owned());
    let mut o = SourceOptions {
        format,
        action: if format == Format::Keywords {
            Action::Warn
        } else {
            Action::Block
        },
        category: "fraud".into(),
        source: stem,
        direction: Direction::Both,
        ingress: None,
        expires: None,
        lenient,
    };
    if let Some(e) = entry {
        if let Some(a) = &e.action {
            o.action = Action::parse(a)
                .ok_or_else(|| bad(format!("unknown action '{a}' (block, warn, tag, allow)")))?;
        }
        if let Some(c) = &e.category {
            o.category = c.clone();
        }
        if let Some(n) = &e.name {
            o.source = n.clone();
        }
        if let Some(d) = &e.direction {
            o.direction = Direction::parse(d)
                .ok_or_else(|| bad(format!("unknown direction '{d}' (caller, callee, both)")))?;
        }
        o.ingress = e.ingress.clone();
        if let Some(x) = &e.expires {
            o.expires = Some(parse_expiry(x).map_err(|r| bad(format!("expires: {r}")))?);
        }
        if let Some(l) = e.lenient {
            o.lenient = o.lenient || l;
        }
    }
    Ok(o)
}

/// What the compiler noticed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rules_read: u64,
    pub rules_compiled: u64,
    /// Lines skipped in lenient mode (syntax or normalisation), every one.
    pub skipped: Vec<LineError>,
    /// Informational lines from the parsers (unsupported syntax that is not an error).
    pub notes: Vec<LineError>,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Up to 100 duplicate/conflict descriptions.
    pub findings: Vec<Problem>,
    pub expired: u64,
    /// Blast-radius lines: the broadest rules.
    pub blast: Vec<String>,
    pub counts: Counts,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Pattern {
    Number(u64),
    Prefix(Prefix),
    Host(String),
    Url(String),
    Keyword(String),
}

impl Pattern {
    fn show(&self) -> String {
        match self {
            Pattern::Number(k) => {
                Number::from_key(*k).map_or_else(|| k.to_string(), |n| n.to_string())
            }
            Pattern::Prefix(p) => p.to_string(),
            Pattern::Host(s) | Pattern::Url(s) | Pattern::Keyword(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct Norm {
    pattern: Pattern,
    policy: u32,
    id: Option<Box<str>>,
    file: u32,
    line: u32,
}

/// Accumulates sources; `finish` builds the tables.
#[derive(Debug)]
pub struct Compiler {
    cfg: CompileConfig,
    lenient: bool,
    rules: Vec<Norm>,
    files: Vec<String>,
    policies: Vec<Policy>,
    policy_ix: HashMap<Policy, u32>,
    categories: Vec<String>,
    sources: Vec<String>,
    scopes: Vec<String>,
    source_files: Vec<SourceFile>,
    problems: Vec<Problem>,
    report: Report,
}

fn intern(v: &mut Vec<String>, s: &str) -> u16 {
    match v.iter().position(|x| x == s) {
        Some(i) => i as u16,
        None => {
            v.push(s.to_string());
            (v.len() - 1) as u16
        }
    }
}

impl Compiler {
    pub fn new(cfg: CompileConfig, lenient: bool) -> Compiler {
        Compiler {
            cfg,
            lenient,
            rules: Vec::new(),
            files: Vec::new(),
            policies: Vec::new(),
            policy_ix: HashMap::new(),
            categories: Vec::new(),
            sources: Vec::new(),
            scopes: Vec::new(),
            source_files: Vec::new(),
            problems: Vec::new(),
            report: Report::default(),
        }
    }

    pub fn config(&self) -> &CompileConfig {
        &self.cfg
    }

    /// Read a file from disk and add it.
    pub fn add_file(&mut self, path: &Path, opts: &SourceOptions) -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.add_text(&text, &path.display().to_string(), opts)
    }

    /// Parse one source text and normalise its rules. Syntax errors fail at once in strict mode;
    /// semantic problems are collected and reported together by `finish`.
    pub fn add_text(&mut self, text: &str, file: &str, opts: &SourceOptions) -> Result<(), Error> {
        let mut opts = opts.clone();
        opts.lenient |= self.lenient;
        let parsed = parse_source(text, file, &opts)?;
        self.report.skipped.extend(parsed.skipped);
        self.report.notes.extend(parsed.notes);
        let n = parsed.rules.len() as u64;
        self.source_files.push(SourceFile {
            path: file.to_string(),
            format: opts.format.to_string(),
            rules: n,
            sha256: hex(&Sha256::digest(text.as_bytes())),
        });
        self.files.push(file.to_string());
        let file_ix = (self.files.len() - 1) as u32;
        self.report.rules_read += n;
        self.rules.reserve(parsed.rules.len());
        for spec in parsed.rules {
            match self.normalise(&spec) {
                Ok(Some(pattern)) => {
                    let policy = self.policy_for(&spec);
                    self.rules.push(Norm {
                        pattern,
                        policy,
                        id: spec.id.map(String::into_boxed_str),
                        file: file_ix,
                        line: spec.origin.line,
                    });
                }
                Ok(None) => self.report.expired += 1,
                Err(reason) => {
                    if opts.lenient {
                        self.report.skipped.push(LineError {
                            file: file.to_string(),
                            line: spec.origin.line,
                            reason,
                        });
                    } else {
                        self.problems.push(Problem {
                            at: spec.origin.to_string(),
                            reason,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn policy_for(&mut self, s: &RuleSpec) -> u32 {
        let scope = s
            .ingress
            .as_deref()
            .filter(|i| !i.is_empty())
            .map_or(0, |i| intern(&mut self.scopes, i) + 1);
        let p = Policy {
            action: s.action,
            kind: s.kind,
            direction: if s.kind.is_number() {
                s.direction
            } else {
                Direction::Both
            },
            category: intern(&mut self.categories, &s.category),
            source: intern(&mut self.sources, &s.source),
            scope,
            expires: s.expires.unwrap_or(0),
            dns: s.dns.clone(),
        };
        if let Some(&i) = self.policy_ix.get(&p) {
            return i;
        }
        self.policies.push(p.clone());
        let i = (self.policies.len() - 1) as u32;
        self.policy_ix.insert(p, i);
        i
    }

    /// Normalise one rule's pattern; `Ok(None)` = already expired.
    fn normalise(&self, s: &RuleSpec) -> Result<Option<Pattern>, String> {
        if let Some(e) = s.expires {
            if e <= self.cfg.now {
                return Ok(None);
            }
        }
        let p = s.pattern.trim();
        Ok(Some(match s.kind {
            Kind::Number => {
                let n =
                    Number::parse(p, &self.cfg.plan).map_err(|e| format!("number '{p}': {e}"))?;
                Pattern::Number(n.key())
            }
            Kind::NumberPrefix => {
                let x =
                    Prefix::parse(p, &self.cfg.plan).map_err(|e| format!("prefix '{p}': {e}"))?;
                let (min, key) = if s.ingress.as_deref().is_some_and(|i| !i.is_empty()) {
                    (
                        self.cfg.min_scoped_prefix_digits,
                        "min_scoped_prefix_digits",
                    )
                } else {
                    (self.cfg.min_prefix_digits, "min_prefix_digits")
                };
                if x.digit_count() < min {
                    return Err(format!(
                        "prefix {x} has {} digits, fewer than the minimum of {min} ({key}): it would cover too many numbers",
                        x.digit_count(),
                    ));
                }
                Pattern::Prefix(x)
            }
            Kind::DomainExact | Kind::DomainSuffix | Kind::DomainSubdomains => {
                let d = normalize_domain(p).map_err(|e| format!("domain '{p}': {e}"))?;
                if is_public_suffix(&d) && s.action != Action::Allow {
                    return Err(format!(
                        "'{d}' is a public suffix: a rule on it would {} every name under it",
                        s.action
                    ));
                }
                Pattern::Host(d)
            }
            Kind::Url => {
                let e = rule_expression(p).map_err(|e| format!("URL '{p}': {e}"))?;
                let host = e.split('/').next().unwrap_or("");
                if (e.ends_with('/') && e.len() == host.len() + 1 && is_public_suffix(host))
                    && s.action != Action::Allow
                {
                    return Err(format!("URL rule '{e}' covers a whole public suffix"));
                }
                Pattern::Url(e)
            }
            Kind::Keyword => {
                let k = p.to_ascii_lowercase();
                if k.is_empty() {
                    return Err("empty keyword: it would match every message".into());
                }
                if k.chars().count() < 2 {
                    return Err(format!(
                        "keyword '{k}' is a single character: it would match far too much"
                    ));
                }
                Pattern::Keyword(k)
            }
        }))
    }

    fn at(&self, r: &Norm) -> String {
        format!(
            "{}:{}",
            self.files.get(r.file as usize).map_or("?", |s| s.as_str()),
            r.line
        )
    }

    /// Check protected numbers, drop duplicates, report conflicts, build the tables.
    pub fn finish(mut self) -> Result<(Tables, Report), Error> {
        let plan = self.cfg.plan;
        // Protected numbers, and their international forms (+86110) so prefixes are checked too.
        let mut protected = Vec::new();
        for p in &self.cfg.protected {
            match Number::parse(p, &plan) {
                Ok(n) => protected.push(n),
                Err(e) => self.problems.push(Problem {
                    at: "protected numbers".into(),
                    reason: format!("'{p}': {e}"),
                }),
            }
        }
        if protected.is_empty() {
            self.problems.push(Problem {
                at: "protected numbers".into(),
                reason: "the list is empty: emergency numbers must always be protected".into(),
            });
        }
        // Digit strings a covering prefix would match: each protected number's E.164 digits,
        // and for a short code also its international form (110 → 86110), built as digits
        // rather than parsed (the parser reads `+86110` back as the short code).
        let cc = self.cfg.plan_meta.country_code;
        let protected_digits: Vec<(Number, String)> = protected
            .iter()
            .flat_map(|n| {
                let mut buf = [0u8; 20];
                let d = String::from_utf8_lossy(n.digits(&mut buf)).into_owned();
                let intl = n.is_short_code().then(|| (*n, format!("{cc}{d}")));
                [(!n.is_short_code()).then_some((*n, d)), intl]
                    .into_iter()
                    .flatten()
            })
            .collect();
        let is_prot = |n: Number| {
            protected
                .iter()
                .any(|p| *p == n || n.as_national_short_code(&plan) == Some(*p))
        };
        for r in &self.rules {
            let pol = &self.policies[r.policy as usize];
            if !matches!(pol.action, Action::Block | Action::Warn) || !pol.direction.covers_callee()
            {
                continue;
            }
            let hit = match &r.pattern {
                Pattern::Number(k) => Number::from_key(*k).filter(|n| is_prot(*n)),
                Pattern::Prefix(x) => {
                    let mut buf = [0u8; 20];
                    let px = x.digits(&mut buf);
                    protected_digits
                        .iter()
                        .find(|(_, d)| d.as_bytes().starts_with(px))
                        .map(|(n, _)| *n)
                }
                _ => None,
            };
            if let Some(n) = hit {
                self.problems.push(Problem {
                    at: self.at(r),
                    reason: format!(
                        "{} rule on {} would {} the protected (emergency) number {n}: protected numbers are never blocked",
                        pol.kind,
                        r.pattern.show(),
                        pol.action
                    ),
                });
            }
        }
        if !self.problems.is_empty() {
            return Err(Error::Refused(self.problems));
        }

        // Duplicates and conflicts: same pattern, kind, direction and ingress.
        let policies = &self.policies;
        let group = |r: &Norm| {
            let p = &policies[r.policy as usize];
            (r.pattern.clone(), p.kind as u8, p.direction as u8, p.scope)
        };
        let mut order: Vec<u32> = (0..self.rules.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rules[a as usize], &self.rules[b as usize]);
            (
                &ra.pattern,
                policies[ra.policy as usize].kind as u8,
                policies[ra.policy as usize].direction as u8,
                policies[ra.policy as usize].scope,
                a,
            )
                .cmp(&(
                    &rb.pattern,
                    policies[rb.policy as usize].kind as u8,
                    policies[rb.policy as usize].direction as u8,
                    policies[rb.policy as usize].scope,
                    b,
                ))
        });
        let mut keep = vec![true; self.rules.len()];
        let mut i = 0;
        while i < order.len() {
            let first = &self.rules[order[i] as usize];
            let g = group(first);
            let mut j = i + 1;
            while j < order.len() && group(&self.rules[order[j] as usize]) == g {
                let other = &self.rules[order[j] as usize];
                let (pa, pb) = (
                    &policies[first.policy as usize],
                    &policies[other.policy as usize],
                );
                let what = if pa.action == pb.action {
                    keep[order[j] as usize] = false;
                    self.report.duplicates += 1;
                    format!(
                        "duplicate of {} ({} {}), dropped",
                        self.at(first),
                        pb.kind,
                        first.pattern.show()
                    )
                } else {
                    self.report.conflicts += 1;
                    let win = if pa.action.precedence() >= pb.action.precedence() {
                        pa.action
                    } else {
                        pb.action
                    };
                    format!(
                        "conflict with {}: {} says {}, this says {}; {} wins by precedence",
                        self.at(first),
                        first.pattern.show(),
                        pa.action,
                        pb.action,
                        win
                    )
                };
                if self.report.findings.len() < 100 {
                    self.report.findings.push(Problem {
                        at: self.at(other),
                        reason: what,
                    });
                }
                j += 1;
            }
            i = j;
        }
        let mut rules: Vec<Norm> = Vec::with_capacity(self.rules.len());
        for (r, k) in std::mem::take(&mut self.rules).into_iter().zip(keep) {
            if k {
                rules.push(r);
            }
        }
        // Deterministic rule order whatever the source order within a file.
        let t = self.build(&rules, protected)?;
        self.report.rules_compiled = rules.len() as u64;
        self.report.counts = t.meta.counts.clone();
        self.report.blast = blast_radius(&rules, &self.policies);
        Ok((t, self.report))
    }

    fn build(&self, rules: &[Norm], protected: Vec<Number>) -> Result<Tables, Error> {
        let fail = |what: &str, e: String| Error::Config {
            path: "compile".into(),
            reason: format!("{what}: {e}"),
        };
        let mut t_rules = Vec::with_capacity(rules.len() * 2);
        let mut id_index = Vec::new();
        let mut id_blob = Vec::new();
        let mut nums: Vec<(u64, u32)> = Vec::new();
        let mut prefixes: Vec<(Prefix, u32)> = Vec::new();
        let mut hosts: Vec<(u64, u32, &str)> = Vec::new();
        let mut urls: Vec<(u64, u32, &str)> = Vec::new();
        let mut keywords: Vec<(String, u32)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            t_rules.push(r.policy);
            t_rules.push(r.line);
            if let Some(id) = &r.id {
                id_index.extend_from_slice(&[i, id_blob.len() as u32, id.len() as u32]);
                id_blob.extend_from_slice(id.as_bytes());
            }
            match &r.pattern {
                Pattern::Number(k) => nums.push((*k, i)),
                Pattern::Prefix(p) => prefixes.push((*p, i)),
                Pattern::Host(h) => hosts.push((key_of(h.as_bytes()), i, h)),
                Pattern::Url(u) => urls.push((key_of(u.as_bytes()), i, u)),
                Pattern::Keyword(k) => keywords.push((k.clone(), i)),
            }
        }
        nums.sort_unstable_by_key(|&(k, r)| (number_hash(k), k, r));
        let numbers = KeyTable {
            dir: build_directory(nums.iter().map(|x| number_hash(x.0))),
            filter: KeyFilter::build(&nums.iter().map(|x| x.0).collect::<Vec<_>>())
                .map_err(|e| fail("number filter", e))?,
            keys: nums.iter().map(|x| x.0).collect(),
            rules: nums.iter().map(|x| x.1).collect(),
        };
        drop(nums);
        let str_table = |mut v: Vec<(u64, u32, &str)>, what: &str| -> Result<StrTable, Error> {
            v.sort_unstable();
            let mut blob = Vec::new();
            let mut spans = Vec::with_capacity(v.len() * 2);
            for (_, _, s) in &v {
                spans.push(blob.len() as u32);
                spans.push(s.len() as u32);
                blob.extend_from_slice(s.as_bytes());
            }
            Ok(StrTable {
                dir: build_directory(v.iter().map(|x| x.0)),
                filter: KeyFilter::build(&v.iter().map(|x| x.0).collect::<Vec<_>>())
                    .map_err(|e| fail(what, e))?,
                keys: v.iter().map(|x| x.0).collect(),
                rules: v.iter().map(|x| x.1).collect(),
                spans,
                blob,
            })
        };
        let domains = str_table(hosts, "domain filter")?;
        let urls = str_table(urls, "URL filter")?;
        // Prefix digit trie.
        let mut nodes: Vec<[u32; 10]> = Vec::new();
        let mut node_rules: Vec<Vec<u32>> = Vec::new();
        if !prefixes.is_empty() {
            nodes.push([0; 10]);
            node_rules.push(Vec::new());
        }
        for (p, r) in &prefixes {
            let mut buf = [0u8; 20];
            let mut node = 0usize;
            for &d in p.digits(&mut buf) {
                let d = (d - b'0') as usize;
                if nodes[node][d] == 0 {
                    nodes.push([0; 10]);
                    node_rules.push(Vec::new());
                    nodes[node][d] = (nodes.len() - 1) as u32;
                }
                node = nodes[node][d] as usize;
            }
            node_rules[node].push(*r);
        }
        let mut trie = Vec::with_capacity(nodes.len() * TRIE_STRIDE);
        let mut trie_rules = Vec::new();
        for (n, rs) in nodes.iter().zip(&node_rules) {
            trie.extend_from_slice(n);
            trie.push(trie_rules.len() as u32);
            trie.push(rs.len() as u32);
            trie_rules.extend_from_slice(rs);
        }
        let mut prot: Vec<u64> = protected.iter().map(|n| n.key()).collect();
        prot.sort_unstable();
        prot.dedup();
        keywords.sort();
        let counts = Counts {
            rules: rules.len() as u64,
            numbers: numbers.keys.len() as u64,
            prefixes: prefixes.len() as u64,
            domains: domains.keys.len() as u64,
            urls: urls.keys.len() as u64,
            keywords: keywords.len() as u64,
        };
        Ok(Tables {
            meta: Meta {
                plan: self.cfg.plan_meta.clone(),
                min_prefix_digits: self.cfg.min_prefix_digits,
                protected: self.cfg.protected.clone(),
                categories: self.categories.clone(),
                sources: self.sources.clone(),
                scopes: self.scopes.clone(),
                policies: self.policies.clone(),
                keywords,
                counts,
                source_files: self.source_files.clone(),
            },
            rules: t_rules,
            id_index,
            id_blob,
            protected: prot,
            numbers,
            trie,
            trie_rules,
            domains,
            urls,
        })
    }
}

fn blast_radius(rules: &[Norm], policies: &[Policy]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pre: Vec<(u8, String, Action)> = rules
        .iter()
        .filter_map(|r| match &r.pattern {
            Pattern::Prefix(p) => {
                let pol = &policies[r.policy as usize];
                let scope = if pol.scope > 0 {
                    " on its ingress scope only"
                } else {
                    ""
                };
                Some((p.digit_count(), format!("{p}{scope}"), pol.action))
            }
            _ => None,
        })
        .filter(|x| x.2 != Action::Allow)
        .collect();
    pre.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (len, p, a) in pre.iter().take(5) {
        out.push(format!(
            "prefix {p} ({a}) covers every number that starts with it: up to 10^{} numbers",
            15u8.saturating_sub(*len)
        ));
    }
    let suffix_blocks = rules
        .iter()
        .filter(|r| {
            let p = &policies[r.policy as usize];
            p.kind == Kind::DomainSuffix && p.action == Action::Block
        })
        .count();
    if suffix_blocks > 0 {
        out.push(format!(
            "{suffix_blocks} domain suffix block rules cover their names and every subdomain"
        ));
    }
    let short_kw: Vec<&str> = rules
        .iter()
        .filter_map(|r| match &r.pattern {
            Pattern::Keyword(k) if k.chars().count() <= 3 => Some(k.as_str()),
            _ => None,
        })
        .take(5)
        .collect();
    if !short_kw.is_empty() {
        out.push(format!(
            "short keywords match widely: {}",
            short_kw.join(", ")
        ));
    }
    out
}

/// One compile input named on the command line: a manifest, or a rule file (`FORMAT:PATH` or a
/// path whose name tells its format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceArg {
    Manifest(PathBuf),
    File(PathBuf, Option<Format>),
}

impl SourceArg {
    pub fn parse(s: &str) -> Result<SourceArg, Error> {
        if let Some((f, p)) = s.split_once(':') {
            if let Some(fmt) = Format::parse(f) {
                return Ok(SourceArg::File(PathBuf::from(p), Some(fmt)));
            }
        }
        if s.ends_with(".toml") {
            return Ok(SourceArg::Manifest(PathBuf::from(s)));
        }
        Ok(SourceArg::File(PathBuf::from(s), None))
    }
}

/// Compile sources named on the command line (manifests and files). `cfg` is the base
/// configuration; each manifest's `[compile]` section is applied on top of it, then `overrides`
/// (command-line flags, same keys, so they are validated alike). Returns the tables, the report and
/// the manifest's version, if any.
pub fn compile_args(
    args: &[SourceArg],
    mut cfg: CompileConfig,
    overrides: &Manifest,
    lenient: bool,
) -> Result<(Tables, Report, Option<u64>), Error> {
    let mut version = None;
    let mut manifests = Vec::new();
    for a in args {
        if let SourceArg::Manifest(p) = a {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?;
            let m = Manifest::parse(&text, &p.display().to_string())?;
            m.apply(&mut cfg, &p.display().to_string())?;
            version = version.or(m.version);
            manifests.push((p.clone(), m));
        }
    }
    overrides.apply(&mut cfg, "command line")?;
    let mut c = Compiler::new(cfg, lenient);
    for a in args {
        match a {
            SourceArg::Manifest(p) => {
                let Some((_, m)) = manifests.iter().find(|(q, _)| q == p) else {
                    continue;
                };
                let dir = p.parent().unwrap_or(Path::new("."));
                for e in &m.source {
                    let path = dir.join(&e.path);
                    let opts = source_options(Some(e), &path.display().to_string(), None, lenient)?;
                    c.add_file(&path, &opts)?;
                }
            }
            SourceArg::File(p, f) => {
                let opts = source_options(None, &p.display().to_string(), *f, lenient)?;
                c.add_file(p, &opts)?;
            }
        }
    }
    let (t, r) = c.finish()?;
    Ok((t, r, version))
}
