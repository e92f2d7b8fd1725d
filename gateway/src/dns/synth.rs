//! Answers the gateway gives itself, built from the query's own bytes (RPZ-style local
//! policy data: NXDOMAIN, NODATA, a sinkhole address, a CNAME to a warning page).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::query::{put_opt, Query};
use super::wire::{
    name_to_wire, put_u16, put_u32, set_u16, CLASS_ANY, CLASS_IN, EDNS_DO, FLAG_CD, FLAG_QR,
    FLAG_RA, FLAG_RD, FLAG_TC, HEADER_LEN, MAX_NAME_WIRE, RCODE_NOERROR, RCODE_NXDOMAIN,
    RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CNAME, TYPE_SOA,
};

/// What to answer (the policy action, already decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synth<'s> {
    /// RCODE 3, the name does not exist; SOA in the authority section (RFC 2308 §3).
    NxDomain,
    /// RCODE 0 with no answer: the name exists but not with this type (RFC 2308 §2.2); SOA in
    /// the authority section.
    NoData,
    /// RCODE 5 (RFC 1035 §4.1.1), no records.
    Refused,
    /// RCODE 2 (RFC 1035 §4.1.1), no records: e.g. no upstream answered.
    ServFail,
    /// TC = 1 with no records, so the client retries over TCP (RFC 7766 §5; RPZ "TCP-only").
    Truncated,
    /// A records for the queried name, when QTYPE is A or ANY and QCLASS IN or ANY; otherwise
    /// (e.g. an AAAA query to an IPv4 sinkhole) or with no address, NODATA.
    A(&'s [Ipv4Addr]),
    /// AAAA records, same rules as [`Synth::A`].
    Aaaa(&'s [Ipv6Addr]),
    /// A CNAME to this dotted ASCII name, for any QTYPE (RFC 1034 §3.6.2). The target is not
    /// chased: a resolver in front follows it; a stub needs the plane to append the target's
    /// records. An invalid target name gives SERVFAIL (validate it at start-up with
    /// [`super::name_to_wire`]).
    Cname(&'s [u8]),
}

/// Response parameters, mostly from configuration. A small `Copy` value: set `stream` or
/// `zone` per query with `SynthOpts { stream: true, ..base }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOpts<'o> {
    /// TTL of synthesized A/AAAA/CNAME records.
    pub answer_ttl: u32,
    /// TTL and MINIMUM of the synthetic SOA: how long downstream caches keep a NXDOMAIN/NODATA
    /// (RFC 2308 §5 uses the smaller of the two).
    pub negative_ttl: u32,
    /// Our UDP payload size, advertised in our OPT and capping the client's (RFC 6891 §6.2.5).
    pub udp_size: u16,
    /// The query came on TCP, DoT or DoQ: no 512/EDNS size limit (65535).
    pub stream: bool,
    /// Owner of the synthetic SOA: the zone the policy speaks for, e.g. the matched rule's
    /// domain (dotted ASCII). It must be the queried name or one of its ancestors (compared
    /// label-wise, case-insensitively); `None` or anything else → the queried name itself.
    pub zone: Option<&'o [u8]>,
    /// SOA MNAME and RNAME (dotted ASCII); an invalid one is written as the root.
    pub soa_mname: &'o [u8],
    pub soa_rname: &'o [u8],
    /// SOA SERIAL: e.g. the rule snapshot's generation (RPZ identifies zone versions by it).
    pub soa_serial: u32,
}

impl Default for SynthOpts<'_> {
    /// TTLs of one minute so that a rule removed stops acting in downstream caches quickly;
    /// 1232-octet payloads (DNS Flag Day 2020); SOA names under `.invalid`, which never
    /// resolves (RFC 6761 §6.4).
    fn default() -> Self {
        SynthOpts {
            answer_ttl: 60,
            negative_ttl: 60,
            udp_size: 1232,
            stream: false,
            zone: None,
            soa_mname: b"dragnet.invalid",
            soa_rname: b"hostmaster.dragnet.invalid",
            soa_serial: 1,
        }
    }
}

/// SOA REFRESH, RETRY, EXPIRE: meaningless for a synthetic zone nobody transfers; RFC 1912
/// §2.2-style values so that tools printing them see nothing odd.
const SOA_TIMERS: [u32; 3] = [3600, 600, 86400];

/// A compression pointer to `off` (RFC 1035 §4.1.4).
fn pointer(off: usize) -> u16 {
    0xC000 | (off as u16 & 0x3FFF)
}

/// Offset in the packet of the SOA owner: the label of the question name where `zone` starts.
fn soa_owner(q: &Query<'_>, zone: Option<&[u8]>) -> usize {
    let qn = q.qname_wire();
    let mut buf = [0u8; MAX_NAME_WIRE];
    if let Some(zw) = zone.and_then(|z| name_to_wire(z, &mut buf)) {
        let mut i = 0;
        while let Some(&len) = qn.get(i) {
            // Length octets are ≤ 63, never ASCII letters, so a case-insensitive match of the
            // wire tails is a label-wise match.
            if qn[i..].eq_ignore_ascii_case(zw) {
                return HEADER_LEN + i;
            }
            if len == 0 {
                break;
            }
            i += 1 + usize::from(len);
        }
    }
    HEADER_LEN
}

/// Append a record header owned by a pointer to `owner`; returns where RDLENGTH goes.
fn rr_head(out: &mut Vec<u8>, owner: usize, rtype: u16, class: u16, ttl: u32) -> usize {
    put_u16(out, pointer(owner));
    put_u16(out, rtype);
    put_u16(out, class);
    put_u32(out, ttl);
    let at = out.len();
    put_u16(out, 0);
    at
}

fn finish_rr(out: &mut [u8], rdlen_at: usize) {
    let len = out.len() - rdlen_at - 2;
    set_u16(out, rdlen_at, len as u16);
}

/// Write into `out` (replacing its contents) the response to `q` that `answer` describes.
///
/// - Header (RFC 1035 §4.1.1): ID, RD and CD echoed (RFC 4035 §3.2.2), QR and RA set, AA = 0
///   (we are not the zone's authority), AD = 0, OPCODE QUERY.
/// - Question: copied octet for octet, case preserved (RFC 4343 §4.1, RFC 5452 §9.1 — clients
///   using 0x20 randomisation check it); answers own the name by a pointer to it.
/// - NXDOMAIN / NODATA (and A/AAAA that do not fit the query): a synthetic SOA in the
///   authority section (RFC 2308 §3) owned by [`SynthOpts::zone`] or the queried name, TTL
///   and MINIMUM = `negative_ttl`, so downstream caches may keep the negative answer.
/// - Records are class IN for a QCLASS of ANY, else the query's class.
/// - EDNS: an OPT (version 0, our `udp_size`, DO echoed per RFC 3225 §3) iff the query had one
///   (RFC 6891 §7).
/// - Size: if the response exceeds [`Query::response_limit`] it is cut back to header,
///   question and OPT with TC = 1 (RFC 2181 §9: no partial RRset; RFC 6891 §7 keeps the OPT).
///
/// Does not allocate once `out` has grown to ~1.5 KB.
pub fn synthesize(q: &Query<'_>, answer: Synth<'_>, opts: &SynthOpts<'_>, out: &mut Vec<u8>) {
    out.clear();
    let qtype = q.qtype();
    let class = if q.qclass() == CLASS_ANY {
        CLASS_IN
    } else {
        q.qclass()
    };
    let addr_class = matches!(q.qclass(), CLASS_IN | CLASS_ANY);
    let wants = |t: u16| addr_class && (qtype == t || qtype == TYPE_ANY);
    let mut target = [0u8; MAX_NAME_WIRE];

    enum Plan<'p> {
        Bare(u8),
        Negative(u8),
        Tc,
        A(&'p [Ipv4Addr]),
        Aaaa(&'p [Ipv6Addr]),
        Cname(&'p [u8]),
    }
    let plan = match answer {
        Synth::NxDomain => Plan::Negative(RCODE_NXDOMAIN),
        Synth::NoData => Plan::Negative(RCODE_NOERROR),
        Synth::Refused => Plan::Bare(RCODE_REFUSED),
        Synth::ServFail => Plan::Bare(RCODE_SERVFAIL),
        Synth::Truncated => Plan::Tc,
        Synth::A(a) if !a.is_empty() && wants(TYPE_A) => Plan::A(a),
        Synth::Aaaa(a) if !a.is_empty() && wants(TYPE_AAAA) => Plan::Aaaa(a),
        Synth::A(_) | Synth::Aaaa(_) => Plan::Negative(RCODE_NOERROR),
        Synth::Cname(t) => match name_to_wire(t, &mut target) {
            Some(w) => Plan::Cname(w),
            None => Plan::Bare(RCODE_SERVFAIL),
        },
    };
    let rcode = match plan {
        Plan::Bare(r) | Plan::Negative(r) => r,
        _ => RCODE_NOERROR,
    };
    let mut flags = FLAG_QR | FLAG_RA | u16::from(rcode);
    if q.rd() {
        flags |= FLAG_RD;
    }
    if q.cd() {
        flags |= FLAG_CD;
    }
    if matches!(plan, Plan::Tc) {
        flags |= FLAG_TC;
    }
    put_u16(out, q.id());
    put_u16(out, flags);
    put_u16(out, 1);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(q.question());
    let question_end = out.len();

    let (mut an, mut ns) = (0u16, 0u16);
    let ttl = opts.answer_ttl;
    match plan {
        Plan::A(addrs) => {
            for a in addrs.iter().take(usize::from(u16::MAX)) {
                let at = rr_head(out, HEADER_LEN, TYPE_A, class, ttl);
                out.extend_from_slice(&a.octets());
                finish_rr(out, at);
                an += 1;
            }
        }
        Plan::Aaaa(addrs) => {
            for a in addrs.iter().take(usize::from(u16::MAX)) {
                let at = rr_head(out, HEADER_LEN, TYPE_AAAA, class, ttl);
                out.extend_from_slice(&a.octets());
                finish_rr(out, at);
                an += 1;
            }
        }
        Plan::Cname(t) => {
            let at = rr_head(out, HEADER_LEN, TYPE_CNAME, class, ttl);
            out.extend_from_slice(t);
            finish_rr(out, at);
            an = 1;
        }
        Plan::Negative(_) => {
            let owner = soa_owner(q, opts.zone);
            let at = rr_head(out, owner, TYPE_SOA, class, opts.negative_ttl);
            for name in [opts.soa_mname, opts.soa_rname] {
                let mut buf = [0u8; MAX_NAME_WIRE];
                out.extend_from_slice(name_to_wire(name, &mut buf).unwrap_or(&[0]));
            }
            put_u32(out, opts.soa_serial);
            for t in SOA_TIMERS {
                put_u32(out, t);
            }
            put_u32(out, opts.negative_ttl);
            finish_rr(out, at);
            ns = 1;
        }
        Plan::Bare(_) | Plan::Tc => {}
    }
    let edns = q.edns();
    let opt_ttl = |e: super::Edns| if e.do_bit { EDNS_DO } else { 0 };
    if let Some(e) = edns {
        put_opt(out, opts.udp_size, opt_ttl(e));
    }
    let ar = u16::from(edns.is_some());
    if out.len() > q.response_limit(opts.udp_size, opts.stream) {
        out.truncate(question_end);
        (an, ns) = (0, 0);
        set_u16(out, 2, flags | FLAG_TC);
        if let Some(e) = edns {
            put_opt(out, opts.udp_size, opt_ttl(e));
        }
    }
    set_u16(out, 6, an);
    set_u16(out, 8, ns);
    set_u16(out, 10, ar);
}
