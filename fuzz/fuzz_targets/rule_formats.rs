#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_rules::fuzzing::rule_formats(data);
});
