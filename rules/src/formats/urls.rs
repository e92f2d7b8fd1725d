//! URL lists: one URL or Safe Browsing expression per line (`evil.example/login/`,
//! `https://evil.example/pay?x=1`), matched by the compiler's canonical form (Google Safe
//! Browsing "URLs and Hashing": host suffix × path prefix expressions, a path ending in `/` is a
//! prefix).
//!
//! `#` starts a comment only at the start of a line or after whitespace: inside a URL it is the
//! fragment (`https://x.example/#/login`), which canonicalisation drops but which must not cut the
//! line. A line with spaces inside the URL is an error (write `%20`).

use super::{Ctx, LineError};
use crate::rule::Kind;

pub(crate) fn parse(text: &str, ctx: &mut Ctx) -> Result<(), LineError> {
    for (line, raw) in super::lines(text) {
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(comment) = t.strip_prefix('#') {
            ctx.comment(line, comment)?;
            continue;
        }
        let url = strip_comment(t).trim_end();
        if url.contains(char::is_whitespace) {
            ctx.bad(
                line,
                format!("`{url}` has spaces inside: a URL cannot hold spaces (write them as %20)"),
            )?;
            continue;
        }
        ctx.rule(Kind::Url, url, line);
    }
    Ok(())
}

/// The line up to a `#` that follows whitespace.
fn strip_comment(t: &str) -> &str {
    let mut prev_space = false;
    for (i, c) in t.char_indices() {
        if c == '#' && prev_space {
            return &t[..i];
        }
        prev_space = c.is_whitespace();
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::Kind;

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::Urls, "");
        o.lenient = lenient;
        o
    }

    const GOOD: &str = include_str!("../../testdata/formats/good.urls");
    const BAD: &str = include_str!("../../testdata/formats/bad.urls");

    #[test]
    fn golden_good() {
        let p = parse_source(GOOD, "good.urls", &opts(false)).unwrap();
        let got: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "evil.example/login/"),
                (4, "https://evil.example/pay?x=1"),
                (5, "https://spa.example/#/account/verify"),
                (6, "http://short.example/a#b"),
                (7, "http://[2001:db8::1]/bank/"),
                (9, "HTTP://Mixed.Example/%7Euser/"),
            ]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.kind == Kind::Url && r.category == "phishing"));
        assert_eq!(p.rules[0].source, "good");
    }

    #[test]
    fn golden_bad_strict_and_lenient() {
        let e = parse_source(BAD, "bad.urls", &opts(false)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("%20"), "{e}");
        let p = parse_source(BAD, "bad.urls", &opts(true)).unwrap();
        let lines: Vec<u32> = p.skipped.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4]);
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(3, "ok.example/")]);
    }
}
