//! Unit tests on hand-written packets. The packets are built here byte by byte, and the
//! outputs decoded here by offset, without the codec's own helpers, so a shared mistake
//! cannot hide.
#![allow(clippy::unwrap_used)]

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Wire name from labels.
fn wire(labels: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in labels {
        v.push(l.len() as u8);
        v.extend_from_slice(l);
    }
    v.push(0);
    v
}

/// A query: header with `flags`, QDCOUNT 1, the question, and an OPT with (payload, ttl) if
/// given.
fn query_with(id: u16, flags: u16, name: &[u8], qtype: u16, opt: Option<(u16, u32)>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    p.extend_from_slice(name);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some((size, ttl)) = opt {
        p.push(0);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&ttl.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
    }
    p
}

/// `www.Example.COM` A, RD set, no EDNS.
fn query(qtype: u16) -> Vec<u8> {
    query_with(
        0x1234,
        0x0100,
        &wire(&[b"www", b"Example", b"COM"]),
        qtype,
        None,
    )
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Header fields: (id, flags, qd, an, ns, ar).
fn header(b: &[u8]) -> (u16, u16, u16, u16, u16, u16) {
    (
        be16(b, 0),
        be16(b, 2),
        be16(b, 4),
        be16(b, 6),
        be16(b, 8),
        be16(b, 10),
    )
}

fn name_of(q: &Query<'_>) -> Vec<u8> {
    let mut out = [0u8; 256];
    q.name_into(&mut out).to_vec()
}

// ---- parse_query ----

#[test]
fn parses_a_plain_query() {
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    assert_eq!(q.id(), 0x1234);
    assert!(q.rd());
    assert!(!q.cd());
    assert_eq!((q.qtype(), q.qclass()), (TYPE_A, CLASS_IN));
    assert_eq!(q.edns(), None);
    assert_eq!(q.question_range(), 12..p.len());
    assert_eq!(q.question(), &p[12..]);
    assert_eq!(name_of(&q), b"www.example.com");
    assert!(q.name_is_hostname());
    assert_eq!(q.response_limit(4096, false), 512);
    assert_eq!(q.response_limit(4096, true), 65535);
}

#[test]
fn cd_bit_and_trailing_octets() {
    let mut p = query_with(7, 0x0110, &wire(&[b"a"]), TYPE_AAAA, None);
    p.extend_from_slice(b"junk after the records");
    let q = parse_query(&p).unwrap();
    assert!(q.cd() && q.rd());
    assert_eq!(q.question_range().end, 12 + 3 + 4);
}

#[test]
fn root_name_is_empty() {
    let p = query_with(1, 0, &[0], TYPE_NS, None);
    let q = parse_query(&p).unwrap();
    assert_eq!(name_of(&q), b"");
    assert_eq!(q.qname_wire(), &[0]);
}

#[test]
fn punycode_name_comes_out_lowercase() {
    let p = query_with(1, 0, &wire(&[b"XN--fsqu00a", b"xn--0zwm56D"]), TYPE_A, None);
    let q = parse_query(&p).unwrap();
    assert_eq!(name_of(&q), b"xn--fsqu00a.xn--0zwm56d");
    assert!(q.name_is_hostname());
}

#[test]
fn odd_octets_come_out_as_is() {
    let p = query_with(1, 0, &wire(&[b"A.b", b"\xC3\xA9 x", b"_srv"]), TYPE_A, None);
    let q = parse_query(&p).unwrap();
    assert_eq!(name_of(&q), b"a.b.\xC3\xA9 x._srv");
    assert!(!q.name_is_hostname());
    let p = query_with(1, 0, &wire(&[b"_dmarc", b"ex-1"]), TYPE_A, None);
    assert!(parse_query(&p).unwrap().name_is_hostname());
}

/// Four 63-octet labels minus one octet: 1+63+1+63+1+63+1+61+1 = 255 octets, the maximum.
fn longest_name() -> Vec<u8> {
    let l63 = [b'a'; 63];
    let l61 = [b'b'; 61];
    wire(&[&l63, &l63, &l63, &l61])
}

#[test]
fn name_length_limits() {
    let n = longest_name();
    assert_eq!(n.len(), 255);
    let p = query_with(1, 0, &n, TYPE_A, None);
    let q = parse_query(&p).unwrap();
    assert_eq!(name_of(&q).len(), 253);
    let l63 = [b'a'; 63];
    let l62 = [b'b'; 62];
    let p = query_with(1, 0, &wire(&[&l63, &l63, &l63, &l62]), TYPE_A, None);
    assert_eq!(parse_query(&p).unwrap_err(), DnsError::NameTooLong);
}

#[test]
fn formerr_cases() {
    // QDCOUNT 0 and 2.
    let mut p = query(TYPE_A);
    p[5] = 0;
    assert_eq!(
        parse_query(&p).unwrap_err(),
        DnsError::QuestionCount { count: 0 }
    );
    p[5] = 2;
    assert_eq!(
        parse_query(&p).unwrap_err(),
        DnsError::QuestionCount { count: 2 }
    );
    // A label length of 64.
    let mut p = query(TYPE_A);
    p[12] = 64;
    assert_eq!(
        parse_query(&p).unwrap_err(),
        DnsError::BadLabel { octet: 64 }
    );
    // Cut inside the name, inside QTYPE/QCLASS.
    let p = query(TYPE_A);
    assert_eq!(
        parse_query(&p[..18]).unwrap_err(),
        DnsError::Truncated {
            part: "question name"
        }
    );
    assert_eq!(
        parse_query(&p[..p.len() - 1]).unwrap_err(),
        DnsError::Truncated {
            part: "question type and class"
        }
    );
    // A compression pointer in the question.
    let p = query_with(1, 0, &[3, b'w', b'w', b'w', 0xC0, 12], TYPE_A, None);
    assert_eq!(parse_query(&p).unwrap_err(), DnsError::CompressedQuestion);
    // ARCOUNT says 1 but nothing follows.
    let mut p = query(TYPE_A);
    p[11] = 1;
    assert_eq!(
        parse_query(&p).unwrap_err(),
        DnsError::Truncated {
            part: "additional section"
        }
    );
    for e in [DnsError::QuestionCount { count: 2 }, DnsError::NameTooLong] {
        assert_eq!(e.rcode(), Some(RCODE_FORMERR));
    }
}

#[test]
fn unanswerable_inputs() {
    assert_eq!(
        parse_query(&[0; 11]).unwrap_err(),
        DnsError::TooShort { len: 11 }
    );
    let mut p = query(TYPE_A);
    p[2] |= 0x80;
    let e = parse_query(&p).unwrap_err();
    assert_eq!(e, DnsError::NotAQuery);
    let mut out = vec![1, 2, 3];
    assert!(!error_response(&p, e, &mut out));
    assert!(out.is_empty());
    assert!(!error_response(
        &[0; 11],
        DnsError::TooShort { len: 11 },
        &mut out
    ));
    // Even when told another error, a response is never answered.
    assert!(!error_response(&p, DnsError::NameTooLong, &mut out));
}

#[test]
fn edns_is_parsed() {
    let p = query_with(
        9,
        0x0100,
        &wire(&[b"a", b"b"]),
        TYPE_A,
        Some((4096, 0x8000)),
    );
    let q = parse_query(&p).unwrap();
    let e = q.edns().unwrap();
    assert_eq!((e.udp_size, e.do_bit, e.version), (4096, true, 0));
    assert_eq!(q.response_limit(1232, false), 1232);
    assert_eq!(q.response_limit(8192, false), 4096);
    // RFC 6891 §6.2.3: below 512 counts as 512.
    let p = query_with(9, 0, &wire(&[b"a"]), TYPE_A, Some((100, 0)));
    assert_eq!(parse_query(&p).unwrap().response_limit(1232, false), 512);
}

/// Append a raw OPT record to `p` and bump ARCOUNT.
fn push_opt(p: &mut Vec<u8>, owner: &[u8], ttl: u32, rdata: &[u8]) {
    p.extend_from_slice(owner);
    p.extend_from_slice(&[0, 41, 0x04, 0xD0]);
    p.extend_from_slice(&ttl.to_be_bytes());
    p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    p.extend_from_slice(rdata);
    p[11] += 1;
}

#[test]
fn edns_errors() {
    // Two OPTs.
    let mut p = query(TYPE_A);
    push_opt(&mut p, &[0], 0, &[]);
    push_opt(&mut p, &[0], 0, &[]);
    assert_eq!(parse_query(&p).unwrap_err(), DnsError::MultipleOpt);
    // Owner not the root.
    let mut p = query(TYPE_A);
    push_opt(&mut p, &[1, b'x', 0], 0, &[]);
    assert!(matches!(
        parse_query(&p).unwrap_err(),
        DnsError::BadOpt { .. }
    ));
    // An option whose length overruns the RDATA.
    let mut p = query(TYPE_A);
    push_opt(&mut p, &[0], 0, &[0, 10, 0, 8, 1, 2, 3, 4]);
    assert!(matches!(
        parse_query(&p).unwrap_err(),
        DnsError::BadOpt { .. }
    ));
    // A well-formed cookie option is fine and exposed.
    let mut p = query(TYPE_A);
    let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    push_opt(&mut p, &[0], 0, &cookie);
    assert_eq!(parse_query(&p).unwrap().edns_options(), &cookie);
    // Version 1.
    let p = query_with(1, 0, &wire(&[b"a"]), TYPE_A, Some((1232, 0x0001_0000)));
    assert_eq!(
        parse_query(&p).unwrap_err(),
        DnsError::BadVersion { version: 1 }
    );
}

// ---- error_response ----

#[test]
fn formerr_echoes_header_and_question() {
    let mut p = query(TYPE_A);
    p[12 + 4] = 64; // "www" then a label length of 64: the question does not parse.
    p[3] = 0x10; // CD
    let e = parse_query(&p).unwrap_err();
    let mut out = Vec::new();
    assert!(error_response(&p, e, &mut out));
    assert_eq!(
        header(&out),
        (0x1234, 0x8000 | 0x0100 | 0x80 | 0x10 | 1, 0, 0, 0, 0)
    );
    assert_eq!(out.len(), 12);
    // A parseable question that fails later (two OPTs) is echoed, with an OPT.
    let mut p = query(TYPE_A);
    push_opt(&mut p, &[0], 0, &[]);
    push_opt(&mut p, &[0], 0, &[]);
    let e = parse_query(&p).unwrap_err();
    assert!(error_response(&p, e, &mut out));
    let qlen = p.len() - 12 - 2 * 11;
    assert_eq!(header(&out), (0x1234, 0x8181, 1, 0, 0, 1));
    assert_eq!(&out[12..12 + qlen], &p[12..12 + qlen]);
    let opt = &out[12 + qlen..];
    assert_eq!(opt, &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    // QDCOUNT 2: FORMERR without a question.
    let mut p = query(TYPE_A);
    p[5] = 2;
    assert!(error_response(&p, parse_query(&p).unwrap_err(), &mut out));
    assert_eq!(header(&out).2, 0);
    assert_eq!(out.len(), 12);
}

#[test]
fn notimp_for_other_opcodes() {
    // NOTIFY (opcode 4) for example.com SOA, with an OPT.
    let p = query_with(
        0xABCD,
        4 << 11,
        &wire(&[b"example", b"com"]),
        TYPE_SOA,
        Some((1232, 0)),
    );
    let e = parse_query(&p).unwrap_err();
    assert_eq!(e, DnsError::NotImplemented { opcode: 4 });
    assert_eq!(e.rcode(), Some(RCODE_NOTIMP));
    let mut out = Vec::new();
    assert!(error_response(&p, e, &mut out));
    let (id, flags, qd, an, ns, ar) = header(&out);
    assert_eq!((id, qd, an, ns, ar), (0xABCD, 1, 0, 0, 1));
    assert_eq!(flags & 0x8000, 0x8000, "QR");
    assert_eq!((flags >> 11) & 0xF, 4, "opcode echoed");
    assert_eq!(flags & 0xF, 4, "NOTIMP");
    assert_eq!(&out[12..p.len() - 11], &p[12..p.len() - 11]);
}

#[test]
fn badvers_answer() {
    let p = query_with(5, 0x0100, &wire(&[b"a"]), TYPE_A, Some((4096, 0x0002_8000)));
    let e = parse_query(&p).unwrap_err();
    assert_eq!(e.rcode(), Some(RCODE_BADVERS));
    let mut out = Vec::new();
    assert!(error_response(&p, e, &mut out));
    let (_, flags, qd, _, _, ar) = header(&out);
    assert_eq!((flags & 0xF, qd, ar), (0, 1, 1), "BADVERS = 16: low bits 0");
    let opt = &out[out.len() - 11..];
    assert_eq!(be16(opt, 1), 41);
    let ttl = be32(opt, 5);
    assert_eq!(ttl >> 24, 1, "upper rcode bits: 16 >> 4");
    assert_eq!((ttl >> 16) & 0xFF, 0, "we speak version 0");
    assert_eq!(extended_rcode(&out), Some(16));
}

// ---- synthesize ----

/// Offset after the question of a response to `p` (same question length).
fn after_question(p: &[u8]) -> usize {
    parse_query(p).unwrap().question_range().end
}

#[test]
fn synth_nxdomain_field_by_field() {
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    let opts = SynthOpts {
        negative_ttl: 900,
        soa_serial: 42,
        ..SynthOpts::default()
    };
    let mut out = Vec::new();
    synthesize(&q, Synth::NxDomain, &opts, &mut out);
    // QR, RD echoed, RA, NXDOMAIN; AA clear.
    assert_eq!(header(&out), (0x1234, 0x8183, 1, 0, 1, 0));
    let mut o = after_question(&p);
    assert_eq!(&out[12..o], &p[12..]);
    // SOA owned by a pointer to the question name.
    assert_eq!(&out[o..o + 2], &[0xC0, 12]);
    assert_eq!(be16(&out, o + 2), TYPE_SOA);
    assert_eq!(be16(&out, o + 4), CLASS_IN);
    assert_eq!(be32(&out, o + 6), 900);
    let rdlen = usize::from(be16(&out, o + 10));
    o += 12;
    assert_eq!(rdlen, out.len() - o);
    let mname = wire(&[b"dragnet", b"invalid"]);
    let rname = wire(&[b"hostmaster", b"dragnet", b"invalid"]);
    assert_eq!(&out[o..o + mname.len()], &mname[..]);
    o += mname.len();
    assert_eq!(&out[o..o + rname.len()], &rname[..]);
    o += rname.len();
    assert_eq!(be32(&out, o), 42, "serial");
    assert_eq!(be32(&out, o + 16), 900, "minimum");
    assert_eq!(o + 20, out.len());
    assert_eq!(answer_ttl(&out), Some(900));
}

#[test]
fn synth_nodata_refused_servfail_truncated() {
    let p = query(TYPE_MX);
    let q = parse_query(&p).unwrap();
    let mut out = Vec::new();
    let opts = SynthOpts::default();
    synthesize(&q, Synth::NoData, &opts, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 0, 1, 0));
    assert_eq!(be16(&out, after_question(&p) + 2), TYPE_SOA);
    assert_eq!(answer_ttl(&out), Some(60));
    for (s, flags) in [
        (Synth::Refused, 0x8185),
        (Synth::ServFail, 0x8182),
        (Synth::Truncated, 0x8380),
    ] {
        synthesize(&q, s, &opts, &mut out);
        assert_eq!(header(&out), (0x1234, flags, 1, 0, 0, 0), "{s:?}");
        assert_eq!(out.len(), p.len(), "{s:?}: header and question only");
    }
}

const TYPE_MX: u16 = 15;

#[test]
fn synth_a_and_aaaa() {
    let v4 = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)];
    let v6 = [Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)];
    let opts = SynthOpts {
        answer_ttl: 30,
        ..SynthOpts::default()
    };
    let mut out = Vec::new();
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&v4), &opts, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 2, 0, 0));
    let mut o = after_question(&p);
    for a in v4 {
        assert_eq!(&out[o..o + 2], &[0xC0, 12]);
        assert_eq!(be16(&out, o + 2), TYPE_A);
        assert_eq!(be16(&out, o + 4), CLASS_IN);
        assert_eq!(be32(&out, o + 6), 30);
        assert_eq!(be16(&out, o + 10), 4);
        assert_eq!(&out[o + 12..o + 16], &a.octets());
        o += 16;
    }
    assert_eq!(o, out.len());
    assert_eq!(answer_ttl(&out), Some(30));
    // A sinkhole answer to an AAAA query is NODATA; an AAAA answer to it is an AAAA record.
    let p = query(TYPE_AAAA);
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&v4), &opts, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 0, 1, 0));
    synthesize(&q, Synth::Aaaa(&v6), &opts, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 1, 0, 0));
    let o = after_question(&p);
    assert_eq!(be16(&out, o + 2), TYPE_AAAA);
    assert_eq!(be16(&out, o + 10), 16);
    assert_eq!(&out[o + 12..], &v6[0].octets());
    // ANY gets the addresses; an empty list is NODATA.
    let p = query(TYPE_ANY);
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&v4), &opts, &mut out);
    assert_eq!(header(&out).3, 2);
    synthesize(&q, Synth::A(&[]), &opts, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 0, 1, 0));
}

#[test]
fn synth_cname_for_any_qtype() {
    let mut out = Vec::new();
    for qtype in [TYPE_A, TYPE_AAAA, TYPE_MX, TYPE_CNAME] {
        let p = query(qtype);
        let q = parse_query(&p).unwrap();
        synthesize(
            &q,
            Synth::Cname(b"Warn.Example.net."),
            &SynthOpts::default(),
            &mut out,
        );
        assert_eq!(header(&out), (0x1234, 0x8180, 1, 1, 0, 0));
        let o = after_question(&p);
        assert_eq!(&out[o..o + 2], &[0xC0, 12]);
        assert_eq!(be16(&out, o + 2), TYPE_CNAME);
        assert_eq!(be32(&out, o + 6), 60);
        let target = wire(&[b"Warn", b"Example", b"net"]);
        assert_eq!(usize::from(be16(&out, o + 10)), target.len());
        assert_eq!(&out[o + 12..], &target[..]);
    }
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::Cname(b"a..b"), &SynthOpts::default(), &mut out);
    assert_eq!(header(&out).1 & 0xF, u16::from(RCODE_SERVFAIL));
}

#[test]
fn synth_echoes_edns_and_do() {
    let mut out = Vec::new();
    for (ttl, do_bit) in [(0x8000u32, true), (0, false)] {
        let p = query_with(3, 0x0100, &wire(&[b"a", b"b"]), TYPE_A, Some((4096, ttl)));
        let q = parse_query(&p).unwrap();
        let opts = SynthOpts {
            udp_size: 1400,
            ..SynthOpts::default()
        };
        synthesize(&q, Synth::NxDomain, &opts, &mut out);
        let (_, _, _, _, ns, ar) = header(&out);
        assert_eq!((ns, ar), (1, 1));
        let opt = &out[out.len() - 11..];
        assert_eq!(opt[0], 0, "root owner");
        assert_eq!(be16(opt, 1), 41);
        assert_eq!(be16(opt, 3), 1400, "our payload size");
        assert_eq!(be32(opt, 5), if do_bit { 0x8000 } else { 0 }, "DO echoed");
        assert_eq!(be16(opt, 9), 0);
    }
    // Without EDNS in the query, none in the answer.
    let p = query(TYPE_A);
    synthesize(
        &parse_query(&p).unwrap(),
        Synth::NxDomain,
        &SynthOpts::default(),
        &mut out,
    );
    assert_eq!(header(&out).5, 0);
}

#[test]
fn synth_truncates_at_the_client_limit() {
    let many: Vec<Ipv4Addr> = (0..40).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let mut out = Vec::new();
    // No EDNS: 512. 12 + 21 + 40 * 16 = 673 > 512.
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&many), &SynthOpts::default(), &mut out);
    assert_eq!(header(&out), (0x1234, 0x8380, 1, 0, 0, 0), "TC, no records");
    assert_eq!(&out[12..], &p[12..]);
    // The same over TCP fits.
    let tcp = SynthOpts {
        stream: true,
        ..SynthOpts::default()
    };
    synthesize(&q, Synth::A(&many), &tcp, &mut out);
    assert_eq!(header(&out), (0x1234, 0x8180, 1, 40, 0, 0));
    assert_eq!(out.len(), 12 + 21 + 40 * 16);
    // EDNS 1232 fits; EDNS 512 does not and keeps its OPT.
    let p = query_with(3, 0, &wire(&[b"a"]), TYPE_A, Some((1232, 0x8000)));
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&many), &SynthOpts::default(), &mut out);
    assert_eq!(header(&out).3, 40);
    let p = query_with(3, 0, &wire(&[b"a"]), TYPE_A, Some((512, 0x8000)));
    let q = parse_query(&p).unwrap();
    synthesize(&q, Synth::A(&many), &SynthOpts::default(), &mut out);
    assert_eq!(header(&out), (3, 0x8280, 1, 0, 0, 1));
    assert_eq!(be32(&out, out.len() - 6), 0x8000, "OPT kept, DO echoed");
    assert!(is_truncated(&out));
}

#[test]
fn synth_preserves_question_case() {
    let name = wire(&[b"wWw", b"PayPaL", b"cOm"]);
    let p = query_with(77, 0x0100, &name, TYPE_A, None);
    let q = parse_query(&p).unwrap();
    let mut out = Vec::new();
    synthesize(
        &q,
        Synth::A(&[Ipv4Addr::new(192, 0, 2, 1)]),
        &SynthOpts::default(),
        &mut out,
    );
    assert_eq!(&out[12..12 + name.len()], &name[..]);
    assert_eq!(name_of(&q), b"www.paypal.com");
}

#[test]
fn soa_owner_is_the_zone_when_an_ancestor() {
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    let mut out = Vec::new();
    let o = after_question(&p);
    // "example.com" starts after "www" (4 octets) at offset 16.
    let opts = SynthOpts {
        zone: Some(b"EXAMPLE.com"),
        ..SynthOpts::default()
    };
    synthesize(&q, Synth::NxDomain, &opts, &mut out);
    assert_eq!(&out[o..o + 2], &[0xC0, 16]);
    // Not an ancestor (label-wise): the queried name.
    for zone in [&b"ample.com"[..], b"other.org", b"a..b"] {
        let opts = SynthOpts {
            zone: Some(zone),
            ..SynthOpts::default()
        };
        synthesize(&q, Synth::NoData, &opts, &mut out);
        assert_eq!(&out[o..o + 2], &[0xC0, 12], "{zone:?}");
    }
}

// ---- response helpers ----

/// A response to `query(TYPE_A)` as an upstream would send it: a CNAME chain using compression
/// pointers, then an A record owned by a pointer into the CNAME's RDATA.
fn upstream_answer() -> Vec<u8> {
    let p = query(TYPE_A);
    let mut r = p.clone();
    r[2] = 0x81;
    r[3] = 0x80;
    r[7] = 2; // ANCOUNT
    r[9] = 1; // NSCOUNT
              // www.example.com CNAME cdn.example.com (target "cdn" + pointer to "example.com" at 16).
    r.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0x0E, 0x10, 0, 6]);
    let cdn_at = r.len();
    r.extend_from_slice(&[3, b'c', b'd', b'n', 0xC0, 16]);
    // cdn.example.com A 192.0.2.9, TTL 120.
    r.extend_from_slice(&[
        0xC0,
        cdn_at as u8,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        120,
        0,
        4,
        192,
        0,
        2,
        9,
    ]);
    // example.com NS ns.example.com, TTL 7200.
    r.extend_from_slice(&[0xC0, 16, 0, 2, 0, 1, 0, 0, 0x1C, 0x20, 0, 5]);
    r.extend_from_slice(&[2, b'n', b's', 0xC0, 16]);
    r
}

#[test]
fn response_matching() {
    let p = query(TYPE_A);
    let q = parse_query(&p).unwrap();
    let r = upstream_answer();
    assert!(response_matches(&q, &r));
    // Case differences in the echoed name are accepted (RFC 4343).
    let mut other_case = r.clone();
    other_case[13] = b'W';
    assert!(response_matches(&q, &other_case));
    // Wrong ID, QR = 0, another name, another type, another class.
    let mut bad = r.clone();
    set_id(&mut bad, 0x4321);
    assert!(!response_matches(&q, &bad));
    set_id(&mut bad, 0x1234);
    assert!(response_matches(&q, &bad));
    let mut bad = r.clone();
    bad[2] &= 0x7F;
    assert!(!response_matches(&q, &bad));
    let mut bad = r.clone();
    bad[13] = b'x';
    assert!(!response_matches(&q, &bad));
    let mut bad = r.clone();
    let o = q.question_range().end;
    bad[o - 3] = 28;
    assert!(!response_matches(&q, &bad));
    let mut bad = r.clone();
    bad[o - 1] = 3;
    assert!(!response_matches(&q, &bad));
    assert!(!response_matches(&q, &r[..20]));
}

#[test]
fn answer_ttl_follows_compression() {
    let r = upstream_answer();
    // min(3600, 120, 7200).
    assert_eq!(answer_ttl(&r), Some(120));
    assert_eq!(rcode(&r), Some(0));
    // A pointer that points forward makes the message unreadable.
    let mut bad = r.clone();
    let o = parse_query(&query(TYPE_A)).unwrap().question_range().end;
    bad[o + 1] = 200;
    assert_eq!(answer_ttl(&bad), None);
    // A TTL with the top bit set counts as 0 (RFC 2181 §8).
    let mut big = r.clone();
    big[o + 6] = 0x80;
    assert_eq!(answer_ttl(&big), Some(0));
    // SERVFAIL is not cached here; nor is a negative answer without SOA.
    let mut sf = r.clone();
    sf[3] = 0x82;
    assert_eq!(answer_ttl(&sf), None);
    let mut neg = query(TYPE_A);
    neg[2] = 0x81;
    neg[3] = 0x83;
    assert_eq!(answer_ttl(&neg), None);
}

#[test]
fn answer_ttl_of_a_negative_answer_uses_the_soa() {
    // NXDOMAIN with a compressed SOA: TTL 600, MINIMUM 300 → 300; TTL 100 → 100.
    for (ttl, expect) in [(600u32, 300u32), (100, 100)] {
        let mut r = query(TYPE_A);
        r[2] = 0x81;
        r[3] = 0x83;
        r[9] = 1;
        r.extend_from_slice(&[0xC0, 16, 0, 6, 0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        let rdata = [
            &[2, b'n', b's', 0xC0, 16][..],
            &[0xC0, 16],
            &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4],
            &300u32.to_be_bytes(),
        ]
        .concat();
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
        assert_eq!(answer_ttl(&r), Some(expect));
        // A SOA RDATA one octet short is refused.
        let n = r.len();
        r[n - rdata.len() - 1] -= 1;
        r.pop();
        assert_eq!(answer_ttl(&r), None);
    }
}

#[test]
fn age_ttls_in_place() {
    let p = query_with(1, 0, &wire(&[b"a"]), TYPE_A, Some((1232, 0x8000)));
    let q = parse_query(&p).unwrap();
    let mut r = Vec::new();
    let opts = SynthOpts {
        answer_ttl: 100,
        ..SynthOpts::default()
    };
    synthesize(&q, Synth::A(&[Ipv4Addr::LOCALHOST; 2]), &opts, &mut r);
    assert!(age_ttls(&mut r, 40));
    assert_eq!(answer_ttl(&r), Some(60));
    let o = q.question_range().end;
    assert_eq!(be32(&r, o + 6), 60);
    assert_eq!(be32(&r, o + 22), 60);
    // The OPT's TTL (flags: DO) is not a TTL.
    assert_eq!(be32(&r, r.len() - 6), 0x8000);
    // Aging to zero or beyond fails and leaves the message as it was.
    let before = r.clone();
    assert!(!age_ttls(&mut r, 60));
    assert_eq!(r, before);
    assert!(!age_ttls(&mut r[..30], 1));
    // The compressed upstream answer ages too.
    let mut u = upstream_answer();
    assert!(age_ttls(&mut u, 20));
    assert_eq!(answer_ttl(&u), Some(100));
}

#[test]
fn cache_keys() {
    let a = query_with(1, 0x0100, &wire(&[b"WWW", b"example"]), TYPE_A, None);
    let b = query_with(2, 0x0000, &wire(&[b"www", b"EXAMPLE"]), TYPE_A, None);
    let c = query_with(
        3,
        0x0100,
        &wire(&[b"www", b"example"]),
        TYPE_A,
        Some((1232, 0x8000)),
    );
    let d = query_with(4, 0x0100, &wire(&[b"www.example"]), TYPE_A, None);
    let e = query_with(5, 0x0110, &wire(&[b"www", b"example"]), TYPE_A, None);
    let key = |p: &[u8]| {
        let mut k = [0u8; CACHE_KEY_LEN];
        cache_key(&parse_query(p).unwrap(), &mut k).to_vec()
    };
    assert_eq!(key(&a), key(&b), "case and ID do not matter");
    assert_eq!(
        key(&a),
        [&wire(&[b"www", b"example"])[..], &[0, 1, 0, 1, 0]].concat()
    );
    assert_ne!(key(&a), key(&c), "EDNS and DO do");
    assert_eq!(key(&c).last(), Some(&0b101));
    assert_ne!(key(&a), key(&d), "a dot inside a label is not a boundary");
    assert_ne!(key(&a), key(&e), "CD does");
    let mut k = [0u8; CACHE_KEY_LEN];
    let long = query_with(1, 0, &longest_name(), TYPE_A, None);
    assert_eq!(
        cache_key(&parse_query(&long).unwrap(), &mut k).len(),
        CACHE_KEY_LEN
    );
}

#[test]
fn cached_answer_gets_the_new_clients_case_and_id() {
    let mut cached = upstream_answer();
    let p = query_with(
        0x7777,
        0x0100,
        &wire(&[b"WWW", b"example", b"com"]),
        TYPE_A,
        None,
    );
    let q = parse_query(&p).unwrap();
    assert!(echo_question_case(&q, &mut cached));
    set_id(&mut cached, q.id());
    assert!(response_matches(&q, &cached));
    assert_eq!(&cached[12..q.question_range().end], q.question());
    let other = query_with(1, 0, &wire(&[b"other", b"com"]), TYPE_A, None);
    assert!(!echo_question_case(
        &parse_query(&other).unwrap(),
        &mut cached
    ));
}

#[test]
fn name_to_wire_rules() {
    let mut b = [0u8; MAX_NAME_WIRE];
    assert_eq!(name_to_wire(b"", &mut b), Some(&[0][..]));
    assert_eq!(name_to_wire(b".", &mut b), Some(&[0][..]));
    assert_eq!(
        name_to_wire(b"a.bc.", &mut b),
        Some(&[1, b'a', 2, b'b', b'c', 0][..])
    );
    for bad in [&b"a..b"[..], b".a", b"..", &[b'x'; 64]] {
        assert_eq!(name_to_wire(bad, &mut b), None, "{bad:?}");
    }
    let l63 = "a".repeat(63);
    let ok = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
    assert_eq!(
        name_to_wire(ok.as_bytes(), &mut b).map(<[u8]>::len),
        Some(255)
    );
    let too_long = format!("{ok}b");
    assert_eq!(name_to_wire(too_long.as_bytes(), &mut b), None);
}

#[test]
fn errors_name_the_problem() {
    let e = DnsError::Truncated {
        part: "question name",
    };
    assert_eq!(e.to_string(), "message ends inside the question name");
    assert_eq!(
        DnsError::BadLabel { octet: 0x41 }.to_string(),
        "label length octet 0x41: longer than 63 or an unknown label type"
    );
    assert_eq!(DnsError::NotAQuery.rcode(), None);
    assert_eq!(DnsError::MultipleOpt.kind(), "multiple_opt");
}

#[test]
fn fuzz_entry_on_the_test_packets() {
    let mut cases = vec![
        query(TYPE_A),
        query(TYPE_ANY),
        upstream_answer(),
        query_with(1, 0, &longest_name(), TYPE_A, Some((512, 0x8000))),
        query_with(1, 0, &[0], TYPE_A, Some((4096, 0x0001_0000))),
    ];
    let p = query(TYPE_A);
    for cut in 0..p.len() {
        cases.push(p[..cut].to_vec());
    }
    for c in cases {
        fuzz_dns(&c);
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_dns(&data);
        }

        #[test]
        fn never_panics_on_mutated_queries(
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..6),
            do_bit in any::<bool>(),
        ) {
            let mut p = query_with(
                1, 0x0100, &wire(&[b"www", b"example", b"com"]), TYPE_A,
                Some((1232, if do_bit { 0x8000 } else { 0 })),
            );
            for (i, v) in flips {
                let n = p.len();
                p[i % n] = v;
            }
            fuzz_dns(&p);
        }

        #[test]
        fn names_round_trip(labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 0..8)) {
            let ls: Vec<&[u8]> = labels.iter().map(|l| l.as_bytes()).collect();
            let p = query_with(1, 0, &wire(&ls), TYPE_A, None);
            let q = parse_query(&p).unwrap();
            let expect = labels.join(".").to_ascii_lowercase();
            prop_assert_eq!(name_of(&q), expect.as_bytes().to_vec());
            prop_assert!(q.name_is_hostname());
            let mut b = [0u8; MAX_NAME_WIRE];
            prop_assert_eq!(name_to_wire(labels.join(".").as_bytes(), &mut b), Some(&wire(&ls)[..]));
        }
    }
}
