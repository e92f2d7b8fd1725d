//! The workload: every request of a run, its scheduled send time and its expected outcome.
//!
//! Built from a [`Scenario`] alone, before any socket is opened: the facts come from the same
//! generator as `gen-rules` (same seed, so the same rule set), and each request's expected
//! outcome follows from how its fact was drawn — a blocked number, a name below a listed
//! domain, a look-alike that must pass — never from asking an engine. That is the oracle's
//! ground truth.
//!
//! The schedule is open-loop: request `i` of a plane with rate `r` is due at `i / r` seconds
//! after the start, whatever happens to the others ([`schedule`]).

use crate::prng::{Rng, Stream};
use crate::rulegen::{draw_number, e164, in_negative_half, parity_key, pow10, Plan, Reach};
use crate::scenario::Scenario;
use crate::truth::{contains_keyword_seed, Needs, World};
use serde::Serialize;
use std::fmt;

/// The four planes a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    Sip,
    Dns,
    Http,
    Check,
}

impl Plane {
    pub const ALL: [Plane; 4] = [Plane::Sip, Plane::Dns, Plane::Http, Plane::Check];

    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Sip => "sip",
            Plane::Dns => "dns",
            Plane::Http => "http",
            Plane::Check => "check",
        }
    }

    /// What one request is called in the report (`calls/s`, `queries/s`…).
    pub fn unit(self) -> &'static str {
        match self {
            Plane::Sip => "calls",
            Plane::Dns => "queries",
            Plane::Http | Plane::Check => "requests",
        }
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway should do with a request, from the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Blocked,
    Warned,
    Tagged,
    Allowed,
    /// A call to a protected (emergency) number: it must pass untouched whoever calls.
    Protected,
}

impl Expected {
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Blocked => "blocked",
            Expected::Warned => "warned",
            Expected::Tagged => "tagged",
            Expected::Allowed => "allowed",
            Expected::Protected => "protected",
        }
    }
}

/// The fact a request carries, per plane and endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// A SIP INVITE (or a check-API call) from `caller` to `callee` on trunk `trunk` (index in
    /// the scenario's trunks).
    Call {
        caller: String,
        callee: String,
        trunk: usize,
    },
    /// A DNS question.
    Query {
        name: String,
        qtype: u16,
        tcp: bool,
    },
    /// An HTTP GET through the proxy.
    Get {
        url: String,
    },
    /// Check-API bodies.
    CheckCall {
        caller: String,
        callee: String,
        trunk: usize,
    },
    CheckDomain {
        domain: String,
    },
    CheckUrl {
        url: String,
    },
    CheckMessage {
        text: String,
    },
}

/// One request of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    pub plane: Plane,
    /// Index in its plane's schedule.
    pub seq: u32,
    /// Scheduled send time, nanoseconds after the run's start.
    pub at_ns: u64,
    pub expected: Expected,
    pub fact: Fact,
}

impl Request {
    /// The request's facts in one line, for the report's examples.
    pub fn describe(&self, trunks: &[String]) -> String {
        let trunk = |i: &usize| trunks.get(*i).map_or("-", String::as_str).to_string();
        match &self.fact {
            Fact::Call {
                caller,
                callee,
                trunk: t,
            } => format!("INVITE caller {caller} callee {callee} trunk {}", trunk(t)),
            Fact::Query { name, qtype, tcp } => format!(
                "{} {name} over {}",
                if *qtype == crate::dns::TYPE_AAAA {
                    "AAAA"
                } else {
                    "A"
                },
                if *tcp { "TCP" } else { "UDP" }
            ),
            Fact::Get { url } => format!("GET {url}"),
            Fact::CheckCall {
                caller,
                callee,
                trunk: t,
            } => format!(
                "POST /v1/check/call caller {caller} callee {callee} ingress {}",
                trunk(t)
            ),
            Fact::CheckDomain { domain } => format!("POST /v1/check/domain {domain}"),
            Fact::CheckUrl { url } => format!("POST /v1/check/url {url}"),
            Fact::CheckMessage { text } => format!("POST /v1/check/message {text:?}"),
        }
    }

    /// The caller number, for calls (SIP and check API).
    pub fn caller(&self) -> Option<&str> {
        match &self.fact {
            Fact::Call { caller, .. } | Fact::CheckCall { caller, .. } => Some(caller),
            _ => None,
        }
    }
}

/// Send times (ns after the start) of a plane with `rate` per second for `duration_s`: evenly
/// spaced, `floor(rate · duration)` of them, the first at 0.
pub fn schedule(rate: f64, duration_s: f64) -> Vec<u64> {
    if !(rate > 0.0 && rate.is_finite() && duration_s > 0.0 && duration_s.is_finite()) {
        return Vec::new();
    }
    // The small epsilon keeps 0.1 · 30 = 2.9999999999999996 at 3.
    let n = (rate * duration_s + 1e-9).floor() as u64;
    let step = 1e9 / rate;
    (0..n).map(|i| (i as f64 * step).round() as u64).collect()
}

/// All requests of a run, per plane, each list in schedule order.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    pub sip: Vec<Request>,
    pub dns: Vec<Request>,
    pub http: Vec<Request>,
    pub check: Vec<Request>,
    /// Trunk names by index (empty: none configured).
    pub trunks: Vec<String>,
}

impl Workload {
    pub fn plane(&self, p: Plane) -> &[Request] {
        match p {
            Plane::Sip => &self.sip,
            Plane::Dns => &self.dns,
            Plane::Http => &self.http,
            Plane::Check => &self.check,
        }
    }

    pub fn len(&self) -> usize {
        self.sip.len() + self.dns.len() + self.http.len() + self.check.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Request> {
        self.sip
            .iter()
            .chain(&self.dns)
            .chain(&self.http)
            .chain(&self.check)
    }
}

/// The fact pools a workload draws from, each with its ground truth.
#[derive(Debug, Default)]
struct Pools {
    blocked_numbers: Vec<String>,
    tagged_numbers: Vec<String>,
    clean_numbers: Vec<String>,
    protected: Vec<String>,
    blocked_domains: Vec<String>,
    blocked_subdomains: Vec<String>,
    clean_domains: Vec<String>,
    lookalikes: Vec<String>,
    blocked_urls: Vec<String>,
    clean_urls: Vec<String>,
    keyword_messages: Vec<String>,
    clean_messages: Vec<String>,
}

/// Clean numbers drawn per plan: the plans the scenario weighs.
const CLEAN_NUMBERS: usize = 5000;

fn pools(sc: &Scenario) -> Result<Pools, String> {
    let spec = sc.gen_spec();
    let world = World::build(&spec, Needs::ALL);
    let truth = world.truth();
    let p = truth.positives;
    let n = truth.negatives;
    let mut pools = Pools {
        blocked_numbers: p.numbers,
        tagged_numbers: p.numbers_under_prefix,
        protected: sc.numbers.protected.clone(),
        blocked_domains: p.domains,
        blocked_subdomains: p.subdomains_of_blocked,
        blocked_urls: p.urls,
        keyword_messages: p.messages_with_keyword,
        clean_messages: n.messages,
        clean_urls: n.urls,
        ..Pools::default()
    };
    // A clean name must also hold no keyword: keywords match URLs, and `http://name/` is one.
    pools.clean_domains = n
        .domains
        .into_iter()
        .filter(|d| !contains_keyword_seed(d))
        .collect();

    // Clean numbers from the scenario's plans, kept out of the rule set the way the generator
    // keeps its own negatives out: the other half of the number space, under no prefix.
    let key = parity_key(spec.seed);
    let w = &sc.numbers.plans;
    let table = [
        (0u8, w.cn_mobile),
        (1, w.cn_fixed),
        (2, w.international),
        (3, w.iot),
    ];
    const INTL: [Plan; 6] = [Plan::Uk, Plan::Nanp, Plan::Ph, Plan::Kh, Plan::My, Plan::Mm];
    let mut rng = Rng::new(spec.seed, Stream::TrafficNumbers);
    let mut seen = std::collections::HashSet::new();
    let mut budget = CLEAN_NUMBERS * 50;
    while pools.clean_numbers.len() < CLEAN_NUMBERS && budget > 0 {
        budget -= 1;
        let d = match rng.weighted(&table) {
            0 => draw_number(&mut rng, Plan::CnMobile).0,
            1 => draw_number(&mut rng, Plan::CnLandline).0,
            2 => {
                let plan = rng.pick(&INTL);
                draw_number(&mut rng, plan).0
            }
            // IoT / data-only segments 146 and 148 (MIIT), 11 digits like other mobiles.
            _ => {
                let seg = if rng.chance(500) { 146 } else { 148 };
                86 * pow10(11) + seg * pow10(8) + rng.below(pow10(8))
            }
        };
        let s = e164(d);
        if in_negative_half(key, d)
            && !world.under_prefix(d)
            && !sc
                .numbers
                .protected
                .iter()
                .any(|p| s.ends_with(p.as_str()) && s.len() == p.len())
            && seen.insert(d)
        {
            pools.clean_numbers.push(s);
        }
    }

    // Look-alikes of listed names that no rule covers and that hold no keyword. Whether a rule
    // covers a name follows the rule's format (a hosts line is one name, `*.x` only below x).
    let blocked = |name: &str| world.domain_blocked(name);
    for (i, d) in pools.blocked_domains.iter().enumerate() {
        let (first, rest) = d.split_once('.').unwrap_or((d.as_str(), "com"));
        let cand = match i % 4 {
            // A letter doubled (typosquatting in reverse: the user types the real name).
            0 => format!("{first}{}.{rest}", first.chars().last().unwrap_or('x')),
            // The name glued behind a prefix: another registrable name.
            1 => format!("my{d}"),
            // The dots made dashes under a common TLD.
            2 => format!("{}.com", d.replace('.', "-")),
            // The name as the left labels of another registrable domain.
            _ => format!("{d}.example-cdn.net"),
        };
        let fits = cand.len() <= 253 && cand.split('.').all(|l| !l.is_empty() && l.len() <= 63);
        if fits && !blocked(&cand) && !contains_keyword_seed(&cand) {
            pools.lookalikes.push(cand);
        }
    }
    // The formats' own boundaries: a name below an exact-only rule (a hosts line, RPZ `x`,
    // `=x`) and the listed name of a rule that covers only the names below it (`*.x`).
    for (i, (d, reach)) in world.domain_sample.iter().enumerate() {
        let cand = match reach {
            Reach::Exact => format!("{}.{d}", if i % 2 == 0 { "www" } else { "m" }),
            Reach::Below => d.clone(),
            Reach::Suffix => continue,
        };
        if cand.len() <= 253 && !blocked(&cand) && !contains_keyword_seed(&cand) {
            pools.lookalikes.push(cand);
        }
    }
    for l in &sc.domains.lookalikes {
        let l = l.to_ascii_lowercase();
        if blocked(&l) {
            return Err(format!(
                "domains.lookalikes: {l:?} is covered by a rule of the generated set; a look-alike must not be"
            ));
        }
        pools.lookalikes.push(l);
    }
    Ok(pools)
}

/// True with probability `p` (0..=1), in millionths.
fn chance(rng: &mut Rng, p: f64) -> bool {
    (rng.below(1_000_000) as f64) < p * 1_000_000.0
}

/// One element of a pool, or `fallback` when the pool is empty (a tiny rule set).
fn pick(rng: &mut Rng, pool: &[String], fallback: &str) -> String {
    if pool.is_empty() {
        return fallback.to_string();
    }
    let i = rng.below(pool.len() as u64) as usize;
    pool.get(i).cloned().unwrap_or_else(|| fallback.to_string())
}

fn trunk_of(rng: &mut Rng, sc: &Scenario) -> usize {
    let table: Vec<(usize, u32)> = sc
        .trunks
        .iter()
        .enumerate()
        .map(|(i, t)| (i, t.weight))
        .collect();
    if table.is_empty() {
        0
    } else {
        rng.weighted(&table)
    }
}

/// A call's parties and its truth: a protected callee passes whatever the caller; otherwise
/// a scam call has a blocked caller or one under a tagged prefix.
fn call(rng: &mut Rng, sc: &Scenario, p: &Pools) -> (String, String, Expected) {
    let scam = chance(rng, sc.scam_share);
    let protected = chance(rng, sc.numbers.protected_share);
    let tagged = chance(rng, sc.numbers.tagged_share);
    let (caller, mut expected) = if !scam {
        (
            pick(rng, &p.clean_numbers, "+8613912345678"),
            Expected::Allowed,
        )
    } else if tagged && !p.tagged_numbers.is_empty() {
        (pick(rng, &p.tagged_numbers, ""), Expected::Tagged)
    } else {
        (pick(rng, &p.blocked_numbers, ""), Expected::Blocked)
    };
    let callee = if protected && !p.protected.is_empty() {
        expected = Expected::Protected;
        pick(rng, &p.protected, "110")
    } else {
        pick(rng, &p.clean_numbers, "+8613912345678")
    };
    if caller.is_empty() {
        // No listed number of that kind in a tiny set: a clean call instead.
        return (
            pick(rng, &p.clean_numbers, "+8613912345678"),
            callee,
            if expected == Expected::Protected {
                Expected::Protected
            } else {
                Expected::Allowed
            },
        );
    }
    (caller, callee, expected)
}

fn name(rng: &mut Rng, sc: &Scenario, p: &Pools) -> (String, Expected) {
    if chance(rng, sc.scam_share) && !p.blocked_domains.is_empty() {
        let pool = if chance(rng, sc.domains.subdomain_share) && !p.blocked_subdomains.is_empty() {
            &p.blocked_subdomains
        } else {
            &p.blocked_domains
        };
        (pick(rng, pool, ""), Expected::Blocked)
    } else if chance(rng, sc.domains.lookalike_share) && !p.lookalikes.is_empty() {
        (pick(rng, &p.lookalikes, ""), Expected::Allowed)
    } else {
        (
            pick(rng, &p.clean_domains, "example.org"),
            Expected::Allowed,
        )
    }
}

fn url(rng: &mut Rng, sc: &Scenario, p: &Pools) -> (String, Expected) {
    if chance(rng, sc.domains.url_share) {
        if chance(rng, sc.scam_share) && !p.blocked_urls.is_empty() {
            (pick(rng, &p.blocked_urls, ""), Expected::Blocked)
        } else {
            (
                pick(rng, &p.clean_urls, "http://example.org/"),
                Expected::Allowed,
            )
        }
    } else {
        let (n, e) = name(rng, sc, p);
        (format!("http://{n}/"), e)
    }
}

/// Each plane's own random stream, so that one plane's rate never changes another's facts.
fn plane_rng(seed: u64, plane: Plane) -> Rng {
    Rng::new(
        seed ^ (plane as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        Stream::Traffic,
    )
}

/// Every request of the scenario. Same scenario, same workload.
pub fn build(sc: &Scenario) -> Result<Workload, String> {
    let p = pools(sc)?;
    let mut w = Workload {
        trunks: sc.trunks.iter().map(|t| t.name.clone()).collect(),
        ..Workload::default()
    };
    let endpoints = [
        (0u8, sc.check.call),
        (1, sc.check.domain),
        (2, sc.check.url),
        (3, sc.check.message),
    ];
    for plane in Plane::ALL {
        let rate = match plane {
            Plane::Sip => sc.rates.sip,
            Plane::Dns => sc.rates.dns,
            Plane::Http => sc.rates.http,
            Plane::Check => sc.rates.check,
        };
        let mut rng = plane_rng(sc.seed, plane);
        let times = schedule(rate, sc.duration_s);
        let mut out = Vec::with_capacity(times.len());
        for (seq, at_ns) in times.into_iter().enumerate() {
            let (fact, expected) = match plane {
                Plane::Sip => {
                    let (caller, callee, e) = call(&mut rng, sc, &p);
                    let trunk = trunk_of(&mut rng, sc);
                    (
                        Fact::Call {
                            caller,
                            callee,
                            trunk,
                        },
                        e,
                    )
                }
                Plane::Dns => {
                    let (name, e) = name(&mut rng, sc, &p);
                    let qtype = if chance(&mut rng, sc.domains.aaaa_share) {
                        crate::dns::TYPE_AAAA
                    } else {
                        crate::dns::TYPE_A
                    };
                    let tcp = chance(&mut rng, sc.domains.dns_tcp_share);
                    (Fact::Query { name, qtype, tcp }, e)
                }
                Plane::Http => {
                    let (u, e) = url(&mut rng, sc, &p);
                    // Through a plain HTTP proxy: the scheme does not change a Safe Browsing
                    // match, and https would need a CONNECT tunnel.
                    let u = match u.strip_prefix("https://") {
                        Some(rest) => format!("http://{rest}"),
                        None => u,
                    };
                    (Fact::Get { url: u }, e)
                }
                Plane::Check => match rng.weighted(&endpoints) {
                    0 => {
                        let (caller, callee, e) = call(&mut rng, sc, &p);
                        let trunk = trunk_of(&mut rng, sc);
                        (
                            Fact::CheckCall {
                                caller,
                                callee,
                                trunk,
                            },
                            e,
                        )
                    }
                    1 => {
                        let (domain, e) = name(&mut rng, sc, &p);
                        (Fact::CheckDomain { domain }, e)
                    }
                    2 => {
                        let (url, e) = url(&mut rng, sc, &p);
                        (Fact::CheckUrl { url }, e)
                    }
                    _ => {
                        if chance(&mut rng, sc.scam_share) && !p.keyword_messages.is_empty() {
                            let text = pick(&mut rng, &p.keyword_messages, "");
                            // The generated keyword list is a `warn` source (rules.toml).
                            (Fact::CheckMessage { text }, Expected::Warned)
                        } else {
                            let text = pick(&mut rng, &p.clean_messages, "see you at 7");
                            (Fact::CheckMessage { text }, Expected::Allowed)
                        }
                    }
                },
            };
            out.push(Request {
                plane,
                seq: seq as u32,
                at_ns,
                expected,
                fact,
            });
        }
        match plane {
            Plane::Sip => w.sip = out,
            Plane::Dns => w.dns = out,
            Plane::Http => w.http = out,
            Plane::Check => w.check = out,
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn schedule_math() {
        assert_eq!(schedule(3.0, 1.0), vec![0, 333_333_333, 666_666_667]);
        assert_eq!(schedule(0.1, 30.0).len(), 3);
        assert_eq!(schedule(0.0, 10.0), Vec::<u64>::new());
        assert_eq!(schedule(f64::NAN, 10.0), Vec::<u64>::new());
        let s = schedule(1000.0, 2.5);
        assert_eq!(s.len(), 2500);
        assert_eq!(s.last(), Some(&2_499_000_000));
        assert!(s.windows(2).all(|w| w[1] - w[0] == 1_000_000));
    }

    fn scenario() -> Scenario {
        Scenario::parse(
            "seed = 5\nduration_s = 2\nscam_share = 0.4\n\
             [rates]\nsip = 100\ndns = 100\nhttp = 50\ncheck = 80\n\
             [rules]\nnumbers = 2000\nprefixes = 10\ndomains = 1000\nurls = 200\nkeywords = 50\n\
             [numbers]\nprotected_share = 0.05\ntagged_share = 0.2\n\
             [domains]\nlookalike_share = 0.3\nsubdomain_share = 0.3\ndns_tcp_share = 0.1\n\
             [[trunks]]\nname = \"domestic\"\nsource = \"127.0.0.1\"\nweight = 9\n\
             [[trunks]]\nname = \"international\"\nsource = \"127.0.0.2\"\n",
        )
        .unwrap()
    }

    #[test]
    fn same_seed_same_requests_and_every_outcome_appears() {
        let sc = scenario();
        let a = build(&sc).unwrap();
        let b = build(&sc).unwrap();
        assert_eq!(a.sip, b.sip);
        assert_eq!(a.check, b.check);
        assert_eq!(
            (a.sip.len(), a.dns.len(), a.http.len(), a.check.len()),
            (200, 200, 100, 160)
        );
        for e in [
            Expected::Blocked,
            Expected::Tagged,
            Expected::Allowed,
            Expected::Protected,
        ] {
            assert!(a.sip.iter().any(|r| r.expected == e), "{e:?}");
        }
        assert!(a.check.iter().any(|r| r.expected == Expected::Warned));
        assert!(a
            .dns
            .iter()
            .any(|r| matches!(&r.fact, Fact::Query { tcp: true, .. })));
        // Another seed, other requests.
        let mut other = sc.clone();
        other.seed = 6;
        assert_ne!(build(&other).unwrap().sip, a.sip);
    }

    #[test]
    fn truth_agrees_with_the_generated_rules() {
        let sc = scenario();
        let w = build(&sc).unwrap();
        let set = crate::generate(&sc.gen_spec());
        let numbers: std::collections::HashSet<&str> =
            set.numbers.iter().map(String::as_str).collect();
        for r in &w.sip {
            let Fact::Call { caller, callee, .. } = &r.fact else {
                panic!("not a call")
            };
            let listed = numbers.contains(caller.as_str());
            match r.expected {
                Expected::Blocked => assert!(listed, "{caller}"),
                Expected::Allowed => {
                    assert!(!listed && !set.prefixes.iter().any(|p| caller.starts_with(p)))
                }
                Expected::Tagged => assert!(set.prefixes.iter().any(|p| caller.starts_with(p))),
                Expected::Protected => assert!(sc.numbers.protected.contains(callee)),
                Expected::Warned => panic!("no warn rule for numbers"),
            }
            assert!(!numbers.contains(callee.as_str()));
        }
        for r in &w.dns {
            let Fact::Query { name, .. } = &r.fact else {
                panic!("not a query")
            };
            // Each rule reaches what its format says: a hosts line or RPZ `x` one name,
            // `*.x` only the names below x, a plain entry or `||x^` both.
            let covered = set
                .domains
                .iter()
                .zip(&set.domain_placements)
                .any(|(d, p)| {
                    (p.reach.covers_name() && name == d)
                        || (p.reach.covers_below() && name.ends_with(&format!(".{d}")))
                });
            assert_eq!(covered, r.expected == Expected::Blocked, "{name}");
        }
        // The formats' boundaries are in the traffic, expected to pass.
        let reach = |n: &str| {
            set.domains
                .iter()
                .position(|d| d == n)
                .map(|i| set.domain_placements[i].reach)
        };
        let names: Vec<&str> = w
            .dns
            .iter()
            .filter(|r| r.expected == Expected::Allowed)
            .filter_map(|r| match &r.fact {
                Fact::Query { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert!(names.iter().any(|n| reach(n) == Some(Reach::Below)));
        assert!(names.iter().any(|n| n
            .split_once('.')
            .is_some_and(|(_, parent)| reach(parent) == Some(Reach::Exact))));
    }
}
