//! Replays the SIP fuzz corpora (`fuzz/corpus/sip_parse/`, `fuzz/corpus/sip_plane/`) and any
//! saved crash (`fuzz/artifacts/…/`) through the fuzz entry points as ordinary tests. The plane
//! target also replays the codec's corpus: every torture message through the whole decision.

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

#[test]
fn sip_plane_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [
        root.join("corpus/sip_parse"),
        root.join("corpus/sip_plane"),
        root.join("artifacts/sip_plane"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            dragnet_gateway::sip_plane::fuzz_handle(&std::fs::read(e.path()).unwrap_or_default());
            n += 1;
        }
    }
    assert!(n > 0, "the SIP corpora are empty");
}
