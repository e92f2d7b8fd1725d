//! Plain domain lists: one name per line.
//!
//! | line              | kind                | pattern       |
//! |-------------------|---------------------|---------------|
//! | `example.com`     | the file's `kind` (default suffix: the name and every name below it) | `example.com` |
//! | `.example.com`    | suffix              | `example.com` |
//! | `*.example.com`   | subdomains only (as RPZ `*.example.com`) | `example.com` |
//! | `=example.com`    | exactly this name   | `example.com` |
//!
//! `#` starts a comment anywhere on a line (a host name cannot hold `#`). A URL (`://` or `/`) or
//! a name with spaces is an error: such a line was meant for another list, and guessing would
//! block the wrong thing. The name itself is checked by the compiler.

use super::{Ctx, LineError};
use crate::rule::Kind;
use std::net::IpAddr;

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
        let name = t.split('#').next().unwrap_or(t).trim_end();
        match classify(name, ctx.defaults.domain_kind) {
            Ok((kind, pattern)) => ctx.rule(kind, pattern, line),
            Err(reason) => ctx.bad(line, reason)?,
        }
    }
    Ok(())
}

fn classify(name: &str, bare: Kind) -> Result<(Kind, &str), String> {
    if name.contains("://") || name.contains('/') {
        return Err(format!(
            "`{name}` is a URL, not a domain: put it in a urls list"
        ));
    }
    if name.starts_with("||") || name.starts_with("@@") {
        return Err(format!(
            "`{name}` is an Adblock rule, not a domain: read this file as format adblock"
        ));
    }
    if name.contains(char::is_whitespace) {
        let first = name.split_whitespace().next().unwrap_or("");
        if first.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{name}` is a hosts-file line (address, then names): read this file as format hosts"
            ));
        }
        return Err(format!(
            "`{name}` has spaces inside: a domain name cannot hold spaces"
        ));
    }
    let (kind, rest, marker) = if let Some(r) = name.strip_prefix("*.") {
        (Kind::DomainSubdomains, r, "*.")
    } else if let Some(r) = name.strip_prefix('=') {
        (Kind::DomainExact, r, "=")
    } else if let Some(r) = name.strip_prefix('.') {
        (Kind::DomainSuffix, r, ".")
    } else {
        (bare, name, "")
    };
    if rest.is_empty() {
        return Err(format!("no domain name after `{marker}`"));
    }
    if rest.contains('*') {
        return Err(format!(
            "`{name}`: a wildcard is only allowed as the whole first label (`*.example.com`)"
        ));
    }
    Ok((kind, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::{Action, Kind};

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::Domains, "");
        o.lenient = lenient;
        o
    }

    const GOOD: &str = include_str!("../../testdata/formats/good.domains");
    const BAD: &str = include_str!("../../testdata/formats/bad.domains");

    #[test]
    fn golden_good() {
        let p = parse_source(GOOD, "lists/good.domains", &opts(false)).unwrap();
        let got: Vec<_> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.kind, r.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, Kind::DomainSuffix, "icbc-secure-login.example"),
                (5, Kind::DomainSuffix, "apple-id-verify.example"),
                (6, Kind::DomainSubdomains, "cdn-phish.example"),
                (7, Kind::DomainExact, "pay.shop-refund.example"),
                (8, Kind::DomainSuffix, "xn--fiqs8s-scam.example"),
                (10, Kind::DomainSuffix, "Mixed-Case.EXAMPLE."),
                (11, Kind::DomainSuffix, "银行-安全.example"),
            ]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.action == Action::Block && r.category == "phishing" && r.source == "good"));
    }

    #[test]
    fn golden_bad_strict_and_lenient() {
        let e = parse_source(BAD, "bad.domains", &opts(false)).unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (3, "bad.domains"));
        assert!(
            e.reason
                .contains("a URL, not a domain: put it in a urls list"),
            "{e}"
        );

        let p = parse_source(BAD, "bad.domains", &opts(true)).unwrap();
        let got: Vec<(u32, &str)> = p
            .skipped
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        let expect = [
            (3, "a URL, not a domain"),
            (4, "a URL, not a domain"),
            (5, "cannot hold spaces"),
            (7, "format hosts"),
            (8, "no domain name after `*.`"),
            (9, "no domain name after `=`"),
            (10, "wildcard is only allowed"),
            (11, "format adblock"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for ((line, reason), (el, needle)) in got.iter().zip(expect) {
            assert_eq!(*line, el);
            assert!(reason.contains(needle), "line {line}: {reason}");
        }
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(
            good,
            vec![(2, "ok.example"), (6, "fine.example"), (12, "last.example")]
        );
    }

    #[test]
    fn kind_directive_applies_to_bare_names_only() {
        let text =
            "# dragnet: kind=exact action=allow\nbank.example\n*.cdn.example\n.wide.example\n";
        let p = parse_source(text, "f", &opts(false)).unwrap();
        let kinds: Vec<Kind> = p.rules.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::DomainExact,
                Kind::DomainSubdomains,
                Kind::DomainSuffix
            ]
        );
        assert!(p.rules.iter().all(|r| r.action == Action::Allow));
        let p = parse_source("# dragnet: kind=subdomains\nx.example\n", "f", &opts(false)).unwrap();
        assert_eq!(p.rules[0].kind, Kind::DomainSubdomains);
    }
}
