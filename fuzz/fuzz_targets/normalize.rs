#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_rules::fuzzing::normalize(data);
});
