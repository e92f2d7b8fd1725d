//! Hosts files: `ADDRESS name [name…]  # comment` (hosts(5)), as published by blocklist projects
//! (`0.0.0.0 evil.example`).
//!
//! Every name becomes an exact-name rule ([`Kind::DomainExact`]): a hosts file maps single names,
//! it never covers the names below them. The address must be an IP address (IPv6 with a `%zone`
//! is accepted); it only proves the line is a hosts line: the DNS plane answers with its own
//! configured sinkhole, so the address is not kept.
//!
//! The machine's own names that every hosts file carries (`localhost`, `broadcasthost`,
//! `ip6-*`, …) are not rules: each line holding them gets one note.

use super::{Ctx, LineError};
use crate::rule::Kind;
use std::net::IpAddr;

pub(crate) fn parse(text: &str, ctx: &mut Ctx) -> Result<(), LineError> {
    for (line, raw) in super::lines(text) {
        let t = raw.trim();
        if let Some(comment) = t.strip_prefix('#') {
            ctx.comment(line, comment)?;
            continue;
        }
        // hosts(5): "Text from a # character until the end of the line is a comment".
        let content = t.split('#').next().unwrap_or(t);
        let mut tokens = content.split_whitespace();
        let Some(addr) = tokens.next() else {
            continue;
        };
        // RFC 4007 §11: a scoped IPv6 address carries its zone after `%` (`fe80::1%lo0`).
        let bare = addr.split('%').next().unwrap_or(addr);
        if bare.parse::<IpAddr>().is_err() {
            ctx.bad(
                line,
                format!("`{addr}` is not an IP address: a hosts line is `ADDRESS name [name…]` (a plain list of names is format domains)"),
            )?;
            continue;
        }
        let mut names = tokens.peekable();
        if names.peek().is_none() {
            ctx.bad(line, format!("address `{addr}` with no host name after it"))?;
            continue;
        }
        let mut local: Vec<&str> = Vec::new();
        for name in names {
            if is_local_name(name) {
                local.push(name);
            } else {
                ctx.rule(Kind::DomainExact, name, line);
            }
        }
        if !local.is_empty() {
            ctx.note(line, || {
                format!(
                    "`{}`: the machine's own name, not a rule; ignored",
                    local.join(" ")
                )
            });
        }
    }
    Ok(())
}

/// Names a hosts file gives the machine itself (Debian's, Red Hat's and macOS's default
/// `/etc/hosts`), and the `0.0.0.0 0.0.0.0` line of some blocklists.
fn is_local_name(name: &str) -> bool {
    const LOCAL: [&str; 9] = [
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "0.0.0.0",
        "localhost4",
        "localhost6",
        "localhost4.localdomain4",
        "localhost6.localdomain6",
    ];
    LOCAL.iter().any(|l| l.eq_ignore_ascii_case(name))
        || name
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("ip6-"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, SourceOptions};
    use crate::rule::{Action, Kind};

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::Hosts, "hosts-feed");
        o.lenient = lenient;
        o
    }

    const GOOD: &str = include_str!("../../testdata/formats/good.hosts");
    const BAD: &str = include_str!("../../testdata/formats/bad.hosts");

    #[test]
    fn golden_good() {
        let p = parse_source(GOOD, "good.hosts", &opts(false)).unwrap();
        let got: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (12, "scam-lottery.example"),
                (13, "fake-bank.example"),
                (13, "www.fake-bank.example"),
                (14, "tracker.example"),
                (15, "v6-phish.example"),
                (16, "zoned.example"),
                (18, "last.example"),
            ]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.kind == Kind::DomainExact && r.action == Action::Warn && r.dns.is_none()));
        let notes: Vec<u32> = p.notes.iter().map(|n| n.line).collect();
        assert_eq!(notes, vec![5, 6, 7, 8, 9, 17]);
        assert!(p.notes[0].reason.contains("`localhost`"), "{}", p.notes[0]);
        assert!(p.notes[2]
            .reason
            .contains("`localhost ip6-localhost ip6-loopback`"));
    }

    #[test]
    fn golden_bad_strict_and_lenient() {
        let e = parse_source(BAD, "bad.hosts", &opts(false)).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.reason.contains("`evil.example` is not an IP address"),
            "{e}"
        );
        let p = parse_source(BAD, "bad.hosts", &opts(true)).unwrap();
        let lines: Vec<u32> = p.skipped.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6]);
        assert!(p.skipped[1].reason.contains("`999.1.1.1`"));
        assert!(p.skipped[2].reason.contains("no host name"));
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(4, "ok.example"), (7, "also-ok.example")]);
    }

    #[test]
    fn local_names() {
        for n in [
            "localhost",
            "LOCALHOST",
            "ip6-allnodes",
            "ip6-mcastprefix",
            "broadcasthost",
            "0.0.0.0",
        ] {
            assert!(super::is_local_name(n), "{n}");
        }
        for n in [
            "localhost.evil.example",
            "ip6",
            "local.example",
            "ip6.example",
        ] {
            assert!(!super::is_local_name(n), "{n}");
        }
    }
}
