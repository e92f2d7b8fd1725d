//! The active snapshot and its predecessors.
//!
//! Planes read the active engine with one lock-free load per request (`arc_swap`). A swap keeps
//! the last [`RECENT`] generations reachable by number, so that a verdict remembered for a SIP
//! transaction can still be explained (rule id, category) with the engine that made it, after a
//! reload. Hit counters live beside each generation (indexed by category, so counting is one
//! atomic add); when a generation is retired its counts are folded into totals keyed by category
//! *name*, so the exported counters never go down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use dragnet_rules::{Action, Engine, Verdict};

/// Planes that count hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plane {
    Sip = 0,
    Dns = 1,
    /// HTTP proxy, TLS SNI and QUIC Initial SNI.
    Web = 2,
    /// The check API (`/v1/check/*`): SBCs and SMS firewalls asking over HTTP.
    Check = 3,
}

impl Plane {
    pub const ALL: [Plane; 4] = [Plane::Sip, Plane::Dns, Plane::Web, Plane::Check];
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Sip => "sip",
            Plane::Dns => "dns",
            Plane::Web => "web",
            Plane::Check => "check",
        }
    }
}

/// Generations kept reachable after a swap.
pub const RECENT: usize = 8;

const ACTIONS: usize = 4;

fn action_ix(a: Action) -> usize {
    match a {
        Action::Allow => 0,
        Action::Tag => 1,
        Action::Warn => 2,
        Action::Block => 3,
    }
}

/// The action names in counter order.
pub const ACTION_NAMES: [&str; ACTIONS] = ["allow", "tag", "warn", "block"];

type Totals = HashMap<(Plane, usize, String), u64>;

/// One loaded snapshot with its generation number and hit counters.
#[derive(Debug)]
pub struct Active {
    pub generation: u32,
    pub engine: Engine,
    /// [plane][category * 4 + action]; one extra category row for "no rule".
    hits: Vec<Box<[AtomicU64]>>,
    categories: usize,
    totals: Arc<Mutex<Totals>>,
}

impl Active {
    /// Counts one decision. `category` is `None` when no rule decided.
    #[inline]
    pub fn count(&self, plane: Plane, action: Action, category: Option<u16>) {
        let row = category.map_or(self.categories, |c| usize::from(c).min(self.categories));
        if let Some(c) = self
            .hits
            .get(plane as usize)
            .and_then(|h| h.get(row * ACTIONS + action_ix(action)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn category_name(&self, row: usize) -> String {
        if row >= self.categories {
            "none".to_string()
        } else {
            let n = self.engine.category(row as u16);
            if n.is_empty() { "none" } else { n }.to_string()
        }
    }

    fn add_into(&self, into: &mut Totals) {
        for plane in Plane::ALL {
            let Some(h) = self.hits.get(plane as usize) else {
                continue;
            };
            for (i, c) in h.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    *into
                        .entry((plane, i % ACTIONS, self.category_name(i / ACTIONS)))
                        .or_insert(0) += n;
                }
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // Retired: keep its counts under the category names.
        let mut local = Totals::new();
        self.add_into(&mut local);
        if let Ok(mut t) = self.totals.lock() {
            for (k, v) in local {
                *t.entry(k).or_insert(0) += v;
            }
        }
    }
}

/// The active snapshot, the recent ones, and the hit totals.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Active>,
    recent: [ArcSwapOption<Active>; RECENT],
    next: AtomicU32,
    totals: Arc<Mutex<Totals>>,
    swaps: AtomicU64,
    loaded_at: AtomicU64,
    /// Where the active snapshot came from (for `/v1/status` and deltas); off the data path.
    provenance: ArcSwap<Provenance>,
    /// A candidate snapshot decided beside the active one (shadow mode), if any.
    shadow: ArcSwapOption<Shadow>,
    /// `shadow.is_some()`, readable with one relaxed load: the data path pays nothing more
    /// when no candidate runs.
    shadow_on: AtomicBool,
    /// Breaker, hit events and sampled hit logs (set once at start; absent in bare tests).
    hits: std::sync::OnceLock<crate::hits::Hits>,
}

/// Where the active snapshot came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// "embedded", "file", "last-good", "push", "server", "promote".
    pub origin: &'static str,
    /// SHA-256 of the snapshot's bytes, when it was loaded from bytes (not the embedded set).
    pub sha256: Option<[u8; 32]>,
    /// Key id of the signature that was verified, if any.
    pub key_id: Option<String>,
}

/// A candidate snapshot running in shadow: every decision of the active snapshot is also taken
/// with the candidate and the differences are counted, by plane, the two actions, and the
/// category the candidate decided with ("none" when the candidate matched no rule).
#[derive(Debug)]
pub struct Shadow {
    pub engine: Engine,
    /// The candidate's bytes and signature, kept so that `promote` installs exactly what was
    /// compared (verified and persisted like any other snapshot).
    pub bytes: Arc<Vec<u8>>,
    pub sig: Option<String>,
    pub loaded_at: u64,
    /// [plane][row * 16 + active * 4 + candidate]; one extra row for "no rule".
    diffs: Vec<Box<[AtomicU64]>>,
    /// Decisions compared, per plane.
    compared: [AtomicU64; 4],
    categories: usize,
}

/// One line of the shadow comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowDiff {
    pub plane: &'static str,
    pub active: &'static str,
    pub candidate: &'static str,
    pub category: String,
    pub count: u64,
}

impl Shadow {
    pub fn new(engine: Engine, bytes: Arc<Vec<u8>>, sig: Option<String>, now: u64) -> Shadow {
        let categories = engine.tables().meta.categories.len();
        let diffs = Plane::ALL
            .iter()
            .map(|_| {
                (0..(categories + 1) * ACTIONS * ACTIONS)
                    .map(|_| AtomicU64::new(0))
                    .collect::<Box<[AtomicU64]>>()
            })
            .collect();
        Shadow {
            engine,
            bytes,
            sig,
            loaded_at: now,
            diffs,
            compared: Default::default(),
            categories,
        }
    }

    /// Counts one comparison (no allocation, no lock: atomic adds).
    #[inline]
    pub fn count(&self, plane: Plane, active: Action, candidate: &Verdict) {
        if let Some(c) = self.compared.get(plane as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if candidate.action == active {
            return;
        }
        let row = candidate.rule.map_or(self.categories, |_| {
            usize::from(candidate.category).min(self.categories)
        });
        let ix =
            row * ACTIONS * ACTIONS + action_ix(active) * ACTIONS + action_ix(candidate.action);
        if let Some(c) = self.diffs.get(plane as usize).and_then(|d| d.get(ix)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions compared so far, per plane.
    pub fn compared(&self) -> Vec<(&'static str, u64)> {
        Plane::ALL
            .iter()
            .map(|p| {
                (
                    p.as_str(),
                    self.compared[*p as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The non-zero differences.
    pub fn differences(&self) -> Vec<ShadowDiff> {
        let mut v = Vec::new();
        for plane in Plane::ALL {
            let Some(d) = self.diffs.get(plane as usize) else {
                continue;
            };
            for (i, c) in d.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let row = i / (ACTIONS * ACTIONS);
                let category = if row >= self.categories {
                    "none".to_string()
                } else {
                    let n = self.engine.category(row as u16);
                    if n.is_empty() { "none" } else { n }.to_string()
                };
                v.push(ShadowDiff {
                    plane: plane.as_str(),
                    active: ACTION_NAMES[(i / ACTIONS) % ACTIONS],
                    candidate: ACTION_NAMES[i % ACTIONS],
                    category,
                    count: n,
                });
            }
        }
        v
    }
}

impl Store {
    pub fn new(engine: Engine, now: u64) -> Store {
        let totals = Arc::new(Mutex::new(Totals::new()));
        let first = Arc::new(Self::make(1, engine, &totals));
        let recent: [ArcSwapOption<Active>; RECENT] = Default::default();
        recent[1 % RECENT].store(Some(first.clone()));
        Store {
            current: ArcSwap::new(first),
            recent,
            next: AtomicU32::new(2),
            totals,
            swaps: AtomicU64::new(0),
            loaded_at: AtomicU64::new(now),
            provenance: ArcSwap::new(Arc::new(Provenance {
                origin: "embedded",
                ..Provenance::default()
            })),
            shadow: ArcSwapOption::empty(),
            shadow_on: AtomicBool::new(false),
            hits: std::sync::OnceLock::new(),
        }
    }

    /// Installs the breaker and hit events (once; a second call is ignored and returns false).
    pub fn set_hits(&self, h: crate::hits::Hits) -> bool {
        self.hits.set(h).is_ok()
    }

    /// The breaker and hit events, if installed.
    #[inline]
    pub fn hits(&self) -> Option<&crate::hits::Hits> {
        self.hits.get()
    }

    /// Where the active snapshot came from.
    pub fn provenance(&self) -> Arc<Provenance> {
        self.provenance.load_full()
    }

    /// Records where the active snapshot came from (after [`Store::swap`] or at start).
    pub fn set_provenance(&self, p: Provenance) {
        self.provenance.store(Arc::new(p));
    }

    /// Runs `candidate` in shadow (replacing any earlier candidate, whose counts are dropped).
    pub fn set_shadow(&self, candidate: Shadow) {
        self.shadow.store(Some(Arc::new(candidate)));
        self.shadow_on.store(true, Ordering::Release);
    }

    /// Stops shadow mode; returns the candidate that ran, if any.
    pub fn take_shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow_on.store(false, Ordering::Release);
        self.shadow.swap(None)
    }

    /// The candidate running in shadow, if any.
    pub fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow.load_full()
    }

    /// Shadow mode on the data path: when a candidate runs, decide with it too (`decide` is
    /// handed the candidate's engine) and count a difference from the active `action`. With no
    /// candidate this is one relaxed load.
    #[inline]
    pub fn shadow_compare(
        &self,
        plane: Plane,
        active: Action,
        decide: impl FnOnce(&Engine) -> Verdict,
    ) {
        if !self.shadow_on.load(Ordering::Relaxed) {
            return;
        }
        let g = self.shadow.load();
        if let Some(s) = g.as_ref() {
            let v = decide(&s.engine);
            s.count(plane, active, &v);
        }
    }

    fn make(generation: u32, engine: Engine, totals: &Arc<Mutex<Totals>>) -> Active {
        let categories = engine.tables().meta.categories.len();
        let hits = Plane::ALL
            .iter()
            .map(|_| {
                (0..(categories + 1) * ACTIONS)
                    .map(|_| AtomicU64::new(0))
                    .collect::<Box<[AtomicU64]>>()
            })
            .collect();
        Active {
            generation,
            engine,
            hits,
            categories,
            totals: totals.clone(),
        }
    }

    /// The active snapshot (lock-free).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Active>> {
        self.current.load()
    }

    /// The active snapshot as an owned handle.
    #[inline]
    pub fn load_full(&self) -> Arc<Active> {
        self.current.load_full()
    }

    /// A recent generation, if still kept.
    #[inline]
    pub fn generation(&self, generation: u32) -> Option<Arc<Active>> {
        let a = self.recent[generation as usize % RECENT].load_full()?;
        (a.generation == generation).then_some(a)
    }

    /// Makes `engine` active; returns its generation. The previous one stays reachable through
    /// [`Store::generation`] until [`RECENT`] newer swaps have happened.
    pub fn swap(&self, engine: Engine, now: u64) -> u32 {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let a = Arc::new(Self::make(generation, engine, &self.totals));
        self.recent[generation as usize % RECENT].store(Some(a.clone()));
        self.current.store(a);
        self.swaps.fetch_add(1, Ordering::Relaxed);
        self.loaded_at.store(now, Ordering::Relaxed);
        generation
    }

    /// Successful swaps since start.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// When the active snapshot was loaded (Unix seconds).
    pub fn loaded_at(&self) -> u64 {
        self.loaded_at.load(Ordering::Relaxed)
    }

    /// Hit counts so far: (plane, action, category name) → count, over every generation.
    pub fn hit_totals(&self) -> Vec<(Plane, &'static str, String, u64)> {
        let mut t = self.totals.lock().map(|t| t.clone()).unwrap_or_default();
        // Every generation still alive (the active one and those in the ring) adds its live
        // counts; each Active is counted once even if it sits in two places.
        let mut seen: Vec<u32> = Vec::new();
        let cur = self.current.load_full();
        let mut alive = vec![cur];
        for r in &self.recent {
            if let Some(a) = r.load_full() {
                alive.push(a);
            }
        }
        for a in alive {
            if seen.contains(&a.generation) {
                continue;
            }
            seen.push(a.generation);
            a.add_into(&mut t);
        }
        let mut v: Vec<_> = t
            .into_iter()
            .map(|((p, a, c), n)| (p, ACTION_NAMES[a], c, n))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dragnet_rules::compile::{source_options, CompileConfig};
    use dragnet_rules::snapshot::write_snapshot;
    use dragnet_rules::Compiler;

    fn engine(csv: &str) -> Engine {
        let mut c = Compiler::new(CompileConfig::default(), false);
        let opts = source_options(None, "n.csv", None, false).unwrap();
        c.add_text(csv, "n.csv", &opts).unwrap();
        let (t, _) = c.finish().unwrap();
        Engine::from_bytes(&write_snapshot(&t, 1, 0).unwrap()).unwrap()
    }

    #[test]
    fn counts_survive_retirement_and_generations_stay_reachable() {
        let csv = "number,action,category\n+8613800138000,block,fraud\n";
        let s = Store::new(engine(csv), 0);
        let a = s.load();
        let v = a.engine.check_number(
            a.engine.parse_number("+8613800138000").unwrap(),
            dragnet_rules::Fact::Callee,
            0,
        );
        a.count(Plane::Sip, v.action, v.rule.map(|_| v.category));
        drop(a);
        let g1 = s.load().generation;
        let mut last = 0;
        for _ in 0..RECENT + 2 {
            last = s.swap(engine(csv), 1);
        }
        assert!(s.generation(g1).is_none(), "an old generation is released");
        assert_eq!(s.generation(last).unwrap().generation, last);
        let t = s.hit_totals();
        assert!(
            t.iter()
                .any(|(p, a, c, n)| *p == Plane::Sip && *a == "block" && c == "fraud" && *n == 1),
            "{t:?}"
        );
    }
}
