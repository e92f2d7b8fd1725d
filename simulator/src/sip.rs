//! The simulator's own SIP encoder and message reader (RFC 3261), never the gateway's.
//!
//! A user agent client writes INVITE, ACK and BYE; [`Message::parse`] reads any request or
//! response far enough for the driver, the oracle and the built-in UAS: the start line and the
//! header fields (compact forms expanded, folded lines joined). Bounded and allocation-light,
//! it never panics on input: truncated or garbled bytes give an error.

use std::fmt::Write as _;

/// The facts and addresses one INVITE carries.
#[derive(Clone, Debug)]
pub struct Invite<'a> {
    pub caller: &'a str,
    pub callee: &'a str,
    /// `host:port` of the target (Request-URI and To host).
    pub target: &'a str,
    /// `host:port` we send from (Via sent-by, Contact).
    pub local: &'a str,
    /// Unique per call: the transaction key.
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub branch: &'a str,
}

/// A minimal SDP offer (RFC 4566): one PCMA audio stream; the UAS never opens media.
fn sdp(local_host: &str) -> String {
    format!(
        "v=0\r\no=sim 1 1 IN IP4 {local_host}\r\ns=-\r\nc=IN IP4 {local_host}\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

fn host_of(hostport: &str) -> &str {
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// The user part of a number in a SIP URI: `+8613…` stays as is, `110` too.
/// RFC 3261 §19.1.1 allows `+` and digits unescaped in the user part.
fn uri(number: &str, hostport: &str) -> String {
    format!("sip:{number}@{hostport};user=phone")
}

impl Invite<'_> {
    /// The INVITE: Via with an RFC 3261 §8.1.1.7 `z9hG4bK` branch and `rport` (RFC 3581), From
    /// and P-Asserted-Identity with the caller (RFC 3325: the gateway believes PAI from trusted
    /// peers), To and Request-URI with the callee, an SDP offer.
    pub fn encode(&self) -> Vec<u8> {
        let body = sdp(host_of(self.local));
        let ruri = uri(self.callee, self.target);
        let from = uri(self.caller, host_of(self.local));
        let mut m = String::with_capacity(700 + body.len());
        let _ = write!(
            m,
            "INVITE {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={ftag}\r\n\
             To: <{ruri}>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{caller}@{local}>\r\n\
             P-Asserted-Identity: <{from}>\r\n\
             User-Agent: dragnet-sim\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            local = self.local,
            branch = self.branch,
            ftag = self.from_tag,
            cid = self.call_id,
            caller = self.caller,
            len = body.len(),
        );
        m.into_bytes()
    }

    /// The ACK of a final response. RFC 3261 §17.1.1.3: for a non-2xx it is part of the INVITE
    /// transaction (same branch, same Request-URI); §13.2.2.4: for a 2xx it is a new transaction
    /// (`branch`), sent to the 2xx's Contact (`ruri`). Either way To carries the answer's tag.
    pub fn ack(&self, to: &str, ruri: Option<&str>, branch: &str) -> Vec<u8> {
        self.in_dialog("ACK", 1, to, ruri, branch)
    }

    /// The BYE that ends an answered call (RFC 3261 §15.1.1), CSeq 2.
    pub fn bye(&self, to: &str, ruri: Option<&str>, branch: &str) -> Vec<u8> {
        self.in_dialog("BYE", 2, to, ruri, branch)
    }

    fn in_dialog(
        &self,
        method: &str,
        cseq: u32,
        to: &str,
        ruri: Option<&str>,
        branch: &str,
    ) -> Vec<u8> {
        let default_ruri = uri(self.callee, self.target);
        let ruri = ruri.unwrap_or(&default_ruri);
        let from = uri(self.caller, host_of(self.local));
        let mut m = String::with_capacity(512);
        let _ = write!(
            m,
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={ftag}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            ftag = self.from_tag,
            cid = self.call_id,
        );
        m.into_bytes()
    }
}

/// Why bytes are not a SIP message we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    NotUtf8,
    NoEndOfHeaders,
    BadStartLine,
    BadHeader,
    TooLarge,
}

/// A request's or response's start line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

/// A parsed message: start line, header fields in order (compact names expanded), body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub headers: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

/// RFC 3261 §7.3.3 compact forms.
fn expand(name: &str) -> &str {
    match name {
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "e" | "E" => "Content-Encoding",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "f" | "F" => "From",
        "s" | "S" => "Subject",
        "k" | "K" => "Supported",
        "t" | "T" => "To",
        "v" | "V" => "Via",
        _ => name,
    }
}

/// Larger datagrams are not SIP over UDP we would send or accept (RFC 3261 §18.1.1 keeps
/// requests within the path MTU; 64 KiB is the UDP bound).
const MAX_MESSAGE: usize = 65_535;

impl<'a> Message<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        let end = find(buf, b"\r\n\r\n").ok_or(ParseError::NoEndOfHeaders)?;
        let head = std::str::from_utf8(buf.get(..end).ok_or(ParseError::NoEndOfHeaders)?)
            .map_err(|_| ParseError::NotUtf8)?;
        let body = buf.get(end + 4..).unwrap_or_default();
        let mut lines = head.split("\r\n");
        let first = lines.next().ok_or(ParseError::BadStartLine)?;
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
            if !(100..=699).contains(&code) {
                return Err(ParseError::BadStartLine);
            }
            StartLine::Response { code, reason }
        } else {
            let mut w = first.split(' ');
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some(method), Some(uri), Some("SIP/2.0"), None)
                    if !method.is_empty() && !uri.is_empty() =>
                {
                    StartLine::Request { method, uri }
                }
                _ => return Err(ParseError::BadStartLine),
            }
        };
        let mut headers: Vec<(&'a str, String)> = Vec::with_capacity(16);
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                // RFC 3261 §7.3.1: a folded line continues the previous field's value.
                let last = headers.last_mut().ok_or(ParseError::BadHeader)?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line.split_once(':').ok_or(ParseError::BadHeader)?;
            let name = name.trim();
            if name.is_empty() {
                return Err(ParseError::BadHeader);
            }
            headers.push((expand(name), value.trim().to_string()));
        }
        Ok(Message {
            start,
            headers,
            body,
        })
    }

    /// The first value of a header field (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header field, in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The method of the CSeq header (`INVITE` in `CSeq: 1 INVITE`).
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`) or an addr-spec.
pub fn addr_uri(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or(v),
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn invite() -> Invite<'static> {
        Invite {
            caller: "+8613800138000",
            callee: "+8613912345678",
            target: "127.0.0.1:5060",
            local: "127.0.0.1:40000",
            call_id: "c1@sim",
            from_tag: "f1",
            branch: "z9hG4bKsim1",
        }
    }

    #[test]
    fn invite_bytes_are_as_hand_checked() {
        let m = invite().encode();
        let text = String::from_utf8(m.clone()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert_eq!(
            head,
            "INVITE sip:+8613912345678@127.0.0.1:5060;user=phone SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKsim1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+8613800138000@127.0.0.1;user=phone>;tag=f1\r\n\
             To: <sip:+8613912345678@127.0.0.1:5060;user=phone>\r\n\
             Call-ID: c1@sim\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:+8613800138000@127.0.0.1:40000>\r\n\
             P-Asserted-Identity: <sip:+8613800138000@127.0.0.1;user=phone>\r\n\
             User-Agent: dragnet-sim\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: 108"
        );
        // Content-Length counts the body exactly (RFC 3261 §20.14).
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body.len(), 108);
        // And our own reader reads it back.
        let p = Message::parse(&m).unwrap();
        assert_eq!(
            p.start,
            StartLine::Request {
                method: "INVITE",
                uri: "sip:+8613912345678@127.0.0.1:5060;user=phone"
            }
        );
        assert_eq!(p.header("call-id"), Some("c1@sim"));
    }

    #[test]
    fn ack_to_a_reject_reuses_the_branch_and_takes_the_to_tag() {
        let a = invite().ack(
            "<sip:+8613912345678@127.0.0.1:5060;user=phone>;tag=gw9",
            None,
            "z9hG4bKsim1",
        );
        let m = Message::parse(&a).unwrap();
        assert_eq!(m.cseq_method(), Some("ACK"));
        assert_eq!(m.header("CSeq"), Some("1 ACK"));
        assert!(m.header("Via").unwrap().contains("branch=z9hG4bKsim1;"));
        assert!(m.header("To").unwrap().ends_with(";tag=gw9"));
        let b = invite().bye(
            "<sip:x@y>;tag=u",
            Some("sip:uas@127.0.0.1:5070"),
            "z9hG4bKb",
        );
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.header("CSeq"), Some("2 BYE"));
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "BYE",
                uri: "sip:uas@127.0.0.1:5070"
            }
        );
    }

    #[test]
    fn responses_with_compact_and_folded_headers() {
        let r = b"SIP/2.0 608 Rejected\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\ni: c1@sim\r\nt: <sip:b@c>\r\n ;tag=x\r\nCSeq: 1 INVITE\r\nX-Fraud-Category: loans\r\nl: 0\r\n\r\n";
        let m = Message::parse(r).unwrap();
        assert_eq!(m.code(), Some(608));
        assert_eq!(m.header("Call-ID"), Some("c1@sim"));
        assert_eq!(m.header("to"), Some("<sip:b@c> ;tag=x"));
        assert_eq!(m.header("x-fraud-category"), Some("loans"));
        assert_eq!(addr_uri(m.header("To").unwrap()), "sip:b@c");
    }

    #[test]
    fn truncated_and_garbled_input_is_an_error_never_a_panic() {
        let full = invite().encode();
        let head_end = find(&full, b"\r\n\r\n").unwrap();
        for n in 0..head_end + 3 {
            assert!(Message::parse(&full[..n]).is_err(), "{n}");
        }
        for bad in [
            &b"SIP/2.0 99 Low\r\n\r\n"[..],
            b"SIP/2.0 abc x\r\n\r\n",
            b"INVITE sip:a SIP/3.0\r\n\r\n",
            b"SIP/2.0 200 OK\r\nno colon\r\n\r\n",
            b"SIP/2.0 200 OK\r\n folded first\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(Message::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Message::parse(&bytes);
        }
    }
}
