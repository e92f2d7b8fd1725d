//! The engine's behaviour end to end: sources → compiler → snapshot bytes → engine → verdicts.
#![allow(clippy::unwrap_used)]

mod common;
use common::{compiler, engine, NOW};
use dragnet_rules::formats::Format;
use dragnet_rules::{Action, Call, DnsAction, Engine, Error, Fact, Number, Scratch, Verdict};

const NUMBERS: &str = "\
number,kind,action,category,direction,ingress,expires,id
+8613800138000,number,block,impersonating-police,both,,,cn-0001
+86170,prefix,tag,virtual-operator,caller,,,
+861701234,prefix,warn,loans,caller,,,
01087654321,number,warn,loans,caller,,,
+861,prefix,block,spoofing,caller,international,,
+8675512345678,number,block,do-not-originate,caller,,,
+8613900001111,number,block,fraud,both,,2026-01-01,already-expired
+8613900002222,number,block,fraud,both,,2026-12-01,expires-next-week
";
const ALLOW: &str = "\
# dragnet: action=allow category=trusted
number,direction,ingress
+8613800138000,caller,bank-trunk
";
const DOMAINS: &str = "evil.example\n*.wild.example\n=exact.example\n";
const ADBLOCK: &str = "||parcel.test^\n@@||help.parcel.test^\n";
const URLS: &str = "shop.example/pay/confirm/\nhttp://203.0.113.7/login.php\n";
const KEYWORDS: &str = "# dragnet: action=warn\n安全账户\nverify your account\n";

fn full() -> Engine {
    engine(&[
        (Format::NumbersCsv, "numbers.csv", NUMBERS),
        (Format::NumbersCsv, "allow.csv", ALLOW),
        (Format::Domains, "scam.domains", DOMAINS),
        (Format::Adblock, "list.adblock", ADBLOCK),
        (Format::Urls, "phish.urls", URLS),
        (Format::Keywords, "fraud.keywords", KEYWORDS),
    ])
}

fn num(e: &Engine, s: &str) -> Number {
    e.parse_number(s).unwrap()
}

fn callee(e: &Engine, s: &str) -> Verdict {
    e.check_number(num(e, s), Fact::Callee, NOW)
}

fn caller(e: &Engine, s: &str) -> Verdict {
    e.check_number(num(e, s), Fact::Caller, NOW)
}

fn rule_id(e: &Engine, v: Verdict) -> String {
    e.rule_info(v.rule.unwrap()).unwrap().id
}

#[test]
fn exact_number_in_any_written_form() {
    let e = full();
    for form in [
        "+8613800138000",
        "008613800138000",
        "13800138000",
        "tel:+86-138-0013-8000",
        "sip:+8613800138000@sbc.example;user=phone",
    ] {
        let v = callee(&e, form);
        assert_eq!(v.action, Action::Block, "{form}");
        assert_eq!(v.fact, Fact::Callee);
        assert_eq!(rule_id(&e, v), "cn-0001");
        assert_eq!(e.category(v.category), "impersonating-police");
    }
    assert_eq!(callee(&e, "+8613800138001").action, Action::Allow);
    assert_eq!(callee(&e, "+8613800138001").rule, None);
}

#[test]
fn prefixes_longest_and_strongest_win() {
    let e = full();
    let v = caller(&e, "+8617055550000");
    assert_eq!(
        (v.action, e.category(v.category)),
        (Action::Tag, "virtual-operator")
    );
    // A longer prefix with a stronger action wins.
    assert_eq!(caller(&e, "+8617012345678").action, Action::Warn);
    // Direction: these are caller rules; the same number as callee is clean.
    assert_eq!(callee(&e, "+8617055550000").action, Action::Allow);
    // A number that merely shares digits elsewhere does not match.
    assert_eq!(caller(&e, "+8613170000000").action, Action::Allow);
    // National landline form with trunk prefix.
    assert_eq!(caller(&e, "+861087654321").action, Action::Warn);
}

#[test]
fn ingress_scoped_rule_for_spoofed_domestic_mobiles() {
    let e = full();
    let n = num(&e, "+8613912345678");
    let intl = Call {
        caller: Some(n),
        callee: None,
        trunk: "intl-gw-1",
        international: true,
    };
    let v = e.check_call(&intl, NOW);
    assert_eq!(
        (v.action, e.category(v.category)),
        (Action::Block, "spoofing")
    );
    let domestic = Call {
        international: false,
        ..intl
    };
    assert_eq!(e.check_call(&domestic, NOW).action, Action::Allow);
    // A trunk literally named "international" counts as the international ingress too.
    let named = Call {
        trunk: "international",
        international: false,
        ..intl
    };
    assert_eq!(e.check_call(&named, NOW).action, Action::Block);
}

#[test]
fn allowlist_is_direction_and_ingress_aware() {
    let e = full();
    let n = num(&e, "+8613800138000");
    let from_bank = Call {
        caller: Some(n),
        callee: None,
        trunk: "bank-trunk",
        international: false,
    };
    let v = e.check_call(&from_bank, NOW);
    assert_eq!(v.action, Action::Allow);
    assert!(v.rule.is_some(), "allowed by a rule, not by default");
    // The same number on another trunk is still blocked, and as callee the allow does not apply.
    let elsewhere = Call {
        trunk: "peer-7",
        ..from_bank
    };
    assert_eq!(e.check_call(&elsewhere, NOW).action, Action::Block);
    assert_eq!(callee(&e, "+8613800138000").action, Action::Block);
}

#[test]
fn do_not_originate_number_only_blocked_as_caller() {
    let e = full();
    assert_eq!(caller(&e, "+8675512345678").action, Action::Block);
    assert_eq!(callee(&e, "+8675512345678").action, Action::Allow);
}

#[test]
fn expiry() {
    let e = full();
    // Expired before compile time: dropped by the compiler.
    assert_eq!(callee(&e, "+8613900001111").action, Action::Allow);
    // Live now, not after its expiry.
    let n = num(&e, "+8613900002222");
    assert_eq!(e.check_number(n, Fact::Callee, NOW).action, Action::Block);
    let later = NOW + 30 * 86_400;
    assert_eq!(e.check_number(n, Fact::Callee, later).action, Action::Allow);
}

#[test]
fn domains_match_on_label_boundaries() {
    let e = full();
    let d = |s: &str| e.check_domain(s.as_bytes(), NOW).action;
    assert_eq!(d("evil.example"), Action::Block);
    assert_eq!(d("login.secure.evil.example"), Action::Block);
    assert_eq!(d("EVIL.Example."), Action::Block);
    assert_eq!(d("notevil.example"), Action::Allow);
    assert_eq!(d("evil.example.net"), Action::Allow);
    assert_eq!(d("evil.exampl"), Action::Allow);
    // *.wild.example: subdomains only.
    assert_eq!(d("a.wild.example"), Action::Block);
    assert_eq!(d("wild.example"), Action::Allow);
    // =exact.example: only the name itself.
    assert_eq!(d("exact.example"), Action::Block);
    assert_eq!(d("www.exact.example"), Action::Allow);
    // Adblock allow beats the parent's block.
    assert_eq!(d("x.parcel.test"), Action::Block);
    assert_eq!(d("help.parcel.test"), Action::Allow);
    assert_eq!(d("a.help.parcel.test"), Action::Allow);
    // Garbage is not a match and not a crash.
    assert_eq!(d("a..b"), Action::Allow);
    assert_eq!(d(""), Action::Allow);
}

#[test]
fn urls_by_safe_browsing_expressions() {
    let e = full();
    let mut s = Scratch::new();
    let mut u = |x: &str| e.check_url(x.as_bytes(), NOW, &mut s);
    let v = u("https://shop.example/pay/confirm/step2.php?order=1#frag");
    assert_eq!((v.action, v.fact), (Action::Block, Fact::Url));
    assert_eq!(
        u("http://SHOP.example/pay/./confirm//x").action,
        Action::Block
    );
    assert_eq!(u("http://shop.example/pay/").action, Action::Allow);
    assert_eq!(
        u("http://shop.example/pay/confirmation").action,
        Action::Allow
    );
    assert_eq!(
        u("http://www.shop.example/pay/confirm/").action,
        Action::Block
    );
    assert_eq!(u("http://203.0.113.7/login.php?x=1").action, Action::Block);
    assert_eq!(
        u("http://3405803783/login.php").action,
        Action::Block,
        "IP in decimal form"
    );
    // A URL on a blocked domain is blocked by the domain rule.
    let v = u("http://cdn.evil.example/a.js");
    assert_eq!((v.action, v.fact), (Action::Block, Fact::Domain));
}

#[test]
fn messages_keywords_and_urls() {
    let e = full();
    let mut s = Scratch::new();
    let v = e.check_message("您的账户存在风险，请将资金转入安全账户。", NOW, &mut s);
    assert_eq!((v.action, v.fact), (Action::Warn, Fact::Keyword));
    let v = e.check_message("Please verify the account today", NOW, &mut s);
    assert_eq!(v.action, Action::Allow, "other words are not the keyword");
    let v = e.check_message("Please VERIFY YOUR ACCOUNT today", NOW, &mut s);
    assert_eq!(v.action, Action::Warn);
    // A URL in the text: block beats the keyword's warn.
    let v = e.check_message("安全账户 点击http://evil.example/x领取", NOW, &mut s);
    assert_eq!((v.action, v.fact), (Action::Block, Fact::Domain));
    assert_eq!(
        e.check_message("明天见 see you at 8", NOW, &mut s),
        Verdict::ALLOW
    );
}

#[test]
fn protected_numbers_are_never_blocked() {
    let e = full();
    for n in ["110", "112", "12381", "96110", "+86110"] {
        let v = callee(&e, n);
        assert_eq!(v.action, Action::Allow, "{n}");
        assert!(v.protected, "{n}");
    }
    // PSAP call-back: a protected caller on a domestic trunk is let through…
    let psap = Call {
        caller: Some(num(&e, "110")),
        callee: Some(num(&e, "+8613800138000")),
        trunk: "",
        international: false,
    };
    assert!(e.check_call(&psap, NOW).protected);
    // …but "110" presented from an international trunk is screened like any caller.
    let spoof = Call {
        international: true,
        ..psap
    };
    assert!(!e.check_call(&spoof, NOW).protected);
}

fn refused(sources: &[(Format, &str, &str)]) -> String {
    match compiler(sources).finish() {
        Err(Error::Refused(p)) => p
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the rule set compiled"),
    }
}

#[test]
fn blocking_an_emergency_number_is_refused_with_its_line() {
    let m = refused(&[(
        Format::NumbersCsv,
        "bad.csv",
        "number\n+8613800138000\n110\n",
    )]);
    assert!(m.contains("bad.csv:3"), "{m}");
    assert!(m.contains("110") && m.contains("protected"), "{m}");
    let m = refused(&[(
        Format::NumbersCsv,
        "bad.csv",
        "number,kind\n+86110,prefix\n",
    )]);
    assert!(m.contains("bad.csv:2"), "{m}");
    let m = refused(&[(
        Format::NumbersCsv,
        "bad.csv",
        "number,action\n+86110,warn\n",
    )]);
    assert!(m.contains("bad.csv:2"), "{m}");
    // Tagging or allowing an emergency number is fine; so is a caller-only rule.
    compiler(&[(Format::NumbersCsv, "ok.csv", "number,action\n110,tag\n")])
        .finish()
        .unwrap();
    compiler(&[(
        Format::NumbersCsv,
        "ok.csv",
        "number,direction\n110,caller\n",
    )])
    .finish()
    .unwrap();
}

#[test]
fn public_suffixes_and_broad_rules_are_refused() {
    let m = refused(&[(Format::Domains, "bad.domains", "evil.example\ncom\n")]);
    assert!(
        m.contains("bad.domains:2") && m.contains("public suffix"),
        "{m}"
    );
    let m = refused(&[(Format::Domains, "bad.domains", "ok.example\n\nco.uk\n")]);
    assert!(m.contains("bad.domains:3"), "{m}");
    let m = refused(&[(Format::Adblock, "bad.adblock", "||github.io^\n")]);
    assert!(m.contains("bad.adblock:1"), "{m}");
    let m = refused(&[(Format::NumbersCsv, "bad.csv", "number,kind\n+861,prefix\n")]);
    assert!(
        m.contains("bad.csv:2") && m.contains("min_prefix_digits"),
        "{m}"
    );
    let m = refused(&[(Format::Keywords, "bad.keywords", "ok keyword\n钱\n")]);
    assert!(m.contains("bad.keywords:2"), "{m}");
}

#[test]
fn duplicates_and_conflicts_are_reported() {
    let (_, r) = compiler(&[
        (Format::Domains, "a.domains", "evil.example\nevil.example\n"),
        (Format::Adblock, "b.adblock", "@@||evil.example^\n"),
    ])
    .finish()
    .unwrap();
    assert_eq!(r.duplicates, 1);
    assert_eq!(r.conflicts, 1);
    let text: Vec<String> = r.findings.iter().map(|f| f.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("a.domains:2") && t.contains("duplicate")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("b.adblock:1") && t.contains("allow wins")),
        "{text:?}"
    );
}

#[test]
fn rpz_actions_survive_into_the_snapshot() {
    let zone = "$ORIGIN rpz.example.\n@ SOA ns. h. 5 1 1 1 1\nnx.example CNAME .\n*.nx.example CNAME .\nok.nx.example CNAME rpz-passthru.\nwg.example CNAME walled.garden.example.\n";
    let e = engine(&[(Format::Rpz, "carrier.rpz", zone)]);
    let v = e.check_domain(b"nx.example", NOW);
    assert_eq!(v.action, Action::Block);
    assert_eq!(
        e.rule_info(v.rule.unwrap()).unwrap().dns,
        Some(&DnsAction::NxDomain)
    );
    assert_eq!(e.check_domain(b"a.nx.example", NOW).action, Action::Block);
    assert_eq!(e.check_domain(b"ok.nx.example", NOW).action, Action::Allow);
    let v = e.check_domain(b"wg.example", NOW);
    assert_eq!(v.action, Action::Warn);
    assert_eq!(
        e.rule_info(v.rule.unwrap()).unwrap().dns,
        Some(&DnsAction::Redirect("walled.garden.example".into()))
    );
}

#[test]
fn filter_false_positives_never_decide() {
    // 20 000 blocked numbers; 200 000 clean ones. Some clean ones pass the filter (≈0.4 %);
    // every one must still be allowed after exact confirmation.
    let mut csv = String::from("number\n");
    for i in 0..20_000u64 {
        csv.push_str(&format!("+86139{:08}\n", i * 3));
    }
    let e = engine(&[(Format::NumbersCsv, "n.csv", &csv)]);
    let f = &e.tables().numbers.filter;
    let mut filter_hits = 0;
    for i in 0..200_000u64 {
        let n = num(&e, &format!("+86137{:08}", i));
        if f.may_contain(n.key()) {
            filter_hits += 1;
        }
        assert_eq!(e.check_number(n, Fact::Callee, NOW).action, Action::Allow);
    }
    assert!(
        filter_hits > 100,
        "the false-positive path was exercised ({filter_hits} hits)"
    );
    for i in (0..20_000u64).step_by(97) {
        assert_eq!(
            callee(&e, &format!("+86139{:08}", i * 3)).action,
            Action::Block
        );
    }
}
