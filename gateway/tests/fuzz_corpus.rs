//! Replays the SIP fuzz corpus (`fuzz/corpus/sip_parse/`) and any saved crash
//! (`fuzz/artifacts/sip_parse/`) through the fuzz entry point as an ordinary test.

use std::path::Path;

#[test]
fn sip_parse_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus/sip_parse"),
        root.join("artifacts/sip_parse"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            dragnet_gateway::sip::fuzz_parse(&std::fs::read(e.path()).unwrap_or_default());
            n += 1;
        }
    }
    assert!(n > 0, "the SIP corpus is empty");
}
