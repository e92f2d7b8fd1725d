//! Frames and messages of `dragnet-rules/1` (the layout is in the [module docs](super)).
//!
//! A frame is a 12-byte prefix (header length u32 BE, payload length u64 BE), a JSON header and a
//! raw payload. JSON for the header because it is small, self-describing and easy to read in a
//! packet capture; raw bytes for the payload because snapshots are large binary images that JSON
//! would inflate. Encoding is pure ([`encode_head`]); decoding is pure for the prefix and header
//! ([`decode_prefix`], [`decode_header`]) and one async reader ([`read_frame`]) applies the
//! limits and deadlines around them. The peer's lengths are never trusted: both are checked
//! against [`Limits`] before a byte of the body is read, and the payload buffer is reserved, not
//! committed: its pages are backed as bytes arrive, so a lying prefix cannot make us use 256 MiB.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The ALPN token (RFC 7301) that selects this protocol in the TLS handshake.
pub const ALPN: &[u8] = b"dragnet-rules/1";
/// The fixed prefix: header length (u32 BE) and payload length (u64 BE).
pub const PREFIX_LEN: usize = 12;
/// Largest JSON header accepted (an offer's `.sig` text and a rollback order fit easily).
pub const MAX_HEADER: u32 = 64 * 1024;
/// Largest payload accepted: a 10⁷-entry snapshot with room to spare.
pub const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;

/// Size limits and deadlines for reading frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_header: u32,
    pub max_payload: u64,
    /// The whole frame (after its first byte) must arrive within this.
    pub frame_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: MAX_HEADER,
            max_payload: MAX_PAYLOAD,
            // 256 MiB at a slow 4 MB/s; a stalled peer is cut off long before a healthy one is.
            frame_timeout: Duration::from_secs(120),
        }
    }
}

/// What an offer carries in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// The whole snapshot.
    Full,
    /// A [`super::delta`] against `base_sha256`.
    Delta,
}

impl OfferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferKind::Full => "full",
            OfferKind::Delta => "delta",
        }
    }
}

/// Every message of the protocol (the JSON header's `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Gateway → server, first on a subscription stream: who it is and what it runs.
    Hello {
        name: String,
        version: u64,
        /// Hex SHA-256 of the running snapshot, when known.
        sha256: Option<String>,
    },
    /// Server → gateway: install this (payload: snapshot or delta).
    Offer {
        version: u64,
        /// Hex SHA-256 of the snapshot (after applying the delta).
        sha256: String,
        kind: OfferKind,
        /// For a delta: hex SHA-256 of the snapshot it applies to.
        base_sha256: Option<String>,
        /// The snapshot's detached `.sig` text (verified by the gateway, not the server).
        sig: String,
        /// An opaque rollback order (hex), verified by the gateway.
        rollback: Option<String>,
    },
    /// Gateway → server: installed; now running `version`.
    Ack { version: u64, sha256: String },
    /// Gateway → server: refused `sha256`, with the reason; `want_full`: a delta could not be
    /// applied, send the whole snapshot.
    Nack {
        sha256: String,
        error: String,
        want_full: bool,
    },
    /// Maintainer → server: store and offer this snapshot (payload); `rollback` (hex) marks an
    /// operator's rollback to an older version.
    Publish {
        sig: String,
        rollback: Option<String>,
    },
    /// Server → maintainer: stored and offered.
    Published {
        version: u64,
        sha256: String,
        size: u64,
        /// Gateways connected when it was offered.
        online: usize,
        rollback: bool,
    },
    /// Maintainer → server: send the fleet table.
    FleetRequest,
    /// Server → maintainer: the fleet table (payload: JSON array of gateway status).
    Fleet,
    /// Either way: the request failed; why.
    Error { message: String },
}

impl Message {
    /// The `type` as it appears on the wire (for errors and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Offer { .. } => "offer",
            Message::Ack { .. } => "ack",
            Message::Nack { .. } => "nack",
            Message::Publish { .. } => "publish",
            Message::Published { .. } => "published",
            Message::FleetRequest => "fleet_request",
            Message::Fleet => "fleet",
            Message::Error { .. } => "error",
        }
    }

    /// Whether this message may carry a payload (all others must announce 0 bytes).
    pub fn carries_payload(&self) -> bool {
        matches!(
            self,
            Message::Offer { .. } | Message::Publish { .. } | Message::Fleet
        )
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// The header length in the prefix is 0 or over the limit.
    HeaderTooLarge { len: u32, max: u32 },
    /// The payload length in the prefix is over the limit.
    PayloadTooLarge { len: u64, max: u64 },
    /// The stream ended inside a frame.
    Truncated {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    /// The stream ended cleanly before a frame began.
    Closed,
    /// The header is not JSON of a known message; names the type when it has one.
    BadHeader { reason: String },
    /// A message type this version does not know.
    Unknown { kind: String },
    /// A message that must not carry a payload announced one.
    UnexpectedPayload { kind: &'static str, len: u64 },
    /// A message that makes no sense at this point of the exchange.
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    /// The peer did not send (or accept) the frame in time.
    Timeout { what: &'static str, after: Duration },
    /// The stream failed underneath (reset, connection lost).
    Io(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::HeaderTooLarge { len, max } => write!(
                f,
                "a frame announces a {len}-byte header; 1 to {max} bytes are accepted"
            ),
            ProtoError::PayloadTooLarge { len, max } => write!(
                f,
                "a frame announces a {len}-byte payload; at most {max} bytes are accepted"
            ),
            ProtoError::Truncated {
                what,
                expected,
                found,
            } => write!(
                f,
                "the stream ended inside a frame: {what} announced {expected} bytes, {found} arrived"
            ),
            ProtoError::Closed => f.write_str("the peer closed the stream"),
            ProtoError::BadHeader { reason } => {
                write!(f, "a frame header is not a valid message: {reason}")
            }
            ProtoError::Unknown { kind } => write!(
                f,
                "unknown message type {kind:?} (is the peer a newer or another protocol version?)"
            ),
            ProtoError::UnexpectedPayload { kind, len } => {
                write!(f, "a {kind} message must not carry a payload, but announced {len} bytes")
            }
            ProtoError::Unexpected { got, expected } => {
                write!(f, "received {got} where {expected} was expected")
            }
            ProtoError::Timeout { what, after } => {
                write!(f, "{what} did not complete within {after:?}")
            }
            ProtoError::Io(r) => write!(f, "stream failed: {r}"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// The prefix and JSON header of a frame whose payload (`payload_len` bytes) follows.
pub fn encode_head(msg: &Message, payload_len: u64) -> Result<Vec<u8>, ProtoError> {
    let json = serde_json::to_vec(msg).map_err(|e| ProtoError::BadHeader {
        reason: e.to_string(),
    })?;
    let hl = u32::try_from(json.len())
        .ok()
        .filter(|&l| l <= MAX_HEADER)
        .ok_or(ProtoError::HeaderTooLarge {
            len: u32::try_from(json.len()).unwrap_or(u32::MAX),
            max: MAX_HEADER,
        })?;
    if payload_len > MAX_PAYLOAD {
        return Err(ProtoError::PayloadTooLarge {
            len: payload_len,
            max: MAX_PAYLOAD,
        });
    }
    if payload_len > 0 && !msg.carries_payload() {
        return Err(ProtoError::UnexpectedPayload {
            kind: msg.kind(),
            len: payload_len,
        });
    }
    let mut v = Vec::with_capacity(PREFIX_LEN + json.len());
    v.extend_from_slice(&hl.to_be_bytes());
    v.extend_from_slice(&payload_len.to_be_bytes());
    v.extend_from_slice(&json);
    Ok(v)
}

/// A whole frame in one buffer (tests, small messages).
pub fn encode(msg: &Message, payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut v = encode_head(msg, payload.len() as u64)?;
    v.extend_from_slice(payload);
    Ok(v)
}

/// Checks a prefix against the limits: (header length, payload length).
pub fn decode_prefix(p: &[u8; PREFIX_LEN], limits: &Limits) -> Result<(u32, u64), ProtoError> {
    let hl = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let pl = u64::from_be_bytes([p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]]);
    if hl == 0 || hl > limits.max_header {
        return Err(ProtoError::HeaderTooLarge {
            len: hl,
            max: limits.max_header,
        });
    }
    if pl > limits.max_payload {
        return Err(ProtoError::PayloadTooLarge {
            len: pl,
            max: limits.max_payload,
        });
    }
    Ok((hl, pl))
}

/// Parses a JSON header; an unknown `type` is [`ProtoError::Unknown`], anything else that does not
/// parse is [`ProtoError::BadHeader`].
pub fn decode_header(h: &[u8]) -> Result<Message, ProtoError> {
    match serde_json::from_slice::<Message>(h) {
        Ok(m) => Ok(m),
        Err(e) => {
            // Tell "a message we do not know" apart from "not a message at all".
            #[derive(Deserialize)]
            struct Tagged {
                #[serde(rename = "type")]
                kind: String,
            }
            if let Ok(t) = serde_json::from_slice::<Tagged>(h) {
                if !KNOWN.contains(&t.kind.as_str()) {
                    let kind: String = t.kind.chars().take(64).collect();
                    return Err(ProtoError::Unknown { kind });
                }
            }
            Err(ProtoError::BadHeader {
                reason: e.to_string(),
            })
        }
    }
}

const KNOWN: [&str; 9] = [
    "hello",
    "offer",
    "ack",
    "nack",
    "publish",
    "published",
    "fleet_request",
    "fleet",
    "error",
];

fn io(e: &std::io::Error) -> ProtoError {
    ProtoError::Io(e.to_string())
}

/// Reads exactly `buf.len()` bytes; a clean end of stream is `Truncated` (naming `what`).
async fn read_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), ProtoError> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await.map_err(|e| io(&e))?;
        if n == 0 {
            return Err(ProtoError::Truncated {
                what,
                expected: buf.len() as u64,
                found: got as u64,
            });
        }
        got += n;
    }
    Ok(())
}

/// Reads one frame. `wait`: how long to wait for its first byte (None: as long as the stream
/// lives, for a subscriber waiting for the next offer); the rest must arrive within
/// `limits.frame_timeout`. A stream that ends before the first byte is [`ProtoError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: &Limits,
    wait: Option<Duration>,
) -> Result<(Message, Vec<u8>), ProtoError> {
    let mut first = [0u8; 1];
    let n = match wait {
        Some(d) => tokio::time::timeout(d, r.read(&mut first))
            .await
            .map_err(|_| ProtoError::Timeout {
                what: "waiting for a message",
                after: d,
            })?,
        None => r.read(&mut first).await,
    }
    .map_err(|e| io(&e))?;
    if n == 0 {
        return Err(ProtoError::Closed);
    }
    tokio::time::timeout(limits.frame_timeout, read_rest(r, first[0], limits))
        .await
        .map_err(|_| ProtoError::Timeout {
            what: "receiving a frame",
            after: limits.frame_timeout,
        })?
}

async fn read_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    first: u8,
    limits: &Limits,
) -> Result<(Message, Vec<u8>), ProtoError> {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[0] = first;
    read_exact(r, &mut prefix[1..], "the frame prefix").await?;
    let (hl, pl) = decode_prefix(&prefix, limits)?;
    let mut header = vec![0u8; hl as usize];
    read_exact(r, &mut header, "the header").await?;
    let msg = decode_header(&header)?;
    if pl > 0 && !msg.carries_payload() {
        return Err(ProtoError::UnexpectedPayload {
            kind: msg.kind(),
            len: pl,
        });
    }
    // One allocation of the declared length (already checked against the limit): growing the
    // buffer as bytes arrive copied a 21.7 MB snapshot four times and faulted in every copy.
    // Reserving is not committing: a page is backed only when a received byte is written to it,
    // so a prefix that lies about the length still costs only what actually arrives. Where the
    // kernel does count reservations (vm.overcommit_memory=2), a refused one is this frame's
    // error, not an abort of the process.
    let len = usize::try_from(pl).map_err(|_| ProtoError::PayloadTooLarge {
        len: pl,
        max: limits.max_payload,
    })?;
    let mut payload = Vec::new();
    payload
        .try_reserve_exact(len)
        .map_err(|e| ProtoError::Io(format!("cannot reserve {len} bytes for the payload: {e}")))?;
    while payload.len() < len {
        let n = (&mut *r)
            .take((len - payload.len()) as u64)
            .read_buf(&mut payload)
            .await
            .map_err(|e| io(&e))?;
        if n == 0 {
            return Err(ProtoError::Truncated {
                what: "the payload",
                expected: pl,
                found: payload.len() as u64,
            });
        }
    }
    Ok((msg, payload))
}

/// Writes one frame within `timeout` (a peer that stops reading cannot hold the writer forever).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), ProtoError> {
    let head = encode_head(msg, payload.len() as u64)?;
    sending(timeout, async {
        w.write_all(&head).await?;
        w.write_all(payload).await?;
        w.flush().await
    })
    .await
}

/// A frame's writes, bounded by `timeout`, their errors as [`ProtoError`].
async fn sending(
    timeout: Duration,
    writes: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), ProtoError> {
    tokio::time::timeout(timeout, writes)
        .await
        .map_err(|_| ProtoError::Timeout {
            what: "sending a frame",
            after: timeout,
        })?
        .map_err(|e| io(&e))
}

/// [`write_frame`] for a payload shared between many streams (a snapshot offered to a fleet):
/// quinn frames slices of `payload` straight from the shared buffer, where `write_all` would
/// copy it into every connection's send buffer — 100 gateways × 21.7 MB of copies and page
/// faults that cost more than the encryption.
pub async fn write_frame_shared(
    w: &mut quinn::SendStream,
    msg: &Message,
    payload: bytes::Bytes,
    timeout: Duration,
) -> Result<(), ProtoError> {
    let head = encode_head(msg, payload.len() as u64)?;
    sending(timeout, async {
        w.write_all(&head).await?;
        if !payload.is_empty() {
            w.write_chunk(payload).await.map_err(std::io::Error::from)?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Replays the `control_frame` fuzz target's logic over its corpus
    /// (`fuzz/corpus/control_frame/`), so CI keeps every seed and found crash fixed.
    #[tokio::test]
    async fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_frame");
        let l = Limits {
            max_header: 4096,
            max_payload: 1 << 16,
            frame_timeout: Duration::from_secs(5),
        };
        let (mut n, mut frames) = (0, 0);
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            let mut r = &data[..];
            if let Ok((msg, payload)) = read_frame(&mut r, &l, None).await {
                assert!(payload.len() as u64 <= l.max_payload);
                assert!(payload.is_empty() || msg.carries_payload());
                frames += 1;
            }
            if let Ok(msg) = decode_header(&data) {
                let head = encode_head(&msg, 0).unwrap();
                assert_eq!(decode_header(&head[PREFIX_LEN..]).unwrap(), msg);
            }
            n += 1;
        }
        assert!(n >= 10, "the control_frame corpus holds {n} inputs");
        assert!(frames >= 5, "only {frames} corpus inputs are whole frames");
    }

    fn limits() -> Limits {
        Limits {
            max_header: 1024,
            max_payload: 4096,
            frame_timeout: Duration::from_secs(5),
        }
    }

    fn offer() -> Message {
        Message::Offer {
            version: 3,
            sha256: "ab".repeat(32),
            kind: OfferKind::Delta,
            base_sha256: Some("cd".repeat(32)),
            sig: "dragnet-snapshot-signature v1\n".into(),
            rollback: None,
        }
    }

    async fn read(bytes: &[u8]) -> Result<(Message, Vec<u8>), ProtoError> {
        let mut r = bytes;
        read_frame(&mut r, &limits(), Some(Duration::from_secs(5))).await
    }

    #[tokio::test]
    async fn frames_round_trip() {
        for (m, p) in [
            (offer(), b"payload".to_vec()),
            (
                Message::Hello {
                    name: "gw-1".into(),
                    version: 0,
                    sha256: None,
                },
                vec![],
            ),
            (Message::FleetRequest, vec![]),
            (Message::Fleet, b"[]".to_vec()),
        ] {
            let f = encode(&m, &p).unwrap();
            assert_eq!(read(&f).await.unwrap(), (m, p));
        }
        // Two frames back to back on one stream.
        let mut two = encode(&Message::FleetRequest, &[]).unwrap();
        two.extend(encode(&offer(), b"x").unwrap());
        let mut r = &two[..];
        let l = limits();
        assert_eq!(
            read_frame(&mut r, &l, None).await.unwrap().0,
            Message::FleetRequest
        );
        assert_eq!(read_frame(&mut r, &l, None).await.unwrap().1, b"x");
        assert_eq!(read_frame(&mut r, &l, None).await, Err(ProtoError::Closed));
    }

    #[tokio::test]
    async fn size_limits_are_checked_before_reading() {
        // A payload over the limit: refused from the prefix alone (no body follows here).
        let mut f = 10u32.to_be_bytes().to_vec();
        f.extend_from_slice(&4097u64.to_be_bytes());
        assert_eq!(
            read(&f).await,
            Err(ProtoError::PayloadTooLarge {
                len: 4097,
                max: 4096
            })
        );
        let mut f = 1025u32.to_be_bytes().to_vec();
        f.extend_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            read(&f).await,
            Err(ProtoError::HeaderTooLarge { len: 1025, .. })
        ));
        let mut f = 0u32.to_be_bytes().to_vec();
        f.extend_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            read(&f).await,
            Err(ProtoError::HeaderTooLarge { len: 0, .. })
        ));
        // u64::MAX does not overflow anything.
        let mut f = 2u32.to_be_bytes().to_vec();
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            read(&f).await,
            Err(ProtoError::PayloadTooLarge { .. })
        ));
        // The encoder refuses what a reader with default limits would refuse.
        assert!(matches!(
            encode_head(&offer(), MAX_PAYLOAD + 1),
            Err(ProtoError::PayloadTooLarge { .. })
        ));
        let huge = Message::Error {
            message: "x".repeat(MAX_HEADER as usize),
        };
        assert!(matches!(
            encode_head(&huge, 0),
            Err(ProtoError::HeaderTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors_at_every_cut() {
        let f = encode(&offer(), b"some payload bytes").unwrap();
        for cut in 1..f.len() {
            let e = read(&f[..cut]).await.unwrap_err();
            assert!(
                matches!(e, ProtoError::Truncated { .. }),
                "cut at {cut}: {e}"
            );
        }
        assert_eq!(read(&[]).await, Err(ProtoError::Closed));
    }

    #[tokio::test]
    async fn unknown_and_malformed_messages_are_errors() {
        let frame = |h: &[u8], pl: u64| {
            let mut f = (h.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&pl.to_be_bytes());
            f.extend_from_slice(h);
            f
        };
        assert_eq!(
            read(&frame(br#"{"type":"teleport"}"#, 0)).await,
            Err(ProtoError::Unknown {
                kind: "teleport".into()
            })
        );
        for bad in [
            &b"not json"[..],
            br#"{"no":"type"}"#,
            br#"{"type":"ack"}"#,
            br#"{"type":"ack","version":1,"sha256":"x","extra":1}"#,
            br#"{"type":"hello","name":7,"version":1,"sha256":null}"#,
            b"\xff\xfe",
        ] {
            let e = read(&frame(bad, 0)).await.unwrap_err();
            assert!(matches!(e, ProtoError::BadHeader { .. }), "{bad:?}: {e}");
        }
        // An ack may not carry a payload.
        let mut f = frame(br#"{"type":"ack","version":1,"sha256":"x"}"#, 3);
        f.extend_from_slice(b"abc");
        assert!(matches!(
            read(&f).await,
            Err(ProtoError::UnexpectedPayload {
                kind: "ack",
                len: 3
            })
        ));
        assert!(encode(&Message::FleetRequest, b"x").is_err());
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (mut a, _b) = tokio::io::duplex(64);
        let e = read_frame(&mut a, &limits(), Some(Duration::from_millis(10)))
            .await
            .unwrap_err();
        assert!(matches!(e, ProtoError::Timeout { .. }), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let _ = rt.block_on(read(&bytes));
        }
    }
}
