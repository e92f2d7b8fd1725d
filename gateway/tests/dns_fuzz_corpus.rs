//! Replays the DNS fuzz corpus (`fuzz/corpus/dns_parse/`) and any saved crash
//! (`fuzz/artifacts/dns_parse/`) through the codec's fuzz entry point as ordinary tests: every
//! seed is parsed as a query and as a response, and whatever is answered must parse again.

use std::path::Path;

#[test]
fn dns_parse_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus/dns_parse"),
        root.join("artifacts/dns_parse"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            dragnet_gateway::dns::fuzz_dns(&std::fs::read(e.path()).unwrap_or_default());
            n += 1;
        }
    }
    assert!(n > 0, "the DNS corpus is empty");
}
