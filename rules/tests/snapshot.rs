//! Snapshot files: round trip, and refusal (never a panic) of truncated, corrupt and foreign files.
#![allow(clippy::unwrap_used)]

mod common;
use common::{image, NOW};
use dragnet_rules::formats::Format;
use dragnet_rules::snapshot::{read_snapshot, write_snapshot, HEADER_LEN};
use dragnet_rules::{Action, Engine, Fact, SnapshotError};

fn sample() -> Vec<u8> {
    image(&[
        (Format::NumbersCsv, "n.csv", "number,kind,action,direction\n+8613800138000,number,block,both\n+86170,prefix,tag,caller\n"),
        (Format::Domains, "d.domains", "evil.example\n"),
        (Format::Urls, "u.urls", "shop.example/pay/\n"),
        (Format::Keywords, "k.keywords", "安全账户\n"),
    ])
}

#[test]
fn round_trip_is_exact() {
    let img = sample();
    let (h, t) = read_snapshot(&img[..]).unwrap();
    assert_eq!(h.ruleset_version, 7);
    assert_eq!(h.created, NOW);
    assert_eq!(
        write_snapshot(&t, 7, NOW).unwrap(),
        img,
        "re-serialising gives the same bytes"
    );
    let e = Engine::from_bytes(&img).unwrap();
    let n = e.parse_number("+8613800138000").unwrap();
    assert_eq!(e.check_number(n, Fact::Callee, NOW).action, Action::Block);
    assert_eq!(e.check_domain(b"a.evil.example", NOW).action, Action::Block);
}

#[test]
fn every_truncation_is_refused() {
    let img = sample();
    for len in 0..img.len() {
        match Engine::from_bytes(&img[..len]) {
            Err(SnapshotError::Truncated { .. }) | Err(SnapshotError::Corrupt(_)) => {}
            Err(e) if len < 8 => assert_eq!(
                e,
                SnapshotError::Truncated {
                    what: "header",
                    expected: HEADER_LEN as u64,
                    found: len as u64
                }
            ),
            Err(e) => panic!("truncated at {len}: unexpected {e}"),
            Ok(_) => panic!("truncated at {len} of {} was accepted", img.len()),
        }
    }
}

#[test]
fn every_bit_flip_is_refused() {
    let img = sample();
    // Flip one bit in every byte (a different bit each time). Header fields that no check can
    // see do not exist: magic, version, lengths, hash and reserved are all verified, and the
    // signature area must be zero while the file is unsigned.
    for i in 0..img.len() {
        let mut bad = img.clone();
        bad[i] ^= 1 << (i % 8);
        let r = Engine::from_bytes(&bad);
        assert!(
            r.is_err(),
            "flip at byte {i} (of {}) was accepted",
            img.len()
        );
    }
}

#[test]
fn foreign_and_future_files_are_refused_clearly() {
    assert_eq!(
        Engine::from_bytes(b"hello world, this is not a snapshot").unwrap_err(),
        SnapshotError::Truncated {
            what: "header",
            expected: 160,
            found: 35
        }
    );
    let mut junk = vec![0u8; 4096];
    junk[..8].copy_from_slice(b"GIF89a\0\0");
    assert_eq!(
        Engine::from_bytes(&junk).unwrap_err(),
        SnapshotError::BadMagic
    );
    let mut future = sample();
    future[8] = 9;
    let e = Engine::from_bytes(&future).unwrap_err();
    assert_eq!(
        e,
        SnapshotError::UnsupportedFormat {
            found: 9,
            supported: 1
        }
    );
    assert!(e.to_string().contains("version 9"));
    let mut appended = sample();
    appended.extend_from_slice(b"garbage");
    assert!(matches!(
        Engine::from_bytes(&appended),
        Err(SnapshotError::Corrupt(_))
    ));
}

/// The snapshot bytes are a format: the filter layout (xorf's), the host-name hash, the section
/// order. If this changes, FORMAT_VERSION must change with it — gateways in the field read these
/// files. (Update the constant only together with a format version bump.)
#[test]
fn golden_image_is_stable() {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(sample());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, GOLDEN_SHA256,
        "snapshot bytes changed: bump FORMAT_VERSION"
    );
}

const GOLDEN_SHA256: &str = "109f22414d182b76dcbe6a3c3c091911e200fe0e7e6769385932a19b03f62965";
