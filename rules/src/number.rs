//! Phone numbers → E.164 as a `u64`, without allocating (this runs once or twice per SIP INVITE).
//!
//! A [`Number`] is either an international number in E.164 form (country code first, at most 15
//! digits, first digit non-zero: ITU-T E.164 §6) or a national short code (`110`, `112`, `12381`,
//! `96110`, `000`) whose leading zeros are significant, so its digit count is kept. Either fits a
//! `u64` key ([`Number::key`]) that the compiler stores and the engine looks up.
//!
//! [`Number::parse`] reads what carriers and rule files write: `+8613812345678`,
//! `008613812345678`, national `13812345678` and `010 1234 5678`, `tel:` URIs (RFC 3966) and the
//! user part of `sip:`/`sips:` URIs (RFC 3261 §19.1), with or without a display name and `<…>`.
//! A [`NumberPlan`] says how the national forms are read. [`Prefix`] is the same for number
//! ranges (`+86170`).
//!
//! Cost model: one pass over the input, slices of it and two fixed-size stack buffers; no heap
//! allocation on success or on error (errors carry an inline [`Excerpt`] of the input).

use std::fmt::{self, Write as _};

/// ITU-T E.164 §6.1: at most 15 digits, country code included.
pub const MAX_E164_DIGITS: usize = 15;

/// The fewest digits (country code included) that `parse` accepts as an international number.
/// The shortest numbers in service have seven (Niue: `+683` and four digits); anything shorter
/// is a typo, a truncation, or a short code written with a country code (see
/// [`Number::as_national_short_code`]).
pub const MIN_INTERNATIONAL_DIGITS: usize = 7;

/// The longest trunk or international call prefix a [`NumberPlan`] holds (`0011`, `00700` …).
pub const MAX_PLAN_PREFIX_DIGITS: usize = 5;

const SHORT_CODE_FLAG: u64 = 1 << 63;
const SHORT_CODE_LEN_SHIFT: u32 = 56;
const SHORT_CODE_VALUE_MASK: u64 = (1 << SHORT_CODE_LEN_SHIFT) - 1;

const POW10: [u64; 16] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
];

/// Digits the scanner keeps. An input with more cannot be valid in any reading (the longest
/// prefix stripped is [`MAX_PLAN_PREFIX_DIGITS`], leaving more than 15), so it is refused as too
/// long without storing the rest.
const SCAN_CAPACITY: usize = 24;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why an input is not a phone number (or a numbering plan is not valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NumberError {
    /// Nothing to read: empty input, or no digits at all.
    Empty,
    /// `anonymous`, `sip:anonymous@anonymous.invalid` (RFC 3323 §4.1.1.3), `restricted` …
    Anonymous { input: Excerpt },
    /// A URI whose scheme carries no phone number (`mailto:`, `http:` …).
    UnsupportedScheme { scheme: Excerpt },
    /// Letters where digits belong (`alice`, `1-800-FLOWERS`).
    Letters { input: Excerpt },
    /// `*` or `#`: a service code (`*21#`) or dial string, not a number.
    ServiceCode { input: Excerpt },
    /// Any other character that has no place in a number.
    InvalidCharacter { ch: char, input: Excerpt },
    /// The text has the shape of a URI or name-addr but it is broken; `reason` says how.
    Malformed {
        reason: &'static str,
        input: Excerpt,
    },
    /// More than [`MAX_E164_DIGITS`] digits once prefixes are removed.
    TooLong { digits: usize, input: Excerpt },
    /// Fewer than [`MIN_INTERNATIONAL_DIGITS`] digits in an international number.
    TooShort { digits: usize, input: Excerpt },
    /// An international number whose first digit is 0: no country code starts with 0.
    CountryCodeZero { input: Excerpt },
    /// A local number in a private (domain-name) `phone-context` that is too long to be a short
    /// code: it has no E.164 form that rules could name.
    PrivateNumber { input: Excerpt, context: Excerpt },
    /// [`NumberPlan::new`] refused a parameter.
    InvalidPlan {
        field: &'static str,
        value: Excerpt,
        reason: &'static str,
    },
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberError::Empty => f.write_str("empty: no digits"),
            NumberError::Anonymous { input } => write!(
                f,
                "anonymous: '{input}' is a withheld identity, not a number (RFC 3323)"
            ),
            NumberError::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported URI scheme '{scheme}': only tel:, sip: and sips: carry phone numbers"
            ),
            NumberError::Letters { input } => {
                write!(f, "not a phone number: letters in '{input}'")
            }
            NumberError::ServiceCode { input } => write!(
                f,
                "service code with * or # in '{input}': a dial string, not a phone number"
            ),
            NumberError::InvalidCharacter { ch, input } => write!(
                f,
                "not a phone number: unexpected '{}' in '{input}'",
                ch.escape_default()
            ),
            NumberError::Malformed { reason, input } => {
                write!(f, "malformed number or URI '{input}': {reason}")
            }
            NumberError::TooLong { digits, input } => write!(
                f,
                "more than {MAX_E164_DIGITS} digits (E.164 maximum): {digits} digits in '{input}'"
            ),
            NumberError::TooShort { digits, input } => write!(
                f,
                "too short for an international number: {digits} digits in '{input}', and \
                 numbers in service have at least {MIN_INTERNATIONAL_DIGITS} including the \
                 country code"
            ),
            NumberError::CountryCodeZero { input } => write!(
                f,
                "international number '{input}' starts with 0: no country code does (ITU-T E.164)"
            ),
            NumberError::PrivateNumber { input, context } => write!(
                f,
                "local number '{input}' in private phone-context '{context}' is longer than a \
                 short code and has no public E.164 form (RFC 3966 §5.1.5)"
            ),
            NumberError::InvalidPlan {
                field,
                value,
                reason,
            } => write!(f, "invalid numbering plan: {field} '{value}' {reason}"),
        }
    }
}

impl std::error::Error for NumberError {}

/// The start (up to 48 bytes) of the text a [`NumberError`] is about, kept inline.
pub type Excerpt = crate::excerpt::Excerpt<48>;

fn excerpt_u64(v: u64) -> Excerpt {
    let mut buf = [0u8; 20];
    Excerpt::new(ascii_digits(v, &mut buf))
}

// ---------------------------------------------------------------------------------------------
// Numbering plan

/// A short run of ASCII digits stored inline so that [`NumberPlan`] is `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PlanDigits {
    digits: [u8; MAX_PLAN_PREFIX_DIGITS],
    len: u8,
}

impl PlanDigits {
    fn new(s: &str) -> Option<PlanDigits> {
        if s.len() > MAX_PLAN_PREFIX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits = [0u8; MAX_PLAN_PREFIX_DIGITS];
        digits[..s.len()].copy_from_slice(s.as_bytes());
        Some(PlanDigits {
            digits,
            len: s.len() as u8,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for PlanDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// How national numbers are read: which country they belong to and which prefixes a subscriber
/// dials. One plan per deployment (a carrier's home network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NumberPlan {
    country_code: u16,
    /// The country code as ASCII digits, kept beside the number to avoid recomputing it.
    country_digits: PlanDigits,
    trunk_prefix: PlanDigits,
    international_prefix: PlanDigits,
    max_short_code_digits: u8,
}

impl NumberPlan {
    /// `country_code`: the country calling code, 1 to 3 digits (ITU-T E.164 §6.2.1), e.g. 86.
    /// `trunk_prefix`: what is dialled before a national number, 0 to 5 digits (`"0"`; NANP
    /// `"1"`; empty where there is none). `international_prefix`: what is dialled before a
    /// country code, 1 to 5 digits (`"00"`; NANP `"011"`). `max_short_code_digits`: the longest
    /// national short code, 0 to 15 (0: no short codes).
    pub fn new(
        country_code: u16,
        trunk_prefix: &str,
        international_prefix: &str,
        max_short_code_digits: u8,
    ) -> Result<NumberPlan, NumberError> {
        if !(1..=999).contains(&country_code) {
            return Err(NumberError::InvalidPlan {
                field: "country code",
                value: excerpt_u64(u64::from(country_code)),
                reason: "must be 1 to 999 (ITU-T E.164 country codes have 1 to 3 digits)",
            });
        }
        let trunk = PlanDigits::new(trunk_prefix).ok_or(NumberError::InvalidPlan {
            field: "trunk prefix",
            value: Excerpt::new(trunk_prefix),
            reason: "must be 0 to 5 digits",
        })?;
        let international = PlanDigits::new(international_prefix)
            .filter(|p| p.len > 0)
            .ok_or(NumberError::InvalidPlan {
                field: "international call prefix",
                value: Excerpt::new(international_prefix),
                reason: "must be 1 to 5 digits",
            })?;
        if usize::from(max_short_code_digits) > MAX_E164_DIGITS {
            return Err(NumberError::InvalidPlan {
                field: "maximum short code length",
                value: excerpt_u64(u64::from(max_short_code_digits)),
                reason: "must be 0 to 15 digits",
            });
        }
        let mut cc = [0u8; 20];
        let country_digits = PlanDigits::new(ascii_digits(u64::from(country_code), &mut cc))
            .ok_or(NumberError::InvalidPlan {
                field: "country code",
                value: excerpt_u64(u64::from(country_code)),
                reason: "must be 1 to 999",
            })?;
        Ok(NumberPlan {
            country_code,
            country_digits,
            trunk_prefix: trunk,
            international_prefix: international,
            max_short_code_digits,
        })
    }

    pub const fn country_code(&self) -> u16 {
        self.country_code
    }

    pub fn trunk_prefix(&self) -> &str {
        self.trunk_prefix.as_str()
    }

    pub fn international_prefix(&self) -> &str {
        self.international_prefix.as_str()
    }

    pub const fn max_short_code_digits(&self) -> u8 {
        self.max_short_code_digits
    }

    fn max_short(&self) -> usize {
        usize::from(self.max_short_code_digits)
    }

    fn cc(&self) -> &[u8] {
        self.country_digits.as_bytes()
    }
}

impl Default for NumberPlan {
    /// China: +86, trunk prefix 0, international prefix 00, short codes up to 6 digits (96110).
    fn default() -> NumberPlan {
        NumberPlan {
            country_code: 86,
            country_digits: PlanDigits {
                digits: [b'8', b'6', 0, 0, 0],
                len: 2,
            },
            trunk_prefix: PlanDigits {
                digits: [b'0', 0, 0, 0, 0],
                len: 1,
            },
            international_prefix: PlanDigits {
                digits: [b'0', b'0', 0, 0, 0],
                len: 2,
            },
            max_short_code_digits: 6,
        }
    }
}

/// Writes `v` in decimal at the end of `buf`; returns the digits.
fn ascii_digits(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Number

/// A phone number normalised for matching: an international number (E.164) or a national short
/// code. 8 bytes; the representation is the lookup key ([`Number::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number {
    key: u64,
}

impl Number {
    /// Reads a phone number the way a carrier writes one (see the module docs for every form).
    ///
    /// - `+` or the plan's international prefix: an international number; it must have
    ///   [`MIN_INTERNATIONAL_DIGITS`] to [`MAX_E164_DIGITS`] digits, country code included. A
    ///   shorter one that starts with the plan's own country code and ends in a short code
    ///   (`+86110`) is that short code: an emergency number written internationally must still
    ///   be recognised as one.
    /// - otherwise, at most `max_short_code_digits` digits: a national short code, kept as
    ///   written (leading zeros included).
    /// - otherwise a national number: the trunk prefix (if any) is removed and the country code
    ///   put in front.
    ///
    /// Separators `- . ( )`, spaces and tabs are ignored (RFC 3966 §3 visual separators).
    /// Allocation-free.
    pub fn parse(input: &str, plan: &NumberPlan) -> Result<Number, NumberError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        let uri = name_addr_uri(s)?;
        match split_scheme(uri) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tel") => parse_tel(rest, plan),
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") =>
            {
                parse_sip(rest, plan)
            }
            Some((scheme, _)) => Err(NumberError::UnsupportedScheme {
                scheme: Excerpt::new(scheme),
            }),
            None => resolve(uri, None, false, plan),
        }
    }

    /// The lookup key: an international number is its E.164 value (< 10^15); a short code is
    /// `1 << 63 | digit_count << 56 | value`, so `000` and `0` differ and never collide with an
    /// E.164 value.
    #[inline]
    pub const fn key(self) -> u64 {
        self.key
    }

    /// The inverse of [`Number::key`]; `None` for a value no `Number` has.
    pub fn from_key(key: u64) -> Option<Number> {
        if key & SHORT_CODE_FLAG != 0 {
            let len = ((key & !SHORT_CODE_FLAG) >> SHORT_CODE_LEN_SHIFT) as usize;
            let value = key & SHORT_CODE_VALUE_MASK;
            ((1..=MAX_E164_DIGITS).contains(&len) && value < POW10[len]).then_some(Number { key })
        } else {
            (POW10[MIN_INTERNATIONAL_DIGITS - 1]..POW10[MAX_E164_DIGITS])
                .contains(&key)
                .then_some(Number { key })
        }
    }

    /// The E.164 value (`8613812345678`), or `None` for a short code.
    #[inline]
    pub const fn e164(self) -> Option<u64> {
        if self.is_short_code() {
            None
        } else {
            Some(self.key)
        }
    }

    #[inline]
    pub const fn is_short_code(self) -> bool {
        self.key & SHORT_CODE_FLAG != 0
    }

    /// Digits, country code included for an international number (no `+`).
    pub fn digit_count(self) -> u8 {
        match self.e164() {
            Some(v) => count_digits(v) as u8,
            None => ((self.key & !SHORT_CODE_FLAG) >> SHORT_CODE_LEN_SHIFT) as u8,
        }
    }

    /// The digits as ASCII, written into `buf` (no `+`, no allocation).
    pub fn digits(self, buf: &mut [u8; 20]) -> &[u8] {
        let value = match self.e164() {
            Some(v) => v,
            None => self.key & SHORT_CODE_VALUE_MASK,
        };
        write_digits(value, usize::from(self.digit_count()), buf)
    }

    /// A short code for this number in `plan`'s country: `+86110` (or `+8612381`) with plan 86
    /// → `110` (`12381`), so that an emergency number written internationally is still
    /// recognised. A short code is returned as it is. `None` for any other number: another
    /// country, or more digits after the country code than a short code has.
    pub fn as_national_short_code(self, plan: &NumberPlan) -> Option<Number> {
        if self.is_short_code() {
            return Some(self);
        }
        // Fast "no" for the common case (a full-length number): this runs for every callee.
        let longest = plan.cc().len() + plan.max_short();
        if POW10.get(longest).is_some_and(|&p| self.key >= p) {
            return None;
        }
        let mut buf = [0u8; 20];
        let rest = self.digits(&mut buf).strip_prefix(plan.cc())?;
        (!rest.is_empty() && rest.len() <= plan.max_short()).then(|| short_code(rest))
    }
}

impl fmt::Display for Number {
    /// `+8613812345678` or `110`: the form [`Number::parse`] reads back to the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_short_code() {
            f.write_char('+')?;
        }
        let mut buf = [0u8; 20];
        for &d in self.digits(&mut buf) {
            f.write_char(char::from(d))?;
        }
        Ok(())
    }
}

fn count_digits(v: u64) -> usize {
    POW10.iter().skip(1).take_while(|&&p| v >= p).count() + 1
}

/// Writes `value` as exactly `len` ASCII digits (leading zeros kept) into `buf`.
fn write_digits(mut value: u64, len: usize, buf: &mut [u8; 20]) -> &[u8] {
    let len = len.min(buf.len());
    for slot in buf[..len].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    &buf[..len]
}

/// ASCII digits (at most 19 of them) → value.
fn digits_value(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |v, &d| {
        v.wrapping_mul(10)
            .wrapping_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// `digits`: 1..=15 ASCII digits.
fn short_code(digits: &[u8]) -> Number {
    Number {
        key: SHORT_CODE_FLAG | (digits.len() as u64) << SHORT_CODE_LEN_SHIFT | digits_value(digits),
    }
}

// ---------------------------------------------------------------------------------------------
// Input forms

/// RFC 3261 §20.10 name-addr: `"Bob" <sip:…>` or `Bob <sip:…>` → the URI between `<` and `>`
/// (header parameters after `>` are not ours). Anything else is returned unchanged.
fn name_addr_uri(s: &str) -> Result<&str, NumberError> {
    let malformed = |reason| NumberError::Malformed {
        reason,
        input: Excerpt::new(s),
    };
    let mut rest = s;
    if let Some(quoted) = s.strip_prefix('"') {
        let end = closing_quote(quoted).ok_or(malformed("display name has no closing '\"'"))?;
        rest = quoted[end + 1..].trim_start();
        if !rest.starts_with('<') {
            return Err(malformed("display name without a <URI>"));
        }
    }
    match rest.find('<') {
        None => Ok(s),
        Some(open) => {
            let inner = &rest[open + 1..];
            let close = inner
                .find('>')
                .ok_or(malformed("'<' without a closing '>'"))?;
            Ok(inner[..close].trim())
        }
    }
}

/// RFC 3261 §25.1 quoted-string: the index of the closing `"`, skipping `\`-escaped characters.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// RFC 3986 §3.1: `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, then `:`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    (first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then_some((scheme, rest))
}

/// The value of parameter `name` in `;a=b;c=d` (names are case-insensitive, RFC 3966 §3).
fn find_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// RFC 3966 §3: `tel:` global-number or local-number, then `;`-parameters. Only `phone-context`
/// changes the number; `ext`, `isub` and the rest are ignored.
fn parse_tel(rest: &str, plan: &NumberPlan) -> Result<Number, NumberError> {
    let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
    resolve(number, find_param(params, "phone-context"), true, plan)
}

/// RFC 3261 §19.1.1: `sip:user:password@host:port;uri-params?headers`. The user part may be a
/// telephone-subscriber with its own `;`-parameters (`+861381234;phone-context=+86`) and may
/// escape characters (`%2B` for `+`); `user=phone` is not required, as many carriers omit it.
fn parse_sip(rest: &str, plan: &NumberPlan) -> Result<Number, NumberError> {
    let Some((userinfo, hostport)) = rest.split_once('@') else {
        return Err(NumberError::Malformed {
            reason: "SIP URI without a user part",
            input: Excerpt::new(rest),
        });
    };
    let host = hostport
        .split([':', ';', '?', '>'])
        .next()
        .unwrap_or(hostport);
    // RFC 3323 §4.1.1.3: `anonymous.invalid` is the host of an anonymous URI, whatever the user.
    if host.eq_ignore_ascii_case("anonymous.invalid") {
        return Err(NumberError::Anonymous {
            input: Excerpt::new(userinfo),
        });
    }
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    let (number, params) = user.split_once(';').unwrap_or((user, ""));
    resolve(number, find_param(params, "phone-context"), true, plan)
}

/// Words that stand for a withheld caller in From / P-Asserted-Identity user parts and in CDRs.
fn is_withheld(text: &str) -> bool {
    [
        "anonymous",
        "restricted",
        "unavailable",
        "unknown",
        "private",
        "withheld",
    ]
    .iter()
    .any(|w| text.trim().eq_ignore_ascii_case(w))
}

/// The number part of a bare input, `tel:` URI or SIP user part, with its `phone-context` if any.
fn resolve(
    text: &str,
    context: Option<&str>,
    escapes: bool,
    plan: &NumberPlan,
) -> Result<Number, NumberError> {
    if is_withheld(text) {
        return Err(NumberError::Anonymous {
            input: Excerpt::new(text),
        });
    }
    let local = scan(text, escapes)?;
    if local.total == 0 {
        return Err(NumberError::Empty);
    }
    let Some(context) = context else {
        return classify(&local, text, plan);
    };
    // RFC 3966 §5.1.5: phone-context qualifies local numbers only; on a global number it is
    // redundant (and invalid), so it is ignored rather than refused.
    if local.plus {
        return classify(&local, text, plan);
    }
    let ctx = match scan(context, escapes) {
        Ok(c) if c.plus && c.total > 0 => c,
        // RFC 3966 §5.1.5: a domain-name context is a private numbering space. Short enough,
        // the number is a short code (a PBX extension, a service number); otherwise it has no
        // public form.
        _ if !starts_with_plus(context, escapes) => {
            if context.is_empty() {
                return Err(NumberError::Malformed {
                    reason: "empty phone-context",
                    input: Excerpt::new(text),
                });
            }
            let d = local.digits();
            if d.len() <= plan.max_short() {
                return Ok(short_code(d));
            }
            return Err(NumberError::PrivateNumber {
                input: Excerpt::new(text),
                context: Excerpt::new(context),
            });
        }
        _ => {
            return Err(NumberError::Malformed {
                reason: "phone-context starts with '+' but is not a number",
                input: Excerpt::new(context),
            })
        }
    };
    let ctx_digits = ctx.digits();
    if ctx_digits == plan.cc() {
        // The context is our own country: the local number is dialled nationally.
        return classify(&local, text, plan);
    }
    if ctx_digits.starts_with(plan.cc()) && local.digits().len() <= plan.max_short() {
        // An area context in our own country (`+86-10`): a short number there is still a
        // national short code (110 dialled in Beijing is 110).
        return Ok(short_code(local.digits()));
    }
    // RFC 3966 §5.1.5: the global-number-digits of the context are the prefix of the number.
    let mut joined = ctx;
    for &d in local.digits() {
        joined.push(d);
    }
    joined.total += local.total.saturating_sub(local.len);
    international(&joined, text, plan)
}

fn starts_with_plus(text: &str, escapes: bool) -> bool {
    let t = text.trim_start();
    t.starts_with('+')
        || (escapes
            && t.as_bytes()
                .get(..3)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"%2b")))
}

/// Digits read from the input: an optional leading `+`, then up to [`SCAN_CAPACITY`] digits.
#[derive(Clone, Copy)]
struct Scanned {
    plus: bool,
    buf: [u8; SCAN_CAPACITY],
    len: usize,
    /// Every digit seen, including those that did not fit.
    total: usize,
}

impl Scanned {
    fn push(&mut self, d: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = d;
            self.len += 1;
        }
        self.total += 1;
    }

    fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// One pass over the number text. `escapes`: decode RFC 3986 `%XX` (URIs only).
fn scan(text: &str, escapes: bool) -> Result<Scanned, NumberError> {
    let mut out = Scanned {
        plus: false,
        buf: [0; SCAN_CAPACITY],
        len: 0,
        total: 0,
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let (c, next) = if escapes && bytes[i] == b'%' {
            match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    let b = h << 4 | l;
                    // An escaped non-ASCII byte is part of some UTF-8 character: not a digit.
                    let c = if b.is_ascii() {
                        char::from(b)
                    } else {
                        char::REPLACEMENT_CHARACTER
                    };
                    (c, i + 3)
                }
                _ => {
                    return Err(NumberError::Malformed {
                        reason: "'%' not followed by two hex digits (RFC 3986 §2.1)",
                        input: Excerpt::new(text),
                    })
                }
            }
        } else {
            match text.get(i..).and_then(|t| t.chars().next()) {
                Some(c) => (c, i + c.len_utf8()),
                None => break,
            }
        };
        match c {
            '0'..='9' => out.push(c as u8),
            '+' if out.total == 0 && !out.plus => out.plus = true,
            '+' => {
                return Err(NumberError::Malformed {
                    reason: "'+' is allowed only once, before the first digit",
                    input: Excerpt::new(text),
                })
            }
            '-' | '.' | '(' | ')' | ' ' | '\t' => {}
            '*' | '#' => {
                return Err(NumberError::ServiceCode {
                    input: Excerpt::new(text),
                })
            }
            c if c.is_alphabetic() => {
                return Err(NumberError::Letters {
                    input: Excerpt::new(text),
                })
            }
            c => {
                return Err(NumberError::InvalidCharacter {
                    ch: c,
                    input: Excerpt::new(text),
                })
            }
        }
        i = next;
    }
    Ok(out)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?).to_digit(16).map(|d| d as u8)
}

/// Applies the plan to scanned digits (see [`Number::parse`]).
fn classify(s: &Scanned, text: &str, plan: &NumberPlan) -> Result<Number, NumberError> {
    if s.total > s.len {
        return Err(NumberError::TooLong {
            digits: s.total,
            input: Excerpt::new(text),
        });
    }
    let d = s.digits();
    if d.is_empty() {
        return Err(NumberError::Empty);
    }
    if s.plus {
        return international(s, text, plan);
    }
    if d.len() <= plan.max_short() {
        return Ok(short_code(d));
    }
    let international_prefix = plan.international_prefix.as_bytes();
    if let Some(rest) = d.strip_prefix(international_prefix) {
        return international(&Scanned::from_digits(rest), text, plan);
    }
    let trunk = plan.trunk_prefix.as_bytes();
    let national = match d.strip_prefix(trunk) {
        Some(rest) if !trunk.is_empty() => rest,
        _ => d,
    };
    let mut full = Scanned::from_digits(plan.cc());
    for &digit in national {
        full.push(digit);
    }
    international(&full, text, plan)
}

impl Scanned {
    fn from_digits(digits: &[u8]) -> Scanned {
        let mut s = Scanned {
            plus: true,
            buf: [0; SCAN_CAPACITY],
            len: 0,
            total: 0,
        };
        for &d in digits {
            s.push(d);
        }
        s
    }
}

/// Digits that should be an E.164 number, country code first.
fn international(s: &Scanned, text: &str, plan: &NumberPlan) -> Result<Number, NumberError> {
    let d = s.digits();
    if s.total == 0 {
        return Err(NumberError::Empty);
    }
    if s.total > MAX_E164_DIGITS {
        return Err(NumberError::TooLong {
            digits: s.total,
            input: Excerpt::new(text),
        });
    }
    if d.first() == Some(&b'0') {
        return Err(NumberError::CountryCodeZero {
            input: Excerpt::new(text),
        });
    }
    if d.len() < MIN_INTERNATIONAL_DIGITS {
        // `+86110`: our own short code written with the country code.
        return match d.strip_prefix(plan.cc()) {
            Some(rest) if !rest.is_empty() && rest.len() <= plan.max_short() => {
                Ok(short_code(rest))
            }
            _ => Err(NumberError::TooShort {
                digits: d.len(),
                input: Excerpt::new(text),
            }),
        };
    }
    Ok(Number {
        key: digits_value(d),
    })
}

// ---------------------------------------------------------------------------------------------
// Prefix

/// The leading digits of E.164 numbers (country code first, 1 to 15 digits): a number range such
/// as `+86170` (a block of virtual-operator numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    value: u64,
    len: u8,
}

impl Prefix {
    /// Reads `+86170`, `0086170`, or national `0170` / `170` (→ `+86170`), with the same
    /// separators as [`Number::parse`]. There are no short codes here: every form names a range
    /// of international numbers. A national prefix may be as short as the trunk prefix alone
    /// (`0` → `+86`, the whole country).
    pub fn parse(input: &str, plan: &NumberPlan) -> Result<Prefix, NumberError> {
        let text = input.trim();
        let s = scan(text, false)?;
        if s.total == 0 {
            return Err(NumberError::Empty);
        }
        if s.total > s.len {
            return Err(NumberError::TooLong {
                digits: s.total,
                input: Excerpt::new(text),
            });
        }
        let d = s.digits();
        let full = if s.plus {
            s
        } else if let Some(rest) = d.strip_prefix(plan.international_prefix.as_bytes()) {
            Scanned::from_digits(rest)
        } else {
            let trunk = plan.trunk_prefix.as_bytes();
            let national = match d.strip_prefix(trunk) {
                Some(rest) if !trunk.is_empty() => rest,
                _ => d,
            };
            let mut full = Scanned::from_digits(plan.cc());
            for &digit in national {
                full.push(digit);
            }
            full
        };
        let d = full.digits();
        if d.is_empty() {
            return Err(NumberError::Empty);
        }
        if full.total > MAX_E164_DIGITS {
            return Err(NumberError::TooLong {
                digits: full.total,
                input: Excerpt::new(text),
            });
        }
        if d.first() == Some(&b'0') {
            return Err(NumberError::CountryCodeZero {
                input: Excerpt::new(text),
            });
        }
        Ok(Prefix {
            value: digits_value(d),
            len: d.len() as u8,
        })
    }

    /// `None` unless `value` has exactly `len` digits (1..=15, so no leading zero).
    pub fn from_digits(value: u64, len: u8) -> Option<Prefix> {
        let n = usize::from(len);
        ((1..=MAX_E164_DIGITS).contains(&n) && value >= POW10[n - 1] && value < POW10[n])
            .then_some(Prefix { value, len })
    }

    pub const fn digit_count(self) -> u8 {
        self.len
    }

    /// The digits as an integer (`86170`).
    pub const fn value(self) -> u64 {
        self.value
    }

    /// The digits as ASCII, written into `buf` (no `+`, no allocation).
    pub fn digits(self, buf: &mut [u8; 20]) -> &[u8] {
        write_digits(self.value, usize::from(self.len), buf)
    }

    /// Does `n` start with these digits? Never true for a short code: a prefix names a range of
    /// international numbers. A prefix matches a number equal to it.
    pub fn matches(self, n: Number) -> bool {
        let Some(v) = n.e164() else {
            return false;
        };
        let count = count_digits(v);
        let len = usize::from(self.len);
        count >= len && v / POW10[count - len] == self.value
    }
}

impl fmt::Display for Prefix {
    /// `+86170`, the form [`Prefix::parse`] reads back to the same prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('+')?;
        let mut buf = [0u8; 20];
        for &d in self.digits(&mut buf) {
            f.write_char(char::from(d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn china() -> NumberPlan {
        NumberPlan::default()
    }

    fn nanp() -> NumberPlan {
        NumberPlan::new(1, "1", "011", 3).unwrap()
    }

    fn p(s: &str) -> Result<Number, NumberError> {
        Number::parse(s, &china())
    }

    fn e164(s: &str) -> u64 {
        match p(s) {
            Ok(n) => n.e164().unwrap_or_else(|| panic!("{s}: short code {n}")),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn short(s: &str) -> String {
        match p(s) {
            Ok(n) if n.is_short_code() => n.to_string(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn default_plan_is_china() {
        let d = NumberPlan::default();
        assert_eq!(d, NumberPlan::new(86, "0", "00", 6).unwrap());
        assert_eq!(d.country_code(), 86);
        assert_eq!(d.trunk_prefix(), "0");
        assert_eq!(d.international_prefix(), "00");
        assert_eq!(d.max_short_code_digits(), 6);
        let n = nanp();
        assert_eq!((n.trunk_prefix(), n.international_prefix()), ("1", "011"));
        assert!(NumberPlan::new(372, "", "00", 5).is_ok());
    }

    #[test]
    fn plan_rejects_bad_parameters() {
        let bad = [
            NumberPlan::new(0, "0", "00", 6),
            NumberPlan::new(1000, "0", "00", 6),
            NumberPlan::new(86, "0a", "00", 6),
            NumberPlan::new(86, "012345", "00", 6),
            NumberPlan::new(86, "0", "", 6),
            NumberPlan::new(86, "0", "+00", 6),
            NumberPlan::new(86, "0", "00", 16),
        ];
        for r in bad {
            assert!(matches!(r, Err(NumberError::InvalidPlan { .. })), "{r:?}");
        }
        assert_eq!(
            NumberPlan::new(86, "0a", "00", 6).unwrap_err().to_string(),
            "invalid numbering plan: trunk prefix '0a' must be 0 to 5 digits"
        );
        assert_eq!(
            NumberPlan::new(1000, "0", "00", 6).unwrap_err().to_string(),
            "invalid numbering plan: country code '1000' must be 1 to 999 \
             (ITU-T E.164 country codes have 1 to 3 digits)"
        );
    }

    #[test]
    fn international_forms() {
        let want = 8613812345678;
        for s in [
            "+8613812345678",
            "008613812345678",
            "13812345678",
            "+86 138 1234 5678",
            "+86-138-1234-5678",
            "(+86) 138.1234.5678",
            "  138\t1234 5678  ",
            "0086 (138) 1234-5678",
        ] {
            assert_eq!(e164(s), want, "{s}");
        }
        assert_eq!(p("+8613812345678").unwrap().to_string(), "+8613812345678");
    }

    #[test]
    fn national_forms_strip_the_trunk_prefix() {
        assert_eq!(e164("01012345678"), 861012345678);
        assert_eq!(e164("010-1234 5678"), 861012345678);
        assert_eq!(e164("1012345678"), 861012345678);
        assert_eq!(e164("0755 8765 4321"), 8675587654321);
        let nanp = nanp();
        for s in [
            "12125550123",
            "2125550123",
            "(212) 555-0123",
            "1-212-555-0123",
            "+1 212 555 0123",
            "011 1 212 555 0123",
        ] {
            assert_eq!(
                Number::parse(s, &nanp).unwrap().e164(),
                Some(12125550123),
                "{s}"
            );
        }
        assert_eq!(
            Number::parse("011 44 7911 123456", &nanp).unwrap().e164(),
            Some(447911123456)
        );
        // A plan without a trunk prefix: national digits get the country code and nothing else.
        let estonia = NumberPlan::new(372, "", "00", 3).unwrap();
        assert_eq!(
            Number::parse("5123 4567", &estonia).unwrap().e164(),
            Some(37251234567)
        );
    }

    #[test]
    fn short_codes_keep_their_digits() {
        for s in [
            "110", "112", "119", "120", "12381", "96110", "000", "0", "00",
        ] {
            assert_eq!(short(s), s);
        }
        let n = p("000").unwrap();
        assert_eq!(n.digit_count(), 3);
        assert_ne!(n, p("0").unwrap());
        assert_ne!(n, p("00").unwrap());
        assert_eq!(n.key(), 1 << 63 | 3 << 56);
        assert_eq!(p("110").unwrap().key(), 1 << 63 | 3 << 56 | 110);
        assert_eq!(short("1-1-0"), "110");
        assert_eq!(Number::parse("911", &nanp()).unwrap().to_string(), "911");
        assert_eq!(
            Number::parse("0911", &nanp()).unwrap_err(),
            NumberError::TooShort {
                digits: 5,
                input: Excerpt::new("0911"),
            }
        );
    }

    #[test]
    fn short_code_written_internationally() {
        assert_eq!(short("+86110"), "110");
        assert_eq!(short("0086110"), "110");
        assert_eq!(short("+86 119"), "119");
        assert_eq!(Number::parse("+1911", &nanp()).unwrap().to_string(), "911");
        // Seven digits or more is a valid E.164 number, which as_national_short_code maps.
        let n = p("+8612381").unwrap();
        assert_eq!(n.e164(), Some(8612381));
        assert_eq!(
            n.as_national_short_code(&china()).unwrap().to_string(),
            "12381"
        );
        assert_eq!(
            p("+8696110")
                .unwrap()
                .as_national_short_code(&china())
                .unwrap()
                .to_string(),
            "96110"
        );
        // A short code is already national.
        let s = p("110").unwrap();
        assert_eq!(s.as_national_short_code(&china()), Some(s));
        assert_eq!(
            p("+86110").unwrap().as_national_short_code(&china()),
            Some(s)
        );
        // Other countries, or too many digits after the country code: no short code.
        assert_eq!(
            p("+8613812345678")
                .unwrap()
                .as_national_short_code(&china()),
            None
        );
        assert_eq!(
            p("+1212555").unwrap().as_national_short_code(&china()),
            None
        );
        assert_eq!(
            Number::parse("+8612381", &nanp())
                .unwrap()
                .as_national_short_code(&nanp()),
            None
        );
    }

    #[test]
    fn tel_uris() {
        assert_eq!(e164("tel:+86-138-1234-5678"), 8613812345678);
        assert_eq!(e164("TEL:+8613812345678"), 8613812345678);
        assert_eq!(e164("tel:+8613812345678;ext=1234;isub=abc"), 8613812345678);
        assert_eq!(e164("tel:13812345678"), 8613812345678);
        // Local numbers (RFC 3966 §5.1.5).
        assert_eq!(short("tel:7042;phone-context=+86"), "7042");
        assert_eq!(short("tel:110;Phone-Context=+86"), "110");
        assert_eq!(e164("tel:138-1234-5678;phone-context=+86"), 8613812345678);
        assert_eq!(e164("tel:010-1234-5678;phone-context=+86"), 861012345678);
        assert_eq!(e164("tel:1234-5678;phone-context=+86-10"), 861012345678);
        assert_eq!(short("tel:110;phone-context=+86-10"), "110");
        // RFC 3966 §6's own example, in another country than the plan's.
        assert_eq!(
            e164("tel:863-1234;phone-context=+1-914-555"),
            19145558631234
        );
        // A domain-name context is a private numbering space.
        assert_eq!(short("tel:7042;phone-context=example.com"), "7042");
        let e = p("tel:12345678;phone-context=example.com").unwrap_err();
        assert!(matches!(e, NumberError::PrivateNumber { .. }), "{e:?}");
        assert!(e.to_string().contains("'example.com'"), "{e}");
        // A context on a global number is redundant and ignored.
        assert_eq!(
            e164("tel:+8613812345678;phone-context=example.com"),
            8613812345678
        );
        assert!(matches!(
            p("tel:7042;phone-context=+86x"),
            Err(NumberError::Malformed { .. })
        ));
        assert!(matches!(
            p("tel:7042;phone-context="),
            Err(NumberError::Malformed { .. })
        ));
        assert!(matches!(
            p("tel:7042;phone-context=+"),
            Err(NumberError::Malformed { .. })
        ));
        assert!(matches!(
            p("tel:13812345678;phone-context=+-"),
            Err(NumberError::Malformed { .. })
        ));
        assert_eq!(
            p("tel:;phone-context=+8613812345678"),
            Err(NumberError::Empty)
        );
        // Regression: a multi-byte character right after `%2` in a context.
        assert!(p("tel:7042;phone-context=%2é").is_ok());
        assert!(p("tel:7042;phone-context=%2").is_ok());
        assert!(matches!(
            p("tel:7042;phone-context=+44"),
            Err(NumberError::TooShort { digits: 6, .. })
        ));
    }

    #[test]
    fn sip_uris() {
        assert_eq!(e164("sip:+8613812345678@host;user=phone"), 8613812345678);
        assert_eq!(e164("sip:13812345678@10.0.0.1:5060"), 8613812345678);
        assert_eq!(e164("sips:+8613812345678@example.com"), 8613812345678);
        assert_eq!(e164("SIP:+8613812345678@HOST"), 8613812345678);
        assert_eq!(e164("sip:+861381234;phone-context=+86@host"), 861381234);
        assert_eq!(short("sip:7042;phone-context=pbx.example.com@host"), "7042");
        assert_eq!(e164("sip:%2B8613812345678@host"), 8613812345678);
        assert_eq!(e164("sip:%2b86-138-1234-5678@host"), 8613812345678);
        assert_eq!(e164("sip:13812345678:secret@host"), 8613812345678);
        assert_eq!(
            e164("sip:008613812345678@[2001:db8::1]:5060;transport=tcp"),
            8613812345678
        );
        assert_eq!(short("sip:110@ims.example.cn;user=phone"), "110");
        assert_eq!(short("sip:7042;phone-context=%2B86@host"), "7042");
    }

    #[test]
    fn name_addr_forms() {
        for s in [
            "<sip:+8613812345678@host>",
            "<sip:+8613812345678@host>;tag=abc",
            "\"Bob\" <sip:+8613812345678@host;user=phone>;tag=1",
            "Bob <sips:+8613812345678@host>",
            "\"A \\\"quoted\\\" <name>\" <sip:+8613812345678@host>",
            "\"疑似诈骗\" <tel:+86-138-1234-5678>",
            "<+8613812345678>",
        ] {
            assert_eq!(e164(s), 8613812345678, "{s}");
        }
    }

    #[test]
    fn rejects_empty() {
        for s in [
            "",
            "   ",
            "---",
            "()",
            "tel:",
            "+",
            "<>",
            "sip:@host",
            "tel:;phone-context=+86",
        ] {
            assert_eq!(p(s), Err(NumberError::Empty), "{s}");
        }
        assert_eq!(NumberError::Empty.to_string(), "empty: no digits");
    }

    #[test]
    fn rejects_anonymous() {
        for s in [
            "anonymous",
            "Anonymous",
            "sip:anonymous@anonymous.invalid",
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
            "sip:c8oqz84zk7z@anonymous.invalid",
            "sip:restricted@10.0.0.1",
            "tel:unavailable",
        ] {
            assert!(
                matches!(p(s), Err(NumberError::Anonymous { .. })),
                "{s}: {:?}",
                p(s)
            );
        }
        assert!(p("anonymous")
            .unwrap_err()
            .to_string()
            .starts_with("anonymous"));
    }

    #[test]
    fn rejects_other_schemes() {
        let e = p("mailto:bob@example.com").unwrap_err();
        assert_eq!(
            e,
            NumberError::UnsupportedScheme {
                scheme: Excerpt::new("mailto")
            }
        );
        assert_eq!(
            e.to_string(),
            "unsupported URI scheme 'mailto': only tel:, sip: and sips: carry phone numbers"
        );
        assert!(matches!(
            p("<http://x>"),
            Err(NumberError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            p("urn:service:sos"),
            Err(NumberError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn rejects_letters() {
        let e = p("abc").unwrap_err();
        assert_eq!(e.to_string(), "not a phone number: letters in 'abc'");
        for s in [
            "1-800-FLOWERS",
            "sip:alice@example.com",
            "电话138",
            "tel:+86138abc",
        ] {
            assert!(
                matches!(p(s), Err(NumberError::Letters { .. })),
                "{s}: {:?}",
                p(s)
            );
        }
    }

    #[test]
    fn rejects_service_codes() {
        for s in ["*21#", "#31#13812345678", "tel:*67", "sip:*86@host"] {
            assert!(matches!(p(s), Err(NumberError::ServiceCode { .. })), "{s}");
        }
        assert!(p("*21#")
            .unwrap_err()
            .to_string()
            .starts_with("service code with * or #"));
    }

    #[test]
    fn rejects_invalid_characters() {
        assert_eq!(
            p("138!1234").unwrap_err(),
            NumberError::InvalidCharacter {
                ch: '!',
                input: Excerpt::new("138!1234")
            }
        );
        assert!(matches!(
            p("138/1234"),
            Err(NumberError::InvalidCharacter { ch: '/', .. })
        ));
        assert!(matches!(
            p("１３８"),
            Err(NumberError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            p("sip:%E7%94%B5@host"),
            Err(NumberError::InvalidCharacter { .. })
        ));
        assert!(p("1\n2").unwrap_err().to_string().contains("'\\n'"));
    }

    #[test]
    fn rejects_malformed_uris() {
        for s in [
            "<sip:+8613812345678@host",
            "\"Bob <sip:+8613812345678@host>",
            "\"Bob\" sip:+8613812345678@host",
            "sip:example.com",
            "sip:%2@host",
            "sip:%zz86@host",
            "+86+13812345678",
            "86+13812345678",
        ] {
            assert!(
                matches!(p(s), Err(NumberError::Malformed { .. })),
                "{s}: {:?}",
                p(s)
            );
        }
        assert_eq!(
            p("sip:example.com").unwrap_err().to_string(),
            "malformed number or URI 'example.com': SIP URI without a user part"
        );
    }

    #[test]
    fn rejects_too_long() {
        let e = p("+8613812345678901").unwrap_err();
        assert_eq!(
            e,
            NumberError::TooLong {
                digits: 16,
                input: Excerpt::new("+8613812345678901")
            }
        );
        assert!(
            e.to_string()
                .starts_with("more than 15 digits (E.164 maximum)"),
            "{e}"
        );
        // With the international prefix, the prefix does not count.
        assert_eq!(e164("00861381234567890").to_string().len(), 15);
        assert!(matches!(
            p("008613812345678901"),
            Err(NumberError::TooLong { digits: 16, .. })
        ));
        // National: the country code counts.
        assert!(matches!(
            p("1381234567890123"),
            Err(NumberError::TooLong { digits: 18, .. })
        ));
        let long = "9".repeat(100);
        assert_eq!(
            p(&long).unwrap_err(),
            NumberError::TooLong {
                digits: 100,
                input: Excerpt::new(&long)
            }
        );
        assert!(p(&long).unwrap_err().to_string().contains('…'));
    }

    #[test]
    fn rejects_too_short_and_zero_country_code() {
        let e = p("+441234").unwrap_err();
        assert!(
            matches!(e, NumberError::TooShort { digits: 6, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("at least 7"), "{e}");
        assert_eq!(e164("+4412345"), 4412345);
        assert!(matches!(
            p("+0123456789"),
            Err(NumberError::CountryCodeZero { .. })
        ));
        assert!(matches!(
            p("0000123456789"),
            Err(NumberError::CountryCodeZero { .. })
        ));
        assert!(matches!(
            p("+86"),
            Err(NumberError::TooShort { digits: 2, .. })
        ));
    }

    #[test]
    fn keys_round_trip_and_reject_garbage() {
        for s in ["+8613812345678", "110", "000", "0", "+4412345", "123456"] {
            let n = p(s).unwrap();
            assert_eq!(Number::from_key(n.key()), Some(n), "{s}");
        }
        let bad = [
            0,
            999_999,
            1_000_000_000_000_000,
            u64::MAX,
            1 << 63,
            1 << 63 | 16 << 56,
            1 << 63 | 3 << 56 | 1000,
            1 << 63 | 0x7f << 56,
        ];
        for k in bad {
            assert_eq!(Number::from_key(k), None, "{k:#x}");
        }
        assert_eq!(Number::from_key(1_000_000).unwrap().to_string(), "+1000000");
        assert_eq!(
            Number::from_key(1 << 63 | 15 << 56 | 999_999_999_999_999)
                .unwrap()
                .digit_count(),
            15
        );
    }

    #[test]
    fn digits_and_display() {
        let n = p("+8613812345678").unwrap();
        let mut buf = [0u8; 20];
        assert_eq!(n.digits(&mut buf), b"8613812345678");
        assert_eq!(n.digit_count(), 13);
        assert!(!n.is_short_code());
        let s = p("00110").unwrap();
        assert_eq!(s.digits(&mut buf), b"00110");
        assert_eq!(s.digit_count(), 5);
        assert_eq!(s.e164(), None);
        assert_eq!(s.to_string(), "00110");
    }

    #[test]
    fn prefixes() {
        let plan = china();
        for s in [
            "+86170", "0086170", "0170", "170", "+86 170-", "(0)170", "+86-170",
        ] {
            let pre = Prefix::parse(s, &plan).unwrap();
            assert_eq!((pre.value(), pre.digit_count()), (86170, 5), "{s}");
            assert_eq!(pre.to_string(), "+86170");
        }
        let mut buf = [0u8; 20];
        assert_eq!(Prefix::parse("+1", &plan).unwrap().digits(&mut buf), b"1");
        assert_eq!(Prefix::parse("0", &plan).unwrap().to_string(), "+86");
        assert_eq!(Prefix::parse("1", &nanp()).unwrap().to_string(), "+1");
        assert_eq!(Prefix::parse("212", &nanp()).unwrap().to_string(), "+1212");
        assert_eq!(Prefix::parse("", &plan), Err(NumberError::Empty));
        assert_eq!(Prefix::parse("00", &plan), Err(NumberError::Empty));
        assert!(matches!(
            Prefix::parse("+0", &plan),
            Err(NumberError::CountryCodeZero { .. })
        ));
        assert!(matches!(
            Prefix::parse("+1234567890123456", &plan),
            Err(NumberError::TooLong { digits: 16, .. })
        ));
        assert!(matches!(
            Prefix::parse("17x", &plan),
            Err(NumberError::Letters { .. })
        ));
        assert!(Prefix::parse("+123456789012345", &plan).is_ok());

        let pre = Prefix::parse("+86170", &plan).unwrap();
        assert!(pre.matches(p("+8617012345678").unwrap()));
        assert!(!pre.matches(p("+8613812345678").unwrap()));
        assert!(!pre.matches(p("+861701").unwrap()));
        assert!(Prefix::parse("+861701234", &plan)
            .unwrap()
            .matches(p("+861701234").unwrap()));
        assert!(!Prefix::parse("+1", &plan)
            .unwrap()
            .matches(p("110").unwrap()));

        assert_eq!(Prefix::from_digits(86170, 5), Some(pre));
        assert_eq!(Prefix::from_digits(86170, 6), None);
        assert_eq!(Prefix::from_digits(0, 1), None);
        assert_eq!(Prefix::from_digits(1, 0), None);
        assert_eq!(Prefix::from_digits(1_000_000_000_000_000, 16), None);
    }

    // ---- property tests ----

    fn plans() -> impl Strategy<Value = NumberPlan> {
        prop_oneof![
            Just(NumberPlan::default()),
            Just(NumberPlan::new(1, "1", "011", 3).unwrap()),
            Just(NumberPlan::new(44, "0", "00", 3).unwrap()),
            Just(NumberPlan::new(372, "", "00", 5).unwrap()),
            Just(NumberPlan::new(61, "0", "0011", 3).unwrap()),
        ]
    }

    fn international_numbers() -> impl Strategy<Value = Number> {
        (7usize..=15).prop_flat_map(|len| {
            (POW10[len - 1]..POW10[len]).prop_map(|v| Number::from_key(v).unwrap())
        })
    }

    /// A plan and a number that the plan can write (short codes no longer than its maximum).
    fn plan_and_number() -> impl Strategy<Value = (NumberPlan, Number)> {
        plans().prop_flat_map(|plan| {
            let max = usize::from(plan.max_short_code_digits()).max(1);
            let short = proptest::string::string_regex(&format!("[0-9]{{1,{max}}}"))
                .unwrap()
                .prop_map(|s| short_code(s.as_bytes()));
            (Just(plan), prop_oneof![international_numbers(), short])
        })
    }

    fn insert_separators(s: &str, seps: &[(usize, char)]) -> String {
        let mut out: Vec<char> = s.chars().collect();
        for &(at, c) in seps {
            let at = at % (out.len() + 1);
            out.insert(at, c);
        }
        out.into_iter().collect()
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,60}", plan in plans()) {
            let _ = Number::parse(&s, &plan);
            let _ = Prefix::parse(&s, &plan);
        }

        #[test]
        fn parse_never_panics_on_uri_like_input(
            s in "(\"[^\"]{0,5}\" )?<?(tel|sip|sips|TEL|x)?:?[+%0-9a-fA-F;=@:.<>()*# é中-]{0,30}\
                  (;phone-context=[+%0-9a-fA-F.é中-]{0,8})?(@[a-z.:]{0,6})?>?",
            plan in plans(),
        ) {
            let _ = Number::parse(&s, &plan);
        }

        #[test]
        fn normalisation_is_idempotent((plan, n) in plan_and_number()) {
            prop_assert_eq!(Number::parse(&n.to_string(), &plan), Ok(n));
            prop_assert_eq!(Number::parse(&format!("tel:{n}"), &plan), Ok(n));
            prop_assert_eq!(Number::parse(&format!("\"x\" <sip:{n}@h>;tag=1"), &plan), Ok(n));
        }

        #[test]
        fn parse_output_reparses_to_itself(s in "[+0-9 ()-]{1,20}", plan in plans()) {
            if let Ok(n) = Number::parse(&s, &plan) {
                prop_assert_eq!(Number::parse(&n.to_string(), &plan), Ok(n));
            }
        }

        #[test]
        fn keys_round_trip((_plan, n) in plan_and_number()) {
            prop_assert_eq!(Number::from_key(n.key()), Some(n));
        }

        #[test]
        fn from_key_accepts_only_its_own_keys(k in any::<u64>()) {
            if let Some(n) = Number::from_key(k) {
                prop_assert_eq!(n.key(), k);
            }
        }

        #[test]
        fn separators_do_not_change_the_number(
            (plan, n) in plan_and_number(),
            seps in proptest::collection::vec((any::<usize>(), proptest::sample::select(vec!['-', '.', '(', ')', ' '])), 0..6),
        ) {
            let s = insert_separators(&n.to_string(), &seps);
            prop_assert_eq!(Number::parse(&s, &plan), Ok(n), "{}", s);
        }

        #[test]
        fn prefix_matches_like_a_string_prefix(
            pre in "[1-9][0-9]{0,14}",
            tail in "[0-9]{0,14}",
            other in international_numbers(),
            use_other in any::<bool>(),
        ) {
            let prefix = Prefix::parse(&format!("+{pre}"), &NumberPlan::default()).unwrap();
            let candidate = format!("{pre}{tail}");
            let n = if use_other || candidate.len() < 7 || candidate.len() > 15 {
                other
            } else {
                Number::from_key(candidate.parse().unwrap()).unwrap()
            };
            let mut buf = [0u8; 20];
            let digits = n.digits(&mut buf).to_vec();
            prop_assert_eq!(prefix.matches(n), digits.starts_with(pre.as_bytes()));
            prop_assert_eq!(Prefix::parse(&prefix.to_string(), &NumberPlan::default()), Ok(prefix));
            prop_assert_eq!(Prefix::from_digits(prefix.value(), prefix.digit_count()), Some(prefix));
        }
    }
}
