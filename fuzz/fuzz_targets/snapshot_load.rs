#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_rules::fuzzing::snapshot_load(data);
});
