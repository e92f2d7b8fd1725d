//! Sans-IO SIP codec for the gateway's SIP plane.
//!
//! **Contract.** [`parse`] indexes one message (a UDP datagram, or a stream message cut out by
//! [`frame`]) in a single pass and returns a [`Message`] that borrows the buffer; structured
//! values (Via, From/To, Route, P-Asserted-Identity, URIs) are parsed lazily when asked for.
//! The splicing functions ([`forward_request`], [`forward_response`], [`local_response`])
//! build outgoing messages by copying byte ranges of the received one plus the few lines a
//! stateless proxy must change (RFC 3261 §16.6, §16.7, §16.11, §8.2.6).
//!
//! **Never.** No sockets, no clock, no global state, no `unsafe`, no panic on any input, no
//! allocation while parsing (results are slices of the packet; the header index is a fixed
//! array of [`MAX_HEADERS`] entries). Splicing only appends to the caller's `Vec<u8>`. It never
//! rewrites what it does not own: unknown headers, parameters, methods and bodies pass as is.
//!
//! **Cost model.** `parse` is O(n) in the message size with one extra pass over the handful of
//! headers it validates (Content-Length, Max-Forwards, CSeq, Call-ID, top Via, From, To); the
//! message is capped at [`MAX_MESSAGE`] bytes. `headers(name)` is a linear scan of the index
//! (≤ 96 entries). Splicing is one copy of the message. Branch and To-tag derivation is one
//! SHA-256 over a few dozen bytes.
//!
//! **What a malformed message becomes.** Every refusal is a [`ParseError`] whose `Display`
//! names the part that was wrong, fit for a `400` reason phrase or `Warning` header
//! (RFC 3261 §21.4.1); RFC 4475 §3.1.2 and RFC 5118 guided what is refused. The version is
//! parsed, not refused: [`Kind::version_supported`] false means 505 (RFC 3261 §8.2.1).
//!
//! Standards: RFC 3261 (§7 messages, §16 proxies, §18 transport, §20 headers, §25 grammar),
//! RFC 3581 (rport), RFC 5626 §3.5.1 (CRLF keep-alive), RFC 3325 (P-Asserted-Identity),
//! RFC 3966 (tel URI). The RFC 4475 and RFC 5118 torture messages are test vectors (`torture.rs`,
//! replayed from the fuzz corpus too).

use std::fmt;

mod header;
mod message;
mod scan;
mod splice;
mod stream;
mod uri;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod torture;

pub use header::{parse_name_addr, parse_via, NameAddr, Via, MAGIC_COOKIE};
pub use message::{parse, same_header, HeaderValue, Kind, Message, MAX_HEADERS, MAX_MESSAGE};
pub use scan::{CommaList, Param, Params, Unfold};
pub use splice::{
    forward_request, forward_response, local_response, stateless_branch, to_tag_for, NextHop,
    ViaSpec,
};
pub use stream::{frame, frame_len, Frame};
pub use uri::{parse_uri, Host, SipUri, TelUri, Uri};

/// Why a message (or URI) was refused. Each variant says what was wrong in words a carrier's
/// engineer can act on; the SIP plane answers 400 with it when it can route a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The buffer was empty.
    Empty,
    /// The message exceeds [`MAX_MESSAGE`] bytes.
    TooLarge,
    /// The header block does not end with an empty line (RFC 3261 §7).
    NoHeaderEnd,
    /// The request or status line is malformed (RFC 3261 §7.1, §7.2).
    BadStartLine(&'static str),
    /// The Request-URI is not a valid URI (RFC 3261 §25.1 `Request-URI`).
    BadRequestUri,
    /// A header line is malformed (RFC 3261 §7.3).
    BadHeaderLine(&'static str),
    /// More header lines than [`MAX_HEADERS`].
    TooManyHeaders,
    /// Content-Length is not a number, is repeated with different values, or is larger
    /// than the bytes received (RFC 3261 §18.3, §20.14).
    BadContentLength,
    /// A stream message has no Content-Length (RFC 3261 §18.3).
    MissingContentLength,
    /// A mandatory header is absent (RFC 3261 §8.1.1).
    MissingHeader(&'static str),
    /// A header the proxy needs has a malformed value.
    BadHeader {
        name: &'static str,
        reason: &'static str,
    },
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    CseqMismatch,
    /// A URI is malformed (RFC 3261 §19.1, §25.1).
    BadUri(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty message"),
            ParseError::TooLarge => write!(f, "message larger than {MAX_MESSAGE} bytes"),
            ParseError::NoHeaderEnd => {
                f.write_str("headers not terminated by an empty line (message truncated?)")
            }
            ParseError::BadStartLine(why) => write!(f, "malformed start line: {why}"),
            ParseError::BadRequestUri => f.write_str("malformed Request-URI"),
            ParseError::BadHeaderLine(why) => write!(f, "malformed header line: {why}"),
            ParseError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header lines"),
            ParseError::BadContentLength => f.write_str(
                "Content-Length is not a number, conflicts with another, or exceeds the bytes received",
            ),
            ParseError::MissingContentLength => {
                f.write_str("Content-Length missing (mandatory on stream transports)")
            }
            ParseError::MissingHeader(name) => write!(f, "mandatory header {name} missing"),
            ParseError::BadHeader { name, reason } => write!(f, "malformed {name} header: {reason}"),
            ParseError::CseqMismatch => f.write_str("CSeq method does not match the request method"),
            ParseError::BadUri(why) => write!(f, "malformed URI: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why an outgoing message could not be built. Responses that fail here are dropped
/// (RFC 3261 §16.7 step 3, §18.2.2); requests get a local answer chosen by the plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpliceError {
    /// A request was expected.
    NotARequest,
    /// A response was expected.
    NotAResponse,
    /// Max-Forwards is 0: answer 483 Too Many Hops instead (RFC 3261 §16.3 step 3).
    MaxForwardsExhausted,
    /// The top Via of a response is not ours (RFC 3261 §16.7 step 3): drop it.
    ViaNotOurs,
    /// The response has no Via below ours (RFC 3261 §16.7 step 3): drop it.
    NoNextVia,
    /// The next Via's host, received or port is unusable (RFC 3581 §4): drop it.
    BadNextVia,
    /// Our own Via settings are invalid (configuration error).
    BadViaSpec,
    /// A header or reason phrase to add holds CR, LF or NUL, or its name is not a token.
    BadAddedHeader,
    /// A status code outside 100-699.
    BadStatus,
    /// The message could not be read where the splice needed it.
    Parse(ParseError),
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpliceError::NotARequest => f.write_str("expected a request, got a response"),
            SpliceError::NotAResponse => f.write_str("expected a response, got a request"),
            SpliceError::MaxForwardsExhausted => {
                f.write_str("Max-Forwards is 0: answer 483 Too Many Hops, do not forward")
            }
            SpliceError::ViaNotOurs => {
                f.write_str("the response's top Via is not this gateway's: dropped")
            }
            SpliceError::NoNextVia => f.write_str("the response has no Via below ours: dropped"),
            SpliceError::BadNextVia => {
                f.write_str("the next Via has no usable host, received or port: dropped")
            }
            SpliceError::BadViaSpec => {
                f.write_str("our own Via host, transport or branch is invalid")
            }
            SpliceError::BadAddedHeader => f.write_str(
                "a header, tag or reason phrase to add contains CR, LF or NUL, or a bad name",
            ),
            SpliceError::BadStatus => f.write_str("status code outside 100-699"),
            SpliceError::Parse(e) => write!(f, "cannot read the message: {e}"),
        }
    }
}

impl std::error::Error for SpliceError {}

/// Fuzz entry point (`fuzz/fuzz_targets/sip_parse.rs`, replayed by `gateway/tests/fuzz_corpus.rs`):
/// arbitrary bytes through every parser and splice; whatever parses must splice into something
/// that parses again.
pub fn fuzz_parse(data: &[u8]) {
    let _ = frame_len(data);
    let _ = parse_uri(data);
    let Ok(m) = parse(data) else { return };
    let _ = (
        m.top_via(),
        m.from(),
        m.to(),
        m.p_asserted_identity(),
        m.privacy_id(),
    );
    for v in m.vias() {
        let _ = v;
    }
    for r in m.routes() {
        let _ = r;
    }
    let secret = [7u8; 32];
    let branch = stateless_branch(&m, &secret);
    let mut out = Vec::new();
    if m.is_request() {
        let spec = ViaSpec {
            transport: "UDP",
            host: "192.0.2.1",
            port: 5060,
            branch: &branch,
            rport: true,
            stream: false,
        };
        if forward_request(&m, &mut out, &spec, &[("X-Fraud-Category", "fuzz")]).is_ok() {
            assert!(parse(&out).is_ok(), "a forwarded request does not parse");
        }
        out.clear();
        let tag = to_tag_for(&m, &secret);
        if local_response(&m, 608, "Rejected", &tag, &[], &mut out).is_ok() {
            assert!(parse(&out).is_ok(), "a local response does not parse");
        }
    } else {
        let _ = forward_response(&m, &mut out, b"192.0.2.1:5060");
    }
}
