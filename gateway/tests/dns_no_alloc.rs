//! The DNS codec's hot path does not allocate: a counting global allocator (counting per
//! thread, so the tests of this binary can run in parallel) around parse, name extraction,
//! cache key, synthesis into a warm buffer, error answers, the forwarder's response helpers and
//! the workers' packet cache once warm.
#![allow(clippy::unwrap_used)]

use dragnet_gateway::dns::{
    age_ttls, answer_ttl, cache_key, echo_question_case, error_response, parse_query,
    response_matches, set_id, synthesize, Synth, SynthOpts, CACHE_KEY_LEN,
};
use std::net::{Ipv4Addr, Ipv6Addr};

mod common;
use common::counting_alloc::allocations;

/// `www.Example.COM` A with RD and an EDNS(0) OPT (payload 1232, DO).
const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\
\x03www\x07Example\x03COM\x00\x00\x01\x00\x01\
\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00";

#[test]
fn parse_name_and_synthesis_do_not_allocate() {
    let v4 = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
    let v6 = [Ipv6Addr::LOCALHOST];
    let many = [Ipv4Addr::new(203, 0, 113, 1); 200];
    let opts = SynthOpts {
        zone: Some(b"example.com"),
        ..SynthOpts::default()
    };
    let answers = [
        Synth::NxDomain,
        Synth::NoData,
        Synth::Refused,
        Synth::ServFail,
        Synth::Truncated,
        Synth::A(&v4),
        Synth::A(&many),
        Synth::Aaaa(&v6),
        Synth::Cname(b"warning.example.net"),
    ];
    // Warm the output buffer with every kind once.
    let mut out = Vec::with_capacity(64);
    {
        let q = parse_query(QUERY).unwrap();
        for a in answers {
            synthesize(&q, a, &opts, &mut out);
        }
    }
    let ((name_len, key_len, matched), n) = allocations(|| {
        let q = parse_query(QUERY).unwrap();
        let mut name = [0u8; 256];
        let name_len = q.name_into(&mut name).len();
        let mut key = [0u8; CACHE_KEY_LEN];
        let key_len = cache_key(&q, &mut key).len();
        let mut matched = true;
        for a in answers {
            synthesize(&q, a, &opts, &mut out);
            matched &= response_matches(&q, &out);
            let _ = answer_ttl(&out);
            let _ = age_ttls(&mut out, 1);
            set_id(&mut out, 0x4242);
            set_id(&mut out, q.id());
            matched &= echo_question_case(&q, &mut out);
        }
        (name_len, key_len, matched)
    });
    assert_eq!(n, 0, "the DNS hot path allocated {n} times");
    assert_eq!(name_len, b"www.example.com".len());
    assert_eq!(key_len, 17 + 5);
    assert!(matched);
}

#[test]
fn error_answers_do_not_allocate() {
    let mut bad = QUERY.to_vec();
    bad[5] = 2; // QDCOUNT 2: FORMERR
    let mut out = Vec::with_capacity(512);
    let (sent, n) = allocations(|| {
        let e = parse_query(&bad).unwrap_err();
        error_response(&bad, e, &mut out)
    });
    assert_eq!(n, 0, "the error path allocated {n} times");
    assert!(sent);
    assert_eq!(out[3] & 0x0F, 1);
}

#[test]
fn a_warm_packet_cache_serves_and_refills_without_allocating() {
    use dragnet_gateway::dns_plane::cache::PacketCache;
    let q = parse_query(QUERY).unwrap();
    let mut key = [0u8; CACHE_KEY_LEN];
    let key = cache_key(&q, &mut key).to_vec();
    let mut answer = Vec::new();
    synthesize(
        &q,
        Synth::A(&[Ipv4Addr::new(192, 0, 2, 1)]),
        &SynthOpts::default(),
        &mut answer,
    );
    // One bucket: every insert below replaces a way whose buffer is already allocated.
    let mut cache = PacketCache::new(8, 99);
    let mut other = key.clone();
    for i in 0..8u8 {
        other[1] = b'a' + i;
        cache.insert(&other, &answer, 100, 60);
    }
    let (served, n) = allocations(|| {
        let mut served = 0;
        for round in 0..100u64 {
            cache.insert(&key, &answer, 100 + round, 60);
            let mut out = [0u8; 512];
            if let Some(hit) = cache.get(&key, 100 + round) {
                out[..hit.answer.len()].copy_from_slice(hit.answer);
                served += 1;
            }
            cache.remove(&key);
        }
        served
    });
    assert_eq!(n, 0, "the packet cache allocated {n} times");
    assert_eq!(served, 100);
}
