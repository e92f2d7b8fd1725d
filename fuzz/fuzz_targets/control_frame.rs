//! Frames of the rules-server protocol (`dragnet_gateway::control::proto`) against hostile input.
//!
//! The input is a byte stream as a peer would send it. `read_frame` must answer every stream with
//! a frame or an error (never a panic, never a read past the limits, never a payload longer than
//! its prefix declared); a header that decodes must encode again to a frame that reads back as
//! the same message. Replayed over `fuzz/corpus/control_frame/` by the module's unit tests.
#![no_main]
use dragnet_gateway::control::proto::{decode_header, encode_head, read_frame, Limits};
use std::time::Duration;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header: 4096,
        max_payload: 1 << 16,
        frame_timeout: Duration::from_secs(5),
    };
    RT.with(|rt| {
        rt.block_on(async {
            let mut r = data;
            if let Ok((msg, payload)) = read_frame(&mut r, &limits, None).await {
                assert!(payload.len() as u64 <= limits.max_payload);
                assert!(payload.is_empty() || msg.carries_payload());
            }
        })
    });
    if let Ok(msg) = decode_header(data) {
        let head = encode_head(&msg, 0).expect("a decoded message encodes");
        let again = decode_header(&head[12..]).expect("an encoded message decodes");
        assert_eq!(again, msg, "decode → encode → decode is the identity");
    }
});
