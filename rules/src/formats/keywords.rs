//! Keyword lists: one keyword or phrase per line, UTF-8 (`安全账户`, `verify your account`),
//! looked for in message text and URLs.
//!
//! Surrounding whitespace (Unicode `White_Space`, so the ideographic space U+3000 too) is trimmed
//! and internal spaces are kept as written. A line whose first non-blank character is `#` is a
//! comment; a `#` anywhere else is part of the keyword, and `\#` at the start writes a keyword
//! that begins with `#` (`\#1 prize` is the keyword `#1 prize`). A keyword with a control
//! character other than tab is an error.

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
        let keyword = t
            .strip_prefix('\\')
            .filter(|rest| rest.starts_with('#'))
            .unwrap_or(t);
        // A control character (NUL, ESC, …) in a keyword means a binary or mis-encoded file,
        // not a phrase anyone types; tab is allowed as a space.
        if let Some(c) = keyword.chars().find(|c| c.is_control() && *c != '\t') {
            ctx.bad(
                line,
                format!(
                    "the keyword holds the control character U+{:04X}: is this a text file?",
                    u32::from(c)
                ),
            )?;
            continue;
        }
        ctx.rule(Kind::Keyword, keyword, line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::{Action, Kind};

    const GOOD: &str = include_str!("../../testdata/formats/good.keywords");

    #[test]
    fn golden_good() {
        let o = SourceOptions::new(Format::Keywords, "sms-scam");
        let p = parse_source(GOOD, "good.keywords", &o).unwrap();
        let got: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "安全账户"),
                (4, "verify your account"),
                (5, "点击链接  领取补贴"),
                (6, "#1 prize"),
                (7, "cost: 100% free # not a comment"),
                (9, "解冻 资金"),
                (10, "\\not an escape"),
            ]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.kind == Kind::Keyword && r.action == Action::Warn && r.category == "sms"));
        assert!(p.skipped.is_empty() && p.notes.is_empty());
    }

    const BAD: &str = include_str!("../../testdata/formats/bad.keywords");

    #[test]
    fn golden_bad_strict_and_lenient() {
        let mut o = SourceOptions::new(Format::Keywords, "sms-scam");
        let e = parse_source(BAD, "bad.keywords", &o).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("U+0000"), "{e}");
        o.lenient = true;
        let p = parse_source(BAD, "bad.keywords", &o).unwrap();
        let lines: Vec<u32> = p.skipped.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4]);
        assert!(p.skipped[1].reason.contains("U+001B"));
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(3, "tab\tinside"), (5, "ok")]);
    }
}
