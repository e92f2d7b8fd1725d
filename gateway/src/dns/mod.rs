//! Sans-IO DNS codec for the gateway's DNS plane.
//!
//! **Contract.** [`parse_query`] reads one query (a UDP datagram, a TCP message without its
//! length prefix, a DoQ stream's message) into a [`Query`] that borrows the packet: ID, flags,
//! the one question and the EDNS(0) parameters. [`Query::name_into`] gives the name in the form
//! `Engine::check_domain` takes. The plane then either answers itself — [`synthesize`] for a
//! policy answer built from the query's own bytes, [`error_response`] for a query that cannot
//! be served — or forwards the query, using [`set_id`], [`response_matches`],
//! [`echo_question_case`], [`answer_ttl`], [`age_ttls`], [`cache_key`], [`rcode`] and
//! [`is_truncated`] on the way back and in its packet cache.
//!
//! **Never.** No sockets, no clock (callers pass elapsed seconds), no global state, no
//! `unsafe`, no panic on any input (fuzzed: [`fuzz_dns`]), no allocation: parsing returns
//! offsets into the packet, names go to caller-owned fixed arrays, answers are appended to the
//! caller's `Vec<u8>`, which stops growing once warm (proved by `tests/dns_no_alloc.rs`). A
//! response is never answered (QR = 1 gives no error response), so the plane cannot be made
//! to loop or reflect.
//!
//! **Cost model.** Parsing is one pass over the message: O(n) with the number of records
//! bounded by its size. Compression pointers are followed only when reading upstream names and
//! must point backwards, so a name costs at most 255 octets plus 128 hops.
//! Synthesizing is one copy of the question plus the records.
//!
//! **What a malformed query becomes.** A [`DnsError`] whose `Display` names the part that was
//! wrong, for logs and metric labels; [`DnsError::rcode`] says whether it deserves FORMERR,
//! NOTIMP or BADVERS, or silence.
//!
//! Standards: RFC 1035 (§4.1 message format, §4.1.4 compression), RFC 2181 (§8 TTLs, §9 TC),
//! RFC 2308 (negative answers and their caching), RFC 3225 (DO), RFC 4343 (case), RFC 5452
//! (§9.1 accepting answers), RFC 6891 (EDNS(0)), RFC 9619 (QDCOUNT is one).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

mod query;
mod response;
mod synth;
mod wire;

#[cfg(test)]
mod tests;

pub use query::{error_response, parse_query, Edns, Query, ERROR_UDP_SIZE};
pub use response::{
    age_ttls, answer_ttl, cache_key, echo_question_case, extended_rcode, is_truncated, rcode,
    response_matches, set_id, CACHE_KEY_LEN,
};
pub use synth::{synthesize, Synth, SynthOpts};
pub use wire::{
    name_to_wire, CLASS_ANY, CLASS_IN, MAX_NAME_WIRE, RCODE_BADVERS, RCODE_FORMERR, RCODE_NOERROR,
    RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_ANY,
    TYPE_CNAME, TYPE_NS, TYPE_OPT, TYPE_SOA,
};

/// Why a query was refused. Each variant names what was wrong in words a carrier's engineer can
/// act on; [`DnsError::rcode`] says what, if anything, to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsError {
    /// Fewer than the 12 header octets (RFC 1035 §4.1.1): nothing to answer to.
    TooShort { len: usize },
    /// QR = 1: a response, not a query. Never answered.
    NotAQuery,
    /// An OPCODE other than QUERY (RFC 1035 §4.1.1): NOTIMP.
    NotImplemented { opcode: u8 },
    /// QDCOUNT is not 1 (RFC 9619 §3): FORMERR.
    QuestionCount { count: u16 },
    /// A compression pointer in the question name (see [`parse_query`]): FORMERR.
    CompressedQuestion,
    /// A label length octet of 64-191: longer than 63 octets, or an extended/reserved label
    /// type (RFC 1035 §4.1.4, RFC 6891 §5): FORMERR.
    BadLabel { octet: u8 },
    /// The question name exceeds 255 octets (RFC 1035 §2.3.4): FORMERR.
    NameTooLong,
    /// The message ends inside this part: FORMERR.
    Truncated { part: &'static str },
    /// More than one OPT record (RFC 6891 §6.1.1): FORMERR with an OPT.
    MultipleOpt,
    /// A malformed OPT record (RFC 6891 §6.1.2): FORMERR with an OPT.
    BadOpt { reason: &'static str },
    /// An EDNS version we do not implement (RFC 6891 §6.1.3): BADVERS with an OPT of version 0.
    BadVersion { version: u8 },
}

impl DnsError {
    /// The RCODE to answer with — FORMERR (1), NOTIMP (4) or BADVERS (16, extended) — or `None`
    /// when nothing may be answered (too short to echo an ID, or a response).
    pub fn rcode(&self) -> Option<u8> {
        match self {
            DnsError::TooShort { .. } | DnsError::NotAQuery => None,
            DnsError::NotImplemented { .. } => Some(RCODE_NOTIMP),
            DnsError::BadVersion { .. } => Some(RCODE_BADVERS),
            DnsError::QuestionCount { .. }
            | DnsError::CompressedQuestion
            | DnsError::BadLabel { .. }
            | DnsError::NameTooLong
            | DnsError::Truncated { .. }
            | DnsError::MultipleOpt
            | DnsError::BadOpt { .. } => Some(RCODE_FORMERR),
        }
    }

    /// A short fixed label for a metric (`dns_malformed_total{reason=…}`).
    pub fn kind(&self) -> &'static str {
        match self {
            DnsError::TooShort { .. } => "too_short",
            DnsError::NotAQuery => "not_a_query",
            DnsError::NotImplemented { .. } => "opcode",
            DnsError::QuestionCount { .. } => "qdcount",
            DnsError::CompressedQuestion => "compressed_question",
            DnsError::BadLabel { .. } => "bad_label",
            DnsError::NameTooLong => "name_too_long",
            DnsError::Truncated { .. } => "truncated",
            DnsError::MultipleOpt => "multiple_opt",
            DnsError::BadOpt { .. } => "bad_opt",
            DnsError::BadVersion { .. } => "edns_version",
        }
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::TooShort { len } => {
                write!(
                    f,
                    "message of {len} octets is shorter than the 12-octet DNS header"
                )
            }
            DnsError::NotAQuery => f.write_str("QR bit set: a response, not a query (dropped)"),
            DnsError::NotImplemented { opcode } => {
                write!(f, "opcode {opcode} not supported (only QUERY is)")
            }
            DnsError::QuestionCount { count } => {
                write!(f, "{count} questions (a query must have exactly one)")
            }
            DnsError::CompressedQuestion => f.write_str("compression pointer in the question name"),
            DnsError::BadLabel { octet } => write!(
                f,
                "label length octet {octet:#04x}: longer than 63 or an unknown label type"
            ),
            DnsError::NameTooLong => f.write_str("question name longer than 255 octets"),
            DnsError::Truncated { part } => write!(f, "message ends inside the {part}"),
            DnsError::MultipleOpt => f.write_str("more than one EDNS OPT record"),
            DnsError::BadOpt { reason } => write!(f, "malformed EDNS OPT record: {reason}"),
            DnsError::BadVersion { version } => {
                write!(f, "EDNS version {version} not supported (only 0 is)")
            }
        }
    }
}

impl std::error::Error for DnsError {}

/// True when `resp` is a well-formed response: header, QR = 1, every question and record
/// readable, at most one OPT, in the additional section.
fn parses_as_response(resp: &[u8]) -> bool {
    let mut opts = 0;
    let mut misplaced = false;
    let ok = wire::walk(resp, |s, rr| {
        if rr.rtype == TYPE_OPT {
            opts += 1;
            misplaced |= s != wire::Section::Additional;
        }
    })
    .is_some();
    ok && opts <= 1 && !misplaced && wire::u16_at(resp, 2).is_some_and(|f| f & wire::FLAG_QR != 0)
}

/// Fuzz entry point (`fuzz/fuzz_targets/dns_parse.rs`, replayed by
/// `gateway/tests/dns_fuzz_corpus.rs`): arbitrary bytes through every function, as a query and
/// as a response. Whatever is synthesized or answered must parse again as a response that
/// matches the query and fits the client's size limit.
pub fn fuzz_dns(data: &[u8]) {
    // As an upstream response.
    let _ = (
        rcode(data),
        extended_rcode(data),
        is_truncated(data),
        answer_ttl(data),
    );
    let mut copy = data.to_vec();
    if age_ttls(&mut copy, 1) {
        assert!(
            wire::walk(&copy, |_, _| {}).is_some(),
            "aged message no longer walks"
        );
    } else {
        assert_eq!(copy, data, "a failed age_ttls changed the message");
    }
    set_id(&mut copy, 0xBEEF);

    // As a query.
    let mut out = Vec::new();
    let q = match parse_query(data) {
        Ok(q) => q,
        Err(e) => {
            let _ = (e.to_string(), e.kind());
            let answered = error_response(data, e, &mut out);
            assert_eq!(
                answered,
                e.rcode().is_some(),
                "error_response vs rcode for {e}"
            );
            if answered {
                assert!(
                    parses_as_response(&out),
                    "error response does not parse: {e}"
                );
                assert_eq!(out.get(..2), data.get(..2), "error response ID");
                assert!(out.len() <= 512, "error response over 512 octets");
            }
            return;
        }
    };
    let mut name = [0u8; 256];
    let n = q.name_into(&mut name).len();
    assert!(n <= 253, "dotted name of {n} octets");
    let mut key = [0u8; CACHE_KEY_LEN];
    let _ = cache_key(&q, &mut key);
    assert!(
        !response_matches(&q, data),
        "a query matched itself as a response"
    );
    let v4: Vec<Ipv4Addr> = (0..40u8).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    let v6 = [Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED];
    let answers = [
        Synth::NxDomain,
        Synth::NoData,
        Synth::Refused,
        Synth::ServFail,
        Synth::Truncated,
        Synth::A(&v4[..1]),
        Synth::A(&v4),
        Synth::A(&[]),
        Synth::Aaaa(&v6),
        Synth::Cname(b"warning.example.net"),
        Synth::Cname(b"bad..name"),
    ];
    let mut zone = [0u8; 256];
    let zone_len = q.name_into(&mut zone).len();
    let suffix = zone[..zone_len]
        .iter()
        .position(|&c| c == b'.')
        .map_or(&zone[..zone_len], |i| &zone[i + 1..zone_len]);
    for (i, a) in answers.into_iter().enumerate() {
        let opts = SynthOpts {
            stream: i % 3 == 0,
            udp_size: if i % 2 == 0 { 1232 } else { 4096 },
            zone: (i % 4 == 1).then_some(suffix),
            soa_mname: if i == 7 { b"x..y" } else { b"ns.example" },
            ..SynthOpts::default()
        };
        synthesize(&q, a, &opts, &mut out);
        assert!(parses_as_response(&out), "synthesized {a:?} does not parse");
        assert!(
            response_matches(&q, &out),
            "synthesized {a:?} does not match"
        );
        assert!(
            out.len() <= q.response_limit(opts.udp_size, opts.stream),
            "synthesized {a:?} over the limit"
        );
        assert_eq!(out.get(12..12 + q.question().len()), Some(q.question()));
        let _ = (answer_ttl(&out), extended_rcode(&out));
        let mut resp = out.clone();
        assert!(echo_question_case(&q, &mut resp));
        let _ = age_ttls(&mut resp, 30);
    }
}
