//! From a queued [`HitEvent`] to the JSON object the sinks carry, hashing what is private.
//!
//! Numbers (caller, callee) and the client address are personal data: by default each is
//! replaced by `"h:"` + the hex of the first 16 bytes of HMAC-SHA256 (RFC 2104, FIPS 180-4)
//! under the operator's key. A keyed hash, not a plain one: the space of phone numbers and
//! IPv4 addresses is small enough to enumerate, so an unkeyed SHA-256 would be reversible by
//! anyone. Holders of the key can still match a complaint to its events by hashing the number
//! the same way (`printf %s +8613912345678 | openssl dgst -sha256 -hmac "$(cat key)"`, first 32
//! hex digits). The address is hashed in its canonical text form (`192.0.2.1`, `2001:db8::1`).
//! Domains and URLs are what the rule matched, not the subscriber's identity, and stay plain.

use ring::hmac;
use serde::Serialize;

use super::{truncated, HitEvent};
use crate::events::config::EventsConfig;
use crate::store::ACTION_NAMES;

/// Bytes of the HMAC output kept (128 bits: collisions are not a concern at event volumes).
pub const HASH_BYTES: usize = 16;

/// Hashes (or passes through) the private fields.
#[derive(Clone)]
pub struct Hasher {
    key: Option<hmac::Key>,
    plain_caller: bool,
    plain_callee: bool,
    plain_source: bool,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("keyed", &self.key.is_some())
            .field("plain_caller", &self.plain_caller)
            .field("plain_callee", &self.plain_callee)
            .field("plain_source", &self.plain_source)
            .finish()
    }
}

impl Hasher {
    /// `key` is needed unless every private field is plain; without one such a field is
    /// written as `"h:"` alone (never in plain text): [`EventsConfig::validate`] refuses that
    /// configuration, so it only happens when a caller builds a hasher by hand.
    pub fn new(key: Option<&[u8]>, cfg: &EventsConfig) -> Hasher {
        Hasher {
            key: key.map(|k| hmac::Key::new(hmac::HMAC_SHA256, k)),
            plain_caller: cfg.is_plain("caller"),
            plain_callee: cfg.is_plain("callee"),
            plain_source: cfg.is_plain("source"),
        }
    }

    /// `"h:"` + 32 hex digits of the keyed hash of `v`.
    pub fn hash(&self, v: &[u8]) -> String {
        let mut out = String::with_capacity(2 + 2 * HASH_BYTES);
        out.push_str("h:");
        if let Some(k) = &self.key {
            let tag = hmac::sign(k, v);
            for b in tag.as_ref().iter().take(HASH_BYTES) {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
        out
    }

    fn field(&self, plain: bool, v: Option<&[u8]>) -> Option<String> {
        let v = v?;
        Some(if plain {
            String::from_utf8_lossy(v).into_owned()
        } else {
            self.hash(v)
        })
    }

    /// The wire form of one event. `start_ms` (the consumer's start time) and the event's
    /// sequence number make its `id`, unique across restarts of one gateway.
    pub fn record(&self, e: &HitEvent, start_ms: u64) -> Record {
        let source = e.source.map(|ip| ip.to_string());
        let mut cut = Vec::new();
        for (bit, name) in [
            (truncated::CATEGORY, "category"),
            (truncated::RULE, "rule"),
            (truncated::CALLER, "caller"),
            (truncated::CALLEE, "callee"),
            (truncated::DOMAIN, "domain"),
            (truncated::URL, "url"),
            (truncated::INGRESS, "ingress"),
        ] {
            if e.truncated & bit != 0 {
                cut.push(name);
            }
        }
        let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
        Record {
            id: format!("{start_ms:x}-{:x}", e.seq),
            ts_ms: e.ts_ms,
            time: rfc3339_ms(e.ts_ms),
            plane: e.plane.as_str(),
            action: ACTION_NAMES
                .get(e.action as usize)
                .copied()
                .unwrap_or("unknown"),
            category: text(e.category.get()).unwrap_or_default(),
            rule: text(e.rule.get()).unwrap_or_default(),
            source: self.field(self.plain_source, source.as_deref().map(str::as_bytes)),
            caller: self.field(self.plain_caller, e.caller.get()),
            callee: self.field(self.plain_callee, e.callee.get()),
            domain: text(e.domain.get()),
            url: text(e.url.get()),
            ingress: text(e.ingress.get()).unwrap_or_default(),
            truncated: cut,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// RFC 3339 §5.6 `date-time` in UTC with milliseconds. The civil date from days since the
/// epoch is the proleptic Gregorian calendar's era arithmetic (400-year cycles of 146097 days).
pub fn rfc3339_ms(ts_ms: u64) -> String {
    let ms = ts_ms % 1000;
    let secs = ts_ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Shift the epoch to 0000-03-01 so that leap days end a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// One event as the sinks write it (a JSON object; absent facts are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// `<start ms hex>-<seq hex>`: unique per event, the key to deduplicate on.
    pub id: String,
    /// Unix time in milliseconds when the plane decided.
    pub ts_ms: u64,
    /// The same instant as RFC 3339 UTC text (`2026-11-23T18:36:12.123Z`), for people.
    pub time: String,
    pub plane: &'static str,
    pub action: &'static str,
    pub category: String,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub ingress: String,
    /// Facts cut to fit their slot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::events::Facts;
    use crate::store::Plane;
    use dragnet_rules::Action;

    fn event() -> HitEvent {
        HitEvent::new(
            1_795_392_000_123,
            7,
            Plane::Sip,
            Action::Block,
            "fraud",
            "r42",
            Some("192.0.2.1".parse().unwrap()),
            Facts {
                caller: Some("+8613800138000"),
                callee: Some("+8613912345678"),
                ..Facts::default()
            },
            "udp",
        )
    }

    #[test]
    fn hashes_by_default() {
        let cfg = EventsConfig::default();
        let h = Hasher::new(Some(b"0123456789abcdef0123456789abcdef"), &cfg);
        let r = h.record(&event(), 0x10);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("8613800138000"), "{json}");
        assert!(!json.contains("8613912345678"), "{json}");
        assert!(!json.contains("192.0.2.1"), "{json}");
        let caller = r.caller.unwrap();
        assert_eq!(caller.len(), 2 + 32);
        assert!(caller.starts_with("h:"));
        // Keyed: HMAC-SHA256 of the number, first 16 bytes, checked against ring directly.
        let k = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let tag = hmac::sign(&k, b"+8613800138000");
        let hex: String = tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(caller, format!("h:{hex}"));
        // A different key gives a different hash.
        let h2 = Hasher::new(Some(b"another key, another hash......."), &cfg);
        assert_ne!(h2.record(&event(), 0).caller.unwrap(), caller);
        assert_eq!(r.id, "10-7");
        assert_eq!(r.action, "block");
        assert_eq!(r.plane, "sip");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_451_772_123), "2026-11-23T16:36:12.123Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn plain_only_where_listed() {
        let cfg = EventsConfig {
            plain: vec!["callee".into(), "source".into()],
            ..EventsConfig::default()
        };
        let r = Hasher::new(Some(b"0123456789abcdef"), &cfg).record(&event(), 0);
        assert_eq!(r.callee.as_deref(), Some("+8613912345678"));
        assert_eq!(r.source.as_deref(), Some("192.0.2.1"));
        assert!(r.caller.unwrap().starts_with("h:"));
        // No key and a hashed field: never plain.
        let r = Hasher::new(None, &EventsConfig::default()).record(&event(), 0);
        assert_eq!(r.caller.as_deref(), Some("h:"));
    }
}
