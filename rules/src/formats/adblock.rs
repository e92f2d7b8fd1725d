//! Adblock-style filter lists: only the network rule `||domain^` is used.
//!
//! - `||example.com^` blocks `example.com` and every name below it ([`Kind::DomainSuffix`]): `||`
//!   anchors at the start of a host name label and `^` is a separator, so together they match
//!   on label boundaries.
//! - `@@||example.com^` is an exception: an allow rule.
//! - The options `$important`, `$all` and `$document` keep the rule's meaning for whole-domain
//!   blocking and are accepted.
//!
//! Everything else is legitimate filter syntax that a DNS/SNI gateway cannot honour, and is noted,
//! not refused: element hiding (`##`, `#@#`, `#?#`, …), rules with other options
//! (`$third-party`, `$script`, `$domain=…`), path rules (`||example.com/ads/`), `||name` without
//! `^`, regular expressions (`/…/`) and plain substrings. `!` starts a comment; the
//! `[Adblock Plus 2.0]` header line is skipped. `||^` (no domain) is an error.

use super::{Ctx, LineError};
use crate::rule::{Action, Kind};

const UNSUPPORTED: &str = "unsupported Adblock rule: only ||domain^ is used";

pub(crate) fn parse(text: &str, ctx: &mut Ctx) -> Result<(), LineError> {
    for (line, raw) in super::lines(text) {
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(comment) = t.strip_prefix('!') {
            ctx.comment(line, comment)?;
            continue;
        }
        // `[Adblock Plus 2.0]`, `[uBlock Origin]`: the list's header, naming its syntax.
        if t.starts_with('[') && t.ends_with(']') {
            continue;
        }
        // `# text` is a comment in many published lists; element hiding always has a second
        // marker character (`##`, `#@#`, `#?#`, `#$#`, `#%#`).
        if t == "#" || t.starts_with("# ") || t.starts_with("#\t") {
            continue;
        }
        match classify(t) {
            Line::Rule { allow, domain } => {
                let action = if allow {
                    Action::Allow
                } else {
                    ctx.defaults.action
                };
                ctx.rule_with(Kind::DomainSuffix, domain, line, action, None);
            }
            Line::Unsupported(what) => ctx.note(line, || format!("{UNSUPPORTED} ({what})")),
            Line::Bad(reason) => ctx.bad(line, reason)?,
        }
    }
    Ok(())
}

enum Line<'a> {
    Rule { allow: bool, domain: &'a str },
    Unsupported(&'static str),
    Bad(String),
}

fn classify(t: &str) -> Line<'_> {
    const COSMETIC: [&str; 8] = ["##", "#@#", "#?#", "#@?#", "#$#", "#@$#", "#%#", "#@%#"];
    if COSMETIC.iter().any(|m| t.contains(m)) {
        return Line::Unsupported("element hiding");
    }
    let (allow, body) = match t.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let Some(rest) = body.strip_prefix("||") else {
        return Line::Unsupported(
            if body.len() > 1 && body.starts_with('/') && body.ends_with('/') {
                "regular expression"
            } else {
                "not anchored with ||"
            },
        );
    };
    let (pattern, options) = match rest.split_once('$') {
        Some((p, o)) => (p, Some(o)),
        None => (rest, None),
    };
    let name = pattern
        .strip_suffix("^|")
        .or_else(|| pattern.strip_suffix('^'));
    if name.unwrap_or(pattern).is_empty() {
        return Line::Bad(format!("`{t}` names no domain between `||` and `^`"));
    }
    if t.contains(char::is_whitespace) {
        return Line::Bad(format!("`{t}`: an Adblock filter cannot hold spaces"));
    }
    let Some(domain) = name else {
        return Line::Unsupported(if pattern.contains('/') {
            "path rule"
        } else {
            "no ^ after the domain"
        });
    };
    if domain.contains(['/', '^', '|', '*', '?', '=', '&', ':', '%', '#']) {
        return Line::Unsupported("not a plain domain before ^");
    }
    if let Some(options) = options {
        let ok = options.split(',').all(|o| {
            let o = o.trim();
            ["important", "all", "document", "doc"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(o))
        });
        if !ok {
            return Line::Unsupported("options other than $important, $all, $document");
        }
    }
    Line::Rule { allow, domain }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::{Action, Kind};

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::Adblock, "easylist-cn");
        o.lenient = lenient;
        o
    }

    const GOOD: &str = include_str!("../../testdata/formats/good.adblock");
    const BAD: &str = include_str!("../../testdata/formats/bad.adblock");

    #[test]
    fn golden_good() {
        let p = parse_source(GOOD, "good.adblock", &opts(false)).unwrap();
        let got: Vec<(u32, Action, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.action, r.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (6, Action::Tag, "ads.example"),
                (7, Action::Tag, "tracker.example"),
                (8, Action::Tag, "popup.example"),
                (9, Action::Tag, "malware.example"),
                (10, Action::Allow, "cdn.ads.example"),
                (11, Action::Allow, "ok.example"),
            ]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.kind == Kind::DomainSuffix && r.category == "ads"));
        let notes: Vec<(u32, &str)> = p
            .notes
            .iter()
            .map(|n| (n.line, n.reason.as_str()))
            .collect();
        let expect = [
            (13, "element hiding"),
            (14, "element hiding"),
            (15, "element hiding"),
            (16, "element hiding"),
            (17, "options other than"),
            (18, "options other than"),
            (19, "path rule"),
            (20, "regular expression"),
            (21, "not anchored"),
            (22, "not anchored"),
            (23, "no ^ after the domain"),
            (24, "not a plain domain"),
        ];
        assert_eq!(notes.len(), expect.len(), "{notes:#?}");
        for ((l, r), (el, needle)) in notes.iter().zip(expect) {
            assert_eq!(*l, el);
            assert!(
                r.starts_with("unsupported Adblock rule: only ||domain^ is used"),
                "{r}"
            );
            assert!(r.contains(needle), "line {l}: {r}");
        }
    }

    #[test]
    fn golden_bad_strict_and_lenient() {
        let e = parse_source(BAD, "bad.adblock", &opts(false)).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("names no domain"), "{e}");
        let p = parse_source(BAD, "bad.adblock", &opts(true)).unwrap();
        let lines: Vec<u32> = p.skipped.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 8]);
        assert!(p.skipped[4].reason.contains("cannot hold spaces"));
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(2, "ok.example"), (7, "fine.example")]);
    }

    #[test]
    fn hash_directive_is_not_read_in_adblock() {
        // Adblock comments start with `!`; a `#` line is a comment but never a directive.
        let p = parse_source("# dragnet: action=allow\n||x.example^\n", "f", &opts(false)).unwrap();
        assert_eq!(p.rules[0].action, Action::Block);
        let p = parse_source("! dragnet: action=allow\n||x.example^\n", "f", &opts(false)).unwrap();
        assert_eq!(p.rules[0].action, Action::Allow);
    }
}
