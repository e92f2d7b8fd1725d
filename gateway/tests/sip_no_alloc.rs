//! The SIP codec's parse path does not allocate: a counting global allocator around parse and
//! every accessor the screening path uses. (One test in this binary.)
// A global allocator is an `unsafe impl`: the one kind of place in the workspace that needs it.
#![allow(unsafe_code, clippy::unwrap_used)]

use dragnet_gateway::sip::{parse, parse_uri};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarding the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System.alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const INVITE: &[u8] = b"INVITE sip:+8613912345678@gw.example;user=phone SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKnashds8;received=2001:db8::9\r\n\
Max-Forwards: 70\r\n\
To: <sip:+8613912345678@gw.example;user=phone>\r\n\
f: \"Alice\" <sip:+8613800138000@sbc.example;user=phone>;tag=1928301774\r\n\
P-Asserted-Identity: <tel:+8613800138000>\r\n\
i: a84b4c76e66710@pc33.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
l: 0\r\n\r\n";

#[test]
fn parsing_and_fact_extraction_do_not_allocate() {
    let warm = parse(INVITE).unwrap();
    let _ = warm.top_via();
    COUNTING.store(true, Ordering::SeqCst);
    let m = parse(INVITE).unwrap();
    let via = m.top_via().unwrap();
    let from = m.from().unwrap();
    let to = m.to().unwrap();
    let pai = m.p_asserted_identity();
    let n_vias = m.vias().count();
    let cid = m.call_id();
    let cseq = m.cseq();
    let mf = m.max_forwards();
    let uri = parse_uri(b"sip:+8613912345678@gw.example;user=phone").unwrap();
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "the parse path allocated");
    assert_eq!(via.branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(from.tag, Some(&b"1928301774"[..]));
    assert!(to.tag.is_none());
    assert!(pai.is_some());
    assert_eq!(n_vias, 2);
    assert_eq!(cid, b"a84b4c76e66710@pc33.example");
    assert_eq!(cseq.0, 314_159);
    assert_eq!(mf, Some(70));
    assert!(matches!(uri, dragnet_gateway::sip::Uri::Sip(_)));
}
