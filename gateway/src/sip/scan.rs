//! Byte-level helpers shared by the SIP parsers: whitespace, tokens, numbers, quoted strings,
//! parameter lists and the lazy unfolding of folded header values. Nothing here allocates.

/// RFC 3261 §25.1: `WSP = SP / HTAB`. Inside a header value a fold (`CRLF 1*WSP`, §7.3.1) is
/// equivalent to one SP, so the structured parsers treat CR and LF as linear white space too.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 §25.1: `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")`.
const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

/// RFC 3261 §25.1 `token` characters, as a table (this test runs for every byte of every name).
static TOKEN: [bool; 256] = token_table();

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

pub(crate) fn all_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Strips linear white space (including folds) from both ends.
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_lws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// Case-insensitive ASCII comparison (header names, schemes, parameter names: RFC 3261 §7.3.1).
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A decimal number of at most `max`, digits only. Leading zeros are allowed (RFC 4475 §3.1.1.1
/// has `Max-Forwards: 0068`); an empty string, a sign or an overflow is refused.
pub(crate) fn parse_dec(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Index just past a quoted string starting at `s[i] == '"'` (RFC 3261 §25.1 `quoted-string`,
/// with `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`), or `None` if it never closes.
pub(crate) fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Finds `needle` in `s` at or after `from`, skipping quoted strings and `<...>` so that a
/// separator inside a display name or a URI is not taken for a header-level one.
pub(crate) fn find_outside(s: &[u8], from: usize, needle: u8) -> Option<usize> {
    let mut i = from;
    let mut in_angle = false;
    while i < s.len() {
        let b = s[i];
        if b == b'"' && !in_angle {
            i = quoted_end(s, i)?;
            continue;
        }
        if b == b'<' {
            in_angle = true;
        } else if b == b'>' {
            in_angle = false;
        } else if b == needle && !in_angle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Iterator over the comma-separated elements of a header value (RFC 3261 §7.3.1: a header
/// with a comma-separated list may be split over several header lines and vice versa). Commas
/// inside quoted strings and `<...>` do not split. Empty elements are skipped.
#[derive(Debug, Clone)]
pub struct CommaList<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> CommaList<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        CommaList { s, pos: 0 }
    }

    /// Offset into the value where the element returned next would start, and the raw rest.
    pub(crate) fn rest_offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.s.len() {
            let start = self.pos;
            let end = find_outside(self.s, start, b',').unwrap_or(self.s.len());
            self.pos = end + 1;
            let item = trim(self.s.get(start..end).unwrap_or(&[]));
            if !item.is_empty() {
                return Some(item);
            }
        }
        None
    }
}

/// One `;name[=value]` parameter (RFC 3261 §25.1 `generic-param`). `value` is `None` for a
/// flag parameter (`;lr`, `;rport`) and keeps its quotes if it was a quoted string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Iterator over a `*( SEMI param )` list, where the input starts just after the first `;` or
/// is empty. Linear white space around `;` and `=` is allowed (RFC 3261 §25.1 `SEMI`, `EQUAL`).
/// A malformed parameter ends the iteration with `Some(Err(()))` once.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    s: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Params<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Params {
            s,
            pos: 0,
            failed: false,
        }
    }

    /// The value of the first parameter called `name` (case-insensitive), `Some(None)` for a
    /// flag, `None` if absent or the list is malformed before it.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.clone()
            .map_while(Result::ok)
            .find(|p| eq_ic(p.name, name))
            .map(|p| p.value)
    }

    /// True if every parameter is well formed.
    pub fn valid(&self) -> bool {
        self.clone().all(|p| p.is_ok())
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, ()>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let s = self.s;
        let mut i = skip_lws(s, self.pos);
        if i >= s.len() {
            return None;
        }
        let fail = |me: &mut Self| {
            me.failed = true;
            Some(Err(()))
        };
        let ns = i;
        while i < s.len()
            && (is_token(s[i]) || matches!(s[i], b'[' | b']' | b':' | b'/' | b'&' | b'$'))
        {
            i += 1;
        }
        let name = &s[ns..i];
        if name.is_empty() {
            return fail(self);
        }
        i = skip_lws(s, i);
        let mut value = None;
        if i < s.len() && s[i] == b'=' {
            i = skip_lws(s, i + 1);
            let vs = i;
            if i < s.len() && s[i] == b'"' {
                match quoted_end(s, i) {
                    Some(e) => i = e,
                    None => return fail(self),
                }
            } else {
                while i < s.len() && !is_lws(s[i]) && s[i] != b';' {
                    if matches!(s[i], b'"' | b'<' | b'>' | b',') {
                        return fail(self);
                    }
                    i += 1;
                }
            }
            if i == vs {
                return fail(self);
            }
            value = Some(&s[vs..i]);
            i = skip_lws(s, i);
        }
        if i < s.len() {
            if s[i] != b';' {
                return fail(self);
            }
            i += 1;
        }
        self.pos = i;
        Some(Ok(Param { name, value }))
    }
}

/// Lazily unfolds a raw header value: every fold (`[CR] LF 1*WSP`, RFC 3261 §7.3.1) becomes one
/// SP; other bytes are yielded unchanged. No allocation: the caller collects if it must.
#[derive(Debug, Clone)]
pub struct Unfold<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Unfold<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Unfold { s, pos: 0 }
    }
}

impl Iterator for Unfold<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.pos)?;
        if b == b'\r' || b == b'\n' {
            let mut j = self.pos;
            while j < self.s.len() && is_lws(self.s[j]) {
                j += 1;
            }
            self.pos = j;
            return Some(b' ');
        }
        self.pos += 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn params_with_lws_and_flags() {
        let p: Vec<_> = Params::new(b" branch = z9hG4bK1 ; rport ;received=1.2.3.4")
            .map(Result::unwrap)
            .collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].value, Some(&b"z9hG4bK1"[..]));
        assert_eq!(p[1].name, b"rport");
        assert_eq!(p[1].value, None);
        assert!(!Params::new(b"a=\"x").valid());
        assert!(Params::new(b"").next().is_none());
    }

    #[test]
    fn comma_list_respects_quotes_and_angles() {
        let v: Vec<_> = CommaList::new(b"\"a,b\" <sip:x;y=1,2>, <sip:z> ,,").collect();
        assert_eq!(v, vec![&b"\"a,b\" <sip:x;y=1,2>"[..], &b"<sip:z>"[..]]);
    }

    #[test]
    fn unfold_replaces_each_fold_by_one_space() {
        let v: Vec<u8> = Unfold::new(b"a\r\n  b\r\n\tc").collect();
        assert_eq!(v, b"a b c");
    }

    #[test]
    fn dec_bounds() {
        assert_eq!(parse_dec(b"0068", 255), Some(68));
        assert_eq!(parse_dec(b"256", 255), None);
        assert_eq!(parse_dec(b"-1", 255), None);
        assert_eq!(parse_dec(b"", 255), None);
        assert_eq!(parse_dec(b"99999999999999999999999", u64::MAX), None);
    }
}
