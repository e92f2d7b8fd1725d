//! The oracle's verdicts and the run report: what was expected, what the wire said, how fast.
//!
//! Every request ends as one [`Record`]: its observed outcome (read from the wire by the
//! driver), its lateness (actual send − scheduled send) and its latency measured from the
//! *scheduled* time, so a stalled target cannot hide its stall by slowing the sender down
//! (no coordinated omission). [`Report::build`] folds the records into per-plane counts, HDR
//! histograms (p50/p90/p99/p99.9/max, overall and per outcome), the confusion matrix
//! expected × observed, false positives and false negatives with the facts of each, and the
//! time series the HTML page plots. Its JSON is `report.json`.

use crate::workload::{Expected, Plane, Request, Workload};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the wire said, classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Observed {
    Blocked,
    Warned,
    Tagged,
    Allowed,
    /// No final answer in time (SIP Timer B, the scenario's timeout elsewhere).
    Timeout,
    /// Not sent (outstanding bound reached: `overflow`) or failed locally (connect refused…).
    Error,
    /// An answer that is none of the expected wire answers (e.g. SIP 503, DNS SERVFAIL, 502).
    Unexpected,
}

impl Observed {
    pub fn as_str(self) -> &'static str {
        match self {
            Observed::Blocked => "blocked",
            Observed::Warned => "warned",
            Observed::Tagged => "tagged",
            Observed::Allowed => "allowed",
            Observed::Timeout => "timeout",
            Observed::Error => "error",
            Observed::Unexpected => "unexpected",
        }
    }
}

/// How the oracle judges one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Correct,
    /// Treated more harshly than the truth says (a clean call blocked, a look-alike tagged…).
    FalsePositive,
    /// Treated more leniently (a listed number let through, a block answered with a tag…).
    FalseNegative,
    /// No verdict on the wire (timeout, error, unexpected answer).
    NoVerdict,
}

/// allow/protected < tag < warn < block: the gateway's own precedence.
fn severity_expected(e: Expected) -> u8 {
    match e {
        Expected::Allowed | Expected::Protected => 0,
        Expected::Tagged => 1,
        Expected::Warned => 2,
        Expected::Blocked => 3,
    }
}

pub fn judge(expected: Expected, observed: Observed) -> Judgement {
    let o = match observed {
        Observed::Allowed => 0,
        Observed::Tagged => 1,
        Observed::Warned => 2,
        Observed::Blocked => 3,
        Observed::Timeout | Observed::Error | Observed::Unexpected => return Judgement::NoVerdict,
    };
    let e = severity_expected(expected);
    match o.cmp(&e) {
        std::cmp::Ordering::Equal => Judgement::Correct,
        std::cmp::Ordering::Greater => Judgement::FalsePositive,
        std::cmp::Ordering::Less => Judgement::FalseNegative,
    }
}

/// The end of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub plane: Plane,
    pub seq: u32,
    /// Scheduled send, ns after the start.
    pub sched_ns: u64,
    /// Actual send − scheduled send, ns.
    pub lateness_ns: u64,
    /// Final answer − scheduled send, ns (`None`: no answer).
    pub latency_ns: Option<u64>,
    pub observed: Observed,
    /// What the wire said, in a few words (`SIP/2.0 608 Rejected`, `NXDOMAIN`, `timeout`…).
    pub wire: String,
    /// The request was not sent: the plane's outstanding bound was reached.
    pub overflow: bool,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// 1 µs to one hour at 3 significant digits: any latency a run can see.
fn histogram() -> Histogram<u64> {
    // The bounds are valid constants; `new_with_bounds` only fails on invalid ones.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: (h.mean() * 10.0).round() / 10.0,
    }
}

/// One false positive, false negative or error, with the request's facts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Example {
    pub seq: u32,
    pub facts: String,
    pub expected: Expected,
    pub observed: Observed,
    pub wire: String,
}

/// One time bucket of a plane.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Bucket start, seconds after the run's start.
    pub t_s: f64,
    /// Requests sent in the bucket (by actual send time).
    pub sent: u64,
    /// Final answers received in the bucket.
    pub answered: u64,
    /// Latency of the requests scheduled in the bucket (answered ones), µs.
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Everything about one plane.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlaneReport {
    pub plane: Plane,
    pub target: String,
    pub target_rate: f64,
    /// Requests in the schedule.
    pub scheduled: u64,
    /// Requests that left (scheduled − overflow).
    pub sent: u64,
    /// Requests with a final answer (any answer, expected or not).
    pub answered: u64,
    /// Sent per second over the schedule's span.
    pub sent_rate: f64,
    /// Answered per second over the span from the start to the last answer.
    pub achieved_rate: f64,
    pub timeouts: u64,
    /// Errors, overflow included.
    pub errors: u64,
    pub overflow: u64,
    pub unexpected: u64,
    pub correct: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    /// Actual − scheduled send time.
    pub lateness: Percentiles,
    /// From the scheduled send to the final answer, all answered requests.
    pub latency: Percentiles,
    /// The same, per observed outcome.
    pub latency_by_outcome: BTreeMap<Observed, Percentiles>,
    /// expected → observed → count.
    pub confusion: BTreeMap<Expected, BTreeMap<Observed, u64>>,
    pub false_positive_examples: Vec<Example>,
    pub false_negative_examples: Vec<Example>,
    pub error_examples: Vec<Example>,
    /// (quantile, µs) for the percentile curve.
    pub percentile_curve: Vec<(f64, u64)>,
    pub series: Vec<Bucket>,
}

/// Totals over the planes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub scheduled: u64,
    pub sent: u64,
    pub answered: u64,
    pub correct: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub overflow: u64,
    pub unexpected: u64,
}

/// The whole run (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub started_unix: u64,
    pub duration_s: f64,
    /// From the start to the last answer or timeout.
    pub elapsed_s: f64,
    pub totals: Totals,
    pub planes: Vec<PlaneReport>,
}

/// Examples kept per list.
pub const MAX_EXAMPLES: usize = 50;

const CURVE: [f64; 13] = [
    0.0, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 1.0,
];

/// What [`Report::build`] needs to know about the run besides its records.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub scenario: String,
    pub seed: u64,
    pub started_unix: u64,
    pub duration_s: f64,
    pub elapsed_s: f64,
    /// Per plane: (target description, target rate).
    pub targets: BTreeMap<Plane, (String, f64)>,
}

impl Report {
    /// Folds the records into the report. `records` may come in any order; each request of
    /// `workload` should have one (a missing one counts as an error).
    pub fn build(info: &RunInfo, workload: &Workload, records: &[Record]) -> Report {
        let mut planes = Vec::new();
        let mut totals = Totals::default();
        for plane in Plane::ALL {
            let reqs = workload.plane(plane);
            let (target, rate) = info
                .targets
                .get(&plane)
                .cloned()
                .unwrap_or_else(|| ("-".into(), 0.0));
            if reqs.is_empty() && rate == 0.0 {
                continue;
            }
            let mut by_seq: Vec<Option<&Record>> = vec![None; reqs.len()];
            for r in records.iter().filter(|r| r.plane == plane) {
                if let Some(slot) = by_seq.get_mut(r.seq as usize) {
                    *slot = Some(r);
                }
            }
            let pr = plane_report(plane, target, rate, info, workload, reqs, &by_seq);
            totals.scheduled += pr.scheduled;
            totals.sent += pr.sent;
            totals.answered += pr.answered;
            totals.correct += pr.correct;
            totals.false_positives += pr.false_positives;
            totals.false_negatives += pr.false_negatives;
            totals.timeouts += pr.timeouts;
            totals.errors += pr.errors;
            totals.overflow += pr.overflow;
            totals.unexpected += pr.unexpected;
            planes.push(pr);
        }
        Report {
            scenario: info.scenario.clone(),
            seed: info.seed,
            started_unix: info.started_unix,
            duration_s: info.duration_s,
            elapsed_s: info.elapsed_s,
            totals,
            planes,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for p in &self.planes {
            s.push_str(&format!(
                "{:<5} {:>7} sent, {:>9.1} {}/s (target {:.1}), p50 {:.2} ms p99 {:.2} ms, FP {} FN {}, timeouts {}, errors {}, unexpected {}\n",
                p.plane.as_str(),
                p.sent,
                p.achieved_rate,
                p.plane.unit(),
                p.target_rate,
                p.latency.p50_us as f64 / 1000.0,
                p.latency.p99_us as f64 / 1000.0,
                p.false_positives,
                p.false_negatives,
                p.timeouts,
                p.errors,
                p.unexpected
            ));
        }
        let t = &self.totals;
        s.push_str(&format!(
            "total {} scheduled, {} sent, {} answered, {} correct, {} false positives, {} false negatives",
            t.scheduled, t.sent, t.answered, t.correct, t.false_positives, t.false_negatives
        ));
        s
    }
}

fn plane_report(
    plane: Plane,
    target: String,
    rate: f64,
    info: &RunInfo,
    workload: &Workload,
    reqs: &[Request],
    by_seq: &[Option<&Record>],
) -> PlaneReport {
    let mut latency = histogram();
    let mut lateness = histogram();
    let mut by_outcome: BTreeMap<Observed, Histogram<u64>> = BTreeMap::new();
    let mut confusion: BTreeMap<Expected, BTreeMap<Observed, u64>> = BTreeMap::new();
    let (mut sent, mut answered, mut timeouts, mut errors, mut overflow, mut unexpected) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut correct, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    let (mut fp_ex, mut fn_ex, mut err_ex) = (Vec::new(), Vec::new(), Vec::new());
    let span_s = info.elapsed_s.max(info.duration_s).max(0.001);
    let width_s = (span_s / 100.0).max(0.1);
    let nb = (span_s / width_s).ceil() as usize + 1;
    let mut sent_b = vec![0u64; nb];
    let mut ans_b = vec![0u64; nb];
    let mut lat_b: Vec<Vec<u64>> = vec![Vec::new(); nb];
    let mut last_answer_ns = 0u64;
    let bucket = |ns: u64| ((ns as f64 / 1e9 / width_s) as usize).min(nb - 1);

    for (req, rec) in reqs.iter().zip(by_seq) {
        let (observed, wire, lat, late, over) = match rec {
            Some(r) => (
                r.observed,
                r.wire.clone(),
                r.latency_ns,
                r.lateness_ns,
                r.overflow,
            ),
            None => (Observed::Error, "no record".to_string(), None, 0, false),
        };
        *confusion
            .entry(req.expected)
            .or_default()
            .entry(observed)
            .or_default() += 1;
        if over {
            overflow += 1;
        } else if rec.is_some() {
            sent += 1;
            lateness.saturating_record((late / 1000).max(1));
            if let Some(b) = sent_b.get_mut(bucket(req.at_ns + late)) {
                *b += 1;
            }
        }
        if let Some(l) = lat {
            answered += 1;
            let us = (l / 1000).max(1);
            latency.saturating_record(us);
            by_outcome
                .entry(observed)
                .or_insert_with(histogram)
                .saturating_record(us);
            let done = req.at_ns + l;
            last_answer_ns = last_answer_ns.max(done);
            if let Some(b) = ans_b.get_mut(bucket(done)) {
                *b += 1;
            }
            if let Some(b) = lat_b.get_mut(bucket(req.at_ns)) {
                b.push(us);
            }
        }
        match observed {
            Observed::Timeout => timeouts += 1,
            Observed::Error => errors += 1,
            Observed::Unexpected => unexpected += 1,
            _ => {}
        }
        let example = || Example {
            seq: req.seq,
            facts: req.describe(&workload.trunks),
            expected: req.expected,
            observed,
            wire: wire.clone(),
        };
        match judge(req.expected, observed) {
            Judgement::Correct => correct += 1,
            Judgement::FalsePositive => {
                fp += 1;
                if fp_ex.len() < MAX_EXAMPLES {
                    fp_ex.push(example());
                }
            }
            Judgement::FalseNegative => {
                fneg += 1;
                if fn_ex.len() < MAX_EXAMPLES {
                    fn_ex.push(example());
                }
            }
            Judgement::NoVerdict => {
                if err_ex.len() < MAX_EXAMPLES {
                    err_ex.push(example());
                }
            }
        }
    }
    let sched_span_s = reqs
        .last()
        .map_or(0.0, |r| r.at_ns as f64 / 1e9)
        .max(info.duration_s)
        .max(1e-3);
    let answer_span_s = (last_answer_ns as f64 / 1e9).max(sched_span_s);
    let series = (0..nb)
        .map(|i| {
            let mut v = std::mem::take(&mut lat_b[i]);
            v.sort_unstable();
            let q = |p: f64| {
                if v.is_empty() {
                    0
                } else {
                    let k = ((v.len() as f64 - 1.0) * p).round() as usize;
                    v.get(k).copied().unwrap_or(0)
                }
            };
            Bucket {
                t_s: (i as f64 * width_s * 1000.0).round() / 1000.0,
                sent: sent_b.get(i).copied().unwrap_or(0),
                answered: ans_b.get(i).copied().unwrap_or(0),
                p50_us: q(0.5),
                p99_us: q(0.99),
                max_us: v.last().copied().unwrap_or(0),
            }
        })
        .collect();
    PlaneReport {
        plane,
        target,
        target_rate: rate,
        scheduled: reqs.len() as u64,
        sent,
        answered,
        sent_rate: round1(sent as f64 / sched_span_s),
        achieved_rate: round1(answered as f64 / answer_span_s),
        timeouts,
        errors,
        overflow,
        unexpected,
        correct,
        false_positives: fp,
        false_negatives: fneg,
        lateness: percentiles(&lateness),
        latency: percentiles(&latency),
        latency_by_outcome: by_outcome
            .iter()
            .map(|(k, h)| (*k, percentiles(h)))
            .collect(),
        confusion,
        false_positive_examples: fp_ex,
        false_negative_examples: fn_ex,
        error_examples: err_ex,
        percentile_curve: if latency.is_empty() {
            Vec::new()
        } else {
            CURVE
                .iter()
                .map(|&q| (q, latency.value_at_quantile(q)))
                .collect()
        },
        series,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::workload::Fact;

    #[test]
    fn the_oracle_orders_outcomes_by_severity() {
        assert_eq!(
            judge(Expected::Blocked, Observed::Blocked),
            Judgement::Correct
        );
        assert_eq!(
            judge(Expected::Protected, Observed::Allowed),
            Judgement::Correct
        );
        assert_eq!(
            judge(Expected::Allowed, Observed::Tagged),
            Judgement::FalsePositive
        );
        assert_eq!(
            judge(Expected::Protected, Observed::Blocked),
            Judgement::FalsePositive
        );
        assert_eq!(
            judge(Expected::Blocked, Observed::Tagged),
            Judgement::FalseNegative
        );
        assert_eq!(
            judge(Expected::Warned, Observed::Allowed),
            Judgement::FalseNegative
        );
        assert_eq!(
            judge(Expected::Blocked, Observed::Timeout),
            Judgement::NoVerdict
        );
    }

    fn req(seq: u32, expected: Expected) -> Request {
        Request {
            plane: Plane::Dns,
            seq,
            at_ns: u64::from(seq) * 10_000_000,
            expected,
            fact: Fact::Query {
                name: format!("n{seq}.example"),
                qtype: 1,
                tcp: false,
            },
        }
    }

    fn rec(seq: u32, observed: Observed, latency_us: Option<u64>, overflow: bool) -> Record {
        Record {
            plane: Plane::Dns,
            seq,
            sched_ns: u64::from(seq) * 10_000_000,
            lateness_ns: 5_000,
            latency_ns: latency_us.map(|u| u * 1000),
            observed,
            wire: "w".into(),
            overflow,
        }
    }

    #[test]
    fn totals_and_histograms_add_up() {
        let w = Workload {
            dns: (0..100)
                .map(|i| {
                    req(
                        i,
                        if i % 4 == 0 {
                            Expected::Blocked
                        } else {
                            Expected::Allowed
                        },
                    )
                })
                .collect(),
            ..Workload::default()
        };
        let mut records: Vec<Record> = (0..100)
            .map(|i| {
                let o = if i % 4 == 0 {
                    Observed::Blocked
                } else {
                    Observed::Allowed
                };
                rec(i, o, Some(1000 + u64::from(i)), false)
            })
            .collect();
        records[1] = rec(1, Observed::Blocked, Some(500), false); // a false positive
        records[4] = rec(4, Observed::Allowed, Some(500), false); // a false negative
        records[2] = rec(2, Observed::Timeout, None, false);
        records[3] = rec(3, Observed::Error, None, true); // overflow: never sent
        let mut info = RunInfo {
            duration_s: 1.0,
            elapsed_s: 1.2,
            ..RunInfo::default()
        };
        info.targets
            .insert(Plane::Dns, ("127.0.0.1:53".into(), 100.0));
        let r = Report::build(&info, &w, &records);
        let p = &r.planes[0];
        assert_eq!((p.scheduled, p.sent, p.answered), (100, 99, 98));
        assert_eq!((p.false_positives, p.false_negatives), (1, 1));
        assert_eq!((p.timeouts, p.errors, p.overflow), (1, 1, 1));
        assert_eq!(p.correct, 96);
        assert_eq!(p.latency.count, 98);
        assert_eq!(p.latency.max_us, 1099);
        assert_eq!(p.latency_by_outcome[&Observed::Blocked].count, 25);
        let cells: u64 = p.confusion.values().flat_map(|m| m.values()).sum();
        assert_eq!(cells, 100);
        assert_eq!(p.confusion[&Expected::Allowed][&Observed::Blocked], 1);
        assert_eq!(p.false_negative_examples[0].facts, "A n4.example over UDP");
        assert_eq!(r.totals.false_positives, 1);
        let sent: u64 = p.series.iter().map(|b| b.sent).sum();
        let answered: u64 = p.series.iter().map(|b| b.answered).sum();
        assert_eq!((sent, answered), (99, 98));
        // The JSON carries the same numbers.
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(j["totals"]["scheduled"], 100);
        assert_eq!(j["planes"][0]["confusion"]["allowed"]["blocked"], 1);
    }
}
