//! Ground truth for tests and benches: samples of what the rule set must match (positives) and
//! of what it must not (negatives), and the `truth.json` encoder.
//!
//! The rule files themselves are the full truth; this is the sample a test drives through the
//! engine or the gateway. Every negative is checked here against the generated sets, more
//! strictly than any matcher needs:
//! - numbers: drawn from the half of the number space the generator never uses (see
//!   `rulegen::in_negative_half`), and not under any generated prefix;
//! - domains: covered by no domain rule as its format defines the rule's reach (a hosts line or
//!   RPZ `x` covers exactly `x`, RPZ `*.x` only the names below `x`, `||x^` and a plain list
//!   entry both; every label suffix is checked);
//! - URLs: no host suffix × path prefix (at any depth, not just Safe Browsing's 5 × 6) is a URL
//!   rule, the host is not under a blocked domain, and the text holds no keyword;
//! - messages: hold no keyword seed (every generated keyword contains a seed, so that suffices).
//!
//! Positives stay inside Safe Browsing's lookup limits ("URLs and Hashing", suffix/prefix
//! expressions: the exact host and up to 4 suffixes of its last 5 labels; the exact path with and
//! without query and up to 4 prefixes), so a correct matcher must find every one.

use crate::prng::{capacity_hint, fast_set, hash_bytes, FastSet, Rng, Stream};
use crate::rulegen::{
    digit_len, draw_any_number, draw_domain, draw_url, e164, for_each_domain, for_each_keyword,
    for_each_number, for_each_url, in_negative_half, parity_key, placement, placement_key, pow10,
    prefix_rows, push_segment, push_tld, sample_stride, valid_domain, valid_label, GenSpec,
    PrefixRow, Reach, UrlRow,
};
use crate::vocab::*;

/// At most this many entries per list in `truth.json`.
pub const TRUTH_SAMPLE: usize = 1000;

/// Inputs that must match the generated rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Positives {
    /// Generated exact numbers (E.164).
    pub numbers: Vec<String>,
    /// Full numbers under generated prefixes (these hit `tag` rules, not `block`).
    pub numbers_under_prefix: Vec<String>,
    /// Generated domains whose rule covers the name itself (all but the `*.x`-only ones).
    pub domains: Vec<String>,
    /// A name strictly below a generated domain whose rule covers the names below it
    /// (`login.` + listed name; not below a hosts line or an exact RPZ trigger).
    pub subdomains_of_blocked: Vec<String>,
    /// Full URLs (`http://host/path…`) that a URL rule covers.
    pub urls: Vec<String>,
    /// Message texts that contain a generated keyword (ASCII case sometimes changed).
    pub messages_with_keyword: Vec<String>,
}

/// Inputs that must not match any generated rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negatives {
    /// E.164 numbers that are neither generated nor under a generated prefix.
    pub numbers: Vec<String>,
    /// Names no domain rule covers: `not`+name, name+`.`+other registrable, parents of deep
    /// names, other TLDs, harmless names, unseen draws of the generator, and the format
    /// boundaries: a name below an exact-only rule (hosts line, RPZ `x`, `=x`) and the listed
    /// name of a rule that covers only the names below it (`*.x`).
    pub domains: Vec<String>,
    /// Full URLs no URL rule covers, on hosts no domain rule covers, with no keyword.
    pub urls: Vec<String>,
    /// Everyday messages without any keyword.
    pub messages: Vec<String>,
}

/// The samples written to `truth.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Truth {
    pub seed: u64,
    pub positives: Positives,
    pub negatives: Negatives,
}

impl Truth {
    /// Entries in all lists.
    pub fn len(&self) -> usize {
        let p = &self.positives;
        let n = &self.negatives;
        p.numbers.len()
            + p.numbers_under_prefix.len()
            + p.domains.len()
            + p.subdomains_of_blocked.len()
            + p.urls.len()
            + p.messages_with_keyword.len()
            + n.numbers.len()
            + n.domains.len()
            + n.urls.len()
            + n.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `truth.json` text: `{"seed":…, "positives":{…}, "negatives":{…}}`, one string per
    /// line, UTF-8, escaped per RFC 8259 §7.
    pub fn to_json(&self) -> String {
        let p = &self.positives;
        let n = &self.negatives;
        let mut out = String::with_capacity(64 * self.len() + 256);
        out.push_str(&format!(
            "{{\n  \"seed\": {},\n  \"positives\": {{\n",
            self.seed
        ));
        let positives: [(&str, &[String]); 6] = [
            ("numbers", &p.numbers),
            ("numbers_under_prefix", &p.numbers_under_prefix),
            ("domains", &p.domains),
            ("subdomains_of_blocked", &p.subdomains_of_blocked),
            ("urls", &p.urls),
            ("messages_with_keyword", &p.messages_with_keyword),
        ];
        push_json_lists(&mut out, &positives);
        out.push_str("  },\n  \"negatives\": {\n");
        let negatives: [(&str, &[String]); 4] = [
            ("numbers", &n.numbers),
            ("domains", &n.domains),
            ("urls", &n.urls),
            ("messages", &n.messages),
        ];
        push_json_lists(&mut out, &negatives);
        out.push_str("  }\n}\n");
        out
    }
}

fn push_json_lists(out: &mut String, lists: &[(&str, &[String])]) {
    for (i, (name, items)) in lists.iter().enumerate() {
        out.push_str("    ");
        push_json_str(out, name);
        out.push_str(": [");
        for (j, item) in items.iter().enumerate() {
            out.push_str(if j == 0 { "\n      " } else { ",\n      " });
            push_json_str(out, item);
        }
        if !items.is_empty() {
            out.push_str("\n    ");
        }
        out.push(']');
        out.push_str(if i + 1 < lists.len() { ",\n" } else { "\n" });
    }
}

/// A JSON string: RFC 8259 §7 requires escaping `"`, `\` and the controls U+0000-U+001F;
/// everything else may stay as UTF-8.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The generated sets a truth is built from (membership only, plus evenly spaced samples).
#[derive(Debug)]
pub(crate) struct World {
    seed: u64,
    pub number_sample: Vec<u64>,
    prefixes: Vec<PrefixRow>,
    prefix_set: FastSet,
    /// Hashes of the listed names, by what their rule covers.
    domain_suffix: FastSet,
    domain_exact: FastSet,
    domain_below: FastSet,
    pub domain_sample: Vec<(String, Reach)>,
    pub url_set: FastSet,
    pub url_sample: Vec<UrlRow>,
    pub keyword_sample: Vec<String>,
}

/// Which lists [`World::build`] must generate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Needs {
    pub numbers: bool,
    pub domains: bool,
    pub urls: bool,
    pub keywords: bool,
}

impl Needs {
    pub(crate) const ALL: Needs = Needs {
        numbers: true,
        domains: true,
        urls: true,
        keywords: true,
    };
    pub(crate) const NONE: Needs = Needs {
        numbers: false,
        domains: false,
        urls: false,
        keywords: false,
    };
}

impl World {
    pub(crate) fn new(seed: u64) -> Self {
        World {
            seed,
            number_sample: Vec::new(),
            prefixes: Vec::new(),
            prefix_set: fast_set(0),
            domain_suffix: fast_set(0),
            domain_exact: fast_set(0),
            domain_below: fast_set(0),
            domain_sample: Vec::new(),
            url_set: fast_set(0),
            url_sample: Vec::new(),
            keyword_sample: Vec::new(),
        }
    }

    /// Room for `n` domains in the sets (spread over three: each gets a share).
    pub(crate) fn reserve_domains(&mut self, n: usize) {
        let n = capacity_hint(n);
        self.domain_suffix.reserve(n * 2 / 3);
        self.domain_exact.reserve(n / 3);
        self.domain_below.reserve(n / 8);
    }

    /// Record one generated domain and what its rule covers; `sample` puts it in the truth.
    pub(crate) fn add_domain(&mut self, name: &str, reach: Reach, sample: bool) {
        if sample {
            self.domain_sample.push((name.to_owned(), reach));
        }
        let set = match reach {
            Reach::Suffix => &mut self.domain_suffix,
            Reach::Exact => &mut self.domain_exact,
            Reach::Below => &mut self.domain_below,
        };
        set.insert(hash_bytes(name.as_bytes()));
    }

    pub(crate) fn set_prefixes(&mut self, prefixes: Vec<PrefixRow>) {
        self.prefix_set = prefixes.iter().map(|p| p.digits).collect();
        self.prefixes = prefixes;
    }

    /// Generate the lists `needs` asks for without writing them (prefixes always: they are few).
    pub(crate) fn build(spec: &GenSpec, needs: Needs) -> Self {
        let mut w = World::new(spec.seed);
        w.set_prefixes(prefix_rows(spec));
        // The closures below never fail: the `Result`s are always `Ok`.
        if needs.numbers {
            let stride = sample_stride(spec.numbers);
            let mut i = 0usize;
            let _ = for_each_number(spec, |row| {
                if i % stride == 0 {
                    w.number_sample.push(row.digits);
                }
                i += 1;
                Ok(())
            });
        }
        if needs.domains {
            w.reserve_domains(spec.domains);
            let key = placement_key(spec.seed);
            let stride = sample_stride(spec.domains);
            let mut i = 0usize;
            let _ = for_each_domain(spec, |d| {
                w.add_domain(d, placement(key, i).reach, i % stride == 0);
                i += 1;
                Ok(())
            });
        }
        if needs.urls {
            w.url_set.reserve(capacity_hint(spec.urls));
            let stride = sample_stride(spec.urls);
            let mut i = 0usize;
            let _ = for_each_url(spec, |u| {
                if i % stride == 0 {
                    w.url_sample.push(u.clone());
                }
                i += 1;
                w.url_set.insert(hash_bytes(u.expression().as_bytes()));
                Ok(())
            });
        }
        if needs.keywords {
            let stride = sample_stride(spec.keywords);
            let mut i = 0usize;
            let _ = for_each_keyword(spec, |k| {
                if i % stride == 0 {
                    w.keyword_sample.push(k.to_owned());
                }
                i += 1;
                Ok(())
            });
        }
        w
    }

    pub(crate) fn truth(&self) -> Truth {
        let mut rng = Rng::new(self.seed, Stream::PosSamples);
        let stride = sample_stride(self.prefixes.len());
        let positives = Positives {
            numbers: self.number_sample.iter().map(|&d| e164(d)).collect(),
            numbers_under_prefix: self
                .prefixes
                .iter()
                .step_by(stride)
                .map(|p| {
                    let free = p.full_len.saturating_sub(digit_len(p.digits));
                    e164(p.digits * pow10(free) + rng.below(pow10(free)))
                })
                .collect(),
            domains: self
                .domain_sample
                .iter()
                .filter(|(_, r)| r.covers_name())
                .map(|(d, _)| d.clone())
                .collect(),
            subdomains_of_blocked: self
                .domain_sample
                .iter()
                .filter(|(_, r)| r.covers_below())
                .map(|(d, _)| {
                    let mut s = String::with_capacity(d.len() + 12);
                    if rng.chance(700) {
                        s.push_str(rng.pick(&SUB_LABELS));
                    } else {
                        let n = rng.range(4, 10) as usize;
                        rng.push_token(&mut s, n);
                    }
                    s.push('.');
                    s.push_str(d);
                    s
                })
                .collect(),
            urls: self
                .url_sample
                .iter()
                .map(|u| concrete_url(&mut rng, u))
                .collect(),
            messages_with_keyword: self
                .keyword_sample
                .iter()
                .map(|k| message_with(&mut rng, k))
                .collect(),
        };
        Truth {
            seed: self.seed,
            positives,
            negatives: Negatives {
                numbers: self.negative_numbers(TRUTH_SAMPLE),
                domains: self.negative_domains(TRUTH_SAMPLE),
                urls: self.negative_urls(TRUTH_SAMPLE),
                messages: negative_messages_for(self.seed, TRUTH_SAMPLE),
            },
        }
    }

    /// True when a generated prefix covers `digits`.
    pub(crate) fn under_prefix(&self, digits: u64) -> bool {
        let len = digit_len(digits);
        (1..=len).any(|k| self.prefix_set.contains(&(digits / pow10(len - k))))
    }

    pub(crate) fn negative_numbers(&self, n: usize) -> Vec<String> {
        let mut rng = Rng::new(self.seed, Stream::NegNumbers);
        let key = parity_key(self.seed);
        let mut seen = fast_set(n);
        let mut out = Vec::with_capacity(capacity_hint(n));
        let mut budget = budget(n);
        while out.len() < n && budget > 0 {
            budget -= 1;
            let d = draw_any_number(&mut rng);
            if in_negative_half(key, d) && !self.under_prefix(d) && seen.insert(d) {
                out.push(e164(d));
            }
        }
        out
    }

    /// True when a domain rule covers `host`, as the rule's format defines its reach: a
    /// suffix rule on the name or any name above it, an exact rule on the name itself, a
    /// below-only rule on a name strictly above it.
    pub(crate) fn domain_blocked(&self, host: &str) -> bool {
        let mut rest = host;
        let mut itself = true;
        loop {
            let h = hash_bytes(rest.as_bytes());
            let listed = if itself {
                self.domain_exact.contains(&h)
            } else {
                self.domain_below.contains(&h)
            };
            if listed || self.domain_suffix.contains(&h) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => return false,
            }
            itself = false;
        }
    }

    /// The sampled names whose rule has this reach.
    fn sample_with(&self, reach: Reach) -> Vec<String> {
        self.domain_sample
            .iter()
            .filter(|(_, r)| *r == reach)
            .map(|(d, _)| d.clone())
            .collect()
    }

    pub(crate) fn negative_domains(&self, n: usize) -> Vec<String> {
        let mut rng = Rng::new(self.seed, Stream::NegDomains);
        let mut seen = fast_set(n);
        let mut out = Vec::with_capacity(capacity_hint(n));
        let mut s = String::new();
        let mut budget = budget(n);
        let mut i = 0u64;
        let names: Vec<String> = self.domain_sample.iter().map(|(d, _)| d.clone()).collect();
        let exact = self.sample_with(Reach::Exact);
        let below = self.sample_with(Reach::Below);
        while out.len() < n && budget > 0 {
            budget -= 1;
            let mut form = if names.is_empty() { 4 + i % 2 } else { i % 8 };
            i += 1;
            if (form == 6 && exact.is_empty()) || (form == 7 && below.is_empty()) {
                form = 5;
            }
            let base = pick_str(&mut rng, &names);
            let cand = match form {
                // `notx`: the blocked name glued to a prefix is not a subdomain of it.
                0 => format!("not{base}"),
                // `x.evil-suffix`: the blocked name as the left part of another registrable.
                1 => {
                    draw_domain(&mut rng, &mut s, 0);
                    format!("{base}.{s}")
                }
                // The parent of a deep name (a rule blocks downwards, never upwards).
                2 => match base.split_once('.') {
                    Some((_, parent)) if parent.contains('.') => parent.to_owned(),
                    _ => swap_tld(&mut rng, base),
                },
                // The same name under another TLD.
                3 => swap_tld(&mut rng, base),
                // A harmless name.
                4 => {
                    let mut h = String::from(rng.pick(&BENIGN_WORDS));
                    h.push('-');
                    h.push_str(rng.pick(&BENIGN_WORDS));
                    push_tld(&mut rng, &mut h);
                    h
                }
                // Below a hosts line or an exact trigger: the rule is for one name only.
                6 => {
                    let d = pick_str(&mut rng, &exact);
                    format!("{}.{d}", rng.pick(&SUB_LABELS))
                }
                // The listed name of a `*.x` rule: it covers the names below x, not x.
                7 => pick_str(&mut rng, &below).to_owned(),
                // An unseen draw from the generator's own distribution (false-positive rates of
                // filters are only meaningful against look-alike keys).
                _ => {
                    draw_domain(&mut rng, &mut s, 0);
                    s.clone()
                }
            };
            if valid_domain(&cand)
                && !self.domain_blocked(&cand)
                && !contains_keyword_seed(&cand)
                && seen.insert(hash_bytes(cand.as_bytes()))
            {
                out.push(cand);
            }
        }
        out
    }

    /// True when some URL rule could cover `host` + `path`: every label suffix of the host with
    /// every path prefix, the exact path and the path without query. A superset of Safe
    /// Browsing's lookups, so a negative stays negative for any reasonable matcher.
    fn url_covered(&self, host: &str, path: &str) -> bool {
        let no_query = path.split_once('?').map_or(path, |(p, _)| p);
        let mut paths: Vec<&str> = vec![path, no_query];
        for (i, b) in no_query.char_indices() {
            if b == '/' {
                paths.push(no_query.get(..=i).unwrap_or("/"));
            }
        }
        let mut h = host;
        loop {
            for p in &paths {
                let mut e = String::with_capacity(h.len() + p.len());
                e.push_str(h);
                e.push_str(p);
                if self.url_set.contains(&hash_bytes(e.as_bytes())) {
                    return true;
                }
            }
            match h.split_once('.') {
                Some((_, parent)) => h = parent,
                None => return false,
            }
        }
    }

    pub(crate) fn negative_urls(&self, n: usize) -> Vec<String> {
        let mut rng = Rng::new(self.seed, Stream::NegUrls);
        let mut seen = fast_set(n);
        let mut out = Vec::with_capacity(capacity_hint(n));
        let mut budget = budget(n);
        let mut i = 0u64;
        while out.len() < n && budget > 0 {
            budget -= 1;
            let form = if self.url_sample.is_empty() {
                3 + i % 2
            } else {
                i % 6
            };
            i += 1;
            let fresh = draw_url(&mut rng, 0);
            let base = self
                .url_sample
                .get(rng.below(self.url_sample.len() as u64) as usize)
                .unwrap_or(&fresh);
            let (host, path) = match form {
                // Next to the rule: another query value, another file, a sibling directory.
                0 => (base.host.clone(), sibling_path(&mut rng, base)),
                // Above the rule: the parent directory.
                1 => (base.host.clone(), parent_path(&mut rng, base)),
                // A look-alike host: `not` + first label.
                2 => (format!("not{}", base.host), base.path.clone()),
                // The same path on a harmless host.
                3 => {
                    let mut h = String::from(rng.pick(&BENIGN_WORDS));
                    h.push('-');
                    h.push_str(rng.pick(&BENIGN_WORDS));
                    push_tld(&mut rng, &mut h);
                    (h, base.path.clone())
                }
                // An unseen draw from the generator's own distribution.
                4 => {
                    let url = concrete_url(&mut rng, &fresh);
                    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                    let (h, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    (h.to_owned(), p.to_owned())
                }
                // Boundaries: an exact rule without its query, a prefix rule without its slash.
                _ => match base.path.split_once('?') {
                    Some((p, _)) => (base.host.clone(), p.to_owned()),
                    None => (
                        base.host.clone(),
                        base.path.trim_end_matches('/').to_owned(),
                    ),
                },
            };
            if path.is_empty() || !host.split('.').all(valid_label) {
                continue;
            }
            let scheme = if rng.chance(300) { "https" } else { "http" };
            let url = format!("{scheme}://{host}{path}");
            if !self.url_covered(&host, &path)
                && !self.domain_blocked(&host)
                && !contains_keyword_seed(&url)
                && seen.insert(hash_bytes(url.as_bytes()))
            {
                out.push(url);
            }
        }
        out
    }
}

fn budget(n: usize) -> u64 {
    (n as u64).saturating_mul(200).saturating_add(10_000)
}

fn pick_str<'a>(rng: &mut Rng, items: &'a [String]) -> &'a str {
    items
        .get(rng.below(items.len() as u64) as usize)
        .map_or("", String::as_str)
}

/// `name` with its public suffix (from the generator's list) replaced by another one.
fn swap_tld(rng: &mut Rng, name: &str) -> String {
    let stem = TLDS
        .iter()
        .filter_map(|&(t, _)| {
            name.strip_suffix(t)
                .and_then(|rest| rest.strip_suffix('.'))
                .map(|rest| (t.len(), rest))
        })
        .max_by_key(|&(len, _)| len)
        .map_or(name, |(_, rest)| rest);
    let mut s = String::from(stem);
    push_tld(rng, &mut s);
    s
}

/// True when `text` contains a keyword seed (ASCII case-insensitive, as keyword rules match).
/// Every generated keyword contains a seed, so no seed means no keyword.
pub(crate) fn contains_keyword_seed(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    KEYWORDS_ZH
        .iter()
        .chain(KEYWORDS_EN.iter())
        .any(|k| lower.contains(k))
}

/// A URL a rule covers: the expression's host (sometimes with `www.`) and path (a prefix rule
/// gets a file, maybe a directory and a query below it).
pub(crate) fn concrete_url(rng: &mut Rng, u: &UrlRow) -> String {
    let scheme = if rng.chance(300) { "https" } else { "http" };
    let mut url = format!("{scheme}://");
    // Safe Browsing tries the exact host and suffixes of its last 5 labels, so `www.` in front
    // of a registrable name still finds the rule.
    if !u.shared && u.host.split('.').count() == 2 && rng.chance(250) {
        url.push_str("www.");
    }
    url.push_str(&u.host);
    url.push_str(&u.path);
    if u.prefix {
        if rng.chance(500) {
            push_segment(rng, &mut url, 0);
            url.push('/');
        }
        url.push_str(rng.pick(&FILE_STEMS));
        url.push('.');
        url.push_str(rng.weighted(&FILE_EXTS));
        if rng.chance(200) {
            url.push_str("?from=sms");
        }
    }
    url
}

/// Beside the rule: another query value, another file name, a sibling directory that shares
/// the rule's last directory name as a prefix (`/a/b/` → `/a/bx/`).
fn sibling_path(rng: &mut Rng, u: &UrlRow) -> String {
    if u.prefix {
        let trimmed = u.path.trim_end_matches('/');
        let mut p = String::from(trimmed);
        p.push_str(if rng.chance(500) { "x/" } else { "2/" });
        p.push_str(rng.pick(&FILE_STEMS));
        p.push_str(".html");
        return p;
    }
    match u.path.split_once("?id=") {
        Some((p, id)) => {
            let id: u64 = id.parse().unwrap_or(0);
            format!("{p}?id={}", id + 1 + rng.below(1_000_000))
        }
        None => match u.path.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}x.{ext}"),
            None => format!("{}x", u.path),
        },
    }
}

/// Above the rule: the parent directory with another file.
fn parent_path(rng: &mut Rng, u: &UrlRow) -> String {
    let no_query = u.path.split_once('?').map_or(u.path.as_str(), |(p, _)| p);
    let dir = no_query.trim_end_matches('/');
    let parent = dir.rsplit_once('/').map_or("", |(p, _)| p);
    let mut p = String::from(parent);
    p.push('/');
    p.push_str(rng.pick(&FILE_STEMS));
    p.push_str("-old.html");
    p
}

/// A message carrying `keyword`; an ASCII keyword is sometimes upper-cased, which a
/// case-insensitive matcher must still find.
fn message_with(rng: &mut Rng, keyword: &str) -> String {
    if keyword.is_ascii() {
        let t = rng.pick(&POS_MESSAGES_EN);
        let k = if rng.chance(250) {
            keyword.to_ascii_uppercase()
        } else {
            keyword.to_owned()
        };
        t.replacen("{}", &k, 1)
    } else {
        rng.pick(&POS_MESSAGES_ZH).replacen("{}", keyword, 1)
    }
}

/// Everyday messages without keywords (unique; numbered once the templates run out).
pub(crate) fn negative_messages_for(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed, Stream::NegMessages);
    let mut seen = fast_set(n);
    let mut out = Vec::with_capacity(capacity_hint(n));
    let mut budget = budget(n);
    let mut dups = 0u32;
    let mut counter = 0u64;
    let mut numbered = false;
    while out.len() < n && budget > 0 {
        budget -= 1;
        numbered |= dups >= 32;
        let zh = rng.chance(500);
        let (t, name, time) = if zh {
            (
                rng.pick(&NEG_MESSAGES_ZH),
                rng.pick(&NAMES_ZH),
                rng.pick(&TIMES_ZH),
            )
        } else {
            (
                rng.pick(&NEG_MESSAGES_EN),
                rng.pick(&NAMES_EN),
                rng.pick(&TIMES_EN),
            )
        };
        let mut m = t.replace("{n}", name).replace("{t}", time);
        if numbered {
            counter += 1;
            m.push_str(&if zh {
                format!("（{counter}）")
            } else {
                format!(" ({counter})")
            });
        }
        if contains_keyword_seed(&m) || !seen.insert(hash_bytes(m.as_bytes())) {
            dups = dups.saturating_add(1);
            continue;
        }
        dups = 0;
        out.push(m);
    }
    out
}

/// Samples of the rule set for tests and benches (the same as `truth.json` of [`write_dir`]).
///
/// Generates every list in memory-light mode (dedup sets only).
///
/// [`write_dir`]: crate::write_dir
pub fn truth(spec: &GenSpec) -> Truth {
    World::build(spec, Needs::ALL).truth()
}

/// `n` E.164 numbers that are neither generated nor under a generated prefix, for this seed
/// and prefix count whatever the number count (no need to generate the numbers).
pub fn negative_numbers(spec: &GenSpec, n: usize) -> Vec<String> {
    World::build(spec, Needs::NONE).negative_numbers(n)
}

/// `n` host names that no generated domain rule covers (generates the domains to check).
pub fn negative_domains(spec: &GenSpec, n: usize) -> Vec<String> {
    let needs = Needs {
        domains: true,
        ..Needs::NONE
    };
    World::build(spec, needs).negative_domains(n)
}

/// `n` full URLs that no generated URL or domain rule covers and that hold no keyword
/// (generates the domains and URLs to check).
pub fn negative_urls(spec: &GenSpec, n: usize) -> Vec<String> {
    let needs = Needs {
        domains: true,
        urls: true,
        ..Needs::NONE
    };
    World::build(spec, needs).negative_urls(n)
}

/// `n` everyday messages that hold no keyword of any generated list.
pub fn negative_messages(spec: &GenSpec, n: usize) -> Vec<String> {
    negative_messages_for(spec.seed, n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rulegen::generate;
    use std::collections::HashSet;

    fn spec(seed: u64) -> GenSpec {
        GenSpec {
            numbers: 20_000,
            prefixes: 200,
            domains: 5000,
            urls: 5000,
            keywords: 800,
            seed,
        }
    }

    /// Safe Browsing's lookups for a canonical URL ("URLs and Hashing", suffix/prefix
    /// expressions), written independently of the generator's own check: the exact host and
    /// suffixes of its last 5 labels; the exact path, the path without query, and up to 4
    /// directory prefixes starting at `/`.
    fn sb_expressions(url: &str) -> Vec<String> {
        let rest = url.split_once("://").unwrap().1;
        let slash = rest.find('/').unwrap();
        let (host, path) = rest.split_at(slash);
        let labels: Vec<&str> = host.split('.').collect();
        let mut hosts = vec![host.to_string()];
        let from = labels.len().saturating_sub(5);
        for start in from..labels.len().saturating_sub(1) {
            let h = labels[start..].join(".");
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let no_query = path.split('?').next().unwrap();
        let mut paths = vec![path.to_string(), no_query.to_string()];
        let dirs: Vec<&str> = no_query.split('/').collect();
        let dirs = &dirs[1..dirs.len() - 1];
        let mut p = String::from("/");
        paths.push(p.clone());
        for d in dirs.iter().take(3) {
            p.push_str(d);
            p.push('/');
            paths.push(p.clone());
        }
        let mut out = Vec::new();
        for h in &hosts {
            for p in &paths {
                out.push(format!("{h}{p}"));
            }
        }
        out
    }

    #[test]
    fn positives_match_and_negatives_do_not() {
        for seed in [1, 99] {
            let s = spec(seed);
            let r = generate(&s);
            let t = truth(&s);
            let numbers: HashSet<&str> = r.numbers.iter().map(String::as_str).collect();
            // The rules as the formats define them, independent of `World::domain_blocked`.
            let domains = r.domain_reach();
            let urls: HashSet<&str> = r.urls.iter().map(String::as_str).collect();
            let lower_keywords: Vec<String> =
                r.keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
            let has_keyword = |text: &str| {
                let l = text.to_ascii_lowercase();
                lower_keywords.iter().any(|k| l.contains(k.as_str()))
            };
            let p = &t.positives;
            let n = &t.negatives;

            assert_eq!(p.numbers.len(), TRUTH_SAMPLE);
            assert!(p.numbers.iter().all(|x| numbers.contains(x.as_str())));
            assert_eq!(p.numbers_under_prefix.len(), s.prefixes);
            for x in &p.numbers_under_prefix {
                assert!(
                    r.prefixes.iter().any(|pre| x.starts_with(pre.as_str())),
                    "{x}"
                );
                assert!(x.len() > 8, "{x}");
            }
            // Every sampled name is a positive itself, below itself, or both, as its rule reaches.
            let (named, below) = (p.domains.len(), p.subdomains_of_blocked.len());
            assert!(named + below > TRUTH_SAMPLE && named < TRUTH_SAMPLE && below < TRUTH_SAMPLE);
            for d in &p.domains {
                assert!(domains.reach(d).is_some_and(Reach::covers_name), "{d}");
                assert!(domains.covers(d), "{d}");
            }
            for sub in &p.subdomains_of_blocked {
                let (_, d) = sub.split_once('.').unwrap();
                assert!(domains.reach(d).is_some_and(Reach::covers_below), "{sub}");
                assert!(domains.covers(sub), "{sub}");
                assert!(valid_domain(sub), "{sub}");
            }
            assert_eq!(p.urls.len(), TRUTH_SAMPLE);
            for u in &p.urls {
                let hit = sb_expressions(u).iter().any(|e| urls.contains(e.as_str()));
                assert!(hit, "{u} matches no URL rule");
            }
            assert_eq!(p.messages_with_keyword.len(), s.keywords.min(TRUTH_SAMPLE));
            for m in &p.messages_with_keyword {
                assert!(has_keyword(m), "{m}");
            }

            assert_eq!(n.numbers.len(), TRUTH_SAMPLE);
            for x in &n.numbers {
                assert!(!numbers.contains(x.as_str()), "{x} is generated");
                assert!(
                    !r.prefixes.iter().any(|pre| x.starts_with(pre.as_str())),
                    "{x}"
                );
                assert!(x.starts_with('+') && (9..=16).contains(&x.len()), "{x}");
            }
            assert_eq!(n.domains.len(), TRUTH_SAMPLE);
            for d in &n.domains {
                assert!(valid_domain(d), "{d}");
                assert!(!domains.covers(d), "{d} is blocked");
            }
            // The look-alike forms of the brief are there.
            assert!(n
                .domains
                .iter()
                .any(|d| d.starts_with("not") && domains.reach(&d[3..]).is_some()));
            // And the formats' boundaries: below a one-name rule, and the name of a `*.x` rule.
            assert!(n.domains.iter().any(|d| d
                .split_once('.')
                .is_some_and(|(_, parent)| domains.reach(parent) == Some(Reach::Exact))));
            assert!(n
                .domains
                .iter()
                .any(|d| domains.reach(d) == Some(Reach::Below)));
            assert!(n
                .domains
                .iter()
                .any(|d| p.domains.iter().any(|b| d.starts_with(&format!("{b}.")))));
            assert_eq!(n.urls.len(), TRUTH_SAMPLE);
            for u in &n.urls {
                assert!(
                    !sb_expressions(u).iter().any(|e| urls.contains(e.as_str())),
                    "{u} matches a URL rule"
                );
                let host = u.split("://").nth(1).unwrap().split('/').next().unwrap();
                assert!(!domains.covers(host), "{u} is on a blocked host");
                assert!(!has_keyword(u), "{u} holds a keyword");
            }
            // Boundary cases are there: a prefix rule's path without its slash, and a sibling.
            assert!(n.urls.iter().any(|u| {
                let rest = u.split_once("://").unwrap().1;
                urls.contains(format!("{rest}/").as_str())
            }));
            assert_eq!(n.messages.len(), TRUTH_SAMPLE);
            for m in &n.messages {
                assert!(!has_keyword(m), "{m}");
            }
            for list in [&n.numbers, &n.domains, &n.urls, &n.messages] {
                let set: HashSet<&String> = list.iter().collect();
                assert_eq!(set.len(), list.len());
            }
        }
    }

    #[test]
    fn negative_numbers_need_no_number_set() {
        let mut a = spec(4);
        let b = negative_numbers(&a, 500);
        a.numbers = 10;
        assert_eq!(negative_numbers(&a, 500), b);
        assert_eq!(truth(&spec(4)).negatives.numbers[..500], b[..]);
        // Far more than a truth file holds: still clean.
        let many = negative_numbers(&spec(4), 50_000);
        assert_eq!(many.len(), 50_000);
        let r = generate(&GenSpec {
            numbers: 200_000,
            ..spec(4)
        });
        let set: HashSet<&String> = r.numbers.iter().collect();
        assert!(many.iter().all(|x| !set.contains(x)));
    }

    #[test]
    fn standalone_negatives_equal_the_truth_file() {
        let s = spec(8);
        let t = truth(&s);
        assert_eq!(negative_domains(&s, TRUTH_SAMPLE), t.negatives.domains);
        assert_eq!(negative_urls(&s, TRUTH_SAMPLE), t.negatives.urls);
        assert_eq!(negative_messages(&s, TRUTH_SAMPLE), t.negatives.messages);
        assert_eq!(truth(&s), t);
    }

    #[test]
    fn empty_lists_still_give_negatives() {
        let s = GenSpec {
            numbers: 0,
            prefixes: 0,
            domains: 0,
            urls: 0,
            keywords: 0,
            seed: 3,
        };
        let t = truth(&s);
        assert!(t.positives.numbers.is_empty() && t.positives.urls.is_empty());
        assert_eq!(t.negatives.numbers.len(), TRUTH_SAMPLE);
        assert_eq!(t.negatives.domains.len(), TRUTH_SAMPLE);
        assert_eq!(t.negatives.urls.len(), TRUTH_SAMPLE);
        assert_eq!(t.negatives.messages.len(), TRUTH_SAMPLE);
    }

    #[test]
    fn every_negative_message_template_is_keyword_free() {
        for t in NEG_MESSAGES_ZH {
            for n in NAMES_ZH {
                for time in TIMES_ZH {
                    let m = t.replace("{n}", n).replace("{t}", time);
                    assert!(!contains_keyword_seed(&m), "{m}");
                }
            }
        }
        for t in NEG_MESSAGES_EN {
            for n in NAMES_EN {
                for time in TIMES_EN {
                    let m = t.replace("{n}", n).replace("{t}", time);
                    assert!(!contains_keyword_seed(&m), "{m}");
                }
            }
        }
        // More than the templates can make: numbered, still unique and clean.
        let many = negative_messages(&GenSpec::default(), 6000);
        assert_eq!(many.len(), 6000);
        assert_eq!(many.iter().collect::<HashSet<_>>().len(), 6000);
        assert!(many.iter().all(|m| !contains_keyword_seed(m)));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\te\u{1}f安全");
        assert_eq!(s, r#""a\"b\\c\nd\te\u0001f安全""#);
    }

    #[test]
    fn truth_json_has_the_shape_of_the_brief() {
        let t = Truth {
            seed: u64::MAX,
            positives: Positives {
                numbers: vec!["+8613800000000".into()],
                messages_with_keyword: vec!["say \"hi\"".into()],
                ..Positives::default()
            },
            negatives: Negatives::default(),
        };
        let j = t.to_json();
        assert!(j.starts_with("{\n  \"seed\": 18446744073709551615,\n  \"positives\": {\n"));
        for key in [
            "\"numbers\": [\n      \"+8613800000000\"\n    ],",
            "\"subdomains_of_blocked\": [],",
            "\"messages_with_keyword\": [\n      \"say \\\"hi\\\"\"\n    ]\n  },",
            "\"negatives\": {\n    \"numbers\": [],",
            "\"messages\": []\n  }\n}\n",
        ] {
            assert!(j.contains(key), "missing {key} in\n{j}");
        }
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
        assert!(Truth::default().is_empty());
    }
}
