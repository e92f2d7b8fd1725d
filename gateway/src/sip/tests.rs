//! Message-level tests: hand-written tricky messages,
//! splicing round trips and property tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

const SECRET: [u8; 32] = [7; 32];

fn invite() -> Vec<u8> {
    b"INVITE sip:+8613800138000@gw.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice \\\"A\\\"\" <sip:alice@example.org>;tag=f1\r\n\
To: <sip:+8613800138000@gw.example.net;user=phone>\r\n\
Call-ID: c1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
X-Unknown: keep ;me=1\r\n\
Content-Length: 4\r\n\
\r\n\
abcd"
        .to_vec()
}

#[test]
fn basic_request_accessors() {
    let b = invite();
    let m = parse(&b).unwrap();
    assert!(matches!(
        m.kind(),
        Kind::Request {
            method: b"INVITE",
            ..
        }
    ));
    assert_eq!(m.call_id(), b"c1@192.0.2.10");
    assert_eq!(m.cseq(), (1, &b"INVITE"[..]));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.body(), b"abcd");
    let v = m.top_via().unwrap();
    assert_eq!(v.branch, Some(&b"z9hG4bKabc"[..]));
    assert_eq!(v.rport, Some(None));
    let f = m.from().unwrap();
    assert_eq!(f.display_unescaped().collect::<Vec<_>>(), b"Alice \"A\"");
    assert_eq!(f.tag, Some(&b"f1"[..]));
    assert_eq!(m.to().unwrap().tag, None);
    assert!(!m.privacy_id());
}

#[test]
fn folding_compact_forms_and_case() {
    let b = b"OPTIONS sip:u@h SIP/2.0\r\nv: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
VIA: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK2, SIP/2.0/UDP c;received=192.0.2.9\r\n\
f: <sip:a@b>;tag=1\r\nt: sip:c@d\r\ni: x\r\nCSEQ: 2\r\n OPTIONS\r\n\
Subject: one\r\n\ttwo\r\nprivacy: header;id\r\nP-Asserted-Identity: \"X\" <tel:+861012345>, <sip:x@y>\r\n\
Proxy-Require: foo, bar\r\nRoute: <sip:r1;lr>,<sip:r2;lr>\r\nRoute: <sip:r3>\r\nl: 0\r\n\r\n";
    let m = parse(b).unwrap();
    assert_eq!(m.cseq(), (2, &b"OPTIONS"[..]));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].host, Host::V6("2001:db8::1".parse().unwrap()));
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(vias[2].received, Some(&b"192.0.2.9"[..]));
    let subj: Vec<u8> = m.headers("s").next().unwrap().unfolded().collect();
    assert_eq!(subj, b"one two");
    assert!(m.privacy_id());
    assert!(matches!(
        m.p_asserted_identity().unwrap().unwrap().uri,
        Uri::Tel(_)
    ));
    assert_eq!(
        m.proxy_require().collect::<Vec<_>>(),
        vec![&b"foo"[..], &b"bar"[..]]
    );
    assert_eq!(m.routes().count(), 3);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn content_length_variants() {
    let base = |cl: &str, body: &str| {
        format!("OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n{cl}\r\n{body}")
    };
    let b = base("Content-Length: 10\r\n", "abc");
    assert_eq!(
        parse(b.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
    let b = base("Content-Length: 2\r\n", "abcdef");
    assert_eq!(parse(b.as_bytes()).unwrap().body(), b"ab");
    let b = base("", "abc");
    let m = parse(b.as_bytes()).unwrap();
    assert_eq!(
        (m.body(), m.content_length(), m.max_forwards()),
        (&b"abc"[..], None, None)
    );
    let b = base("Content-Length: 1\r\nl: 2\r\n", "abc");
    assert_eq!(
        parse(b.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
}

#[test]
fn refusals_name_the_problem() {
    let ok = String::from_utf8(invite()).unwrap();
    let cases = [
        (
            ok.replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS"),
            ParseError::CseqMismatch,
        ),
        (
            ok.replace("Call-ID: c1@192.0.2.10\r\n", ""),
            ParseError::MissingHeader("Call-ID"),
        ),
        (
            ok.replace("INVITE sip:", "INVITE  sip:"),
            ParseError::BadStartLine("the version is not SIP/x.y, or extra white space"),
        ),
        (
            ok.replace("SIP/2.0\r\nVia", "SIP/2.0 \r\nVia"),
            ParseError::BadStartLine("the version is not SIP/x.y, or extra white space"),
        ),
        (
            ok.replace(
                "sip:+8613800138000@gw.example.net;user=phone SIP",
                "<sip:x@y> SIP",
            ),
            ParseError::BadRequestUri,
        ),
        (
            ok.replace("Max-Forwards: 70", "Max-Forwards: 300"),
            ParseError::BadHeader {
                name: "Max-Forwards",
                reason: "not a number from 0 to 255",
            },
        ),
        (ok.replace("\r\n\r\nabcd", "\r\n"), ParseError::NoHeaderEnd),
    ];
    for (msg, want) in cases {
        let got = parse(msg.as_bytes()).unwrap_err();
        assert_eq!(got, want, "{msg}");
        assert!(!got.to_string().is_empty());
    }
    let mut many = String::from("OPTIONS sip:u@h SIP/2.0\r\n");
    for _ in 0..=MAX_HEADERS {
        many.push_str("X: y\r\n");
    }
    many.push_str("\r\n");
    assert_eq!(
        parse(many.as_bytes()).unwrap_err(),
        ParseError::TooManyHeaders
    );
}

#[test]
fn response_and_version() {
    let b = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP gw.example.net:5060;branch=z9hG4bKx, SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.7;rport=40000\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let m = parse(b).unwrap();
    assert!(matches!(
        m.kind(),
        Kind::Response {
            status: 180,
            reason: b"Ringing",
            ..
        }
    ));
    assert!(m.kind().version_supported());
    let mut out = Vec::new();
    let hop = forward_response(&m, &mut out, b"GW.example.net").unwrap();
    assert_eq!(hop.host, Host::V4("198.51.100.7".parse().unwrap()));
    assert_eq!(hop.port, 40000);
    let r = parse(&out).unwrap();
    assert_eq!(r.vias().count(), 1);
    assert_eq!(r.top_via().unwrap().host_raw, b"10.0.0.1");
    assert_eq!(
        forward_response(&m, &mut Vec::new(), b"other.example"),
        Err(SpliceError::ViaNotOurs)
    );
    let single = String::from_utf8(b.to_vec()).unwrap().replace(
        ", SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.7;rport=40000",
        "",
    );
    let m = parse(single.as_bytes()).unwrap();
    assert_eq!(
        forward_response(&m, &mut Vec::new(), b"gw.example.net:5060"),
        Err(SpliceError::NoNextVia)
    );
    let v7 = b"INVITE sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    assert!(!parse(v7).unwrap().kind().version_supported());
}

fn spec(branch: &[u8]) -> ViaSpec<'_> {
    ViaSpec {
        transport: "UDP",
        host: "gw.example.net",
        port: 5060,
        branch,
        rport: true,
        stream: false,
    }
}

#[test]
fn forward_request_splices_only_what_it_must() {
    let b = invite();
    let m = parse(&b).unwrap();
    let br = stateless_branch(&m, &SECRET);
    let mut out = Vec::new();
    forward_request(&m, &mut out, &spec(&br), &[("P-Screened", "yes")]).unwrap();
    let f = parse(&out).unwrap();
    let top = f.top_via().unwrap();
    assert_eq!(top.host_raw, b"gw.example.net");
    assert_eq!(top.branch, Some(&br[..]));
    assert_eq!(f.vias().count(), 2);
    assert_eq!(f.max_forwards(), Some(69));
    assert_eq!(f.headers("P-Screened").next().unwrap().raw(), b"yes");
    assert_eq!(f.body(), b"abcd");
    // Everything but our Via, Max-Forwards and the added header is byte-identical.
    let strip = |s: &[u8]| -> Vec<u8> {
        String::from_utf8(s.to_vec())
            .unwrap()
            .split("\r\n")
            .filter(|l| {
                !l.starts_with("Max-Forwards")
                    && !l.contains("gw.example.net:5060")
                    && !l.starts_with("P-Screened")
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes()
    };
    assert_eq!(strip(&out), strip(&b));
    // Missing Max-Forwards → 70 inserted; 0 → refused; stream adds Content-Length.
    let nomf = String::from_utf8(b.clone())
        .unwrap()
        .replace("Max-Forwards: 70\r\n", "")
        .replace("Content-Length: 4\r\n", "");
    let m = parse(nomf.as_bytes()).unwrap();
    let mut out = Vec::new();
    forward_request(
        &m,
        &mut out,
        &ViaSpec {
            stream: true,
            ..spec(&br)
        },
        &[],
    )
    .unwrap();
    let f = parse(&out).unwrap();
    assert_eq!((f.max_forwards(), f.content_length()), (Some(70), Some(4)));
    let zero = String::from_utf8(b.clone())
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let m = parse(zero.as_bytes()).unwrap();
    assert_eq!(
        forward_request(&m, &mut Vec::new(), &spec(&br), &[]),
        Err(SpliceError::MaxForwardsExhausted)
    );
    let m = parse(&b).unwrap();
    assert_eq!(
        forward_request(
            &m,
            &mut Vec::new(),
            &spec(&br),
            &[("X", "a\r\nInjected: 1")]
        ),
        Err(SpliceError::BadAddedHeader)
    );
}

#[test]
fn local_608_is_stable_across_retransmissions() {
    let b = invite();
    let m = parse(&b).unwrap();
    let tag = to_tag_for(&m, &SECRET);
    let ci = "<https://redress.example.net/jcard>;purpose=jwscard";
    let mut out1 = Vec::new();
    local_response(&m, 608, "Rejected", &tag, &[("Call-Info", ci)], &mut out1).unwrap();
    let again = invite();
    let m2 = parse(&again).unwrap();
    let mut out2 = Vec::new();
    local_response(
        &m2,
        608,
        "Rejected",
        &to_tag_for(&m2, &SECRET),
        &[("Call-Info", ci)],
        &mut out2,
    )
    .unwrap();
    assert_eq!(out1, out2);
    let r = parse(&out1).unwrap();
    assert!(matches!(r.kind(), Kind::Response { status: 608, .. }));
    assert_eq!(r.to().unwrap().tag, Some(&tag[..]));
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.top_via().unwrap(), m.top_via().unwrap());
    assert_eq!(r.headers("Call-Info").next().unwrap().raw(), ci.as_bytes());
    assert_eq!(r.content_length(), Some(0));
}

#[test]
fn branch_same_for_retransmission_and_cancel() {
    let b = invite();
    let inv = parse(&b).unwrap();
    let cancel = String::from_utf8(b.clone())
        .unwrap()
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let c = parse(cancel.as_bytes()).unwrap();
    assert_eq!(
        stateless_branch(&inv, &SECRET),
        stateless_branch(&c, &SECRET)
    );
    assert!(stateless_branch(&inv, &SECRET).starts_with(MAGIC_COOKIE));
    // RFC 2543 peer (no cookie): the fallback fields also agree for the CANCEL.
    let old = |s: &str| s.replace("branch=z9hG4bKabc", "branch=1234");
    let (i2, c2) = (old(&String::from_utf8(b.clone()).unwrap()), old(&cancel));
    let (i2, c2) = (parse(i2.as_bytes()).unwrap(), parse(c2.as_bytes()).unwrap());
    assert_eq!(
        stateless_branch(&i2, &SECRET),
        stateless_branch(&c2, &SECRET)
    );
    assert_ne!(
        stateless_branch(&i2, &SECRET),
        stateless_branch(&inv, &SECRET)
    );
    // A new transaction differs.
    let other = String::from_utf8(b.clone())
        .unwrap()
        .replace("z9hG4bKabc", "z9hG4bKdef");
    assert_ne!(
        stateless_branch(&parse(other.as_bytes()).unwrap(), &SECRET),
        stateless_branch(&inv, &SECRET)
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&b);
        let _ = parse_uri(&b);
        let _ = frame_len(&b);
        if let Ok(m) = parse(&b) {
            let _ = (m.from(), m.to(), m.routes().count(), m.p_asserted_identity(), m.privacy_id());
        }
    }

    #[test]
    fn mutated_messages_never_panic_and_forward_reparses(
        pos in 0usize..400, byte in any::<u8>(), del in any::<bool>()
    ) {
        let mut b = invite();
        let p = pos % b.len();
        if del { b.remove(p); } else { b.insert(p, byte); }
        if let Ok(m) = parse(&b) {
            let br = stateless_branch(&m, &SECRET);
            let mut out = Vec::new();
            if forward_request(&m, &mut out, &spec(&br), &[("X-Tag", "1")]).is_ok() {
                prop_assert!(parse(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            }
            let mut out = Vec::new();
            if local_response(&m, 603, "Decline", &to_tag_for(&m, &SECRET), &[], &mut out).is_ok() {
                prop_assert!(parse(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            }
        }
    }
}

#[test]
fn a_stray_comma_in_to_is_refused_not_spliced_into_a_list() {
    // Found by `cargo fuzz run sip_parse` (fuzz/corpus/sip_parse/crash-local-response-1): a To
    // with a trailing comma parsed, and the 608 with `;tag=` appended no longer did.
    let data = include_bytes!("../../../fuzz/corpus/sip_parse/crash-local-response-1");
    assert!(matches!(
        parse(data),
        Err(ParseError::BadHeader { name: "To", .. })
    ));
    let ok = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
From: \"Doe, John\" <sip:a@b>;tag=1\r\nTo: <sip:c,d@e>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert!(parse(ok).is_ok(), "commas inside quotes and <> are fine");
}
