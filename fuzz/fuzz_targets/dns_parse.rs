#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_gateway::dns::fuzz_dns(data);
});
