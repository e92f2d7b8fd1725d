//! Building outgoing messages from a parsed one by splicing bytes (RFC 3261 §16.6, §16.7,
//! §8.2.6, §16.11). Appends to the caller's `Vec<u8>`; never touches what it does not own.

use sha2::{Digest, Sha256};

use super::header::MAGIC_COOKIE;
use super::message::{same_header, Kind, Message};
use super::scan::{eq_ic, CommaList};
use super::uri::{parse_host, split_hostport, Host};
use super::SpliceError;

/// What the gateway writes into its own Via (RFC 3261 §16.6 step 8, RFC 3581 §3).
#[derive(Debug, Clone, Copy)]
pub struct ViaSpec<'s> {
    /// `UDP`, `TCP`, `TLS`…
    pub transport: &'s str,
    /// Our host; an IPv6 address is bracketed if given bare.
    pub host: &'s str,
    pub port: u16,
    /// Usually from [`stateless_branch`].
    pub branch: &'s [u8],
    /// Add `;rport` (RFC 3581 §3) so the response comes back to our source port.
    pub rport: bool,
    /// Next hop is a stream transport: a missing Content-Length is added (RFC 3261 §20.14).
    pub stream: bool,
}

/// Where to send a response after removing our Via (RFC 3261 §18.2.2, RFC 3581 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop<'a> {
    pub transport: &'a [u8],
    pub host: Host<'a>,
    pub port: u16,
}

fn check_header(name: &str, value: &str) -> Result<(), SpliceError> {
    let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if name.is_empty() || !super::scan::all_token(name.as_bytes()) || bad(value) {
        return Err(SpliceError::BadAddedHeader);
    }
    Ok(())
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

/// RFC 3261 §16.6: forwards a request statelessly. Writes the start line as received, our Via
/// on top, Max-Forwards decremented (70 if absent, step 3), every other header line byte for
/// byte, `add_headers` before the blank line, then the body. Max-Forwards 0 is refused: the
/// caller answers 483 first (§16.3 step 3).
pub fn forward_request(
    msg: &Message,
    out: &mut Vec<u8>,
    via: &ViaSpec,
    add_headers: &[(&str, &str)],
) -> Result<(), SpliceError> {
    if !msg.is_request() {
        return Err(SpliceError::NotARequest);
    }
    if msg.max_forwards() == Some(0) {
        return Err(SpliceError::MaxForwardsExhausted);
    }
    for (n, v) in add_headers {
        check_header(n, v)?;
    }
    if via.transport.is_empty()
        || !super::scan::all_token(via.transport.as_bytes())
        || !super::scan::all_token(via.branch)
        || (via.host.parse::<std::net::Ipv6Addr>().is_err()
            && parse_host(via.host.as_bytes()).is_err())
    {
        return Err(SpliceError::BadViaSpec);
    }
    out.extend_from_slice(msg.start_line());
    out.extend_from_slice(b"Via: SIP/2.0/");
    out.extend_from_slice(via.transport.as_bytes());
    out.push(b' ');
    let needs_brackets = via.host.contains(':') && !via.host.starts_with('[');
    if needs_brackets {
        out.push(b'[');
    }
    out.extend_from_slice(via.host.as_bytes());
    if needs_brackets {
        out.push(b']');
    }
    out.push(b':');
    push_num(out, u64::from(via.port));
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(via.branch);
    if via.rport {
        out.extend_from_slice(b";rport");
    }
    out.extend_from_slice(b"\r\n");
    // RFC 3261 §16.6 step 3: a request without Max-Forwards gets one with value 70.
    if msg.max_forwards().is_none() {
        out.extend_from_slice(b"Max-Forwards: 70\r\n");
    }
    for l in msg.line_slice() {
        if same_header(msg.line_name(l), b"Max-Forwards") {
            out.extend_from_slice(b"Max-Forwards: ");
            push_num(
                out,
                u64::from(msg.max_forwards().unwrap_or(70).saturating_sub(1)),
            );
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(msg.line_bytes(l));
        }
    }
    if via.stream && msg.content_length().is_none() {
        out.extend_from_slice(b"Content-Length: ");
        push_num(out, msg.body().len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in add_headers {
        push_header(out, n, v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
    Ok(())
}

/// RFC 3261 §16.7: checks that the top Via is ours (`our_sent_by` is `host[:port]`, port
/// 5060 by default), removes it, and returns where the next Via says to send the response:
/// `received` and `rport` override the sent-by (RFC 3261 §18.2.2, RFC 3581 §4).
pub fn forward_response<'a>(
    msg: &Message<'a>,
    out: &mut Vec<u8>,
    our_sent_by: &[u8],
) -> Result<NextHop<'a>, SpliceError> {
    if msg.is_request() {
        return Err(SpliceError::NotAResponse);
    }
    let top = msg.top_via().map_err(SpliceError::Parse)?;
    let (our_host, our_raw, our_port) =
        split_hostport(our_sent_by).map_err(|_| SpliceError::BadViaSpec)?;
    let same_host = match (top.host, our_host) {
        (Host::Name(a), Host::Name(b)) => eq_ic(a, b),
        (a, b) => a == b || eq_ic(top.host_raw, our_raw),
    };
    if !same_host || top.port.unwrap_or(5060) != our_port.unwrap_or(5060) {
        return Err(SpliceError::ViaNotOurs);
    }
    let next = msg
        .vias()
        .nth(1)
        .ok_or(SpliceError::NoNextVia)?
        .map_err(|_| SpliceError::BadNextVia)?;
    let host = match next.received {
        Some(r) => {
            let r = r
                .strip_prefix(b"[")
                .and_then(|x| x.strip_suffix(b"]"))
                .unwrap_or(r);
            match std::str::from_utf8(r)
                .ok()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            {
                Some(std::net::IpAddr::V4(a)) => Host::V4(a),
                Some(std::net::IpAddr::V6(a)) => Host::V6(a),
                None => return Err(SpliceError::BadNextVia),
            }
        }
        None => next.host,
    };
    let port = match next.rport {
        Some(Some(p)) => p,
        _ => next.port.unwrap_or(5060),
    };
    if port == 0 {
        return Err(SpliceError::BadNextVia);
    }
    out.extend_from_slice(msg.start_line());
    let mut removed = false;
    for l in msg.line_slice() {
        if !removed && same_header(msg.line_name(l), b"Via") {
            removed = true;
            let v = msg.line_value(l);
            let mut list = CommaList::new(v);
            list.next();
            let rest = &v[list.rest_offset().min(v.len())..];
            let rest = super::scan::trim(rest);
            if !rest.is_empty() {
                push_header(out, "Via", rest);
            }
        } else {
            out.extend_from_slice(msg.line_bytes(l));
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
    Ok(NextHop {
        transport: next.transport,
        host,
        port,
    })
}

/// RFC 3261 §8.2.6: a response generated here (reject, 302, 483…). Copies every Via value in
/// order, From, To (adding `;tag=` if it has none, §8.2.6.2), Call-ID and CSeq, then
/// `add_headers` and `Content-Length: 0`.
pub fn local_response(
    req: &Message,
    status: u16,
    reason: &str,
    to_tag: &[u8],
    add_headers: &[(&str, &str)],
    out: &mut Vec<u8>,
) -> Result<(), SpliceError> {
    if !req.is_request() {
        return Err(SpliceError::NotARequest);
    }
    if !(100..=699).contains(&status) {
        return Err(SpliceError::BadStatus);
    }
    if reason.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) || !super::scan::all_token(to_tag)
    {
        return Err(SpliceError::BadAddedHeader);
    }
    for (n, v) in add_headers {
        check_header(n, v)?;
    }
    let to = req.to().map_err(SpliceError::Parse)?;
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for v in req.headers("Via") {
        push_header(out, "Via", v.raw());
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        for v in req.headers(name) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.raw());
            if name == "To" && to.tag.is_none() {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(to_tag);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    for (n, v) in add_headers {
        push_header(out, n, v.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Ok(())
}

fn feed(h: &mut Sha256, field: &[u8]) {
    // Length-prefixed so that ("ab","c") and ("a","bc") hash differently.
    h.update((field.len() as u32).to_be_bytes());
    h.update(field);
}

fn hex_into(out: &mut [u8], digest: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        let byte = digest.get(i / 2).copied().unwrap_or(0);
        let nib = if i % 2 == 0 { byte >> 4 } else { byte & 0xf };
        *o = HEX[nib as usize];
    }
}

fn transaction_digest(msg: &Message, secret: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    feed(&mut h, purpose);
    let top = msg.top_via().ok();
    match top.and_then(|v| v.branch) {
        Some(b) if b.starts_with(MAGIC_COOKIE) => {
            // RFC 3261 §17.2.3: a transaction is the branch plus the sent-by.
            feed(&mut h, b"3261");
            feed(&mut h, b);
            feed(&mut h, top.map_or(&[][..], |v| v.host_raw));
            feed(&mut h, &top.and_then(|v| v.port).unwrap_or(0).to_be_bytes());
        }
        _ => {
            // RFC 3261 §16.11 / §17.2.3 for RFC 2543 peers: the fields that a retransmission
            // and its CANCEL share. The CSeq method is deliberately left out.
            feed(&mut h, b"2543");
            feed(
                &mut h,
                msg.headers("Via").next().map_or(&[][..], |v| v.raw()),
            );
            feed(&mut h, msg.to().ok().and_then(|t| t.tag).unwrap_or(&[]));
            feed(&mut h, msg.from().ok().and_then(|t| t.tag).unwrap_or(&[]));
            feed(&mut h, msg.call_id());
            feed(&mut h, &msg.cseq().0.to_be_bytes());
            let ruri = match msg.kind() {
                Kind::Request { uri, .. } => uri,
                Kind::Response { .. } => &[],
            };
            feed(&mut h, ruri);
        }
    }
    h.finalize().into()
}

/// RFC 3261 §16.11: a stateless proxy's branch, `z9hG4bK` + 25 hex digits (100 bits), keyed
/// with `secret`. A function of the received top Via branch when it has the magic cookie,
/// else of the top Via, To tag, From tag, Call-ID, CSeq number and Request-URI. So a
/// retransmission and the CANCEL of an INVITE (same branch, §9.1) map to the same value.
pub fn stateless_branch(msg: &Message, secret: &[u8; 32]) -> [u8; 32] {
    let d = transaction_digest(msg, secret, b"branch");
    let mut out = [0u8; 32];
    out[..7].copy_from_slice(MAGIC_COOKIE);
    hex_into(&mut out[7..], &d);
    out
}

/// A deterministic To-tag (16 hex digits) for a locally generated response, so that a
/// retransmitted INVITE gets the very same reject (RFC 3261 §8.2.6.2, §17.2.1).
pub fn to_tag_for(msg: &Message, secret: &[u8; 32]) -> [u8; 16] {
    let d = transaction_digest(msg, secret, b"to-tag");
    let mut out = [0u8; 16];
    hex_into(&mut out, &d);
    out
}
