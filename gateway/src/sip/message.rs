//! The one-pass message indexer (RFC 3261 §7) and the lazy accessors on [`Message`].

use super::header::{parse_name_addr, parse_via, NameAddr, Via, MAGIC_COOKIE};
use super::scan::{all_token, eq_ic, parse_dec, trim, CommaList, Unfold};
use super::uri::{parse_uri, Uri};
use super::ParseError;

/// Hard bound on indexed header lines; RFC 3261 sets none, a carrier's peers send ~20.
pub const MAX_HEADERS: usize = 96;
/// Hard bound on a message: the largest UDP payload (RFC 3261 §18.1.1 lets larger go by TCP,
/// but the gateway refuses them on every transport).
pub const MAX_MESSAGE: usize = 65_535;

/// Full names for the compact forms (RFC 3261 §7.3.3 and the IANA SIP header registry).
const COMPACT: [(u8, &str); 17] = [
    (b'v', "Via"),
    (b'f', "From"),
    (b't', "To"),
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'k', "Supported"),
    (b'c', "Content-Type"),
    (b's', "Subject"),
    (b'e', "Content-Encoding"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'u', "Allow-Events"),
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Maps a header name (full or compact, any case) to its canonical full name if it has a
/// compact form, else returns it unchanged.
pub(crate) fn canonical(name: &[u8]) -> &[u8] {
    if let [c] = name {
        let c = c.to_ascii_lowercase();
        if let Some((_, full)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return full.as_bytes();
        }
    }
    name
}

/// True if two header names denote the same header (RFC 3261 §7.3.1, §7.3.3).
pub fn same_header(a: &[u8], b: &[u8]) -> bool {
    eq_ic(canonical(a), canonical(b))
}

/// Byte offsets of one header line in the buffer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Line {
    pub start: u32,
    pub name_end: u32,
    pub value_start: u32,
    /// End of the value (before the final line end).
    pub value_end: u32,
    /// Just past the line's final line end (continuations included).
    pub end: u32,
}

/// The start line (RFC 3261 §7.1, §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    Request {
        method: &'a [u8],
        /// The Request-URI as written; it has been checked with [`parse_uri`].
        uri: &'a [u8],
        version: &'a [u8],
    },
    Response {
        version: &'a [u8],
        status: u16,
        reason: &'a [u8],
    },
}

impl Kind<'_> {
    /// RFC 3261 §8.2.1 / §16.3: anything but `SIP/2.0` gets 505 Version Not Supported.
    pub fn version_supported(&self) -> bool {
        let v = match self {
            Kind::Request { version, .. } | Kind::Response { version, .. } => version,
        };
        eq_ic(v, b"SIP/2.0")
    }
}

/// One header value as written (folds included) with a lazy unfolding view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderValue<'a> {
    raw: &'a [u8],
}

impl<'a> HeaderValue<'a> {
    /// The value with surrounding white space removed; folds (CRLF + WSP) inside are kept.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// The value with every fold replaced by one SP (RFC 3261 §7.3.1), without allocating.
    pub fn unfolded(&self) -> Unfold<'a> {
        Unfold::new(self.raw)
    }
    /// The comma-separated elements of the value.
    pub fn elements(&self) -> CommaList<'a> {
        CommaList::new(self.raw)
    }
}

/// An indexed SIP message borrowing the packet buffer. Built by [`parse`].
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    kind: Kind<'a>,
    start_line_end: usize,
    lines: [Line; MAX_HEADERS],
    n: usize,
    /// Offset of the blank line that ends the headers.
    headers_end: usize,
    body: &'a [u8],
    content_length: Option<u32>,
    max_forwards: Option<u32>,
    cseq: (u32, &'a [u8]),
    call_id: &'a [u8],
    /// Parsed once by [`parse`] (which must validate them anyway) and handed out as copies:
    /// screening and splicing ask for them several times per message.
    top_via: Option<Via<'a>>,
    from: Option<NameAddr<'a>>,
    to: Option<NameAddr<'a>>,
}

fn hdr(name: &'static str, reason: &'static str) -> ParseError {
    ParseError::BadHeader { name, reason }
}

fn u32_of(i: usize) -> u32 {
    // Bounded by MAX_MESSAGE, checked before indexing.
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Index of the next LF at or after `from`.
fn next_lf(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', buf.get(from..)?).map(|p| from + p)
}

/// Content end of a line ending at `lf` (a CR before the LF is not content).
fn content_end(buf: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    }
}

/// Parses one datagram (or one framed stream message, see [`super::frame`]) in a single pass.
///
/// The start line and every header line are indexed into a fixed array; Content-Length,
/// Max-Forwards, CSeq, Call-ID, the top Via, From and To are validated because routing and
/// the RFC 4475 refusals depend on them. Everything else is left raw for the lazy accessors.
/// RFC 3261 §18.3: with a datagram the body is the rest of the buffer, cut at Content-Length.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    if buf.is_empty() {
        return Err(ParseError::Empty);
    }
    if buf.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let lf = next_lf(buf, 0).ok_or(ParseError::NoHeaderEnd)?;
    let kind = parse_start_line(&buf[..content_end(buf, 0, lf)])?;
    let start_line_end = lf + 1;
    let mut lines = [Line::default(); MAX_HEADERS];
    let mut n = 0usize;
    let mut pos = start_line_end;
    let headers_end;
    loop {
        let lf = next_lf(buf, pos).ok_or(ParseError::NoHeaderEnd)?;
        let ce = content_end(buf, pos, lf);
        if ce == pos {
            headers_end = pos;
            pos = lf + 1;
            break;
        }
        let line = &buf[pos..ce];
        if matches!(line[0], b' ' | b'\t') {
            // RFC 3261 §7.3.1: a line starting with white space continues the previous one.
            let prev = n.checked_sub(1).and_then(|i| lines.get_mut(i)).ok_or(
                ParseError::BadHeaderLine("continuation line before any header"),
            )?;
            prev.value_end = u32_of(ce);
            prev.end = u32_of(lf + 1);
        } else {
            let colon = memchr::memchr(b':', line)
                .ok_or(ParseError::BadHeaderLine("header line without ':'"))?;
            // RFC 3261 §7.3.1: `field-name HCOLON`, HCOLON = *( SP / HTAB ) ":" SWS.
            let raw_name = &line[..colon];
            let nlen = raw_name
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t'))
                .map_or(0, |p| p + 1);
            let name = &raw_name[..nlen];
            if !all_token(name) {
                return Err(ParseError::BadHeaderLine("header name is not a token"));
            }
            let slot = lines.get_mut(n).ok_or(ParseError::TooManyHeaders)?;
            *slot = Line {
                start: u32_of(pos),
                name_end: u32_of(pos + name.len()),
                value_start: u32_of(pos + colon + 1),
                value_end: u32_of(ce),
                end: u32_of(lf + 1),
            };
            n += 1;
        }
        pos = lf + 1;
    }
    let mut msg = Message {
        buf,
        kind,
        start_line_end,
        lines,
        n,
        headers_end,
        body: &[],
        content_length: None,
        max_forwards: None,
        cseq: (0, &[]),
        call_id: &[],
        top_via: None,
        from: None,
        to: None,
    };
    // RFC 3261 §20.14: one non-negative decimal (RFC 4475 §3.1.2.3 sends -999), the same in
    // every copy (RFC 4475 §3.3.9), and no more than the datagram holds (RFC 4475 §3.1.2.2).
    let mut content_length = None;
    for v in msg.headers("Content-Length") {
        let cl = parse_dec(v.raw(), u64::from(u32::MAX))
            .and_then(|c| u32::try_from(c).ok())
            .ok_or(ParseError::BadContentLength)?;
        if content_length.is_some_and(|c| c != cl) {
            return Err(ParseError::BadContentLength);
        }
        content_length = Some(cl);
    }
    msg.content_length = content_length;
    let rest = &buf[pos..];
    msg.body = match msg.content_length {
        None => rest,
        Some(cl) => rest
            .get(..cl as usize)
            .ok_or(ParseError::BadContentLength)?,
    };
    // RFC 3261 §20.22: Max-Forwards is 0-255 (RFC 4475 §3.1.2.4 treats 300 as invalid).
    let mut max_forwards = None;
    let mut mf = msg.headers("Max-Forwards");
    if let Some(v) = mf.next() {
        let n = parse_dec(v.raw(), 255).ok_or(hdr("Max-Forwards", "not a number from 0 to 255"))?;
        max_forwards = Some(n as u32);
        if mf.next().is_some() {
            return Err(hdr("Max-Forwards", "appears more than once"));
        }
    }
    drop(mf);
    msg.max_forwards = max_forwards;
    // RFC 3261 §8.1.1.5 and §20.16: `CSeq: number method`, number below 2**31 (RFC 4475
    // §3.1.2.4 and §3.1.2.5 send larger ones), and the method must match the request's
    // (RFC 4475 §3.1.2.17, §3.1.2.18).
    let cs = msg.single("CSeq")?;
    let cs = trim(cs);
    let sp = cs
        .iter()
        .position(|b| super::scan::is_lws(*b))
        .ok_or(hdr("CSeq", "not `number method`"))?;
    let num = parse_dec(&cs[..sp], (1 << 31) - 1)
        .ok_or(hdr("CSeq", "sequence number is not a number below 2^31"))?;
    let method = trim(&cs[sp..]);
    if !all_token(method) {
        return Err(hdr("CSeq", "method is not a token"));
    }
    if let Kind::Request { method: m, .. } = kind {
        if m != method {
            return Err(ParseError::CseqMismatch);
        }
    }
    msg.cseq = (num as u32, method);
    let cid = trim(msg.single("Call-ID")?);
    if cid.is_empty() || cid.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return Err(hdr("Call-ID", "empty or containing white space"));
    }
    msg.call_id = cid;
    let top = msg.top_via()?;
    // RFC 4475 §3.2.1: a branch that is the magic cookie alone claims an RFC 3261 transaction
    // id and carries none. The RFC lets an element refuse it (400) or fall back to RFC 2543
    // matching; refusing keeps every such request from one host off a single derived branch.
    if matches!(kind, Kind::Request { .. }) && top.branch == Some(MAGIC_COOKIE) {
        return Err(hdr(
            "Via",
            "branch is the magic cookie z9hG4bK with no transaction id after it",
        ));
    }
    // The name-addr is read before the one-value check so that an unquoted display name
    // with a comma (RFC 4475 §3.1.2.15) is reported as such, not as a list.
    let from = msg.single("From")?;
    let from_na = parse_name_addr(from, "From")?;
    no_list(from, "From")?;
    let to = msg.single("To")?;
    let to_na = parse_name_addr(to, "To")?;
    no_list(to, "To")?;
    msg.top_via = Some(top);
    msg.from = Some(from_na);
    msg.to = Some(to_na);
    Ok(msg)
}

/// RFC 3261 §7.3.1: From, To, Call-ID and CSeq take one value, never a list.
/// A comma outside quotes and `<>` is refused even when an element around it is empty
/// (`To: sip:a@b,`): RFC 3261 §20 makes a URI with a comma use angle brackets, so a bare comma
/// can only separate values — and a splice that appends `;tag=` after it would make a list
/// (found by fuzzing).
fn no_list(v: &[u8], name: &'static str) -> Result<(), ParseError> {
    // Without a comma there is no list (the common case, decided by one SIMD scan).
    if memchr::memchr(b',', v).is_some() && super::scan::find_outside(v, 0, b',').is_some() {
        return Err(hdr(name, "holds more than one value, or a stray comma"));
    }
    Ok(())
}

fn parse_start_line(line: &[u8]) -> Result<Kind<'_>, ParseError> {
    // RFC 3261 §7.1: `Method SP Request-URI SP SIP-Version CRLF`, single SPs, no other
    // white space (RFC 4475 §3.1.2.8 LWS inside the URI, §3.1.2.9 doubled SP, §3.1.2.10
    // trailing SP: each may be refused with 400, which is what the codec does).
    let mut parts = line.splitn(3, |&b| b == b' ');
    let a = parts.next().unwrap_or(&[]);
    let b = parts
        .next()
        .ok_or(ParseError::BadStartLine("fewer than three parts"))?;
    let c = parts
        .next()
        .ok_or(ParseError::BadStartLine("fewer than three parts"))?;
    let is_version = |v: &[u8]| {
        v.len() > 4
            && eq_ic(&v[..4], b"SIP/")
            && v[4..].iter().all(|b| b.is_ascii_digit() || *b == b'.')
    };
    if is_version(a) {
        // RFC 3261 §7.2: `SIP-Version SP Status-Code SP Reason-Phrase CRLF`.
        let status = (b.len() == 3)
            .then(|| parse_dec(b, 699))
            .flatten()
            .filter(|s| *s >= 100)
            .ok_or(ParseError::BadStartLine(
                "status code is not three digits from 100 to 699",
            ))?;
        if c.iter().any(|&x| x == b'\r' || x == b'\n') {
            return Err(ParseError::BadStartLine(
                "control character in reason phrase",
            ));
        }
        return Ok(Kind::Response {
            version: a,
            status: status as u16,
            reason: c,
        });
    }
    if !all_token(a) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    if !is_version(c) {
        return Err(ParseError::BadStartLine(
            "the version is not SIP/x.y, or extra white space",
        ));
    }
    // RFC 3261 §19.1.1 (table of URI components): `?headers` are not allowed in a
    // Request-URI. RFC 4475 §3.1.2.11: a proxy may refuse such a request (400) or drop the
    // headers, but must never forward them; the stateless proxy forwards the start line as
    // received, so it refuses.
    if let Uri::Sip(u) = parse_uri(b).map_err(|_| ParseError::BadRequestUri)? {
        if u.headers.is_some() {
            return Err(ParseError::BadRequestUri);
        }
    }
    Ok(Kind::Request {
        method: a,
        uri: b,
        version: c,
    })
}

impl<'a> Message<'a> {
    /// The start line.
    pub fn kind(&self) -> Kind<'a> {
        self.kind
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// The whole buffer handed to [`parse`].
    pub fn raw(&self) -> &'a [u8] {
        self.buf
    }

    /// The body, cut at Content-Length (RFC 3261 §18.3).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    pub(crate) fn line_slice(&self) -> &[Line] {
        self.lines.get(..self.n).unwrap_or(&[])
    }

    pub(crate) fn start_line(&self) -> &'a [u8] {
        self.buf.get(..self.start_line_end).unwrap_or(&[])
    }

    pub(crate) fn line_bytes(&self, l: &Line) -> &'a [u8] {
        self.buf
            .get(l.start as usize..l.end as usize)
            .unwrap_or(&[])
    }

    pub(crate) fn line_name(&self, l: &Line) -> &'a [u8] {
        self.buf
            .get(l.start as usize..l.name_end as usize)
            .unwrap_or(&[])
    }

    pub(crate) fn line_value(&self, l: &Line) -> &'a [u8] {
        trim(
            self.buf
                .get(l.value_start as usize..l.value_end as usize)
                .unwrap_or(&[]),
        )
    }

    /// Length of the start line and headers: the offset of the blank line that ends them.
    pub fn headers_len(&self) -> usize {
        self.headers_end
    }

    /// The values of every header called `name` (full or compact form, any case), in order.
    pub fn headers<'m>(&'m self, name: &'m str) -> impl Iterator<Item = HeaderValue<'a>> + 'm {
        self.line_slice()
            .iter()
            .filter(move |l| same_header(self.line_name(l), name.as_bytes()))
            .map(move |l| HeaderValue {
                raw: self.line_value(l),
            })
    }

    /// Every header line as (name as written, value).
    pub fn all_headers(&self) -> impl Iterator<Item = (&'a [u8], HeaderValue<'a>)> + '_ {
        self.line_slice().iter().map(move |l| {
            (
                self.line_name(l),
                HeaderValue {
                    raw: self.line_value(l),
                },
            )
        })
    }

    fn single(&self, name: &'static str) -> Result<&'a [u8], ParseError> {
        let mut it = self.headers(name);
        let v = it.next().ok_or(ParseError::MissingHeader(name))?;
        if it.next().is_some() {
            return Err(hdr(name, "appears more than once"));
        }
        Ok(v.raw())
    }

    /// The Call-ID (validated by [`parse`]).
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// CSeq number and method (validated by [`parse`]).
    pub fn cseq(&self) -> (u32, &'a [u8]) {
        self.cseq
    }

    /// Max-Forwards, if present (a malformed value was refused by [`parse`]).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Every Via value, top first, across comma lists and repeated headers (RFC 3261 §7.3.1).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.headers("Via")
            .flat_map(|v| v.elements())
            .map(parse_via)
    }

    /// The top Via (RFC 3261 §16.7 step 3, §18.2.1).
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        if let Some(v) = self.top_via {
            return Ok(v);
        }
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        match self.from {
            Some(f) => Ok(f),
            None => parse_name_addr(self.single("From")?, "From"),
        }
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        match self.to {
            Some(t) => Ok(t),
            None => parse_name_addr(self.single("To")?, "To"),
        }
    }

    /// RFC 3325 §9.1: the first P-Asserted-Identity value; trust is the caller's decision.
    pub fn p_asserted_identity(&self) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.headers("P-Asserted-Identity")
            .flat_map(|v| v.elements())
            .next()
            .map(|v| parse_name_addr(v, "P-Asserted-Identity"))
    }

    /// RFC 3323 §4.2 / RFC 3325 §9.3: a `Privacy` header containing `id`.
    pub fn privacy_id(&self) -> bool {
        self.headers("Privacy").any(|v| {
            v.raw()
                .split(|&b| b == b';' || b == b',')
                .any(|p| eq_ic(trim(p), b"id"))
        })
    }

    /// The Route set, top first (RFC 3261 §16.4, §20.34).
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.headers("Route")
            .flat_map(|v| v.elements())
            .map(|v| parse_name_addr(v, "Route"))
    }

    /// Option tags in Proxy-Require (RFC 3261 §16.3 step 5: unsupported → 420).
    pub fn proxy_require(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers("Proxy-Require").flat_map(|v| v.elements())
    }
}
