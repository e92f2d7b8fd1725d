//! RPZ policy zones (draft-vixie-dnsop-dns-rpz) in master-file syntax (RFC 1035 §5).
//!
//! The reader handles what zone files published by RPZ feeds use: `$ORIGIN`, `$TTL` (RFC 2308
//! §4), `;` comments, quoted strings, records spread over lines with `( … )`, a blank owner that
//! repeats the previous record's owner, `@` for the origin, an optional TTL and class `IN` in
//! either order, and relative and absolute owner names. `$INCLUDE` and BIND's `$GENERATE` are
//! refused: a policy zone is read from one file.
//!
//! The policy zone's own name comes from the SOA owner, else the first `$ORIGIN`, else the file
//! stem (`feed.rpz` → `feed.`). Owner names are taken relative to it: `evil.example` and
//! `evil.example.rpz.example.` in zone `rpz.example.` are the same trigger; an absolute owner
//! outside the zone is an error. The SOA serial is returned in [`Parsed::serial`](super::Parsed);
//! NS records at the apex are ignored.
//!
//! Only QNAME triggers are used (§4.1 of the draft): `x` is exactly `x` and `*.x` is every name
//! below `x` ([`Kind::DomainSubdomains`]). Owners with an `rpz-ip`, `rpz-nsdname`, `rpz-nsip` or
//! `rpz-client-ip` label are other triggers and are noted, not used. Actions (§5 of the draft):
//!
//! | record                        | rule                                             |
//! |-------------------------------|--------------------------------------------------|
//! | `CNAME .`                     | block, NXDOMAIN                                  |
//! | `CNAME *.`                    | block, NODATA                                    |
//! | `CNAME rpz-passthru.`         | allow (PASSTHRU); also the older `CNAME <the trigger name itself>.` |
//! | `CNAME rpz-drop.`             | block, no answer                                 |
//! | `CNAME rpz-tcp-only.`         | block, TCP only                                  |
//! | `CNAME garden.example.`       | warn, answer with a CNAME to `garden.example` (a `*.` target is kept as written: the plane puts the query name in its place) |
//! | `A` / `AAAA`                  | warn, answer with these addresses; all A/AAAA of one owner make one rule (at the first record's line) |
//! | any other type (TXT, MX, …)   | noted, not used                                  |
//!
//! A CNAME cannot share its owner with other records (RFC 1034 §3.6.2), so a second policy record
//! for one trigger is an error. The directive (`; dragnet: category=malware`) cannot set `action`:
//! each record gives its own.

use super::{Ctx, LineError};
use crate::rule::{Action, DnsAction, Kind};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One token of a record: a name, number, type or quoted string (quotes kept).
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    text: &'a str,
    quoted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZoneFrom {
    Nothing,
    Origin,
    Soa,
}

/// What the reader knows about the zone so far.
struct Zone {
    /// `<file stem>.`: the zone's name when the file gives none.
    stem_origin: String,
    /// The policy zone's name, absolute (ends in `.`).
    zone: Option<String>,
    zone_from: ZoneFrom,
    /// Set once an owner has been taken relative to `zone`; from then on the zone's name is fixed.
    locked: bool,
    /// The `$ORIGIN` in force (RFC 1035 §5.1).
    origin: Option<String>,
    /// The previous record's owner, absolute: a blank owner repeats it.
    last_owner: Option<String>,
    /// Trigger (lower case, with its `*.`) → (index in the rules, is A/AAAA local data, line).
    owners: HashMap<String, (usize, bool, u32)>,
}

impl Zone {
    /// The origin relative names are completed with.
    fn origin(&self) -> &str {
        self.origin
            .as_deref()
            .or(self.zone.as_deref())
            .unwrap_or(&self.stem_origin)
    }

    /// The policy zone's name, fixed from the first use on.
    fn policy_zone(&mut self) -> &str {
        self.locked = true;
        self.zone.get_or_insert_with(|| self.stem_origin.clone())
    }

    /// RFC 1035 §5.1: a name without a final dot is relative to the origin; `@` is the origin.
    fn absolute(&self, name: &str) -> String {
        if name == "@" {
            return self.origin().to_string();
        }
        if is_absolute(name) {
            return name.to_string();
        }
        let origin = self.origin();
        if origin == "." {
            format!("{name}.")
        } else {
            format!("{name}.{origin}")
        }
    }
}

fn is_absolute(name: &str) -> bool {
    name.ends_with('.') && !name.ends_with("\\.")
}

/// `owner` relative to `zone` (both absolute): `Some("")` for the apex, `None` when outside.
fn relative<'o>(owner: &'o str, zone: &str) -> Option<&'o str> {
    if zone == "." {
        return owner.strip_suffix('.');
    }
    if owner.eq_ignore_ascii_case(zone) {
        return Some("");
    }
    let cut = owner.len().checked_sub(zone.len() + 1)?;
    let head = owner.get(..cut)?;
    let tail = owner.get(cut..)?;
    let tail = tail.strip_prefix('.')?;
    (tail.eq_ignore_ascii_case(zone) && !head.is_empty()).then_some(head)
}

pub(crate) fn parse(text: &str, ctx: &mut Ctx) -> Result<(), LineError> {
    let stem = super::file_stem(&ctx.file);
    let mut z = Zone {
        stem_origin: if stem.is_empty() {
            ".".into()
        } else {
            format!("{stem}.")
        },
        zone: None,
        zone_from: ZoneFrom::Nothing,
        locked: false,
        origin: None,
        last_owner: None,
        owners: HashMap::new(),
    };
    let mut toks: Vec<Tok<'_>> = Vec::with_capacity(16);
    let mut rec_line = 0u32;
    let mut owner_blank = false;
    let mut paren: Option<u32> = None;
    for (line, raw) in super::lines(text) {
        let was_empty = toks.is_empty();
        let scanned = scan_line(raw, line, &mut toks, &mut paren);
        if was_empty && !toks.is_empty() {
            rec_line = line;
            owner_blank = raw.starts_with([' ', '\t']);
        }
        let comment = match scanned {
            Ok(c) => c,
            Err(reason) => {
                let at = if toks.is_empty() { line } else { rec_line };
                toks.clear();
                paren = None;
                ctx.bad(at, reason)?;
                continue;
            }
        };
        if paren.is_some() {
            continue;
        }
        if toks.is_empty() {
            if let Some(c) = comment {
                ctx.comment(line, c)?;
            }
            continue;
        }
        let result = record(&mut z, ctx, rec_line, owner_blank, &toks);
        toks.clear();
        if let Err(reason) = result {
            ctx.bad(rec_line, reason)?;
        }
    }
    if let Some(open) = paren {
        let at = if toks.is_empty() { open } else { rec_line };
        ctx.bad(at, format!("the `(` opened on line {open} is never closed"))?;
    }
    Ok(())
}

/// Split one line into tokens (appended to `toks`), tracking `( … )`. Returns the comment text.
fn scan_line<'a>(
    raw: &'a str,
    line: u32,
    toks: &mut Vec<Tok<'a>>,
    paren: &mut Option<u32>,
) -> Result<Option<&'a str>, String> {
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => return Ok(Some(raw.get(i + 1..).unwrap_or(""))),
            b'(' => {
                if paren.is_some() {
                    return Err("`(` inside `( … )`: parentheses do not nest".into());
                }
                *paren = Some(line);
                i += 1;
            }
            b')' => {
                if paren.is_none() {
                    return Err("`)` without an opening `(`".into());
                }
                *paren = None;
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err("a quoted string is not closed on its line".into()),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                toks.push(Tok {
                    text: raw.get(i..=j).unwrap_or(""),
                    quoted: true,
                });
                i = j + 1;
            }
            _ => {
                let start = i;
                while let Some(&c) = b.get(i) {
                    match c {
                        b' ' | b'\t' | b'\r' | b';' | b'(' | b')' | b'"' => break,
                        // RFC 1035 §5.1: `\X` quotes X, so `\;` or `\ ` is part of the name.
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                let end = i.min(b.len());
                toks.push(Tok {
                    text: raw.get(start..end).unwrap_or(""),
                    quoted: false,
                });
            }
        }
    }
    Ok(None)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Soa,
    Ns,
    Cname,
    A,
    Aaaa,
    /// A DNS type that carries no RPZ policy.
    Other,
    Unknown,
}

fn rr_type(s: &str) -> Ty {
    const OTHER: [&str; 53] = [
        "TXT",
        "MX",
        "PTR",
        "SRV",
        "NAPTR",
        "DNAME",
        "HINFO",
        "CAA",
        "DS",
        "DNSKEY",
        "RRSIG",
        "NSEC",
        "NSEC3",
        "NSEC3PARAM",
        "TLSA",
        "SSHFP",
        "SPF",
        "LOC",
        "SVCB",
        "HTTPS",
        "URI",
        "RP",
        "AFSDB",
        "CERT",
        "KEY",
        "SIG",
        "ZONEMD",
        "CDS",
        "CDNSKEY",
        "OPENPGPKEY",
        "SMIMEA",
        "NULL",
        "WKS",
        "MINFO",
        "MB",
        "MG",
        "MR",
        "X25",
        "ISDN",
        "RT",
        "NSAP",
        "PX",
        "KX",
        "APL",
        "DHCID",
        "HIP",
        "IPSECKEY",
        "EUI48",
        "EUI64",
        "CSYNC",
        "DLV",
        "A6",
        "NID",
    ];
    let is = |t: &str| s.eq_ignore_ascii_case(t);
    if is("SOA") {
        Ty::Soa
    } else if is("NS") {
        Ty::Ns
    } else if is("CNAME") {
        Ty::Cname
    } else if is("A") {
        Ty::A
    } else if is("AAAA") {
        Ty::Aaaa
    } else if OTHER.iter().any(|t| is(t)) || numbered(s, "TYPE") {
        Ty::Other
    } else {
        Ty::Unknown
    }
}

/// RFC 3597 §5: `TYPE65534`, `CLASS32`.
fn numbered(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        && s.len() > prefix.len()
        && s.bytes().skip(prefix.len()).all(|b| b.is_ascii_digit())
}

fn is_other_class(s: &str) -> bool {
    ["CH", "CHAOS", "HS", "HESIOD", "CS", "NONE", "ANY"]
        .iter()
        .any(|c| s.eq_ignore_ascii_case(c))
        || numbered(s, "CLASS")
}

/// A TTL: seconds, or BIND's `1h30m` units (s, m, h, d, w).
fn is_ttl(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let mut run = 0;
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
            if run > 10 {
                return false;
            }
        } else if run > 0 && matches!(c.to_ascii_lowercase(), b's' | b'm' | b'h' | b'd' | b'w') {
            run = 0;
        } else {
            return false;
        }
    }
    true
}

const OTHER_TRIGGERS: [&str; 4] = ["rpz-ip", "rpz-nsdname", "rpz-nsip", "rpz-client-ip"];

/// One complete record (or control entry). `Err` is the reason the record is bad.
fn record(
    z: &mut Zone,
    ctx: &mut Ctx,
    line: u32,
    owner_blank: bool,
    toks: &[Tok<'_>],
) -> Result<(), String> {
    let Some(first) = toks.first() else {
        return Ok(());
    };
    if !first.quoted && first.text.starts_with('$') {
        return control(z, first.text, toks.get(1..).unwrap_or(&[]));
    }
    let (owner_tok, mut i) = if owner_blank {
        (None, 0)
    } else {
        (Some(first), 1)
    };
    let mut seen_ttl = false;
    let mut seen_class = false;
    while let Some(t) = toks.get(i) {
        if t.quoted {
            break;
        }
        if !seen_class && t.text.eq_ignore_ascii_case("IN") {
            seen_class = true;
        } else if !seen_class && is_other_class(t.text) {
            return Err(format!("class `{}`: a policy zone is class IN", t.text));
        } else if !seen_ttl && is_ttl(t.text) {
            seen_ttl = true;
        } else {
            break;
        }
        i += 1;
    }
    let Some(ty_tok) = toks.get(i) else {
        return Err("the record has no type (expected e.g. `CNAME .` or `A 192.0.2.1`)".into());
    };
    let ty = if ty_tok.quoted {
        Ty::Unknown
    } else {
        rr_type(ty_tok.text)
    };
    if ty == Ty::Unknown {
        return Err(format!(
            "unknown record type `{}` (expected CNAME, A, AAAA, SOA, NS or another DNS type)",
            ty_tok.text
        ));
    }
    let rdata = toks.get(i + 1..).unwrap_or(&[]);

    let owner = match owner_tok {
        Some(t) if t.quoted => {
            return Err(format!("the owner name {} cannot be a quoted string", t.text));
        }
        Some(t) => z.absolute(t.text),
        None => z.last_owner.clone().ok_or(
            "the line starts with a blank, so it repeats the previous record's owner, but there is no previous record",
        )?,
    };
    z.last_owner = Some(owner.clone());

    if ty == Ty::Soa {
        return soa(z, ctx, &owner, rdata);
    }
    let zone = z.policy_zone();
    let Some(rel) = relative(&owner, zone) else {
        return Err(format!(
            "owner `{owner}` is not under the policy zone `{zone}` (an absolute name must end in the zone's name)"
        ));
    };
    if rel.contains('\\') {
        // RFC 1035 §5.1 escapes (`\ `, `\.`, `\DDD`) can put spaces, dots inside labels or any
        // octet in a name; a QNAME trigger is a host name and never needs one (found by the
        // format proptest: an escaped space ended up in a rule's pattern).
        return Err(format!(
            "owner `{rel}` uses a zone-file escape (\\): a QNAME trigger must be a plain host name"
        ));
    }
    let ty_name = ty_tok.text;
    if rel.is_empty() {
        return match ty {
            Ty::Ns => Ok(()),
            Ty::Cname | Ty::A | Ty::Aaaa => Err(format!(
                "a {ty_name} record at the zone apex names no domain: the owner of a policy record is the name it applies to"
            )),
            _ => {
                ctx.note(line, || format!("{ty_name} record at the zone apex: not a policy; ignored"));
                Ok(())
            }
        };
    }
    if let Some(label) = rel
        .split('.')
        .find(|l| OTHER_TRIGGERS.iter().any(|t| t.eq_ignore_ascii_case(l)))
    {
        ctx.note(line, || {
            format!("unsupported RPZ trigger `{label}` in `{rel}`: only QNAME triggers are used; record ignored")
        });
        return Ok(());
    }
    if matches!(ty, Ty::Ns | Ty::Other) {
        ctx.note(line, || {
            format!("{ty_name} record for `{rel}`: RPZ policy is given by CNAME or A/AAAA records; ignored")
        });
        return Ok(());
    }
    let (kind, name) = if rel == "*" {
        return Err("the owner `*` alone would match every name: write `*.example.com`".into());
    } else if let Some(r) = rel.strip_prefix("*.") {
        (Kind::DomainSubdomains, r)
    } else {
        (Kind::DomainExact, rel)
    };
    if name.contains('*') {
        return Err(format!(
            "`{rel}`: a wildcard is only allowed as the whole first label (`*.example.com`)"
        ));
    }
    let key = rel.to_ascii_lowercase();
    let existing = z.owners.get(&key).copied();

    if ty == Ty::Cname {
        let [target] = rdata else {
            return Err(format!(
                "CNAME needs exactly one target name, found {}",
                rdata.len()
            ));
        };
        if let Some((_, _, first)) = existing {
            return Err(format!(
                "`{rel}` already has a policy record on line {first}: a CNAME cannot share its owner with other records (RFC 1034 §3.6.2)"
            ));
        }
        let (action, dns) = cname_action(z, rel, target)?;
        let spec = ctx.spec(kind, name.to_string(), line, action, dns);
        let idx = ctx.out.rules.len();
        ctx.push(spec);
        z.owners.insert(key, (idx, false, line));
        return Ok(());
    }

    // A / AAAA local data.
    let [data] = rdata else {
        return Err(format!(
            "an {ty_name} record holds exactly one address, found {} fields",
            rdata.len()
        ));
    };
    let ip = if ty == Ty::A {
        data.text
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| format!("`{}` is not an IPv4 address (A record)", data.text))?
    } else {
        data.text
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("`{}` is not an IPv6 address (AAAA record)", data.text))?
    };
    match existing {
        Some((idx, true, _)) => {
            if let Some(DnsAction::Local(addrs)) =
                ctx.out.rules.get_mut(idx).and_then(|r| r.dns.as_mut())
            {
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
        Some((_, false, first)) => {
            return Err(format!(
                "`{rel}` already has a CNAME policy on line {first}: a CNAME cannot share its owner with other records (RFC 1034 §3.6.2)"
            ));
        }
        None => {
            let spec = ctx.spec(
                kind,
                name.to_string(),
                line,
                Action::Warn,
                Some(DnsAction::Local(vec![ip])),
            );
            let idx = ctx.out.rules.len();
            ctx.push(spec);
            z.owners.insert(key, (idx, true, line));
        }
    }
    Ok(())
}

/// The action a CNAME's target encodes (draft-vixie-dnsop-dns-rpz §5).
fn cname_action(
    z: &Zone,
    rel: &str,
    target: &Tok<'_>,
) -> Result<(Action, Option<DnsAction>), String> {
    let t = target.text;
    if target.quoted {
        return Err(format!("the CNAME target {t} cannot be a quoted string"));
    }
    let is = |s: &str| t.eq_ignore_ascii_case(s);
    Ok(if t == "." {
        (Action::Block, Some(DnsAction::NxDomain))
    } else if t == "*." {
        (Action::Block, Some(DnsAction::NoData))
    } else if is("rpz-passthru.") {
        (Action::Allow, None)
    } else if is("rpz-drop.") {
        (Action::Block, Some(DnsAction::Drop))
    } else if is("rpz-tcp-only.") {
        (Action::Block, Some(DnsAction::TcpOnly))
    } else if is("rpz-passthru") || is("rpz-drop") || is("rpz-tcp-only") {
        return Err(format!(
            "`CNAME {t}` without the final dot is the name {t}.{}: write `CNAME {t}.`",
            z.origin()
        ));
    } else {
        let abs = z.absolute(t);
        let name = abs.strip_suffix('.').unwrap_or(&abs);
        if name.eq_ignore_ascii_case(rel) {
            // The older PASSTHRU encoding: a CNAME to the trigger's own name.
            (Action::Allow, None)
        } else {
            (Action::Warn, Some(DnsAction::Redirect(name.to_string())))
        }
    })
}

/// `$ORIGIN`, `$TTL`, and the entries a one-file reader refuses.
fn control(z: &mut Zone, name: &str, args: &[Tok<'_>]) -> Result<(), String> {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    if is("$ORIGIN") {
        let [o] = args else {
            return Err("$ORIGIN needs exactly one domain name".into());
        };
        if o.quoted {
            return Err(format!("$ORIGIN {} cannot be a quoted string", o.text));
        }
        let abs = z.absolute(o.text);
        z.origin = Some(abs.clone());
        // Until an owner has been read against it, the zone's name follows `$ORIGIN` (an SOA,
        // when present, names the zone for certain).
        if !z.locked && z.zone_from != ZoneFrom::Soa {
            z.zone = Some(abs);
            z.zone_from = ZoneFrom::Origin;
        }
        Ok(())
    } else if is("$TTL") {
        match args {
            [t] if !t.quoted && is_ttl(t.text) => Ok(()),
            _ => Err("$TTL needs one time in seconds (or BIND units like 1h)".into()),
        }
    } else if is("$INCLUDE") {
        Err(
            "$INCLUDE is not supported: a policy zone is read from one file; merge the files first"
                .into(),
        )
    } else if is("$GENERATE") {
        Err("$GENERATE (a BIND extension) is not supported: expand the records first".into())
    } else {
        Err(format!(
            "unknown control entry `{name}` (RFC 1035 §5.1 has $ORIGIN and $INCLUDE, RFC 2308 §4 $TTL)"
        ))
    }
}

fn soa_fields(found: usize) -> String {
    format!("an SOA record needs 7 fields (primary server, mailbox, serial, refresh, retry, expire, minimum), found {found}")
}

/// RFC 1035 §3.3.13: MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM.
fn soa(z: &mut Zone, ctx: &mut Ctx, owner: &str, rdata: &[Tok<'_>]) -> Result<(), String> {
    let [_mname, _rname, serial, timers @ ..] = rdata else {
        return Err(soa_fields(rdata.len()));
    };
    if timers.len() != 4 {
        return Err(soa_fields(rdata.len()));
    }
    let serial: u32 = serial.text.parse().map_err(|_| {
        format!(
            "SOA serial `{}` is not a number from 0 to 4294967295",
            serial.text
        )
    })?;
    if let Some(t) = timers.iter().find(|t| !is_ttl(t.text)) {
        return Err(format!("SOA time `{}` is not a number of seconds", t.text));
    }
    match (&z.zone, z.zone_from, z.locked) {
        (Some(zone), ZoneFrom::Soa, _) | (Some(zone), _, true) => {
            if !zone.eq_ignore_ascii_case(owner) {
                return Err(format!(
                    "the SOA owner `{owner}` is not the zone `{zone}` the records above were read in"
                ));
            }
        }
        _ => {
            z.zone = Some(owner.to_string());
            z.zone_from = ZoneFrom::Soa;
        }
    }
    // A zone transfer listing repeats the SOA at its end: the first one counts.
    if ctx.out.serial.is_none() {
        ctx.out.serial = Some(serial);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::formats::{parse_source, Format, Parsed, SourceOptions};
    use crate::rule::{Action, DnsAction, Kind};
    use std::net::IpAddr;

    fn opts(lenient: bool) -> SourceOptions {
        let mut o = SourceOptions::new(Format::Rpz, "");
        o.lenient = lenient;
        o
    }

    fn parse(text: &str, file: &str) -> Parsed {
        parse_source(text, file, &opts(false)).unwrap()
    }

    fn rules(p: &Parsed) -> Vec<(u32, Kind, &str, Action, Option<&DnsAction>)> {
        p.rules
            .iter()
            .map(|r| {
                (
                    r.origin.line,
                    r.kind,
                    r.pattern.as_str(),
                    r.action,
                    r.dns.as_ref(),
                )
            })
            .collect()
    }

    const GOOD: &str = include_str!("../../testdata/formats/good.rpz");
    const BAD: &str = include_str!("../../testdata/formats/bad.rpz");

    #[test]
    fn golden_good() {
        let p = parse(GOOD, "feeds/good.rpz");
        use Action::*;
        use Kind::*;
        let nx = Some(&DnsAction::NxDomain);
        let local = DnsAction::Local(vec![
            "192.0.2.10".parse::<IpAddr>().unwrap(),
            "2001:db8::10".parse().unwrap(),
            "192.0.2.11".parse().unwrap(),
        ]);
        let garden = DnsAction::Redirect("walled-garden.isp.example".into());
        assert_eq!(
            rules(&p),
            vec![
                (11, DomainExact, "nx.example", Block, nx),
                (12, DomainSubdomains, "nx.example", Block, nx),
                (
                    13,
                    DomainExact,
                    "nodata.example",
                    Block,
                    Some(&DnsAction::NoData)
                ),
                (14, DomainExact, "ok.nx.example", Allow, None),
                (15, DomainExact, "legacy.nx.example", Allow, None),
                (
                    16,
                    DomainExact,
                    "drop.example",
                    Block,
                    Some(&DnsAction::Drop)
                ),
                (
                    17,
                    DomainExact,
                    "tcp.example",
                    Block,
                    Some(&DnsAction::TcpOnly)
                ),
                (18, DomainExact, "garden.example", Warn, Some(&garden)),
                (19, DomainExact, "sink.example", Warn, Some(&local)),
                (21, DomainExact, "abs.example", Block, nx),
                (28, DomainExact, "www.sub.example", Block, nx),
                (
                    29,
                    DomainExact,
                    "sub.example",
                    Block,
                    Some(&DnsAction::Drop)
                ),
            ]
        );
        assert_eq!(p.serial, Some(2_025_060_101));
        let notes: Vec<u32> = p.notes.iter().map(|n| n.line).collect();
        assert_eq!(notes, vec![22, 23, 24, 25, 30]);
        assert!(p.notes[1].reason.contains("`rpz-ip`"), "{}", p.notes[1]);
        assert!(
            p.notes[0].reason.starts_with("TXT record"),
            "{}",
            p.notes[0]
        );
        assert!(p
            .rules
            .iter()
            .all(|r| r.category == "malware" && r.source == "rpz-feed"));
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn golden_bad_strict_and_lenient() {
        let e = parse_source(BAD, "bad.rpz", &opts(false)).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(
            e.reason
                .contains("not under the policy zone `rpz.example.`"),
            "{e}"
        );
        let p = parse_source(BAD, "bad.rpz", &opts(true)).unwrap();
        let got: Vec<(u32, &str)> = p
            .skipped
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        let expect = [
            (4, "not under the policy zone"),
            (5, "not an IPv4 address"),
            (6, "not an IPv6 address"),
            (7, "without the final dot"),
            (8, "has no type"),
            (9, "unknown record type `FOO`"),
            (10, "class `CH`"),
            (11, "exactly one target name, found 2"),
            (12, "`*` alone"),
            (13, "already has a CNAME policy on line 3"),
            (14, "zone apex"),
            (15, "wildcard is only allowed"),
            (16, "$INCLUDE is not supported"),
            (18, "quoted string is not closed"),
            (19, "`)` without an opening `(`"),
            (20, "never closed"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for ((line, reason), (el, needle)) in got.iter().zip(expect) {
            assert_eq!(*line, el, "{reason}");
            assert!(reason.contains(needle), "line {line}: {reason}");
        }
        let good: Vec<(u32, &str)> = p
            .rules
            .iter()
            .map(|r| (r.origin.line, r.pattern.as_str()))
            .collect();
        assert_eq!(good, vec![(3, "ok.example"), (17, "fine.example")]);
        assert_eq!(p.serial, Some(1));
    }

    #[test]
    fn origin_from_soa_owner_without_dollar_origin() {
        let text = "rpz.example. 3600 IN SOA ns hostmaster 7 1h 15m 1w 1h\n\
                    evil.example CNAME .\n\
                    evil2.example.rpz.example. CNAME .\n";
        let p = parse(text, "whatever.zone");
        let pats: Vec<&str> = p.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(pats, ["evil.example", "evil2.example"]);
        assert_eq!(p.serial, Some(7));
    }

    #[test]
    fn soa_names_the_zone_after_origin_dot() {
        // BIND's named-compilezone style: `$ORIGIN .` then the SOA, then `$ORIGIN` the zone.
        let text =
            "$ORIGIN .\n$TTL 300\nrpz.example IN SOA ns.rpz.example. h.rpz.example. 3 1 1 1 1\n\
                    $ORIGIN rpz.example.\nevil.example CNAME .\n";
        let p = parse(text, "x");
        assert_eq!(p.rules[0].pattern, "evil.example");
    }

    #[test]
    fn origin_from_file_stem() {
        let text = "evil.example CNAME .\nevil2.example.feed.example. CNAME *.\n";
        let p = parse(text, "/var/lib/dragnet/feed.example.rpz");
        let pats: Vec<&str> = p.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(pats, ["evil.example", "evil2.example"]);
        assert_eq!(p.serial, None);
        let e =
            parse_source("evil.example.other. CNAME .\n", "feed.rpz", &opts(false)).unwrap_err();
        assert!(
            e.reason.contains("not under the policy zone `feed.`"),
            "{e}"
        );
    }

    #[test]
    fn origin_case_and_relative_origin() {
        let text = "$ORIGIN RPZ.Example.\n@ SOA ns h 1 1 1 1 1\nA.example CNAME .\n\
                    evil.com.rpz.example. CNAME .\n$ORIGIN deep\nx CNAME .\n";
        let p = parse(text, "f");
        let pats: Vec<&str> = p.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(pats, ["A.example", "evil.com", "x.deep"]);
    }

    #[test]
    fn multi_line_soa_and_inheritance() {
        let text = "$ORIGIN rpz.example.\n\
                    @   IN  SOA ns1.rpz.example. hostmaster.rpz.example. (\n\
                    \t\t2024010101 ; serial\n\
                    \t\t1h 15m ; refresh, retry\n\
                    \t\t1w\n\
                    \t\t1h )\n\
                    \tIN NS ns1\n\
                    \tIN NS ns2\n\
                    sink.example A 192.0.2.1\n\
                    \tA 192.0.2.1\n\
                    \t300 AAAA ::1\n\
                    next.example IN 60 CNAME .\n";
        let p = parse(text, "f");
        assert_eq!(p.serial, Some(2_024_010_101));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].origin.line, 9);
        assert_eq!(
            p.rules[0].dns,
            Some(DnsAction::Local(vec![
                "192.0.2.1".parse().unwrap(),
                "::1".parse().unwrap()
            ]))
        );
        assert_eq!(p.rules[1].origin.line, 12);
    }

    #[test]
    fn a_records_merge_even_when_apart() {
        let text = "s.example A 192.0.2.1\nother.example CNAME .\nS.EXAMPLE A 192.0.2.2\n*.s.example A 192.0.2.3\n";
        let p = parse(text, "z.rpz");
        assert_eq!(p.rules.len(), 3);
        assert_eq!(
            p.rules[0].dns,
            Some(DnsAction::Local(vec![
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]))
        );
        assert_eq!(p.rules[2].kind, Kind::DomainSubdomains);
        // A CNAME after local data for the same owner is a conflict.
        let e = parse_source(
            "s.example A 192.0.2.1\ns.example CNAME .\n",
            "z",
            &opts(false),
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("line 1"), "{e}");
    }

    #[test]
    fn every_action() {
        let text = "$ORIGIN z.\na CNAME .\nb CNAME *.\nc CNAME rpz-passthru.\nd CNAME RPZ-DROP.\n\
                    e CNAME rpz-tcp-only.\nf CNAME garden.example.\ng CNAME garden\n\
                    *.h CNAME *.h.\ni AAAA 2001:db8::1\nj CNAME *.logger.example.\n";
        let p = parse(text, "f");
        let got: Vec<(&str, Action, Option<&DnsAction>)> = p
            .rules
            .iter()
            .map(|r| (r.pattern.as_str(), r.action, r.dns.as_ref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Action::Block, Some(&DnsAction::NxDomain)),
                ("b", Action::Block, Some(&DnsAction::NoData)),
                ("c", Action::Allow, None),
                ("d", Action::Block, Some(&DnsAction::Drop)),
                ("e", Action::Block, Some(&DnsAction::TcpOnly)),
                (
                    "f",
                    Action::Warn,
                    Some(&DnsAction::Redirect("garden.example".into()))
                ),
                (
                    "g",
                    Action::Warn,
                    Some(&DnsAction::Redirect("garden.z".into()))
                ),
                ("h", Action::Allow, None),
                (
                    "i",
                    Action::Warn,
                    Some(&DnsAction::Local(vec!["2001:db8::1".parse().unwrap()]))
                ),
                (
                    "j",
                    Action::Warn,
                    Some(&DnsAction::Redirect("*.logger.example".into()))
                ),
            ]
        );
    }

    #[test]
    fn quoted_strings_hide_delimiters() {
        let text = "t.example TXT \"a ; (b) \\\" c\" ( \"multi\"\n \"line\" )\nx.example CNAME .\n";
        let p = parse(text, "z");
        assert_eq!(p.notes.len(), 1);
        assert_eq!(p.rules[0].origin.line, 3);
    }

    #[test]
    fn directive_and_its_limits() {
        let text = "; dragnet: category=c2 expires=2030-01-01\n$ORIGIN z.\n@ SOA ns h 1 1 1 1 1\nx CNAME .\n";
        let p = parse(text, "f");
        assert_eq!(p.rules[0].category, "c2");
        assert_eq!(p.rules[0].expires, Some(1_893_456_000));
        let e = parse_source("; dragnet: action=allow\n", "f", &opts(true)).unwrap_err();
        assert!(e.reason.contains("does not apply to an RPZ zone"), "{e}");
        // After a policy record a directive is too late; SOA and NS records are not rules.
        let e = parse_source("x CNAME .\n; dragnet: category=a\n", "f", &opts(true)).unwrap_err();
        assert_eq!(e.line, 2);
        let p = parse(
            "$ORIGIN z.\n@ SOA ns h 1 1 1 1 1\n NS ns\n; dragnet: category=a\nx CNAME .\n",
            "f",
        );
        assert_eq!(p.rules[0].category, "a");
    }

    #[test]
    fn soa_errors() {
        for (text, needle) in [
            ("@ SOA ns h 1 1 1 1\n", "7 fields"),
            ("@ SOA ns h 1 1 1 1 1 1\n", "7 fields"),
            ("@ SOA ns h x 1 1 1 1\n", "serial `x`"),
            ("@ SOA ns h 4294967296 1 1 1 1\n", "serial"),
            ("@ SOA ns h 1 1 1 1 soon\n", "time `soon`"),
            (
                "$ORIGIN a.\nx CNAME .\nb. SOA ns h 1 1 1 1 1\n",
                "not the zone `a.`",
            ),
            ("$TTL\n", "$TTL needs"),
            ("$ORIGIN\n", "$ORIGIN needs"),
            ("$GENERATE 1-10 x$ CNAME .\n", "$GENERATE"),
            ("$FOO\n", "unknown control entry"),
            (" CNAME .\n", "no previous record"),
            ("\"q\" CNAME .\n", "quoted"),
            ("x CNAME \"y\"\n", "quoted"),
            ("x A\n", "exactly one address, found 0"),
            ("( x CNAME . ( )\n", "do not nest"),
        ] {
            let e = parse_source(text, "f", &opts(false)).unwrap_err();
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
        // A zone transfer listing ends with the SOA again: fine.
        let p = parse(
            "@ SOA ns h 5 1 1 1 1\nx CNAME .\n@ SOA ns h 5 1 1 1 1\n",
            "f",
        );
        assert_eq!(p.serial, Some(5));
    }

    #[test]
    fn ttl_and_class_forms() {
        assert!(super::is_ttl("3600") && super::is_ttl("1h30m") && super::is_ttl("1W"));
        assert!(!super::is_ttl("h") && !super::is_ttl("1x") && !super::is_ttl("12345678901"));
        let p = parse(
            "a 1d IN CNAME .\nb IN 1d CNAME .\nc in cname .\nd 0 CNAME .\n",
            "z",
        );
        assert_eq!(p.rules.len(), 4);
        let p = parse("x TYPE99 \\# 0\n", "z");
        assert_eq!(p.notes.len(), 1);
    }
}
