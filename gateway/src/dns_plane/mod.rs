//! The DNS plane: answers listed names per policy straight from the query's bytes and forwards
//! everything else to the configured upstream resolvers, with a packet cache.
//!
//! [`DnsCore::decide`] is the decision for one query, sans IO: bytes and client in; either the
//! answer in the worker's buffer, "forward it", or "say nothing". The shell ([`net`]) owns the
//! sockets, the per-worker upstream socket, the table of queries in flight and the cache.
//!
//! Policy, in order: a query that cannot be parsed gets FORMERR/NOTIMP/BADVERS when its header
//! can be read (else silence); a client outside `dns.allow` gets REFUSED (no open resolver); a
//! client over `dns.rate_limit` gets REFUSED; then the engine decides on the name (matching is
//! on label boundaries: `evil.example` covers `a.evil.example`, never `notevil.example`; allow
//! rules win). A blocking rule from an RPZ file answers with its own action (NXDOMAIN, NODATA,
//! drop, tcp-only, local data); other blocks use the category's policy or `dns.block`; a warn
//! uses `dns.warn` (e.g. the warning page's address); tag and allow are forwarded.

pub mod cache;
pub mod doq;
pub mod net;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dragnet_rules::{Action, DnsAction};

use crate::config::{parse_sockaddr, Cidr, ConfigError, DnsConfig, DnsPolicy};
use crate::dns::{self, parse_query, synthesize, Query, Synth, SynthOpts};
use crate::metrics::DnsMetrics;
use crate::store::{Plane, Store};

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `w.out` to the client.
    Reply,
    /// Forward the query upstream (or answer it from the cache).
    Forward,
    /// Say nothing (unparseable, RPZ drop); counted.
    Drop,
}

/// A worker's reusable buffers.
#[derive(Debug)]
pub struct DnsWorker {
    pub out: Vec<u8>,
    name: [u8; 256],
    /// Rate limiting: per client address, (second, count). Bounded; cleared each second.
    rate: HashMap<IpAddr, u32>,
    rate_second: u64,
}

impl Default for DnsWorker {
    fn default() -> Self {
        DnsWorker::new()
    }
}

impl DnsWorker {
    pub fn new() -> DnsWorker {
        DnsWorker {
            out: Vec::with_capacity(1500),
            name: [0; 256],
            rate: HashMap::with_capacity(1024),
            rate_second: 0,
        }
    }
}

/// The resolved configuration of the DNS plane.
#[derive(Debug)]
pub struct DnsCore {
    allow: Vec<Cidr>,
    pub upstreams: Vec<SocketAddr>,
    pub timeout_ms: u64,
    pub udp_size: u16,
    pub cache_entries: usize,
    pub cache_max_ttl: u32,
    rate_limit: u32,
    answer_ttl: u32,
    negative_ttl: u32,
    block: DnsPolicy,
    warn: DnsPolicy,
    by_category: HashMap<String, DnsPolicy>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    cname: String,
    pub metrics: DnsMetrics,
    pub store: Arc<Store>,
}

impl DnsCore {
    pub fn new(
        cfg: &DnsConfig,
        store: Arc<Store>,
        metrics: DnsMetrics,
    ) -> Result<DnsCore, ConfigError> {
        let e = |key: String, reason: String| ConfigError { key, reason };
        Ok(DnsCore {
            allow: cfg
                .allow
                .iter()
                .enumerate()
                .map(|(i, c)| Cidr::parse(c).map_err(|r| e(format!("dns.allow[{i}]"), r)))
                .collect::<Result<_, _>>()?,
            upstreams: cfg
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, a)| parse_sockaddr(&format!("dns.upstreams[{i}]"), a))
                .collect::<Result<_, _>>()?,
            timeout_ms: cfg.timeout_ms,
            udp_size: cfg.udp_size,
            cache_entries: cfg.cache_entries,
            cache_max_ttl: cfg.cache_max_ttl,
            rate_limit: cfg.rate_limit,
            answer_ttl: cfg.answer_ttl,
            negative_ttl: cfg.negative_ttl,
            block: cfg.block,
            warn: cfg.warn,
            by_category: cfg.category.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            v4: cfg
                .sinkhole_v4
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            v6: cfg
                .sinkhole_v6
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            cname: cfg.cname.clone(),
            metrics,
            store,
        })
    }

    fn opts(&self, stream: bool, generation: u32) -> SynthOpts<'static> {
        SynthOpts {
            answer_ttl: self.answer_ttl,
            negative_ttl: self.negative_ttl,
            udp_size: self.udp_size,
            stream,
            soa_serial: generation,
            ..SynthOpts::default()
        }
    }

    /// Decides one query. `stream`: it came over TCP (no UDP size limit; tcp-only rules are
    /// forwarded).
    pub fn decide(
        &self,
        w: &mut DnsWorker,
        pkt: &[u8],
        client: IpAddr,
        stream: bool,
        now: u64,
    ) -> Step {
        match parse_query(pkt) {
            Ok(q) => self.decide_query(w, &q, client, stream, now),
            Err(err) => self.malformed(w, pkt, err),
        }
    }

    /// A query that could not be parsed: FORMERR/NOTIMP/BADVERS in `w.out` when its header can
    /// be read, else silence.
    pub fn malformed(&self, w: &mut DnsWorker, pkt: &[u8], err: dns::DnsError) -> Step {
        w.out.clear();
        let m = &self.metrics;
        m.malformed.inc();
        if dns::error_response(pkt, err, &mut w.out) {
            m.answered("formerr");
            Step::Reply
        } else {
            m.dropped.inc();
            Step::Drop
        }
    }

    /// [`DnsCore::decide`] for a query already parsed (the UDP workers parse once and keep the
    /// query for the forwarder).
    pub fn decide_query(
        &self,
        w: &mut DnsWorker,
        q: &Query<'_>,
        client: IpAddr,
        stream: bool,
        now: u64,
    ) -> Step {
        w.out.clear();
        let m = &self.metrics;
        m.queries.inc();
        if !self.allow.iter().any(|c| c.contains(client)) {
            m.refused_clients.inc();
            synthesize(q, Synth::Refused, &self.opts(stream, 0), &mut w.out);
            m.answered("refused");
            return Step::Reply;
        }
        if self.rate_limit > 0 && self.over_rate(w, client, now) {
            m.rate_limited.inc();
            synthesize(q, Synth::Refused, &self.opts(stream, 0), &mut w.out);
            m.answered("refused");
            return Step::Reply;
        }
        let a = self.store.load();
        let name = q.name_into(&mut w.name);
        let mut v = a.engine.check_domain(name, now);
        self.store
            .shadow_compare(Plane::Dns, v.action, |e| e.check_domain(name, now));
        if let Some(h) = self.store.hits() {
            v.action = h.gate(Plane::Dns, v.action);
            let facts = crate::events::Facts {
                domain: Some(name),
                ..Default::default()
            };
            h.hit(Plane::Dns, &v, &a.engine, Some(client), facts, "");
        }
        a.count(Plane::Dns, v.action, v.rule.map(|_| v.category));
        // An RPZ rule's own action wins; then the category's policy, then the configured one.
        let rpz = v.rule.and_then(|r| a.engine.dns_action(r));
        let policy = match (v.action, rpz) {
            (Action::Allow | Action::Tag, _) => return Step::Forward,
            (_, Some(d)) => Policy::Rpz(d),
            (Action::Warn, None) => Policy::Config(self.warn),
            (Action::Block, None) => {
                let cat = v.rule.map_or("", |_| a.engine.category(v.category));
                Policy::Config(*self.by_category.get(cat).unwrap_or(&self.block))
            }
        };
        let opts = self.opts(stream, a.generation);
        let synth = match policy {
            Policy::Config(p) => match p {
                DnsPolicy::Nxdomain => Synth::NxDomain,
                DnsPolicy::Nodata => Synth::NoData,
                DnsPolicy::Refused => Synth::Refused,
                DnsPolicy::Sinkhole => self.sinkhole(q, &self.v4, &self.v6),
                DnsPolicy::Cname => Synth::Cname(self.cname.as_bytes()),
                DnsPolicy::Log => return Step::Forward,
                DnsPolicy::Drop => {
                    m.dropped.inc();
                    return Step::Drop;
                }
            },
            Policy::Rpz(d) => match d {
                DnsAction::NxDomain => Synth::NxDomain,
                DnsAction::NoData => Synth::NoData,
                DnsAction::Drop => {
                    m.dropped.inc();
                    return Step::Drop;
                }
                DnsAction::TcpOnly if stream => return Step::Forward,
                DnsAction::TcpOnly => Synth::Truncated,
                DnsAction::Redirect(target) => Synth::Cname(target.as_bytes()),
                DnsAction::Local(addrs) => {
                    // Local data: the addresses of the query's family.
                    let mut v4 = [Ipv4Addr::UNSPECIFIED; 8];
                    let mut v6 = [Ipv6Addr::UNSPECIFIED; 8];
                    let (mut n4, mut n6) = (0, 0);
                    for ip in addrs.iter().take(8) {
                        match ip {
                            IpAddr::V4(x) => {
                                v4[n4] = *x;
                                n4 += 1;
                            }
                            IpAddr::V6(x) => {
                                v6[n6] = *x;
                                n6 += 1;
                            }
                        }
                    }
                    let s = self.sinkhole(q, &v4[..n4], &v6[..n6]);
                    synthesize(q, s, &opts, &mut w.out);
                    m.answered(rcode_label(&w.out));
                    return Step::Reply;
                }
            },
        };
        synthesize(q, synth, &opts, &mut w.out);
        m.answered(rcode_label(&w.out));
        Step::Reply
    }

    fn sinkhole<'s>(&self, q: &Query, v4: &'s [Ipv4Addr], v6: &'s [Ipv6Addr]) -> Synth<'s> {
        if q.qtype() == dns::TYPE_AAAA {
            Synth::Aaaa(v6)
        } else {
            Synth::A(v4)
        }
    }

    fn over_rate(&self, w: &mut DnsWorker, client: IpAddr, now: u64) -> bool {
        if w.rate_second != now {
            w.rate_second = now;
            w.rate.clear();
        }
        if w.rate.len() >= 65_536 && !w.rate.contains_key(&client) {
            // Too many distinct clients this second to track: do not limit the newcomer.
            return false;
        }
        let n = w.rate.entry(client).or_insert(0);
        *n += 1;
        *n > self.rate_limit
    }

    /// SERVFAIL for a query (upstream failed or timed out).
    pub fn servfail(&self, q: &Query, stream: bool, out: &mut Vec<u8>) {
        out.clear();
        synthesize(q, Synth::ServFail, &self.opts(stream, 0), out);
        self.metrics.answered("servfail");
    }

    /// TC=1 with no records (an answer too big for the client's UDP size).
    pub fn truncated(&self, q: &Query, out: &mut Vec<u8>) {
        out.clear();
        synthesize(q, Synth::Truncated, &self.opts(false, 0), out);
    }
}

enum Policy<'a> {
    Config(DnsPolicy),
    Rpz(&'a DnsAction),
}

/// A metric label for the RCODE of a response we built.
pub fn rcode_label(resp: &[u8]) -> &'static str {
    match dns::rcode(resp) {
        Some(0) => "noerror",
        Some(1) => "formerr",
        Some(2) => "servfail",
        Some(3) => "nxdomain",
        Some(4) => "notimp",
        Some(5) => "refused",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
