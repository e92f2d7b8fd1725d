#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_gateway::sip_plane::fuzz_handle(data);
});
