//! Framing SIP over a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).

use super::message::MAX_MESSAGE;
use super::scan::{eq_ic, parse_dec, trim};
use super::ParseError;

/// The first complete message in a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Leading CRLF bytes to discard before the message.
    pub skip: usize,
    /// RFC 5626 §3.5.1: number of double-CRLF "pings" among them; answer each with a CRLF "pong".
    pub pings: usize,
    /// Length of the message after `skip` (0 when the buffer held only keep-alives).
    pub len: usize,
}

impl Frame {
    /// Bytes to consume from the stream buffer.
    pub fn total(&self) -> usize {
        self.skip + self.len
    }
}

/// Total bytes (keep-alives + first message) to consume from `buf`, `Ok(None)` if more bytes
/// are needed. See [`frame`].
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    Ok(frame(buf)?.map(|f| f.total()))
}

/// Finds the first complete message in a stream buffer: headers up to the blank line, then
/// exactly Content-Length body bytes (RFC 3261 §18.3: mandatory on streams). Never reads past
/// [`MAX_MESSAGE`] bytes of one message; a longer one is an error and the connection should
/// be closed. Cost: one scan of the header block.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, ParseError> {
    let mut skip = 0;
    let mut crlfs = 0;
    while buf.get(skip..skip + 2) == Some(b"\r\n") {
        skip += 2;
        crlfs += 1;
    }
    let pings = crlfs / 2;
    let rest = &buf[skip..];
    if rest.is_empty() || rest == b"\r" {
        return Ok((skip > 0 && crlfs % 2 == 0).then_some(Frame {
            skip,
            pings,
            len: 0,
        }));
    }
    let window = &rest[..rest.len().min(MAX_MESSAGE)];
    let hend = match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => p + 4,
        None if rest.len() >= MAX_MESSAGE => return Err(ParseError::TooLarge),
        None => return Ok(None),
    };
    let mut cl: Option<u64> = None;
    let head = &rest[..hend];
    // Skip the start line, then look for Content-Length / `l` at the start of a header line.
    let mut pos = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |p| p + 1);
    while pos < head.len() {
        let line_end = head[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| pos + p + 1);
        let line = &head[pos..line_end];
        let start = pos;
        pos = line_end;
        if line.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if eq_ic(name, b"Content-Length") || eq_ic(name, b"l") {
            // RFC 3261 §7.3.1: the value may be folded onto continuation lines
            // (`Content-Length:` CRLF SP `150`); take them along.
            let mut value_end = line_end;
            while value_end < head.len() && matches!(head[value_end], b' ' | b'\t') {
                value_end = head[value_end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(head.len(), |p| value_end + p + 1);
            }
            pos = value_end;
            let v = parse_dec(
                trim(&head[start + colon + 1..value_end]),
                MAX_MESSAGE as u64,
            )
            .ok_or(ParseError::BadContentLength)?;
            if cl.is_some_and(|c| c != v) {
                return Err(ParseError::BadContentLength);
            }
            cl = Some(v);
        }
    }
    let cl = cl.ok_or(ParseError::MissingContentLength)? as usize;
    let len = hend + cl;
    if len > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    Ok((rest.len() >= len).then_some(Frame { skip, pings, len }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn keepalives_then_message() {
        let mut s = b"\r\n\r\n\r\n\r\n".to_vec();
        s.extend_from_slice(MSG);
        s.extend_from_slice(b"NEXT");
        let f = frame(&s).unwrap().unwrap();
        assert_eq!(
            f,
            Frame {
                skip: 8,
                pings: 2,
                len: MSG.len()
            }
        );
        assert_eq!(&s[f.skip..f.total()], MSG);
        assert_eq!(frame_len(&s).unwrap(), Some(8 + MSG.len()));
    }

    #[test]
    fn needs_more_bytes() {
        for cut in 0..MSG.len() {
            assert_eq!(frame(&MSG[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(frame(b"\r\n").unwrap(), None);
        assert_eq!(
            frame(b"\r\n\r\n").unwrap(),
            Some(Frame {
                skip: 4,
                pings: 1,
                len: 0
            })
        );
    }

    #[test]
    fn folded_content_length() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length   :\r\n  4\r\nX: y\r\n\r\nbodyNEXT";
        assert_eq!(frame_len(m).unwrap(), Some(m.len() - 4));
        let l = b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n\t2 \r\n\r\nbo";
        assert_eq!(frame_len(l).unwrap(), Some(l.len()));
    }

    #[test]
    fn stream_errors() {
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\n"),
            Err(ParseError::MissingContentLength)
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        let big = vec![b'a'; MAX_MESSAGE + 1];
        assert_eq!(frame(&big), Err(ParseError::TooLarge));
    }
}
