//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and every saved crash
//! (`fuzz/artifacts/<target>/`, when present) through the fuzz entry points, so CI keeps them
//! fixed without running a fuzzer.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let data = std::fs::read(entry.path()).unwrap_or_default();
            f(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn snapshot_load_corpus() {
    assert!(
        replay("snapshot_load", dragnet_rules::fuzzing::snapshot_load) > 0,
        "corpus is empty"
    );
}

#[test]
fn rule_formats_corpus() {
    assert!(
        replay("rule_formats", dragnet_rules::fuzzing::rule_formats) > 0,
        "corpus is empty"
    );
}

#[test]
fn normalize_corpus() {
    assert!(
        replay("normalize", dragnet_rules::fuzzing::normalize) > 0,
        "corpus is empty"
    );
}
