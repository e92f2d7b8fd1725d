//! Shared helpers for the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use dragnet_rules::compile::{source_options, CompileConfig, Compiler};
use dragnet_rules::formats::Format;
use dragnet_rules::snapshot::write_snapshot;
use dragnet_rules::Engine;

/// A fixed "now" (2026-11-23T00:00:00Z) so expiry tests do not depend on the clock.
pub const NOW: u64 = 1_795_392_000;

/// Compile `(format, file name, text)` sources into an engine.
pub fn engine(sources: &[(Format, &str, &str)]) -> Engine {
    Engine::from_bytes(&image(sources)).unwrap()
}

/// Compile into a snapshot image (version 7).
pub fn image(sources: &[(Format, &str, &str)]) -> Vec<u8> {
    let (t, _) = compiler(sources).finish().unwrap();
    write_snapshot(&t, 7, NOW).unwrap()
}

/// A compiler loaded with the sources (strict mode, default configuration, fixed now).
pub fn compiler(sources: &[(Format, &str, &str)]) -> Compiler {
    let cfg = CompileConfig {
        now: NOW,
        ..CompileConfig::default()
    };
    let mut c = Compiler::new(cfg, false);
    for (f, name, text) in sources {
        let opts = source_options(None, name, Some(*f), false).unwrap();
        c.add_text(text, name, &opts).unwrap();
    }
    c
}
