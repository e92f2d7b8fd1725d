//! Structured header values that routing needs: Via (RFC 3261 §20.42, RFC 3581), name-addr
//! headers such as From, To, Route, P-Asserted-Identity (RFC 3261 §20.10, §20.20, §20.39).

use super::scan::{eq_ic, is_lws, is_token, quoted_end, skip_lws, trim, Params};
use super::uri::{parse_host, parse_uri, Host, Uri};
use super::ParseError;

/// RFC 3261 §8.1.1.7: a branch starting with this cookie was built by an RFC 3261 element.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value (RFC 3261 §20.42, §25.1 `via-parm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`… as written.
    pub transport: &'a [u8],
    pub host: Host<'a>,
    /// The host as written (brackets kept for IPv6).
    pub host_raw: &'a [u8],
    pub port: Option<u16>,
    pub branch: Option<&'a [u8]>,
    /// RFC 3261 §18.2.1 `received`, as written (an IP address, possibly bracketed IPv6).
    pub received: Option<&'a [u8]>,
    /// RFC 3581 §4: `None` = absent, `Some(None)` = `;rport` without value, `Some(Some(p))`.
    pub rport: Option<Option<u16>>,
    /// The raw parameter list after the sent-by.
    pub params: &'a [u8],
}

fn bad_via(reason: &'static str) -> ParseError {
    ParseError::BadHeader {
        name: "Via",
        reason,
    }
}

fn take_token(s: &[u8], i: usize) -> (usize, &[u8]) {
    let mut j = i;
    while j < s.len() && is_token(s[j]) {
        j += 1;
    }
    (j, &s[i..j])
}

fn expect(s: &[u8], i: usize, b: u8) -> Option<usize> {
    let i = skip_lws(s, i);
    (s.get(i) == Some(&b)).then(|| skip_lws(s, i + 1))
}

/// Parses one Via value. Linear white space is allowed around `/`, `:`, `;` and `=`
/// (RFC 3261 §25.1 `SLASH`, `COLON`, `SEMI`, `EQUAL`; RFC 4475 §3.1.1.1).
///
/// The protocol name must be `SIP`; the protocol version is any token (RFC 3261 §25.1
/// `protocol-version = token`). A version other than 2.0 is not refused here: RFC 4475
/// §3.1.2.16 sends `SIP/7.0` in both the start line and the Via and expects 505, which the
/// plane can only send back along a Via it could read. The start line decides the version
/// ([`super::Kind::version_supported`]).
pub fn parse_via(v: &[u8]) -> Result<Via<'_>, ParseError> {
    let s = trim(v);
    let (i, name) = take_token(s, 0);
    let i = expect(s, i, b'/').ok_or(bad_via("sent-protocol is not NAME/VERSION/TRANSPORT"))?;
    let (i, version) = take_token(s, i);
    let i = expect(s, i, b'/').ok_or(bad_via("sent-protocol is not NAME/VERSION/TRANSPORT"))?;
    let (i, transport) = take_token(s, i);
    if !eq_ic(name, b"SIP") || version.is_empty() || transport.is_empty() {
        return Err(bad_via("sent-protocol is not SIP/<version>/<transport>"));
    }
    let hs = skip_lws(s, i);
    if hs == i {
        return Err(bad_via("no white space before sent-by"));
    }
    let mut j = hs;
    if s.get(j) == Some(&b'[') {
        j = s[j..]
            .iter()
            .position(|&b| b == b']')
            .map(|p| j + p + 1)
            .ok_or(bad_via("IPv6 reference without closing ']'"))?;
    } else {
        while j < s.len() && (s[j].is_ascii_alphanumeric() || matches!(s[j], b'-' | b'.' | b'_')) {
            j += 1;
        }
    }
    let host_raw = &s[hs..j];
    let host = parse_host(host_raw)
        .map_err(|_| bad_via("sent-by host is not a host name or IP address"))?;
    let mut k = skip_lws(s, j);
    let mut port = None;
    if s.get(k) == Some(&b':') {
        k = skip_lws(s, k + 1);
        let ps = k;
        while k < s.len() && s[k].is_ascii_digit() {
            k += 1;
        }
        let p = super::scan::parse_dec(&s[ps..k], 65535)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(bad_via("sent-by port is not a number from 0 to 65535"))?;
        port = Some(p);
        k = skip_lws(s, k);
    }
    let params: &[u8] = match s.get(k) {
        None => &[],
        Some(b';') => &s[k + 1..],
        Some(_) => return Err(bad_via("unexpected text after sent-by")),
    };
    // One pass: validate every parameter and keep the first branch, received and rport.
    let (mut branch, mut received, mut rport_raw) = (None, None, None);
    for p in Params::new(params) {
        let p = p.map_err(|()| bad_via("malformed parameter"))?;
        if branch.is_none() && eq_ic(p.name, b"branch") {
            branch = Some(p.value.ok_or(bad_via("branch parameter without a value"))?);
        } else if received.is_none() && eq_ic(p.name, b"received") {
            received = Some(p.value);
        } else if rport_raw.is_none() && eq_ic(p.name, b"rport") {
            rport_raw = Some(p.value);
        }
    }
    let received = received.flatten();
    let rport = match rport_raw {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => Some(Some(
            super::scan::parse_dec(p, 65535)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(bad_via("rport is not a port number"))?,
        )),
    };
    Ok(Via {
        transport,
        host,
        host_raw,
        port,
        branch,
        received,
        rport,
        params,
    })
}

/// A From, To, Route, Contact or P-Asserted-Identity value (RFC 3261 §20.10: `name-addr` or
/// `addr-spec`, then header parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the inside of the quotes (escapes kept), or the token sequence.
    pub display: Option<&'a [u8]>,
    /// True when the display name was a quoted string (its `\x` escapes are still in place).
    pub display_quoted: bool,
    pub uri: Uri<'a>,
    /// The URI exactly as written.
    pub uri_raw: &'a [u8],
    /// RFC 3261 §19.3 `tag` parameter.
    pub tag: Option<&'a [u8]>,
    /// The raw header parameters after the URI.
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    /// The header parameters (`tag`, `lr`…).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The display name with quoted-pair escapes removed (RFC 3261 §25.1 `quoted-pair`),
    /// lazily, as bytes.
    pub fn display_unescaped(&self) -> impl Iterator<Item = u8> + 'a {
        let d = self.display.unwrap_or(&[]);
        let quoted = self.display_quoted;
        let mut i = 0;
        std::iter::from_fn(move || {
            let mut b = *d.get(i)?;
            if quoted && b == b'\\' {
                i += 1;
                b = *d.get(i)?;
            }
            i += 1;
            Some(b)
        })
    }
}

fn bad(name: &'static str, reason: &'static str) -> ParseError {
    ParseError::BadHeader { name, reason }
}

/// Parses a name-addr / addr-spec value; `name` names the header for the error.
pub fn parse_name_addr<'a>(v: &'a [u8], name: &'static str) -> Result<NameAddr<'a>, ParseError> {
    let s = trim(v);
    let mut display = None;
    let mut display_quoted = false;
    let (uri_raw, rest) = if s.first() == Some(&b'"') {
        let q = quoted_end(s, 0).ok_or(bad(name, "display name has no closing quote"))?;
        display = Some(&s[1..q - 1]);
        display_quoted = true;
        let lt = skip_lws(s, q);
        if s.get(lt) != Some(&b'<') {
            return Err(bad(name, "quoted display name not followed by <URI>"));
        }
        angle(s, lt, name)?
    } else if let Some(lt) = s.iter().position(|&b| b == b'<') {
        let d = trim(&s[..lt]);
        // RFC 3261 §25.1: `display-name = *(token LWS) / quoted-string`.
        if !d.iter().all(|&b| is_token(b) || is_lws(b)) {
            return Err(bad(
                name,
                "display name is neither tokens nor a quoted string",
            ));
        }
        if !d.is_empty() {
            display = Some(d);
        }
        angle(s, lt, name)?
    } else {
        // RFC 3261 §20.10: without angle brackets, parameters belong to the header.
        let end = s
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    let rest = trim(rest);
    let params: &[u8] = match rest.first() {
        None => &[],
        Some(b';') => &rest[1..],
        Some(_) => return Err(bad(name, "unexpected text after the URI")),
    };
    // One pass: validate every parameter and keep the first tag.
    let mut tag = None;
    for p in Params::new(params) {
        let p = p.map_err(|()| bad(name, "malformed header parameter"))?;
        if tag.is_none() && eq_ic(p.name, b"tag") {
            tag = Some(p.value);
        }
    }
    let uri = parse_uri(uri_raw).map_err(|_| bad(name, "the URI is malformed"))?;
    Ok(NameAddr {
        display,
        display_quoted,
        uri,
        uri_raw,
        tag: tag.flatten(),
        params,
    })
}

fn angle<'a>(
    s: &'a [u8],
    lt: usize,
    name: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    let gt = s[lt..]
        .iter()
        .position(|&b| b == b'>')
        .map(|p| lt + p)
        .ok_or(bad(name, "'<' without '>'"))?;
    Ok((&s[lt + 1..gt], &s[gt + 1..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sip::uri::Uri;

    #[test]
    fn via_with_lws_ipv6_and_rport() {
        let v = parse_via(b"SIP / 2.0 / UDP [2001:db8::9:1] : 5070 ; branch = z9hG4bKx ;rport;received=2001:db8::9:255").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch, Some(&b"z9hG4bKx"[..]));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received, Some(&b"2001:db8::9:255"[..]));
        let v = parse_via(b"SIP/2.0/TCP h.example.com;rport=1234").unwrap();
        assert_eq!(v.rport, Some(Some(1234)));
        assert!(parse_via(b"SIP/2.0/UDP 2001:db8::1;branch=z9hG4bK1").is_err());
        // RFC 4475 §3.1.2.16: another version is read (the start line gets the 505).
        assert_eq!(parse_via(b"SIP/3.0/UDP h").unwrap().host_raw, b"h");
        assert!(parse_via(b"XMPP/2.0/UDP h").is_err());
        assert!(parse_via(b"SIP//UDP h").is_err());
        assert!(parse_via(b"SIP/2.0/UDP h;rport=x").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr(
            br#""J Rosenberg \\\""  <sip:jdrosen@example.com> ; tag = 98asjd8"#,
            "From",
        )
        .unwrap();
        assert!(n.display_quoted);
        assert_eq!(
            n.display_unescaped().collect::<Vec<_>>(),
            br#"J Rosenberg \""#
        );
        assert_eq!(n.tag, Some(&b"98asjd8"[..]));
        let n = parse_name_addr(b"sip:u@example.com;tag=1", "To").unwrap();
        assert_eq!(n.uri_raw, b"sip:u@example.com");
        assert_eq!(n.tag, Some(&b"1"[..]));
        let n = parse_name_addr(b"Bob Smith <tel:+8610123;x=y>;tag=z", "To").unwrap();
        assert_eq!(n.display, Some(&b"Bob Smith"[..]));
        assert!(matches!(n.uri, Uri::Tel(_)));
        assert!(parse_name_addr(b"\"unterminated <sip:a@b>", "From").is_err());
        assert!(parse_name_addr(b"<sip:a@b", "From").is_err());
        assert!(parse_name_addr(b"\"x\" sip:a@b", "From").is_err());
    }
}
