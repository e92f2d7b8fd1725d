//! Helpers over upstream responses for the forwarder and its packet cache: matching a response
//! to the query it answers, rewriting the ID and the question's case, cache lifetimes and keys.
//! All work in place on the packet; none allocates.

use super::query::Query;
use super::wire::{
    read_rr, u16_at, u32_at, walk, Section, FLAG_QR, FLAG_TC, HEADER_LEN, MAX_NAME_WIRE,
    RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_OPT, TYPE_SOA,
};

/// RFC 5452 §9.1: accept `resp` as the answer to `q` only if its ID equals the query's, QR = 1,
/// OPCODE is QUERY, it has exactly one question, and that question's name (ASCII
/// case-insensitively, RFC 4343), type and class are the query's. Whoever rewrote the query's
/// ID before sending it upstream compares against a query re-parsed from the sent bytes, or
/// restores the ID first ([`set_id`]).
pub fn response_matches(q: &Query<'_>, resp: &[u8]) -> bool {
    let (Some(id), Some(flags), Some(qd)) = (u16_at(resp, 0), u16_at(resp, 2), u16_at(resp, 4))
    else {
        return false;
    };
    let question = q.question();
    id == q.id()
        && flags & FLAG_QR != 0
        && flags & 0x7800 == 0
        && qd == 1
        // Both questions are uncompressed labels from offset 12 (a pointer in `resp` fails the
        // comparison: pointer octets are ≥ 0xC0, length octets ≤ 63); length octets are never
        // ASCII letters, so a case-insensitive comparison of the wire forms is label-wise.
        && resp
            .get(HEADER_LEN..HEADER_LEN + question.len())
            .is_some_and(|r| r.eq_ignore_ascii_case(question))
}

/// Overwrite the message ID (RFC 1035 §4.1.1): to give an upstream query a fresh random ID
/// (RFC 5452 §4.3) and to put the client's back on the answer. No-op on < 2 octets.
pub fn set_id(buf: &mut [u8], id: u16) {
    super::wire::set_u16(buf, 0, id);
}

/// Copy the case of `q`'s question name over the question of `resp` (a cached answer to the
/// same name in another case), so every client gets its question back exactly as it asked it
/// (RFC 4343 §4.1; clients using 0x20 randomisation depend on it). Records owned by a pointer
/// to the question follow automatically. False, untouched, if `resp` is not an answer to that
/// question ignoring ID and case.
pub fn echo_question_case(q: &Query<'_>, resp: &mut [u8]) -> bool {
    let question = q.question();
    let one_question = u16_at(resp, 4) == Some(1);
    match resp.get_mut(HEADER_LEN..HEADER_LEN + question.len()) {
        Some(r) if one_question && r.eq_ignore_ascii_case(question) => {
            r.copy_from_slice(question);
            true
        }
        _ => false,
    }
}

/// Header RCODE, the low 4 bits (RFC 1035 §4.1.1); `None` under 12 octets. For the 12-bit
/// extended value see [`extended_rcode`].
pub fn rcode(resp: &[u8]) -> Option<u8> {
    if resp.len() < HEADER_LEN {
        return None;
    }
    u16_at(resp, 2).map(|f| (f & 0x0F) as u8)
}

/// The full 12-bit RCODE: the OPT record's upper 8 bits joined to the header's 4 (RFC 6891
/// §6.1.3); the header value alone without OPT. `None` if the message is malformed.
pub fn extended_rcode(resp: &[u8]) -> Option<u16> {
    let low = u16::from(rcode(resp)?);
    let mut high = 0u16;
    walk(resp, |s, rr| {
        if s == Section::Additional && rr.rtype == TYPE_OPT {
            high = (rr.ttl >> 24) as u16;
        }
    })?;
    Some(high << 4 | low)
}

/// TC bit (RFC 1035 §4.1.1): the answer did not fit; retry over TCP, never cache it.
pub fn is_truncated(resp: &[u8]) -> bool {
    resp.len() >= HEADER_LEN && u16_at(resp, 2).is_some_and(|f| f & FLAG_TC != 0)
}

/// RFC 2181 §8: a TTL with the top bit set is treated as zero.
fn ttl_value(ttl: u32) -> u32 {
    if ttl & 0x8000_0000 != 0 {
        0
    } else {
        ttl
    }
}

/// How long `resp` may be cached, in seconds:
/// - NOERROR with answers: the smallest TTL over the answer and authority records (RFC 2181
///   §5.2, §8; additional records and OPT do not count);
/// - NXDOMAIN, or NOERROR without answers (NODATA): the smaller of the authority SOA's TTL and
///   its MINIMUM field (RFC 2308 §5); `None` without a SOA (RFC 2308 §5: not cached);
/// - any other RCODE, a malformed message, or no record at all: `None`.
///
/// Names are walked with compression pointers (each must point backwards, RFC 1035 §4.1.4);
/// the SOA RDATA must hold exactly two names and five 32-bit fields. TC is not looked at: test
/// [`is_truncated`] first.
pub fn answer_ttl(resp: &[u8]) -> Option<u32> {
    let rc = rcode(resp)?;
    if rc != RCODE_NOERROR && rc != RCODE_NXDOMAIN {
        return None;
    }
    let ancount = u16_at(resp, 6)?;
    let negative = rc == RCODE_NXDOMAIN || ancount == 0;
    let mut min: Option<u32> = None;
    let mut soa_bad = false;
    walk(resp, |s, rr| {
        if s == Section::Additional || rr.rtype == TYPE_OPT {
            return;
        }
        let ttl = if negative {
            if s != Section::Authority || rr.rtype != TYPE_SOA {
                return;
            }
            match soa_minimum(resp, rr.rdata, rr.rdata_end) {
                Some(m) => ttl_value(rr.ttl).min(ttl_value(m)),
                None => {
                    soa_bad = true;
                    return;
                }
            }
        } else {
            ttl_value(rr.ttl)
        };
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
    })?;
    if soa_bad {
        return None;
    }
    min
}

/// The MINIMUM field of a SOA RDATA at `start..end` (RFC 1035 §3.3.13), if well formed.
fn soa_minimum(resp: &[u8], start: usize, end: usize) -> Option<u32> {
    let rdata = resp.get(..end)?;
    let after_mname = super::wire::skip_name(rdata, start)?;
    let after_rname = super::wire::skip_name(rdata, after_mname)?;
    if after_rname + 20 != end {
        return None;
    }
    u32_at(rdata, end - 4)
}

/// Age a cached response in place: subtract `elapsed` seconds from the TTL of every record in
/// every section, OPT excepted (its TTL field holds flags, RFC 6891 §6.1.3). Returns false,
/// leaving `resp` untouched, if any record would reach zero (a TTL of 0 is not served from a
/// cache, RFC 1035 §3.2.1) or the message is malformed: evict it. RRSIG's "original TTL"
/// (RDATA) is not a TTL and stays.
pub fn age_ttls(resp: &mut [u8], elapsed: u32) -> bool {
    // First pass: everything must survive. Second: rewrite. So failure changes nothing.
    let mut alive = true;
    if walk(resp, |_, rr| {
        if rr.rtype != TYPE_OPT && ttl_value(rr.ttl) <= elapsed {
            alive = false;
        }
    })
    .is_none()
        || !alive
    {
        return false;
    }
    let mut off = HEADER_LEN;
    let counts = [
        u16_at(resp, 4).unwrap_or(0),
        u16_at(resp, 6).unwrap_or(0),
        u16_at(resp, 8).unwrap_or(0),
        u16_at(resp, 10).unwrap_or(0),
    ];
    for _ in 0..counts[0] {
        match super::wire::skip_name(resp, off) {
            Some(o) => off = o + 4,
            None => return false,
        }
    }
    for _ in 0..u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]) {
        let Some((rr, next)) = read_rr(resp, off) else {
            return false;
        };
        if rr.rtype != TYPE_OPT {
            let aged = ttl_value(rr.ttl) - elapsed;
            if let Some(s) = resp.get_mut(rr.ttl_off..rr.ttl_off + 4) {
                s.copy_from_slice(&aged.to_be_bytes());
            }
        }
        off = next;
    }
    true
}

/// Length of a [`cache_key`]: wire name (≤ 255) + QTYPE + QCLASS + one flag octet.
pub const CACHE_KEY_LEN: usize = MAX_NAME_WIRE + 5;

/// Write the packet-cache key of `q` into `out` and return it: the question name in wire form,
/// ASCII-lowercased (RFC 4343; wire form keeps a `.` inside a label distinct from a label
/// boundary), then QTYPE, QCLASS, and one octet of bits that change the answer: DO (RFC 3225:
/// RRSIGs only when set), CD (RFC 4035 §3.2.2: unvalidated data when set) and whether the query
/// had EDNS at all (an answer with an OPT, or larger than 512 octets, must not go to a client
/// without EDNS, RFC 6891 §7). Exact bytes rather than a hash so that two questions never share
/// an entry; hash it with a keyed hasher for the table.
pub fn cache_key<'o>(q: &Query<'_>, out: &'o mut [u8; CACHE_KEY_LEN]) -> &'o [u8] {
    let name = q.qname_wire();
    let n = name.len().min(MAX_NAME_WIRE);
    for (d, s) in out.iter_mut().zip(&name[..n]) {
        *d = s.to_ascii_lowercase();
    }
    out[n..n + 2].copy_from_slice(&q.qtype().to_be_bytes());
    out[n + 2..n + 4].copy_from_slice(&q.qclass().to_be_bytes());
    let edns = q.edns();
    out[n + 4] = u8::from(edns.is_some_and(|e| e.do_bit))
        | u8::from(q.cd()) << 1
        | u8::from(edns.is_some()) << 2;
    &out[..n + 5]
}
