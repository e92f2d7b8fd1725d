//! Host names → the one lower-case ASCII form that rules are stored and matched in.
//!
//! Two entry points share one set of rules:
//!
//! - [`ascii_host`] is the hot path (DNS QNAME, TLS/QUIC SNI, HTTP `Host`): it lower-cases into a
//!   caller-owned 256-byte buffer, allocates nothing, and refuses any byte ≥ 0x80 with
//!   [`DomainError::NonAscii`] so that the caller can take the slow path. DNS and SNI carry
//!   A-labels (punycode) anyway (RFC 5890 §2.3.2.1, RFC 6066 §3), so the slow path is rare.
//! - [`normalize_domain`] is the compiler's (and the slow path's) entry: it also converts
//!   internationalised names to A-labels with UTS #46 processing (the `idna` crate), so that
//!   `BÜCHER.example` in a rule file and `xn--bcher-kva.example` on the wire are the same rule.
//!
//! What a valid name is, here: at most 253 octets without the trailing dot and labels of 1..=63
//! octets (RFC 1035 §2.3.4); labels of `a-z 0-9 - _`, not starting or ending with `-` (RFC 952,
//! RFC 1123 §2.1). The underscore is not a host-name character, but it is common in real names
//! (`_dmarc`, CDN nodes) and in national block lists, so refusing it would only lose rules. An IP
//! literal is not a domain name, and neither is a name whose last label is a number: no top-level
//! domain is numeric (RFC 3696 §2), and URL parsers read such a host as an IPv4 address (WHATWG
//! URL Standard, "ends in a number checker").
//!
//! [`is_public_suffix`] and [`registrable_domain`] answer from the compiled-in Public Suffix List
//! (the `psl` crate), ICANN and private sections alike.

use std::fmt;
use std::net::Ipv6Addr;

/// RFC 1035 §2.3.4: 255 octets on the wire is 253 characters in text form without the final dot.
pub const MAX_NAME_OCTETS: usize = 253;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
pub const MAX_LABEL_OCTETS: usize = 63;

/// Why a host name was refused. Every variant that concerns one label carries a copy of it
/// ([`LabelText`]), so the error needs no allocation and no lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainError {
    /// Nothing left after trimming white space and the trailing dot (this includes the root, `.`).
    Empty,
    /// More than [`MAX_NAME_OCTETS`] octets (after IDNA conversion, without the trailing dot).
    TooLong { octets: usize },
    /// Two dots in a row, or a leading dot. `index` counts labels from 0, left to right.
    EmptyLabel { index: usize },
    /// A label longer than [`MAX_LABEL_OCTETS`]; `label` holds its first 63 octets.
    LabelTooLong { label: LabelText, octets: usize },
    /// A character outside `a-z 0-9 - _` (after lower-casing).
    InvalidCharacter { label: LabelText, ch: char },
    /// A label that starts or ends with `-`.
    HyphenAtLabelEdge { label: LabelText },
    /// An IPv4 or IPv6 literal.
    IpAddress,
    /// The last label is a number (decimal, or `0x` hex), but the name is not an IPv4 address.
    NumericTopLevel { label: LabelText },
    /// UTS #46 processing refused this label (disallowed code point, bad punycode, bidi rule …).
    InvalidIdn { label: LabelText },
    /// A byte ≥ 0x80 reached [`ascii_host`]: the caller must use [`normalize_domain`].
    NonAscii,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Empty => f.write_str("empty domain name"),
            DomainError::TooLong { octets } => write!(
                f,
                "domain name is {octets} octets long: DNS allows at most {MAX_NAME_OCTETS} \
                 (RFC 1035 §2.3.4)"
            ),
            DomainError::EmptyLabel { index } => write!(
                f,
                "label {} is empty: two dots in a row, or a leading dot",
                index + 1
            ),
            DomainError::LabelTooLong { label, octets } => write!(
                f,
                "label '{label}' is {octets} octets long: DNS allows at most {MAX_LABEL_OCTETS} \
                 (RFC 1035 §2.3.4)"
            ),
            DomainError::InvalidCharacter { label, ch } => write!(
                f,
                "label '{label}' contains '{}': only letters, digits, '-' and '_' are allowed",
                ch.escape_default()
            ),
            DomainError::HyphenAtLabelEdge { label } => write!(
                f,
                "label '{label}' starts or ends with '-' (RFC 952, RFC 1123 §2.1)"
            ),
            DomainError::IpAddress => f.write_str("an IP address, not a domain name"),
            DomainError::NumericTopLevel { label } => write!(
                f,
                "top-level label '{label}' is a number: no top-level domain is numeric \
                 (RFC 3696 §2), and URL parsers would read the name as an IPv4 address"
            ),
            DomainError::InvalidIdn { label } => write!(
                f,
                "label '{label}' is not a valid internationalised domain label \
                 (UTS #46 processing refused it)"
            ),
            DomainError::NonAscii => f.write_str(
                "non-ASCII byte in host name: it needs IDNA processing (normalize_domain), \
                 not the ASCII fast path",
            ),
        }
    }
}

impl std::error::Error for DomainError {}

/// A copy of (the start of) the label a [`DomainError`] is about, kept inline.
pub type LabelText = crate::excerpt::Excerpt<MAX_LABEL_OCTETS>;

/// The white space both entry points trim: exactly the ASCII characters `str::trim` removes, so
/// that [`ascii_host`] and [`normalize_domain`] agree on every ASCII input.
fn is_trimmed(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_trimmed(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_trimmed(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The hot-path normaliser: trims ASCII white space, strips one trailing dot, lower-cases into
/// `buf` and validates (see the module docs). Never allocates; cost is one pass to find non-ASCII
/// bytes, one to copy, one to validate.
///
/// Any byte ≥ 0x80 gives [`DomainError::NonAscii`] before any other check: such a name may still
/// be valid after UTS #46 processing, which is [`normalize_domain`]'s job. On ASCII input the
/// result is exactly that of [`normalize_domain`].
pub fn ascii_host<'b>(input: &[u8], buf: &'b mut [u8; 256]) -> Result<&'b [u8], DomainError> {
    if !input.is_ascii() {
        return Err(DomainError::NonAscii);
    }
    let mut name = trim_ascii(input);
    // RFC 1034 §3.1: a trailing dot marks the name as absolute; it is not part of any label.
    if let [rest @ .., b'.'] = name {
        name = rest;
    }
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if name.len() > MAX_NAME_OCTETS {
        return Err(DomainError::TooLong { octets: name.len() });
    }
    let out = &mut buf[..name.len()];
    for (d, s) in out.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    validate(out)?;
    Ok(out)
}

/// Checks a lower-cased ASCII name without its trailing dot.
fn validate(name: &[u8]) -> Result<(), DomainError> {
    if name.contains(&b':') && is_ipv6_literal(name) {
        return Err(DomainError::IpAddress);
    }
    let mut last: &[u8] = &[];
    let mut all_ipv4_parts = true;
    let mut labels = 0usize;
    for (index, label) in name.split(|&b| b == b'.').enumerate() {
        labels += 1;
        if label.is_empty() {
            return Err(DomainError::EmptyLabel { index });
        }
        if label.len() > MAX_LABEL_OCTETS {
            return Err(DomainError::LabelTooLong {
                label: LabelText::from_ascii(label),
                octets: label.len(),
            });
        }
        if let Some(&bad) = label
            .iter()
            .find(|&&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'))
        {
            return Err(DomainError::InvalidCharacter {
                label: LabelText::from_ascii(label),
                ch: char::from(bad),
            });
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err(DomainError::HyphenAtLabelEdge {
                label: LabelText::from_ascii(label),
            });
        }
        all_ipv4_parts &= is_ipv4_number(label);
        last = label;
    }
    if is_ipv4_number(last) {
        // WHATWG URL "IPv4 parser": up to four parts, each decimal, octal (leading 0, a subset
        // of the decimal test) or 0x-hex. `1.2.3.4`, `127.1` and `0x7f000001` are all 127-ish.
        return Err(if all_ipv4_parts && labels <= 4 {
            DomainError::IpAddress
        } else {
            DomainError::NumericTopLevel {
                label: LabelText::from_ascii(last),
            }
        });
    }
    Ok(())
}

/// WHATWG URL "ends in a number checker": all decimal digits, or `0x` followed by hex digits.
fn is_ipv4_number(label: &[u8]) -> bool {
    match label {
        [] => false,
        [b'0', b'x', hex @ ..] => hex.iter().all(u8::is_ascii_hexdigit),
        digits => digits.iter().all(u8::is_ascii_digit),
    }
}

/// `::1`, `[2001:db8::1]`: RFC 3986 §3.2.2 writes IPv6 literals in brackets in URLs.
fn is_ipv6_literal(name: &[u8]) -> bool {
    let inner = match name {
        [b'[', inner @ .., b']'] => inner,
        other => other,
    };
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// The compiler's normaliser (and the hot path's fallback for non-ASCII names): trims white
/// space, strips one trailing dot, lower-cases, converts internationalised labels to A-labels
/// (UTS #46 as implemented by `idna::domain_to_ascii`: `BÜCHER.example` →
/// `xn--bcher-kva.example`, `例子。中国` → `xn--fsqu00a.xn--fiqs8s`) and validates.
///
/// ASCII input is not run through UTS #46: it is already in wire form, and keeping it out makes
/// this function agree byte for byte with [`ascii_host`] (an ASCII `xn--` label is therefore not
/// checked for valid punycode; it can only ever match the same bytes on the wire).
///
/// Idempotent: the output, normalised again, is itself.
pub fn normalize_domain(input: &str) -> Result<String, DomainError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(DomainError::Empty);
    }
    let mut buf = [0u8; 256];
    if trimmed.is_ascii() {
        return ascii_host(trimmed.as_bytes(), &mut buf).map(ascii_to_string);
    }
    match idna::domain_to_ascii(trimmed) {
        // UTS #46 maps the ideographic and full-width full stops to '.', so a trailing `。` is
        // stripped here like a trailing '.'.
        Ok(ascii) => match ascii_host(ascii.as_bytes(), &mut buf) {
            Ok(host) => Ok(ascii_to_string(host)),
            // Not expected (UTS #46 output is ASCII), but never let NonAscii escape from here.
            Err(DomainError::NonAscii) => Err(DomainError::InvalidIdn {
                label: LabelText::new(trimmed),
            }),
            Err(e) => Err(e),
        },
        Err(_) => Err(DomainError::InvalidIdn {
            label: LabelText::new(first_bad_idn_label(trimmed)),
        }),
    }
}

fn ascii_to_string(host: &[u8]) -> String {
    host.iter().map(|&b| char::from(b)).collect()
}

/// `idna` reports that a name failed, not where. To name the label in the error, try the labels
/// one by one (split on every dot UTS #46 §2.3 treats as a label separator). If no single label
/// fails (a rule spanning labels, such as the bidi rule), the whole name is reported.
fn first_bad_idn_label(name: &str) -> &str {
    name.split(['.', '\u{3002}', '\u{ff0e}', '\u{ff61}'])
        .filter(|label| !label.is_empty())
        .find(|label| idna::domain_to_ascii(label).is_err())
        .unwrap_or(name)
}

/// Is `domain` (as [`normalize_domain`] returns it) a public suffix: `com`, `co.uk`, and also
/// private-section entries such as `github.io`, under which strangers register names, so that a
/// rule on one would block them all? A lone label the list does not know counts too: the list's
/// default rule `*` makes every top-level label a public suffix (publicsuffix.org, "Algorithm").
pub fn is_public_suffix(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() {
        return false;
    }
    psl::suffix(name.as_bytes()).is_some_and(|s| s.trim().as_bytes() == name.as_bytes())
}

/// The registrable domain (eTLD+1) of a normalised name: `www.example.co.uk` → `example.co.uk`,
/// `user.github.io` → itself. `None` for a public suffix or an empty name.
pub fn registrable_domain(domain: &str) -> Option<&str> {
    psl::domain_str(domain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> Result<String, DomainError> {
        normalize_domain(s)
    }

    fn host(s: &[u8]) -> Result<Vec<u8>, DomainError> {
        let mut buf = [0u8; 256];
        ascii_host(s, &mut buf).map(<[u8]>::to_vec)
    }

    #[test]
    fn trims_lowercases_and_strips_one_dot() {
        assert_eq!(norm("  Example.COM.\n").unwrap(), "example.com");
        assert_eq!(norm("example.com").unwrap(), "example.com");
        assert_eq!(norm("\u{3000}example.com\u{a0}").unwrap(), "example.com");
        assert_eq!(
            norm("example.com.."),
            Err(DomainError::EmptyLabel { index: 2 })
        );
        assert_eq!(host(b" WWW.Example.Com. ").unwrap(), b"www.example.com");
    }

    #[test]
    fn converts_idns_to_punycode() {
        assert_eq!(norm("BÜCHER.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(norm("bücher.example.").unwrap(), "xn--bcher-kva.example");
        assert_eq!(norm("例子。中国").unwrap(), "xn--fsqu00a.xn--fiqs8s");
        assert_eq!(norm("例子.中国。").unwrap(), "xn--fsqu00a.xn--fiqs8s");
        assert_eq!(
            norm("Xn--BCHER-kva.Example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            host("bücher.example".as_bytes()),
            Err(DomainError::NonAscii)
        );
    }

    #[test]
    fn idn_errors_name_the_label() {
        // U+2488 DIGIT ONE FULL STOP is disallowed by UTS #46.
        let e = norm("ok.\u{2488}x.example").unwrap_err();
        match e {
            DomainError::InvalidIdn { label } => assert_eq!(label.as_str(), "\u{2488}x"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains('\u{2488}'));
        // Non-ASCII plus an ASCII problem: reported as the ASCII problem.
        assert!(matches!(
            norm("bücher .example"),
            Err(DomainError::InvalidCharacter { ch: ' ', .. })
        ));
    }

    #[test]
    fn allows_underscore_digits_and_inner_hyphens() {
        assert_eq!(norm("_dmarc.Example.com").unwrap(), "_dmarc.example.com");
        assert_eq!(
            norm("r3---sn-abc.googlevideo.com").unwrap(),
            "r3---sn-abc.googlevideo.com"
        );
        assert_eq!(norm("123.example.com").unwrap(), "123.example.com");
        assert_eq!(norm("localhost").unwrap(), "localhost");
    }

    #[test]
    fn rejects_empty_and_root() {
        assert_eq!(norm(""), Err(DomainError::Empty));
        assert_eq!(norm("  "), Err(DomainError::Empty));
        assert_eq!(norm("."), Err(DomainError::Empty));
        assert_eq!(host(b""), Err(DomainError::Empty));
        assert_eq!(host(b" . "), Err(DomainError::Empty));
    }

    #[test]
    fn rejects_empty_labels() {
        assert_eq!(norm("a..b"), Err(DomainError::EmptyLabel { index: 1 }));
        assert_eq!(norm(".a.b"), Err(DomainError::EmptyLabel { index: 0 }));
        assert_eq!(host(b"a..b"), Err(DomainError::EmptyLabel { index: 1 }));
        assert!(norm("a..b")
            .unwrap_err()
            .to_string()
            .contains("label 2 is empty"));
    }

    #[test]
    fn enforces_lengths() {
        let l63 = "a".repeat(63);
        assert!(norm(&format!("{l63}.com")).is_ok());
        let l64 = "a".repeat(64);
        let e = norm(&format!("{l64}.com")).unwrap_err();
        assert!(matches!(e, DomainError::LabelTooLong { octets: 64, .. }));
        assert!(e.to_string().contains("64 octets"), "{e}");
        assert!(e.to_string().contains('…'), "{e}");
        // 4 × 63 + 3 dots = 255 > 253; 63+63+63+61 + 3 = 253.
        let max = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(max.len(), 253);
        assert_eq!(norm(&max).unwrap(), max);
        assert_eq!(norm(&format!("{max}.")).unwrap(), max);
        let over = format!("{max}b");
        assert_eq!(norm(&over), Err(DomainError::TooLong { octets: 254 }));
        assert_eq!(
            host(over.as_bytes()),
            Err(DomainError::TooLong { octets: 254 })
        );
        assert_eq!(host(format!("{max}.").as_bytes()).unwrap(), max.as_bytes());
        // IDN expansion counts after conversion.
        let idn = "ü".repeat(60);
        assert!(matches!(norm(&idn), Err(DomainError::LabelTooLong { .. })));
    }

    #[test]
    fn rejects_bad_characters() {
        for (input, ch) in [
            ("exa mple.com", ' '),
            ("a*.com", '*'),
            ("a/b.com", '/'),
            ("a@b.com", '@'),
        ] {
            match norm(input) {
                Err(DomainError::InvalidCharacter { ch: c, .. }) => assert_eq!(c, ch, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let e = norm("ok.ba\x01d.com").unwrap_err();
        assert_eq!(
            e.to_string(),
            "label 'ba\\u{1}d' contains '\\u{1}': only letters, digits, '-' and '_' are allowed"
        );
    }

    #[test]
    fn rejects_hyphen_at_label_edges() {
        for input in ["-a.com", "a-.com", "x.-.com", "a.com-"] {
            assert!(
                matches!(norm(input), Err(DomainError::HyphenAtLabelEdge { .. })),
                "{input}"
            );
        }
        assert_eq!(
            norm("a-.com").unwrap_err().to_string(),
            "label 'a-' starts or ends with '-' (RFC 952, RFC 1123 §2.1)"
        );
    }

    #[test]
    fn rejects_ip_literals() {
        for input in [
            "1.2.3.4",
            "192.168.0.1.",
            "127.1",
            "0x7f000001",
            "0X7F.0.0.1",
            "10",
            "::1",
            "[2001:db8::1]",
        ] {
            assert_eq!(norm(input), Err(DomainError::IpAddress), "{input}");
            assert_eq!(
                host(input.as_bytes()),
                Err(DomainError::IpAddress),
                "{input}"
            );
        }
        assert_eq!(
            DomainError::IpAddress.to_string(),
            "an IP address, not a domain name"
        );
        assert!(matches!(
            norm("example.123"),
            Err(DomainError::NumericTopLevel { .. })
        ));
        assert!(matches!(
            norm("1.2.3.4.5"),
            Err(DomainError::NumericTopLevel { .. })
        ));
        assert!(matches!(
            norm("a.0xff"),
            Err(DomainError::NumericTopLevel { .. })
        ));
        // A hex-looking but non-numeric top label is a name.
        assert_eq!(norm("a.0xfg").unwrap(), "a.0xfg");
        assert_eq!(norm("1.2.3.com").unwrap(), "1.2.3.com");
    }

    #[test]
    fn public_suffixes() {
        for s in ["com", "co.uk", "github.io", "cn", "com.cn", "zzunknowntld"] {
            assert!(is_public_suffix(s), "{s}");
        }
        for s in [
            "example.com",
            "example.co.uk",
            "user.github.io",
            "uk.zzunknowntld",
            "",
        ] {
            assert!(!is_public_suffix(s), "{s}");
        }
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(
            registrable_domain("www.example.co.uk"),
            Some("example.co.uk")
        );
        assert_eq!(registrable_domain("example.com"), Some("example.com"));
        assert_eq!(
            registrable_domain("a.b.user.github.io"),
            Some("user.github.io")
        );
        assert_eq!(
            registrable_domain("x.y.zzunknowntld"),
            Some("y.zzunknowntld")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("com"), None);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            DomainError::TooLong { octets: 300 }.to_string(),
            "domain name is 300 octets long: DNS allows at most 253 (RFC 1035 §2.3.4)"
        );
        assert!(DomainError::NonAscii
            .to_string()
            .contains("normalize_domain"));
        assert!(norm("example.123")
            .unwrap_err()
            .to_string()
            .contains("'123'"));
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_is_idempotent(s in "\\PC{0,80}") {
            if let Ok(n) = normalize_domain(&s) {
                prop_assert_eq!(normalize_domain(&n), Ok(n.clone()));
                prop_assert!(n.len() <= MAX_NAME_OCTETS);
            }
        }

        #[test]
        fn normalize_is_idempotent_on_name_like_input(
            s in "[a-zA-Z0-9ÜüßéÉ例子中国_.。-]{1,40}\\.?"
        ) {
            if let Ok(n) = normalize_domain(&s) {
                prop_assert_eq!(normalize_domain(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn ascii_host_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = [0u8; 256];
            let _ = ascii_host(&bytes, &mut buf);
        }

        #[test]
        fn ascii_host_agrees_with_normalize(s in "[ -~\t\n\x0b\x0c\r]{0,40}") {
            let mut buf = [0u8; 256];
            let fast = ascii_host(s.as_bytes(), &mut buf).map(ascii_to_string);
            prop_assert_eq!(fast, normalize_domain(&s));
        }

        #[test]
        fn ascii_host_agrees_on_name_like_input(s in "[a-zA-Z0-9_.-]{1,70}") {
            let mut buf = [0u8; 256];
            let fast = ascii_host(s.as_bytes(), &mut buf).map(ascii_to_string);
            prop_assert_eq!(fast, normalize_domain(&s));
        }
    }
}
