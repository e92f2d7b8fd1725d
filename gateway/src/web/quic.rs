//! Sans-IO reader of the server name in a QUIC client's Initial packets, for the web plane.
//!
//! **Contract.** A QUIC (HTTP/3) client opens with Initial packets whose protection keys
//! anyone can derive from the client's Destination Connection ID and a public per-version salt
//! (RFC 9001 §5.2; RFC 9369 §3.3 for QUIC v2). [`InitialSniffer::feed`] takes the flow's
//! client→server UDP datagrams one by one, removes header protection, decrypts each Initial
//! packet, walks its frames, reassembles the CRYPTO stream in [`CryptoAssembler`] and hands the
//! contiguous prefix to [`super::tls::parse_client_hello`]; once the ClientHello is complete it
//! returns its [`HelloInfo`] (SNI, ECH) exactly once. [`peek_initial`] reads the unprotected
//! part of a long header without keys, for a relay that only wants to classify a datagram.
//!
//! **Never.** No sockets, no clock, no global state, no `unsafe`, no panic on any input (fuzzed:
//! [`fuzz_initial`]), no allocation: each Initial is copied into a fixed scratch array inside
//! the sniffer and decrypted there (the datagram stays untouched, so the relay forwards the
//! original bytes), CRYPTO data goes into a fixed [`MAX_HELLO`]-byte array.
//!
//! **Seeing what the server sees.** The verdict must be about the ClientHello the server will
//! read, so the sniffer drops what a server drops: datagrams under 1200 bytes (RFC 9000 §14.1),
//! packets that fail authentication (RFC 9001 §5.3) and coalesced packets with another
//! connection ID (RFC 9000 §12.2). CRYPTO bytes sent twice must agree, or the flow is reported
//! [`QuicError::Malformed`] instead of trusting either copy. The flow is bound to the version
//! and original Destination Connection ID of its first Initial that decrypts; an Initial with
//! another one on the same flow — a new connection attempt, or the client's answer to a Retry
//! (RFC 9000 §17.2.5.2) — is reported as [`QuicError::Malformed`] even after the ClientHello
//! was reported, so a relay that wants to follow it calls [`InitialSniffer::reset`] and feeds
//! the datagram again. Only the first ClientHello is read (not a second one sent after a TLS
//! HelloRetryRequest).
//!
//! **Cost model.** Per flow: one key derivation (HKDF-SHA256, two AES key schedules) and about
//! 20 KiB of state. Per Initial packet: one copy of at most [`MAX_INITIAL_PACKET`] bytes, one
//! AES block for the header-protection mask, AES-128-GCM over the packet, two passes over its
//! frames (check, then apply) and one comparison per CRYPTO byte; one ClientHello parse per
//! datagram that grows the contiguous prefix.
//!
//! Standards: RFC 9000 (§12.2 coalescing, §12.4–12.5 frames and packet number spaces, §14.1
//! datagram size, §16 variable-length integers, §17.2 long header, §17.2.2 Initial, §19
//! frames, Appendix A.3 packet number decoding), RFC 9001 (§5.2 Initial secrets, §5.3 AEAD,
//! §5.4 header protection, Appendix A test vectors), RFC 9369 (QUIC v2: version, packet
//! types, salt, labels), RFC 8446 §7.1 (HKDF-Expand-Label).

use std::fmt;

use ring::{aead, hkdf};

use super::tls::{parse_client_hello, HelloError, HelloInfo, MAX_HELLO};

/// RFC 9000 §15: the version number of QUIC v1.
pub const QUIC_V1: u32 = 0x0000_0001;
/// RFC 9369 §3.1: the version number of QUIC v2.
pub const QUIC_V2: u32 = 0x6b33_43cf;
/// RFC 9000 §17.2: a version 1 (and 2) connection ID is at most 20 bytes.
pub const MAX_CID_LEN: usize = 20;
/// RFC 9000 §14.1: a server discards a client datagram carrying an Initial packet whose UDP
/// payload is shorter than this, so the sniffer does too.
pub const MIN_INITIAL_DATAGRAM: usize = 1200;
/// The largest Initial packet the sniffer decrypts: the scratch array it is copied into. A
/// 1500-byte Ethernet MTU carries at most 1472 bytes of UDP payload and clients start at
/// 1200–1350; a larger Initial (jumbo-frame paths) is reported as [`QuicError::Malformed`].
pub const MAX_INITIAL_PACKET: usize = 1500;

/// RFC 9001 §5.2: the v1 Initial salt.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1: the v2 Initial salt.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// RFC 9000 §16: the largest value a variable-length integer can carry.
const VARINT_MAX: u64 = (1 << 62) - 1;
/// RFC 9001 §5.3: AEAD_AES_128_GCM's tag.
const TAG_LEN: usize = 16;
/// RFC 9001 §5.4.3: AES-based header protection samples 16 bytes.
const SAMPLE_LEN: usize = 16;

/// The QUIC versions whose Initial packets can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 9000.
    V1,
    /// RFC 9369.
    V2,
}

impl Version {
    /// The version for a long header's Version field; `None` for any other.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            QUIC_V1 => Some(Self::V1),
            QUIC_V2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The Version field value.
    pub fn wire(self) -> u32 {
        match self {
            Self::V1 => QUIC_V1,
            Self::V2 => QUIC_V2,
        }
    }

    /// The long-header type bits of each packet type: RFC 9000 §17.2 (Initial 0, 0-RTT 1,
    /// Handshake 2, Retry 3) and RFC 9369 §3.2 (Initial 1, 0-RTT 2, Handshake 3, Retry 0).
    fn kind(self, type_bits: u8) -> Kind {
        let n = match self {
            Self::V1 => type_bits,
            Self::V2 => type_bits.wrapping_add(3),
        };
        match n & 0x03 {
            0 => Kind::Initial,
            3 => Kind::Retry,
            _ => Kind::Protected,
        }
    }

    fn salt(self) -> &'static [u8; 20] {
        match self {
            Self::V1 => &SALT_V1,
            Self::V2 => &SALT_V2,
        }
    }

    /// RFC 9001 §5.1 and RFC 9369 §3.3.2: the HKDF labels of key, IV and header protection key.
    fn labels(self) -> [&'static [u8]; 3] {
        match self {
            Self::V1 => [b"quic key", b"quic iv", b"quic hp"],
            Self::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initial,
    /// 0-RTT or Handshake: skipped, using their Length field.
    Protected,
    /// Sent by servers only and without a Length field: ends the walk.
    Retry,
}

/// Why a datagram gave no ClientHello information. Malformed traffic is an outcome for the
/// plane to count and act on (forward, drop), not a failure of the gateway.
#[derive(Debug)]
pub enum QuicError {
    /// No Initial packet in the datagram: a short header (1-RTT), a Version Negotiation packet,
    /// or only 0-RTT/Handshake packets.
    NotInitial,
    /// A long header of a version this reader does not know (not v1, not v2).
    UnsupportedVersion(u32),
    /// The datagram breaks RFC 9000/9001 in the way named, or is one a server would discard.
    Malformed(&'static str),
    /// No Initial in the datagram passed authentication with the keys of its connection ID:
    /// corrupted, forged, or sent with keys other than the Initial ones.
    Decrypt,
    /// The reassembled CRYPTO stream is not an acceptable ClientHello.
    Hello(HelloError),
}

impl fmt::Display for QuicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInitial => f.write_str(
                "no QUIC Initial packet in the datagram (short header, Version Negotiation, \
                 or only 0-RTT/Handshake packets)",
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "QUIC version 0x{v:08x} is not supported: only v1 (RFC 9000) and v2 (RFC 9369) \
                 Initial packets can be read"
            ),
            Self::Malformed(what) => write!(f, "malformed QUIC Initial: {what}"),
            Self::Decrypt => f.write_str(
                "QUIC Initial packet failed authentication with the keys of its Destination \
                 Connection ID (corrupted or forged)",
            ),
            Self::Hello(e) => write!(f, "QUIC CRYPTO stream: {e}"),
        }
    }
}

impl std::error::Error for QuicError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Hello(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads big-endian integers and RFC 9000 §16 variable-length integers; every read either
/// stays inside the buffer or fails.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// RFC 9000 §16: the two high bits of the first byte give the length (1, 2, 4, 8 bytes).
    fn varint(&mut self) -> Option<u64> {
        let first = *self.b.get(self.pos)?;
        let len = 1usize << (first >> 6);
        let s = self.take(len)?;
        let mut v = u64::from(first & 0x3f);
        for &b in &s[1..] {
            v = v << 8 | u64::from(b);
        }
        Some(v)
    }

    /// A varint length followed by that many bytes.
    fn skip_len_prefixed(&mut self) -> Option<()> {
        let n = self.varint()?;
        let n = usize::try_from(n).ok()?;
        self.take(n).map(|_| ())
    }
}

/// The unprotected fields of an Initial packet's long header (RFC 9000 §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialHeader {
    /// The packet's QUIC version.
    pub version: Version,
    dcid: [u8; MAX_CID_LEN],
    dcid_len: u8,
    scid: [u8; MAX_CID_LEN],
    scid_len: u8,
    /// Length of the Token (non-zero after a Retry or with a NEW_TOKEN token).
    pub token_len: usize,
    /// Offset of the (protected) Packet Number field from the start of the packet.
    pub pn_offset: usize,
    /// The whole packet: header up to the Packet Number plus the Length field's value. A
    /// coalesced packet (RFC 9000 §12.2) follows at this offset.
    pub packet_len: usize,
}

impl InitialHeader {
    /// The Destination Connection ID: in a client's first Initial the value the keys are
    /// derived from (RFC 9001 §5.2).
    pub fn dcid(&self) -> &[u8] {
        &self.dcid[..usize::from(self.dcid_len)]
    }

    /// The Source Connection ID.
    pub fn scid(&self) -> &[u8] {
        &self.scid[..usize::from(self.scid_len)]
    }
}

/// One long-header packet at the start of a buffer.
enum Packet {
    Initial(InitialHeader),
    /// A 0-RTT, Handshake or Retry packet of this many bytes (the rest of the buffer for a
    /// Retry, which has no Length field).
    Other(usize),
}

/// RFC 9000 §17.2 and §17.2.2: the long header at the start of `d`.
fn parse_packet(d: &[u8]) -> Result<Packet, QuicError> {
    let mut c = Cursor::new(d);
    let Some(first) = c.u8() else {
        return Err(QuicError::NotInitial);
    };
    // §17.2: Header Form 1 = long header; §17.3 short headers (1-RTT) carry no ClientHello.
    // The Fixed Bit is not checked: RFC 9287 lets a client that remembers a server's
    // grease_quic_bit clear it even in Initial packets.
    if first & 0x80 == 0 {
        return Err(QuicError::NotInitial);
    }
    let version = c.u32().ok_or(QuicError::Malformed(
        "long header ends before its Version field",
    ))?;
    if version == 0 {
        // §17.2.1: Version Negotiation, sent by servers.
        return Err(QuicError::NotInitial);
    }
    let version = Version::from_wire(version).ok_or(QuicError::UnsupportedVersion(version))?;
    let mut dcid = [0; MAX_CID_LEN];
    let mut scid = [0; MAX_CID_LEN];
    let dcid_len = read_cid(
        &mut c,
        &mut dcid,
        "long header ends inside the Destination Connection ID",
    )?;
    let scid_len = read_cid(
        &mut c,
        &mut scid,
        "long header ends inside the Source Connection ID",
    )?;
    let kind = version.kind((first >> 4) & 0x03);
    if kind == Kind::Retry {
        return Ok(Packet::Other(d.len()));
    }
    let mut token_len = 0;
    if kind == Kind::Initial {
        let t = c.varint().ok_or(QuicError::Malformed(
            "long header ends inside the Token Length",
        ))?;
        token_len = usize::try_from(t)
            .ok()
            .filter(|&t| t <= c.remaining())
            .ok_or(QuicError::Malformed(
                "Token Length runs past the end of the datagram",
            ))?;
        c.pos += token_len;
    }
    let length = c.varint().ok_or(QuicError::Malformed(
        "long header ends inside the Length field",
    ))?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&l| l <= c.remaining())
        .ok_or(QuicError::Malformed(
            "Length field runs past the end of the datagram",
        ))?;
    let pn_offset = c.pos;
    let packet_len = pn_offset + length;
    if kind != Kind::Initial {
        return Ok(Packet::Other(packet_len));
    }
    Ok(Packet::Initial(InitialHeader {
        version,
        dcid,
        dcid_len,
        scid,
        scid_len,
        token_len,
        pn_offset,
        packet_len,
    }))
}

fn read_cid(
    c: &mut Cursor<'_>,
    out: &mut [u8; MAX_CID_LEN],
    truncated: &'static str,
) -> Result<u8, QuicError> {
    let len = c.u8().ok_or(QuicError::Malformed(truncated))?;
    if usize::from(len) > MAX_CID_LEN {
        // §17.2: "Endpoints that receive a version 1 long header with a value larger than 20
        // MUST drop the packet."
        return Err(QuicError::Malformed(
            "connection ID longer than 20 bytes (RFC 9000 §17.2)",
        ));
    }
    let id = c
        .take(usize::from(len))
        .ok_or(QuicError::Malformed(truncated))?;
    out[..id.len()].copy_from_slice(id);
    Ok(len)
}

/// The header of the Initial packet at the start of a datagram, read without keys; `None` for
/// anything else: short headers, Version Negotiation, other versions (the relay forwards or
/// drops those per its configuration), other packet types, a header that does not fit.
pub fn peek_initial(datagram: &[u8]) -> Option<InitialHeader> {
    match parse_packet(datagram) {
        Ok(Packet::Initial(h)) => Some(h),
        _ => None,
    }
}

/// Output length for ring's HKDF-Expand.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 8446 §7.1 HKDF-Expand-Label with an empty context, as RFC 9001 §5.1 uses it.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Result<(), QuicError> {
    let len = u16::try_from(out.len()).map_err(|_| QuicError::Decrypt)?;
    let label_len = u8::try_from(6 + label.len()).map_err(|_| QuicError::Decrypt)?;
    let len_bytes = len.to_be_bytes();
    let info: [&[u8]; 5] = [&len_bytes, &[label_len], b"tls13 ", label, &[0]];
    prk.expand(&info, OkmLen(out.len()))
        .and_then(|okm| okm.fill(out))
        // Unreachable: the lengths are fixed and far below 255 × 32.
        .map_err(|_| QuicError::Decrypt)
}

/// The client's Initial secret and the key material derived from it (RFC 9001 §5.2).
#[derive(Debug, PartialEq, Eq)]
struct ClientSecrets {
    secret: [u8; 32],
    key: [u8; 16],
    iv: [u8; aead::NONCE_LEN],
    hp: [u8; 16],
}

fn client_secrets(version: Version, dcid: &[u8]) -> Result<ClientSecrets, QuicError> {
    // RFC 9001 §5.2: initial_secret = HKDF-Extract(initial_salt, client_dst_connection_id);
    // client_initial_secret = HKDF-Expand-Label(initial_secret, "client in", "", 32).
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, version.salt()).extract(dcid);
    let mut s = ClientSecrets {
        secret: [0; 32],
        key: [0; 16],
        iv: [0; aead::NONCE_LEN],
        hp: [0; 16],
    };
    expand_label(&initial, b"client in", &mut s.secret)?;
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &s.secret);
    let [key, iv, hp] = version.labels();
    expand_label(&client, key, &mut s.key)?;
    expand_label(&client, iv, &mut s.iv)?;
    expand_label(&client, hp, &mut s.hp)?;
    Ok(s)
}

/// The client's Initial packet protection keys for one version and original Destination
/// Connection ID: AEAD_AES_128_GCM and AES-128 header protection (RFC 9001 §5). Only the
/// client's side is derived: the sniffer never reads the server's packets.
pub struct InitialKeys {
    version: Version,
    packet: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    hp: aead::quic::HeaderProtectionKey,
}

impl fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys, but nothing a log needs.
        f.debug_struct("InitialKeys")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A decrypted Initial packet, borrowed from the caller's scratch buffer.
#[derive(Debug)]
pub struct Opened<'a> {
    /// The full packet number (RFC 9000 §17.1, Appendix A.3).
    pub packet_number: u64,
    /// The header with protection removed, Packet Number included (the AEAD's associated
    /// data).
    pub header: &'a [u8],
    /// The frames.
    pub payload: &'a [u8],
}

impl InitialKeys {
    /// Derives the client's keys from the Destination Connection ID of its first Initial.
    /// Fails only if the crypto library refuses fixed-size key material, which it does not.
    pub fn client(version: Version, dcid: &[u8]) -> Result<Self, QuicError> {
        let s = client_secrets(version, dcid)?;
        let key =
            aead::UnboundKey::new(&aead::AES_128_GCM, &s.key).map_err(|_| QuicError::Decrypt)?;
        let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &s.hp)
            .map_err(|_| QuicError::Decrypt)?;
        Ok(Self {
            version,
            packet: aead::LessSafeKey::new(key),
            iv: s.iv,
            hp,
        })
    }

    /// The version these keys are for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Copies the Initial packet `packet` (header `h`, from [`peek_initial`]) into `scratch`,
    /// removes header protection and decrypts it there. `largest_pn` is the largest packet
    /// number decrypted so far on the flow (RFC 9000 Appendix A.3 needs it to expand a
    /// truncated packet number). `packet` is not modified, so it can still be forwarded.
    pub fn open<'s>(
        &self,
        packet: &[u8],
        h: &InitialHeader,
        largest_pn: Option<u64>,
        scratch: &'s mut [u8],
    ) -> Result<Opened<'s>, QuicError> {
        let src = packet.get(..h.packet_len).ok_or(QuicError::Malformed(
            "Initial packet is shorter than its Length field says",
        ))?;
        // RFC 9001 §5.4.2: the sample starts 4 bytes after the start of the Packet Number field.
        let sample_at = h.pn_offset + 4;
        if sample_at + SAMPLE_LEN > src.len() {
            return Err(QuicError::Malformed(
                "Initial packet too short to sample for header protection (RFC 9001 §5.4.2)",
            ));
        }
        let buf = scratch.get_mut(..src.len()).ok_or(QuicError::Malformed(
            "Initial packet longer than the 1500-byte decryption buffer",
        ))?;
        buf.copy_from_slice(src);
        let mask = self
            .hp
            .new_mask(&buf[sample_at..sample_at + SAMPLE_LEN])
            .map_err(|_| QuicError::Decrypt)?;
        // RFC 9001 §5.4.1: long headers protect the low 4 bits of the first byte, then the
        // Packet Number Length bits give how many packet number bytes to unmask.
        buf[0] ^= mask[0] & 0x0f;
        let pn_len = usize::from(buf[0] & 0x03) + 1;
        let mut truncated = 0u64;
        for i in 0..pn_len {
            buf[h.pn_offset + i] ^= mask[1 + i];
            truncated = truncated << 8 | u64::from(buf[h.pn_offset + i]);
        }
        let pn = decode_packet_number(largest_pn, truncated, pn_len * 8);
        let header_len = h.pn_offset + pn_len;
        // RFC 9001 §5.3: nonce = IV XOR the packet number, left-padded to the IV's size.
        let mut nonce = self.iv;
        for (n, p) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(pn.to_be_bytes())
        {
            *n ^= p;
        }
        let (header, body) = buf.split_at_mut(header_len);
        if body.len() < TAG_LEN {
            return Err(QuicError::Decrypt);
        }
        let payload = self
            .packet
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&*header),
                body,
            )
            .map_err(|_| QuicError::Decrypt)?;
        Ok(Opened {
            packet_number: pn,
            header,
            payload,
        })
    }
}

/// RFC 9000 Appendix A.3: the packet number closest to the next expected one whose low
/// `bits` bits are `truncated`.
fn decode_packet_number(largest: Option<u64>, truncated: u64, bits: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let win = 1u64 << bits;
    let hwin = win / 2;
    let candidate = (expected & !(win - 1)) | truncated;
    if candidate.saturating_add(hwin) <= expected && candidate < (1 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// RFC 9000 §12.4, §12.5 and §19: walks the frames of a decrypted Initial packet, passing each
/// CRYPTO frame's offset and data to `on_crypto`. Only the frames §12.5 allows in the Initial
/// packet number space are accepted: PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE of type
/// 0x1c.
fn walk_frames(
    payload: &[u8],
    mut on_crypto: impl FnMut(u64, &[u8]) -> Result<(), QuicError>,
) -> Result<(), QuicError> {
    const TRUNC: QuicError = QuicError::Malformed("frame runs past the end of the packet");
    if payload.is_empty() {
        // §12.4: a packet containing no frames is a PROTOCOL_VIOLATION.
        return Err(QuicError::Malformed("Initial packet carries no frames"));
    }
    let mut c = Cursor::new(payload);
    // Frame types are varints (§12.4), but every type allowed here fits in one byte; a
    // longer encoding is either another frame type or a non-minimal one, which §12.4 lets a
    // receiver reject.
    while let Some(ty) = c.u8() {
        match ty {
            // §19.1 PADDING, §19.2 PING: no fields.
            0x00 | 0x01 => {}
            // §19.3 ACK (0x03: with ECN counts).
            0x02 | 0x03 => {
                for _ in 0..2 {
                    c.varint().ok_or(TRUNC)?; // Largest Acknowledged, ACK Delay
                }
                let ranges = c.varint().ok_or(TRUNC)?;
                c.varint().ok_or(TRUNC)?; // First ACK Range
                                          // Each range takes at least two bytes, so a huge count ends at the buffer's end.
                if ranges > (c.remaining() / 2) as u64 {
                    return Err(TRUNC);
                }
                for _ in 0..ranges {
                    c.varint().ok_or(TRUNC)?; // Gap
                    c.varint().ok_or(TRUNC)?; // ACK Range Length
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        c.varint().ok_or(TRUNC)?; // ECT0, ECT1, ECN-CE counts
                    }
                }
            }
            // §19.6 CRYPTO.
            0x06 => {
                let offset = c.varint().ok_or(TRUNC)?;
                let len = c.varint().ok_or(TRUNC)?;
                if offset.saturating_add(len) > VARINT_MAX {
                    // §19.6: FRAME_ENCODING_ERROR.
                    return Err(QuicError::Malformed(
                        "CRYPTO frame ends beyond 2^62-1 (RFC 9000 §19.6)",
                    ));
                }
                let len = usize::try_from(len).map_err(|_| TRUNC)?;
                let data = c.take(len).ok_or(TRUNC)?;
                on_crypto(offset, data)?;
            }
            // §19.19 CONNECTION_CLOSE, QUIC layer: Error Code, Frame Type, Reason Phrase.
            0x1c => {
                c.varint().ok_or(TRUNC)?;
                c.varint().ok_or(TRUNC)?;
                c.skip_len_prefixed().ok_or(TRUNC)?;
            }
            _ => {
                return Err(QuicError::Malformed(
                    "frame type not allowed in an Initial packet (RFC 9000 §12.5)",
                ))
            }
        }
    }
    Ok(())
}

/// Reassembles the client's Initial CRYPTO stream (RFC 9000 §19.6) in a fixed buffer of
/// [`MAX_HELLO`] bytes: data may arrive at any offset, out of order and across datagrams;
/// overlapping data must repeat the same bytes. The contiguous prefix is what
/// [`parse_client_hello`] reads.
pub struct CryptoAssembler {
    buf: [u8; MAX_HELLO],
    /// One bit per byte of `buf`: received.
    have: [u64; MAX_HELLO / 64],
    /// Bytes `0..prefix` are all received.
    prefix: usize,
    /// `prefix` when the ClientHello was last parsed.
    parsed: usize,
    done: bool,
}

impl fmt::Debug for CryptoAssembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAssembler")
            .field("contiguous", &self.prefix)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Default for CryptoAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl CryptoAssembler {
    /// An empty stream.
    pub fn new() -> Self {
        Self {
            buf: [0; MAX_HELLO],
            have: [0; MAX_HELLO / 64],
            prefix: 0,
            parsed: 0,
            done: false,
        }
    }

    /// Forget everything, for the next flow.
    pub fn reset(&mut self) {
        // `buf` needs no clearing: only bytes marked in `have` are ever read.
        self.have = [0; MAX_HELLO / 64];
        self.prefix = 0;
        self.parsed = 0;
        self.done = false;
    }

    /// Number of bytes received from offset 0 without a gap.
    pub fn contiguous(&self) -> usize {
        self.prefix
    }

    fn has(&self, i: usize) -> bool {
        self.have[i / 64] >> (i % 64) & 1 == 1
    }

    /// Stores CRYPTO data received at `offset`. Fails, storing nothing, if the data reaches
    /// past [`MAX_HELLO`] (a ClientHello that large is refused anyway) or differs from bytes
    /// already received at the same offsets (RFC 9000 §19.6 has retransmissions repeat the
    /// same data; a copy that differs is an evasion attempt, not a retransmission).
    pub fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), QuicError> {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&s| s <= MAX_HELLO && data.len() <= MAX_HELLO - s)
            .ok_or(QuicError::Malformed(
                "CRYPTO data reaches past the 16 KiB ClientHello bound",
            ))?;
        let end = start + data.len();
        if (start..end).any(|i| self.has(i) && self.buf[i] != data[i - start]) {
            return Err(QuicError::Malformed(
                "CRYPTO data differs from bytes received earlier at the same offset",
            ));
        }
        self.buf[start..end].copy_from_slice(data);
        for i in start..end {
            self.have[i / 64] |= 1 << (i % 64);
        }
        while self.prefix < MAX_HELLO && self.has(self.prefix) {
            self.prefix += 1;
        }
        Ok(())
    }

    /// The ClientHello once the prefix holds all of it, exactly once; `Ok(None)` while it is
    /// incomplete (or after it was returned). Parses only when the prefix has grown.
    pub fn hello(&mut self) -> Result<Option<HelloInfo>, QuicError> {
        if self.done || self.prefix == self.parsed {
            return Ok(None);
        }
        self.parsed = self.prefix;
        // parse_client_hello reads one handshake message and ignores bytes after it.
        let info = parse_client_hello(&self.buf[..self.prefix]).map_err(QuicError::Hello)?;
        self.done = info.is_some();
        Ok(info)
    }
}

/// The flow's binding: version and original Destination Connection ID of its first Initial
/// that decrypted, and the keys derived from them.
#[derive(Debug)]
struct Flow {
    dcid: [u8; MAX_CID_LEN],
    dcid_len: u8,
    keys: InitialKeys,
}

impl Flow {
    fn matches(&self, h: &InitialHeader) -> bool {
        self.keys.version == h.version && self.dcid[..usize::from(self.dcid_len)] == *h.dcid()
    }
}

/// Per-flow (UDP 4-tuple) state that reads the ClientHello out of a QUIC client's Initial
/// datagrams. Reusable across flows with [`InitialSniffer::reset`]; about 20 KiB, so keep it
/// in a pool or a `Box` rather than moving it around.
pub struct InitialSniffer {
    flow: Option<Flow>,
    largest_pn: Option<u64>,
    crypto: CryptoAssembler,
    scratch: [u8; MAX_INITIAL_PACKET],
    done: bool,
}

impl fmt::Debug for InitialSniffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitialSniffer")
            .field("flow", &self.flow)
            .field("largest_pn", &self.largest_pn)
            .field("crypto", &self.crypto)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Default for InitialSniffer {
    fn default() -> Self {
        Self::new()
    }
}

impl InitialSniffer {
    /// State for a new flow.
    pub fn new() -> Self {
        Self {
            flow: None,
            largest_pn: None,
            crypto: CryptoAssembler::new(),
            scratch: [0; MAX_INITIAL_PACKET],
            done: false,
        }
    }

    /// Forget the flow, for reuse on another one (or after a Retry on this one).
    pub fn reset(&mut self) {
        self.flow = None;
        self.largest_pn = None;
        self.crypto.reset();
        self.done = false;
    }

    /// Feeds one client→server UDP datagram. `Ok(Some(info))` once the ClientHello is
    /// complete (once per flow); `Ok(None)` while more Initial data is needed, or for later
    /// Initials of the same connection. The datagram is not modified.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<Option<HelloInfo>, QuicError> {
        let mut rest = datagram;
        let mut first = true;
        // RFC 9000 §12.2: coalesced packets with a connection ID other than the first
        // Initial's are ignored.
        let mut datagram_dcid: Option<([u8; MAX_CID_LEN], u8)> = None;
        let mut opened = false;
        let mut failed = false;
        // Keys for a flow not bound yet, kept for the datagram's further Initials.
        let mut pending: Option<Flow> = None;
        while !rest.is_empty() {
            let h = match parse_packet(rest) {
                Ok(Packet::Initial(h)) => h,
                Ok(Packet::Other(n)) => {
                    first = false;
                    rest = rest.get(n..).unwrap_or_default();
                    continue;
                }
                Err(e) if first => return Err(e),
                // §12.2: what follows the first packet and cannot be parsed (a short header,
                // trailing zeros) is not ours to read.
                Err(_) => break,
            };
            first = false;
            let (packet, tail) = rest.split_at(h.packet_len.min(rest.len()));
            rest = tail;
            match datagram_dcid {
                Some((d, l)) if d[..usize::from(l)] != *h.dcid() => continue,
                Some(_) => {}
                None => {
                    if datagram.len() < MIN_INITIAL_DATAGRAM {
                        return Err(QuicError::Malformed(
                            "Initial in a datagram shorter than 1200 bytes, which servers \
                             discard (RFC 9000 §14.1)",
                        ));
                    }
                    datagram_dcid = Some((h.dcid, h.dcid_len));
                }
            }
            let keys = match &self.flow {
                Some(flow) if !flow.matches(&h) => {
                    return Err(QuicError::Malformed(
                        "Initial with another version or Destination Connection ID than the \
                         flow's first Initial (a new connection attempt or a reply to Retry)",
                    ))
                }
                Some(_) if self.done => {
                    // Retransmissions of the same connection: nothing new to report.
                    opened = true;
                    continue;
                }
                Some(flow) => &flow.keys,
                None => {
                    if !pending.as_ref().is_some_and(|p| p.matches(&h)) {
                        pending = Some(Flow {
                            dcid: h.dcid,
                            dcid_len: h.dcid_len,
                            keys: InitialKeys::client(h.version, h.dcid())?,
                        });
                    }
                    match &pending {
                        Some(p) => &p.keys,
                        None => continue,
                    }
                }
            };
            let o = match keys.open(packet, &h, self.largest_pn, &mut self.scratch) {
                Ok(o) => o,
                // RFC 9000 §12.2: a packet that fails to decrypt is dropped and the rest of
                // the datagram still processed.
                Err(QuicError::Decrypt) => {
                    failed = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            opened = true;
            // The flow is bound by its first Initial that authenticates, not by a forged or
            // corrupted one.
            if self.flow.is_none() {
                self.flow = pending.take();
            }
            // RFC 9000 §17.2: the Reserved Bits must be 0 once protection is removed.
            if o.header[0] & 0x0c != 0 {
                return Err(QuicError::Malformed(
                    "reserved header bits set (RFC 9000 §17.2)",
                ));
            }
            // Check every frame before storing any CRYPTO data, so a packet the server
            // rejects as a whole leaves nothing behind.
            walk_frames(o.payload, |_, _| Ok(()))?;
            let crypto = &mut self.crypto;
            walk_frames(o.payload, |off, data| crypto.insert(off, data))?;
            let pn = o.packet_number;
            self.largest_pn = Some(self.largest_pn.map_or(pn, |l| l.max(pn)));
            if let Some(info) = self.crypto.hello()? {
                self.done = true;
                return Ok(Some(info));
            }
        }
        if !opened {
            return Err(if failed {
                QuicError::Decrypt
            } else {
                QuicError::NotInitial
            });
        }
        Ok(None)
    }
}

/// Fuzzing entry (fuzz/fuzz_targets/quic_initial.rs): the first byte gives the number of
/// datagrams (1–16), the rest is cut into that many equal parts and fed to one sniffer; the
/// same datagrams fed again after `reset` must give the same outcomes.
pub fn fuzz_initial(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(n % 16) + 1;
    let chunk = rest.len().div_ceil(count).max(1);
    let mut sniffer = InitialSniffer::new();
    let mut first = [0u8; 16];
    for round in 0..2 {
        sniffer.reset();
        for (i, d) in rest.chunks(chunk).enumerate() {
            if let Some(h) = peek_initial(d) {
                assert!(
                    h.packet_len <= d.len(),
                    "header says more than the datagram"
                );
                assert!(h.pn_offset <= h.packet_len && h.dcid().len() <= MAX_CID_LEN);
            }
            let code = match sniffer.feed(d) {
                Ok(None) => 1,
                Ok(Some(info)) => {
                    let _ = (info.sni(), info.ech);
                    2
                }
                Err(QuicError::NotInitial) => 3,
                Err(QuicError::UnsupportedVersion(_)) => 4,
                Err(QuicError::Malformed(_)) => 5,
                Err(QuicError::Decrypt) => 6,
                Err(QuicError::Hello(_)) => 7,
            };
            if let Some(slot) = first.get_mut(i) {
                if round == 0 {
                    *slot = code;
                } else {
                    assert_eq!(*slot, code, "a reset sniffer decided differently");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9001 Appendix A: the client's original Destination Connection ID.
    const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    /// RFC 9001 Appendix A.2 (and RFC 9369 Appendix A.2): the CRYPTO frame of the client's
    /// Initial, before PADDING to 1162 bytes.
    const A2_CRYPTO_FRAME: &str = "
        060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
        04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408 050806002d00020101001c0002400100
        3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806 048000ffff";

    /// RFC 9001 Appendix A.2: the protected client Initial (also
    /// shared/testdata/rfc9001-a2-client-initial.hex).
    const A2_V1_PACKET: &str = "
        c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
        d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
        1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
        8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
        30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
        457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
        4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
        4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
        485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
        059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
        7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
        9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
        be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
        68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
        c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
        f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
        291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
        25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
        14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
        ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
        e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
        c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
        203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
        cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
        fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
        a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
        90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
        162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
        40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
        6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
        8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
        be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
        54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
        760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
        f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
        056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
        7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
        e221af44860018ab0856972e194cd934";

    /// RFC 9369 Appendix A.2: the same client Initial protected for QUIC v2.
    const A2_V2_PACKET: &str = "
        d76b3343cf088394c8f03e5157080000 449ea0c95e82ffe67b6abcdb4298b485
        dd04de806071bf03dceebfa162e75d6c 96058bdbfb127cdfcbf903388e99ad04
        9f9a3dd4425ae4d0992cfff18ecf0fdb 5a842d09747052f17ac2053d21f57c5d
        250f2c4f0e0202b70785b7946e992e58 a59ac52dea6774d4f03b55545243cf1a
        12834e3f249a78d395e0d18f4d766004 f1a2674802a747eaa901c3f10cda5500
        cb9122faa9f1df66c392079a1b40f0de 1c6054196a11cbea40afb6ef5253cd68
        18f6625efce3b6def6ba7e4b37a40f77 32e093daa7d52190935b8da58976ff33
        12ae50b187c1433c0f028edcc4c2838b 6a9bfc226ca4b4530e7a4ccee1bfa2a3
        d396ae5a3fb512384b2fdd851f784a65 e03f2c4fbe11a53c7777c023462239dd
        6f7521a3f6c7d5dd3ec9b3f233773d4b 46d23cc375eb198c63301c21801f6520
        bcfb7966fc49b393f0061d974a2706df 8c4a9449f11d7f3d2dcbb90c6b877045
        636e7c0c0fe4eb0f697545460c806910 d2c355f1d253bc9d2452aaa549e27a1f
        ac7cf4ed77f322e8fa894b6a83810a34 b361901751a6f5eb65a0326e07de7c12
        16ccce2d0193f958bb3850a833f7ae43 2b65bc5a53975c155aa4bcb4f7b2c4e5
        4df16efaf6ddea94e2c50b4cd1dfe060 17e0e9d02900cffe1935e0491d77ffb4
        fdf85290fdd893d577b1131a610ef6a5 c32b2ee0293617a37cbb08b847741c3b
        8017c25ca9052ca1079d8b78aebd4787 6d330a30f6a8c6d61dd1ab5589329de7
        14d19d61370f8149748c72f132f0fc99 f34d766c6938597040d8f9e2bb522ff9
        9c63a344d6a2ae8aa8e51b7b90a4a806 105fcbca31506c446151adfeceb51b91
        abfe43960977c87471cf9ad4074d30e1 0d6a7f03c63bd5d4317f68ff325ba3bd
        80bf4dc8b52a0ba031758022eb025cdd 770b44d6d6cf0670f4e990b22347a7db
        848265e3e5eb72dfe8299ad7481a4083 22cac55786e52f633b2fb6b614eaed18
        d703dd84045a274ae8bfa73379661388 d6991fe39b0d93debb41700b41f90a15
        c4d526250235ddcd6776fc77bc97e7a4 17ebcb31600d01e57f32162a8560cacc
        7e27a096d37a1a86952ec71bd89a3e9a 30a2a26162984d7740f81193e8238e61
        f6b5b984d4d3dfa033c1bb7e4f0037fe bf406d91c0dccf32acf423cfa1e70710
        10d3f270121b493ce85054ef58bada42 310138fe081adb04e2bd901f2f13458b
        3d6758158197107c14ebb193230cd115 7380aa79cae1374a7c1e5bbcb80ee23e
        06ebfde206bfb0fcbc0edc4ebec30966 1bdd908d532eb0c6adc38b7ca7331dce
        8dfce39ab71e7c32d318d136b6100671 a1ae6a6600e3899f31f0eed19e3417d1
        34b90c9058f8632c798d4490da498730 7cba922d61c39805d072b589bd52fdf1
        e86215c2d54e6670e07383a27bbffb5a ddf47d66aa85a0c6f9f32e59d85a44dd
        5d3b22dc2be80919b490437ae4f36a0a e55edf1d0b5cb4e9a3ecabee93dfc6e3
        8d209d0fa6536d27a5d6fbb17641cde2 7525d61093f1b28072d111b2b4ae5f89
        d5974ee12e5cf7d5da4d6a31123041f3 3e61407e76cffcdcfd7e19ba58cf4b53
        6f4c4938ae79324dc402894b44faf8af bab35282ab659d13c93f70412e85cb19
        9a37ddec600545473cfb5a05e08d0b20 9973b2172b4d21fb69745a262ccde96b
        a18b2faa745b6fe189cf772a9f84cbfc";

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| (b as char).to_digit(16).unwrap() as u8)
            .collect();
        assert!(digits.len() % 2 == 0, "odd number of hex digits");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn crypto_hello() -> Vec<u8> {
        // Frame type 0x06, offset 0x00, length 0x40f1 (241), then the ClientHello.
        hex(A2_CRYPTO_FRAME)[4..].to_vec()
    }

    fn a2(version: Version) -> Vec<u8> {
        hex(match version {
            Version::V1 => A2_V1_PACKET,
            Version::V2 => A2_V2_PACKET,
        })
    }

    fn put_varint(out: &mut Vec<u8>, v: u64) {
        match v {
            0..=0x3f => out.push(v as u8),
            0x40..=0x3fff => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
            0x4000..=0x3fff_ffff => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
            _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
        }
    }

    fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        put_varint(&mut f, offset);
        put_varint(&mut f, data.len() as u64);
        f.extend_from_slice(data);
        f
    }

    /// The client side of RFC 9001 §5: builds and protects an Initial packet. The Length is
    /// always written on 2 bytes, as in Appendix A.2.
    fn protect(
        version: Version,
        dcid: &[u8],
        token: &[u8],
        pn: u64,
        pn_len: usize,
        payload: &[u8],
    ) -> Vec<u8> {
        protect_with_bits(version, dcid, token, pn, pn_len, payload, 0)
    }

    /// [`protect`] with `reserved` (RFC 9000 §17.2 Reserved Bits, 0x0c) set in the first byte.
    fn protect_with_bits(
        version: Version,
        dcid: &[u8],
        token: &[u8],
        pn: u64,
        pn_len: usize,
        payload: &[u8],
        reserved: u8,
    ) -> Vec<u8> {
        let s = client_secrets(version, dcid).unwrap();
        let type_bits: u8 = match version {
            Version::V1 => 0,
            Version::V2 => 1,
        };
        let mut p = vec![0xc0 | type_bits << 4 | reserved | (pn_len as u8 - 1)];
        p.extend_from_slice(&version.wire().to_be_bytes());
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(0); // empty Source Connection ID
        put_varint(&mut p, token.len() as u64);
        p.extend_from_slice(token);
        let length = (pn_len + payload.len() + TAG_LEN) as u16;
        p.extend_from_slice(&(0x4000 | length).to_be_bytes());
        let pn_offset = p.len();
        p.extend_from_slice(&pn.to_be_bytes()[8 - pn_len..]);
        let key =
            aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &s.key).unwrap());
        let mut nonce = s.iv;
        for (n, b) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= b;
        }
        let mut body = payload.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(&p[..]),
                &mut body,
            )
            .unwrap();
        p.extend_from_slice(&body);
        p.extend_from_slice(tag.as_ref());
        let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &s.hp).unwrap();
        let mask = hp
            .new_mask(&p[pn_offset + 4..pn_offset + 4 + SAMPLE_LEN])
            .unwrap();
        p[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            p[pn_offset + i] ^= mask[1 + i];
        }
        p
    }

    /// A v1 Initial from the Appendix A client carrying `frames`, padded (PADDING frames) to a
    /// 1200-byte datagram.
    fn initial(pn: u64, frames: &[u8]) -> Vec<u8> {
        initial_for(Version::V1, &DCID, pn, frames)
    }

    fn initial_for(version: Version, dcid: &[u8], pn: u64, frames: &[u8]) -> Vec<u8> {
        let overhead = 1 + 4 + 1 + dcid.len() + 1 + 1 + 2 + 4 + TAG_LEN;
        let mut payload = frames.to_vec();
        payload.resize(payload.len().max(MIN_INITIAL_DATAGRAM - overhead), 0);
        protect(version, dcid, &[], pn, 4, &payload)
    }

    fn sni_of(r: Result<Option<HelloInfo>, QuicError>) -> String {
        match r {
            Ok(Some(info)) => info.sni().unwrap().to_string(),
            other => panic!("expected a ClientHello, got {other:?}"),
        }
    }

    // ---- RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: key derivation ----

    #[test]
    fn a1_v1_client_keys() {
        let s = client_secrets(Version::V1, &DCID).unwrap();
        let want = ClientSecrets {
            secret: hex("c00cf151ca5be075ed0ebfb5c80323c4 2d6b7db67881289af4008f1f6c357aea")
                .try_into()
                .unwrap(),
            key: hex("1f369613dd76d5467730efcbe3b1a22d").try_into().unwrap(),
            iv: hex("fa044b2f42a3fd3b46fb255c").try_into().unwrap(),
            hp: hex("9f50449e04a0e810283a1e9933adedd2").try_into().unwrap(),
        };
        assert_eq!(s, want);
    }

    #[test]
    fn a1_v2_client_keys() {
        let s = client_secrets(Version::V2, &DCID).unwrap();
        let want = ClientSecrets {
            secret: hex("14ec9d6eb9fd7af83bf5a668bc17a7e2 83766aade7ecd0891f70f9ff7f4bf47b")
                .try_into()
                .unwrap(),
            key: hex("8b1a0bc121284290a29e0971b5cd045d").try_into().unwrap(),
            iv: hex("91f73e2351d8fa91660e909f").try_into().unwrap(),
            hp: hex("45b95e15235d6f45a6b19cbcb0294ba9").try_into().unwrap(),
        };
        assert_eq!(s, want);
    }

    // ---- Appendix A.2: the client Initial ----

    #[test]
    fn a2_header_peek() {
        for v in [Version::V1, Version::V2] {
            let d = a2(v);
            assert_eq!(d.len(), 1200);
            let h = peek_initial(&d).unwrap();
            assert_eq!(h.version, v);
            assert_eq!(h.dcid(), DCID);
            assert_eq!(h.scid(), b"");
            assert_eq!(h.token_len, 0);
            assert_eq!(h.pn_offset, 18);
            assert_eq!(h.packet_len, 1200); // 18 + Length 0x049e (1182)
        }
    }

    #[test]
    fn a2_unprotect_and_decrypt() {
        for (v, header) in [
            (Version::V1, "c300000001088394c8f03e5157080000449e00000002"),
            (Version::V2, "d36b3343cf088394c8f03e5157080000449e00000002"),
        ] {
            let d = a2(v);
            let h = peek_initial(&d).unwrap();
            let keys = InitialKeys::client(v, h.dcid()).unwrap();
            let mut scratch = [0u8; MAX_INITIAL_PACKET];
            let o = keys.open(&d, &h, None, &mut scratch).unwrap();
            assert_eq!(o.packet_number, 2);
            assert_eq!(o.header, &hex(header)[..]);
            assert_eq!(o.payload.len(), 1162);
            let frame = hex(A2_CRYPTO_FRAME);
            assert_eq!(&o.payload[..frame.len()], &frame[..]);
            assert!(o.payload[frame.len()..].iter().all(|&b| b == 0), "PADDING");
        }
        // The datagram itself is left as received.
        assert_eq!(a2(Version::V1), hex(A2_V1_PACKET));
    }

    #[test]
    fn a2_test_encryptor_reproduces_the_rfc() {
        // Checks `protect`, which the fragmentation tests rely on.
        let mut payload = hex(A2_CRYPTO_FRAME);
        payload.resize(1162, 0);
        for v in [Version::V1, Version::V2] {
            assert_eq!(protect(v, &DCID, &[], 2, 4, &payload), a2(v), "{v:?}");
        }
    }

    #[test]
    fn a2_sni_v1_and_v2() {
        for v in [Version::V1, Version::V2] {
            let mut s = InitialSniffer::new();
            let info = s.feed(&a2(v)).unwrap().unwrap();
            assert_eq!(info.sni(), Some("example.com"));
            assert!(!info.ech);
            // Reported once; a retransmission is nothing new.
            assert!(matches!(s.feed(&a2(v)), Ok(None)));
            s.reset();
            assert_eq!(sni_of(s.feed(&a2(v))), "example.com");
        }
    }

    // ---- ClientHello over several Initial packets ----

    #[test]
    fn hello_split_over_two_datagrams_out_of_order() {
        let ch = crypto_hello();
        let (a, b) = ch.split_at(100);
        let first = initial(0, &crypto_frame(0, a));
        let second = initial(1, &crypto_frame(100, b));
        let mut s = InitialSniffer::new();
        assert!(matches!(s.feed(&second), Ok(None)));
        assert_eq!(s.crypto.contiguous(), 0);
        assert_eq!(sni_of(s.feed(&first)), "example.com");
        assert_eq!(s.largest_pn, Some(1));
    }

    #[test]
    fn hello_split_with_agreeing_overlap_and_small_frames() {
        let ch = crypto_hello();
        let mut frames = Vec::new();
        for (i, c) in ch[..120].chunks(7).enumerate().rev() {
            frames.extend(crypto_frame((i * 7) as u64, c));
        }
        let first = initial(0, &frames);
        let second = initial(1, &crypto_frame(60, &ch[60..])); // overlaps 60..120
        let mut s = InitialSniffer::new();
        assert!(matches!(s.feed(&first), Ok(None)));
        assert_eq!(s.crypto.contiguous(), 120);
        assert_eq!(sni_of(s.feed(&second)), "example.com");
    }

    #[test]
    fn hello_overlap_that_disagrees_is_refused() {
        let ch = crypto_hello();
        let mut evil = ch.clone();
        evil[80] ^= 0x20; // inside "example.com"
        let mut s = InitialSniffer::new();
        assert!(matches!(
            s.feed(&initial(0, &crypto_frame(50, &ch[50..]))),
            Ok(None)
        ));
        assert!(matches!(
            s.feed(&initial(1, &crypto_frame(0, &evil[..100]))),
            Err(QuicError::Malformed(m)) if m.contains("differs")
        ));
    }

    #[test]
    fn coalesced_initials_and_other_packets() {
        let ch = crypto_hello();
        // Two small Initials with one half each, then a 0-RTT packet, then trailing zeros.
        let one = protect(Version::V1, &DCID, &[], 0, 1, &crypto_frame(0, &ch[..120]));
        let two = protect(
            Version::V1,
            &DCID,
            &[],
            1,
            2,
            &crypto_frame(120, &ch[120..]),
        );
        let mut d = Vec::new();
        d.extend(&two);
        d.extend(&one);
        d.extend([0xd0, 0, 0, 0, 1, 8]); // 0-RTT (type 1), same DCID, no SCID, Length 20
        d.extend(DCID);
        d.extend([0, 20]);
        d.extend([0xaa; 20]);
        d.resize(1250, 0);
        let mut s = InitialSniffer::new();
        assert_eq!(sni_of(s.feed(&d)), "example.com");
    }

    #[test]
    fn coalesced_initial_with_another_dcid_is_ignored() {
        let ch = crypto_hello();
        let mut d = protect(Version::V1, &DCID, &[], 0, 4, &crypto_frame(0, &ch[..100]));
        d.extend(protect(
            Version::V1,
            &[9; 8],
            &[],
            1,
            4,
            &crypto_frame(100, &ch[100..]),
        ));
        d.resize(1200, 0);
        let mut s = InitialSniffer::new();
        assert!(matches!(s.feed(&d), Ok(None)));
        assert_eq!(s.crypto.contiguous(), 100);
        assert_eq!(
            sni_of(s.feed(&initial(2, &crypto_frame(100, &ch[100..])))),
            "example.com"
        );
    }

    #[test]
    fn corrupt_coalesced_packet_is_skipped() {
        let ch = crypto_hello();
        let mut bad = protect(Version::V1, &DCID, &[], 0, 4, &crypto_frame(0, &ch[..10]));
        let n = bad.len();
        bad[n - 1] ^= 1; // tag
        let mut d = bad;
        d.extend(protect(
            Version::V1,
            &DCID,
            &[],
            1,
            4,
            &crypto_frame(0, &ch),
        ));
        d.resize(1200, 0);
        assert_eq!(sni_of(InitialSniffer::new().feed(&d)), "example.com");
    }

    #[test]
    fn token_ack_ping_close_frames_are_walked() {
        let ch = crypto_hello();
        let mut frames = vec![0x01]; // PING
        frames.extend([
            0x03, 0x05, 0x00, 0x02, 0x01, 0x00, 0x00, 0x01, 0x00, 7, 8, 9,
        ]); // ACK+ECN
        frames.extend([0x02, 0x40, 0x10, 0x00, 0x00, 0x03]); // ACK, no ranges
        frames.extend([0x1c, 0x00, 0x00, 0x03, b'b', b'y', b'e']); // CONNECTION_CLOSE
        frames.extend(crypto_frame(0, &ch));
        let mut payload = frames;
        payload.resize(1200, 0);
        let d = protect(Version::V2, &DCID, b"retry-token", 7, 2, &payload);
        assert_eq!(peek_initial(&d).unwrap().token_len, 11);
        assert_eq!(sni_of(InitialSniffer::new().feed(&d)), "example.com");
    }

    #[test]
    fn later_datagram_with_another_dcid() {
        let ch = crypto_hello();
        let mut s = InitialSniffer::new();
        assert!(matches!(
            s.feed(&initial(0, &crypto_frame(0, &ch[..50]))),
            Ok(None)
        ));
        let other = initial_for(Version::V1, &[7; 12], 0, &crypto_frame(0, &ch));
        assert!(matches!(
            s.feed(&other),
            Err(QuicError::Malformed(m)) if m.contains("Destination Connection ID")
        ));
        // Also after the ClientHello was reported: a new connection attempt on the flow.
        assert_eq!(
            sni_of(s.feed(&initial(1, &crypto_frame(50, &ch[50..])))),
            "example.com"
        );
        assert!(matches!(s.feed(&other), Err(QuicError::Malformed(_))));
        // The relay may follow it: reset and feed again.
        s.reset();
        assert_eq!(sni_of(s.feed(&other)), "example.com");
    }

    #[test]
    fn forged_first_datagram_does_not_bind_the_flow() {
        let ch = crypto_hello();
        let mut forged = initial_for(Version::V1, &[1; 8], 0, &crypto_frame(0, &ch));
        forged[1199] ^= 0xff;
        let mut s = InitialSniffer::new();
        assert!(matches!(s.feed(&forged), Err(QuicError::Decrypt)));
        assert_eq!(sni_of(s.feed(&a2(Version::V1))), "example.com");
    }

    #[test]
    fn only_authentic_initials_bind_the_flow() {
        let mut s = InitialSniffer::new();
        // Too big to decrypt, other DCID: refused without binding the flow.
        let mut payload = crypto_frame(0, &crypto_hello());
        payload.resize(MAX_INITIAL_PACKET, 0);
        let big = protect(Version::V1, &[5; 8], &[], 0, 4, &payload);
        assert!(matches!(s.feed(&big), Err(QuicError::Malformed(_))));
        assert!(s.flow.is_none());
        // Authentic but refused (a STREAM frame): binds the flow to its DCID.
        let mut f = crypto_frame(0, &crypto_hello());
        f.push(0x08);
        let stream = initial_for(Version::V1, &[6; 8], 0, &f);
        assert!(matches!(s.feed(&stream), Err(QuicError::Malformed(_))));
        assert!(
            matches!(s.feed(&a2(Version::V1)), Err(QuicError::Malformed(m)) if m.contains("Destination"))
        );
    }

    // ---- Malformed input ----

    #[test]
    fn not_initial_and_unsupported_versions() {
        let mut s = InitialSniffer::new();
        assert!(matches!(s.feed(&[]), Err(QuicError::NotInitial)));
        assert!(matches!(s.feed(&[0x40; 1200]), Err(QuicError::NotInitial))); // short header
        let mut vn = vec![0x80, 0, 0, 0, 0, 0, 0];
        vn.extend([0, 0, 0, 1]);
        assert!(matches!(s.feed(&vn), Err(QuicError::NotInitial)));
        assert!(peek_initial(&vn).is_none());
        let mut d = a2(Version::V1);
        d[1..5].copy_from_slice(&0x1a2a_3a4a_u32.to_be_bytes());
        assert!(matches!(
            s.feed(&d),
            Err(QuicError::UnsupportedVersion(0x1a2a_3a4a))
        ));
        assert!(peek_initial(&d).is_none());
        // A v1 Handshake packet (type 2) alone; v2's Initial type bits under v1 are 0-RTT.
        let mut d = a2(Version::V1);
        d[0] = 0xe0;
        assert!(matches!(s.feed(&d), Err(QuicError::NotInitial)));
        let mut d = a2(Version::V1);
        d[0] = 0xd0;
        assert!(matches!(s.feed(&d), Err(QuicError::NotInitial)));
        assert!(QuicError::UnsupportedVersion(0xff00_001d)
            .to_string()
            .contains("0xff00001d"));
    }

    #[test]
    fn truncated_headers() {
        let d = a2(Version::V1);
        for n in 1..d.len() {
            let r = InitialSniffer::new().feed(&d[..n]);
            assert!(
                matches!(r, Err(QuicError::Malformed(_))),
                "prefix {n}: {r:?}"
            );
        }
        assert!(peek_initial(&d[..17]).is_none());
        assert!(peek_initial(&d[..1199]).is_none()); // Length runs past the end
    }

    #[test]
    fn long_connection_id_refused() {
        let mut d = a2(Version::V1);
        d[5] = 21;
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("20 bytes")
        ));
    }

    #[test]
    fn huge_varints() {
        // Token Length and Length of 2^62-1 (8-byte varints).
        let mut d = vec![0xc3, 0, 0, 0, 1, 8];
        d.extend(DCID);
        d.push(0);
        d.extend([0xff; 8]);
        d.resize(1200, 0);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("Token Length")
        ));
        let mut d = vec![0xc3, 0, 0, 0, 1, 8];
        d.extend(DCID);
        d.extend([0, 0]);
        d.extend([0xff; 8]);
        d.resize(1200, 0);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("Length field")
        ));
        // Frames with 8-byte varints everywhere.
        let mut f = vec![0x02];
        f.extend([0xff; 8]); // Largest Acknowledged
        f.extend([0xff; 8]); // ACK Delay
        f.extend([0xff; 8]); // ACK Range Count: 2^62-1
        f.extend([0x00]);
        assert!(matches!(
            InitialSniffer::new().feed(&initial(0, &f)),
            Err(QuicError::Malformed(m)) if m.contains("past the end")
        ));
        let mut f = vec![0x06];
        f.extend([0xff; 8]); // offset 2^62-1
        f.extend([0x01, 0x00]);
        assert!(matches!(
            InitialSniffer::new().feed(&initial(0, &f)),
            Err(QuicError::Malformed(m)) if m.contains("2^62-1")
        ));
    }

    #[test]
    fn crypto_beyond_the_hello_bound() {
        let f = crypto_frame(MAX_HELLO as u64 - 2, &[1, 2, 3]);
        assert!(matches!(
            InitialSniffer::new().feed(&initial(0, &f)),
            Err(QuicError::Malformed(m)) if m.contains("16 KiB")
        ));
        let f = crypto_frame(1 << 40, &[1]);
        assert!(matches!(
            InitialSniffer::new().feed(&initial(0, &f)),
            Err(QuicError::Malformed(m)) if m.contains("16 KiB")
        ));
        // Exactly up to the bound is stored.
        let mut a = CryptoAssembler::new();
        a.insert(MAX_HELLO as u64 - 3, &[1, 2, 3]).unwrap();
        assert_eq!(a.contiguous(), 0);
    }

    #[test]
    fn bad_tag_is_decrypt() {
        let mut d = a2(Version::V1);
        d[1199] ^= 1;
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Decrypt)
        ));
        // v1 packet read with v2 keys.
        let mut d = a2(Version::V1);
        d[1..5].copy_from_slice(&QUIC_V2.to_be_bytes());
        d[0] = 0xd0 | (d[0] & 0x0f);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Decrypt)
        ));
    }

    #[test]
    fn forbidden_frames_and_empty_packets() {
        let ch = crypto_hello();
        for ty in [0x08u8, 0x1d, 0x1e, 0x07, 0x40] {
            let mut f = crypto_frame(0, &ch);
            f.push(ty);
            let mut s = InitialSniffer::new();
            assert!(
                matches!(s.feed(&initial(0, &f)), Err(QuicError::Malformed(m)) if m.contains("not allowed")),
                "frame type {ty:#x}"
            );
            // A packet refused as a whole stores none of its CRYPTO data.
            assert_eq!(s.crypto.contiguous(), 0);
        }
        // A packet with no frames: 4-byte packet number and the tag, which is just long
        // enough to sample for header protection.
        let mut d = protect(Version::V1, &DCID, &[], 0, 4, &[]);
        d.resize(1200, 0);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("no frames")
        ));
    }

    #[test]
    fn reserved_bits_must_be_zero() {
        let mut payload = crypto_frame(0, &crypto_hello());
        payload.resize(1162, 0);
        let d = protect_with_bits(Version::V1, &DCID, &[], 0, 4, &payload, 0x04);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("reserved")
        ));
    }

    #[test]
    fn small_datagrams_and_big_packets() {
        // RFC 9000 §14.1: an Initial in a datagram under 1200 bytes is discarded.
        let d = protect(
            Version::V1,
            &DCID,
            &[],
            0,
            4,
            &crypto_frame(0, &crypto_hello()),
        );
        assert!(d.len() < 1200);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("1200")
        ));
        // An Initial bigger than the scratch buffer.
        let mut payload = crypto_frame(0, &crypto_hello());
        payload.resize(MAX_INITIAL_PACKET, 0);
        let d = protect(Version::V1, &DCID, &[], 0, 4, &payload);
        assert!(matches!(
            InitialSniffer::new().feed(&d),
            Err(QuicError::Malformed(m)) if m.contains("1500")
        ));
    }

    #[test]
    fn hello_errors_pass_through() {
        let mut not_hello = crypto_hello();
        not_hello[0] = 2; // ServerHello
        assert!(matches!(
            InitialSniffer::new().feed(&initial(0, &crypto_frame(0, &not_hello))),
            Err(QuicError::Hello(HelloError::NotClientHello))
        ));
        let e = QuicError::Hello(HelloError::TooLarge);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("ClientHello"));
    }

    // ---- Building blocks ----

    #[test]
    fn varints_rfc9000_a1() {
        for (enc, v) in [
            ("c2197c5eff14e88c", 151_288_809_941_952_652u64),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
            ("4025", 37),
        ] {
            let b = hex(enc);
            let mut c = Cursor::new(&b);
            assert_eq!(c.varint(), Some(v));
            assert_eq!(c.remaining(), 0);
            assert_eq!(Cursor::new(&b[..b.len() - 1]).varint(), None);
        }
    }

    #[test]
    fn packet_numbers_rfc9000_a3() {
        // Appendix A.3's example.
        assert_eq!(
            decode_packet_number(Some(0xa82f30ea), 0x9b32, 16),
            0xa82f9b32
        );
        assert_eq!(decode_packet_number(None, 2, 32), 2);
        assert_eq!(decode_packet_number(None, 0, 8), 0);
        assert_eq!(decode_packet_number(Some(0xff), 0x01, 8), 0x101);
        assert_eq!(decode_packet_number(Some(0x105), 0xff, 8), 0xff);
        // No overflow at the extremes.
        let _ = decode_packet_number(Some(u64::MAX), 0xffff_ffff, 32);
        let _ = decode_packet_number(Some(VARINT_MAX), 0, 8);
    }

    #[test]
    fn fuzz_entry_on_seeds() {
        let mut data = vec![0];
        data.extend(a2(Version::V1));
        fuzz_initial(&data);
        let mut data = vec![1];
        data.extend(initial(1, &crypto_frame(100, &crypto_hello()[100..])));
        data.extend(initial(0, &crypto_frame(0, &crypto_hello()[..100])));
        fuzz_initial(&data);
        fuzz_initial(&[]);
        fuzz_initial(&[15]);
    }

    #[test]
    fn display_is_plain_words() {
        for e in [
            QuicError::NotInitial,
            QuicError::UnsupportedVersion(2),
            QuicError::Malformed("x"),
            QuicError::Decrypt,
            QuicError::Hello(HelloError::BadSni("y")),
        ] {
            let s = e.to_string();
            assert!(s.len() > 20 && !s.contains("Err"), "{s}");
        }
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        // RFC 9001 §5.3, §5.4: the header is authenticated as AAD and the payload by the tag.
        for v in [Version::V1, Version::V2] {
            let d = a2(v);
            for i in 0..d.len() {
                for bit in [0x01u8, 0x80] {
                    let mut f = d.clone();
                    f[i] ^= bit;
                    let r = InitialSniffer::new().feed(&f);
                    assert!(r.is_err(), "{v:?} byte {i} bit {bit:#x}: {r:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_datagrams_never_panic(
            ds in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1600), 1..4),
        ) {
            let mut s = InitialSniffer::new();
            for d in &ds {
                if let Some(h) = peek_initial(d) {
                    prop_assert!(h.packet_len <= d.len());
                }
                let _ = s.feed(d);
            }
        }

        #[test]
        fn long_headers_never_panic(
            first in 0xc0u8..=0xff,
            v2 in any::<bool>(),
            rest in prop::collection::vec(any::<u8>(), 0..1300),
        ) {
            let mut d = vec![first];
            d.extend(if v2 { QUIC_V2 } else { QUIC_V1 }.to_be_bytes());
            d.extend(rest);
            let _ = peek_initial(&d);
            let _ = InitialSniffer::new().feed(&d);
        }

        #[test]
        fn any_flipped_byte_is_refused(i in 0usize..1200, x in 1u8..=255, v2 in any::<bool>()) {
            let mut d = a2(if v2 { Version::V2 } else { Version::V1 });
            d[i] ^= x;
            prop_assert!(InitialSniffer::new().feed(&d).is_err());
        }

        #[test]
        fn arbitrary_frames_never_panic(p in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut a = CryptoAssembler::new();
            let _ = walk_frames(&p, |o, d| a.insert(o, d));
            let _ = a.hello();
        }

        #[test]
        fn reassembly_in_any_order(
            cuts in prop::collection::vec(0usize..241, 0..8),
            order in prop::collection::vec(any::<prop::sample::Index>(), 8),
            overlap in 0usize..20,
        ) {
            let ch = crypto_hello();
            let mut bounds = cuts;
            bounds.push(0);
            bounds.push(ch.len());
            bounds.sort_unstable();
            bounds.dedup();
            let mut pieces: Vec<(usize, usize)> = bounds
                .windows(2)
                .map(|w| (w[0].saturating_sub(overlap), w[1]))
                .collect();
            for (k, ix) in order.iter().enumerate() {
                let n = pieces.len();
                pieces.swap(k % n, ix.index(n));
            }
            let mut a = CryptoAssembler::new();
            let mut got = None;
            for (n, &(s, e)) in pieces.iter().enumerate() {
                a.insert(s as u64, &ch[s..e]).unwrap();
                let h = a.hello().unwrap();
                if n + 1 < pieces.len() && a.contiguous() < ch.len() {
                    prop_assert!(h.is_none());
                }
                if h.is_some() {
                    prop_assert!(got.is_none(), "reported twice");
                    got = h;
                }
            }
            prop_assert_eq!(a.contiguous(), ch.len());
            let info = got.unwrap();
            prop_assert_eq!(info.sni(), Some("example.com"));
        }

        #[test]
        fn fuzz_entry_never_panics(data in prop::collection::vec(any::<u8>(), 0..3000)) {
            fuzz_initial(&data);
        }
    }
}
