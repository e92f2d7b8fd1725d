//! Scenario files: what traffic to send, how fast, against which targets, and what answer each
//! plane is expected to give for each action.
//!
//! One TOML file (`examples/sim/smoke.toml`, `examples/sim/carrier.toml`) parsed with
//! `deny_unknown_fields`, then checked by [`Scenario::validate`]: a bad file fails with the key
//! and the reason. Everything random about a run follows from `seed`: the same file gives the
//! same requests, in the same order, at the same scheduled times.
//!
//! The expected wire answers (`[expect.*]`) mirror the gateway's configuration (SIP
//! `sip.block.code`, DNS `dns.block`, HTTP `web.http.block_status`…), so that the same scenario
//! can drive Dragnet or a peer (Kamailio, unbound, squid) configured to answer the same way.

use crate::rulegen::GenSpec;
use crate::SimError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in the report.
    #[serde(default)]
    pub name: String,
    /// Seeds the rule set (`gen-rules`) and the traffic: same seed, same requests.
    pub seed: u64,
    /// Seconds of traffic (the schedule's length; answers are awaited after it).
    pub duration_s: f64,
    /// Share of requests built from listed facts (blocked or tagged), 0..=1.
    pub scam_share: f64,
    #[serde(default)]
    pub rates: Rates,
    #[serde(default)]
    pub rules: RuleSizes,
    #[serde(default)]
    pub numbers: NumberMix,
    #[serde(default)]
    pub domains: DomainMix,
    #[serde(default)]
    pub check: CheckMix,
    /// Ingress trunks: calls leave from each trunk's source address (the gateway maps source
    /// networks to trunks); check-API calls name the trunk as `ingress`.
    #[serde(default)]
    pub trunks: Vec<Trunk>,
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub targets: Targets,
    #[serde(default)]
    pub limits: Limits,
    /// Built-in peers `sim run` starts before the traffic (a UAS, a DNS upstream, an origin).
    #[serde(default)]
    pub stubs: Stubs,
}

/// Requests per second per plane; 0 switches a plane off.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// SIP calls (INVITE transactions) per second.
    #[serde(default)]
    pub sip: f64,
    /// DNS queries per second (UDP and TCP together).
    #[serde(default)]
    pub dns: f64,
    /// HTTP GETs through the proxy per second.
    #[serde(default)]
    pub http: f64,
    /// Check-API POSTs per second.
    #[serde(default)]
    pub check: f64,
}

/// Sizes of the generated rule set (`gen-rules --scenario`), as in [`GenSpec`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSizes {
    pub numbers: usize,
    pub prefixes: usize,
    pub domains: usize,
    pub urls: usize,
    pub keywords: usize,
}

impl Default for RuleSizes {
    fn default() -> Self {
        let g = GenSpec::default();
        RuleSizes {
            numbers: g.numbers,
            prefixes: g.prefixes,
            domains: g.domains,
            urls: g.urls,
            keywords: g.keywords,
        }
    }
}

/// Which numbers calls carry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumberMix {
    /// Weights of the number plans clean callers and callees are drawn from.
    #[serde(default)]
    pub plans: PlanWeights,
    /// Protected (emergency) numbers: a call to one passes whatever the caller. Must be the
    /// gateway's list (the compiler's default: 110 112 119 120 122 911 999 96110 12381).
    #[serde(default = "default_protected")]
    pub protected: Vec<String>,
    /// Share of calls to a protected number, 0..=1.
    #[serde(default)]
    pub protected_share: f64,
    /// Share of scam calls whose caller is under a tagged prefix (the rest are blocked numbers).
    #[serde(default)]
    pub tagged_share: f64,
}

impl Default for NumberMix {
    fn default() -> Self {
        NumberMix {
            plans: PlanWeights::default(),
            protected: default_protected(),
            protected_share: 0.0,
            tagged_share: 0.0,
        }
    }
}

fn default_protected() -> Vec<String> {
    ["110", "112", "119", "120", "122"]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// Number plans: Chinese mobiles (`+86 1[3-9]x`), Chinese fixed lines (area code + 8 digits),
/// international (UK, NANP, Philippines, Cambodia…), IoT/data segments (`+86 146`, `+86 148`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanWeights {
    #[serde(default)]
    pub cn_mobile: u32,
    #[serde(default)]
    pub cn_fixed: u32,
    #[serde(default)]
    pub international: u32,
    #[serde(default)]
    pub iot: u32,
}

impl Default for PlanWeights {
    fn default() -> Self {
        PlanWeights {
            cn_mobile: 75,
            cn_fixed: 12,
            international: 10,
            iot: 3,
        }
    }
}

/// Which names and URLs DNS, HTTP and check requests carry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DomainMix {
    /// Share of clean names that are look-alikes of listed names (`my` + name, name below
    /// another registrable domain…), which must NOT be blocked.
    #[serde(default)]
    pub lookalike_share: f64,
    /// More look-alikes, named by hand; each is checked against the rule set.
    #[serde(default)]
    pub lookalikes: Vec<String>,
    /// Share of scam names that are below a listed name (`login.` + name).
    #[serde(default)]
    pub subdomain_share: f64,
    /// Share of DNS queries sent over TCP (RFC 7766), the rest over UDP.
    #[serde(default)]
    pub dns_tcp_share: f64,
    /// Share of DNS queries for AAAA (the rest A).
    #[serde(default)]
    pub aaaa_share: f64,
    /// Share of HTTP requests for a full URL (with path) rather than `http://host/`.
    #[serde(default = "half")]
    pub url_share: f64,
}

fn half() -> f64 {
    0.5
}

impl Default for DomainMix {
    fn default() -> Self {
        DomainMix {
            lookalike_share: 0.0,
            lookalikes: Vec::new(),
            subdomain_share: 0.0,
            dns_tcp_share: 0.0,
            aaaa_share: 0.0,
            url_share: half(),
        }
    }
}

/// Weights of the check API's four endpoints.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckMix {
    #[serde(default)]
    pub call: u32,
    #[serde(default)]
    pub domain: u32,
    #[serde(default)]
    pub url: u32,
    #[serde(default)]
    pub message: u32,
}

impl Default for CheckMix {
    fn default() -> Self {
        CheckMix {
            call: 1,
            domain: 1,
            url: 1,
            message: 1,
        }
    }
}

/// One ingress trunk.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    /// The local address SIP packets of this trunk leave from (e.g. `127.0.0.2` on loopback).
    pub source: IpAddr,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// The wire answer expected for each action, per plane.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub sip: ExpectSip,
    #[serde(default)]
    pub dns: ExpectDns,
    #[serde(default)]
    pub http: ExpectHttp,
}

/// How the SIP target answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectSip {
    /// `proxy`: allowed calls reach the UAS (2xx); `redirect`: allowed calls get a 302 to the
    /// original target.
    #[serde(default = "proxy")]
    pub mode: String,
    /// Final codes that mean "blocked" (the gateway's `sip.block.code` and per-category codes).
    #[serde(default = "block_codes")]
    pub block_codes: Vec<u16>,
    /// A 3xx whose Contact holds this text is the warning announcement (`sip.warn.announcement`).
    #[serde(default = "warn_contact")]
    pub warn_contact: String,
    /// A header (or Contact URI header, redirect mode) that marks a tagged call. In proxy mode the
    /// built-in UAS reflects it into its 200, so the caller's side can see it.
    #[serde(default = "sip_tag")]
    pub tag_header: String,
}

fn proxy() -> String {
    "proxy".into()
}
fn block_codes() -> Vec<u16> {
    vec![608, 603]
}
fn warn_contact() -> String {
    "fraud-warning".into()
}
fn sip_tag() -> String {
    "X-Fraud-Category".into()
}

impl Default for ExpectSip {
    fn default() -> Self {
        ExpectSip {
            mode: proxy(),
            block_codes: block_codes(),
            warn_contact: warn_contact(),
            tag_header: sip_tag(),
        }
    }
}

/// A DNS answer as the oracle classifies it.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DnsAnswer {
    /// RCODE 3 (RFC 1035 §4.1.1).
    Nxdomain,
    /// NOERROR without an answer of the asked type (RFC 2308 §2.2).
    Nodata,
    /// RCODE 5.
    Refused,
    /// NOERROR with an address of `sinkhole`.
    Sinkhole,
    /// NOERROR with other answers: forwarded to and answered by the upstream.
    Answer,
}

/// How the DNS target answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectDns {
    #[serde(default = "nxdomain")]
    pub block: DnsAnswer,
    #[serde(default = "sinkhole")]
    pub warn: DnsAnswer,
    /// The warning page's addresses (`dns.sinkhole_v4`/`_v6`).
    #[serde(default = "sinkhole_addrs")]
    pub sinkhole: Vec<IpAddr>,
}

fn nxdomain() -> DnsAnswer {
    DnsAnswer::Nxdomain
}
fn sinkhole() -> DnsAnswer {
    DnsAnswer::Sinkhole
}
fn sinkhole_addrs() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ]
}

impl Default for ExpectDns {
    fn default() -> Self {
        ExpectDns {
            block: nxdomain(),
            warn: sinkhole(),
            sinkhole: sinkhole_addrs(),
        }
    }
}

/// How the HTTP proxy answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectHttp {
    /// `web.http.block_status`.
    #[serde(default = "s403")]
    pub block_status: u16,
    /// A warn shows the page with this status.
    #[serde(default = "s200")]
    pub warn_status: u16,
    /// Text every warning page contains (the appeal contact), and an origin's page never does.
    #[serde(default = "marker")]
    pub page_marker: String,
    /// `web.http.tag_header`; the built-in origin reflects it as `X-Sim-Saw-Tag`.
    #[serde(default = "http_tag")]
    pub tag_header: String,
}

fn s403() -> u16 {
    403
}
fn s200() -> u16 {
    200
}
fn marker() -> String {
    "12381".into()
}
fn http_tag() -> String {
    "X-Dragnet-Category".into()
}

impl Default for ExpectHttp {
    fn default() -> Self {
        ExpectHttp {
            block_status: s403(),
            warn_status: s200(),
            page_marker: marker(),
            tag_header: http_tag(),
        }
    }
}

/// Where each plane's traffic goes: plain addresses, so the same scenario drives Dragnet or a
/// peer. The command line overrides them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub sip_udp: Option<SocketAddr>,
    pub dns_udp: Option<SocketAddr>,
    pub dns_tcp: Option<SocketAddr>,
    pub http_proxy: Option<SocketAddr>,
    pub check: Option<SocketAddr>,
}

/// Bounds that keep the driver open-loop.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests in flight per plane; a request due while this many are outstanding is not sent
    /// and counts as an error (`overflow`), so the schedule never waits.
    #[serde(default = "outstanding")]
    pub max_outstanding: usize,
    /// DNS, HTTP and check requests without an answer after this long are timeouts.
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
    /// RFC 3261 §17.1.1.2 T1 (INVITE retransmission interval, doubled each time).
    #[serde(default = "t1")]
    pub sip_t1_ms: u64,
    /// RFC 3261 Timer B (64·T1): an INVITE without a final answer after this is a timeout.
    #[serde(default = "timer_b")]
    pub sip_timer_b_ms: u64,
    /// Worker threads of the driver's runtime.
    #[serde(default = "threads")]
    pub threads: usize,
}

fn outstanding() -> usize {
    10_000
}
fn timeout_ms() -> u64 {
    2_000
}
fn t1() -> u64 {
    500
}
fn timer_b() -> u64 {
    32_000
}
fn threads() -> usize {
    1
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_outstanding: outstanding(),
            timeout_ms: timeout_ms(),
            sip_t1_ms: t1(),
            sip_timer_b_ms: timer_b(),
            threads: threads(),
        }
    }
}

/// Built-in peers: addresses to bind (port 0 = any; the bound address is printed).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stubs {
    /// A UAS answering 200 to INVITE and BYE (the proxy's next hop).
    pub uas: Option<SocketAddr>,
    /// A DNS server answering every A query with 192.0.2.1 (the gateway's upstream).
    pub dns: Option<SocketAddr>,
    /// An HTTP origin answering 200 to everything (the proxy's upstream).
    pub http: Option<SocketAddr>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Io {
            what: format!("reading the scenario {}", path.display()),
            source: e,
        })?;
        Scenario::parse(&text).map_err(|reason| SimError::Scenario {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses and checks scenario text; the error names the key and the reason.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    /// The checks serde cannot make: shares in 0..=1, rates finite and not negative, a target
    /// for every plane that has a rate, at least one number plan.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("scam_share", self.scam_share),
            ("numbers.protected_share", self.numbers.protected_share),
            ("numbers.tagged_share", self.numbers.tagged_share),
            ("domains.lookalike_share", self.domains.lookalike_share),
            ("domains.subdomain_share", self.domains.subdomain_share),
            ("domains.dns_tcp_share", self.domains.dns_tcp_share),
            ("domains.aaaa_share", self.domains.aaaa_share),
            ("domains.url_share", self.domains.url_share),
        ];
        for (key, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{key} = {v}: a share must be between 0 and 1"));
            }
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 86_400.0) {
            return Err(format!(
                "duration_s = {}: must be more than 0 and at most 86400 seconds",
                self.duration_s
            ));
        }
        let r = &self.rates;
        for (key, v) in [
            ("rates.sip", r.sip),
            ("rates.dns", r.dns),
            ("rates.http", r.http),
            ("rates.check", r.check),
        ] {
            if !(v.is_finite() && (0.0..=1_000_000.0).contains(&v)) {
                return Err(format!(
                    "{key} = {v}: must be between 0 and 1000000 per second"
                ));
            }
        }
        let p = &self.numbers.plans;
        if p.cn_mobile + p.cn_fixed + p.international + p.iot == 0 {
            return Err("numbers.plans: every weight is 0; give at least one plan a weight".into());
        }
        if self.numbers.protected_share > 0.0 && self.numbers.protected.is_empty() {
            return Err("numbers.protected is empty but numbers.protected_share > 0".into());
        }
        let c = &self.check;
        if r.check > 0.0 && c.call + c.domain + c.url + c.message == 0 {
            return Err("check: every endpoint weight is 0 but rates.check > 0".into());
        }
        if self.trunks.iter().any(|t| t.name.is_empty()) {
            return Err("trunks: a trunk needs a name".into());
        }
        if !self.trunks.is_empty() && self.trunks.iter().all(|t| t.weight == 0) {
            return Err("trunks: every weight is 0".into());
        }
        if !matches!(self.expect.sip.mode.as_str(), "proxy" | "redirect") {
            return Err(format!(
                "expect.sip.mode = {:?}: must be \"proxy\" or \"redirect\"",
                self.expect.sip.mode
            ));
        }
        let l = &self.limits;
        if l.max_outstanding == 0 || l.timeout_ms == 0 || l.sip_t1_ms == 0 || l.threads == 0 {
            return Err(
                "limits: max_outstanding, timeout_ms, sip_t1_ms and threads must be > 0".into(),
            );
        }
        if l.sip_timer_b_ms < l.sip_t1_ms {
            return Err("limits.sip_timer_b_ms must be at least sip_t1_ms".into());
        }
        Ok(())
    }

    /// Every plane with a rate has a target (checked before a run, after the command line's
    /// overrides).
    pub fn check_targets(&self) -> Result<(), String> {
        let t = &self.targets;
        let r = &self.rates;
        let need = [
            (
                r.sip,
                t.sip_udp.is_some(),
                "sip",
                "targets.sip_udp (--target-sip)",
            ),
            (
                r.dns,
                t.dns_udp.is_some() || t.dns_tcp.is_some(),
                "dns",
                "targets.dns_udp / dns_tcp (--target-dns)",
            ),
            (
                r.http,
                t.http_proxy.is_some(),
                "http",
                "targets.http_proxy (--target-http)",
            ),
            (
                r.check,
                t.check.is_some(),
                "check",
                "targets.check (--target-check)",
            ),
        ];
        for (rate, ok, plane, key) in need {
            if rate > 0.0 && !ok {
                return Err(format!(
                    "rates.{plane} = {rate} but no {plane} target is given: set {key}"
                ));
            }
        }
        if r.dns > 0.0
            && self.domains.dns_tcp_share > 0.0
            && t.dns_tcp.is_none()
            && t.dns_udp.is_none()
        {
            return Err("domains.dns_tcp_share > 0 but no DNS target is given".into());
        }
        Ok(())
    }

    /// The rule set this scenario's traffic is judged against.
    pub fn gen_spec(&self) -> GenSpec {
        GenSpec {
            numbers: self.rules.numbers,
            prefixes: self.rules.prefixes,
            domains: self.rules.domains,
            urls: self.rules.urls,
            keywords: self.rules.keywords,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MIN: &str = "seed = 1\nduration_s = 1\nscam_share = 0.5\n";

    #[test]
    fn minimal_file_takes_the_defaults() {
        let s = Scenario::parse(MIN).unwrap();
        assert_eq!(s.expect.sip.block_codes, vec![608, 603]);
        assert_eq!(s.expect.dns.block, DnsAnswer::Nxdomain);
        assert_eq!(s.limits.sip_timer_b_ms, 32_000);
        assert_eq!(s.gen_spec().seed, 1);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("[rates]\nsip = -1\n", "rates.sip"),
            ("[numbers]\ntagged_share = 2\n", "numbers.tagged_share"),
            ("[expect.sip]\nmode = \"b2bua\"\n", "expect.sip.mode"),
            ("[limits]\nthreads = 0\n", "limits"),
            ("bogus = 1\n", "bogus"),
        ] {
            let e = Scenario::parse(&format!("{MIN}{extra}")).unwrap_err();
            assert!(e.contains(key), "{extra:?}: {e}");
        }
    }

    #[test]
    fn a_rate_without_a_target_is_refused_before_a_run() {
        let s = Scenario::parse(&format!("{MIN}[rates]\ndns = 10\n")).unwrap();
        assert!(s.check_targets().unwrap_err().contains("dns"));
        let s = Scenario::parse(&format!(
            "{MIN}[rates]\ndns = 10\n[targets]\ndns_udp = \"127.0.0.1:53\"\n"
        ))
        .unwrap();
        s.check_targets().unwrap();
    }
}
