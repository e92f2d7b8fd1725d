#![no_main]
// TLS ClientHello reader (gateway/src/web/tls.rs): arbitrary bytes as a TCP stream, cut in two
// at a place chosen by the first byte, fed whole, in two pieces and byte by byte, and parsed as
// a bare handshake message; `fuzz_hello` asserts the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dragnet_gateway::web::tls::fuzz_hello(data);
});
