//! The block-rate circuit breaker (issue 8): when a plane suddenly blocks far more than it
//! usually does, the likeliest cause is a bad rule set (a too-wide pattern, a mistyped prefix),
//! not a fraud wave that multiplied overnight. Blocking then hurts more legitimate subscribers
//! than it protects, so new blocks are downgraded to tags (still screened, still reported,
//! still an event) and `dragnet_breaker_tripped{plane}` goes to 1 for the operator to look.
//!
//! Per plane, lock-free (atomics only; a plane calls [`Breaker::gate`] on its data path):
//! decisions and blocks are counted per window of `window_secs`. A closed window with at least
//! `min_decisions` teaches the baseline block rate (an exponentially weighted mean over about
//! `baseline_windows` windows). Once one window has been learned, the breaker trips when the
//! current window, having reached `min_decisions`, blocks at a rate above both `factor` ×
//! baseline and `min_block_rate`. It stays tripped for `cooldown_secs`, then lets blocks through
//! again; if the rate is still high it trips again as soon as the window has the volume. While
//! tripped, windows do not teach the baseline, so a bad rule set never becomes "normal".
//!
//! The caller hands in the time (`now_ms`), as the engine's callers do: no clock here, and the
//! tests drive one by hand.

use std::sync::atomic::{AtomicU64, Ordering};

use dragnet_rules::Action;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::store::Plane;

/// `[breaker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Off: [`Breaker::gate`] returns the action unchanged.
    pub enabled: bool,
    /// Length of a counting window (seconds).
    pub window_secs: u64,
    /// Trip when the block rate exceeds this many times the baseline (> 1).
    pub factor: f64,
    /// Decisions a window needs before its rate is judged or learned.
    pub min_decisions: u64,
    /// Never trip below this block rate (0..1), whatever the baseline: a plane that blocks
    /// nothing would otherwise trip on its first few blocks.
    pub min_block_rate: f64,
    /// Span of the baseline's moving average, in windows.
    pub baseline_windows: u32,
    /// How long a trip lasts (seconds).
    pub cooldown_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: false,
            window_secs: 60,
            factor: 5.0,
            min_decisions: 1000,
            min_block_rate: 0.05,
            baseline_windows: 10,
            cooldown_secs: 300,
        }
    }
}

fn err(key: &str, reason: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl BreakerConfig {
    /// Names the key and the reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_secs == 0 || self.window_secs > 86_400 {
            return Err(err("breaker.window_secs", "must be 1..=86400"));
        }
        if !self.factor.is_finite() || self.factor <= 1.0 {
            return Err(err(
                "breaker.factor",
                "must be a number above 1 (how many times the usual block rate trips it)",
            ));
        }
        if self.min_decisions == 0 {
            return Err(err("breaker.min_decisions", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.min_block_rate) {
            return Err(err("breaker.min_block_rate", "must be a fraction in 0..=1"));
        }
        if self.baseline_windows == 0 || self.baseline_windows > 10_000 {
            return Err(err("breaker.baseline_windows", "must be 1..=10000"));
        }
        if self.cooldown_secs == 0 {
            return Err(err("breaker.cooldown_secs", "must be at least 1"));
        }
        Ok(())
    }
}

/// `dragnet_breaker_tripped{plane}` and `dragnet_breaker_downgraded_total{plane}`.
#[derive(Debug, Clone, Default)]
pub struct BreakerMetrics {
    pub tripped: Family<Vec<(&'static str, &'static str)>, Gauge>,
    pub downgraded: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl BreakerMetrics {
    /// Registers under `breaker_` in `reg` (the `dragnet` sub-registry).
    pub fn register(reg: &mut Registry) -> BreakerMetrics {
        let m = BreakerMetrics::default();
        let r = reg.sub_registry_with_prefix("breaker");
        r.register(
            "tripped",
            "1 while the plane's block-rate breaker is tripped (blocks downgraded to tags)",
            m.tripped.clone(),
        );
        r.register(
            "downgraded",
            "Blocks downgraded to tags by the block-rate breaker",
            m.downgraded.clone(),
        );
        // Export 0 for every plane from the start, so alerts see the series.
        for p in Plane::ALL {
            let _ = m.tripped.get_or_create(&vec![("plane", p.as_str())]);
            let _ = m.downgraded.get_or_create(&vec![("plane", p.as_str())]);
        }
        m
    }
}

#[derive(Debug)]
struct PlaneState {
    window_start: AtomicU64,
    decisions: AtomicU64,
    blocks: AtomicU64,
    /// f64 bits of the baseline block rate.
    baseline: AtomicU64,
    /// Windows learned (saturating).
    learned: AtomicU64,
    /// Trip end (ms); 0 when not tripped.
    tripped_until: AtomicU64,
    tripped: Gauge,
    downgraded: Counter,
}

/// The breaker for every plane.
#[derive(Debug)]
pub struct Breaker {
    enabled: bool,
    window_ms: u64,
    factor: f64,
    min_decisions: u64,
    min_block_rate: f64,
    alpha: f64,
    cooldown_ms: u64,
    planes: [PlaneState; Plane::ALL.len()],
}

impl Breaker {
    /// `cfg` validated. Metric handles are resolved here, not on the data path.
    pub fn new(cfg: &BreakerConfig, metrics: &BreakerMetrics) -> Breaker {
        let state = |p: Plane| PlaneState {
            window_start: AtomicU64::new(u64::MAX),
            decisions: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            baseline: AtomicU64::new(0f64.to_bits()),
            learned: AtomicU64::new(0),
            tripped_until: AtomicU64::new(0),
            tripped: metrics
                .tripped
                .get_or_create(&vec![("plane", p.as_str())])
                .clone(),
            downgraded: metrics
                .downgraded
                .get_or_create(&vec![("plane", p.as_str())])
                .clone(),
        };
        Breaker {
            enabled: cfg.enabled,
            window_ms: cfg.window_secs.saturating_mul(1000).max(1),
            factor: cfg.factor,
            min_decisions: cfg.min_decisions.max(1),
            min_block_rate: cfg.min_block_rate,
            alpha: 2.0 / (f64::from(cfg.baseline_windows.max(1)) + 1.0),
            cooldown_ms: cfg.cooldown_secs.saturating_mul(1000),
            planes: Plane::ALL.map(state),
        }
    }

    fn is_spike(&self, s: &PlaneState, decisions: u64, blocks: u64) -> bool {
        if decisions < self.min_decisions || s.learned.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let rate = blocks as f64 / decisions as f64;
        let base = f64::from_bits(s.baseline.load(Ordering::Relaxed));
        rate >= self.min_block_rate && rate > self.factor * base
    }

    /// Counts one decision and returns the action to carry out: `action` itself, or `Tag`
    /// in place of a `Block` while the plane's breaker is tripped.
    #[inline]
    pub fn gate(&self, plane: Plane, action: Action, now_ms: u64) -> Action {
        if !self.enabled {
            return action;
        }
        let Some(s) = self.planes.get(plane as usize) else {
            return action;
        };
        let start = s.window_start.load(Ordering::Relaxed);
        if start == u64::MAX || now_ms >= start.saturating_add(self.window_ms) {
            // One thread wins the roll; the others count into the new window.
            if s.window_start
                .compare_exchange(start, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let d = s.decisions.swap(0, Ordering::AcqRel);
                let b = s.blocks.swap(0, Ordering::AcqRel);
                if start != u64::MAX {
                    self.learn(s, d, b, now_ms);
                }
            }
        }
        let until = s.tripped_until.load(Ordering::Relaxed);
        if until != 0
            && now_ms >= until
            && s.tripped_until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            s.tripped.set(0);
        }
        let d = s.decisions.fetch_add(1, Ordering::Relaxed) + 1;
        if action != Action::Block {
            return action;
        }
        let b = s.blocks.fetch_add(1, Ordering::Relaxed) + 1;
        if until != 0 && now_ms < until {
            s.downgraded.inc();
            return Action::Tag;
        }
        if self.is_spike(s, d, b) {
            let until = now_ms.saturating_add(self.cooldown_ms).max(1);
            if s.tripped_until
                .compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.tripped.set(1);
            }
            s.downgraded.inc();
            return Action::Tag;
        }
        action
    }

    /// A window closed: fold its rate into the baseline unless it is suspect.
    fn learn(&self, s: &PlaneState, decisions: u64, blocks: u64, now_ms: u64) {
        let until = s.tripped_until.load(Ordering::Relaxed);
        let tripped = until != 0 && now_ms < until;
        if tripped || decisions < self.min_decisions || self.is_spike(s, decisions, blocks) {
            return;
        }
        let rate = blocks as f64 / decisions as f64;
        let n = s.learned.fetch_add(1, Ordering::Relaxed);
        let old = f64::from_bits(s.baseline.load(Ordering::Relaxed));
        let new = if n == 0 {
            rate
        } else {
            old + self.alpha * (rate - old)
        };
        s.baseline.store(new.to_bits(), Ordering::Relaxed);
    }

    /// The plane's baseline block rate (for logs and tests).
    pub fn baseline(&self, plane: Plane) -> f64 {
        self.planes
            .get(plane as usize)
            .map_or(0.0, |s| f64::from_bits(s.baseline.load(Ordering::Relaxed)))
    }

    /// True while the plane is tripped at `now_ms`.
    pub fn is_tripped(&self, plane: Plane, now_ms: u64) -> bool {
        self.planes.get(plane as usize).is_some_and(|s| {
            let u = s.tripped_until.load(Ordering::Relaxed);
            u != 0 && now_ms < u
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            window_secs: 10,
            factor: 4.0,
            min_decisions: 100,
            min_block_rate: 0.05,
            baseline_windows: 5,
            cooldown_secs: 60,
        }
    }

    /// Feeds `n` decisions spread over `[t, t + span)`, every `every`-th one a block; returns
    /// how many blocks came back as blocks.
    fn feed(b: &Breaker, plane: Plane, t: u64, span: u64, n: u64, every: u64) -> u64 {
        let mut blocked = 0;
        for i in 0..n {
            let a = if i % every == 0 {
                Action::Block
            } else {
                Action::Allow
            };
            if b.gate(plane, a, t + i * span / n) == Action::Block {
                blocked += 1;
            }
        }
        blocked
    }

    #[test]
    fn trips_on_a_spike_downgrades_and_recovers() {
        let m = BreakerMetrics::default();
        let b = Breaker::new(&cfg(), &m);
        let mut t = 1_000_000;
        // Five windows at a 2 % block rate: learned, nothing downgraded.
        for _ in 0..5 {
            assert_eq!(feed(&b, Plane::Sip, t, 10_000, 1000, 50), 20);
            t += 10_000;
        }
        assert!((b.baseline(Plane::Sip) - 0.02).abs() < 1e-9);
        // A bad rule set: half of everything blocked. Trips once the window has the volume.
        let blocked = feed(&b, Plane::Sip, t, 10_000, 1000, 2);
        assert!(
            blocked < 60,
            "only the first ~100 decisions pass before it trips: {blocked}"
        );
        assert!(b.is_tripped(Plane::Sip, t + 9_999));
        let gauge = m.tripped.get_or_create(&vec![("plane", "sip")]).get();
        assert_eq!(gauge, 1);
        let down = m.downgraded.get_or_create(&vec![("plane", "sip")]).get();
        assert_eq!(down, 500 - blocked);
        // Other planes are untouched.
        assert_eq!(b.gate(Plane::Dns, Action::Block, t + 1), Action::Block);
        assert!(!b.is_tripped(Plane::Dns, t + 1));
        // Still tripped within the cool-down, whatever the rate.
        assert_eq!(b.gate(Plane::Sip, Action::Block, t + 59_000), Action::Tag);
        assert_eq!(b.gate(Plane::Sip, Action::Warn, t + 59_000), Action::Warn);
        // The spike did not become the baseline.
        assert!((b.baseline(Plane::Sip) - 0.02).abs() < 1e-9);
        // After the cool-down, with the rule set fixed, blocks pass again.
        t += 70_000;
        assert_eq!(b.gate(Plane::Sip, Action::Block, t), Action::Block);
        assert_eq!(m.tripped.get_or_create(&vec![("plane", "sip")]).get(), 0);
        assert_eq!(feed(&b, Plane::Sip, t + 1, 9_000, 1000, 50), 20);
    }

    #[test]
    fn re_trips_after_cool_down_if_still_bad() {
        let b = Breaker::new(&cfg(), &BreakerMetrics::default());
        let mut t = 0;
        for _ in 0..3 {
            feed(&b, Plane::Web, t, 10_000, 1000, 50);
            t += 10_000;
        }
        feed(&b, Plane::Web, t, 10_000, 1000, 2);
        assert!(b.is_tripped(Plane::Web, t + 10_000));
        t += 61_000;
        // Still bad: a new window gets the volume and trips again.
        let blocked = feed(&b, Plane::Web, t, 10_000, 1000, 2);
        assert!(blocked < 60);
        assert!(b.is_tripped(Plane::Web, t + 10_000));
    }

    #[test]
    fn needs_volume_a_baseline_and_a_floor() {
        let b = Breaker::new(&cfg(), &BreakerMetrics::default());
        // No baseline yet: even all-block traffic passes (nothing learned to compare with).
        assert_eq!(feed(&b, Plane::Dns, 0, 10_000, 200, 1), 200);
        // Learn a zero baseline, then a few blocks below min_decisions' worth pass.
        let b = Breaker::new(&cfg(), &BreakerMetrics::default());
        feed(&b, Plane::Dns, 0, 10_000, 1000, 1_000_000);
        assert_eq!(feed(&b, Plane::Dns, 10_000, 10_000, 99, 1), 99);
        // Rate above factor × 0 but below the 5 % floor: no trip.
        let b = Breaker::new(&cfg(), &BreakerMetrics::default());
        feed(&b, Plane::Dns, 0, 10_000, 1000, 1_000_000);
        assert_eq!(feed(&b, Plane::Dns, 10_000, 10_000, 1000, 25), 40);
        // Off: never.
        let off = Breaker::new(&BreakerConfig::default(), &BreakerMetrics::default());
        assert_eq!(feed(&off, Plane::Dns, 0, 10_000, 1000, 1), 1000);
    }

    #[test]
    fn config_errors_name_the_key() {
        BreakerConfig::default().validate().unwrap();
        for (c, key) in [
            (
                BreakerConfig {
                    factor: 1.0,
                    ..cfg()
                },
                "breaker.factor",
            ),
            (
                BreakerConfig {
                    factor: f64::NAN,
                    ..cfg()
                },
                "breaker.factor",
            ),
            (
                BreakerConfig {
                    window_secs: 0,
                    ..cfg()
                },
                "breaker.window_secs",
            ),
            (
                BreakerConfig {
                    min_block_rate: 1.5,
                    ..cfg()
                },
                "breaker.min_block_rate",
            ),
            (
                BreakerConfig {
                    min_decisions: 0,
                    ..cfg()
                },
                "breaker.min_decisions",
            ),
            (
                BreakerConfig {
                    cooldown_secs: 0,
                    ..cfg()
                },
                "breaker.cooldown_secs",
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().key, key);
        }
        let e = toml::from_str::<BreakerConfig>("facter = 2").unwrap_err();
        assert!(e.to_string().contains("facter"));
    }
}
