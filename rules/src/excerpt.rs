//! Short text kept inline in error values, so that errors on the hot path (a malformed number
//! or host name in a packet) are `Copy` and building one allocates nothing.

use std::fmt::{self, Write as _};

/// The start (up to `N` bytes) of the text an error is about. Always valid UTF-8, cut on a
/// character boundary; [`Excerpt::is_truncated`] says whether anything was cut.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Excerpt<const N: usize> {
    buf: [u8; N],
    len: u8,
    truncated: bool,
}

impl<const N: usize> Excerpt<N> {
    /// `N` must be < 256 (the length is a `u8`); every use in this crate is ≤ 63.
    pub(crate) fn new(text: &str) -> Self {
        let mut end = text.len().min(N).min(u8::MAX as usize);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; N];
        buf[..end].copy_from_slice(&text.as_bytes()[..end]);
        Excerpt {
            buf,
            len: end as u8,
            truncated: end < text.len(),
        }
    }

    /// From bytes that should be ASCII; any other byte is shown as `?` so the text stays UTF-8.
    pub(crate) fn from_ascii(bytes: &[u8]) -> Self {
        let end = bytes.len().min(N).min(u8::MAX as usize);
        let mut buf = [0u8; N];
        for (d, &s) in buf.iter_mut().zip(&bytes[..end]) {
            *d = if s.is_ascii() { s } else { b'?' };
        }
        Excerpt {
            buf,
            len: end as u8,
            truncated: end < bytes.len(),
        }
    }

    /// The text as kept (possibly only its start).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    /// True when the text was longer than what is kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> fmt::Display for Excerpt<N> {
    /// Control characters are escaped so that a log line stays one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.as_str().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        if self.truncated {
            f.write_char('…')?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Excerpt<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}
