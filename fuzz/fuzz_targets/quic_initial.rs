#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_gateway::web::quic::fuzz_initial(data);
});
