//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), parsed in place.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::scan::{eq_ic, hex_val, parse_dec, Params};
use super::ParseError;

/// A host as written in a URI or a Via sent-by (RFC 3261 §25.1 `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name, as written (compare case-insensitively).
    Name(&'a [u8]),
    V4(Ipv4Addr),
    /// RFC 3261 §25.1 `IPv6reference = "[" IPv6address "]"`; RFC 5118 §4.
    V6(Ipv6Addr),
}

/// A parsed URI. Schemes other than sip, sips and tel are reported, not refused, so that the
/// plane can answer 416 Unsupported URI Scheme (RFC 3261 §8.2.2.1, §16.3 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Tel(TelUri<'a>),
    Other { scheme: &'a [u8], rest: &'a [u8] },
}

/// RFC 3261 §19.1.1: `sip:user:password@host:port;uri-parameters?headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    pub host: Host<'a>,
    /// The host exactly as written (brackets included for IPv6).
    pub host_raw: &'a [u8],
    pub port: Option<u16>,
    params: &'a [u8],
    /// The raw `headers` part after `?`, if any.
    pub headers: Option<&'a [u8]>,
}

/// RFC 3966 §3: `tel:` `global-number` or `local-number`, then parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number part as written (`+86-10-1234`, visual separators kept).
    pub number: &'a [u8],
    params: &'a [u8],
}

impl<'a> SipUri<'a> {
    /// The user part as written, escapes kept (RFC 3261 §19.1.2).
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The user part with `%HH` escapes decoded into the caller's buffer (RFC 3261 §19.1.4:
    /// escaped and unescaped forms compare equal). Refused if longer than the buffer.
    pub fn user_unescaped<'b>(&self, buf: &'b mut [u8; 128]) -> Result<&'b [u8], ParseError> {
        let user = self.user.unwrap_or(&[]);
        let mut n = 0;
        let mut i = 0;
        while i < user.len() {
            let b = if user[i] == b'%' {
                let hi = user.get(i + 1).copied().and_then(hex_val);
                let lo = user.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        i += 3;
                        h * 16 + l
                    }
                    _ => return Err(ParseError::BadUri("bad %-escape in the user part")),
                }
            } else {
                i += 1;
                user[i - 1]
            };
            let slot = buf
                .get_mut(n)
                .ok_or(ParseError::BadUri("user part longer than 128 bytes"))?;
            *slot = b;
            n += 1;
        }
        Ok(&buf[..n])
    }

    /// The URI parameters (`;transport=udp;lr;user=phone`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// RFC 3261 §19.1.6: `user=phone` marks the user part as a telephone-subscriber.
    pub fn is_user_phone(&self) -> bool {
        matches!(self.params().get(b"user"), Some(Some(v)) if eq_ic(v, b"phone"))
    }
}

impl<'a> TelUri<'a> {
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }
    /// RFC 3966 §5.1.4: a global number starts with `+`.
    pub fn is_global(&self) -> bool {
        self.number.first() == Some(&b'+')
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Checks `%HH` escapes and that every other byte satisfies `ok` (RFC 3261 §25.1 `escaped`).
fn check_escaped(s: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if s.get(i + 1).copied().and_then(hex_val).is_none()
                || s.get(i + 2).copied().and_then(hex_val).is_none()
            {
                return false;
            }
            i += 3;
        } else if ok(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Parses a host (RFC 3261 §25.1): `[IPv6]`, dotted IPv4, or a host name.
pub(crate) fn parse_host(h: &[u8]) -> Result<Host<'_>, ParseError> {
    if h.is_empty() {
        return Err(ParseError::BadUri("empty host"));
    }
    if h[0] == b'[' {
        let inner = match h.strip_prefix(b"[").and_then(|x| x.strip_suffix(b"]")) {
            Some(i) => i,
            None => return Err(ParseError::BadUri("IPv6 reference without closing ']'")),
        };
        // RFC 5118 §4.1: the address inside the brackets must be a valid IPv6address.
        let v6 = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .ok_or(ParseError::BadUri("invalid IPv6 address in brackets"))?;
        return Ok(Host::V6(v6));
    }
    if h.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        if let Some(v4) = std::str::from_utf8(h)
            .ok()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            return Ok(Host::V4(v4));
        }
        return Err(ParseError::BadUri("invalid IPv4 address"));
    }
    // RFC 3261 §25.1 `hostname`: alphanum, "-" and "."; "_" tolerated as deployed.
    if h.iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Ok(Host::Name(h))
    } else {
        Err(ParseError::BadUri("invalid character in host name"))
    }
}

/// Splits `host[:port]` (RFC 3261 §25.1 `hostport`), IPv6 references included.
pub(crate) fn split_hostport(hp: &[u8]) -> Result<(Host<'_>, &[u8], Option<u16>), ParseError> {
    let (host_raw, port) = if hp.first() == Some(&b'[') {
        match hp.iter().position(|&b| b == b']') {
            Some(e) => {
                let rest = &hp[e + 1..];
                match rest {
                    [] => (&hp[..=e], None),
                    [b':', p @ ..] => (&hp[..=e], Some(p)),
                    _ => return Err(ParseError::BadUri("junk after IPv6 reference")),
                }
            }
            None => return Err(ParseError::BadUri("IPv6 reference without closing ']'")),
        }
    } else {
        match hp.iter().position(|&b| b == b':') {
            Some(c) => (&hp[..c], Some(&hp[c + 1..])),
            None => (hp, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            parse_dec(p, 65535)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or(ParseError::BadUri("port is not a number from 0 to 65535"))?,
        ),
    };
    Ok((parse_host(host_raw)?, host_raw, port))
}

/// Parses a URI in place (no allocation). Accepts `sip:`, `sips:`, `tel:`; any other
/// syntactically valid scheme (RFC 3986 §3.1) is returned as [`Uri::Other`].
pub fn parse_uri(s: &[u8]) -> Result<Uri<'_>, ParseError> {
    let colon = s
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::BadUri("no scheme"))?;
    let scheme = &s[..colon];
    let rest = &s[colon + 1..];
    let scheme_ok = scheme.first().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(ParseError::BadUri("invalid scheme"));
    }
    if rest.is_empty()
        || rest
            .iter()
            .any(|&b| b <= b' ' || b >= 0x7f || matches!(b, b'<' | b'>' | b'"'))
    {
        return Err(ParseError::BadUri(
            "empty or containing white space, '<', '>' or '\"'",
        ));
    }
    if eq_ic(scheme, b"sip") || eq_ic(scheme, b"sips") {
        parse_sip(rest, scheme.len() == 4).map(Uri::Sip)
    } else if eq_ic(scheme, b"tel") {
        let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
        let number = &rest[..end];
        // RFC 3966 §3: phonedigit-hex / visual separators / "+" prefix.
        let ok = !number.is_empty()
            && number.iter().enumerate().all(|(i, &b)| {
                b.is_ascii_hexdigit()
                    || matches!(b, b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                    || (b == b'+' && i == 0)
            });
        if !ok {
            return Err(ParseError::BadUri(
                "tel: number has characters other than digits and separators",
            ));
        }
        let params = rest.get(end + 1..).unwrap_or(&[]);
        if !Params::new(params).valid() {
            return Err(ParseError::BadUri("malformed tel: parameter"));
        }
        Ok(Uri::Tel(TelUri { number, params }))
    } else {
        Ok(Uri::Other { scheme, rest })
    }
}

fn parse_sip(rest: &[u8], secure: bool) -> Result<SipUri<'_>, ParseError> {
    // RFC 3261 §25.1: neither userinfo nor parameters may hold an unescaped '@', so the first
    // '@' ends the userinfo.
    let (userinfo, after) = match rest.iter().position(|&b| b == b'@') {
        Some(a) => (Some(&rest[..a]), &rest[a + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.iter().position(|&b| b == b':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            // `user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"`
            let user_ok = |b: u8| {
                is_unreserved(b)
                    || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
            };
            if u.is_empty() || !check_escaped(u, user_ok) {
                return Err(ParseError::BadUri("invalid user part"));
            }
            if let Some(p) = p {
                if !check_escaped(p, |b| {
                    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
                }) {
                    return Err(ParseError::BadUri("invalid password part"));
                }
            }
            (Some(u), p)
        }
    };
    let hp_end = after
        .iter()
        .position(|&b| b == b';' || b == b'?')
        .unwrap_or(after.len());
    let (host, host_raw, port) = split_hostport(&after[..hp_end])?;
    let tail = &after[hp_end..];
    let (params, headers) = match tail.iter().position(|&b| b == b'?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    let params = params.strip_prefix(b";").unwrap_or(params);
    let param_ok = |b: u8| {
        is_unreserved(b)
            || matches!(
                b,
                b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b';' | b'='
            )
    };
    if !check_escaped(params, param_ok) || !Params::new(params).valid() {
        return Err(ParseError::BadUri("malformed URI parameter"));
    }
    if let Some(h) = headers {
        let hok = |b: u8| {
            is_unreserved(b)
                || matches!(
                    b,
                    b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'&' | b'='
                )
        };
        if !check_escaped(h, hok) {
            return Err(ParseError::BadUri("malformed URI header part"));
        }
    }
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        host_raw,
        port,
        params,
        headers,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sip(s: &[u8]) -> SipUri<'_> {
        match parse_uri(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = sip(b"sips:alice:pw@Example.COM:5061;transport=tcp;lr?subject=x");
        assert!(u.secure);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"pw"[..]));
        assert_eq!(u.host, Host::Name(b"Example.COM"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params().get(b"TRANSPORT"), Some(Some(&b"tcp"[..])));
        assert_eq!(u.params().get(b"lr"), Some(None));
        assert_eq!(u.headers, Some(&b"subject=x"[..]));
    }

    #[test]
    fn escaped_user_and_phone() {
        let u = sip(b"sip:%2B8610%20123;isub=1@gw.example.net;user=phone");
        let mut buf = [0u8; 128];
        assert_eq!(u.user_unescaped(&mut buf).unwrap(), b"+8610 123;isub=1");
        assert!(u.is_user_phone());
        assert!(parse_uri(b"sip:a%4@h").is_err());
    }

    #[test]
    fn ip_hosts() {
        let u = sip(b"sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(
            sip(b"sip:u@192.0.2.1").host,
            Host::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
        // RFC 5118 §4.2: an IPv6 address without brackets is not a valid host.
        assert!(parse_uri(b"sip:user@2001:db8::10").is_err());
        assert!(parse_uri(b"sip:[2001:db8::10").is_err());
        assert!(parse_uri(b"sip:u@999.1.1.1").is_err());
        assert!(parse_uri(b"sip:u@h:99999").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        match parse_uri(b"tel:+86-10-1234;phone-context=x").unwrap() {
            Uri::Tel(t) => {
                assert_eq!(t.number, b"+86-10-1234");
                assert!(t.is_global());
                assert_eq!(t.params().get(b"phone-context"), Some(Some(&b"x"[..])));
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            parse_uri(b"http://example.com/").unwrap(),
            Uri::Other {
                scheme: b"http",
                rest: b"//example.com/"
            }
        );
        assert!(parse_uri(b"<sip:a@b>").is_err());
        assert!(parse_uri(b"sip:a@b c").is_err());
        assert!(parse_uri(b"tel:abc xyz").is_err());
    }
}
