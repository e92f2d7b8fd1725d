//! The torture messages of RFC 4475 (SIP) and RFC 5118 (SIP over IPv6), one test each,
//! asserting what those RFCs prescribe for a *stateless proxy that screens calls*:
//!
//! - a valid message parses, yields the values the proxy routes and screens on (method,
//!   Request-URI, top Via, From/To, Call-ID, CSeq, Max-Forwards, body), and splices
//!   ([`forward_request`], [`local_response`], [`forward_response`]) into bytes that parse again;
//! - an invalid one is refused with the [`ParseError`] that names the fault (the plane answers
//!   400, or drops a response), or parses with the value that makes the plane give the answer
//!   the RFC names (505, 416, 420, 483).
//!
//! The messages are transcribed from the RFC texts (RFC 4475 §2: every line ends in CRLF;
//! `<allOneLine>` lines are joined; `<hex>` is the bytes; `<repeat count=N>x</repeat>` is x
//! N times). Where the RFC's bytes are a signature or an SDP whose exact octets do not matter
//! to the test, the comment says what stands in for them; Content-Length is then computed so
//! that it stays true to the body, as the RFC's own values are.
//!
//! Each message is also a file in `fuzz/corpus/sip_parse/` (replayed by
//! `gateway/tests/fuzz_corpus.rs`); `corpus_files_are_the_messages` keeps the two equal.
//! After changing a message here, rewrite the files with
//! `DRAGNET_WRITE_TORTURE_CORPUS=1 cargo test -p dragnet-gateway torture::corpus`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const SECRET: [u8; 32] = [9; 32];

// ---------------------------------------------------------------------------------------------
// Building the wire bytes

/// The RFC's text form to wire bytes: every LF becomes CRLF (RFC 4475 §2).
fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    for &b in text.as_bytes() {
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
    }
    out
}

/// Header block (one header per line, no blank line) + blank line + body. `{len}` in the
/// header block is replaced by the body length.
fn msg(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = wire(&head.replace("{len}", &body.len().to_string()));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The session description most RFC 4475 INVITEs carry (150 octets with these addresses,
/// as the RFC's `Content-Length: 150` says).
fn sdp(origin: &str, conn: &str) -> Vec<u8> {
    wire(&format!(
        "v=0\no=mhandley 29739 7272939 IN IP4 {origin}\ns=-\nc=IN IP4 {conn}\nt=0 0\n\
         m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
    ))
}

fn sdp150() -> Vec<u8> {
    sdp("192.0.2.3", "192.0.2.4")
}

// ---------------------------------------------------------------------------------------------
// What the proxy reads and how it splices

fn valid(b: &[u8]) -> Message<'_> {
    match parse(b) {
        Ok(m) => m,
        Err(e) => panic!(
            "valid torture message refused: {e}\n{}",
            String::from_utf8_lossy(b)
        ),
    }
}

fn refused(b: &[u8]) -> ParseError {
    match parse(b) {
        Ok(_) => panic!(
            "invalid torture message accepted:\n{}",
            String::from_utf8_lossy(b)
        ),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn request<'a>(m: &Message<'a>) -> (&'a [u8], &'a [u8]) {
    match m.kind() {
        Kind::Request { method, uri, .. } => (method, uri),
        Kind::Response { .. } => panic!("not a request"),
    }
}

fn status(m: &Message) -> (u16, Vec<u8>) {
    match m.kind() {
        Kind::Response { status, reason, .. } => (status, reason.to_vec()),
        Kind::Request { .. } => panic!("not a response"),
    }
}

fn sip(u: Uri<'_>) -> SipUri<'_> {
    match u {
        Uri::Sip(s) => s,
        other => panic!("not a sip URI: {other:?}"),
    }
}

/// The user part with `%HH` decoded (RFC 3261 §19.1.4).
fn user(u: Uri<'_>) -> Vec<u8> {
    let mut buf = [0u8; 128];
    sip(u).user_unescaped(&mut buf).unwrap().to_vec()
}

fn ruri<'a>(m: &Message<'a>) -> Uri<'a> {
    parse_uri(request(m).1).unwrap()
}

fn v6(s: &str) -> Host<'static> {
    Host::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn v4(s: &str) -> Host<'static> {
    Host::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn our_via(branch: &[u8], stream: bool) -> ViaSpec<'_> {
    ViaSpec {
        transport: if stream { "TCP" } else { "UDP" },
        host: "192.0.2.250",
        port: 5060,
        branch,
        rport: true,
        stream,
    }
}

/// RFC 3261 §16.6 / §16.11: forwards `m` over UDP and over TCP and checks the copy: our Via on
/// top, the received ones below in order, Max-Forwards one less (70 if absent), the start
/// line, Call-ID, CSeq, From, To and body unchanged, and a stream copy that frames exactly.
fn forwards(m: &Message) {
    let branch = stateless_branch(m, &SECRET);
    assert!(branch.starts_with(MAGIC_COOKIE));
    for stream in [false, true] {
        let mut out = Vec::new();
        forward_request(
            m,
            &mut out,
            &our_via(&branch, stream),
            &[("X-Screened", "pass")],
        )
        .unwrap();
        let f = parse(&out).unwrap_or_else(|e| {
            panic!(
                "forwarded copy refused: {e}\n{}",
                String::from_utf8_lossy(&out)
            )
        });
        assert_eq!(f.kind(), m.kind());
        let top = f.top_via().unwrap();
        assert_eq!(top.host, v4("192.0.2.250"));
        assert_eq!(top.branch, Some(&branch[..]));
        let theirs: Vec<_> = m.vias().map(Result::unwrap).collect();
        let below: Vec<_> = f.vias().skip(1).map(Result::unwrap).collect();
        assert_eq!(below, theirs);
        assert_eq!(
            f.max_forwards(),
            Some(m.max_forwards().map_or(70, |n| n - 1))
        );
        assert_eq!((f.call_id(), f.cseq()), (m.call_id(), m.cseq()));
        assert_eq!(f.from().unwrap(), m.from().unwrap());
        assert_eq!(f.to().unwrap(), m.to().unwrap());
        assert_eq!(f.body(), m.body());
        assert_eq!(f.headers("X-Screened").next().unwrap().raw(), b"pass");
        if stream {
            // RFC 3261 §18.3: on a stream the copy must carry a Content-Length that frames it.
            let fr = frame(&out).unwrap().unwrap();
            assert_eq!(fr.total(), out.len());
        }
    }
}

/// RFC 3261 §8.2.6: a locally generated answer (`status`) parses again and carries the
/// request's Via values, Call-ID, CSeq and From, and a To-tag (the received one if there was
/// one, else ours, the same for a retransmission).
fn answers(m: &Message, code: u16) {
    let tag = to_tag_for(m, &SECRET);
    let mut out = Vec::new();
    local_response(m, code, "Torture", &tag, &[], &mut out).unwrap();
    let r = parse(&out).unwrap_or_else(|e| {
        panic!(
            "local {code} refused: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(status(&r).0, code);
    let want: Vec<_> = m.vias().map(Result::unwrap).collect();
    let got: Vec<_> = r.vias().map(Result::unwrap).collect();
    assert_eq!(got, want);
    assert_eq!((r.call_id(), r.cseq()), (m.call_id(), m.cseq()));
    assert_eq!(r.from().unwrap(), m.from().unwrap());
    let want_tag = m.to().unwrap().tag.unwrap_or(&tag[..]);
    assert_eq!(r.to().unwrap().tag, Some(want_tag));
    assert_eq!(r.content_length(), Some(0));
    let mut again = Vec::new();
    local_response(m, code, "Torture", &to_tag_for(m, &SECRET), &[], &mut again).unwrap();
    assert_eq!(again, out);
}

/// Every check a valid request gets: forwarded, and answered locally with a reject.
fn proxies(m: &Message) {
    forwards(m);
    answers(m, 608);
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.1.1: valid messages

/// RFC 4475 §3.1.1.1 (wsinv): folding everywhere, LWS around every separator, mixed compact
/// and long header names in odd case, escaped quotes, an empty Subject, unknown headers and
/// parameters, leading zeros in Max-Forwards and CSeq. Proxies forward unknown headers as is.
fn rfc4475_3_1_1_1() -> Vec<u8> {
    msg(
        r#"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
"#,
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_1_1_wsinv() {
    let b = rfc4475_3_1_1_1();
    let m = valid(&b);
    assert_eq!(
        request(&m),
        (
            &b"INVITE"[..],
            &b"sip:vivekg@chair-dnrc.example.com;unknownparam"[..]
        )
    );
    assert_eq!(sip(ruri(&m)).params().get(b"unknownparam"), Some(None));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq(), (9, &b"INVITE"[..]));
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!((m.content_length(), m.body().len()), (Some(150), 150));
    let top = m.top_via().unwrap();
    assert_eq!(top.transport, b"UDP");
    assert_eq!(top.host, v4("192.0.2.2"));
    assert_eq!((top.port, top.branch), (None, Some(&b"390skdjuw"[..])));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[1].transport, vias[1].host_raw),
        (&b"TCP"[..], &b"spindle.example.com"[..])
    );
    assert_eq!(vias[1].branch, Some(&b"z9hG4bK9ikj8"[..]));
    assert_eq!(vias[2].host, v4("192.168.255.111"));
    assert_eq!(vias[2].branch, Some(&b"z9hG4bK30239"[..]));
    let from = m.from().unwrap();
    assert_eq!(
        from.display_unescaped().collect::<Vec<_>>(),
        br#"J Rosenberg \""#
    );
    assert_eq!(from.tag, Some(&b"98asjd8"[..]));
    assert_eq!(user(from.uri), b"jdrosen");
    let to = m.to().unwrap();
    assert_eq!(to.tag, Some(&b"1918181833n"[..]));
    assert_eq!(user(to.uri), b"vivekg");
    assert_eq!(m.headers("Subject").next().unwrap().raw(), b"");
    let unfolded: Vec<u8> = m
        .headers("NewFangledHeader")
        .next()
        .unwrap()
        .unfolded()
        .collect();
    assert_eq!(unfolded, b"newfangled value continued newfangled value");
    assert_eq!(m.routes().count(), 1);
    proxies(&m);
    // Unknown headers travel byte for byte (RFC 3261 §16.6 step 1).
    let mut out = Vec::new();
    forward_request(&m, &mut out, &our_via(b"z9hG4bKx", false), &[]).unwrap();
    let f = parse(&out).unwrap();
    assert_eq!(
        f.headers("UnknownHeaderWithUnusualValue")
            .next()
            .unwrap()
            .raw(),
        b";;,,;;,;"
    );
}

/// RFC 4475 §3.1.1.2 (intmeth): every token character in the method, every legal URI
/// character in the Request-URI (user and password), quoted-pairs of BEL, NUL and DEL in a
/// display name, UTF-8 in a quoted parameter and in an extension header's value.
fn rfc4475_3_1_1_2() -> Vec<u8> {
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    let head = format!(
        "{method} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n\
         Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n\
         To: \"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n\
         From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com> ;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.\n\
         Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}}{{\n\
         CSeq: 139122385 {method}\n\
         Max-Forwards: 255\n\
         extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{505c}\u{96fb}\n\
         Content-Length: 0\n"
    );
    msg(&head, b"")
}

#[test]
fn rfc4475_3_1_1_2_intmeth() {
    let b = rfc4475_3_1_1_2();
    let m = valid(&b);
    let (method, uri) = request(&m);
    assert_eq!(method, b"!interesting-Method0123456789_*+`.%indeed'~");
    assert_eq!(m.cseq(), (139122385, method));
    let u = sip(parse_uri(uri).unwrap());
    assert_eq!(
        u.user(),
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        u.password,
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(u.host, Host::Name(b"example.com"));
    assert_eq!(
        m.top_via().unwrap().branch,
        Some(&b"z9hG4bK-.!%66*_+`'~"[..])
    );
    let to = m.to().unwrap();
    assert_eq!(
        to.display_unescaped().collect::<Vec<_>>(),
        b"BEL:\x07 NUL:\x00 DEL:\x7f"
    );
    assert_eq!(to.tag, None);
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"token1~` token2'+_ token3*%!.-"[..]));
    assert_eq!(from.tag, Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(
        m.call_id(),
        br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
    );
    assert_eq!(m.max_forwards(), Some(255));
    assert_eq!(m.body(), b"");
    proxies(&m);
}

/// RFC 4475 §3.1.1.3 (esc01): `%HH` escapes in user parts, including an escaped `:` and `@`
/// in the Request-URI user and escaped URI parameters in the Contact.
fn rfc4475_3_1_1_3() -> Vec<u8> {
    msg(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_1_3_esc01() {
    let b = rfc4475_3_1_1_3();
    let m = valid(&b);
    let u = ruri(&m);
    assert_eq!(user(u), b"sips:user@example.com");
    assert_eq!(sip(u).host, Host::Name(b"example.net"));
    assert_eq!(user(m.to().unwrap().uri), b"user");
    assert_eq!(user(m.from().unwrap().uri), b"I have spaces");
    assert_eq!(m.call_id(), b"esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(m.max_forwards(), Some(87));
    assert_eq!(m.body().len(), 150);
    proxies(&m);
}

/// RFC 4475 §3.1.1.4 (escnull): `%00` in user parts. Legal: an element must not cut the
/// user at the NUL.
fn rfc4475_3_1_1_4() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_4_escnull() {
    let b = rfc4475_3_1_1_4();
    let m = valid(&b);
    assert_eq!(request(&m), (&b"REGISTER"[..], &b"sip:example.com"[..]));
    assert_eq!(user(m.to().unwrap().uri), b"null-\0-null");
    let from = m.from().unwrap();
    assert_eq!(user(from.uri), b"null-\0-null");
    assert_eq!(from.tag, Some(&b"839923423"[..]));
    assert_eq!(m.headers("Contact").count(), 2);
    assert_eq!(m.content_length(), Some(0));
    proxies(&m);
}

/// RFC 4475 §3.1.1.5 (esc02): `%` that is not an escape where the grammar says token (method,
/// branch) or quoted-string (display name); an escape in a header *name* makes it another
/// header (`C%6Fntact` is not Contact).
fn rfc4475_3_1_1_5() -> Vec<u8> {
    msg(
        r#"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0
"#,
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_5_esc02() {
    let b = rfc4475_3_1_1_5();
    let m = valid(&b);
    // The method is the token as written, not REGISTER.
    assert_eq!(request(&m).0, b"RE%47IST%45R");
    assert_eq!(m.cseq(), (29344, &b"RE%47IST%45R"[..]));
    let top = m.top_via().unwrap();
    assert_eq!(top.branch, Some(&b"z9hG4bK209%fzsnel234"[..]));
    assert_eq!(top.rport, Some(None));
    assert_eq!(m.to().unwrap().display, Some(&b"%Z%45"[..]));
    assert_eq!(m.from().unwrap().tag, Some(&b"f232jadfj23"[..]));
    assert_eq!(m.headers("Contact").count(), 2);
    assert_eq!(m.headers("C%6Fntact").count(), 1);
    proxies(&m);
}

/// RFC 4475 §3.1.1.6 (lwsdisp): no LWS between a token display name and `<`.
fn rfc4475_3_1_1_6() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_6_lwsdisp() {
    let b = rfc4475_3_1_1_6();
    let m = valid(&b);
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"caller"[..]));
    assert_eq!(user(from.uri), b"caller");
    assert_eq!(from.tag, Some(&b"323"[..]));
    assert_eq!(m.cseq(), (60, &b"OPTIONS"[..]));
    proxies(&m);
}

/// RFC 4475 §3.1.1.7 (longreq): very long display name, URI parameters, tag, Call-ID, header
/// name and value, and a long Via list spread over repeated and compact header lines.
fn rfc4475_3_1_1_7() -> Vec<u8> {
    let r = |s: &str, n: usize| s.repeat(n);
    let mut head = format!(
        "INVITE sip:user@example.com SIP/2.0\n\
         To: \"I have a user name of {} proportion\"<sip:user@example.com:6000;unknownparam1=very{}value;longparam{}=shortvalue;very{}ParameterNameWithNoValue>\n\
         F: sip:{}@example.net;tag=12{}424;unknownheaderparam{}=unknowheaderparam{};unknownValueless{}\n\
         Call-ID: longreq.one{}longcallid\n\
         CSeq: 3882340 INVITE\n\
         Unknown-{}-Name: unknown-{}-value; unknown-{}-parameter-name = unknown-{}-parameter-value\n",
        r("extreme", 10),
        r("long", 20),
        r("name", 25),
        r("long", 25),
        r("amazinglylongcallername", 5),
        r("982", 50),
        r("name", 20),
        r("value", 15),
        r("paramname", 10),
        r("really", 20),
        r("Long", 20),
        r("long", 20),
        r("long", 20),
        r("long", 20),
    );
    // The Via list, top first, written with each spelling of the header name.
    let names = ["Via", "v", "V", "via", "VIA", "vIa"];
    for (i, n) in (1..=33).rev().enumerate() {
        head.push_str(&format!(
            "{}: SIP/2.0/TCP sip{n}.example.com\n",
            names[i % names.len()]
        ));
    }
    head.push_str(&format!(
        "Max-Forwards: 70\nContact: <sip:{}@host5.example.net>\nContent-Type: application/sdp\nl: 150\n",
        r("amazinglylongcallername", 5)
    ));
    msg(&head, &sdp150())
}

#[test]
fn rfc4475_3_1_1_7_longreq() {
    let b = rfc4475_3_1_1_7();
    let m = valid(&b);
    let to = m.to().unwrap();
    assert!(to.display.unwrap().len() > 90);
    let tu = sip(to.uri);
    assert_eq!(tu.port, Some(6000));
    assert_eq!(
        tu.params()
            .get(&format!("longparam{}", "name".repeat(25)).into_bytes()),
        Some(Some(&b"shortvalue"[..]))
    );
    let from = m.from().unwrap();
    assert_eq!(
        from.tag.unwrap(),
        format!("12{}424", "982".repeat(50)).as_bytes()
    );
    assert_eq!(
        m.call_id(),
        format!("longreq.one{}longcallid", "really".repeat(20)).as_bytes()
    );
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 33);
    assert_eq!(vias[0].host_raw, b"sip33.example.com");
    assert_eq!(vias[32].host_raw, b"sip1.example.com");
    // No branch: RFC 2543 matching (RFC 3261 §16.11) still derives a branch.
    assert_eq!(vias[0].branch, None);
    assert_eq!(m.body().len(), 150);
    proxies(&m);
}

/// RFC 4475 §3.1.1.8 (dblreq): a REGISTER with `Content-Length: 0` followed in the same UDP
/// datagram by a whole INVITE. RFC 3261 §18.3: the octets past Content-Length are discarded;
/// they must not be taken for a second message nor forwarded.
fn rfc4475_3_1_1_8() -> Vec<u8> {
    let invite = msg(
        "INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150
",
        &sdp("192.0.2.15", "192.0.2.15")[..],
    );
    let mut reg = msg(
        "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0
",
        b"\r\n",
    );
    reg.extend_from_slice(&invite);
    reg
}

#[test]
fn rfc4475_3_1_1_8_dblreq() {
    let b = rfc4475_3_1_1_8();
    let m = valid(&b);
    assert_eq!(request(&m).0, b"REGISTER");
    assert_eq!(m.call_id(), b"dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert_eq!((m.content_length(), m.body()), (Some(0), &b""[..]));
    let mut out = Vec::new();
    forward_request(&m, &mut out, &our_via(b"z9hG4bKx", false), &[]).unwrap();
    assert!(!out.windows(6).any(|w| w == b"INVITE"));
    proxies(&m);
}

/// RFC 4475 §3.1.1.9 (semiuri): `;` inside the user part, which is part of the user, not a
/// URI parameter.
fn rfc4475_3_1_1_9() -> Vec<u8> {
    msg(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sipfrag, text/plain
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_9_semiuri() {
    let b = rfc4475_3_1_1_9();
    let m = valid(&b);
    let u = sip(ruri(&m));
    assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(u.host, Host::Name(b"example.com"));
    assert_eq!(u.params().count(), 0);
    assert_eq!(user(ruri(&m)), b"user;par=u@example.net");
    assert_eq!(m.max_forwards(), Some(3));
    proxies(&m);
}

/// RFC 4475 §3.1.1.10 (transports): known, less known and unknown Via transports.
fn rfc4475_3_1_1_10() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_10_transports() {
    let b = rfc4475_3_1_1_10();
    let m = valid(&b);
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]);
    assert_eq!(m.call_id(), b"transports.kijh4akdnaqjkwendsasfdj");
    assert_eq!(m.top_via().unwrap().host_raw, b"t1.example.com");
    proxies(&m);
}

/// RFC 4475 §3.1.1.11 (mpart01): a MESSAGE with a multipart/signed body whose second part is
/// binary and holds NUL, CR and LF octets; only Content-Length frames it. Stand-in: the RFC's
/// second part is a PKCS#7 signature; the bytes below are of the same kind (DER header, NULs,
/// an embedded CRLF CRLF, octets above 0x7f) so the framing is tested the same way.
fn rfc4475_3_1_1_11() -> Vec<u8> {
    let mut body = wire(
        "--9ad0f8ce6c4c7c5f
Content-Type: text/plain
Content-Transfer-Encoding: binary

Hello
--9ad0f8ce6c4c7c5f
Content-Type: application/pkcs7-signature; name=smime.p7s
Content-Disposition: attachment; handling=required; filename=smime.p7s
Content-Transfer-Encoding: binary

",
    );
    body.extend_from_slice(&[
        0x30, 0x82, 0x01, 0x52, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
        0xa0, 0x82, 0x01, 0x43, 0x30, 0x82, 0x01, 0x3f, 0x02, 0x01, 0x01, 0x31, 0x0b, 0x30, 0x09,
        0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86,
        0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x00, 0xff, 0xfe,
    ]);
    body.extend_from_slice(b"\r\n--9ad0f8ce6c4c7c5f--\r\n");
    msg(
        r#"MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity-Info: <https://127.0.0.1:5080/cert>;alg=rsa-sha1
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Accept: multipart/mixed, multipart/related, text/plain
Content-Type: multipart/signed;protocol="application/pkcs7-signature";micalg=sha1;boundary=9ad0f8ce6c4c7c5f
Content-Length: {len}
"#,
        &body,
    )
}

#[test]
fn rfc4475_3_1_1_11_mpart01() {
    let b = rfc4475_3_1_1_11();
    let m = valid(&b);
    assert_eq!(request(&m).0, b"MESSAGE");
    let top = m.top_via().unwrap();
    assert_eq!(
        (top.host, top.port, top.rport),
        (v4("127.0.0.1"), Some(5070), Some(None))
    );
    assert_eq!(m.content_length().unwrap() as usize, m.body().len());
    assert!(m.body().ends_with(b"--9ad0f8ce6c4c7c5f--\r\n"));
    assert!(m.body().contains(&0));
    proxies(&m);
    // On a stream the body's CRLF CRLF must not end the message early.
    let fr = frame(&b).unwrap().unwrap();
    assert_eq!(fr.total(), b.len());
}

/// RFC 4475 §3.1.1.12 (unreason): a reason phrase with `*`, `=` and UTF-8 ("but one
/// hundred ninety-nine is prime" in Russian).
fn rfc4475_3_1_1_12() -> Vec<u8> {
    msg(
        "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: {len}
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>
",
        &sdp("192.0.2.198", "192.0.2.198"),
    )
}

#[test]
fn rfc4475_3_1_1_12_unreason() {
    let b = rfc4475_3_1_1_12();
    let m = valid(&b);
    let (code, reason) = status(&m);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8(reason).unwrap(),
        "= 2**3 * 5**2 но сто девяносто девять - простое"
    );
    assert!(m.kind().version_supported());
    assert_eq!(m.to().unwrap().tag, Some(&b"2229"[..]));
    assert_eq!(m.content_length().unwrap() as usize, m.body().len());
    // The one Via is the UAC's: not ours, so a proxy drops it (RFC 3261 §16.7 step 3)…
    assert_eq!(
        forward_response(&m, &mut Vec::new(), b"192.0.2.250"),
        Err(SpliceError::ViaNotOurs)
    );
    // …and if it were ours there is nowhere further to send it.
    assert_eq!(
        forward_response(&m, &mut Vec::new(), b"192.0.2.198"),
        Err(SpliceError::NoNextVia)
    );
}

/// RFC 4475 §3.1.1.13 (noreason): an empty reason phrase; the SP after the code is there.
fn rfc4475_3_1_1_13() -> Vec<u8> {
    msg(
        "SIP/2.0 100\x20
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_1_13_noreason() {
    let b = rfc4475_3_1_1_13();
    assert!(b.starts_with(b"SIP/2.0 100 \r\n"));
    let m = valid(&b);
    assert_eq!(status(&m), (100, Vec::new()));
    assert_eq!(m.cseq(), (35, &b"INVITE"[..]));
    assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bK2398ndaoe"[..]));
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.1.2: invalid messages

/// RFC 4475 §3.1.2.1 (badinv01): empty Via and Contact parameters (`;;,;,,`, `;;;;`).
/// The RFC: respond 400.
fn rfc4475_3_1_2_1() -> Vec<u8> {
    msg(
        r#"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: {len}
Content-Type: application/sdp
"#,
        &sdp("192.0.2.15", "192.0.2.15"),
    )
}

#[test]
fn rfc4475_3_1_2_1_badinv01() {
    assert_eq!(
        refused(&rfc4475_3_1_2_1()),
        ParseError::BadHeader {
            name: "Via",
            reason: "malformed parameter"
        }
    );
}

/// RFC 4475 §3.1.2.2 (clerr): Content-Length 9999, far more than the message holds. Over UDP
/// the RFC says 400; over a stream the receiver can only wait for more octets.
fn rfc4475_3_1_2_2() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999
",
        &sdp("192.0.2.155", "192.0.2.155"),
    )
}

#[test]
fn rfc4475_3_1_2_2_clerr() {
    let b = rfc4475_3_1_2_2();
    assert_eq!(refused(&b), ParseError::BadContentLength);
    assert_eq!(frame(&b).unwrap(), None, "a stream waits for the rest");
}

/// RFC 4475 §3.1.2.3 (ncl): Content-Length -999. The RFC: 400 (and close a stream).
fn rfc4475_3_1_2_3() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999
",
        &sdp("192.0.2.53", "192.0.2.53"),
    )
}

#[test]
fn rfc4475_3_1_2_3_ncl() {
    let b = rfc4475_3_1_2_3();
    assert_eq!(refused(&b), ParseError::BadContentLength);
    assert_eq!(frame(&b), Err(ParseError::BadContentLength));
}

/// RFC 4475 §3.1.2.4 (scalar02): CSeq number 2**65, Max-Forwards 300, Expires 10**100 and a
/// huge Contact expires. The RFC: 400.
fn rfc4475_3_1_2_4() -> Vec<u8> {
    msg(
        &format!(
            "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1{}
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0
",
            "0".repeat(100)
        ),
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_4_scalar02() {
    let b = rfc4475_3_1_2_4();
    assert_eq!(
        refused(&b),
        ParseError::BadHeader {
            name: "Max-Forwards",
            reason: "not a number from 0 to 255"
        }
    );
    // The CSeq number alone is refused too (RFC 3261 §8.1.1.5: below 2**31).
    let cseq_only = String::from_utf8(b)
        .unwrap()
        .replace("Max-Forwards: 300", "Max-Forwards: 70");
    assert!(matches!(
        refused(cseq_only.as_bytes()),
        ParseError::BadHeader { name: "CSeq", .. }
    ));
}

/// RFC 4475 §3.1.2.5 (scalarlg): a response with a CSeq number above 2**32-1, a huge
/// Retry-After and a four-digit warn-code. The RFC: discard it.
fn rfc4475_3_1_2_5() -> Vec<u8> {
    msg(
        r#"SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_5_scalarlg() {
    assert!(matches!(
        refused(&rfc4475_3_1_2_5()),
        ParseError::BadHeader { name: "CSeq", .. }
    ));
}

/// RFC 4475 §3.1.2.6 (quotbal): the To display name's quote never closes. The RFC: 400.
fn rfc4475_3_1_2_6() -> Vec<u8> {
    msg(
        r#"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: {len}
"#,
        &sdp("192.0.2.15", "192.0.2.15"),
    )
}

#[test]
fn rfc4475_3_1_2_6_quotbal() {
    assert_eq!(
        refused(&rfc4475_3_1_2_6()),
        ParseError::BadHeader {
            name: "To",
            reason: "display name has no closing quote"
        }
    );
}

/// RFC 4475 §3.1.2.7 (ltgtruri): the Request-URI in `<>`. The RFC: 400.
fn rfc4475_3_1_2_7() -> Vec<u8> {
    msg(
        "INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: {len}
",
        &sdp("192.0.2.5", "192.0.2.5"),
    )
}

#[test]
fn rfc4475_3_1_2_7_ltgtruri() {
    assert_eq!(refused(&rfc4475_3_1_2_7()), ParseError::BadRequestUri);
}

/// RFC 4475 §3.1.2.8 (lwsruri): LWS inside the Request-URI (`; lr`), which makes the
/// Request-Line four elements. The RFC: 400.
fn rfc4475_3_1_2_8() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: {len}
",
        &sdp("192.0.2.1", "192.0.2.1"),
    )
}

#[test]
fn rfc4475_3_1_2_8_lwsruri() {
    assert!(matches!(
        refused(&rfc4475_3_1_2_8()),
        ParseError::BadStartLine(_)
    ));
}

/// RFC 4475 §3.1.2.9 (lwsstart): two SPs between the Request-Line elements. The RFC: 400
/// (or be liberal); the codec refuses (RFC 3261 §7.1: single SP).
fn rfc4475_3_1_2_9() -> Vec<u8> {
    msg(
        "INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_2_9_lwsstart() {
    assert!(matches!(
        refused(&rfc4475_3_1_2_9()),
        ParseError::BadStartLine(_)
    ));
}

/// RFC 4475 §3.1.2.10 (trws): SP characters after the SIP-Version. The RFC: "reasonable to
/// always reject … with a 400"; elements may instead drop the SPs. The codec's choice is to
/// refuse, since it forwards the start line byte for byte.
fn rfc4475_3_1_2_10() -> Vec<u8> {
    msg(
        "OPTIONS sip:remote-target@example.com SIP/2.0\x20\x20
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_10_trws() {
    let b = rfc4475_3_1_2_10();
    assert!(b.starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"));
    assert!(matches!(refused(&b), ParseError::BadStartLine(_)));
}

/// RFC 4475 §3.1.2.11 (escruri): `?Route=…` headers in the Request-URI, which RFC 3261
/// §19.1.1 does not allow there. The RFC: 400, or ignore them; a proxy must never forward
/// them. The stateless proxy forwards the Request-URI as received, so the codec refuses.
fn rfc4475_3_1_2_11() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 39234 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_2_11_escruri() {
    assert_eq!(refused(&rfc4475_3_1_2_11()), ParseError::BadRequestUri);
    // The same URI is fine where headers are allowed (RFC 4475 §3.3.14).
    assert!(
        sip(parse_uri(b"sip:user@example.com?Route=%3Csip:example.com%3E").unwrap())
            .headers
            .is_some()
    );
}

/// RFC 4475 §3.1.2.12 (baddate): a Date in EST instead of GMT. The RFC: do not reject unless
/// the Date matters to the element; a proxy forwards it unchanged. The codec never reads Date.
fn rfc4475_3_1_2_12() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_2_12_baddate() {
    let b = rfc4475_3_1_2_12();
    let m = valid(&b);
    proxies(&m);
    let mut out = Vec::new();
    forward_request(&m, &mut out, &our_via(b"z9hG4bKx", false), &[]).unwrap();
    assert_eq!(
        parse(&out).unwrap().headers("Date").next().unwrap().raw(),
        b"Fri, 01 Jan 2010 16:00:00 EST"
    );
}

/// RFC 4475 §3.1.2.13 (regbadct): a Contact URI with `?headers` not enclosed in `<>`. The
/// RFC: 400 is reasonable, or infer the brackets. The codec's choice: the proxy does not
/// route on Contact, so the REGISTER parses and is forwarded untouched (the registrar
/// judges it); read as a name-addr, the brackets are inferred.
fn rfc4475_3_1_2_13() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_13_regbadct() {
    let b = rfc4475_3_1_2_13();
    let m = valid(&b);
    let c = m.headers("Contact").next().unwrap().raw();
    let na = parse_name_addr(c, "Contact").unwrap();
    assert_eq!(
        sip(na.uri).headers,
        Some(&b"Route=%3Csip:sip.example.com%3E"[..])
    );
    proxies(&m);
}

/// RFC 4475 §3.1.2.14 (badaspec): SP inside the `<>` of the To addr-spec. The RFC: 400 is
/// reasonable (or ignore the spaces); the codec refuses.
fn rfc4475_3_1_2_14() -> Vec<u8> {
    msg(
        r#"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0
"#,
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_14_badaspec() {
    assert_eq!(
        refused(&rfc4475_3_1_2_14()),
        ParseError::BadHeader {
            name: "To",
            reason: "the URI is malformed"
        }
    );
}

/// RFC 4475 §3.1.2.15 (baddn): unquoted display names with a comma. The RFC: 400.
fn rfc4475_3_1_2_15() -> Vec<u8> {
    msg(
        "OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_15_baddn() {
    assert_eq!(
        refused(&rfc4475_3_1_2_15()),
        ParseError::BadHeader {
            name: "From",
            reason: "display name is neither tokens nor a quoted string"
        }
    );
}

/// RFC 4475 §3.1.2.16 (badvers): SIP/7.0 in the Request-Line and the Via. The RFC: 505.
/// The codec parses it and reports the version; the 505 travels back along the Via.
fn rfc4475_3_1_2_16() -> Vec<u8> {
    msg(
        "OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_16_badvers() {
    let b = rfc4475_3_1_2_16();
    let m = valid(&b);
    assert!(!m.kind().version_supported(), "505 Version Not Supported");
    assert!(matches!(
        m.kind(),
        Kind::Request {
            version: b"SIP/7.0",
            ..
        }
    ));
    assert_eq!(m.top_via().unwrap().host_raw, b"c.example.com");
    assert_eq!(m.from().unwrap().display, Some(&b"A. Bell"[..]));
    answers(&m, 505);
}

/// RFC 4475 §3.1.2.17 (mismatch01): OPTIONS with `CSeq: 8 INVITE`. The RFC: 400.
fn rfc4475_3_1_2_17() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_17_mismatch01() {
    assert_eq!(refused(&rfc4475_3_1_2_17()), ParseError::CseqMismatch);
}

/// RFC 4475 §3.1.2.18 (mismatch02): an unknown method with `CSeq: 8 INVITE`. The RFC: 400
/// (not 501: the mismatch is found first).
fn rfc4475_3_1_2_18() -> Vec<u8> {
    msg(
        "NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: {len}
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_1_2_18_mismatch02() {
    assert_eq!(refused(&rfc4475_3_1_2_18()), ParseError::CseqMismatch);
}

/// RFC 4475 §3.1.2.19 (bigcode): status code 4294967301. The RFC: discard the response.
fn rfc4475_3_1_2_19() -> Vec<u8> {
    msg(
        "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>
",
        b"",
    )
}

#[test]
fn rfc4475_3_1_2_19_bigcode() {
    assert_eq!(
        refused(&rfc4475_3_1_2_19()),
        ParseError::BadStartLine("status code is not three digits from 100 to 699")
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.2: transaction-layer semantics

/// RFC 4475 §3.2.1 (badbranch): `branch=z9hG4bK`, the cookie with no identifier. The RFC:
/// reject with 400 (statelessly) or fall back to RFC 2543 matching. The codec refuses: a
/// stateless branch derived from the cookie alone would put every such request from the
/// host into one transaction.
fn rfc4475_3_2_1() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_2_1_badbranch() {
    assert!(matches!(
        refused(&rfc4475_3_2_1()),
        ParseError::BadHeader { name: "Via", .. }
    ));
    // The Via itself is readable, so the 400 can be routed back along it.
    assert_eq!(
        parse_via(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK")
            .unwrap()
            .branch,
        Some(MAGIC_COOKIE)
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.3: application-layer semantics

/// RFC 4475 §3.3.1 (insuf): no Call-ID, From, To or Max-Forwards. The RFC: 400.
fn rfc4475_3_3_1() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: {len}
",
        &sdp("192.0.2.95", "192.0.2.95"),
    )
}

#[test]
fn rfc4475_3_3_1_insuf() {
    assert_eq!(
        refused(&rfc4475_3_3_1()),
        ParseError::MissingHeader("Call-ID")
    );
}

/// RFC 4475 §3.3.2 (unkscm): a Request-URI of an unknown scheme. The RFC: 416.
fn rfc4475_3_3_2() -> Vec<u8> {
    msg(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_2_unkscm() {
    let b = rfc4475_3_3_2();
    let m = valid(&b);
    assert_eq!(
        ruri(&m),
        Uri::Other {
            scheme: b"nobodyKnowsThisScheme",
            rest: b"totallyopaquecontent"
        },
        "416 Unsupported URI Scheme"
    );
    answers(&m, 416);
}

/// RFC 4475 §3.3.3 (novelsc): a registered but unusual scheme (`soap.beep`). The RFC: parse
/// it; an element that never accepts the scheme treats it as unknown (416).
fn rfc4475_3_3_3() -> Vec<u8> {
    msg(
        "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_3_novelsc() {
    let b = rfc4475_3_3_3();
    let m = valid(&b);
    assert_eq!(
        ruri(&m),
        Uri::Other {
            scheme: b"soap.beep",
            rest: b"//192.0.2.103:3002"
        },
        "416 Unsupported URI Scheme"
    );
    answers(&m, 416);
}

/// RFC 4475 §3.3.4 (unksm2): other schemes in To, From and Contact. The RFC: syntactically
/// valid; proxies treat it like any request for the Request-URI.
fn rfc4475_3_3_4() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_4_unksm2() {
    let b = rfc4475_3_3_4();
    let m = valid(&b);
    assert_eq!(
        m.to().unwrap().uri,
        Uri::Other {
            scheme: b"isbn",
            rest: b"2983792873"
        }
    );
    let from = m.from().unwrap();
    assert!(matches!(
        from.uri,
        Uri::Other {
            scheme: b"http",
            ..
        }
    ));
    assert_eq!(from.tag, Some(&b"3234233"[..]));
    assert_eq!(m.top_via().unwrap().port, Some(5060));
    proxies(&m);
}

/// RFC 4475 §3.3.5 (bext01): Require and Proxy-Require with option tags nobody supports.
/// The RFC: a proxy answers 420 for Proxy-Require; Require is the UAS's business.
fn rfc4475_3_3_5() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_5_bext01() {
    let b = rfc4475_3_3_5();
    let m = valid(&b);
    assert_eq!(
        m.proxy_require().collect::<Vec<_>>(),
        [&b"noProxiesSupportThis"[..], b"norDoAnyProxiesSupportThis"],
        "420 Bad Extension with these in Unsupported"
    );
    assert_eq!(m.top_via().unwrap().transport, b"TLS");
    let unsupported = "noProxiesSupportThis, norDoAnyProxiesSupportThis";
    let mut out = Vec::new();
    local_response(
        &m,
        420,
        "Bad Extension",
        b"t1",
        &[("Unsupported", unsupported)],
        &mut out,
    )
    .unwrap();
    let r = parse(&out).unwrap();
    assert_eq!(
        r.headers("Unsupported").next().unwrap().raw(),
        unsupported.as_bytes()
    );
    answers(&m, 420);
}

/// RFC 4475 §3.3.6 (invut): a body of an unknown Content-Type. The RFC: a proxy forwards it
/// (the UAS answers 415).
fn rfc4475_3_3_6() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: 40
",
        &wire("<audio>\n <pcmu port=\"443\"/>\n</audio>\n"),
    )
}

#[test]
fn rfc4475_3_3_6_invut() {
    let b = rfc4475_3_3_6();
    let m = valid(&b);
    assert_eq!((m.content_length(), m.body().len()), (Some(40), 40));
    proxies(&m);
}

/// RFC 4475 §3.3.7 (regaut01): an Authorization of an unknown scheme. The RFC: proxies
/// forward it (only the registrar answers 401).
fn rfc4475_3_3_7() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_7_regaut01() {
    let b = rfc4475_3_3_7();
    let m = valid(&b);
    assert_eq!(m.content_length(), Some(0));
    proxies(&m);
    let mut out = Vec::new();
    forward_request(&m, &mut out, &our_via(b"z9hG4bKx", true), &[]).unwrap();
    assert_eq!(
        parse(&out)
            .unwrap()
            .headers("Authorization")
            .next()
            .unwrap()
            .raw(),
        b"NoOneKnowsThisScheme opaque-data=here"
    );
}

/// RFC 4475 §3.3.8 (multi01): two values each of Call-ID, CSeq, From, To and Max-Forwards.
/// The RFC: 400.
fn rfc4475_3_3_8() -> Vec<u8> {
    msg(
        "INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: {len}
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5
",
        &sdp("192.0.2.25", "192.0.2.25"),
    )
}

#[test]
fn rfc4475_3_3_8_multi01() {
    let b = rfc4475_3_3_8();
    assert!(matches!(
        refused(&b),
        ParseError::BadHeader {
            reason: "appears more than once",
            ..
        }
    ));
    // Each duplicated header is refused on its own too.
    let s = String::from_utf8(b).unwrap();
    let mut s = s.replace("Max-Forwards: 5\r\n", "");
    for name in ["CSeq", "Call-ID", "From", "To"] {
        let got = refused(s.as_bytes());
        assert_eq!(
            got,
            ParseError::BadHeader {
                name,
                reason: "appears more than once"
            }
        );
        // Drop the second copy and look at the next duplicate.
        let second = s.match_indices(&format!("\r\n{name}: ")).nth(1).unwrap().0 + 2;
        let end = s[second..].find("\r\n").unwrap() + second + 2;
        s.replace_range(second..end, "");
    }
    valid(s.as_bytes());
}

/// RFC 4475 §3.3.9 (mcl01): two Content-Length values (13 and 5). The RFC: 400; there is no
/// way to know where the body ends.
fn rfc4475_3_3_9() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain
",
        &wire("There's no way to know how many octets are supposed to be here.\n"),
    )
}

#[test]
fn rfc4475_3_3_9_mcl01() {
    let b = rfc4475_3_3_9();
    assert_eq!(refused(&b), ParseError::BadContentLength);
    assert_eq!(frame(&b), Err(ParseError::BadContentLength));
}

/// RFC 4475 §3.3.10 (bcast): a 200 whose second Via sent-by is 255.255.255.255. Well formed;
/// a proxy must not send it to the broadcast address. The codec reports the next hop; the
/// plane drops a broadcast one (see the report on splice.rs).
fn rfc4475_3_3_10() -> Vec<u8> {
    msg(
        "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: {len}
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>
",
        &sdp("192.0.2.198", "192.0.2.198"),
    )
}

#[test]
fn rfc4475_3_3_10_bcast() {
    let b = rfc4475_3_3_10();
    let m = valid(&b);
    assert_eq!(status(&m).0, 200);
    let mut out = Vec::new();
    let hop = forward_response(&m, &mut out, b"192.0.2.198").unwrap();
    assert_eq!(hop.host, v4("255.255.255.255"));
    assert!(
        matches!(hop.host, Host::V4(a) if a.is_broadcast()),
        "must be dropped"
    );
    let f = parse(&out).unwrap();
    assert_eq!(f.vias().count(), 1);
    assert_eq!(f.body(), m.body());
}

/// RFC 4475 §3.3.11 (zeromf): Max-Forwards 0. The RFC: a proxy answers 483 (RFC 3261 §16.3
/// step 3; it may answer an OPTIONS itself).
fn rfc4475_3_3_11() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_11_zeromf() {
    let b = rfc4475_3_3_11();
    let m = valid(&b);
    assert_eq!(m.max_forwards(), Some(0), "483 Too Many Hops");
    assert_eq!(
        forward_request(&m, &mut Vec::new(), &our_via(b"z9hG4bKx", false), &[]),
        Err(SpliceError::MaxForwardsExhausted)
    );
    answers(&m, 483);
}

/// RFC 4475 §3.3.12 (cparam01): a Contact in addr-spec form with a parameter, which is a
/// header parameter, not a URI parameter. Valid; forwarded as is.
fn rfc4475_3_3_12() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_12_cparam01() {
    let b = rfc4475_3_3_12();
    let m = valid(&b);
    let c = parse_name_addr(m.headers("m").next().unwrap().raw(), "Contact").unwrap();
    assert_eq!(c.uri_raw, b"sip:+19725552222@gw1.example.net");
    assert_eq!(c.params().get(b"unknownparam"), Some(None));
    assert_eq!(m.from().unwrap().tag, Some(&b"DkfVgjkrtMwaerKKpe"[..]));
    proxies(&m);
}

/// RFC 4475 §3.3.13 (cparam02): the same parameter inside `<>`: a URI parameter. Valid.
fn rfc4475_3_3_13() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: cparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_13_cparam02() {
    let b = rfc4475_3_3_13();
    let m = valid(&b);
    let c = parse_name_addr(m.headers("Contact").next().unwrap().raw(), "Contact").unwrap();
    assert_eq!(sip(c.uri).params().get(b"unknownparam"), Some(None));
    assert_eq!(c.params().count(), 0);
    proxies(&m);
}

/// RFC 4475 §3.3.14 (regescrt): a Contact URI with an escaped Route header, in `<>`. Valid.
fn rfc4475_3_3_14() -> Vec<u8> {
    msg(
        "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0
",
        b"",
    )
}

#[test]
fn rfc4475_3_3_14_regescrt() {
    let b = rfc4475_3_3_14();
    let m = valid(&b);
    let c = parse_name_addr(m.headers("Contact").next().unwrap().raw(), "Contact").unwrap();
    assert_eq!(
        sip(c.uri).headers,
        Some(&b"Route=%3Csip:sip.example.com%3E"[..])
    );
    proxies(&m);
}

/// RFC 4475 §3.3.15 (sdp01): an INVITE whose Accept excludes its own body type. The RFC: the
/// UAS answers 415; a proxy forwards it.
fn rfc4475_3_3_15() -> Vec<u8> {
    msg(
        "INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: sdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/UDP 60.63.200.120;branch=z9hG4bKkdjuw
Content-Length: 150
Content-Type: application/sdp
",
        &sdp150(),
    )
}

#[test]
fn rfc4475_3_3_15_sdp01() {
    let b = rfc4475_3_3_15();
    let m = valid(&b);
    assert_eq!(m.top_via().unwrap().host, v4("60.63.200.120"));
    assert_eq!(m.max_forwards(), Some(5));
    proxies(&m);
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 §3.4: backward compatibility

/// RFC 4475 §3.4.1 (inv2543): an RFC 2543 INVITE: no branch, no From tag, no Max-Forwards,
/// no Content-Length. The RFC: accept it. RFC 3261 §16.6 step 3 inserts Max-Forwards: 70;
/// §16.11 derives the branch from the RFC 2543 fields.
fn rfc4475_3_4_1() -> Vec<u8> {
    msg(
        "INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp
",
        &wire(
            "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.5\ns=-\nc=IN IP4 192.0.2.5\nt=0 0\n\
             m=audio 49217 RTP/AVP 0\n",
        ),
    )
}

#[test]
fn rfc4475_3_4_1_inv2543() {
    let b = rfc4475_3_4_1();
    let m = valid(&b);
    let top = m.top_via().unwrap();
    assert_eq!(
        (top.host_raw, top.branch),
        (&b"iftgw.example.com"[..], None)
    );
    assert_eq!((m.max_forwards(), m.content_length()), (None, None));
    assert!(m.body().starts_with(b"v=0\r\n"));
    let from = m.from().unwrap();
    assert_eq!(from.tag, None);
    assert!(sip(from.uri).is_user_phone());
    // RFC 3261 §19.1.1: without <>, `;user=phone` belongs to the To header, not the URI.
    let to = m.to().unwrap();
    assert_eq!(to.uri_raw, b"sip:+16505552222@ss1.example.net");
    assert_eq!(to.params().get(b"user"), Some(Some(&b"phone"[..])));
    // A retransmission gets the same branch and To-tag; the next transaction does not.
    let again = rfc4475_3_4_1();
    let m2 = valid(&again);
    assert_eq!(
        stateless_branch(&m, &SECRET),
        stateless_branch(&m2, &SECRET)
    );
    let next = String::from_utf8(rfc4475_3_4_1())
        .unwrap()
        .replace("CSeq: 56", "CSeq: 57");
    assert_ne!(
        stateless_branch(&valid(next.as_bytes()), &SECRET),
        stateless_branch(&m, &SECRET)
    );
    proxies(&m);
}

// ---------------------------------------------------------------------------------------------
// RFC 5118 §4: IPv6

/// RFC 5118 §4.1 (ipv6-good): IPv6 references in the Request-URI, Via and Contact. Valid.
fn rfc5118_4_1() -> Vec<u8> {
    msg(
        r#"REGISTER sip:[2001:db8::10] SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: "Caller" <sip:caller@[2001:db8::1]>
CSeq: 98176 REGISTER
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc5118_4_1_ipv6_good() {
    let b = rfc5118_4_1();
    let m = valid(&b);
    let u = sip(ruri(&m));
    assert_eq!((u.host, u.port, u.user()), (v6("2001:db8::10"), None, None));
    let top = m.top_via().unwrap();
    assert_eq!(
        (top.host, top.host_raw),
        (v6("2001:db8::9:1"), &b"[2001:db8::9:1]"[..])
    );
    assert_eq!(top.branch, Some(&b"z9hG4bKas3-111"[..]));
    proxies(&m);
}

/// RFC 5118 §4.2 (ipv6-bad): an IPv6 address without brackets in the Request-URI. The RFC:
/// 400.
fn rfc5118_4_2() -> Vec<u8> {
    msg(
        r#"REGISTER sip:2001:db8::10 SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: "Caller" <sip:caller@[2001:db8::1]>
CSeq: 98176 REGISTER
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc5118_4_2_ipv6_bad() {
    assert_eq!(refused(&rfc5118_4_2()), ParseError::BadRequestUri);
}

/// RFC 5118 §4.3 (port-ambiguous): `[2001:db8::10:5070]` is an address with no port.
fn rfc5118_4_3() -> Vec<u8> {
    msg(
        r#"REGISTER sip:[2001:db8::10:5070] SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=1234
Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3
Call-ID: SSG95523997077@hlau_4100
Contact: "Caller" <sip:caller@[2001:db8::1]>
Max-Forwards: 70
CSeq: 98176 REGISTER
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc5118_4_3_port_ambiguous() {
    let b = rfc5118_4_3();
    let m = valid(&b);
    let u = sip(ruri(&m));
    assert_eq!((u.host, u.port), (v6("2001:db8::10:5070"), None));
    proxies(&m);
}

/// RFC 5118 §4.4 (port-unambiguous): `[2001:db8::10]:5070`, address and port.
fn rfc5118_4_4() -> Vec<u8> {
    msg(
        r#"REGISTER sip:[2001:db8::10]:5070 SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=1234
Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3
Call-ID: SSG95523997077@hlau_4100
Contact: "Caller" <sip:caller@[2001:db8::1]>
Max-Forwards: 70
CSeq: 98176 REGISTER
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc5118_4_4_port_unambiguous() {
    let b = rfc5118_4_4();
    let m = valid(&b);
    let u = sip(ruri(&m));
    assert_eq!((u.host, u.port), (v6("2001:db8::10"), Some(5070)));
    proxies(&m);
}

/// RFC 5118 §4.5 (via-received-param-with-delim): `received=[2001:db8::9:255]`.
fn rfc5118_4_5a() -> Vec<u8> {
    msg(
        "BYE sip:[2001:db8::10] SIP/2.0
To: sip:user@example.com;tag=bd76ya
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
CSeq: 321 BYE
Content-Length: 0
",
        b"",
    )
}

/// RFC 5118 §4.5 (via-received-param-no-delim): `received=2001:db8::9:255`. RFC 5118 asks
/// parsers to accept both forms.
fn rfc5118_4_5b() -> Vec<u8> {
    msg(
        r#"OPTIONS sip:[2001:db8::10] SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3
Call-ID: SSG95523997077@hlau_4100
Max-Forwards: 70
Contact: "Caller" <sip:caller@[2001:db8::9:1]>
CSeq: 921 OPTIONS
Content-Length: 0
"#,
        b"",
    )
}

#[test]
fn rfc5118_4_5_via_reference() {
    for (b, received) in [
        (rfc5118_4_5a(), &b"[2001:db8::9:255]"[..]),
        (rfc5118_4_5b(), &b"2001:db8::9:255"[..]),
    ] {
        let m = valid(&b);
        let top = m.top_via().unwrap();
        assert_eq!(top.host, v6("2001:db8::9:1"));
        assert_eq!(top.received, Some(received));
        proxies(&m);
        // A response to it goes to the received address, with or without the brackets
        // (RFC 3261 §18.2.2).
        let mut fwd = Vec::new();
        forward_request(&m, &mut fwd, &our_via(b"z9hG4bKours", false), &[]).unwrap();
        let f = parse(&fwd).unwrap();
        let mut resp = Vec::new();
        local_response(&f, 200, "OK", b"x1", &[], &mut resp).unwrap();
        let r = parse(&resp).unwrap();
        let hop = forward_response(&r, &mut Vec::new(), b"192.0.2.250:5060").unwrap();
        assert_eq!((hop.host, hop.port), (v6("2001:db8::9:255"), 5060));
    }
}

/// RFC 5118 §4.6 (ipv6-in-sdp): IPv6 addresses in the SDP body, which the proxy forwards as is.
fn rfc5118_4_6() -> Vec<u8> {
    msg(
        r#"INVITE sip:user@[2001:db8::10] SIP/2.0
To: sip:user@[2001:db8::10]
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Contact: "Caller" <sip:caller@[2001:db8::20]>
CSeq: 8612 INVITE
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: {len}
"#,
        &wire(
            "v=0\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\ns=Live video feed\n\
             e=<asistente@example.com>\nc=IN IP6 2001:db8::20\nt=0 0\nm=audio 6000 RTP/AVP 0\n\
             a=rtpmap:0 PCMU/8000\nm=video 6024 RTP/AVP 107\na=rtpmap:107 H263-1998/90000\n",
        ),
    )
}

#[test]
fn rfc5118_4_6_ipv6_in_sdp() {
    let b = rfc5118_4_6();
    let m = valid(&b);
    assert_eq!(sip(ruri(&m)).host, v6("2001:db8::10"));
    assert_eq!(sip(m.to().unwrap().uri).host, v6("2001:db8::10"));
    assert_eq!(m.top_via().unwrap().host, v6("2001:db8::20"));
    assert_eq!(m.content_length().unwrap() as usize, m.body().len());
    proxies(&m);
}

/// RFC 5118 §4.7 (mult-ip-in-header): IPv6 and IPv4 Vias mixed, one IPv6 Via with an IPv4
/// `received`.
fn rfc5118_4_7() -> Vec<u8> {
    msg(
        "BYE sip:user@host.example.net SIP/2.0
Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144
Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200
Call-ID: 997077@lau_4100
Max-Forwards: 70
CSeq: 89187 BYE
To: sip:user@example.net;tag=9817--94
From: sip:user@example.com;tag=81x2
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc5118_4_7_mult_ip_in_header() {
    let b = rfc5118_4_7();
    let m = valid(&b);
    let v: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!((v[0].host, v[0].port), (v6("2001:db8::9:1"), Some(6050)));
    assert_eq!(v[1].host, v4("192.0.2.1"));
    assert_eq!(
        (v[2].host, v[2].received),
        (v6("2001:db8::9:255"), Some(&b"192.0.2.200"[..]))
    );
    assert_eq!(m.to().unwrap().tag, Some(&b"9817--94"[..]));
    proxies(&m);
}

/// RFC 5118 §4.8 (mult-ip-in-sdp): IPv4 and IPv6 connection lines in one SDP.
fn rfc5118_4_8() -> Vec<u8> {
    msg(
        r#"INVITE sip:user@[2001:db8::10] SIP/2.0
To: sip:user@[2001:db8::10]
From: sip:user@example.com;tag=02134
Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Contact: "Caller" <sip:caller@[2001:db8::20]>
CSeq: 8912 INVITE
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: {len}
"#,
        &wire(
            "v=0\no=bob 280744730 28977631 IN IP4 host.example.com\ns=\nt=0 0\n\
             m=audio 22334 RTP/AVP 0\nc=IN IP4 192.0.2.1\nm=video 6024 RTP/AVP 107\n\
             c=IN IP6 2001:db8::1\na=rtpmap:107 H263-1998/90000\n",
        ),
    )
}

#[test]
fn rfc5118_4_8_mult_ip_in_sdp() {
    let b = rfc5118_4_8();
    let m = valid(&b);
    assert_eq!(m.content_length().unwrap() as usize, m.body().len());
    proxies(&m);
}

/// RFC 5118 §4.9 (ipv4-mapped-ipv6): IPv4-mapped IPv6 addresses in Vias, Contact and SDP.
fn rfc5118_4_9() -> Vec<u8> {
    msg(
        r#"INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:user@east.example.com;tag=81x2
Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19
Via: SIP/2.0/UDP [::ffff:192.0.2.2]:10820;branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>
CSeq: 612 INVITE
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: {len}
"#,
        &wire(
            "v=0\no=assistant 971731711378798081 0 IN IP6 ::ffff:192.0.2.2\ns=Call from Ted\n\
             e=<ted@example.com>\nc=IN IP6 ::ffff:192.0.2.2\nt=0 0\nm=audio 6000 RTP/AVP 0\n\
             a=rtpmap:0 PCMU/8000\n",
        ),
    )
}

#[test]
fn rfc5118_4_9_ipv4_mapped_ipv6() {
    let b = rfc5118_4_9();
    let m = valid(&b);
    let top = m.top_via().unwrap();
    assert_eq!((top.host, top.port), (v6("::ffff:192.0.2.10"), Some(19823)));
    assert_eq!(
        m.vias().nth(1).unwrap().unwrap().host,
        Host::V6(Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped())
    );
    proxies(&m);
}

/// RFC 5118 §4.10 (ipv6-bug-abnf-3-colons): `[2001:db8:::192.0.2.1]`, three colons, which
/// only RFC 3261's faulty IPv6reference ABNF admits. RFC 5118 §4.10 points to the corrected
/// grammar (RFC 3986/4291), which the codec follows: refused, 400.
fn rfc5118_4_10a() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0
To: sip:user@[2001:db8:::192.0.2.1]
From: sip:user@example.com;tag=810x2
Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111
Call-ID: G9559905523997077@hlau_4100
CSeq: 689 OPTIONS
Max-Forwards: 70
Content-Length: 0
",
        b"",
    )
}

/// RFC 5118 §4.10 (ipv6-correct-abnf-2-colons): `[2001:db8::192.0.2.1]`. Valid.
fn rfc5118_4_10b() -> Vec<u8> {
    msg(
        "OPTIONS sip:user@[2001:db8::192.0.2.1] SIP/2.0
To: sip:user@[2001:db8::192.0.2.1]
From: sip:user@example.com;tag=810x2
Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111
Call-ID: G9559905523997077@hlau_4100
CSeq: 689 OPTIONS
Max-Forwards: 70
Content-Length: 0
",
        b"",
    )
}

#[test]
fn rfc5118_4_10_ipv6_abnf_bug() {
    assert_eq!(refused(&rfc5118_4_10a()), ParseError::BadRequestUri);
    let b = rfc5118_4_10b();
    let m = valid(&b);
    assert_eq!(sip(ruri(&m)).host, v6("2001:db8::c000:201"));
    proxies(&m);
}

// ---------------------------------------------------------------------------------------------
// The fuzz corpus copy

fn all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("rfc4475-3.1.1.1", rfc4475_3_1_1_1()),
        ("rfc4475-3.1.1.2", rfc4475_3_1_1_2()),
        ("rfc4475-3.1.1.3", rfc4475_3_1_1_3()),
        ("rfc4475-3.1.1.4", rfc4475_3_1_1_4()),
        ("rfc4475-3.1.1.5", rfc4475_3_1_1_5()),
        ("rfc4475-3.1.1.6", rfc4475_3_1_1_6()),
        ("rfc4475-3.1.1.7", rfc4475_3_1_1_7()),
        ("rfc4475-3.1.1.8", rfc4475_3_1_1_8()),
        ("rfc4475-3.1.1.9", rfc4475_3_1_1_9()),
        ("rfc4475-3.1.1.10", rfc4475_3_1_1_10()),
        ("rfc4475-3.1.1.11", rfc4475_3_1_1_11()),
        ("rfc4475-3.1.1.12", rfc4475_3_1_1_12()),
        ("rfc4475-3.1.1.13", rfc4475_3_1_1_13()),
        ("rfc4475-3.1.2.1", rfc4475_3_1_2_1()),
        ("rfc4475-3.1.2.2", rfc4475_3_1_2_2()),
        ("rfc4475-3.1.2.3", rfc4475_3_1_2_3()),
        ("rfc4475-3.1.2.4", rfc4475_3_1_2_4()),
        ("rfc4475-3.1.2.5", rfc4475_3_1_2_5()),
        ("rfc4475-3.1.2.6", rfc4475_3_1_2_6()),
        ("rfc4475-3.1.2.7", rfc4475_3_1_2_7()),
        ("rfc4475-3.1.2.8", rfc4475_3_1_2_8()),
        ("rfc4475-3.1.2.9", rfc4475_3_1_2_9()),
        ("rfc4475-3.1.2.10", rfc4475_3_1_2_10()),
        ("rfc4475-3.1.2.11", rfc4475_3_1_2_11()),
        ("rfc4475-3.1.2.12", rfc4475_3_1_2_12()),
        ("rfc4475-3.1.2.13", rfc4475_3_1_2_13()),
        ("rfc4475-3.1.2.14", rfc4475_3_1_2_14()),
        ("rfc4475-3.1.2.15", rfc4475_3_1_2_15()),
        ("rfc4475-3.1.2.16", rfc4475_3_1_2_16()),
        ("rfc4475-3.1.2.17", rfc4475_3_1_2_17()),
        ("rfc4475-3.1.2.18", rfc4475_3_1_2_18()),
        ("rfc4475-3.1.2.19", rfc4475_3_1_2_19()),
        ("rfc4475-3.2.1", rfc4475_3_2_1()),
        ("rfc4475-3.3.1", rfc4475_3_3_1()),
        ("rfc4475-3.3.2", rfc4475_3_3_2()),
        ("rfc4475-3.3.3", rfc4475_3_3_3()),
        ("rfc4475-3.3.4", rfc4475_3_3_4()),
        ("rfc4475-3.3.5", rfc4475_3_3_5()),
        ("rfc4475-3.3.6", rfc4475_3_3_6()),
        ("rfc4475-3.3.7", rfc4475_3_3_7()),
        ("rfc4475-3.3.8", rfc4475_3_3_8()),
        ("rfc4475-3.3.9", rfc4475_3_3_9()),
        ("rfc4475-3.3.10", rfc4475_3_3_10()),
        ("rfc4475-3.3.11", rfc4475_3_3_11()),
        ("rfc4475-3.3.12", rfc4475_3_3_12()),
        ("rfc4475-3.3.13", rfc4475_3_3_13()),
        ("rfc4475-3.3.14", rfc4475_3_3_14()),
        ("rfc4475-3.3.15", rfc4475_3_3_15()),
        ("rfc4475-3.4.1", rfc4475_3_4_1()),
        ("rfc5118-4.1", rfc5118_4_1()),
        ("rfc5118-4.2", rfc5118_4_2()),
        ("rfc5118-4.3", rfc5118_4_3()),
        ("rfc5118-4.4", rfc5118_4_4()),
        ("rfc5118-4.5a", rfc5118_4_5a()),
        ("rfc5118-4.5b", rfc5118_4_5b()),
        ("rfc5118-4.6", rfc5118_4_6()),
        ("rfc5118-4.7", rfc5118_4_7()),
        ("rfc5118-4.8", rfc5118_4_8()),
        ("rfc5118-4.9", rfc5118_4_9()),
        ("rfc5118-4.10a", rfc5118_4_10a()),
        ("rfc5118-4.10b", rfc5118_4_10b()),
    ]
}

/// Every torture message through the fuzz entry point (which asserts that whatever parses
/// splices into something that parses again), and byte by byte on a stream: the parse of the
/// framed message is the same as the datagram's where both frame.
#[test]
fn corpus_fuzz_entry_and_stream_framing() {
    for (name, b) in all() {
        fuzz_parse(&b);
        if let (Ok(Some(f)), Ok(m)) = (frame(&b), parse(&b)) {
            let framed = parse(&b[f.skip..f.total()]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(framed.body(), m.body(), "{name}");
        }
        // A stream delivers the message in pieces: no piece may be taken for a message.
        for cut in [1, b.len() / 3, b.len() / 2, b.len().saturating_sub(1)] {
            if let Ok(Some(f)) = frame(&b[..cut]) {
                assert!(f.total() <= cut, "{name}");
            }
        }
    }
}

/// `fuzz/corpus/sip_parse/rfc*` holds exactly these messages.
#[test]
fn corpus_files_are_the_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sip_parse");
    let write = std::env::var_os("DRAGNET_WRITE_TORTURE_CORPUS").is_some();
    for (name, b) in all() {
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &b).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == b,
            "{name} differs from the message in torture.rs"
        );
    }
}
