//! Replays the web plane's fuzz corpora (`fuzz/corpus/tls_hello/`, `fuzz/corpus/quic_initial/`)
//! and any saved crash (`fuzz/artifacts/…/`) through the readers' fuzz entry points as ordinary
//! tests, so that CI keeps every input the fuzzer ever found fixed without running a fuzzer.

use std::path::Path;

/// Feeds every file of the target's corpus and artifacts to `entry`; returns how many.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            entry(&std::fs::read(e.path()).unwrap_or_default());
            n += 1;
        }
    }
    n
}

#[test]
fn tls_hello_corpus() {
    let n = replay("tls_hello", dragnet_gateway::web::tls::fuzz_hello);
    assert!(n > 0, "the tls_hello corpus is empty");
}

#[test]
fn quic_initial_corpus() {
    let n = replay("quic_initial", dragnet_gateway::web::quic::fuzz_initial);
    assert!(n > 0, "the quic_initial corpus is empty");
}
