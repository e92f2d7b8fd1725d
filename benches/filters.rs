//! Which Bloom-family filter guards the number lists? A measurement, not a test.
//!
//! The gateway asks one question per call: "is this E.164 number possibly on a list?", against a
//! static set of up to 10^7 numbers held as `u64` (ITU-T E.164 §6: at most 15 digits, so every
//! number fits in a `u64`). A filter answers "no" for almost every call and sends the rare "maybe"
//! on to the exact set. This bench compares the candidates on exactly that job:
//!
//! - `bloomfilter::Bloom`, sized for 0.4 % and for 1 % false positives;
//! - `fastbloom::BloomFilter`, built with `with_false_pos(0.004)` and with 9 bits per key (the
//!   memory a `BinaryFuse8` takes, so the two can be compared at equal size);
//! - `xorf::BinaryFuse8`, and `xorf::BinaryFuse16` for reference;
//! - and, as a yardstick rather than a candidate, one random byte read from an array of the same
//!   size as a `BinaryFuse8`: what a single random memory access costs on the machine.
//!
//! Lookups run over a pre-generated, shuffled stream of 2^20 keys (8 MiB), never the same key in
//! a loop, so the filter's memory is touched the way live traffic touches it. One criterion
//! iteration is one lookup, so criterion's "time" is nanoseconds per lookup.
//!
//! Environment:
//! - `DRAGNET_BENCH_FULL=1` adds the 10^7-key size; the default (10^6 only) keeps CI short.
//! - `DRAGNET_FILTER_TABLE=1` also measures, for each filter, memory (bits per key), build time,
//!   the false-positive rate over 10^7 numbers known to be absent, the absence of false negatives
//!   over every member, and the time to load it back from its serialised bytes; then it prints
//!   one Markdown table with the median ns per lookup taken from criterion's own samples.
//!
//! The numbers and the decision are in `rules/DESIGN.md`, section "The Bloom-family filter":
//!
//! ```text
//! DRAGNET_FILTER_TABLE=1 DRAGNET_BENCH_FULL=1 cargo bench --bench filters
//! ```
//!
//! This bench depends on the filter crates and criterion only, never on dragnet crates: it
//! measures the libraries, not our wrappers around them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bloomfilter::Bloom;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use fastbloom::BloomFilter;
use xorf::{BinaryFuse16, BinaryFuse16Ref, BinaryFuse8, BinaryFuse8Ref};
use xorf::{DmaSerializable, Filter, FilterRef};

/// Length of each lookup stream. A power of two so that the cursor wraps with a mask.
const QUERY_STREAM_LEN: usize = 1 << 20;
const QUERY_MASK: usize = QUERY_STREAM_LEN - 1;
const _: () = assert!(QUERY_STREAM_LEN.is_power_of_two());

/// Absent numbers probed to measure the false-positive rate. At 10^7 probes a rate of 0.4 % is
/// measured to about ±0.004 percentage points (one standard deviation), enough to tell 8-bit
/// fingerprints (2^-8 ≈ 0.39 %) from a Bloom filter sized for 1 %.
const FPR_NEGATIVES: usize = 10_000_000;

/// Seeds, fixed so that every run sees the same numbers and the same filters.
const KEY_SEED: u64 = 0x6472_6167_6e65_7431;
const NEGATIVE_SEED: u64 = 0x6e6f_742d_6c69_7374;
const BLOOM_SEED: [u8; 32] = *b"dragnet filter bench, fixed seed";
const FASTBLOOM_SEED: u128 = 0x6472_6167_6e65_745f_6661_7374_626c_6f6f;

/// Criterion samples per benchmark, and the shortest sample counted in our own median: criterion
/// also calls the routine with 1, 2, 4 … iterations while warming up, and a sample of a few
/// lookups is mostly timer overhead.
const SAMPLE_SIZE: usize = 30;
const MIN_SAMPLE_ITERS: u64 = 4096;

/// Mobile number blocks `1xy` of the Chinese numbering plan (country code 86) used to make keys
/// that look like real traffic: 13 decimal digits with a dense, structured low part, which is
/// what the filters' hash functions have to spread.
const MOBILE_BLOCKS: [u64; 43] = [
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 145, 147, 150, 151, 152, 153, 155, 156, 157,
    158, 159, 166, 170, 171, 172, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187,
    188, 189, 191, 198, 199,
];

fn main() {
    if let Err(reason) = run() {
        eprintln!("filters bench failed: {reason}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let table = env_flag("DRAGNET_FILTER_TABLE");
    let sizes: &[usize] = if env_flag("DRAGNET_BENCH_FULL") {
        &[1_000_000, 10_000_000]
    } else {
        &[1_000_000]
    };
    // Other engineers compile on the same machine: note the load as each size starts, so a
    // number taken under contention can be told apart.
    let mut loads = Vec::new();

    let mut criterion = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    let mut floors = Vec::new();
    for &n in sizes {
        loads.push(format!(
            "{} at the start of {}",
            load_average(),
            size_label(n)
        ));
        let started = Instant::now();
        let workload = Workload::generate(n, KEY_SEED ^ n as u64);
        // Only the table needs 10^7 absent numbers; a plain bench run skips the work.
        let fpr_negatives = table.then(|| {
            let mut rng = SplitMix64::new(NEGATIVE_SEED ^ n as u64);
            absent_numbers(&workload.members, FPR_NEGATIVES, &mut rng)
        });
        eprintln!(
            "filters bench: generated {n} member numbers and the query streams in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let mut group = criterion.benchmark_group(format!("filters_{}", size_label(n)));
        group
            .sample_size(SAMPLE_SIZE)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(1));
        for variant in Variant::ALL {
            rows.push(run_variant(
                variant,
                &workload,
                fpr_negatives.as_deref(),
                &mut group,
            )?);
        }
        let floor = RandomByteRead::new(n * 9 / 8, KEY_SEED);
        floors.push((
            n,
            bench_lookups(
                &mut group,
                "reference_random_byte_read",
                "negative",
                &floor,
                &workload.negative_stream,
            ),
        ));
        group.finish();
    }
    criterion.final_summary();

    if table {
        loads.push(format!("{} at the end", load_average()));
        print_table(&rows, &floors, &loads);
    }
    Ok(())
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| value == "1")
}

fn size_label(n: usize) -> String {
    match n {
        1_000_000 => "1e6".to_owned(),
        10_000_000 => "1e7".to_owned(),
        _ => n.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA
/// 2014): tiny, fast, and good enough to make test data; the bench must not pull in `rand` and
/// must produce the same keys on every machine.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` by multiply-and-shift (Lemire, "Fast random integer generation in an
    /// interval", 2019) instead of `%`; the bias is below 2^-32 for our bounds, far under noise.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// A Chinese mobile number in E.164 form as an integer: 86 1xy NNNN NNNN, e.g. 86_138_1234_5678.
fn mobile_number(rng: &mut SplitMix64) -> u64 {
    let block = MOBILE_BLOCKS[rng.below(MOBILE_BLOCKS.len() as u64) as usize];
    let subscriber = rng.below(100_000_000);
    86 * 100_000_000_000 + block * 100_000_000 + subscriber
}

/// `count` numbers drawn like the members but guaranteed absent from them (`members` is sorted).
fn absent_numbers(members: &[u64], count: usize, rng: &mut SplitMix64) -> Vec<u64> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let candidate = mobile_number(rng);
        if members.binary_search(&candidate).is_err() {
            out.push(candidate);
        }
    }
    out
}

/// The keys for one size: the member set and the two lookup streams.
#[derive(Debug)]
struct Workload {
    /// Sorted, distinct (binary fuse filters require distinct keys).
    members: Vec<u64>,
    /// `QUERY_STREAM_LEN` members drawn at random, in random order.
    positive_stream: Vec<u64>,
    /// `QUERY_STREAM_LEN` numbers absent from `members`.
    negative_stream: Vec<u64>,
}

impl Workload {
    fn generate(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut members: Vec<u64> = Vec::with_capacity(n + n / 50 + 16);
        while members.len() < n {
            let missing = n - members.len();
            members.extend((0..missing + missing / 50 + 16).map(|_| mobile_number(&mut rng)));
            members.sort_unstable();
            members.dedup();
        }
        // Drop the surplus at random places, not from the top, so the kept set is still drawn
        // uniformly over the number blocks.
        shuffle(&mut members, &mut rng);
        members.truncate(n);
        members.sort_unstable();

        let positive_stream = if members.is_empty() {
            Vec::new()
        } else {
            (0..QUERY_STREAM_LEN)
                .map(|_| members[rng.below(members.len() as u64) as usize])
                .collect()
        };
        let negative_stream = absent_numbers(&members, QUERY_STREAM_LEN, &mut rng);
        Self {
            members,
            positive_stream,
            negative_stream,
        }
    }
}

/// Fisher–Yates shuffle.
fn shuffle(items: &mut [u64], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

// ---------------------------------------------------------------------------------------------
// The candidates behind one interface

/// What the gateway needs from a filter: one membership probe and its memory cost.
trait Probe {
    fn probe(&self, key: u64) -> bool;
    /// Bytes the structure occupies, headers and descriptors included (not the few words of the
    /// Rust struct itself).
    fn memory_bytes(&self) -> usize;
}

impl Probe for Bloom<u64> {
    fn probe(&self, key: u64) -> bool {
        self.check(&key)
    }
    fn memory_bytes(&self) -> usize {
        // The bytes API exposes the bitmap with its 45-byte header (version, length, k, seed).
        self.as_slice().len()
    }
}

impl Probe for BloomFilter {
    fn probe(&self, key: u64) -> bool {
        self.contains(&key)
    }
    fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(self.as_slice())
    }
}

impl Probe for BinaryFuse8 {
    fn probe(&self, key: u64) -> bool {
        self.contains(&key)
    }
    fn memory_bytes(&self) -> usize {
        self.fingerprints.len() + Self::DESCRIPTOR_LEN
    }
}

impl Probe for BinaryFuse8Ref<'_> {
    fn probe(&self, key: u64) -> bool {
        self.contains(&key)
    }
    fn memory_bytes(&self) -> usize {
        self.len() + BinaryFuse8::DESCRIPTOR_LEN
    }
}

impl Probe for BinaryFuse16 {
    fn probe(&self, key: u64) -> bool {
        self.contains(&key)
    }
    fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.fingerprints) + Self::DESCRIPTOR_LEN
    }
}

impl Probe for BinaryFuse16Ref<'_> {
    fn probe(&self, key: u64) -> bool {
        self.contains(&key)
    }
    fn memory_bytes(&self) -> usize {
        self.len() * 2 + BinaryFuse16::DESCRIPTOR_LEN
    }
}

/// Not a candidate: the cost of one random byte read from an array as large as a `BinaryFuse8`
/// (9 bits/key), with the cheapest possible hash. It shows how much of a lookup is the memory
/// access itself on this machine, which no filter can avoid.
#[derive(Debug)]
struct RandomByteRead {
    bytes: Vec<u8>,
}

impl RandomByteRead {
    fn new(len: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        // Random contents, so the compiler cannot know the answer of a read.
        let bytes = (0..len.max(1)).map(|_| rng.next_u64() as u8).collect();
        Self { bytes }
    }
}

impl Probe for RandomByteRead {
    fn probe(&self, key: u64) -> bool {
        let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Multiply-shift maps the hash into 0..len, so the index is always in bounds.
        let index = ((u128::from(hash) * self.bytes.len() as u128) >> 64) as usize;
        self.bytes.get(index) == Some(&0)
    }
    fn memory_bytes(&self) -> usize {
        self.bytes.len()
    }
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    BloomFpr04,
    BloomFpr1,
    FastbloomFpr04,
    Fastbloom9Bits,
    BinaryFuse8,
    BinaryFuse16,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::BloomFpr04,
        Variant::BloomFpr1,
        Variant::FastbloomFpr04,
        Variant::Fastbloom9Bits,
        Variant::BinaryFuse8,
        Variant::BinaryFuse16,
    ];

    /// Criterion benchmark id: plain characters, so the report directories keep the same names.
    fn id(self) -> &'static str {
        match self {
            Variant::BloomFpr04 => "bloomfilter_fpr0_4pct",
            Variant::BloomFpr1 => "bloomfilter_fpr1pct",
            Variant::FastbloomFpr04 => "fastbloom_fpr0_4pct",
            Variant::Fastbloom9Bits => "fastbloom_9bits",
            Variant::BinaryFuse8 => "xorf_binaryfuse8",
            Variant::BinaryFuse16 => "xorf_binaryfuse16",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::BloomFpr04 => "bloomfilter `Bloom`, sized for 0.4 %",
            Variant::BloomFpr1 => "bloomfilter `Bloom`, sized for 1 %",
            Variant::FastbloomFpr04 => "fastbloom `with_false_pos(0.004)`",
            Variant::Fastbloom9Bits => "fastbloom, 9 bits/key",
            Variant::BinaryFuse8 => "xorf `BinaryFuse8`",
            Variant::BinaryFuse16 => "xorf `BinaryFuse16`",
        }
    }
}

fn run_variant(
    variant: Variant,
    workload: &Workload,
    fpr_negatives: Option<&[u64]>,
    group: &mut BenchmarkGroup<'_, WallTime>,
) -> Result<Row, String> {
    let keys = &workload.members;
    let m = Measure {
        variant,
        workload,
        fpr_negatives,
    };
    match variant {
        Variant::BloomFpr04 => {
            let (filter, build) = timed(|| build_bloom(keys, 0.004))?;
            m.run(&filter, build, group, reload_bloom)
        }
        Variant::BloomFpr1 => {
            let (filter, build) = timed(|| build_bloom(keys, 0.01))?;
            m.run(&filter, build, group, reload_bloom)
        }
        Variant::FastbloomFpr04 => {
            let (filter, build) = timed(|| build_fastbloom_fpr(keys, 0.004))?;
            m.run(&filter, build, group, reload_fastbloom)
        }
        Variant::Fastbloom9Bits => {
            let (filter, build) = timed(|| build_fastbloom_bits(keys, 9))?;
            m.run(&filter, build, group, reload_fastbloom)
        }
        Variant::BinaryFuse8 => {
            let (filter, build) = timed(|| {
                BinaryFuse8::try_from(keys.as_slice()).map_err(|reason| {
                    format!("xorf BinaryFuse8 over {} keys: {reason}", keys.len())
                })
            })?;
            m.run(&filter, build, group, reload_fuse8)
        }
        Variant::BinaryFuse16 => {
            let (filter, build) = timed(|| {
                BinaryFuse16::try_from(keys.as_slice()).map_err(|reason| {
                    format!("xorf BinaryFuse16 over {} keys: {reason}", keys.len())
                })
            })?;
            m.run(&filter, build, group, reload_fuse16)
        }
    }
}

fn timed<T>(build: impl FnOnce() -> Result<T, String>) -> Result<(T, Duration), String> {
    let start = Instant::now();
    let value = build()?;
    Ok((value, start.elapsed()))
}

fn build_bloom(keys: &[u64], fpr: f64) -> Result<Bloom<u64>, String> {
    if keys.is_empty() {
        return Err("bloomfilter cannot size a filter for an empty key set".to_owned());
    }
    let mut filter =
        Bloom::new_for_fp_rate_with_seed(keys.len(), fpr, &BLOOM_SEED).map_err(|reason| {
            format!(
                "bloomfilter sized for {} keys at {fpr}: {reason}",
                keys.len()
            )
        })?;
    for key in keys {
        filter.set(key);
    }
    Ok(filter)
}

/// fastbloom's default hasher takes a random seed; a filter that is to be saved and loaded must
/// be built with a fixed one, which is what the snapshot would record.
fn build_fastbloom_fpr(keys: &[u64], fpr: f64) -> Result<BloomFilter, String> {
    if keys.is_empty() {
        return Err("fastbloom cannot size a filter for an empty key set".to_owned());
    }
    Ok(BloomFilter::with_false_pos(fpr)
        .seed(&FASTBLOOM_SEED)
        .items(keys.iter()))
}

fn build_fastbloom_bits(keys: &[u64], bits_per_key: usize) -> Result<BloomFilter, String> {
    if keys.is_empty() {
        return Err("fastbloom cannot size a filter for an empty key set".to_owned());
    }
    Ok(BloomFilter::with_num_bits(keys.len() * bits_per_key)
        .seed(&FASTBLOOM_SEED)
        .items(keys.iter()))
}

// ---------------------------------------------------------------------------------------------
// Serialise, load back, compare: can a snapshot carry the filter without a rebuild at load?

#[derive(Debug, Clone, Copy)]
struct Reload {
    snapshot_bytes: usize,
    load: Duration,
    /// The loaded filter reads the snapshot bytes in place instead of copying them.
    zero_copy: bool,
}

type ReloadFn<F> = fn(&F, &[u64]) -> Result<Reload, String>;

/// True when both filters give the same answer for every key in `keys`.
fn same_answers(original: &dyn Probe, loaded: &dyn Probe, keys: &[u64]) -> bool {
    keys.iter().all(|&k| original.probe(k) == loaded.probe(k))
}

fn reload_bloom(filter: &Bloom<u64>, check: &[u64]) -> Result<Reload, String> {
    let bytes = filter.to_bytes();
    let start = Instant::now();
    let loaded = Bloom::<u64>::from_slice(&bytes)
        .map_err(|reason| format!("bloomfilter refused its own bytes: {reason}"))?;
    let load = start.elapsed();
    if !same_answers(filter, &loaded, check) {
        return Err("bloomfilter answers differently after a bytes round trip".to_owned());
    }
    Ok(Reload {
        snapshot_bytes: bytes.len(),
        load,
        zero_copy: false,
    })
}

/// fastbloom exposes its bit words (`as_slice`) and rebuilds from them (`from_vec`); the number of
/// hashes and the hasher seed are not in the words, so a snapshot has to store them beside.
fn reload_fastbloom(filter: &BloomFilter, check: &[u64]) -> Result<Reload, String> {
    let mut bytes = Vec::with_capacity(filter.memory_bytes());
    for word in filter.as_slice() {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let num_hashes = filter.num_hashes();

    let start = Instant::now();
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(format!(
            "fastbloom snapshot of {} bytes is not a whole, non-empty number of 64-bit words",
            bytes.len()
        ));
    }
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    let loaded = BloomFilter::from_vec(words)
        .seed(&FASTBLOOM_SEED)
        .hashes(num_hashes);
    let load = start.elapsed();

    if !same_answers(filter, &loaded, check) {
        return Err("fastbloom answers differently after a bytes round trip".to_owned());
    }
    Ok(Reload {
        snapshot_bytes: bytes.len(),
        load,
        zero_copy: false,
    })
}

/// xorf's DMA form: a 20-byte descriptor plus the fingerprint bytes, read in place.
fn reload_fuse8(filter: &BinaryFuse8, check: &[u64]) -> Result<Reload, String> {
    let mut descriptor = [0u8; BinaryFuse8::DESCRIPTOR_LEN];
    filter.dma_copy_descriptor_to(&mut descriptor);
    let fingerprints = filter.dma_fingerprints().to_vec();

    let start = Instant::now();
    let loaded = BinaryFuse8Ref::from_dma(&descriptor, &fingerprints);
    let load = start.elapsed();

    if !same_answers(filter, &loaded, check) {
        return Err("xorf BinaryFuse8 answers differently after a DMA round trip".to_owned());
    }
    Ok(Reload {
        snapshot_bytes: descriptor.len() + fingerprints.len(),
        load,
        zero_copy: true,
    })
}

/// As `reload_fuse8`; `BinaryFuse16Ref::from_dma` panics on a fingerprint slice that is not
/// 2-byte aligned, so check first (a snapshot format must align this section).
fn reload_fuse16(filter: &BinaryFuse16, check: &[u64]) -> Result<Reload, String> {
    let mut descriptor = [0u8; BinaryFuse16::DESCRIPTOR_LEN];
    filter.dma_copy_descriptor_to(&mut descriptor);
    let fingerprints = filter.dma_fingerprints().to_vec();
    if fingerprints.as_ptr().align_offset(2) != 0 || fingerprints.len() % 2 != 0 {
        return Err("xorf BinaryFuse16 fingerprint bytes are not 2-byte aligned".to_owned());
    }

    let start = Instant::now();
    let loaded = BinaryFuse16Ref::from_dma(&descriptor, &fingerprints);
    let load = start.elapsed();

    if !same_answers(filter, &loaded, check) {
        return Err("xorf BinaryFuse16 answers differently after a DMA round trip".to_owned());
    }
    Ok(Reload {
        snapshot_bytes: descriptor.len() + fingerprints.len(),
        load,
        zero_copy: true,
    })
}

// ---------------------------------------------------------------------------------------------
// Measuring one candidate

#[derive(Debug, Clone, Copy)]
struct Measure<'a> {
    variant: Variant,
    workload: &'a Workload,
    /// `Some` in table mode only.
    fpr_negatives: Option<&'a [u64]>,
}

#[derive(Debug, Clone)]
struct Row {
    variant: Variant,
    keys: usize,
    build: Duration,
    memory_bytes: usize,
    /// (false positives, absent numbers probed), table mode only.
    false_positives: Option<(usize, usize)>,
    reload: Option<Reload>,
    negative_ns: Option<f64>,
    positive_ns: Option<f64>,
    /// 1-minute load average right after this filter's benchmarks.
    load_after: String,
}

impl Measure<'_> {
    fn run<F: Probe>(
        &self,
        filter: &F,
        build: Duration,
        group: &mut BenchmarkGroup<'_, WallTime>,
        reload: ReloadFn<F>,
    ) -> Result<Row, String> {
        let w = self.workload;
        // A filter may say "maybe" wrongly, never "no" wrongly: a false negative would let a
        // listed number through. Checked on every run, over all members in table mode.
        let must_contain = if self.fpr_negatives.is_some() {
            &w.members
        } else {
            &w.positive_stream
        };
        if let Some(missed) = must_contain.iter().find(|&&k| !filter.probe(k)) {
            return Err(format!(
                "{}: member {missed} is reported absent (a false negative)",
                self.variant.label()
            ));
        }

        let (false_positives, reloaded) = match self.fpr_negatives {
            Some(negatives) => {
                let hits = negatives.iter().filter(|&&k| filter.probe(k)).count();
                let mut check = w.positive_stream.clone();
                check.extend_from_slice(&w.negative_stream);
                (Some((hits, negatives.len())), Some(reload(filter, &check)?))
            }
            None => (None, None),
        };

        let id = self.variant.id();
        let negative_ns = bench_lookups(group, id, "negative", filter, &w.negative_stream);
        let positive_ns = bench_lookups(group, id, "positive", filter, &w.positive_stream);
        Ok(Row {
            variant: self.variant,
            keys: w.members.len(),
            build,
            memory_bytes: filter.memory_bytes(),
            false_positives,
            reload: reloaded,
            negative_ns,
            positive_ns,
            load_after: load_average()
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_owned(),
        })
    }
}

/// Benchmarks lookups over `stream` and returns the median ns per lookup over criterion's
/// measurement samples (`None` when criterion did not measure, e.g. filtered out or test mode).
///
/// `iter_custom` so that the cursor carries on through the stream from one sample to the next
/// instead of restarting on the same, by then cached, first keys; and so that each sample's
/// duration can be kept for the table. The median of duration / iterations over the last
/// `SAMPLE_SIZE` samples is the statistic criterion reports as "median" in `estimates.json`.
fn bench_lookups<F: Probe>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    kind: &str,
    filter: &F,
    stream: &[u64],
) -> Option<f64> {
    if stream.len() != QUERY_STREAM_LEN {
        return None;
    }
    let mut samples: Vec<(u64, Duration)> = Vec::new();
    let mut cursor = 0usize;
    group.bench_function(BenchmarkId::new(id, kind), |b| {
        b.iter_custom(|iters| {
            let (elapsed, next) = timed_pass(filter, stream, cursor, iters);
            cursor = next;
            samples.push((iters, elapsed));
            elapsed
        });
    });
    median_ns_per_lookup(&samples)
}

/// `iters` lookups starting at `start_at`, wrapping around the stream; returns the time and where
/// to resume. `stream.len()` is `QUERY_STREAM_LEN` (checked by the caller).
fn timed_pass<F: Probe>(
    filter: &F,
    stream: &[u64],
    start_at: usize,
    iters: u64,
) -> (Duration, usize) {
    let mut i = start_at;
    let mut hits = 0u64;
    let start = Instant::now();
    for _ in 0..iters {
        hits += u64::from(filter.probe(stream[i & QUERY_MASK]));
        i = i.wrapping_add(1);
    }
    let elapsed = start.elapsed();
    black_box(hits);
    (elapsed, i & QUERY_MASK)
}

fn median_ns_per_lookup(samples: &[(u64, Duration)]) -> Option<f64> {
    let mut per_lookup: Vec<f64> = samples
        .iter()
        .filter(|(iters, _)| *iters >= MIN_SAMPLE_ITERS)
        .map(|(iters, elapsed)| elapsed.as_nanos() as f64 / *iters as f64)
        .collect();
    let keep = per_lookup.len().min(SAMPLE_SIZE);
    let mut last = per_lookup.split_off(per_lookup.len() - keep);
    last.sort_by(f64::total_cmp);
    let mid = last.len() / 2;
    match last.len() {
        0 => None,
        len if len % 2 == 1 => last.get(mid).copied(),
        _ => Some((last.get(mid - 1)? + last.get(mid)?) / 2.0),
    }
}

// ---------------------------------------------------------------------------------------------
// The table

/// The 1, 5 and 15 minute load averages, as `uptime` shows them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn print_table(rows: &[Row], floors: &[(usize, Option<f64>)], loads: &[String]) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "Filter table: {} ({cpus} CPUs); load average (1, 5, 15 min) {}.",
        cpu_model(),
        loads.join("; ")
    );
    println!(
        "Lookups over shuffled streams of {QUERY_STREAM_LEN} keys; ns = median ns per lookup \
         over criterion's last {SAMPLE_SIZE} samples (rougher with --quick); FPR over \
         {FPR_NEGATIVES} absent numbers; load = 1-minute load after that row, this bench \
         itself counting about 1."
    );
    println!();
    println!(
        "| filter | keys | bits/key | FPR measured | build | load from bytes | neg. lookup ns | pos. lookup ns | load |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for row in rows {
        let bits_per_key = row.memory_bytes as f64 * 8.0 / row.keys as f64;
        let fpr = row.false_positives.map_or_else(
            || "–".to_owned(),
            |(hits, probed)| format!("{:.3} %", hits as f64 * 100.0 / probed as f64),
        );
        let reload = row.reload.map_or_else(
            || "–".to_owned(),
            |r| {
                format!(
                    "{} ({}, {:.1} MB)",
                    format_duration(r.load),
                    if r.zero_copy { "in place" } else { "copy" },
                    r.snapshot_bytes as f64 / 1e6
                )
            },
        );
        let ns = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |ns| format!("{ns:.1}"));
        println!(
            "| {} | {} | {bits_per_key:.2} | {fpr} | {} | {reload} | {} | {} | {} |",
            row.variant.label(),
            size_label(row.keys),
            format_duration(row.build),
            ns(row.negative_ns),
            ns(row.positive_ns),
            row.load_after,
        );
    }
    for (n, ns) in floors {
        if let Some(ns) = ns {
            println!(
                "Reference at {}: one random byte read from an array of 9 bits/key costs {ns:.1} ns \
                 in the same loop: the price of one random memory access here.",
                size_label(*n)
            );
        }
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs >= 1e-6 {
        format!("{:.1} µs", secs * 1e6)
    } else {
        format!("{} ns", d.as_nanos())
    }
}
