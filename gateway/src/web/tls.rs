//! # TLS ClientHello reader (sans IO) for the web plane
//!
//! Dragnet sits on a transparent TLS port. Before it splices the client to the origin it must
//! know which site the client asks for, and the only place that says so in clear is the
//! `server_name` extension (RFC 6066 §3) of the client's first flight, the ClientHello
//! (RFC 8446 §4.1.2). This module reads that message and nothing more:
//!
//! - [`HelloReader`] takes the raw TCP byte stream in whatever pieces the socket returns,
//!   strips the TLS record headers (RFC 8446 §5.1) and reassembles a ClientHello that spans
//!   several records or several segments (post-quantum key shares make hellos of 1.5–2 KB
//!   common, more than one segment on many paths);
//! - [`parse_client_hello`] parses a bare handshake message: the reader uses it after
//!   reassembly, and QUIC (RFC 9001 §4.1.3) hands it the ClientHello taken from CRYPTO frames,
//!   where there is no record layer;
//! - [`alert`] builds the plaintext fatal alert to send before closing a connection the
//!   gateway refuses (RFC 8446 §6).
//!
//! **Never.** No sockets, no clock, no global state, no `unsafe`, no panic on any input
//! (fuzzed through [`fuzz_hello`]), no allocation: the reader owns one fixed buffer of
//! [`MAX_HELLO`] bytes, the server name is copied into a fixed array inside [`HelloInfo`].
//! The reader never decrypts anything and never looks past the ClientHello: with Encrypted
//! Client Hello (draft-ietf-tls-esni, extension `0xfe0d`) the name it sees is the *outer*,
//! provider name, which [`HelloInfo::ech`] flags.
//!
//! **Cost model.** Every byte fed is looked at once by the record layer and copied at most once
//! into the buffer; the message is parsed in one pass when its last byte arrives, so a hello
//! costs O(n) with n ≤ [`MAX_HELLO`]. Duplicate extensions are found with an 8 KiB bit set on
//! the stack (one bit per extension type), which keeps the check O(n) however many extensions
//! a hostile client sends. A [`HelloReader`] is about 16.5 KiB; reuse it with
//! [`HelloReader::reset`].
//!
//! Standards: RFC 8446 (§4.1.2 ClientHello, §4.2 extensions, §5.1 record layer, §6 alerts),
//! RFC 5246 §7.4.1.2 (extensions may be absent), RFC 6066 §3 (server_name), RFC 7301 §3.1
//! (ALPN), RFC 9001 §4.1.3 (QUIC carries the bare ClientHello), WHATWG URL Standard (which
//! host names are IPv4 literals).

use std::fmt;

/// Hard bound on the ClientHello the gateway will buffer: its 4-byte handshake header plus its
/// body.
///
/// Why 16 KiB: it is the largest plaintext a single TLS record may carry (2^14, RFC 8446
/// §5.1), and far above what deployed clients send. A classical hello is 200–600 bytes; a
/// browser hello with a hybrid post-quantum key share (X25519MLKEM768, a 1,216-byte client
/// share), GREASE, ECH and a resumption ticket stays near 2–3 KB. The handshake length field
/// allows 16 MiB, so without a bound a client could make the gateway hold megabytes per
/// connection; with it, memory per pending connection is fixed and a longer hello is refused
/// ([`HelloError::TooLarge`]) as soon as its length is known, before any of it is buffered.
pub const MAX_HELLO: usize = 16 * 1024;

/// TLS record content types (RFC 8446 §5.1, RFC 6520 for heartbeat).
const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_HEARTBEAT: u8 = 24;
/// Record header: type(1) + legacy_record_version(2) + length(2).
const RECORD_HEADER: usize = 5;
/// RFC 8446 §5.1: a TLSPlaintext fragment "MUST NOT exceed 2^14 bytes".
const MAX_RECORD: usize = 1 << 14;
/// Handshake header: msg_type(1) + uint24 length.
const HANDSHAKE_HEADER: usize = 4;
/// RFC 8446 §4: HandshakeType client_hello(1).
const CLIENT_HELLO: u8 = 1;

/// Extension code points (IANA "TLS ExtensionType Values").
const EXT_SERVER_NAME: u16 = 0; // RFC 6066 §3
const EXT_ALPN: u16 = 16; // RFC 7301 §3.1
const EXT_PRE_SHARED_KEY: u16 = 41; // RFC 8446 §4.2.11
const EXT_ECH: u16 = 0xfe0d; // draft-ietf-tls-esni §5 (encrypted_client_hello)

/// RFC 6066 §3: NameType host_name(0).
const NAME_TYPE_HOST_NAME: u8 = 0;
/// Longest host name without a trailing dot (RFC 1035 §2.3.4: 255 octets on the wire, which is
/// 253 characters in dotted form).
const MAX_HOST_NAME: usize = 253;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
const MAX_LABEL: usize = 63;

/// What the gateway learns from a ClientHello: enough to decide before splicing, and a few
/// facts for the logs.
#[derive(Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// The host_name of the server_name extension, validated as a DNS name and lower-cased
    /// (RFC 4343: DNS names compare without case). Bytes past `sni_len` are always zero, so
    /// the derived equality is equality of names.
    sni: [u8; 255],
    sni_len: u8,
    /// An encrypted_client_hello extension (0xfe0d) is present: the real destination is
    /// encrypted and [`HelloInfo::sni`] is the OUTER (client-facing provider) name.
    pub ech: bool,
    /// ALPN (RFC 7301) offers "h2".
    pub alpn_h2: bool,
    /// ALPN offers "http/1.1".
    pub alpn_http11: bool,
    /// ALPN offers "h3" (only meaningful on the QUIC path).
    pub alpn_h3: bool,
    /// ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients), for logs only: the
    /// version really negotiated is in supported_versions, which the gateway does not need.
    pub legacy_version: u16,
}

impl HelloInfo {
    fn new(legacy_version: u16) -> Self {
        HelloInfo {
            sni: [0; 255],
            sni_len: 0,
            ech: false,
            alpn_h2: false,
            alpn_http11: false,
            alpn_h3: false,
            legacy_version,
        }
    }

    /// The requested server name, lower-case, without a trailing dot; `None` when the client
    /// sent no server_name extension (legal: RFC 6066 §3 makes it optional, and clients omit
    /// it when connecting to an IP address).
    pub fn sni(&self) -> Option<&str> {
        if self.sni_len == 0 {
            return None;
        }
        // Only ASCII was stored (see `host_name`), so this conversion cannot fail.
        std::str::from_utf8(self.sni.get(..usize::from(self.sni_len))?).ok()
    }
}

// Written by hand so that logs show the name as text rather than 255 numbers.
impl fmt::Debug for HelloInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelloInfo")
            .field("sni", &self.sni())
            .field("ech", &self.ech)
            .field("alpn_h2", &self.alpn_h2)
            .field("alpn_http11", &self.alpn_http11)
            .field("alpn_h3", &self.alpn_h3)
            .field(
                "legacy_version",
                &format_args!("{:#06x}", self.legacy_version),
            )
            .finish()
    }
}

/// Why a byte stream did not yield a usable ClientHello. Malformed traffic is not a fault of
/// the gateway: the web plane turns each of these into an outcome (pass, alert, close) and
/// counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The stream does not start with a TLS record header (plain HTTP on the TLS port, an
    /// SSLv2-format hello, a record version outside 0x0301..=0x0304, random bytes).
    NotTls,
    /// The stream is TLS, but its first message is not a ClientHello: a record of another
    /// content type (application data, alert, change_cipher_spec) came first, or the first
    /// handshake message has another type.
    NotClientHello,
    /// The ClientHello announces more than [`MAX_HELLO`] bytes; refused before buffering.
    TooLarge,
    /// The ClientHello (or its record framing) breaks its wire format; the text says what and
    /// where.
    Malformed(&'static str),
    /// The server_name extension is well formed but its name cannot be used for a decision
    /// (IP literal, trailing dot, forbidden character, several host names); the text says why.
    BadSni(&'static str),
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::NotTls => f.write_str(
                "the client did not start with a TLS handshake record (not TLS, or an old \
                 SSLv2-format hello)",
            ),
            HelloError::NotClientHello => {
                f.write_str("the client's first TLS message is not a ClientHello")
            }
            HelloError::TooLarge => write!(
                f,
                "the ClientHello is longer than the {MAX_HELLO}-byte limit and was not read"
            ),
            HelloError::Malformed(what) => write!(f, "malformed ClientHello: {what}"),
            HelloError::BadSni(why) => {
                write!(f, "unusable server name (SNI) in ClientHello: {why}")
            }
        }
    }
}

impl std::error::Error for HelloError {}

/// Parse a bare handshake message (type 1 + 24-bit length + body), as QUIC delivers it in
/// CRYPTO frames (RFC 9001 §4.1.3) or as [`HelloReader`] reassembles it.
///
/// `Ok(None)` means the message is incomplete: call again with more bytes. Errors that the
/// first bytes already prove (not a ClientHello, longer than [`MAX_HELLO`]) are returned as
/// soon as those bytes are there. Bytes after the end of the message are not looked at (in
/// QUIC they belong to the next handshake message, if any).
pub fn parse_client_hello(msg: &[u8]) -> Result<Option<HelloInfo>, HelloError> {
    let Some(&msg_type) = msg.first() else {
        return Ok(None);
    };
    if msg_type != CLIENT_HELLO {
        return Err(HelloError::NotClientHello);
    }
    let Some(total) = message_total(msg) else {
        return Ok(None);
    };
    if total > MAX_HELLO {
        return Err(HelloError::TooLarge);
    }
    match msg.get(HANDSHAKE_HEADER..total) {
        Some(body) => parse_body(body).map(Some),
        None => Ok(None),
    }
}

/// Header plus body length of the handshake message starting `buf`, once its 4-byte header is
/// there.
fn message_total(buf: &[u8]) -> Option<usize> {
    match buf.get(..HANDSHAKE_HEADER)? {
        &[_, a, b, c] => {
            Some(HANDSHAKE_HEADER + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)))
        }
        _ => None,
    }
}

/// Incremental ClientHello reader over the TCP byte stream.
///
/// It keeps at most [`MAX_HELLO`] bytes of handshake payload in a fixed buffer, strips TLS
/// record headers (RFC 8446 §5.1: content type 22 and legacy_record_version 0x0301..=0x0304,
/// anything else is [`HelloError::NotTls`]; a record of another TLS content type before the
/// hello is [`HelloError::NotClientHello`]) and reassembles a hello fragmented over several
/// records. It never keeps the raw bytes: the proxy holds what it read and replays it verbatim
/// to the upstream, using [`HelloReader::consumed`] to know where the hello ended.
///
/// Every check is made on the byte that decides it, so the answer and `consumed` do not depend
/// on how the stream was cut into pieces. Once an answer (a hello or an error) is given, further
/// calls to [`HelloReader::feed`] return the same answer and take no more bytes.
pub struct HelloReader {
    /// Handshake payload collected so far (record headers stripped).
    buf: [u8; MAX_HELLO],
    /// Bytes of `buf` in use.
    len: usize,
    /// Total size of the handshake message (header + body), once its header is in `buf`.
    total: Option<usize>,
    /// The record header being read.
    hdr: [u8; RECORD_HEADER],
    hdr_len: usize,
    /// Payload bytes of the current record not read yet; 0 between records.
    record_left: usize,
    /// Raw stream bytes taken so far.
    consumed: usize,
    /// The final answer, repeated to later calls.
    done: Option<Result<HelloInfo, HelloError>>,
}

impl fmt::Debug for HelloReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelloReader")
            .field("buffered", &self.len)
            .field("total", &self.total)
            .field("record_left", &self.record_left)
            .field("consumed", &self.consumed)
            .field("done", &self.done)
            .finish()
    }
}

impl Default for HelloReader {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloReader {
    /// A reader waiting for the first byte of a connection.
    pub fn new() -> Self {
        HelloReader {
            buf: [0; MAX_HELLO],
            len: 0,
            total: None,
            hdr: [0; RECORD_HEADER],
            hdr_len: 0,
            record_left: 0,
            consumed: 0,
            done: None,
        }
    }

    /// Forget everything, to read the next connection with the same buffer.
    pub fn reset(&mut self) {
        // The buffer is not cleared: nothing past `len` is ever read.
        self.len = 0;
        self.total = None;
        self.hdr_len = 0;
        self.record_left = 0;
        self.consumed = 0;
        self.done = None;
    }

    /// Feed the next bytes read from the socket; returns `Ok(None)` while more is needed.
    ///
    /// Bytes after the end of the ClientHello (in the same call) are not taken: they are
    /// counted neither by the reader nor in [`HelloReader::consumed`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<HelloInfo>, HelloError> {
        if let Some(done) = &self.done {
            return done.clone().map(Some);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.step(&mut rest) {
                Ok(None) => {}
                Ok(Some(info)) => {
                    self.done = Some(Ok(info.clone()));
                    return Ok(Some(info));
                }
                Err(e) => {
                    self.done = Some(Err(e.clone()));
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Raw stream bytes taken so far: every byte fed while the reader still needed more, up to
    /// and including the byte that completed the ClientHello or proved an error. The proxy
    /// replays everything it read verbatim to the upstream; bytes past `consumed` follow the
    /// hello (e.g. TLS 1.3 early data).
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// Take some bytes off the front of `rest`: one record-header byte, or a run of payload.
    fn step(&mut self, rest: &mut &[u8]) -> Result<Option<HelloInfo>, HelloError> {
        if self.record_left == 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(None);
            };
            *rest = tail;
            self.consumed += 1;
            self.header_byte(byte)?;
            return Ok(None);
        }
        // Take no more than the current record holds and no more than the message still needs:
        // this is what keeps `len` within `total` ≤ MAX_HELLO.
        // The handshake type byte is taken on its own so that a wrong type is reported at the
        // same stream offset however the bytes were cut.
        let need = match self.total {
            None if self.len == 0 => 1,
            None => HANDSHAKE_HEADER.saturating_sub(self.len),
            Some(total) => total.saturating_sub(self.len),
        };
        let n = need.min(self.record_left).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let end = self.len + n;
        let Some(dst) = self.buf.get_mut(self.len..end) else {
            // Unreachable by the bound above; an error rather than a panic all the same.
            return Err(HelloError::TooLarge);
        };
        dst.copy_from_slice(chunk);
        *rest = tail;
        self.len = end;
        self.record_left -= n;
        self.consumed += n;
        self.check_message()
    }

    /// Check what the handshake bytes collected so far already decide.
    fn check_message(&mut self) -> Result<Option<HelloInfo>, HelloError> {
        let buffered = self.buf.get(..self.len).unwrap_or_default();
        if buffered.first().is_some_and(|&t| t != CLIENT_HELLO) {
            return Err(HelloError::NotClientHello);
        }
        if self.total.is_none() {
            if let Some(total) = message_total(buffered) {
                // Refused here, before a byte of the body is buffered.
                if total > MAX_HELLO {
                    return Err(HelloError::TooLarge);
                }
                self.total = Some(total);
            }
        }
        match self.total {
            Some(total) if total == self.len => {
                let body = buffered.get(HANDSHAKE_HEADER..).unwrap_or_default();
                parse_body(body).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// One byte of a record header (RFC 8446 §5.1 TLSPlaintext), checked as soon as it arrives
    /// so that plain HTTP is recognised on its first byte.
    fn header_byte(&mut self, byte: u8) -> Result<(), HelloError> {
        let Some(slot) = self.hdr.get_mut(self.hdr_len) else {
            // `hdr_len` goes back to 0 when the header is complete; never reached.
            return Err(HelloError::Malformed("record header state lost"));
        };
        *slot = byte;
        self.hdr_len += 1;
        let [content_type, major, minor, len_hi, len_lo] = self.hdr;
        match self.hdr_len {
            // Content types defined for TLS 1.2/1.3 records are 20..=24; anything else (an HTTP
            // method's first letter, the 0x80 of an SSLv2 hello) is not TLS.
            1 if !(CT_CHANGE_CIPHER_SPEC..=CT_HEARTBEAT).contains(&content_type) => {
                Err(HelloError::NotTls)
            }
            2 if major != 3 => Err(HelloError::NotTls),
            3 if !(1..=4).contains(&minor) => Err(HelloError::NotTls),
            3 if content_type != CT_HANDSHAKE => Err(if self.len == 0 {
                HelloError::NotClientHello
            } else {
                HelloError::Malformed(
                    "a record of another content type arrived in the middle of the ClientHello \
                     (RFC 8446 §5.1 forbids interleaving)",
                )
            }),
            RECORD_HEADER => {
                self.hdr_len = 0;
                let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
                if len == 0 {
                    return Err(HelloError::Malformed(
                        "zero-length handshake record (RFC 8446 §5.1 forbids it)",
                    ));
                }
                if len > MAX_RECORD {
                    return Err(HelloError::Malformed(
                        "record longer than 16384 bytes (RFC 8446 §5.1)",
                    ));
                }
                self.record_left = len;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Reads the wire format front to back; every read names what was cut short.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Cursor { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if n > self.rest.len() {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        match self.take(1, what)? {
            &[a] => Ok(a),
            _ => Err(HelloError::Malformed(what)),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        match self.take(2, what)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(HelloError::Malformed(what)),
        }
    }

    /// RFC 8446 §3.4: a vector with a one-byte length.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    /// RFC 8446 §3.4: a vector with a two-byte length.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

/// RFC 8446 §4.1.2 ClientHello body (TLS 1.2 clients send the same layout, RFC 5246 §7.4.1.2).
fn parse_body(body: &[u8]) -> Result<HelloInfo, HelloError> {
    let mut c = Cursor::new(body);
    let legacy_version = c.u16("ends before legacy_version")?;
    // Every SSL 3.0/TLS version is 3.x; anything else is not a ClientHello we can read.
    if legacy_version >> 8 != 3 {
        return Err(HelloError::Malformed("legacy_version is not 3.x"));
    }
    c.take(32, "ends inside the 32-byte random")?;
    let session_id = c.vec8("ends inside legacy_session_id")?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed(
            "legacy_session_id is longer than 32 bytes (RFC 8446 §4.1.2)",
        ));
    }
    let suites = c.vec16("ends inside cipher_suites")?;
    // RFC 8446 §4.1.2: CipherSuite cipher_suites<2..2^16-2>, two bytes each.
    if suites.len() < 2 || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed(
            "cipher_suites is empty or has an odd length (RFC 8446 §4.1.2)",
        ));
    }
    let compression = c.vec8("ends inside legacy_compression_methods")?;
    if compression.is_empty() {
        return Err(HelloError::Malformed(
            "legacy_compression_methods is empty (RFC 8446 §4.1.2)",
        ));
    }
    let mut info = HelloInfo::new(legacy_version);
    // RFC 5246 §7.4.1.2: a TLS 1.2 client may omit the extensions block entirely.
    if c.is_empty() {
        return Ok(info);
    }
    let extensions = c.vec16("the extensions block runs past the end of the ClientHello")?;
    if !c.is_empty() {
        return Err(HelloError::Malformed(
            "bytes after the extensions block (its length does not match the message)",
        ));
    }
    parse_extensions(extensions, &mut info)?;
    Ok(info)
}

fn parse_extensions(block: &[u8], info: &mut HelloInfo) -> Result<(), HelloError> {
    // One bit per extension type: 65,536 bits = 8 KiB, zeroed once per hello.
    let mut seen = [0u64; 1 << 10];
    let mut c = Cursor::new(block);
    while !c.is_empty() {
        let ty = c.u16("an extension header is cut short")?;
        let data = c.vec16("an extension's data runs past the end of the extensions block")?;
        let (word, bit) = (usize::from(ty >> 6), 1u64 << (ty & 63));
        let Some(slot) = seen.get_mut(word) else {
            return Err(HelloError::Malformed("extension type out of range"));
        };
        if *slot & bit != 0 {
            return Err(HelloError::Malformed(
                "the same extension appears twice (RFC 8446 §4.2)",
            ));
        }
        *slot |= bit;
        match ty {
            EXT_SERVER_NAME => server_name(data, info)?,
            EXT_ALPN => alpn(data, info)?,
            EXT_ECH => info.ech = true,
            // RFC 8446 §4.2.11: pre_shared_key "MUST be the last extension in the ClientHello".
            EXT_PRE_SHARED_KEY if !c.is_empty() => {
                return Err(HelloError::Malformed(
                    "pre_shared_key is not the last extension (RFC 8446 §4.2.11)",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, each entry a name_type and, for
/// host_name(0), an `opaque HostName<1..2^16-1>`.
fn server_name(data: &[u8], info: &mut HelloInfo) -> Result<(), HelloError> {
    let mut c = Cursor::new(data);
    let list = c.vec16("the server_name list runs past the end of its extension")?;
    if !c.is_empty() {
        return Err(HelloError::Malformed(
            "bytes after the server_name list inside its extension",
        ));
    }
    if list.is_empty() {
        return Err(HelloError::Malformed(
            "the server_name list is empty (RFC 6066 §3)",
        ));
    }
    let mut c = Cursor::new(list);
    let mut found = false;
    while !c.is_empty() {
        let name_type = c.u8("a server_name entry is cut short")?;
        // No other name type was ever defined; RFC 6066 §3 keeps the list extensible, and the
        // only workable reading of an unknown entry is the same 2-byte-length opaque layout,
        // which is skipped.
        let name = c.vec16("a server_name entry runs past the end of the list")?;
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        if found {
            return Err(HelloError::BadSni(
                "more than one host_name in server_name (RFC 6066 §3 allows one)",
            ));
        }
        found = true;
        host_name(name, info)?;
    }
    Ok(())
}

/// Validate a host_name as a DNS name and store it lower-cased.
///
/// RFC 6066 §3: "HostName" is the fully qualified DNS hostname in ASCII (A-labels for IDNs),
/// "without a trailing dot", and "Literal IPv4 and IPv6 addresses are not permitted".
/// Letters, digits, hyphen and dot are the LDH rule (RFC 1123 §2.1); the underscore is
/// tolerated because real host names carry it (`_dmarc`-style labels, some CDN names) and a
/// refusal would block traffic, not fraud. Hyphens at label ends are tolerated for the same
/// reason.
fn host_name(name: &[u8], info: &mut HelloInfo) -> Result<(), HelloError> {
    if name.is_empty() {
        return Err(HelloError::BadSni("host_name is empty"));
    }
    if name.last() == Some(&b'.') {
        return Err(HelloError::BadSni(
            "host_name ends with a dot (RFC 6066 §3 forbids the trailing dot)",
        ));
    }
    if name.iter().any(|&b| b == b':' || b == b'[') {
        return Err(HelloError::BadSni(
            "host_name is an IPv6 address literal (RFC 6066 §3 forbids IP literals)",
        ));
    }
    if name.len() > MAX_HOST_NAME {
        return Err(HelloError::BadSni(
            "host_name is longer than 253 characters (RFC 1035 §2.3.4)",
        ));
    }
    let mut out = [0u8; 255];
    for (slot, &b) in out.iter_mut().zip(name) {
        *slot = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => b,
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            0x80..=0xff => {
                return Err(HelloError::BadSni(
                    "non-ASCII byte in host_name (internationalised names must be sent as \
                     A-labels, RFC 6066 §3)",
                ))
            }
            _ => {
                return Err(HelloError::BadSni(
                    "forbidden character in host_name (only letters, digits, '-', '_' and '.')",
                ))
            }
        };
    }
    let mut last = &name[..0];
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(HelloError::BadSni(
                "empty label in host_name (leading dot or two dots in a row)",
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(HelloError::BadSni(
                "a label of host_name is longer than 63 characters (RFC 1035 §2.3.4)",
            ));
        }
        last = label;
    }
    if ends_in_a_number(last) {
        return Err(HelloError::BadSni(
            "host_name is an IPv4 address literal (RFC 6066 §3 forbids IP literals)",
        ));
    }
    info.sni = out;
    // name.len() ≤ 253 was checked above.
    info.sni_len = u8::try_from(name.len()).map_err(|_| {
        HelloError::BadSni("host_name is longer than 253 characters (RFC 1035 §2.3.4)")
    })?;
    Ok(())
}

/// WHATWG URL Standard, "ends in a number checker": a host whose last label is all decimal
/// digits, or `0x` followed by hex digits, is parsed by browsers and resolvers as an IPv4
/// address (`10.1`, `2130706433`, `0x7f.1`), never as a DNS name. No top-level domain is
/// numeric (RFC 3696 §2), so nothing legitimate is refused.
fn ends_in_a_number(label: &[u8]) -> bool {
    if !label.is_empty() && label.iter().all(u8::is_ascii_digit) {
        return true;
    }
    match label {
        [b'0', b'x' | b'X', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        _ => false,
    }
}

/// RFC 7301 §3.1: `ProtocolName protocol_name_list<2..2^16-1>`, each `opaque
/// ProtocolName<1..2^8-1>`.
fn alpn(data: &[u8], info: &mut HelloInfo) -> Result<(), HelloError> {
    let mut c = Cursor::new(data);
    let list = c.vec16("the ALPN list runs past the end of its extension")?;
    if !c.is_empty() {
        return Err(HelloError::Malformed(
            "bytes after the ALPN list inside its extension",
        ));
    }
    if list.is_empty() {
        return Err(HelloError::Malformed(
            "the ALPN list is empty (RFC 7301 §3.1)",
        ));
    }
    let mut c = Cursor::new(list);
    while !c.is_empty() {
        let proto = c.vec8("an ALPN protocol name runs past the end of the list")?;
        match proto {
            b"" => {
                return Err(HelloError::Malformed(
                    "empty ALPN protocol name (RFC 7301 §3.1)",
                ))
            }
            b"h2" => info.alpn_h2 = true,
            b"http/1.1" => info.alpn_http11 = true,
            b"h3" => info.alpn_h3 = true,
            _ => {}
        }
    }
    Ok(())
}

/// TLS alert descriptions the gateway may send (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AlertDescription {
    /// access_denied(49): "a valid certificate or PSK was received, but ... the sender decided
    /// not to proceed with negotiation" — the closest meaning for "blocked by policy".
    AccessDenied = 49,
    /// unrecognized_name(112): RFC 6066 §3, the server has no such name; for an unusable SNI.
    UnrecognizedName = 112,
    /// internal_error(80): the gateway itself failed (e.g. the upstream is unreachable).
    InternalError = 80,
}

/// A TLS 1.2-format fatal alert record to send before closing (RFC 8446 §6): content type
/// alert(21), legacy_record_version 0x0303, length 2, level fatal(2), description.
///
/// It goes out in clear, which is right: the server has sent nothing yet, so no handshake keys
/// exist (RFC 8446 §5: records are protected only once keys are established).
pub fn alert(desc: AlertDescription) -> [u8; 7] {
    [21, 3, 3, 0, 2, 2, desc as u8]
}

/// Fuzzing entry point (`fuzz/fuzz_targets/tls_hello.rs`): the first byte chooses where the
/// rest is cut in two; the rest is fed whole, in those two pieces and one byte at a time, and
/// parsed as a bare handshake message.
///
/// # Panics
///
/// On a broken invariant, which is what the fuzzer looks for: the three feedings disagree,
/// `consumed` exceeds the bytes fed, a reset reader answers differently, or a returned server
/// name is not a lower-case, dot-separated DNS name.
pub fn fuzz_hello(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    if let Ok(Some(info)) = parse_client_hello(stream) {
        check_info(&info);
    }

    let mut whole = HelloReader::new();
    let expected = whole.feed(stream);
    assert!(whole.consumed() <= stream.len(), "consumed more than fed");
    match &expected {
        Ok(Some(info)) => check_info(info),
        Ok(None) => assert_eq!(
            whole.consumed(),
            stream.len(),
            "an unfinished feed skipped bytes"
        ),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // A finished reader repeats itself and takes nothing more.
    if !matches!(expected, Ok(None)) {
        let before = whole.consumed();
        assert_eq!(
            whole.feed(stream),
            expected,
            "a finished reader changed its answer"
        );
        assert_eq!(
            whole.consumed(),
            before,
            "a finished reader took more bytes"
        );
    }

    let at = stream.len() * usize::from(cut) / 255;
    let (a, b) = stream.split_at(at.min(stream.len()));
    let mut reader = HelloReader::new();
    let mut got = reader.feed(a);
    if matches!(got, Ok(None)) {
        got = reader.feed(b);
    }
    assert_eq!(got, expected, "answer depends on where the stream was cut");
    assert_eq!(
        reader.consumed(),
        whole.consumed(),
        "consumed depends on the cut"
    );

    reader.reset();
    let mut got = Ok(None);
    for byte in stream {
        got = reader.feed(std::slice::from_ref(byte));
        if !matches!(got, Ok(None)) {
            break;
        }
    }
    assert_eq!(got, expected, "answer differs when fed byte by byte");
    assert_eq!(
        reader.consumed(),
        whole.consumed(),
        "consumed differs byte by byte"
    );
}

fn check_info(info: &HelloInfo) {
    let Some(name) = info.sni() else {
        assert_eq!(info.sni_len, 0);
        return;
    };
    assert!(
        !name.is_empty() && name.len() <= MAX_HOST_NAME,
        "bad name length"
    );
    assert!(
        name.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.')),
        "name has a forbidden or upper-case character: {name:?}"
    );
    assert!(
        name.split('.')
            .all(|l| !l.is_empty() && l.len() <= MAX_LABEL),
        "name has an empty or overlong label: {name:?}"
    );
    assert!(
        info.sni.iter().skip(name.len()).all(|&b| b == 0),
        "bytes past the name are not zero"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    /// RFC 8448 §3 "Simple 1-RTT Handshake", "client sends handshake record": the
    /// ClientHello handshake message (196 bytes, SNI "server"), transcribed from the RFC.
    const RFC8448_HELLO: &str = "\
        010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef\
        6283024dece7000006130113031302010000910000000b000900000673657276\
        6572ff01000100000a00140012001d0017001800190100010101020103010400\
        230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e\
        51c13cae4d5413691e529aaf2c002b0003020304000d0020001e040305030603\
        020308040805080604010501060102010402050206020202002d00020101001c\
        00024001";
    /// The record header the RFC shows in front of it: handshake, 0x0301, 0x00c4 = 196 bytes.
    const RFC8448_RECORD_HEADER: [u8; 5] = [0x16, 0x03, 0x01, 0x00, 0xc4];

    fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| match c {
                b'0'..=b'9' => c - b'0',
                _ => c.to_ascii_lowercase() - b'a' + 10,
            })
            .collect();
        assert_eq!(digits.len() % 2, 0);
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn rfc_msg() -> Vec<u8> {
        let msg = unhex(RFC8448_HELLO);
        assert_eq!(msg.len(), 196);
        msg
    }

    fn rfc_stream() -> Vec<u8> {
        let mut s = RFC8448_RECORD_HEADER.to_vec();
        s.extend(rfc_msg());
        s
    }

    fn u16be(n: usize) -> [u8; 2] {
        u16::try_from(n).unwrap().to_be_bytes()
    }

    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend(u16be(data.len()));
        e.extend(data);
        e
    }

    /// server_name extension with one entry per name (name_type 0 = host_name).
    fn sni_ext(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(0);
            list.extend(u16be(n.len()));
            list.extend(*n);
        }
        let mut data = u16be(list.len()).to_vec();
        data.extend(list);
        ext(EXT_SERVER_NAME, &data)
    }

    fn alpn_ext(protos: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for p in protos {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend(*p);
        }
        let mut data = u16be(list.len()).to_vec();
        data.extend(list);
        ext(EXT_ALPN, &data)
    }

    /// A ClientHello handshake message built by this test's own encoder (not the parser's).
    fn hello_with(session_id: &[u8], exts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([0x42; 32]);
        body.push(u8::try_from(session_id.len()).unwrap());
        body.extend(session_id);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        let block: Vec<u8> = exts.concat();
        body.extend(u16be(block.len()));
        body.extend(block);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    fn hello(exts: &[Vec<u8>]) -> Vec<u8> {
        hello_with(&[], exts)
    }

    /// Wrap a handshake message in handshake records whose sizes cycle through `sizes`.
    fn records(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = msg;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, MAX_RECORD).min(rest.len());
            i += 1;
            out.extend([CT_HANDSHAKE, 3, 1]);
            out.extend(u16be(n));
            out.extend(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }

    fn read_all(stream: &[u8]) -> Result<Option<HelloInfo>, HelloError> {
        HelloReader::new().feed(stream)
    }

    fn sni_of(msg: &[u8]) -> Result<Option<String>, HelloError> {
        parse_client_hello(msg).map(|o| o.and_then(|i| i.sni().map(str::to_owned)))
    }

    #[test]
    fn rfc8448_client_hello_bare_and_in_a_record() {
        let info = parse_client_hello(&rfc_msg()).unwrap().unwrap();
        assert_eq!(info.sni(), Some("server"));
        assert_eq!(info.legacy_version, 0x0303);
        assert!(!info.ech && !info.alpn_h2 && !info.alpn_http11 && !info.alpn_h3);

        let stream = rfc_stream();
        let mut r = HelloReader::new();
        assert_eq!(r.feed(&stream).unwrap(), Some(info));
        assert_eq!(r.consumed(), 201);
    }

    #[test]
    fn rfc8448_every_two_way_split_and_byte_by_byte() {
        let stream = rfc_stream();
        let want = read_all(&stream).unwrap().unwrap();
        for at in 0..=stream.len() {
            let mut r = HelloReader::new();
            let first = r.feed(&stream[..at]).unwrap();
            if at < stream.len() {
                assert_eq!(first, None, "complete after {at} bytes");
                assert_eq!(r.consumed(), at);
                assert_eq!(r.feed(&stream[at..]).unwrap().as_ref(), Some(&want));
            } else {
                assert_eq!(first.as_ref(), Some(&want));
            }
            assert_eq!(r.consumed(), stream.len());
        }
        let mut r = HelloReader::new();
        for (i, b) in stream.iter().enumerate() {
            let got = r.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(got.is_some(), i + 1 == stream.len(), "byte {i}");
        }
        // Bare message too, as QUIC would hand it over piece by piece.
        let msg = rfc_msg();
        for at in 0..msg.len() {
            assert_eq!(parse_client_hello(&msg[..at]), Ok(None), "prefix of {at}");
        }
    }

    #[test]
    fn hello_split_across_two_records_at_every_position() {
        let msg = rfc_msg();
        let want = parse_client_hello(&msg).unwrap();
        for at in 1..msg.len() {
            let stream = records(&msg, &[at, msg.len()]);
            assert_eq!(stream.len(), msg.len() + 10);
            assert_eq!(read_all(&stream).unwrap(), want, "record split at {at}");
        }
        // Many tiny records (the record boundary inside the 4-byte handshake header too).
        let stream = records(&msg, &[1, 2, 3]);
        assert_eq!(read_all(&stream).unwrap(), want);
    }

    #[test]
    fn bytes_after_the_hello_are_not_consumed() {
        let mut stream = rfc_stream();
        stream.extend([0x17, 3, 3, 0, 1, 0xaa]); // e.g. early data after the hello
        let mut r = HelloReader::new();
        assert!(r.feed(&stream).unwrap().is_some());
        assert_eq!(r.consumed(), 201);
        // A finished reader repeats its answer and takes nothing.
        assert!(r.feed(&stream).unwrap().is_some());
        assert_eq!(r.consumed(), 201);
    }

    #[test]
    fn application_data_first_is_not_a_client_hello() {
        assert_eq!(
            read_all(&[0x17, 3, 3, 0, 16, 1, 2, 3]),
            Err(HelloError::NotClientHello)
        );
        assert_eq!(
            read_all(&[0x15, 3, 3, 0, 2, 2, 40]),
            Err(HelloError::NotClientHello)
        );
        // A handshake record whose message is not a ClientHello (a ServerHello).
        assert_eq!(
            read_all(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]),
            Err(HelloError::NotClientHello)
        );
        assert_eq!(parse_client_hello(&[2]), Err(HelloError::NotClientHello));
    }

    #[test]
    fn http_and_other_non_tls_bytes_are_not_tls() {
        let mut r = HelloReader::new();
        assert_eq!(
            r.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HelloError::NotTls)
        );
        assert_eq!(r.consumed(), 1, "decided on the first byte");
        // SSLv2-format hello, bad record major, bad record minor.
        assert_eq!(
            read_all(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
            Err(HelloError::NotTls)
        );
        assert_eq!(read_all(&[0x16, 0x02, 0x00]), Err(HelloError::NotTls));
        assert_eq!(read_all(&[0x16, 0x03, 0x00]), Err(HelloError::NotTls));
        assert_eq!(read_all(&[0x16, 0x03, 0x05]), Err(HelloError::NotTls));
        // Incomplete header: still waiting.
        assert_eq!(read_all(&[0x16, 0x03]), Ok(None));
    }

    #[test]
    fn oversized_hello_is_refused_without_buffering() {
        // Record says 16384 bytes, handshake header says 0xffffff bytes.
        let head = [0x16, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff];
        let mut r = HelloReader::new();
        assert_eq!(r.feed(&head), Err(HelloError::TooLarge));
        assert_eq!(r.consumed(), 9);
        assert_eq!(r.len, 4, "only the handshake header was kept");
        assert_eq!(r.feed(&[0; 100]), Err(HelloError::TooLarge));
        assert_eq!(r.consumed(), 9);
        // The exact bound: header + body = MAX_HELLO is allowed, one more is not.
        let body = MAX_HELLO - 4;
        let ok = [1, (body >> 16) as u8, (body >> 8) as u8, body as u8];
        assert_eq!(parse_client_hello(&ok), Ok(None));
        let body = body + 1;
        let big = [1, (body >> 16) as u8, (body >> 8) as u8, body as u8];
        assert_eq!(parse_client_hello(&big), Err(HelloError::TooLarge));
    }

    #[test]
    fn largest_allowed_hello_spans_two_records() {
        // 73 = handshake header 4 + fixed fields 45 + server_name ext 20 + padding ext header 4.
        let pad = ext(21, &vec![0; MAX_HELLO - 73]);
        let msg = hello(&[sni_ext(&[b"big.example"]), pad]);
        assert_eq!(msg.len(), MAX_HELLO);
        let stream = records(&msg, &[MAX_RECORD]);
        let info = read_all(&stream).unwrap().unwrap();
        assert_eq!(info.sni(), Some("big.example"));
    }

    #[test]
    fn record_framing_errors() {
        assert!(matches!(
            read_all(&[0x16, 3, 1, 0, 0]),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            read_all(&[0x16, 3, 1, 0x40, 0x01]),
            Err(HelloError::Malformed(_))
        ));
        // An alert record in the middle of a fragmented hello.
        let msg = rfc_msg();
        let mut stream = records(&msg[..10], &[10]);
        stream.extend([0x15, 3, 3, 0, 2, 2, 40]);
        assert!(matches!(read_all(&stream), Err(HelloError::Malformed(_))));
    }

    #[test]
    fn duplicate_extension_is_malformed() {
        let msg = hello(&[
            sni_ext(&[b"a.example"]),
            ext(10, &[0, 2, 0, 29]),
            ext(10, &[0, 2, 0, 23]),
        ]);
        assert_eq!(
            parse_client_hello(&msg),
            Err(HelloError::Malformed(
                "the same extension appears twice (RFC 8446 §4.2)"
            ))
        );
        let msg = hello(&[sni_ext(&[b"a.example"]), sni_ext(&[b"b.example"])]);
        assert!(matches!(
            parse_client_hello(&msg),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn two_host_names_are_refused() {
        let msg = hello(&[sni_ext(&[b"a.example", b"b.example"])]);
        assert!(matches!(
            parse_client_hello(&msg),
            Err(HelloError::BadSni(_))
        ));
        // An entry of an unknown name type next to one host_name is skipped.
        let mut data = Vec::new();
        let list = [&[7u8, 0, 2, 0xaa, 0xbb][..], &[0, 0, 3], b"x.y"].concat();
        data.extend(u16be(list.len()));
        data.extend(list);
        let msg = hello(&[ext(0, &data)]);
        assert_eq!(sni_of(&msg), Ok(Some("x.y".into())));
    }

    #[test]
    fn ip_literals_are_refused() {
        for name in [
            &b"192.168.0.1"[..],
            b"10.1",
            b"2130706433",
            b"0x7f.0x1",
            b"x.0x",
            b"::1",
            b"[2001:db8::1]",
            b"2001:db8::1",
        ] {
            let msg = hello(&[sni_ext(&[name])]);
            assert!(
                matches!(parse_client_hello(&msg), Err(HelloError::BadSni(_))),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        // Digits elsewhere, or a hex-looking name that is not all hex, are fine.
        for name in [&b"1.2.3.example"[..], b"123abc", b"0xzz", b"x.0xg1"] {
            let msg = hello(&[sni_ext(&[name])]);
            assert!(
                parse_client_hello(&msg).is_ok(),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn host_name_rules() {
        let ok = |n: &[u8]| sni_of(&hello(&[sni_ext(&[n])]));
        assert_eq!(ok(b"WWW.Example.COM"), Ok(Some("www.example.com".into())));
        assert_eq!(
            ok(b"_acme.my-host.example"),
            Ok(Some("_acme.my-host.example".into()))
        );
        assert_eq!(ok(b"localhost"), Ok(Some("localhost".into())));
        let label63 = [b'a'; 63];
        let name = [
            &label63[..],
            b".",
            &label63,
            b".",
            &label63,
            b".",
            &[b'b'; 61],
        ]
        .concat();
        assert_eq!(name.len(), 253);
        assert_eq!(ok(&name).unwrap().unwrap().len(), 253);

        let bad = |n: &[u8]| matches!(ok(n), Err(HelloError::BadSni(_)));
        assert!(bad(b"example.com."), "trailing dot");
        assert!(bad(b""), "empty");
        assert!(bad(b".example.com"), "leading dot");
        assert!(bad(b"a..b"), "empty label");
        assert!(bad(&[&[b'a'; 64][..], b".com"].concat()), "label > 63");
        assert!(bad(&[&name[..], b"b"].concat()), "254 characters");
        assert!(bad(b"exa mple.com"), "space");
        assert!(bad(b"exa\0mple.com"), "NUL");
        assert!(bad(b"a/b.com"), "slash");
        assert!(bad("bücher.de".as_bytes()), "raw UTF-8");
    }

    #[test]
    fn no_server_name_is_valid() {
        let info = parse_client_hello(&hello(&[alpn_ext(&[b"h2"])]))
            .unwrap()
            .unwrap();
        assert_eq!(info.sni(), None);
        // TLS 1.2 style: no extensions block at all (RFC 5246 §7.4.1.2).
        let mut msg = hello(&[]);
        msg.truncate(msg.len() - 2);
        msg[3] -= 2;
        let info = parse_client_hello(&msg).unwrap().unwrap();
        assert_eq!(info.sni(), None);
    }

    #[test]
    fn ech_flag() {
        let plain = parse_client_hello(&hello(&[sni_ext(&[b"public.example"])]))
            .unwrap()
            .unwrap();
        assert!(!plain.ech);
        let msg = hello(&[
            sni_ext(&[b"public.example"]),
            ext(EXT_ECH, &[0, 0, 1, 0, 1]),
        ]);
        let info = parse_client_hello(&msg).unwrap().unwrap();
        assert!(info.ech);
        assert_eq!(info.sni(), Some("public.example"), "the outer name");
    }

    #[test]
    fn alpn_flags() {
        let flags = |protos: &[&[u8]]| {
            let i = parse_client_hello(&hello(&[alpn_ext(protos)]))
                .unwrap()
                .unwrap();
            (i.alpn_h2, i.alpn_http11, i.alpn_h3)
        };
        assert_eq!(flags(&[b"h2", b"http/1.1"]), (true, true, false));
        assert_eq!(flags(&[b"h3"]), (false, false, true));
        assert_eq!(
            flags(&[b"spdy/3", b"h2c", b"http/1.0", b"H2"]),
            (false, false, false)
        );
        assert!(matches!(
            parse_client_hello(&hello(&[alpn_ext(&[b"h2", b""])])),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            parse_client_hello(&hello(&[ext(EXT_ALPN, &[0, 0])])),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn structure_errors_are_malformed() {
        let good = hello(&[sni_ext(&[b"a.example"])]);
        let malformed = |m: &[u8]| matches!(parse_client_hello(m), Err(HelloError::Malformed(_)));
        assert!(parse_client_hello(&good).unwrap().is_some());

        // Body offsets: version 0..2, random 2..34, sid len 34, suites len 35..37.
        let mut m = good.clone();
        m[4] = 2;
        assert!(malformed(&m), "legacy_version 2.x");
        let mut m = good.clone();
        m[4 + 36] = 3; // odd cipher_suites length (and the rest shifts)
        assert!(malformed(&m), "odd cipher suites");
        let zero_suites = hello(&[]);
        let mut m = zero_suites[..4 + 35].to_vec();
        m.extend([0, 0, 1, 0, 0, 0]);
        let body = m.len() - 4;
        m[3] = body as u8;
        assert!(malformed(&m), "no cipher suites");
        let mut m = zero_suites[..4 + 35].to_vec();
        m.extend([0, 2, 0x13, 0x01, 0, 0, 0]);
        m[3] = (m.len() - 4) as u8;
        assert!(malformed(&m), "no compression methods");
        let long_sid = hello_with(&[7; 33], &[]);
        assert!(malformed(&long_sid), "session id of 33 bytes");
        assert!(parse_client_hello(&hello_with(&[7; 32], &[]))
            .unwrap()
            .is_some());

        // Extensions block length one too long / trailing bytes after it.
        let mut m = good.clone();
        let ext_len_at = 4 + 2 + 32 + 1 + 6 + 2;
        m[ext_len_at + 1] += 1;
        assert!(malformed(&m), "extensions block longer than the message");
        let mut m = good.clone();
        m[ext_len_at + 1] -= 1;
        assert!(malformed(&m), "extension cut by the block length");
        let mut m = good.clone();
        m.push(0);
        m[3] += 1;
        assert!(malformed(&m), "trailing byte");

        // An extension whose length points past the block.
        let mut bad_ext = ext(10, &[0, 2, 0, 29]);
        bad_ext[3] = 9;
        assert!(malformed(&hello(&[bad_ext])));
        // server_name list length disagreeing with the extension.
        assert!(malformed(&hello(&[ext(0, &[0, 9, 0, 0, 1, b'a'])])));
        assert!(
            malformed(&hello(&[ext(0, &[0, 0])])),
            "empty server_name list"
        );
        assert!(
            malformed(&hello(&[ext(0, &[])])),
            "empty server_name extension"
        );
        // pre_shared_key must be last.
        assert!(malformed(&hello(&[ext(41, &[0; 4]), sni_ext(&[b"a.b"])])));
        assert!(parse_client_hello(&hello(&[sni_ext(&[b"a.b"]), ext(41, &[0; 4])])).is_ok());
        // Empty body.
        assert!(malformed(&[1, 0, 0, 0]));
    }

    #[test]
    fn reset_reuses_the_reader() {
        let mut r = HelloReader::new();
        assert_eq!(r.feed(b"GET /"), Err(HelloError::NotTls));
        r.reset();
        assert_eq!(r.consumed(), 0);
        let stream = records(&hello(&[sni_ext(&[b"Second.Example"])]), &[7]);
        let info = r.feed(&stream).unwrap().unwrap();
        assert_eq!(info.sni(), Some("second.example"));
        assert_eq!(r.consumed(), stream.len());
        r.reset();
        assert_eq!(
            r.feed(&rfc_stream()).unwrap().unwrap().sni(),
            Some("server")
        );
        assert_eq!(HelloReader::default().consumed(), 0);
    }

    #[test]
    fn alert_records() {
        assert_eq!(
            alert(AlertDescription::AccessDenied),
            [21, 3, 3, 0, 2, 2, 49]
        );
        assert_eq!(
            alert(AlertDescription::UnrecognizedName),
            [21, 3, 3, 0, 2, 2, 112]
        );
        assert_eq!(
            alert(AlertDescription::InternalError),
            [21, 3, 3, 0, 2, 2, 80]
        );
    }

    #[test]
    fn errors_read_as_plain_words() {
        let e = HelloError::Malformed("ends inside cipher_suites");
        assert_eq!(
            e.to_string(),
            "malformed ClientHello: ends inside cipher_suites"
        );
        assert!(HelloError::TooLarge.to_string().contains("16384"));
        assert!(HelloError::BadSni("x").to_string().contains("server name"));
        let _: &dyn std::error::Error = &HelloError::NotTls;
        let info = parse_client_hello(&rfc_msg()).unwrap().unwrap();
        let dbg = format!("{info:?}");
        assert!(
            dbg.contains("\"server\"") && dbg.contains("0x0303"),
            "{dbg}"
        );
    }

    #[test]
    fn fuzz_entry_accepts_seeds() {
        fuzz_hello(&[]);
        fuzz_hello(&[0]);
        for cut in [0, 1, 77, 128, 254, 255] {
            fuzz_hello(&[&[cut][..], &rfc_stream()].concat());
            fuzz_hello(&[&[cut][..], b"GET / HTTP/1.1\r\n"].concat());
            fuzz_hello(&[&[cut][..], &records(&rfc_msg(), &[5, 60])].concat());
        }
    }

    /// Labels for the generator: mixed case, digits, hyphen, underscore.
    fn label() -> impl Strategy<Value = Vec<u8>> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        prop::collection::vec(prop::sample::select(ALPHABET), 1..=20)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
            fuzz_hello(&data);
            let _ = parse_client_hello(&data);
        }

        #[test]
        fn arbitrary_payload_behind_a_valid_header_never_panics(
            cut in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            let len = body.len() + 4;
            let mut stream = vec![cut, 0x16, 3, 1, (len >> 8) as u8, len as u8, 1, 0];
            stream.extend(u16be(body.len()));
            stream.extend(&body);
            fuzz_hello(&stream);
        }

        #[test]
        fn a_mutated_hello_never_panics(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<u8>(),
        ) {
            let mut stream = records(&rfc_msg(), &[50]);
            let i = at.index(stream.len());
            stream[i] = byte;
            fuzz_hello(&[&[cut][..], &stream].concat());
        }

        #[test]
        fn generated_hellos_parse_back(
            labels in prop::collection::vec(label(), 1..5),
            tld in prop::collection::vec(prop::sample::select(&b"abcdefghijklmnopqrstuvwxyzXYZ"[..]), 1..8),
            with_sni in any::<bool>(),
            extra in prop::collection::vec(
                (any::<u16>(), prop::collection::vec(any::<u8>(), 0..48)), 0..8),
            sni_pos in any::<prop::sample::Index>(),
            session_id in prop::collection::vec(any::<u8>(), 0..=32),
            record_sizes in prop::collection::vec(1usize..300, 1..6),
            chunks in prop::collection::vec(1usize..120, 1..6),
        ) {
            let mut name = labels.join(&b'.');
            name.push(b'.');
            name.extend(&tld);
            let mut exts: Vec<Vec<u8>> = Vec::new();
            let mut used = vec![EXT_SERVER_NAME, EXT_ALPN, EXT_PRE_SHARED_KEY, EXT_ECH];
            for (ty, data) in &extra {
                if !used.contains(ty) {
                    used.push(*ty);
                    exts.push(ext(*ty, data));
                }
            }
            if with_sni {
                let pos = sni_pos.index(exts.len() + 1);
                exts.insert(pos, sni_ext(&[&name]));
            }
            let msg = hello_with(&session_id, &exts);
            let want = with_sni.then(|| String::from_utf8(name.to_ascii_lowercase()).unwrap());

            let bare = parse_client_hello(&msg).unwrap().unwrap();
            prop_assert_eq!(bare.sni().map(str::to_owned), want.clone());

            let stream = records(&msg, &record_sizes);
            let mut r = HelloReader::new();
            let mut got = None;
            let mut rest = &stream[..];
            let mut i = 0;
            while got.is_none() && !rest.is_empty() {
                let n = chunks[i % chunks.len()].min(rest.len());
                i += 1;
                got = r.feed(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            prop_assert_eq!(r.consumed(), stream.len());
            prop_assert_eq!(got, Some(bare));
        }
    }
}
