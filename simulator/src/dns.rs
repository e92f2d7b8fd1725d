//! The simulator's own DNS encoder and decoder (RFC 1035), never the gateway's.
//!
//! [`encode_query`] writes a standard query (one question, RD set, no EDNS); [`decode`] reads
//! an answer's header, skips its question and reads A/AAAA answers, following compression
//! pointers with a hop bound. [`answer_query`] is the built-in upstream's whole logic. Every
//! read is bounds-checked: truncated or hostile input gives an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Why a name cannot go into a query (RFC 1035 §2.3.4 sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    EmptyLabel,
    LabelTooLong,
    NameTooLong,
}

/// A query for `name` (dotted, a trailing dot optional) of `qtype`, ID `id`, RD set.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // RFC 1035 §4.1.1: QR=0, OPCODE=0, RD=1; QDCOUNT=1.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    push_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn push_name(out: &mut Vec<u8>, name: &str) -> Result<(), EncodeError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !name.is_empty() {
        for label in name.split('.') {
            let len = label.len();
            if len == 0 {
                return Err(EncodeError::EmptyLabel);
            }
            if len > 63 {
                return Err(EncodeError::LabelTooLong);
            }
            out.push(len as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > 255 {
        return Err(EncodeError::NameTooLong);
    }
    Ok(())
}

/// Why bytes are not a DNS answer we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    NotAResponse,
    BadName,
}

/// What the oracle needs from an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    /// RFC 1035 §4.1.1 RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED).
    pub rcode: u8,
    /// TC: the answer was truncated (retry over TCP, RFC 7766).
    pub truncated: bool,
    pub ancount: u16,
    /// The A and AAAA records of the answer section.
    pub addrs: Vec<IpAddr>,
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, DecodeError> {
    match (b.get(i), b.get(i + 1)) {
        (Some(&h), Some(&l)) => Ok(u16::from_be_bytes([h, l])),
        _ => Err(DecodeError::Truncated),
    }
}

/// The offset just past the name at `i` (a pointer ends a name, RFC 1035 §4.1.4).
fn skip_name(b: &[u8], mut i: usize) -> Result<usize, DecodeError> {
    for _ in 0..128 {
        let len = *b.get(i).ok_or(DecodeError::Truncated)?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xC0 == 0xC0 => {
                b.get(i + 1).ok_or(DecodeError::Truncated)?;
                return Ok(i + 2);
            }
            l if l & 0xC0 != 0 => return Err(DecodeError::BadName),
            l => i += 1 + usize::from(l),
        }
    }
    Err(DecodeError::BadName)
}

/// Reads an answer (a response: QR set).
pub fn decode(b: &[u8]) -> Result<Answer, DecodeError> {
    let id = u16_at(b, 0)?;
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DecodeError::NotAResponse);
    }
    let qd = u16_at(b, 4)?;
    let an = u16_at(b, 6)?;
    let mut i = 12;
    if b.len() < i {
        return Err(DecodeError::Truncated);
    }
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
        if b.len() < i {
            return Err(DecodeError::Truncated);
        }
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        i = skip_name(b, i)?;
        let rtype = u16_at(b, i)?;
        let rdlen = usize::from(u16_at(b, i + 8)?);
        let rdata = b
            .get(i + 10..i + 10 + rdlen)
            .ok_or(DecodeError::Truncated)?;
        match (rtype, rdata.len()) {
            (TYPE_A, 4) => {
                let mut a = [0u8; 4];
                a.copy_from_slice(rdata);
                addrs.push(IpAddr::V4(Ipv4Addr::from(a)));
            }
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                addrs.push(IpAddr::V6(Ipv6Addr::from(a)));
            }
            _ => {}
        }
        i += 10 + rdlen;
    }
    Ok(Answer {
        id,
        rcode: (flags & 0x000F) as u8,
        truncated: flags & 0x0200 != 0,
        ancount: an,
        addrs,
    })
}

/// The address the built-in upstream gives every A query (TEST-NET-1, RFC 5737).
pub const STUB_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// And every AAAA query (the documentation prefix, RFC 3849).
pub const STUB_AAAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// The built-in upstream: the query's ID, flags and question echoed, QR and RA set; an A
/// question gets one A record ([`STUB_A`], TTL 60), an AAAA question one AAAA record
/// ([`STUB_AAAA`]), anything else NODATA. Additional records
/// (EDNS OPT) are dropped: no EDNS in the answer is allowed (RFC 6891 §7). `None` for bytes
/// that are not a one-question query.
pub fn answer_query(q: &[u8]) -> Option<Vec<u8>> {
    let flags = u16_at(q, 2).ok()?;
    if flags & 0x8000 != 0 || u16_at(q, 4).ok()? != 1 {
        return None;
    }
    let qend = skip_name(q, 12).ok()?;
    let qtype = u16_at(q, qend).ok()?;
    let question = q.get(12..qend + 4)?;
    let mut out = Vec::with_capacity(q.len() + 16);
    out.extend_from_slice(q.get(..2)?);
    // QR=1, keep OPCODE and RD, RA=1, RCODE=0.
    let f = 0x8000 | (flags & 0x7900) | 0x0080;
    out.extend_from_slice(&f.to_be_bytes());
    let an: u16 = u16::from(qtype == TYPE_A || qtype == TYPE_AAAA);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    // Name: a pointer to the question's name at offset 12; class IN, TTL 60.
    if qtype == TYPE_A {
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&STUB_A.octets());
    } else if qtype == TYPE_AAAA {
        out.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        out.extend_from_slice(&STUB_AAAA.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_bytes_are_as_hand_checked() {
        let q = encode_query(0xBEEF, "a.evil.example.", TYPE_A).unwrap();
        assert_eq!(
            q,
            [
                0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header
                1, b'a', 4, b'e', b'v', b'i', b'l', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
                0, // name
                0, 1, 0, 1 // A IN
            ]
        );
        assert_eq!(
            encode_query(1, "a..b", TYPE_A),
            Err(EncodeError::EmptyLabel)
        );
        assert_eq!(
            encode_query(1, &"x".repeat(64), TYPE_A),
            Err(EncodeError::LabelTooLong)
        );
        let long = ["abcdefghi"; 30].join(".");
        assert_eq!(
            encode_query(1, &long, TYPE_A),
            Err(EncodeError::NameTooLong)
        );
    }

    #[test]
    fn the_stub_answer_decodes() {
        let q = encode_query(7, "shop.example", TYPE_A).unwrap();
        let a = decode(&answer_query(&q).unwrap()).unwrap();
        assert_eq!(
            a,
            Answer {
                id: 7,
                rcode: 0,
                truncated: false,
                ancount: 1,
                addrs: vec![IpAddr::V4(STUB_A)]
            }
        );
        let q = encode_query(8, "shop.example", TYPE_AAAA).unwrap();
        let a = decode(&answer_query(&q).unwrap()).unwrap();
        assert_eq!(a.addrs, vec![IpAddr::V6(STUB_AAAA)]);
        let q = encode_query(8, "shop.example", 16).unwrap();
        let a = decode(&answer_query(&q).unwrap()).unwrap();
        assert_eq!((a.rcode, a.ancount), (0, 0));
        // A query is not an answer, an answer is not a query.
        assert_eq!(decode(&q), Err(DecodeError::NotAResponse));
        assert!(answer_query(&answer_query(&q).unwrap()).is_none());
    }

    #[test]
    fn nxdomain_with_soa_reads_its_rcode() {
        // A hand-written NXDOMAIN: header (QR RD RA, RCODE 3), question, no answers.
        let mut r = vec![0, 9, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0];
        r.extend_from_slice(&[1, b'x', 0, 0, 1, 0, 1]);
        let a = decode(&r).unwrap();
        assert_eq!((a.id, a.rcode, a.ancount), (9, 3, 0));
    }

    #[test]
    fn truncated_answers_are_errors() {
        let q = encode_query(7, "shop.example", TYPE_A).unwrap();
        let full = answer_query(&q).unwrap();
        for n in 0..full.len() {
            assert!(decode(&full[..n]).is_err(), "{n}");
        }
        // A pointer loop is bounded.
        let looped = [0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12];
        let _ = decode(&looped);
        let bad_label = [0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0];
        assert_eq!(decode(&bad_label), Err(DecodeError::BadName));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = answer_query(&bytes);
        }
    }
}
