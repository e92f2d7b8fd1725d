//! The active snapshot and its predecessors.
//!
//! Planes read the active engine with one lock-free load per request (`arc_swap`). A swap keeps
//! the last [`RECENT`] generations reachable by number, so that a verdict remembered for a SIP
//! transaction can still be explained (rule id, category) with the engine that made it, after a
//! reload. Hit counters live beside each generation (indexed by category, so counting is one
//! atomic add); when a generation is retired its counts are folded into totals keyed by category
//! *name*, so the exported counters never go down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use dragnet_rules::{Action, Engine};

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
