//! Snapshot deltas (`dragnet_gateway::control::delta`) against hostile input.
//!
//! Input: `mode u8 | base length u16 LE | base | rest`. Mode 0 applies `rest` as a delta as it
//! is (the header checks); mode 1 puts `rest` behind a valid header for `base`, so that the ops
//! themselves are fuzzed past the base hash check (any success must rebuild `base` exactly);
//! mode 2 makes a delta from `base` to `rest` and checks it rebuilds `rest`. The same logic is
//! replayed over `fuzz/corpus/delta_apply/` by the module's unit tests.
#![no_main]
use dragnet_gateway::control::delta::{apply, make, HEADER_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let mode = data[0] % 3;
    let n = usize::from(u16::from_le_bytes([data[1], data[2]])).min(data.len() - 3);
    let (base, rest) = data[3..].split_at(n);
    match mode {
        0 => {
            let _ = apply(base, rest);
        }
        1 => {
            let mut d = make(base, base);
            d.truncate(HEADER_LEN);
            d.extend_from_slice(rest);
            if let Ok(out) = apply(base, &d) {
                assert_eq!(
                    out, base,
                    "a delta that passes every check rebuilds its target"
                );
            }
        }
        _ => match apply(base, &make(base, rest)) {
            Ok(out) => assert_eq!(out, rest, "make/apply round trip"),
            Err(e) => panic!("a delta from make is refused: {e}"),
        },
    }
});
