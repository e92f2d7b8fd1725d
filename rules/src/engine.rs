//! The engine: one immutable compiled rule set that every plane asks.
//!
//! Cost model (per lookup, no allocation, no lock, no clock — the caller hands in `now`):
//! - a number: one fuse-filter probe (3 fingerprint bytes) and, only on a filter hit, a binary
//!   search of the sorted exact table; then a walk of the prefix digit trie (≤ 15 nodes);
//! - a host name: one pass over its bytes from the right that yields the key of every label suffix
//!   (`com`, `evil.com`, `a.evil.com`), one filter probe per suffix, exact confirmation on a hit;
//! - a URL: canonicalisation into caller-owned [`Scratch`], the host as above, then at most 30
//!   Safe Browsing expressions, one filter probe each;
//! - keywords: one Aho-Corasick pass.
//!
//! Precedence among the rules that match: an allowlist entry beats block, block beats warn, warn
//! beats tag; between rules of equal rank the more specific wins (exact number over prefix, longer
//! prefix, longer domain suffix). Protected (emergency) numbers are decided before any rule and are
//! never blocked, whatever the rule set says.

use crate::domain::{ascii_host, normalize_domain};
use crate::error::{Error, SnapshotError};
use crate::hash::{for_each_suffix, key_of};
use crate::number::{Number, NumberPlan, Prefix};
use crate::rule::{Action, Direction, DnsAction, Kind};
use crate::snapshot::{
    bucket, build_directory, number_hash, read_snapshot, Header, KeyTable, Meta, StrTable, Tables,
    TRIE_STRIDE,
};
use crate::url::{canonicalize, find_urls, for_each_expression, ExprBuf, UrlScratch};
use aho_corasick::{AhoCorasick, MatchKind};
use std::ops::ControlFlow;
use std::path::Path;

/// A rule, by its index in the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef(pub u32);

/// Which fact of the request decided the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fact {
    None,
    Caller,
    Callee,
    Domain,
    Url,
    Keyword,
}

impl Fact {
    pub const fn as_str(self) -> &'static str {
        match self {
            Fact::None => "none",
            Fact::Caller => "caller",
            Fact::Callee => "callee",
            Fact::Domain => "domain",
            Fact::Url => "url",
            Fact::Keyword => "keyword",
        }
    }
}

/// The answer: a small `Copy` value that carries its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The deciding rule; `None` when nothing matched (or a protected number was involved).
    pub rule: Option<RuleRef>,
    /// Index of the rule's category (see [`Engine::category`]); meaningful when `rule` is set.
    pub category: u16,
    pub fact: Fact,
    /// A protected (emergency) number was involved and the call is let through regardless.
    pub protected: bool,
}

impl Verdict {
    pub const ALLOW: Verdict = Verdict {
        action: Action::Allow,
        rule: None,
        category: 0,
        fact: Fact::None,
        protected: false,
    };
}

/// The facts of one call.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub caller: Option<Number>,
    pub callee: Option<Number>,
    /// The ingress trunk's name as the plane knows it ("" when unknown).
    pub trunk: &'a str,
    /// The call arrived on an international trunk.
    pub international: bool,
}

/// Caller-owned working memory for URL and message checks (reuse one per worker).
#[derive(Debug, Default)]
pub struct Scratch {
    url: UrlScratch,
    expr: ExprBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            url: UrlScratch::new(),
            expr: ExprBuf::default(),
        }
    }
}

/// The hot copy of a policy (16 bytes).
#[derive(Clone, Copy, Debug)]
struct HotPolicy {
    expires: u64,
    category: u16,
    scope: u16,
    action: Action,
    kind: Kind,
    direction: Direction,
}

/// Scopes that apply to the call being checked.
#[derive(Clone, Copy, Debug)]
struct Ingress {
    trunk: u16,
    international: u16,
}

impl Ingress {
    const ANY: Ingress = Ingress {
        trunk: 0,
        international: 0,
    };
    #[inline]
    fn admits(self, scope: u16) -> bool {
        scope == 0 || scope == self.trunk || scope == self.international
    }
}

/// A matching rule, as reported by the `explain_*` functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub rule: RuleRef,
    pub action: Action,
    pub fact: Fact,
    /// The stored pattern that matched (normalised form).
    pub pattern: String,
}

/// Receives every applicable matching rule.
trait Sink {
    fn offer(
        &mut self,
        rule: u32,
        p: &HotPolicy,
        fact: Fact,
        spec: u16,
        pattern: impl FnOnce() -> String,
    );
}

/// The hot path's sink: keeps the best verdict, allocates nothing.
struct Best {
    v: Verdict,
    rank: (u8, u16),
}

impl Best {
    fn new() -> Best {
        Best {
            v: Verdict::ALLOW,
            rank: (0, 0),
        }
    }
}

impl Sink for Best {
    #[inline]
    fn offer(
        &mut self,
        rule: u32,
        p: &HotPolicy,
        fact: Fact,
        spec: u16,
        _: impl FnOnce() -> String,
    ) {
        let rank = (p.action.precedence(), spec);
        if rank > self.rank {
            self.rank = rank;
            self.v = Verdict {
                action: p.action,
                rule: Some(RuleRef(rule)),
                category: p.category,
                fact,
                protected: false,
            };
        }
    }
}

/// `explain`'s sink: the best verdict and every match.
struct Collect {
    best: Best,
    all: Vec<Match>,
}

impl Sink for Collect {
    fn offer(
        &mut self,
        rule: u32,
        p: &HotPolicy,
        fact: Fact,
        spec: u16,
        pattern: impl FnOnce() -> String,
    ) {
        self.best.offer(rule, p, fact, spec, String::new);
        self.all.push(Match {
            rule: RuleRef(rule),
            action: p.action,
            fact,
            pattern: pattern(),
        });
    }
}

/// Details of one rule, for answers, logs and appeals (not the hot path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    pub id: String,
    pub kind: Kind,
    pub action: Action,
    pub category: &'a str,
    pub source: &'a str,
    pub direction: Direction,
    pub ingress: Option<&'a str>,
    pub expires: Option<u64>,
    pub dns: Option<&'a DnsAction>,
    pub line: u32,
}

/// A compiled, validated, immutable rule set.
#[derive(Debug)]
pub struct Engine {
    header: Header,
    t: Tables,
    policies: Vec<HotPolicy>,
    plan: NumberPlan,
    keywords: Option<AhoCorasick>,
    international_scope: u16,
}

fn corrupt(s: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(s.into())
}

fn check_sorted(keys: &[u64], what: &str) -> Result<(), SnapshotError> {
    if keys.windows(2).all(|w| w[0] <= w[1]) {
        Ok(())
    } else {
        Err(corrupt(format!("{what} keys are not sorted")))
    }
}

fn check_rules(rules: &[u32], n: usize, what: &str) -> Result<(), SnapshotError> {
    match rules.iter().find(|&&r| r as usize >= n) {
        Some(r) => Err(corrupt(format!("{what} refers to rule {r} of {n}"))),
        None => Ok(()),
    }
}

/// The directory must be exactly the one the hashes give (so every lookup finds its bucket and
/// no range leaves the table).
fn check_directory(
    dir: &[u32],
    hashes: impl ExactSizeIterator<Item = u64>,
    what: &str,
) -> Result<(), SnapshotError> {
    let expected = build_directory(hashes);
    if dir == expected.as_slice() {
        Ok(())
    } else {
        Err(corrupt(format!(
            "{what} bucket directory does not match its keys"
        )))
    }
}

/// Entry range of the bucket `hash` falls in (validated directory: always in bounds).
#[inline]
fn bucket_range(dir: &[u32], hash: u64) -> std::ops::Range<usize> {
    let bits = (dir.len().saturating_sub(1)).max(1).ilog2();
    let b = bucket(hash, bits);
    match (dir.get(b), dir.get(b + 1)) {
        (Some(&s), Some(&e)) => s as usize..e as usize,
        _ => 0..0,
    }
}

fn check_str_table(s: &StrTable, n: usize, what: &str) -> Result<(), SnapshotError> {
    s.filter
        .validate()
        .map_err(|e| corrupt(format!("{what} filter: {e}")))?;
    if s.keys.len() != s.rules.len() || s.spans.len() != 2 * s.keys.len() {
        return Err(corrupt(format!("{what} table lengths disagree")));
    }
    check_sorted(&s.keys, what)?;
    check_directory(&s.dir, s.keys.iter().copied(), what)?;
    check_rules(&s.rules, n, what)?;
    for sp in s.spans.chunks_exact(2) {
        let end = sp[0] as usize + sp[1] as usize;
        if end > s.blob.len() {
            return Err(corrupt(format!("{what} string span beyond its blob")));
        }
    }
    Ok(())
}

impl Engine {
    /// Load and verify a snapshot file. Never panics on bad bytes: truncated, corrupt, foreign or
    /// wrong-version files are refused with a [`SnapshotError`] naming the problem.
    pub fn load(path: &Path) -> Result<Engine, Error> {
        let wrap = |source| Error::Snapshot {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let (h, t) = read_snapshot(std::io::BufReader::with_capacity(1 << 20, f)).map_err(wrap)?;
        Engine::from_tables(h, t).map_err(wrap)
    }

    /// Load from an in-memory snapshot image.
    pub fn from_bytes(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let (h, t) = read_snapshot(bytes)?;
        Engine::from_tables(h, t)
    }

    /// Validate every index in the tables and build the lookup structures.
    pub fn from_tables(header: Header, t: Tables) -> Result<Engine, SnapshotError> {
        let m = &t.meta;
        if t.rules.len() % 2 != 0 {
            return Err(corrupt("rule table has an odd length"));
        }
        let nrules = t.rules.len() / 2;
        if m.categories.len() > u16::MAX as usize
            || m.sources.len() > u16::MAX as usize
            || m.scopes.len() >= u16::MAX as usize
        {
            return Err(corrupt("too many categories, sources or scopes"));
        }
        let mut policies = Vec::with_capacity(m.policies.len());
        for p in &m.policies {
            if p.category as usize >= m.categories.len()
                || p.source as usize >= m.sources.len()
                || p.scope as usize > m.scopes.len()
            {
                return Err(corrupt(
                    "a policy refers to a missing category, source or scope",
                ));
            }
            policies.push(HotPolicy {
                expires: p.expires,
                category: p.category,
                scope: p.scope,
                action: p.action,
                kind: p.kind,
                direction: p.direction,
            });
        }
        for r in t.rules.chunks_exact(2) {
            if r[0] as usize >= policies.len() {
                return Err(corrupt(format!(
                    "a rule refers to policy {} of {}",
                    r[0],
                    policies.len()
                )));
            }
        }
        if t.id_index.len() % 3 != 0 {
            return Err(corrupt("id index has a bad length"));
        }
        for e in t.id_index.chunks_exact(3) {
            if e[0] as usize >= nrules || e[1] as usize + e[2] as usize > t.id_blob.len() {
                return Err(corrupt("id index entry out of range"));
            }
        }
        if !t
            .id_index
            .chunks_exact(3)
            .map(|e| e[0])
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0] < w[1])
        {
            return Err(corrupt("id index is not sorted"));
        }
        check_sorted(&t.protected, "protected")?;
        let KeyTable {
            filter,
            keys,
            rules,
            dir,
        } = &t.numbers;
        filter
            .validate()
            .map_err(|e| corrupt(format!("number filter: {e}")))?;
        if keys.len() != rules.len() {
            return Err(corrupt("number table lengths disagree"));
        }
        if !keys
            .windows(2)
            .all(|w| (number_hash(w[0]), w[0]) <= (number_hash(w[1]), w[1]))
        {
            return Err(corrupt("number keys are not in hash order"));
        }
        check_directory(dir, keys.iter().map(|&k| number_hash(k)), "number")?;
        check_rules(rules, nrules, "number table")?;
        if t.trie.len() % TRIE_STRIDE != 0 {
            return Err(corrupt("prefix trie has a bad length"));
        }
        let nodes = t.trie.len() / TRIE_STRIDE;
        for node in t.trie.chunks_exact(TRIE_STRIDE) {
            if node[..10].iter().any(|&c| c as usize >= nodes) {
                return Err(corrupt("prefix trie child out of range"));
            }
            if node[10] as usize + node[11] as usize > t.trie_rules.len() {
                return Err(corrupt("prefix trie rules out of range"));
            }
        }
        check_rules(&t.trie_rules, nrules, "prefix trie")?;
        check_str_table(&t.domains, nrules, "domain")?;
        check_str_table(&t.urls, nrules, "URL")?;
        check_rules(
            &m.keywords.iter().map(|k| k.1).collect::<Vec<_>>(),
            nrules,
            "keyword list",
        )?;
        let plan = NumberPlan::new(
            m.plan.country_code,
            &m.plan.trunk_prefix,
            &m.plan.international_prefix,
            m.plan.max_short_code_digits,
        )
        .map_err(|e| corrupt(format!("number plan: {e}")))?;
        let keywords = if m.keywords.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(m.keywords.iter().map(|k| k.0.as_bytes()))
                    .map_err(|e| corrupt(format!("keyword automaton: {e}")))?,
            )
        };
        let international_scope = m
            .scopes
            .iter()
            .position(|s| s == "international")
            .map_or(0, |i| i as u16 + 1);
        Ok(Engine {
            header,
            t,
            policies,
            plan,
            keywords,
            international_scope,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn version(&self) -> u64 {
        self.header.ruleset_version
    }
    pub fn meta(&self) -> &Meta {
        &self.t.meta
    }
    pub fn tables(&self) -> &Tables {
        &self.t
    }
    pub fn plan(&self) -> &NumberPlan {
        &self.plan
    }
    pub fn rule_count(&self) -> usize {
        self.t.rules.len() / 2
    }
    pub fn category(&self, id: u16) -> &str {
        self.t
            .meta
            .categories
            .get(id as usize)
            .map_or("", |s| s.as_str())
    }

    /// Parse a number with the snapshot's numbering plan (a convenience for planes and tools).
    pub fn parse_number(&self, s: &str) -> Option<Number> {
        Number::parse(s, &self.plan).ok()
    }

    /// The DNS action a rule carries (RPZ local data, NXDOMAIN, drop …), without allocating.
    pub fn dns_action(&self, r: RuleRef) -> Option<&DnsAction> {
        let pol_ix = *self.t.rules.get(2 * r.0 as usize)? as usize;
        self.t.meta.policies.get(pol_ix)?.dns.as_ref()
    }

    /// The rule's own id bytes, if it has one (binary search of the id index).
    fn own_id(&self, r: RuleRef) -> Option<&[u8]> {
        let ix = &self.t.id_index;
        // Binary search over the (rule, offset, length) triples.
        let (mut lo, mut hi) = (0, ix.len() / 3);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if ix[3 * mid] < r.0 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        ix.get(3 * lo..3 * lo + 3)
            .filter(|e| e[0] == r.0)
            .and_then(|e| {
                self.t
                    .id_blob
                    .get(e[1] as usize..e[1] as usize + e[2] as usize)
            })
    }

    /// Writes the rule's id (its own id, else `source:line`) and returns its category, without
    /// allocating: what a plane needs to say why (a SIP Reason header, a warning page).
    /// `None` for a reference that is not in this snapshot.
    pub fn write_rule_id(&self, r: RuleRef, w: &mut impl std::fmt::Write) -> Option<&str> {
        let i = r.0 as usize;
        let pol_ix = *self.t.rules.get(2 * i)? as usize;
        let line = *self.t.rules.get(2 * i + 1)?;
        let m = &self.t.meta;
        let p = m.policies.get(pol_ix)?;
        let ok = match self.own_id(r) {
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => w.write_str(s),
                Err(_) => b
                    .iter()
                    .try_for_each(|&c| w.write_char(if c.is_ascii() { c as char } else { '?' })),
            },
            None => {
                let source = m.sources.get(p.source as usize).map_or("", |s| s.as_str());
                write!(w, "{source}:{line}")
            }
        };
        ok.ok()?;
        Some(
            m.categories
                .get(p.category as usize)
                .map_or("", |s| s.as_str()),
        )
    }

    /// Details of a rule. `None` for a reference that is not in this snapshot.
    pub fn rule_info(&self, r: RuleRef) -> Option<RuleInfo<'_>> {
        let i = r.0 as usize;
        let pol_ix = *self.t.rules.get(2 * i)? as usize;
        let line = *self.t.rules.get(2 * i + 1)?;
        let m = &self.t.meta;
        let p = m.policies.get(pol_ix)?;
        let source = m.sources.get(p.source as usize).map_or("", |s| s.as_str());
        let own = self
            .own_id(r)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        Some(RuleInfo {
            id: own.unwrap_or_else(|| format!("{source}:{line}")),
            kind: p.kind,
            action: p.action,
            category: m
                .categories
                .get(p.category as usize)
                .map_or("", |s| s.as_str()),
            source,
            direction: p.direction,
            ingress: (p.scope > 0).then(|| {
                m.scopes
                    .get(p.scope as usize - 1)
                    .map_or("", |s| s.as_str())
            }),
            expires: (p.expires > 0).then_some(p.expires),
            dns: p.dns.as_ref(),
            line,
        })
    }

    #[inline]
    fn policy(&self, rule: u32) -> Option<&HotPolicy> {
        let p = *self.t.rules.get(2 * rule as usize)?;
        self.policies.get(p as usize)
    }

    /// A policy applies now and on this ingress.
    #[inline]
    fn live(&self, p: &HotPolicy, now: u64, ingress: Ingress) -> bool {
        (p.expires == 0 || now < p.expires) && ingress.admits(p.scope)
    }

    fn ingress(&self, call: &Call<'_>) -> Ingress {
        let trunk = if call.trunk.is_empty() {
            0
        } else {
            self.t
                .meta
                .scopes
                .iter()
                .position(|s| s == call.trunk)
                .map_or(0, |i| i as u16 + 1)
        };
        Ingress {
            trunk,
            international: if call.international {
                self.international_scope
            } else {
                0
            },
        }
    }

    /// Is this number protected (emergency, PSAP …)? Also recognises `+86110` as `110`.
    #[inline]
    pub fn is_protected(&self, n: Number) -> bool {
        let hit = |k: u64| self.t.protected.binary_search(&k).is_ok();
        hit(n.key())
            || n.as_national_short_code(&self.plan)
                .is_some_and(|s| hit(s.key()))
    }

    fn match_number<S: Sink>(
        &self,
        n: Number,
        fact: Fact,
        now: u64,
        ingress: Ingress,
        sink: &mut S,
    ) {
        let dir_ok = |d: Direction| match fact {
            Fact::Caller => d.covers_caller(),
            _ => d.covers_callee(),
        };
        let key = n.key();
        let tab = &self.t.numbers;
        if tab.filter.may_contain(key) {
            for j in bucket_range(&tab.dir, number_hash(key)) {
                if tab.keys[j] != key {
                    continue;
                }
                let r = tab.rules[j];
                if let Some(p) = self.policy(r) {
                    if p.kind == Kind::Number && dir_ok(p.direction) && self.live(p, now, ingress) {
                        sink.offer(r, p, fact, u16::MAX, || n.to_string());
                    }
                }
            }
        }
        if n.is_short_code() || self.t.trie.is_empty() {
            return;
        }
        let mut buf = [0u8; 20];
        let digits = n.digits(&mut buf);
        let mut node = 0usize;
        for (depth, &d) in digits.iter().enumerate() {
            let Some(&child) = self
                .t
                .trie
                .get(node * TRIE_STRIDE + (d.wrapping_sub(b'0') as usize).min(9))
            else {
                return;
            };
            if child == 0 {
                return;
            }
            node = child as usize;
            let base = node * TRIE_STRIDE;
            let (start, count) = (
                self.t.trie[base + 10] as usize,
                self.t.trie[base + 11] as usize,
            );
            for &r in self.t.trie_rules.get(start..start + count).unwrap_or(&[]) {
                if let Some(p) = self.policy(r) {
                    if p.kind == Kind::NumberPrefix
                        && dir_ok(p.direction)
                        && self.live(p, now, ingress)
                    {
                        let len = depth + 1;
                        sink.offer(r, p, fact, len as u16, || {
                            format!("+{}", String::from_utf8_lossy(&digits[..len]))
                        });
                    }
                }
            }
        }
    }

    fn decide_call<S: Sink>(&self, call: &Call<'_>, now: u64, sink: &mut S) -> Option<Verdict> {
        // Safety rule, not configurable: a protected callee is never blocked …
        if let Some(c) = call.callee {
            if self.is_protected(c) {
                return Some(Verdict {
                    protected: true,
                    fact: Fact::Callee,
                    ..Verdict::ALLOW
                });
            }
        }
        // … nor a PSAP call-back. A protected number presented as caller on an international
        // trunk is not a call-back (PSAPs do not call from abroad): it is screened like any other.
        if let Some(c) = call.caller {
            if !call.international && self.is_protected(c) {
                return Some(Verdict {
                    protected: true,
                    fact: Fact::Caller,
                    ..Verdict::ALLOW
                });
            }
        }
        let ingress = self.ingress(call);
        if let Some(n) = call.caller {
            self.match_number(n, Fact::Caller, now, ingress, sink);
        }
        if let Some(n) = call.callee {
            self.match_number(n, Fact::Callee, now, ingress, sink);
        }
        None
    }

    /// Screen a call on its caller and callee.
    pub fn check_call(&self, call: &Call<'_>, now: u64) -> Verdict {
        let mut best = Best::new();
        self.decide_call(call, now, &mut best).unwrap_or(best.v)
    }

    /// Screen one number on one side of a call, on any ingress (the `check` tool's question).
    pub fn check_number(&self, n: Number, side: Fact, now: u64) -> Verdict {
        let call = match side {
            Fact::Caller => Call {
                caller: Some(n),
                callee: None,
                trunk: "",
                international: false,
            },
            _ => Call {
                caller: None,
                callee: Some(n),
                trunk: "",
                international: false,
            },
        };
        self.check_call(&call, now)
    }

    /// Every rule that matches a call, and the verdict.
    pub fn explain_call(&self, call: &Call<'_>, now: u64) -> (Verdict, Vec<Match>) {
        let mut c = Collect {
            best: Best::new(),
            all: Vec::new(),
        };
        let v = self.decide_call(call, now, &mut c).unwrap_or(c.best.v);
        (v, c.all)
    }

    /// `host` must be lower-case ASCII without a trailing dot.
    fn match_host<S: Sink>(&self, host: &[u8], now: u64, sink: &mut S) {
        let tab = &self.t.domains;
        if tab.keys.is_empty() {
            return;
        }
        for_each_suffix(host, |key, off| {
            if tab.filter.may_contain(key) {
                let suffix = &host[off..];
                for j in bucket_range(&tab.dir, key) {
                    if tab.keys[j] != key {
                        continue;
                    }
                    let (o, l) = (tab.spans[2 * j] as usize, tab.spans[2 * j + 1] as usize);
                    if tab.blob.get(o..o + l) == Some(suffix) {
                        let r = tab.rules[j];
                        if let Some(p) = self.policy(r) {
                            let kind_ok = match p.kind {
                                Kind::DomainExact => off == 0,
                                Kind::DomainSuffix => true,
                                Kind::DomainSubdomains => off > 0,
                                _ => false,
                            };
                            if kind_ok && self.live(p, now, Ingress::ANY) {
                                let spec =
                                    (suffix.len() as u16).saturating_mul(2) + u16::from(off == 0);
                                sink.offer(r, p, Fact::Domain, spec, || {
                                    String::from_utf8_lossy(suffix).into_owned()
                                });
                            }
                        }
                    }
                }
            }
            true
        });
    }

    fn domain_into<S: Sink>(&self, name: &[u8], now: u64, sink: &mut S) {
        let mut buf = [0u8; 256];
        match ascii_host(name, &mut buf) {
            Ok(host) => self.match_host(host, now, sink),
            Err(_) if !name.is_ascii() => {
                // Slow path: an internationalised name in Unicode form (DNS itself carries
                // punycode, so planes rarely get here).
                if let Some(n) = std::str::from_utf8(name)
                    .ok()
                    .and_then(|s| normalize_domain(s).ok())
                {
                    self.match_host(n.as_bytes(), now, sink);
                }
            }
            // Not a valid host name: no rule can match it.
            Err(_) => {}
        }
    }

    /// Screen a host name (DNS QNAME, HTTP Host, TLS/QUIC SNI). Case and a trailing dot are
    /// ignored. Matches on label boundaries only: `notevil.com` never matches `evil.com`.
    pub fn check_domain(&self, name: &[u8], now: u64) -> Verdict {
        let mut best = Best::new();
        self.domain_into(name, now, &mut best);
        best.v
    }

    pub fn explain_domain(&self, name: &[u8], now: u64) -> (Verdict, Vec<Match>) {
        let mut c = Collect {
            best: Best::new(),
            all: Vec::new(),
        };
        self.domain_into(name, now, &mut c);
        (c.best.v, c.all)
    }

    fn keywords_into<S: Sink>(&self, text: &[u8], now: u64, sink: &mut S) {
        let Some(ac) = &self.keywords else { return };
        for m in ac.find_overlapping_iter(text) {
            if let Some(&(_, r)) = self.t.meta.keywords.get(m.pattern().as_usize()) {
                if let Some(p) = self.policy(r) {
                    if self.live(p, now, Ingress::ANY) {
                        sink.offer(r, p, Fact::Keyword, (m.end() - m.start()) as u16, || {
                            String::from_utf8_lossy(&text[m.start()..m.end()]).into_owned()
                        });
                    }
                }
            }
        }
    }

    fn url_into<S: Sink>(&self, url: &[u8], now: u64, scratch: &mut Scratch, sink: &mut S) {
        let Scratch { url: us, expr } = scratch;
        let Ok(c) = canonicalize(url, us) else { return };
        self.match_host_any(c.host, now, sink);
        let tab = &self.t.urls;
        if !tab.keys.is_empty() {
            for_each_expression(&c, expr, |e: &[u8]| {
                let key = key_of(e);
                if tab.filter.may_contain(key) {
                    for j in bucket_range(&tab.dir, key) {
                        if tab.keys[j] != key {
                            continue;
                        }
                        let (o, l) = (tab.spans[2 * j] as usize, tab.spans[2 * j + 1] as usize);
                        if tab.blob.get(o..o + l) == Some(e) {
                            let r = tab.rules[j];
                            if let Some(p) = self.policy(r) {
                                if p.kind == Kind::Url && self.live(p, now, Ingress::ANY) {
                                    // Longer expressions are more specific; beat the host's rule.
                                    let spec = 1024u16.saturating_add(e.len() as u16);
                                    sink.offer(r, p, Fact::Url, spec, || {
                                        String::from_utf8_lossy(e).into_owned()
                                    });
                                }
                            }
                        }
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        }
        self.keywords_into(url, now, sink);
    }

    /// A canonical URL host may be an IP literal or carry characters `ascii_host` refuses; try it
    /// as a name anyway. IP hosts are refused by `ascii_host` and reach only the URL rules (a URL
    /// rule may name an IP: `http://203.0.113.7/login.php`).
    fn match_host_any<S: Sink>(&self, host: &[u8], now: u64, sink: &mut S) {
        let mut buf = [0u8; 256];
        if let Ok(h) = ascii_host(host, &mut buf) {
            self.match_host(h, now, sink);
        }
    }

    /// Screen a URL: its host against the domain rules, its Safe Browsing expressions against the
    /// URL rules, its text against the keywords.
    pub fn check_url(&self, url: &[u8], now: u64, scratch: &mut Scratch) -> Verdict {
        let mut best = Best::new();
        self.url_into(url, now, scratch, &mut best);
        best.v
    }

    pub fn explain_url(&self, url: &[u8], now: u64) -> (Verdict, Vec<Match>) {
        let mut c = Collect {
            best: Best::new(),
            all: Vec::new(),
        };
        self.url_into(url, now, &mut Scratch::new(), &mut c);
        (c.best.v, c.all)
    }

    fn message_into<S: Sink>(&self, text: &str, now: u64, scratch: &mut Scratch, sink: &mut S) {
        self.keywords_into(text.as_bytes(), now, sink);
        for u in find_urls(text) {
            self.url_into(u.as_bytes(), now, scratch, sink);
        }
    }

    /// Screen message text (SMS, chat): keywords, and every URL found in it.
    pub fn check_message(&self, text: &str, now: u64, scratch: &mut Scratch) -> Verdict {
        let mut best = Best::new();
        self.message_into(text, now, scratch, &mut best);
        best.v
    }

    pub fn explain_message(&self, text: &str, now: u64) -> (Verdict, Vec<Match>) {
        let mut c = Collect {
            best: Best::new(),
            all: Vec::new(),
        };
        self.message_into(text, now, &mut Scratch::new(), &mut c);
        (c.best.v, c.all)
    }

    /// Visit every stored entry as (kind, normalised pattern, rule) — for `diff` and audits.
    pub fn for_each_entry(&self, mut f: impl FnMut(Kind, &str, RuleRef)) {
        let t = &self.t;
        for (k, r) in t.numbers.keys.iter().zip(&t.numbers.rules) {
            if let Some(n) = Number::from_key(*k) {
                f(Kind::Number, &n.to_string(), RuleRef(*r));
            }
        }
        // Depth-first walk of the prefix trie.
        let mut stack: Vec<(usize, u64, u8)> = vec![(0, 0, 0)];
        while let Some((node, value, len)) = stack.pop() {
            let base = node * TRIE_STRIDE;
            if len > 0 {
                let (s, c) = (t.trie[base + 10] as usize, t.trie[base + 11] as usize);
                if let Some(p) = Prefix::from_digits(value, len) {
                    for &r in t.trie_rules.get(s..s + c).unwrap_or(&[]) {
                        f(Kind::NumberPrefix, &p.to_string(), RuleRef(r));
                    }
                }
            }
            if len < 15 && !t.trie.is_empty() {
                for d in (0..10u64).rev() {
                    let child = t.trie[base + d as usize] as usize;
                    if child != 0 {
                        stack.push((child, value * 10 + d, len + 1));
                    }
                }
            }
        }
        for tab in [&t.domains, &t.urls] {
            for (j, r) in tab.rules.iter().enumerate() {
                let (o, l) = (tab.spans[2 * j] as usize, tab.spans[2 * j + 1] as usize);
                let s = String::from_utf8_lossy(tab.blob.get(o..o + l).unwrap_or(&[])).into_owned();
                let kind = self.policy(*r).map_or(Kind::Url, |p| p.kind);
                f(kind, &s, RuleRef(*r));
            }
        }
        for (k, r) in &t.meta.keywords {
            f(Kind::Keyword, k, RuleRef(*r));
        }
    }
}
