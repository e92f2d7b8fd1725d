//! Engine lookups, compile and load, on synthetic rule sets.
//!
//! `cargo bench --bench engine` runs at 10⁶ numbers (plus 10⁵ domains); with
//! `DRAGNET_BENCH_FULL=1` at 10⁷ numbers. Lookups walk a shuffled array of 2²⁰ queries so that
//! the figures include cache misses, as real traffic does (not one hot key in a loop).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
use dragnet_rules::formats::Format;
use dragnet_rules::snapshot::{read_snapshot, write_snapshot};
use dragnet_rules::{Call, Engine, Fact, Number, Scratch};
use std::fmt::Write;

const QUERIES: usize = 1 << 20;

mod common;
use common::Rng;

/// Blocked numbers are +86 13x/15x/18x mobiles with an even last digit; clean ones odd.
fn mobile(r: &mut Rng, blocked: bool) -> String {
    let second = [3, 5, 8][(r.next() % 3) as usize];
    let body = r.next() % 1_000_000_000;
    let body = if blocked { body & !1 } else { body | 1 };
    format!("+861{second}{body:09}")
}

struct Fixture {
    engine: Engine,
    image: Vec<u8>,
    hits: Vec<Number>,
    misses: Vec<Number>,
    domains_hit: Vec<String>,
    domains_miss: Vec<String>,
}

/// Compile a synthetic set: (snapshot image, sample blocked numbers, sample blocked names, rng).
fn build_image(numbers: usize, domains: usize) -> (Vec<u8>, Vec<String>, Vec<String>, Rng) {
    let mut r = Rng(42);
    let mut csv = String::with_capacity(numbers * 20);
    csv.push_str("number\n");
    let mut hit_text = Vec::new();
    for i in 0..numbers {
        let n = mobile(&mut r, true);
        if i % (numbers / 4096).max(1) == 0 {
            hit_text.push(n.clone());
        }
        csv.push_str(&n);
        csv.push('\n');
    }
    // A few hundred prefixes, as carriers' lists have.
    let mut prefixes = String::from("number,kind,action,direction\n");
    for p in 0..300 {
        let _ = writeln!(prefixes, "+86170{p:04},prefix,tag,caller");
    }
    let mut dom = String::new();
    let mut dom_hit = Vec::new();
    for i in 0..domains {
        let d = format!("scam{:x}.shop{}.example", r.next() % (1 << 40), i % 97);
        if i % (domains / 4096).max(1) == 0 {
            dom_hit.push(format!("login.secure.{d}"));
        }
        dom.push_str(&d);
        dom.push('\n');
    }
    let cfg = CompileConfig {
        now: 1,
        ..CompileConfig::default()
    };
    let mut c = Compiler::new(cfg, false);
    for (f, name, text) in [
        (Format::NumbersCsv, "n.csv", &csv),
        (Format::NumbersCsv, "p.csv", &prefixes),
        (Format::Domains, "d.domains", &dom),
    ] {
        let o = source_options(None, name, Some(f), false).expect("options");
        c.add_text(text, name, &o).expect("source");
    }
    let (t, _) = c.finish().expect("compile");
    let image = write_snapshot(&t, 1, 1).expect("write");
    (image, hit_text, dom_hit, r)
}

fn fixture(numbers: usize, domains: usize) -> Fixture {
    let (image, hit_text, dom_hit, mut r) = build_image(numbers, domains);
    let engine = Engine::from_bytes(&image).expect("load");
    let plan = *engine.plan();
    let parse = |s: &str| Number::parse(s, &plan).expect("number");
    let hits: Vec<Number> = (0..QUERIES)
        .map(|i| parse(&hit_text[i % hit_text.len()]))
        .collect();
    let misses: Vec<Number> = (0..QUERIES)
        .map(|_| parse(&mobile(&mut r, false)))
        .collect();
    let dom_hit = if dom_hit.is_empty() {
        vec!["none.example".to_string()]
    } else {
        dom_hit
    };
    let domains_hit = (0..QUERIES / 16)
        .map(|i| dom_hit[i % dom_hit.len()].clone())
        .collect();
    let domains_miss = (0..QUERIES / 16)
        .map(|_| {
            format!(
                "www.clean{:x}.shop{}.example",
                r.next() % (1 << 40),
                r.next() % 97
            )
        })
        .collect();
    Fixture {
        engine,
        image,
        hits,
        misses,
        domains_hit,
        domains_miss,
    }
}

fn bench(c: &mut Criterion) {
    let full = std::env::var("DRAGNET_BENCH_FULL").is_ok_and(|v| v == "1");
    // `cargo test --all-targets` runs each bench once without `--bench`: keep that quick.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = match (full, measuring) {
        (true, _) => 10_000_000,
        (false, true) => 1_000_000,
        (false, false) => 10_000,
    };
    let f = fixture(n, n / 10);
    let e = &f.engine;
    let label = format!("1e{}", n.ilog10());
    let mut g = c.benchmark_group(format!("engine/{label}"));
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("filter_only_negative", |b| {
        let filter = &e.tables().numbers.filter;
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            black_box(filter.may_contain(f.misses[i].key()))
        })
    });
    g.bench_function("number_negative", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            black_box(e.check_number(f.misses[i], Fact::Callee, 2))
        })
    });
    g.bench_function("number_positive", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            black_box(e.check_number(f.hits[i], Fact::Callee, 2))
        })
    });
    g.bench_function("call_clean", |b| {
        b.iter(|| {
            i = (i + 1) & (QUERIES - 1);
            let call = Call {
                caller: Some(f.misses[i]),
                callee: Some(f.misses[(i + 7) & (QUERIES - 1)]),
                trunk: "peer-1",
                international: false,
            };
            black_box(e.check_call(&call, 2))
        })
    });
    g.bench_function("number_parse_sip_uri", |b| {
        let plan = *e.plan();
        b.iter(|| {
            black_box(Number::parse(
                black_box("sip:+8613812345678@sbc.example;user=phone"),
                &plan,
            ))
        })
    });
    let dm = f.domains_miss.len();
    g.bench_function("domain_negative", |b| {
        b.iter(|| {
            i = (i + 1) % dm;
            black_box(e.check_domain(f.domains_miss[i].as_bytes(), 2))
        })
    });
    g.bench_function("domain_positive", |b| {
        b.iter(|| {
            i = (i + 1) % dm;
            black_box(e.check_domain(f.domains_hit[i].as_bytes(), 2))
        })
    });
    let mut s = Scratch::new();
    g.bench_function("url_clean", |b| {
        b.iter(|| {
            black_box(e.check_url(
                black_box(b"https://www.example-shop.example/catalog/item/123?ref=sms"),
                2,
                &mut s,
            ))
        })
    });
    g.bench_function("message_clean", |b| {
        b.iter(|| black_box(e.check_message(black_box("【快递】您的包裹已到达，请凭取件码 3345 到驿站领取 https://parcel.example/p/3345"), 2, &mut s)))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("snapshot/{label}"));
    g.sample_size(10);
    g.bench_function("load", |b| {
        b.iter_batched(
            || f.image.clone(),
            |img| {
                let (h, t) = read_snapshot(&img[..]).expect("read");
                black_box(Engine::from_tables(h, t).expect("validate"))
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    prefix_trie_vs_automaton(c, &f.misses);

    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("1e5_numbers", |b| {
        b.iter(|| black_box(build_image(100_000, 0).0.len()))
    });
    g.finish();
}

/// The design question of rules/DESIGN.md: number prefixes in a digit trie (what the engine
/// does) or an anchored Aho-Corasick automaton (the alternative the issue names). 10⁴ prefixes of
/// 6–9 digits; queries are clean numbers, so both walk as deep as the data lets them.
fn prefix_trie_vs_automaton(c: &mut Criterion, numbers: &[Number]) {
    use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};
    let mut r = Rng(7);
    let mut csv = String::from("number,kind,action,direction\n");
    let mut pats = Vec::new();
    for _ in 0..10_000 {
        let len = 4 + (r.next() % 4) as usize;
        let tail = r.next() % 10u64.pow(len as u32);
        let p = format!("861{}{tail:0len$}", [3, 5, 8][(r.next() % 3) as usize]);
        let _ = writeln!(csv, "+{p},prefix,tag,caller");
        pats.push(p);
    }
    let cfg = CompileConfig {
        now: 1,
        ..CompileConfig::default()
    };
    let mut comp = Compiler::new(cfg, false);
    let o = source_options(None, "p.csv", Some(Format::NumbersCsv), false).expect("options");
    comp.add_text(&csv, "p.csv", &o).expect("prefixes");
    let (t, _) = comp.finish().expect("compile");
    let e = Engine::from_bytes(&write_snapshot(&t, 1, 1).expect("write")).expect("load");
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .start_kind(StartKind::Anchored)
        .build(&pats)
        .expect("automaton");
    let digits: Vec<[u8; 20]> = numbers
        .iter()
        .take(1 << 16)
        .map(|n| {
            let mut b = [0u8; 20];
            let d = n.digits(&mut [0u8; 20]).to_vec();
            b[..d.len()].copy_from_slice(&d);
            b
        })
        .collect();
    let lens: Vec<usize> = numbers
        .iter()
        .take(1 << 16)
        .map(|n| n.digit_count() as usize)
        .collect();
    let mut g = c.benchmark_group("prefix_1e4");
    let mut i = 0usize;
    g.bench_function("digit_trie_engine", |b| {
        b.iter(|| {
            i = (i + 1) & ((1 << 16) - 1);
            black_box(e.check_number(numbers[i], Fact::Caller, 2))
        })
    });
    g.bench_function("aho_corasick_anchored", |b| {
        b.iter(|| {
            i = (i + 1) & ((1 << 16) - 1);
            let input = Input::new(&digits[i][..lens[i]]).anchored(Anchored::Yes);
            black_box(ac.find(input))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
