//! Deterministic synthetic rule sets: numbers, number prefixes, domains, URLs and keywords.
//!
//! Contract:
//! - **Deterministic.** The output is a function of [`GenSpec`] only, identical on every platform
//!   (own PRNG in `prng`, integer arithmetic only, no hash-map iteration order in the output).
//! - **Independent lists.** Each list has its own random stream, so changing `urls` never changes
//!   the numbers; and a list of `n` entries is the first `n` entries of the list of `n + m`.
//! - **Unique** entries within each list (dedup on a 64-bit key: the E.164 digits as an integer
//!   for numbers, a hash for strings; a hash collision makes the generator skip a candidate,
//!   never emit a duplicate).
//! - **Own encoders.** Every file format is written here by hand, never with the engine's or the
//!   gateway's code: a bug shared by generator and parser would hide.
//!
//! Cost: one pass per list, `O(n)` time; memory is the dedup set (about 16 bytes per entry at
//! 10^7 entries, for the list being generated; domain and URL sets are kept for the truth file).
//! The rule files are streamed through a `BufWriter`, never held whole.
//!
//! Termination: a list whose space is exhausted (an absurd count, e.g. more prefixes than the
//! plans allow) stops after a bounded number of attempts and comes out shorter; [`Summary`]
//! reports the real counts.

use crate::prng::{capacity_hint, fast_set, hash_bytes, Rng, Stream};
use crate::truth::{World, TRUTH_SAMPLE};
use crate::vocab::*;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How much to generate, and from which seed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GenSpec {
    /// Exact E.164 numbers (`kind=number`, action `block`).
    pub numbers: usize,
    /// Number prefixes (`kind=prefix`, action `tag`, callers of virtual operators and high-risk
    /// ranges), written to the same CSV after the numbers.
    pub prefixes: usize,
    /// Domain rules, spread over the domain formats (see [`placement`]).
    pub domains: usize,
    /// URL rules (Safe Browsing expressions: `host/path/` prefixes and exact `host/path?query`).
    pub urls: usize,
    /// Keywords (a fixed seed list first, then generated combinations).
    pub keywords: usize,
    pub seed: u64,
}

impl Default for GenSpec {
    /// A small set that builds in milliseconds: enough for unit and smoke tests.
    fn default() -> Self {
        GenSpec {
            numbers: 1000,
            prefixes: 20,
            domains: 1000,
            urls: 500,
            keywords: 200,
            seed: 1,
        }
    }
}

/// What was generated: the block rules of each list, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// E.164 numbers, `+` and 8 to 15 digits (`+8613812345678`).
    pub numbers: Vec<String>,
    /// E.164 prefixes of at least 6 digits, country code included (`+861705`).
    pub prefixes: Vec<String>,
    /// Host names (`secure-pay-update.top`), in generation order.
    pub domains: Vec<String>,
    /// Where each of [`domains`](Self::domains) is written and which names its rule covers
    /// (same index).
    pub domain_placements: Vec<Placement>,
    /// Safe Browsing expressions without scheme (`host/path/` or `host/path/file.php?id=7`).
    pub urls: Vec<String>,
    /// UTF-8 phrases (`安全账户`, `verify your account`), lower case where ASCII.
    pub keywords: Vec<String>,
}

/// A reference reading of a rule set's domain lists: each listed name with its reach.
/// Deliberately the plainest possible code (string joins, a map lookup per label), kept apart
/// from the ground truth's hashed sets and from the engine, so tests can check both against it.
#[derive(Debug)]
pub struct DomainReach<'a>(std::collections::HashMap<&'a str, Reach>);

impl RuleSet {
    /// The listed domains with what each rule covers, for [`DomainReach::covers`].
    pub fn domain_reach(&self) -> DomainReach<'_> {
        DomainReach(
            self.domains
                .iter()
                .map(String::as_str)
                .zip(self.domain_placements.iter().map(|p| p.reach))
                .collect(),
        )
    }
}

impl DomainReach<'_> {
    /// The reach of `name`'s own rule, when `name` is listed.
    pub fn reach(&self, name: &str) -> Option<Reach> {
        self.0.get(name).copied()
    }
    /// Does some listed name's rule reach `host`, as the formats define it?
    pub fn covers(&self, host: &str) -> bool {
        let labels: Vec<&str> = host.split('.').collect();
        (0..labels.len()).any(|i| match self.0.get(labels[i..].join(".").as_str()) {
            Some(r) if i == 0 => r.covers_name(),
            Some(r) => r.covers_below(),
            None => false,
        })
    }
}

/// One file that [`write_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// What [`write_dir`] wrote: the real counts (equal to the spec unless a space was exhausted)
/// and every file with its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub numbers: usize,
    pub prefixes: usize,
    pub domains: usize,
    pub urls: usize,
    pub keywords: usize,
    /// Entries in `truth.json` (positives plus negatives, all lists).
    pub truth_samples: usize,
    pub files: Vec<WrittenFile>,
}

impl fmt::Display for Summary {
    /// What the CLI prints: the counts, then one line per file with its size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "numbers {}, prefixes {}, domains {}, urls {}, keywords {}, truth samples {}",
            self.numbers, self.prefixes, self.domains, self.urls, self.keywords, self.truth_samples
        )?;
        for file in &self.files {
            write!(f, "\n  {} ({} bytes)", file.path.display(), file.bytes)?;
        }
        Ok(())
    }
}

/// The file names [`write_dir`] uses (the manifest refers to them).
pub const NUMBERS_FILE: &str = "numbers.csv";
pub const DOMAINS_FILE: &str = "domains.domains";
pub const HOSTS_FILE: &str = "domains.hosts";
pub const ADBLOCK_FILE: &str = "domains.adblock";
pub const RPZ_FILE: &str = "domains.rpz";
pub const URLS_FILE: &str = "urls.urls";
pub const KEYWORDS_FILE: &str = "keywords.keywords";
pub const MANIFEST_FILE: &str = "rules.toml";
pub const TRUTH_FILE: &str = "truth.json";

/// The header row of `numbers.csv`.
pub const NUMBERS_CSV_HEADER: &str = "number,kind,action,category,direction";

/// The nine fraud categories of China's 12381 warning system, as written in `numbers.csv`.
pub const CATEGORIES_12381: [&str; 9] = [
    "loans",
    "order-brushing",
    "impersonating-police",
    "romance-investment",
    "fake-customer-service",
    "impersonating-acquaintances",
    "fake-prizes",
    "fake-credit-repair",
    "other",
];

/// Generate the whole rule set in memory. Same spec, same output.
///
/// For 10^6 entries and more prefer [`write_dir`], which streams to files.
pub fn generate(spec: &GenSpec) -> RuleSet {
    let mut set = RuleSet::default();
    // The closures never fail, so the `Result`s are always `Ok` and carry nothing to report.
    let _ = for_each_number(spec, |row| {
        set.numbers.push(e164(row.digits));
        Ok(())
    });
    set.prefixes = prefix_rows(spec).iter().map(|p| e164(p.digits)).collect();
    let key = placement_key(spec.seed);
    let _ = for_each_domain(spec, |d| {
        set.domain_placements
            .push(placement(key, set.domains.len()));
        set.domains.push(d.to_owned());
        Ok(())
    });
    let _ = for_each_url(spec, |u| {
        set.urls.push(u.expression());
        Ok(())
    });
    let _ = for_each_keyword(spec, |k| {
        set.keywords.push(k.to_owned());
        Ok(())
    });
    set
}

/// Write the rule set to `dir` (created if missing): `numbers.csv`, the domain rules spread over
/// `domains.domains`, `domains.hosts`, `domains.adblock` and `domains.rpz` (see [`placement`]),
/// `urls.urls`, `keywords.keywords`, the manifest `rules.toml` and the samples `truth.json`.
/// Existing files of those names are replaced.
pub fn write_dir(spec: &GenSpec, dir: &Path) -> io::Result<Summary> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, "creating the output directory", dir))?;
    let mut files = Vec::with_capacity(9);
    let mut world = World::new(spec.seed);

    // numbers.csv: header, number rows, then prefix rows.
    let path = dir.join(NUMBERS_FILE);
    let mut w = create(&path)?;
    let mut line = Vec::with_capacity(96);
    let stride = sample_stride(spec.numbers);
    let mut i = 0usize;
    let written = (|| -> io::Result<(usize, usize)> {
        w.write_all(NUMBERS_CSV_HEADER.as_bytes())?;
        w.write_all(b"\n")?;
        let numbers = for_each_number(spec, |row| {
            if i % stride == 0 {
                world.number_sample.push(row.digits);
            }
            i += 1;
            line.clear();
            line.push(b'+');
            push_u64(&mut line, row.digits);
            line.extend_from_slice(b",number,block,");
            line.extend_from_slice(row.category.as_bytes());
            line.push(b',');
            line.extend_from_slice(row.direction.as_bytes());
            line.push(b'\n');
            w.write_all(&line)
        })?;
        let prefixes = prefix_rows(spec);
        for p in &prefixes {
            line.clear();
            line.push(b'+');
            push_u64(&mut line, p.digits);
            line.extend_from_slice(b",prefix,tag,");
            line.extend_from_slice(p.category.as_bytes());
            line.extend_from_slice(b",caller\n");
            w.write_all(&line)?;
        }
        let n = prefixes.len();
        world.set_prefixes(prefixes);
        w.flush()?;
        Ok((numbers, n))
    })();
    let (numbers, prefixes) = written.map_err(|e| with_path(e, "writing", &path))?;
    files.push(finish(path)?);

    // The domain rules, each in the format its placement names: domains.domains,
    // domains.hosts, domains.adblock, domains.rpz.
    let mut dw = DomainWriters::create(dir, spec.seed)?;
    let key = placement_key(spec.seed);
    let stride = sample_stride(spec.domains);
    let mut i = 0usize;
    world.reserve_domains(spec.domains);
    let domains = for_each_domain(spec, |d| {
        let pl = placement(key, i);
        world.add_domain(d, pl.reach, i % stride == 0);
        i += 1;
        dw.write(pl, d)
    })?;
    files.extend(dw.finish()?);
    // urls.urls: one Safe Browsing expression per line.
    let path = dir.join(URLS_FILE);
    let mut w = create(&path)?;
    let stride = sample_stride(spec.urls);
    let mut i = 0usize;
    world.url_set.reserve(capacity_hint(spec.urls));
    let urls = for_each_url(spec, |u| {
        if i % stride == 0 {
            world.url_sample.push(u.clone());
        }
        i += 1;
        let expr = u.expression();
        world.url_set.insert(hash_bytes(expr.as_bytes()));
        w.write_all(expr.as_bytes())?;
        w.write_all(b"\n")
    })
    .and_then(|n| w.flush().map(|()| n))
    .map_err(|e| with_path(e, "writing", &path))?;
    files.push(finish(path)?);

    // keywords.keywords: one phrase per line.
    let path = dir.join(KEYWORDS_FILE);
    let mut w = create(&path)?;
    let stride = sample_stride(spec.keywords);
    let mut i = 0usize;
    let keywords = for_each_keyword(spec, |k| {
        if i % stride == 0 {
            world.keyword_sample.push(k.to_owned());
        }
        i += 1;
        w.write_all(k.as_bytes())?;
        w.write_all(b"\n")
    })
    .and_then(|n| w.flush().map(|()| n))
    .map_err(|e| with_path(e, "writing", &path))?;
    files.push(finish(path)?);

    let path = dir.join(MANIFEST_FILE);
    fs::write(&path, manifest(spec)).map_err(|e| with_path(e, "writing", &path))?;
    files.push(finish(path)?);

    let truth = world.truth();
    let path = dir.join(TRUTH_FILE);
    fs::write(&path, truth.to_json()).map_err(|e| with_path(e, "writing", &path))?;
    files.push(finish(path)?);

    Ok(Summary {
        numbers,
        prefixes,
        domains,
        urls,
        keywords,
        truth_samples: truth.len(),
        files,
    })
}

/// The manifest `rules.toml` that [`write_dir`] writes, referencing the seven rule files.
pub fn manifest(spec: &GenSpec) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str(&format!(
        "# generated by dragnet sim gen-rules --seed {}\n",
        spec.seed
    ));
    s.push_str(&format!(
        "# counts: numbers={} prefixes={} domains={} urls={} keywords={}\n",
        spec.numbers, spec.prefixes, spec.domains, spec.urls, spec.keywords
    ));
    s.push_str("[compile]\ndefault_country = 86\n");
    let sources = [
        (NUMBERS_FILE, "synthetic-numbers", "other", Some("block")),
        (DOMAINS_FILE, "synthetic-domains", "phishing", Some("block")),
        (HOSTS_FILE, "synthetic-hosts", "phishing", Some("block")),
        (ADBLOCK_FILE, "synthetic-adblock", "phishing", Some("block")),
        // An RPZ zone's records give their own action (`CNAME .`: block, NXDOMAIN).
        (RPZ_FILE, "synthetic-rpz", "phishing", None),
        (URLS_FILE, "synthetic-urls", "phishing", Some("block")),
        (KEYWORDS_FILE, "synthetic-keywords", "other", Some("warn")),
    ];
    for (path, name, category, action) in sources {
        s.push_str(&format!(
            "[[source]]\npath = \"{path}\"\nname = \"{name}\"\ncategory = \"{category}\"\n"
        ));
        if let Some(action) = action {
            s.push_str(&format!("action = \"{action}\"\n"));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// Numbering plans the generator draws from (ITU-T E.164 country codes; national formats from
/// the regulators' published plans).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Plan {
    /// +86 1[3-9]x xxxx xxxx (MIIT mobile segments).
    #[default]
    CnMobile,
    /// +86 16x/17x MVNO segments.
    CnVirtual,
    /// +86 area code + 8-digit local number starting 2-8.
    CnLandline,
    /// +86 400 xxx xxxx: national customer-service numbers that fake customer service imitates.
    Cn400,
    /// +44 7xxx xxxxxx.
    Uk,
    /// +1 NPA-NXX-XXXX (NANP: NPA and NXX start 2-9, no N11).
    Nanp,
    /// +1 with a Caribbean NPA (one-ring callbacks).
    NanpCaribbean,
    /// +63 9xx xxx xxxx.
    Ph,
    /// +855 mobile.
    Kh,
    /// +60 1x mobile.
    My,
    /// +95 9 mobile.
    Mm,
}

/// Mostly Chinese mobiles; about a tenth foreign (the brief's "~10% other countries").
const NUMBER_PLANS: [(Plan, u32); 10] = [
    (Plan::CnMobile, 810),
    (Plan::CnLandline, 60),
    (Plan::Cn400, 20),
    (Plan::CnVirtual, 10),
    (Plan::Uk, 15),
    (Plan::Nanp, 25),
    (Plan::Ph, 25),
    (Plan::Kh, 20),
    (Plan::My, 8),
    (Plan::Mm, 7),
];

/// `10^n` for the small `n` the plans use (saturating, never a panic).
#[inline]
pub(crate) fn pow10(n: u32) -> u64 {
    10u64.saturating_pow(n)
}

/// Number of decimal digits of `v` (1 for 0).
#[inline]
pub(crate) fn digit_len(v: u64) -> u32 {
    v.checked_ilog10().map_or(1, |l| l + 1)
}

/// A NANP area code or exchange: `[2-9][0-8|0-9][0-9]`, never N11 (service codes, 47 CFR 52.13).
fn nanp_code(rng: &mut Rng, max_second: u64) -> u64 {
    for _ in 0..16 {
        let (a, b, c) = (rng.range(2, 9), rng.range(0, max_second), rng.range(0, 9));
        if !(b == 1 && c == 1) {
            return a * 100 + b * 10 + c;
        }
    }
    212
}

/// One number of `plan`: its E.164 digits as an integer and its digit count.
pub(crate) fn draw_number(rng: &mut Rng, plan: Plan) -> (u64, u32) {
    let digits = match plan {
        Plan::CnMobile | Plan::CnVirtual => {
            let seg = if plan == Plan::CnVirtual {
                rng.pick(&CN_VIRTUAL_SEGMENTS)
            } else {
                rng.weighted(&CN_MOBILE_SEGMENTS)
            };
            86 * pow10(11) + seg * pow10(8) + rng.below(pow10(8))
        }
        Plan::CnLandline => {
            let area = rng.pick(&CN_AREA_CODES);
            let local = rng.range(2, 8) * pow10(7) + rng.below(pow10(7));
            86 * pow10(digit_len(area) + 8) + area * pow10(8) + local
        }
        Plan::Cn400 => 86 * pow10(10) + 400 * pow10(7) + rng.below(pow10(7)),
        Plan::Uk => {
            44 * pow10(10)
                + 7 * pow10(9)
                + rng.pick(&UK_MOBILE_SECOND) * pow10(8)
                + rng.below(pow10(8))
        }
        Plan::Nanp | Plan::NanpCaribbean => {
            let npa = if plan == Plan::NanpCaribbean {
                rng.pick(&NANP_CARIBBEAN)
            } else {
                nanp_code(rng, 8)
            };
            let nxx = nanp_code(rng, 9);
            pow10(10) + npa * pow10(7) + nxx * pow10(4) + rng.below(pow10(4))
        }
        Plan::Ph => 63 * pow10(10) + 9 * pow10(9) + rng.below(pow10(9)),
        Plan::Kh => {
            let (p, len) = rng.pick(&KH_MOBILE);
            855 * pow10(2 + len) + p * pow10(len) + rng.below(pow10(len))
        }
        Plan::My => {
            let d = rng.below(10);
            if d == 1 {
                60 * pow10(10) + 11 * pow10(8) + rng.below(pow10(8))
            } else {
                60 * pow10(9) + (10 + d) * pow10(7) + rng.below(pow10(7))
            }
        }
        Plan::Mm => 95 * pow10(9) + 9 * pow10(8) + rng.below(pow10(8)),
    };
    (digits, digit_len(digits))
}

/// One number from the weighted mix of plans.
pub(crate) fn draw_any_number(rng: &mut Rng) -> u64 {
    let plan = rng.weighted(&NUMBER_PLANS);
    draw_number(rng, plan).0
}

/// The key of the split that keeps negatives out of the generated numbers without a set.
pub(crate) fn parity_key(seed: u64) -> u64 {
    Rng::new(seed, Stream::NumberParity).next_u64()
}

/// Generated numbers come only from the half of the number space where this is false;
/// negative numbers only from the half where it is true. So a negative is never in the set,
/// whatever the count, and [`negative_numbers`](crate::negative_numbers) needs no set.
#[inline]
pub(crate) fn in_negative_half(key: u64, digits: u64) -> bool {
    crate::prng::mix64(digits ^ key) & 1 == 1
}

/// One generated number row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NumberRow {
    pub digits: u64,
    pub category: &'static str,
    pub direction: &'static str,
}

/// How many candidates a list may draw before it gives up on an exhausted space.
fn attempt_budget(n: usize) -> u64 {
    (n as u64).saturating_mul(64).saturating_add(100_000)
}

/// Draw the numbers in order, handing each to `f`; returns how many were produced.
pub(crate) fn for_each_number<F>(spec: &GenSpec, mut f: F) -> io::Result<usize>
where
    F: FnMut(&NumberRow) -> io::Result<()>,
{
    let mut rng = Rng::new(spec.seed, Stream::Numbers);
    let key = parity_key(spec.seed);
    let mut seen = fast_set(spec.numbers);
    let mut made = 0usize;
    let mut budget = attempt_budget(spec.numbers);
    while made < spec.numbers && budget > 0 {
        budget -= 1;
        let digits = draw_any_number(&mut rng);
        // Draw the labels before any rejection so each candidate uses a fixed number of draws.
        let category = rng.weighted(&CATEGORIES);
        let direction = rng.weighted(&DIRECTIONS);
        if in_negative_half(key, digits) || !seen.insert(digits) {
            continue;
        }
        f(&NumberRow {
            digits,
            category,
            direction,
        })?;
        made += 1;
    }
    Ok(made)
}

/// One generated prefix row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrefixRow {
    pub digits: u64,
    /// Digit count of the numbers the prefix covers (to build positives under it).
    pub full_len: u32,
    pub category: &'static str,
}

/// A prefix plan: numbering plan, category, shortest and longest prefix in digits.
type PrefixPlan = (Plan, &'static str, u32, u32);

/// Prefix plans: which plan, the category it is tagged with, and its length range in digits
/// (country code included; at least 6 so that no prefix covers a whole country or operator).
const PREFIX_PLANS: [(PrefixPlan, u32); 5] = [
    ((Plan::CnVirtual, "virtual-operator", 6, 9), 60),
    ((Plan::NanpCaribbean, "wangiri", 7, 8), 15),
    ((Plan::Kh, "high-risk-region", 6, 8), 10),
    ((Plan::Ph, "high-risk-region", 6, 8), 10),
    ((Plan::Mm, "high-risk-region", 6, 8), 5),
];

/// The prefixes, in order (few: generated in memory).
pub(crate) fn prefix_rows(spec: &GenSpec) -> Vec<PrefixRow> {
    let mut rng = Rng::new(spec.seed, Stream::Prefixes);
    let mut seen = fast_set(spec.prefixes);
    let mut out = Vec::with_capacity(capacity_hint(spec.prefixes));
    let mut budget = attempt_budget(spec.prefixes);
    let mut dups = 0u32;
    while out.len() < spec.prefixes && budget > 0 {
        budget -= 1;
        let (plan, category, lo, hi) = rng.weighted(&PREFIX_PLANS);
        let (full, full_len) = draw_number(&mut rng, plan);
        // When short prefixes run out, lengthen them; always leave at least 3 digits free.
        let len = (rng.range(u64::from(lo), u64::from(hi)) as u32 + dups / 8)
            .min(full_len.saturating_sub(3))
            .max(6);
        let digits = full / pow10(full_len.saturating_sub(len));
        if !seen.insert(digits) {
            dups = dups.saturating_add(1);
            continue;
        }
        dups = 0;
        out.push(PrefixRow {
            digits,
            full_len,
            category,
        });
    }
    out
}

/// `+` and the digits.
pub(crate) fn e164(digits: u64) -> String {
    format!("+{digits}")
}

/// Append the decimal digits of `v` (no allocation: the numbers file writes 10^7 of these).
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

// ---------------------------------------------------------------------------------------------
// Domains

/// A DNS label as the rule formats accept it: LDH, 1-63 octets (RFC 1035 §2.3.1, RFC 5890
/// §2.3.1 for hyphens), lower case, and no `--` anywhere (it would read as an A-label prefix
/// `xn--`, which IDNA checks reject for anything not Punycode).
pub(crate) fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && !l.contains("--")
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True when `name` is a host name this generator may emit: valid labels, at most 253 octets,
/// and never a bare public suffix (`com`, `com.cn`, `cloudapp.net`): DNS rules at or above a
/// public suffix are errors (STANDARDS.md, DNS).
pub(crate) fn valid_domain(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(valid_label)
        && !TLDS.iter().any(|&(t, _)| t == name)
        && !PSL_COLLISIONS.contains(&name)
}

pub(crate) fn push_word(rng: &mut Rng, out: &mut String) {
    if rng.chance(300) {
        out.push_str(rng.pick(&PINYIN_WORDS));
    } else {
        out.push_str(rng.pick(&FRAUD_WORDS));
    }
}

/// `secure-pay`, `securepay`, `secure-pay-update`, `secure-pay88`.
pub(crate) fn push_word_label(rng: &mut Rng, out: &mut String) {
    let form = rng.below(100);
    push_word(rng, out);
    if (50..70).contains(&form) {
        push_word(rng, out);
        return;
    }
    out.push('-');
    push_word(rng, out);
    if (70..85).contains(&form) {
        out.push('-');
        push_word(rng, out);
    } else if form >= 85 {
        let n = rng.range(2, 3) as usize;
        rng.push_digits(out, n);
    }
}

/// A typo of `brand`: homoglyph (o→0, l→1, i→1, e→3, m→rn, w→vv), doubled, dropped or swapped
/// letter. `None` when the result would equal the brand or not be a valid label.
fn typo(rng: &mut Rng, brand: &str) -> Option<String> {
    let b: Vec<char> = brand.chars().collect();
    let alnum: Vec<usize> = (0..b.len())
        .filter(|&i| b.get(i).is_some_and(|c| c.is_ascii_alphanumeric()))
        .collect();
    let at = alnum.get(rng.below(alnum.len() as u64) as usize).copied()?;
    let mut out: Vec<char> = b.clone();
    match rng.below(4) {
        0 => {
            let homoglyphs = b
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, 'o' | 'l' | 'i' | 'e' | 'm' | 'w'))
                .map(|(i, _)| i)
                .collect::<Vec<_>>();
            let i = homoglyphs
                .get(rng.below(homoglyphs.len() as u64) as usize)
                .copied()?;
            let with: &[char] = match b.get(i) {
                Some('o') => &['0'],
                Some('l') | Some('i') => &['1'],
                Some('e') => &['3'],
                Some('m') => &['r', 'n'],
                _ => &['v', 'v'],
            };
            let _replaced: Vec<char> = out.splice(i..=i, with.iter().copied()).collect();
        }
        1 => out.insert(at, b.get(at).copied().unwrap_or('x')),
        2 if alnum.len() >= 4 => {
            out.remove(at);
        }
        _ => {
            let next = at + 1;
            if alnum.contains(&next) {
                out.swap(at, next);
            } else {
                out.insert(at, b.get(at).copied().unwrap_or('x'));
            }
        }
    }
    let s: String = out.into_iter().collect();
    (s != brand && s.len() >= 3 && valid_label(&s)).then_some(s)
}

/// `paypa1`, `icbc-verify`, `secure-alipay`, `taobao88`, `jdmall`.
fn push_brand_label(rng: &mut Rng, out: &mut String) {
    let brand = rng.pick(&BRANDS);
    let form = rng.below(100);
    if form < 35 {
        if let Some(t) = typo(rng, brand) {
            out.push_str(&t);
            return;
        }
    }
    match form {
        0..=59 => {
            out.push_str(brand);
            out.push('-');
            push_word(rng, out);
        }
        60..=79 => {
            push_word(rng, out);
            out.push('-');
            out.push_str(brand);
        }
        80..=89 => {
            out.push_str(brand);
            let n = rng.range(2, 4) as usize;
            rng.push_digits(out, n);
        }
        _ => {
            out.push_str(brand);
            push_word(rng, out);
        }
    }
}

/// `example-cdn`, `static88`, `k2x9q-edge`: the registrable part under deep names.
fn push_cdn_label(rng: &mut Rng, out: &mut String) {
    match rng.below(3) {
        0 => {
            push_word(rng, out);
            out.push('-');
            out.push_str(rng.pick(&CDN_WORDS));
        }
        1 => {
            out.push_str(rng.pick(&CDN_WORDS));
            let n = rng.range(1, 3) as usize;
            rng.push_digits(out, n);
        }
        _ => {
            let n = rng.range(5, 7) as usize;
            rng.push_token(out, n);
            out.push('-');
            out.push_str(rng.pick(&CDN_WORDS));
        }
    }
}

pub(crate) fn push_tld(rng: &mut Rng, out: &mut String) {
    out.push('.');
    out.push_str(rng.weighted(&TLDS));
}

/// One candidate domain. `escalation > 0` (after repeated duplicates) switches to long random
/// labels, whose space never runs out.
pub(crate) fn draw_domain(rng: &mut Rng, out: &mut String, escalation: u32) {
    out.clear();
    let form = if escalation > 0 { 999 } else { rng.below(1000) };
    match form {
        // Registrable names from fraud words: secure-pay-update.top
        0..=449 => push_word_label(rng, out),
        // Brand look-alikes: paypa1.com, icbc-verify.cn
        450..=699 => push_brand_label(rng, out),
        // Deep names: login.icbc-verify.cn.example-cdn.xyz, m.secure-pay.top, icbc.safe-login.vip
        700..=899 => {
            let deep = rng.below(100);
            if deep < 40 {
                out.push_str(rng.pick(&SUB_LABELS));
                out.push('.');
                out.push_str(rng.pick(&BRANDS));
                out.push('-');
                push_word(rng, out);
                out.push('.');
                out.push_str(rng.pick(&FAKE_TLD_LABELS));
                out.push('.');
                push_cdn_label(rng, out);
            } else if deep < 70 {
                out.push_str(rng.pick(&SUB_LABELS));
                out.push('.');
                push_word_label(rng, out);
            } else {
                out.push_str(rng.pick(&BRANDS));
                out.push('.');
                push_word_label(rng, out);
            }
        }
        // Random-looking (DGA-style) names: q7rk2m9xw.top, sometimes under a CDN-looking base.
        _ => {
            let n = rng.range(8, 14) as usize + escalation as usize;
            rng.push_token(out, n.min(63));
            if rng.chance(300) {
                out.push('.');
                push_cdn_label(rng, out);
            }
        }
    }
    push_tld(rng, out);
}

/// Draw the domains in order, handing each to `f`; returns how many were produced.
pub(crate) fn for_each_domain<F>(spec: &GenSpec, mut f: F) -> io::Result<usize>
where
    F: FnMut(&str) -> io::Result<()>,
{
    let mut rng = Rng::new(spec.seed, Stream::Domains);
    let mut seen = fast_set(spec.domains);
    let mut s = String::with_capacity(96);
    let mut made = 0usize;
    let mut budget = attempt_budget(spec.domains);
    let mut dups = 0u32;
    while made < spec.domains && budget > 0 {
        budget -= 1;
        draw_domain(&mut rng, &mut s, dups / 8);
        if !valid_domain(&s) || !seen.insert(hash_bytes(s.as_bytes())) {
            dups = dups.saturating_add(1);
            continue;
        }
        dups = 0;
        f(&s)?;
        made += 1;
    }
    Ok(made)
}

/// The domain formats the rule compiler reads; `gen-rules` writes every one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DomainFormat {
    /// `domains.domains`: `x` (name and below), `=x` (exactly x), `*.x` (only below x).
    #[default]
    Domains,
    /// `domains.hosts`: `0.0.0.0 x`, exactly x (hosts(5) maps single names).
    Hosts,
    /// `domains.adblock`: `||x^`, x and every name below it.
    Adblock,
    /// `domains.rpz`: QNAME triggers `x CNAME .` (exactly x) and `*.x CNAME .` (only below x),
    /// both NXDOMAIN (draft-vixie-dnsop-dns-rpz §4.1, §5.1).
    Rpz,
}

impl DomainFormat {
    pub const ALL: [DomainFormat; 4] = [
        DomainFormat::Domains,
        DomainFormat::Hosts,
        DomainFormat::Adblock,
        DomainFormat::Rpz,
    ];

    /// The file [`write_dir`] writes this format's rules to.
    pub const fn file(self) -> &'static str {
        match self {
            DomainFormat::Domains => DOMAINS_FILE,
            DomainFormat::Hosts => HOSTS_FILE,
            DomainFormat::Adblock => ADBLOCK_FILE,
            DomainFormat::Rpz => RPZ_FILE,
        }
    }
}

/// Which names one domain rule covers, as its format defines it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reach {
    /// The name and every name below it (`x`, `||x^`, RPZ `x` + `*.x`).
    #[default]
    Suffix,
    /// Exactly the name (`=x`, a hosts line, RPZ `x`).
    Exact,
    /// Only the names strictly below it (`*.x`, RPZ `*.x`).
    Below,
}

impl Reach {
    /// True when the rule covers the listed name itself.
    pub const fn covers_name(self) -> bool {
        matches!(self, Reach::Suffix | Reach::Exact)
    }
    /// True when the rule covers the names below the listed name.
    pub const fn covers_below(self) -> bool {
        matches!(self, Reach::Suffix | Reach::Below)
    }
}

/// Where a generated domain is written, and what its rule covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub format: DomainFormat,
    pub reach: Reach,
}

const fn pl(format: DomainFormat, reach: Reach) -> Placement {
    Placement { format, reach }
}

/// The share of each placement, in thousandths: mostly whole-domain blocks as published lists
/// have them, a fifth exact names (hosts files), a few wildcard-only triggers.
const PLACEMENTS: [(Placement, u64); 8] = [
    (pl(DomainFormat::Domains, Reach::Suffix), 260),
    (pl(DomainFormat::Domains, Reach::Exact), 20),
    (pl(DomainFormat::Domains, Reach::Below), 20),
    (pl(DomainFormat::Hosts, Reach::Exact), 200),
    (pl(DomainFormat::Adblock, Reach::Suffix), 200),
    (pl(DomainFormat::Rpz, Reach::Suffix), 150),
    (pl(DomainFormat::Rpz, Reach::Exact), 80),
    (pl(DomainFormat::Rpz, Reach::Below), 70),
];

/// The key [`placement`] mixes the index with: a function of the seed.
pub(crate) fn placement_key(seed: u64) -> u64 {
    Rng::new(seed, Stream::DomainFormats).next_u64()
}

/// The placement of the `i`-th generated domain. A hash of the index, not `i % n`, so that
/// every `stride`-th sample of the truth file still holds every placement; a function of the
/// index alone, so that a list of `n` domains is placed as the first `n` of a longer one.
pub(crate) fn placement(key: u64, i: usize) -> Placement {
    let total: u64 = PLACEMENTS.iter().map(|&(_, w)| w).sum();
    let mut r = crate::prng::mix64(key ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % total;
    for &(p, w) in &PLACEMENTS {
        if r < w {
            return p;
        }
        r -= w;
    }
    Placement::default()
}

/// The four domain files, written side by side as the domains are drawn.
struct DomainWriters {
    w: [(PathBuf, BufWriter<File>); 4],
}

impl DomainWriters {
    fn create(dir: &Path, seed: u64) -> io::Result<DomainWriters> {
        let open = |f: DomainFormat| -> io::Result<(PathBuf, BufWriter<File>)> {
            let path = dir.join(f.file());
            let w = create(&path)?;
            Ok((path, w))
        };
        let mut dw = DomainWriters {
            w: [
                open(DomainFormat::Domains)?,
                open(DomainFormat::Hosts)?,
                open(DomainFormat::Adblock)?,
                open(DomainFormat::Rpz)?,
            ],
        };
        for f in DomainFormat::ALL {
            let head = match f {
                // A plain list needs no header: a bare name blocks it and its subdomains.
                DomainFormat::Domains => String::new(),
                // The machine's own lines every hosts file carries; the compiler notes them.
                DomainFormat::Hosts => format!(
                    "# generated by dragnet sim gen-rules --seed {seed}: exact names\n\
                     127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
                ),
                DomainFormat::Adblock => format!(
                    "[Adblock Plus 2.0]\n! Title: dragnet synthetic domains (seed {seed})\n"
                ),
                // RFC 1035 §5 master file; the zone's name comes from the SOA owner.
                DomainFormat::Rpz => format!(
                    "; generated by dragnet sim gen-rules --seed {seed}: QNAME triggers, CNAME . = NXDOMAIN\n\
                     $TTL 300\n\
                     $ORIGIN synthetic.rpz.\n\
                     @ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n\
                     @ IN NS localhost.\n"
                ),
            };
            dw.file(f, |w| w.write_all(head.as_bytes()))?;
        }
        Ok(dw)
    }

    /// Run `op` on the writer of `f`, naming its file in an error.
    fn file(
        &mut self,
        f: DomainFormat,
        op: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> io::Result<()> {
        let (path, w) = &mut self.w[f as usize];
        op(w).map_err(|e| with_path(e, "writing", path))
    }

    /// One rule in its format. RPZ blocks are all `CNAME .` (NXDOMAIN), the answer the other
    /// formats' blocks get from the DNS plane, so one expected answer fits every block.
    fn write(&mut self, p: Placement, name: &str) -> io::Result<()> {
        self.file(p.format, |w| match (p.format, p.reach) {
            (DomainFormat::Domains, Reach::Suffix) => writeln!(w, "{name}"),
            (DomainFormat::Domains, Reach::Exact) => writeln!(w, "={name}"),
            (DomainFormat::Domains, Reach::Below) => writeln!(w, "*.{name}"),
            (DomainFormat::Hosts, _) => writeln!(w, "0.0.0.0 {name}"),
            (DomainFormat::Adblock, _) => writeln!(w, "||{name}^"),
            (DomainFormat::Rpz, Reach::Suffix) => {
                writeln!(w, "{name} CNAME .\n*.{name} CNAME .")
            }
            (DomainFormat::Rpz, Reach::Exact) => writeln!(w, "{name} CNAME ."),
            (DomainFormat::Rpz, Reach::Below) => writeln!(w, "*.{name} CNAME ."),
        })
    }

    fn finish(mut self) -> io::Result<Vec<WrittenFile>> {
        let mut out = Vec::with_capacity(4);
        for f in DomainFormat::ALL {
            self.file(f, |w| w.flush())?;
        }
        for (path, _) in self.w {
            out.push(finish(path)?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// URLs

/// One URL rule: a Safe Browsing expression `host` + `path` (no scheme).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UrlRow {
    pub host: String,
    /// Starts with `/`; a prefix rule ends with `/` and has 1-3 components, because Safe
    /// Browsing looks up at most the 4 path prefixes `/`, `/a/`, `/a/b/`, `/a/b/c/`
    /// ("URLs and Hashing", suffix/prefix expressions): a deeper prefix would never match.
    pub path: String,
    pub prefix: bool,
    /// Shared hosting or a shortener: the host itself is innocent, only the path is listed.
    pub shared: bool,
}

impl UrlRow {
    pub(crate) fn expression(&self) -> String {
        let mut s = String::with_capacity(self.host.len() + self.path.len());
        s.push_str(&self.host);
        s.push_str(&self.path);
        s
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum HostKind {
    #[default]
    Dedicated,
    Oss,
    Cos,
    Gcs,
    Sites,
    Tenant,
    Forms,
    Shortener,
}

const HOST_KINDS: [(HostKind, u32); 8] = [
    (HostKind::Dedicated, 650),
    (HostKind::Oss, 60),
    (HostKind::Cos, 40),
    (HostKind::Gcs, 40),
    (HostKind::Sites, 30),
    (HostKind::Tenant, 100),
    (HostKind::Forms, 20),
    (HostKind::Shortener, 60),
];

fn push_bucket(rng: &mut Rng, out: &mut String) {
    if rng.chance(500) {
        push_word_label(rng, out);
    } else {
        let n = rng.range(6, 10) as usize;
        rng.push_token(out, n);
    }
}

pub(crate) fn push_segment(rng: &mut Rng, out: &mut String, escalation: u32) {
    if escalation > 0 || rng.chance(300) {
        let n = rng.range(6, 10) as usize + escalation as usize;
        rng.push_token(out, n.min(200));
    } else {
        out.push_str(rng.pick(&PATH_SEGMENTS));
    }
}

/// One candidate URL rule.
pub(crate) fn draw_url(rng: &mut Rng, escalation: u32) -> UrlRow {
    let kind = rng.weighted(&HOST_KINDS);
    let mut host = String::with_capacity(64);
    let mut path = String::with_capacity(64);
    path.push('/');
    // Path components already fixed by the platform (`/bucket/`, `/view/site/`).
    let mut base = 0u32;
    let mut shared = true;
    match kind {
        HostKind::Dedicated => {
            shared = false;
            if rng.chance(300) {
                host.push_str(rng.pick(&SUB_LABELS));
                host.push('.');
            }
            if rng.chance(400) {
                push_brand_label(rng, &mut host);
            } else {
                push_word_label(rng, &mut host);
            }
            push_tld(rng, &mut host);
        }
        HostKind::Oss => {
            push_bucket(rng, &mut host);
            host.push_str(".oss-cn-");
            host.push_str(rng.pick(&OSS_REGIONS));
            host.push_str(".aliyuncs.com");
        }
        HostKind::Cos => {
            push_bucket(rng, &mut host);
            host.push_str("-1");
            rng.push_digits(&mut host, 9);
            host.push_str(".cos.ap-");
            host.push_str(rng.pick(&COS_REGIONS));
            host.push_str(".myqcloud.com");
        }
        HostKind::Gcs => {
            host.push_str("storage.googleapis.com");
            push_bucket(rng, &mut path);
            path.push('/');
            base = 1;
        }
        HostKind::Sites => {
            host.push_str("sites.google.com");
            path.push_str("view/");
            push_bucket(rng, &mut path);
            path.push('/');
            base = 2;
        }
        HostKind::Tenant => {
            push_bucket(rng, &mut host);
            host.push('.');
            host.push_str(rng.pick(&TENANT_SUFFIXES));
        }
        HostKind::Forms => {
            host.push_str("docs.google.com");
            path.push_str("forms/d/e/");
            rng.push_token(&mut path, 24 + escalation.min(64) as usize);
            path.push_str("/viewform");
            return UrlRow {
                host,
                path,
                prefix: false,
                shared,
            };
        }
        HostKind::Shortener => {
            host.push_str(rng.pick(&SHORTENERS));
            let n = rng.range(6, 8) as usize + escalation.min(64) as usize;
            rng.push_token(&mut path, n);
            return UrlRow {
                host,
                path,
                prefix: false,
                shared,
            };
        }
    }
    if rng.chance(400) {
        // A prefix rule `host/a/b/`: 1-3 components in all.
        let lo = u64::from(base == 0);
        let extra = rng.range(lo, u64::from(3 - base.min(3)));
        for i in 0..extra {
            push_segment(rng, &mut path, if i == 0 { escalation } else { 0 });
            path.push('/');
        }
        if extra == 0 && escalation > 0 && base < 3 {
            push_segment(rng, &mut path, escalation);
            path.push('/');
        }
        UrlRow {
            host,
            path,
            prefix: true,
            shared,
        }
    } else {
        // An exact rule `host/a/file.php?id=N`.
        for _ in 0..rng.range(0, 2) {
            push_segment(rng, &mut path, 0);
            path.push('/');
        }
        if escalation > 0 {
            push_segment(rng, &mut path, escalation);
            path.push('/');
        }
        path.push_str(rng.pick(&FILE_STEMS));
        path.push('.');
        path.push_str(rng.weighted(&FILE_EXTS));
        if rng.chance(850) {
            path.push_str("?id=");
            path.push_str(&rng.range(1, 99_999).to_string());
        }
        UrlRow {
            host,
            path,
            prefix: false,
            shared,
        }
    }
}

/// Draw the URL rules in order, handing each to `f`; returns how many were produced.
pub(crate) fn for_each_url<F>(spec: &GenSpec, mut f: F) -> io::Result<usize>
where
    F: FnMut(&UrlRow) -> io::Result<()>,
{
    let mut rng = Rng::new(spec.seed, Stream::Urls);
    let mut seen = fast_set(spec.urls);
    let mut made = 0usize;
    let mut budget = attempt_budget(spec.urls);
    let mut dups = 0u32;
    while made < spec.urls && budget > 0 {
        budget -= 1;
        let u = draw_url(&mut rng, dups / 8);
        if !valid_domain(&u.host) || !seen.insert(hash_bytes(u.expression().as_bytes())) {
            dups = dups.saturating_add(1);
            continue;
        }
        dups = 0;
        f(&u)?;
        made += 1;
    }
    Ok(made)
}

// ---------------------------------------------------------------------------------------------
// Keywords

/// The fixed seeds, Chinese and English interleaved so that a small count still has both.
pub(crate) fn keyword_seeds() -> impl Iterator<Item = &'static str> {
    let n = KEYWORDS_ZH.len().max(KEYWORDS_EN.len());
    (0..n).flat_map(|i| {
        KEYWORDS_ZH
            .get(i)
            .into_iter()
            .chain(KEYWORDS_EN.get(i))
            .copied()
    })
}

/// One generated keyword: a seed with modifiers and, past the combinations, a number. Every
/// generated keyword contains a seed, which is what lets negatives be checked against the seeds
/// alone.
fn draw_keyword(rng: &mut Rng, out: &mut String, escalation: u32) {
    out.clear();
    // Forms: 0 before+seed, 1 seed+after, 2 before+seed+after, 3 seed+after+digits. The small
    // forms are rarer so that they do not run dry long before the large ones.
    let form = rng.weighted(&[(0u8, 10), (1, 10), (2, 30), (3, 50)]);
    let digits = (rng.range(2, 4) as usize + escalation as usize).min(40);
    if rng.chance(600) {
        let seed = rng.pick(&KEYWORDS_ZH);
        if form == 0 || form == 2 {
            out.push_str(rng.pick(&ZH_BEFORE));
        }
        out.push_str(seed);
        if form >= 1 {
            out.push_str(rng.pick(&ZH_AFTER));
        }
        if form == 3 || escalation > 0 {
            rng.push_digits(out, digits);
        }
    } else {
        let seed = rng.pick(&KEYWORDS_EN);
        if form == 0 || form == 2 {
            out.push_str(rng.pick(&EN_BEFORE));
            out.push(' ');
        }
        out.push_str(seed);
        if form >= 1 {
            out.push(' ');
            out.push_str(rng.pick(&EN_AFTER));
        }
        if form == 3 || escalation > 0 {
            out.push_str(" ref ");
            rng.push_digits(out, digits);
        }
    }
}

/// Draw the keywords in order (seeds first), handing each to `f`; returns how many were produced.
pub(crate) fn for_each_keyword<F>(spec: &GenSpec, mut f: F) -> io::Result<usize>
where
    F: FnMut(&str) -> io::Result<()>,
{
    let mut seen = fast_set(spec.keywords);
    let mut made = 0usize;
    for k in keyword_seeds().take(spec.keywords) {
        seen.insert(hash_bytes(k.as_bytes()));
        f(k)?;
        made += 1;
    }
    let mut rng = Rng::new(spec.seed, Stream::Keywords);
    let mut s = String::with_capacity(64);
    let mut budget = attempt_budget(spec.keywords);
    let mut dups = 0u32;
    while made < spec.keywords && budget > 0 {
        budget -= 1;
        draw_keyword(&mut rng, &mut s, dups / 8);
        if !seen.insert(hash_bytes(s.as_bytes())) {
            dups = dups.saturating_add(1);
            continue;
        }
        dups = 0;
        f(&s)?;
        made += 1;
    }
    Ok(made)
}

// ---------------------------------------------------------------------------------------------
// Files

/// Every `stride`-th entry goes to the truth sample: at most [`TRUTH_SAMPLE`], spread evenly.
pub(crate) fn sample_stride(n: usize) -> usize {
    n.div_ceil(TRUTH_SAMPLE).max(1)
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 16, f))
        .map_err(|e| with_path(e, "creating", path))
}

fn finish(path: PathBuf) -> io::Result<WrittenFile> {
    let bytes = fs::metadata(&path)
        .map_err(|e| with_path(e, "reading the size of", &path))?
        .len();
    Ok(WrittenFile { path, bytes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashSet;

    fn spec(seed: u64) -> GenSpec {
        GenSpec {
            numbers: 3000,
            prefixes: 40,
            domains: 2000,
            urls: 2000,
            keywords: 1500,
            seed,
        }
    }

    fn is_e164(s: &str) -> bool {
        let Some(d) = s.strip_prefix('+') else {
            return false;
        };
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    }

    fn assert_unique(name: &str, v: &[String]) {
        let set: HashSet<&String> = v.iter().collect();
        assert_eq!(set.len(), v.len(), "{name} has duplicates");
    }

    #[test]
    fn same_spec_same_output_and_seeds_differ() {
        let a = generate(&spec(5));
        assert_eq!(a, generate(&spec(5)));
        let b = generate(&spec(6));
        assert_ne!(a.numbers, b.numbers);
        assert_ne!(a.prefixes, b.prefixes);
        assert_ne!(a.domains, b.domains);
        assert_ne!(a.urls, b.urls);
        // Keywords start with the fixed seed list; the generated tail differs.
        assert_ne!(a.keywords, b.keywords);
    }

    /// Pins the output for one seed: any change to the PRNG, the plans or the word lists breaks
    /// this test, because benches and stored truth files depend on the exact bytes. If a change
    /// is intended, say so in the change log: every stored truth file must be regenerated.
    #[test]
    fn golden_output_for_seed_42() {
        let seeds = KEYWORDS_ZH.len() + KEYWORDS_EN.len();
        let r = generate(&GenSpec {
            numbers: 3,
            prefixes: 2,
            domains: 3,
            urls: 3,
            keywords: seeds + 3,
            seed: 42,
        });
        let text = [
            r.numbers,
            r.prefixes,
            r.domains,
            r.urls,
            r.keywords[seeds..].to_vec(),
        ]
        .map(|v| v.join(" "))
        .join("\n");
        assert_eq!(text, GOLDEN_42);

        let all = generate(&GenSpec::default());
        let joined = [
            all.numbers,
            all.prefixes,
            all.domains,
            all.urls,
            all.keywords,
        ]
        .map(|v| v.join("\n"))
        .join("\n");
        assert_eq!(hash_bytes(joined.as_bytes()), GOLDEN_DEFAULT_HASH);
        let truth = crate::truth(&GenSpec::default()).to_json();
        assert_eq!(hash_bytes(truth.as_bytes()), GOLDEN_TRUTH_HASH);
        // Where the first domains go (format initial and reach: S suffix, E exact, B below).
        let placed: Vec<String> = all.domain_placements[..16]
            .iter()
            .map(|p| format!("{:?}{:?}", p.format, p.reach).replace(|c: char| c.is_lowercase(), ""))
            .collect();
        assert_eq!(placed.join(" "), GOLDEN_PLACEMENTS);
    }
    const GOLDEN_PLACEMENTS: &str = "AS RE AS AS RE HE DS RB RB RS RE RS AS RB DS AS";
    const GOLDEN_42: &str = "+8613856139105 +8613419659246 +8618133208961\n\
        +861714 +8616267\n\
        court-card.shop instant-support.cc weixxin.com\n\
        mail.payment-icbc.asia/auth/ sso.card-bankcomm.xyz/mobile/app/index.php \
        gl20p8.oss-cn-shenzhen.aliyuncs.com/case/secure/card.php?id=30142\n\
        立即投资理财群 征信修复专员57 医保卡异常流程457";
    const GOLDEN_DEFAULT_HASH: u64 = 7_293_846_744_684_706_667;
    // Changed when the domain rules were spread over the domain formats: the truth's domain
    // positives and negatives follow each format's reach.
    const GOLDEN_TRUTH_HASH: u64 = 6_142_697_081_004_079_428;

    #[test]
    fn invariants_hold_for_many_seeds() {
        for seed in [0, 1, 2, 3, 7, 42, 1 << 40, u64::MAX] {
            let s = spec(seed);
            let r = generate(&s);
            assert_eq!(r.numbers.len(), s.numbers);
            assert_eq!(r.prefixes.len(), s.prefixes);
            assert_eq!(r.domains.len(), s.domains);
            assert_eq!(r.urls.len(), s.urls);
            assert_eq!(r.keywords.len(), s.keywords);
            assert_unique("numbers", &r.numbers);
            assert_unique("prefixes", &r.prefixes);
            assert_unique("domains", &r.domains);
            assert_unique("urls", &r.urls);
            assert_unique("keywords", &r.keywords);
            for n in &r.numbers {
                assert!(is_e164(n), "{n} is not E.164");
            }
            for p in &r.prefixes {
                assert!(p.starts_with('+'), "{p}");
                let d = &p[1..];
                assert!(d.len() >= 6 && d.bytes().all(|b| b.is_ascii_digit()), "{p}");
            }
            for d in &r.domains {
                assert!(valid_domain(d), "{d} is not a valid host name");
                assert!(!TLDS.iter().any(|&(t, _)| t == d), "{d} is a bare TLD");
                let tld_ok = TLDS.iter().any(|&(t, _)| {
                    d.strip_suffix(t)
                        .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
                });
                assert!(tld_ok, "{d} does not end in a listed TLD");
            }
            for u in &r.urls {
                assert!(!u.contains("://"), "{u} has a scheme");
                let (host, path) = u.split_at(u.find('/').unwrap());
                assert!(host.split('.').all(valid_label), "{u}");
                assert!(host.contains('.'), "{u}");
                assert!(path.len() > 1, "{u}: a URL rule never covers a whole host");
                if path.ends_with('/') {
                    assert!(path.matches('/').count() <= 4, "{u}: prefix deeper than 3");
                }
                assert!(!u.bytes().any(|b| b <= b' ' || b >= 0x7f), "{u}");
            }
            for k in &r.keywords {
                assert!(!k.is_empty() && k.trim() == k, "{k:?}");
                assert!(!k.contains('\n') && !k.starts_with('#'), "{k:?}");
                assert_eq!(k.to_ascii_lowercase(), *k, "{k:?} is not lower case");
                assert!(
                    KEYWORDS_ZH
                        .iter()
                        .chain(KEYWORDS_EN.iter())
                        .any(|s| k.contains(s)),
                    "{k:?} holds no seed"
                );
            }
        }
    }

    #[test]
    fn lists_are_independent_and_prefix_stable() {
        let small = generate(&spec(9));
        let mut other = spec(9);
        other.numbers = 5000;
        other.urls = 10;
        other.keywords = 3000;
        let big = generate(&other);
        assert_eq!(small.domains, big.domains);
        assert_eq!(small.prefixes, big.prefixes);
        assert_eq!(&big.numbers[..3000], &small.numbers[..]);
        assert_eq!(&small.urls[..10], &big.urls[..]);
        assert_eq!(&big.keywords[..1500], &small.keywords[..]);
    }

    #[test]
    fn numbers_look_like_the_mix_of_the_brief() {
        let r = generate(&GenSpec {
            numbers: 20_000,
            ..GenSpec::default()
        });
        let cn = r.numbers.iter().filter(|n| n.starts_with("+86")).count();
        let share = cn * 1000 / r.numbers.len();
        assert!((860..=940).contains(&share), "Chinese share {share}‰");
        let cn_mobile = r
            .numbers
            .iter()
            .filter(|n| {
                let b = n.as_bytes();
                n.len() == 14 && n.starts_with("+861") && (b'3'..=b'9').contains(&b[4])
            })
            .count();
        assert!(
            cn_mobile * 100 / r.numbers.len() >= 75,
            "{cn_mobile} mobiles"
        );
        for cc in ["+44 7", "+1", "+639", "+855", "+60", "+959"] {
            let p = cc.replace(' ', "");
            assert!(
                r.numbers.iter().any(|n| n.starts_with(&p)),
                "no {cc} numbers"
            );
        }
        // NANP: NPA and NXX start 2-9 and are never N11; NPA's middle digit is never 9.
        for n in r
            .numbers
            .iter()
            .filter(|n| n.len() == 12 && n.starts_with("+1"))
        {
            let d = n.as_bytes();
            let (npa, nxx) = (&d[2..5], &d[5..8]);
            assert!(npa[0] >= b'2' && npa[1] != b'9', "{n}");
            assert!(nxx[0] >= b'2', "{n}");
            assert!(!(npa[1] == b'1' && npa[2] == b'1'), "{n}");
            assert!(!(nxx[1] == b'1' && nxx[2] == b'1'), "{n}");
        }
    }

    #[test]
    fn domains_mix_registrable_deep_and_lookalike_names() {
        let r = generate(&GenSpec::default());
        let deep = r
            .domains
            .iter()
            .filter(|d| d.split('.').count() >= 5)
            .count();
        let two = r
            .domains
            .iter()
            .filter(|d| d.split('.').count() == 2)
            .count();
        let brand = r
            .domains
            .iter()
            .filter(|d| BRANDS.iter().any(|b| d.contains(b)))
            .count();
        assert!(
            deep > 30 && two > 300 && brand > 200,
            "{deep} {two} {brand}"
        );
        let numeric_typo = r.domains.iter().any(|d| {
            ["paypa1", "app1e", "a1ipay", "micros0ft", "icl0ud", "amaz0n"]
                .iter()
                .any(|t| d.contains(t))
        });
        assert!(numeric_typo, "no homoglyph look-alikes");
    }

    #[test]
    fn public_suffixes_are_never_valid_domains() {
        for t in TLDS.iter().map(|&(t, _)| t).chain(PSL_COLLISIONS) {
            assert!(!valid_domain(t), "{t}");
            assert!(valid_domain(&format!("x.{t}")), "x.{t}");
        }
        for bad in [
            "", "a", "-a.com", "a-.com", "a--b.com", "A.com", "a..com", "a.com.",
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
        assert!(!valid_domain(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn typos_differ_from_the_brand_and_stay_valid_labels() {
        let mut rng = Rng::new(3, Stream::Domains);
        for brand in BRANDS {
            for _ in 0..50 {
                if let Some(t) = typo(&mut rng, brand) {
                    assert_ne!(t, brand);
                    assert!(valid_label(&t), "{t}");
                }
            }
        }
    }

    #[test]
    fn urls_mix_prefixes_exact_and_shared_hosting() {
        let r = generate(&GenSpec::default());
        let prefix = r.urls.iter().filter(|u| u.ends_with('/')).count();
        let exact_q = r.urls.iter().filter(|u| u.contains(".php?id=")).count();
        let shared = r
            .urls
            .iter()
            .filter(|u| u.contains("aliyuncs.com/") || SHORTENERS.iter().any(|s| u.starts_with(s)))
            .count();
        assert!(
            prefix > 100 && exact_q > 100 && shared > 20,
            "{prefix} {exact_q} {shared}"
        );
    }

    #[test]
    fn keywords_start_with_the_fixed_seeds() {
        let r = generate(&GenSpec {
            keywords: 4,
            ..GenSpec::default()
        });
        assert_eq!(
            r.keywords,
            [
                "安全账户",
                "verify your account",
                "刷单返利",
                "account suspended"
            ]
        );
        let all = generate(&GenSpec {
            keywords: 100_000,
            ..GenSpec::default()
        });
        assert_eq!(all.keywords.len(), 100_000);
        let seeds: Vec<&str> = keyword_seeds().collect();
        assert_eq!(seeds.len(), KEYWORDS_ZH.len() + KEYWORDS_EN.len());
        assert_eq!(&all.keywords[..seeds.len()], &seeds[..]);
    }

    #[test]
    fn zero_counts_give_empty_lists() {
        let s = GenSpec {
            numbers: 0,
            prefixes: 0,
            domains: 0,
            urls: 0,
            keywords: 0,
            seed: 0,
        };
        assert_eq!(generate(&s), RuleSet::default());
    }

    #[test]
    fn categories_are_the_nine_of_12381() {
        let mine: HashSet<&str> = CATEGORIES.iter().map(|&(c, _)| c).collect();
        let brief: HashSet<&str> = CATEGORIES_12381.into_iter().collect();
        assert_eq!(mine, brief);
    }

    #[test]
    fn push_u64_writes_decimal() {
        for v in [0u64, 7, 10, 8613812345678, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn write_dir_writes_files_that_split_into_the_generated_rules() {
        let dir = std::env::temp_dir().join(format!("dn-sim-test-{}", std::process::id()));
        let s = GenSpec::default();
        let summary = write_dir(&s, &dir).unwrap();
        let r = generate(&s);
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();

        let csv = read(NUMBERS_FILE);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(NUMBERS_CSV_HEADER));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), s.numbers + s.prefixes);
        let (nums, prefs) = rows.split_at(s.numbers);
        for (row, want) in nums.iter().zip(&r.numbers) {
            assert_eq!(row.len(), 5);
            assert_eq!((row[0], row[1], row[2]), (want.as_str(), "number", "block"));
            assert!(CATEGORIES_12381.contains(&row[3]), "{row:?}");
            assert!(row[4] == "both" || row[4] == "caller", "{row:?}");
        }
        for (row, want) in prefs.iter().zip(&r.prefixes) {
            assert_eq!(row.len(), 5);
            assert_eq!(
                (row[0], row[1], row[2], row[4]),
                (want.as_str(), "prefix", "tag", "caller")
            );
        }
        let lines = |name: &str| -> Vec<String> { read(name).lines().map(String::from).collect() };
        // Each domain file holds, after its header, exactly the names placed in it, in order,
        // in its own syntax.
        for f in DomainFormat::ALL {
            let mut want = Vec::new();
            for (d, p) in r.domains.iter().zip(&r.domain_placements) {
                if p.format != f {
                    continue;
                }
                match (f, p.reach) {
                    (DomainFormat::Domains, Reach::Suffix) => want.push(d.clone()),
                    (DomainFormat::Domains, Reach::Exact) => want.push(format!("={d}")),
                    (DomainFormat::Domains, Reach::Below) => want.push(format!("*.{d}")),
                    (DomainFormat::Hosts, Reach::Exact) => want.push(format!("0.0.0.0 {d}")),
                    (DomainFormat::Adblock, Reach::Suffix) => want.push(format!("||{d}^")),
                    (DomainFormat::Rpz, Reach::Suffix) => {
                        want.push(format!("{d} CNAME ."));
                        want.push(format!("*.{d} CNAME ."));
                    }
                    (DomainFormat::Rpz, Reach::Exact) => want.push(format!("{d} CNAME .")),
                    (DomainFormat::Rpz, Reach::Below) => want.push(format!("*.{d} CNAME .")),
                    other => panic!("no such placement {other:?}"),
                }
            }
            let got = lines(f.file());
            let header = got.len() - want.len();
            assert_eq!(got[header..], want[..], "{f:?}");
            assert_eq!(header, [0, 3, 2, 5][f as usize], "{f:?}");
            assert!(read(f.file()).ends_with('\n'));
        }
        assert!(read(RPZ_FILE).contains("$ORIGIN synthetic.rpz.\n@ IN SOA "));
        assert_eq!(lines(URLS_FILE), r.urls);
        assert_eq!(lines(KEYWORDS_FILE), r.keywords);

        let toml = read(MANIFEST_FILE);
        assert_eq!(toml, manifest(&s));
        assert!(toml.starts_with("# generated by dragnet sim gen-rules --seed 1\n"));
        assert_eq!(toml.matches("[[source]]").count(), 7);
        for (path, action) in [
            (NUMBERS_FILE, Some("block")),
            (DOMAINS_FILE, Some("block")),
            (HOSTS_FILE, Some("block")),
            (ADBLOCK_FILE, Some("block")),
            (RPZ_FILE, None),
            (URLS_FILE, Some("block")),
            (KEYWORDS_FILE, Some("warn")),
        ] {
            let at = toml.find(&format!("path = \"{path}\"")).unwrap();
            let block = &toml[at..];
            let end = block.find("[[source]]").unwrap_or(block.len());
            match action {
                Some(a) => assert!(
                    block[..end].contains(&format!("action = \"{a}\"")),
                    "{path}"
                ),
                None => assert!(!block[..end].contains("action"), "{path}"),
            }
        }
        // TOML shape: every line is a comment, a table header or `key = value`.
        for l in toml.lines() {
            let ok = l.starts_with('#')
                || l == "[compile]"
                || l == "[[source]]"
                || l.split_once(" = ").is_some_and(|(k, v)| {
                    k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        && (v.parse::<u32>().is_ok()
                            || (v.starts_with('"') && v.ends_with('"') && v.len() >= 2))
                });
            assert!(ok, "not TOML-shaped: {l}");
        }

        let truth = read(TRUTH_FILE);
        assert!(truth.starts_with("{\n  \"seed\": 1,\n  \"positives\": {"));
        assert_eq!(truth, crate::truth(&s).to_json());

        assert_eq!(
            (
                summary.numbers,
                summary.prefixes,
                summary.domains,
                summary.urls,
                summary.keywords
            ),
            (s.numbers, s.prefixes, s.domains, s.urls, s.keywords)
        );
        assert_eq!(summary.files.len(), 9);
        let shown = summary.to_string();
        assert!(
            shown.starts_with("numbers 1000, prefixes 20, domains 1000, urls 500, keywords 200")
        );
        assert!(
            shown.contains("numbers.csv (") && shown.contains("truth.json ("),
            "{shown}"
        );
        for f in &summary.files {
            assert_eq!(fs::metadata(&f.path).unwrap().len(), f.bytes);
            assert!(f.bytes > 0, "{}", f.path.display());
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_domain_format_and_reach_is_used_and_placement_is_prefix_stable() {
        let r = generate(&GenSpec::default());
        assert_eq!(r.domain_placements.len(), r.domains.len());
        for (p, _) in PLACEMENTS {
            let n = r.domain_placements.iter().filter(|&&q| q == p).count();
            assert!(n >= 5, "{p:?}: {n}");
        }
        let small = generate(&GenSpec {
            domains: 100,
            ..GenSpec::default()
        });
        assert_eq!(small.domain_placements[..], r.domain_placements[..100]);
        // The placement depends on the seed.
        let other = generate(&GenSpec {
            seed: 2,
            ..GenSpec::default()
        });
        assert_ne!(other.domain_placements, r.domain_placements);
        // Every truth-file stride still samples every format.
        let key = placement_key(1);
        for stride in [1usize, 2, 4, 5, 8, 10, 16, 100] {
            let seen: HashSet<DomainFormat> = (0..1000)
                .map(|i| placement(key, i * stride).format)
                .collect();
            assert_eq!(seen.len(), 4, "stride {stride}");
        }
    }

    #[test]
    fn write_dir_names_the_path_it_could_not_create() {
        let file = std::env::temp_dir().join(format!("dn-sim-file-{}", std::process::id()));
        fs::write(&file, b"x").unwrap();
        let err = write_dir(&GenSpec::default(), &file.join("sub")).unwrap_err();
        assert!(
            err.to_string().contains("creating the output directory"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        fs::remove_file(&file).unwrap();
    }
}
