//! Proof that the lookup path does not allocate: a counting global allocator around every check.
//! (One test in this binary, so no other test thread allocates while we count.)
// A global allocator is an `unsafe impl`: the one place in the workspace that needs it.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod common;
use common::{engine, NOW};
use dragnet_rules::formats::Format;
use dragnet_rules::{Action, Call, Fact, Scratch};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// The allocator only counts; the std System allocator does the work.
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
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (r, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn lookups_do_not_allocate() {
    let mut csv = String::from("number,kind,action,direction\n+86170,prefix,tag,caller\n");
    for i in 0..5_000u64 {
        csv.push_str(&format!("+86139{:08},number,block,both\n", i * 7));
    }
    let e = engine(&[
        (Format::NumbersCsv, "n.csv", &csv),
        (
            Format::Domains,
            "d.domains",
            "evil.example\n*.wild.example\n",
        ),
        (Format::Urls, "u.urls", "shop.example/pay/\n"),
        (
            Format::Keywords,
            "k.keywords",
            "安全账户\nverify your account\n",
        ),
    ]);
    let blocked = e.parse_number("+8613900000007").unwrap();
    let clean = e.parse_number("+8613700000001").unwrap();
    let tagged = e.parse_number("+8617000000001").unwrap();
    let mut scratch = Scratch::new();
    // Warm the scratch once (it may size itself on first use).
    e.check_url(b"http://warm.example/a/b?c=d", NOW, &mut scratch);
    e.check_message("warm up http://warm.example/x", NOW, &mut scratch);

    let (v, n) = count(|| {
        e.check_call(
            &Call {
                caller: Some(tagged),
                callee: Some(blocked),
                trunk: "peer-1",
                international: false,
            },
            NOW,
        )
    });
    assert_eq!(
        (v.action, n),
        (Action::Block, 0),
        "check_call (hit) allocated {n} times"
    );
    let (v, n) = count(|| e.check_number(clean, Fact::Callee, NOW));
    assert_eq!(
        (v.action, n),
        (Action::Allow, 0),
        "check_number (miss) allocated {n} times"
    );
    let (v, n) = count(|| e.check_number(tagged, Fact::Caller, NOW));
    assert_eq!(
        (v.action, n),
        (Action::Tag, 0),
        "prefix walk allocated {n} times"
    );
    let (v, n) = count(|| e.check_domain(b"Login.Secure.EVIL.example.", NOW));
    assert_eq!(
        (v.action, n),
        (Action::Block, 0),
        "check_domain (hit) allocated {n} times"
    );
    let (v, n) = count(|| e.check_domain(b"www.clean-site.example", NOW));
    assert_eq!(
        (v.action, n),
        (Action::Allow, 0),
        "check_domain (miss) allocated {n} times"
    );
    let (v, n) = count(|| {
        e.check_url(
            b"https://shop.example/pay/confirm?id=7#x",
            NOW,
            &mut scratch,
        )
    });
    assert_eq!(
        (v.action, n),
        (Action::Block, 0),
        "check_url allocated {n} times"
    );
    let (v, n) = count(|| {
        e.check_message(
            "您好，请转入安全账户 https://www.clean.example/a",
            NOW,
            &mut scratch,
        )
    });
    assert_eq!(
        (v.action, n),
        (Action::Warn, 0),
        "check_message allocated {n} times"
    );
    let (p, n) = count(|| e.parse_number("sip:+86-139-0000-0007@sbc.example;user=phone"));
    assert_eq!(
        (p, n),
        (Some(blocked), 0),
        "number parsing allocated {n} times"
    );
}
