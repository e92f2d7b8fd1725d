//! The check API: an SBC (Kamailio `http_client`, …) or an SMS firewall asks over HTTP whether a
//! call, a domain, a URL or a message should pass, and gets the engine's verdict as JSON.
//!
//! Endpoints (POST, `Content-Type: application/json`, RFC 8259):
//!
//! | path | body |
//! |---|---|
//! | `/v1/check/call` | `{"caller": "+8613800138000", "callee": "…", "ingress": "trunk"}` (caller and/or callee; ingress optional) |
//! | `/v1/check/domain` | `{"domain": "pay-secure.example"}` |
//! | `/v1/check/url` | `{"url": "http://…"}` |
//! | `/v1/check/message` | `{"text": "…"}` |
//!
//! Each also takes a JSON array of such objects (a batch, at most [`CheckLimits::max_batch`])
//! and answers an array in the same order; an element that cannot be checked gets
//! `{"error": "…"}` in its place and the others are answered.
//!
//! The answer object:
//! `{"action": "allow|tag|warn|block", "rule": "<rule id>"|null, "category": "<name>"|null,
//! "fact": "caller|callee|domain|url|keyword|none", "protected": bool, "snapshot": <rule-set
//! version>, "generation": <store generation>}`; the message endpoint adds `"matches"`, every
//! rule that matched (`fact`, rule `kind`, `pattern`, `rule`, `category`, `action`). The strings
//! are the engine's own (`Action::as_str`, `Fact::as_str`, `Kind::as_str`, the rule id that the
//! SIP plane's Reason header carries), so one rule reads the same in every plane.
//!
//! Errors are JSON too, `{"error": "…", "where": "line 1 column 12", "field": "caller"}`
//! (`where` and `field` when known), with the RFC 9110 status that says whose move it is:
//! 400 for a body that is not JSON or not the endpoint's shape (unknown or missing field), 413
//! for a body or batch over the limits, 415 for another content type, 422 for a value that
//! parses but cannot be checked (not a phone number, not a host name, empty text …).
//!
//! Cost model: one snapshot load per request (a batch is decided by one generation), one JSON
//! parse, one engine lookup per element (`check_*`; the message endpoint uses `explain_message`
//! to list its hits, which allocates), one JSON encode. Nothing here blocks or sleeps; the body
//! is bounded by [`CheckLimits::max_body`] before it is read into memory. Every verdict is
//! counted through [`Active::count`] as `plane="check"`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use dragnet_rules::domain::normalize_domain;
use dragnet_rules::url::canonicalize_to_string;
use dragnet_rules::{Call, Engine, Match, Number, Scratch, Verdict};

use crate::events::Facts;
use crate::hits::NumberText;
use crate::metrics::CheckMetrics;
use crate::store::{Active, Plane, Store};

/// The four questions the API answers (the `endpoint` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Call = 0,
    Domain = 1,
    Url = 2,
    Message = 3,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::Call,
        Endpoint::Domain,
        Endpoint::Url,
        Endpoint::Message,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Call => "call",
            Endpoint::Domain => "domain",
            Endpoint::Url => "url",
            Endpoint::Message => "message",
        }
    }

    /// The route it is served on.
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::Call => "/v1/check/call",
            Endpoint::Domain => "/v1/check/domain",
            Endpoint::Url => "/v1/check/url",
            Endpoint::Message => "/v1/check/message",
        }
    }
}

/// Bounds on what one request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimits {
    /// Bytes of request body; more is refused with 413 before it is read. Default 1 MiB.
    pub max_body: usize,
    /// Elements of a batch; more is refused with 413. Default 1000.
    pub max_batch: usize,
    /// Bytes of one message's text; more gets 422 for that message. Default 64 KiB.
    pub max_text: usize,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            max_body: 1 << 20,
            max_batch: 1000,
            max_text: 64 << 10,
        }
    }
}

/// The check API: the snapshot store, the limits, the counters and the trunk names it knows.
#[derive(Debug)]
pub struct CheckApi {
    store: Arc<Store>,
    limits: CheckLimits,
    metrics: CheckMetrics,
    /// Trunk name → the trunk is international (as `[[sip.ingress]]` says).
    trunks: Vec<(String, bool)>,
}

impl CheckApi {
    /// The breaker and hit events for one decision (see [`crate::hits`]).
    fn after(&self, a: &Active, v: &mut Verdict, facts: Facts<'_>, ingress: &str) {
        if let Some(h) = self.store.hits() {
            v.action = h.gate(Plane::Check, v.action);
            h.hit(Plane::Check, v, &a.engine, None, facts, ingress);
        }
    }

    pub fn new(store: Arc<Store>, limits: CheckLimits, metrics: CheckMetrics) -> Self {
        CheckApi {
            store,
            limits,
            metrics,
            trunks: Vec::new(),
        }
    }

    /// The trunk names an `ingress` may name besides the rule set's own ingress scopes, and
    /// whether each is international: pass `[[sip.ingress]]` and `sip.default_trunk`, so that
    /// the API and the SIP plane agree on what a trunk is.
    pub fn with_trunks(mut self, trunks: impl IntoIterator<Item = (String, bool)>) -> Self {
        self.trunks = trunks.into_iter().collect();
        self
    }

    /// The `/v1/check/*` routes; merge them into the admin router (or serve them alone).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(Endpoint::Call.path(), post(handle::<CallCheck>))
            .route(Endpoint::Domain.path(), post(handle::<DomainCheck>))
            .route(Endpoint::Url.path(), post(handle::<UrlCheck>))
            .route(Endpoint::Message.path(), post(handle::<MessageCheck>))
            .with_state(self)
    }

    /// One request, from headers and body to status and JSON bytes.
    async fn serve<T: Check>(&self, headers: &HeaderMap, body: Body) -> (StatusCode, Vec<u8>) {
        if let Err(p) = json_content_type(headers) {
            return p.into_reply();
        }
        let bytes = match read_body(body, headers, self.limits.max_body).await {
            Ok(b) => b,
            Err(p) => return p.into_reply(),
        };
        let t0 = Instant::now();
        let out = self.answer::<T>(&bytes, crate::unix_now());
        self.metrics
            .latency
            .observe_ns(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        out
    }

    /// The decision for one request body, sans IO: a single object or a batch.
    fn answer<T: Check>(&self, body: &[u8], now: u64) -> (StatusCode, Vec<u8>) {
        let a = self.store.load_full();
        let mut scratch = Scratch::new();
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Problem::bad_request(
                "the request body is empty: send one JSON object, or an array of them".into(),
            )
            .into_reply(),
            Some(b'[') => self.batch::<T>(body, &a, now, &mut scratch),
            Some(_) => match serde_json::from_slice::<T>(body) {
                Err(e) => Problem::from_json(&e).into_reply(),
                Ok(req) => match req.decide(self, &a, now, &mut scratch) {
                    Ok(ans) => encode(StatusCode::OK, &ans),
                    Err(p) => p.into_reply(),
                },
            },
        }
    }

    fn batch<T: Check>(
        &self,
        body: &[u8],
        a: &Active,
        now: u64,
        scratch: &mut Scratch,
    ) -> (StatusCode, Vec<u8>) {
        // RFC 8259 §2: any JSON value may be an element; each is typed on its own below so that
        // one bad element does not spoil the others.
        let elements: Vec<serde_json::Value> = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Problem::from_json(&e).into_reply(),
        };
        if elements.len() > self.limits.max_batch {
            return Problem {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                error: format!(
                    "the batch has {} checks, more than the {} allowed in one request \
                     (check.max_batch): split it",
                    elements.len(),
                    self.limits.max_batch
                ),
                location: None,
                field: None,
            }
            .into_reply();
        }
        let items: Vec<Item<'_>> = elements
            .iter()
            .map(|v| {
                let r = T::deserialize(v)
                    .map_err(|e| Problem::from_json(&e))
                    .and_then(|req| req.decide(self, a, now, scratch));
                match r {
                    Ok(ans) => Item::Answer(ans),
                    Err(p) => {
                        self.metrics.item_error(T::ENDPOINT);
                        Item::Error(p.body())
                    }
                }
            })
            .collect();
        encode(StatusCode::OK, &items)
    }

    /// The trunk an `ingress` names and whether it is international. An unknown name is refused
    /// rather than matching no scoped rule: a misspelt `international` would otherwise let
    /// every spoofed call through unnoticed.
    fn ingress<'s>(&self, name: Option<&'s str>, e: &Engine) -> Result<(&'s str, bool), Problem> {
        let name = name.map_or("", str::trim);
        if name.is_empty() {
            return Ok(("", false));
        }
        if let Some((_, international)) = self.trunks.iter().find(|(t, _)| t == name) {
            return Ok((name, *international));
        }
        // A trunk the rule set scopes rules to; `international` is international by name, as in
        // the SIP plane's `[[sip.ingress]]` default.
        if e.meta().scopes.iter().any(|s| s == name) {
            return Ok((name, name == "international"));
        }
        let mut known: Vec<&str> = self
            .trunks
            .iter()
            .map(|(t, _)| t.as_str())
            .chain(e.meta().scopes.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        Err(Problem::invalid(
            "ingress",
            format!(
                "ingress: no trunk is named '{}'; the known trunks are {} (from sip.ingress, \
                 sip.default_trunk and the rule set's ingress scopes)",
                excerpt(name),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }
}

async fn handle<T: Check>(
    State(api): State<Arc<CheckApi>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (status, json) = api.serve::<T>(&headers, body).await;
    api.metrics.request(T::ENDPOINT, status.as_u16());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

/// A request type of one endpoint.
trait Check: DeserializeOwned {
    const ENDPOINT: Endpoint;
    fn decide<'a>(
        &self,
        api: &CheckApi,
        a: &'a Active,
        now: u64,
        scratch: &mut Scratch,
    ) -> Result<Answer<'a>, Problem>;
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with \"caller\" and/or \"callee\" (and optionally \"ingress\")"
)]
struct CallCheck {
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    callee: Option<String>,
    /// The ingress trunk's name; empty or absent = unknown (no trunk-scoped rule applies).
    #[serde(default)]
    ingress: Option<String>,
}

impl Check for CallCheck {
    const ENDPOINT: Endpoint = Endpoint::Call;
    fn decide<'a>(
        &self,
        api: &CheckApi,
        a: &'a Active,
        now: u64,
        _: &mut Scratch,
    ) -> Result<Answer<'a>, Problem> {
        let e = &a.engine;
        let number = |field: &'static str, s: &Option<String>| match s {
            None => Ok(None),
            Some(s) => Number::parse(s, e.plan())
                .map(Some)
                .map_err(|err| Problem::invalid(field, format!("{field}: {err}"))),
        };
        let caller = number("caller", &self.caller)?;
        let callee = number("callee", &self.callee)?;
        if caller.is_none() && callee.is_none() {
            return Err(Problem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                ..Problem::bad_request(
                    "nothing to check: give \"caller\", \"callee\" or both (a withheld caller \
                     is left out, not sent as \"anonymous\")"
                        .into(),
                )
            });
        }
        let (trunk, international) = api.ingress(self.ingress.as_deref(), e)?;
        // The same facts the SIP plane hands the engine for an INVITE; protected numbers are
        // decided by the engine before any rule (never blocked).
        let call = Call {
            caller,
            callee,
            trunk,
            international,
        };
        let mut v = e.check_call(&call, now);
        api.store
            .shadow_compare(Plane::Check, v.action, |c| c.check_call(&call, now));
        let (caller, callee) = (
            call.caller.map(NumberText::new),
            call.callee.map(NumberText::new),
        );
        let facts = Facts {
            caller: caller.as_ref().map(NumberText::as_str),
            callee: callee.as_ref().map(NumberText::as_str),
            ..Facts::default()
        };
        api.after(a, &mut v, facts, trunk);
        Ok(Answer::counted(a, &v))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with \"domain\"")]
struct DomainCheck {
    domain: String,
}

impl Check for DomainCheck {
    const ENDPOINT: Endpoint = Endpoint::Domain;
    fn decide<'a>(
        &self,
        api: &CheckApi,
        a: &'a Active,
        now: u64,
        _: &mut Scratch,
    ) -> Result<Answer<'a>, Problem> {
        // The engine lets a name that is not a host name pass silently (no rule can match it);
        // a caller asking about one deserves to hear why instead (RFC 1035 §2.3.4, UTS #46).
        let host = normalize_domain(&self.domain)
            .map_err(|err| Problem::invalid("domain", format!("domain: {err}")))?;
        let mut v = a.engine.check_domain(host.as_bytes(), now);
        api.store.shadow_compare(Plane::Check, v.action, |e| {
            e.check_domain(host.as_bytes(), now)
        });
        let facts = Facts {
            domain: Some(host.as_bytes()),
            ..Facts::default()
        };
        api.after(a, &mut v, facts, "");
        Ok(Answer::counted(a, &v))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with \"url\"")]
struct UrlCheck {
    url: String,
}

impl Check for UrlCheck {
    const ENDPOINT: Endpoint = Endpoint::Url;
    fn decide<'a>(
        &self,
        api: &CheckApi,
        a: &'a Active,
        now: u64,
        scratch: &mut Scratch,
    ) -> Result<Answer<'a>, Problem> {
        // Safe Browsing "URLs and Hashing": a URL that cannot be canonicalised has no
        // expressions to look up; say so rather than answer allow.
        canonicalize_to_string(&self.url)
            .map_err(|err| Problem::invalid("url", format!("url: {err}")))?;
        let mut v = a.engine.check_url(self.url.as_bytes(), now, scratch);
        api.store.shadow_compare(Plane::Check, v.action, |e| {
            e.check_url(self.url.as_bytes(), now, scratch)
        });
        let facts = Facts {
            url: Some(self.url.as_bytes()),
            ..Facts::default()
        };
        api.after(a, &mut v, facts, "");
        Ok(Answer::counted(a, &v))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with \"text\"")]
struct MessageCheck {
    text: String,
}

impl Check for MessageCheck {
    const ENDPOINT: Endpoint = Endpoint::Message;
    fn decide<'a>(
        &self,
        api: &CheckApi,
        a: &'a Active,
        now: u64,
        scratch: &mut Scratch,
    ) -> Result<Answer<'a>, Problem> {
        if self.text.trim().is_empty() {
            return Err(Problem::invalid(
                "text",
                "text is empty: there is nothing to check".into(),
            ));
        }
        if self.text.len() > api.limits.max_text {
            return Err(Problem::invalid(
                "text",
                format!(
                    "text is {} bytes, more than the {} allowed per message (check.max_text)",
                    self.text.len(),
                    api.limits.max_text
                ),
            ));
        }
        let (mut v, matches) = a.engine.explain_message(&self.text, now);
        api.store.shadow_compare(Plane::Check, v.action, |e| {
            e.check_message(&self.text, now, scratch)
        });
        let facts = Facts::default();
        api.after(a, &mut v, facts, "");
        let mut ans = Answer::counted(a, &v);
        ans.matches = Some(hits(&a.engine, &matches));
        Ok(ans)
    }
}

/// One verdict as JSON.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    action: &'static str,
    rule: Option<String>,
    category: Option<&'a str>,
    fact: &'static str,
    protected: bool,
    snapshot: u64,
    generation: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<Vec<Hit<'a>>>,
}

impl<'a> Answer<'a> {
    /// The answer for `v`, counted once under `plane="check"`.
    fn counted(a: &'a Active, v: &Verdict) -> Answer<'a> {
        a.count(Plane::Check, v.action, v.rule.map(|_| v.category));
        let mut rule = None;
        let mut category = None;
        if let Some(r) = v.rule {
            // The id the SIP plane puts in its Reason header (own id, else `source:line`).
            let mut id = String::new();
            if let Some(c) = a.engine.write_rule_id(r, &mut id) {
                rule = Some(id);
                category = non_empty(c);
            }
        }
        Answer {
            action: v.action.as_str(),
            rule,
            category,
            fact: v.fact.as_str(),
            protected: v.protected,
            snapshot: a.engine.version(),
            generation: a.generation,
            matches: None,
        }
    }
}

/// One matching rule of a message.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Hit<'a> {
    fact: &'static str,
    kind: &'static str,
    pattern: String,
    rule: Option<String>,
    category: Option<&'a str>,
    action: &'static str,
}

/// The matches as JSON, each (rule, fact, pattern) once: a keyword inside a link is found both
/// in the text and in the URL, and a repeated keyword would otherwise be listed every time.
fn hits<'a>(e: &'a Engine, matches: &[Match]) -> Vec<Hit<'a>> {
    let mut seen: Vec<&Match> = Vec::with_capacity(matches.len());
    let mut out = Vec::with_capacity(matches.len());
    for m in matches {
        if seen
            .iter()
            .any(|s| s.rule == m.rule && s.fact == m.fact && s.pattern == m.pattern)
        {
            continue;
        }
        seen.push(m);
        let info = e.rule_info(m.rule);
        out.push(Hit {
            fact: m.fact.as_str(),
            kind: info.as_ref().map_or("", |i| i.kind.as_str()),
            pattern: m.pattern.clone(),
            category: info.as_ref().and_then(|i| non_empty(i.category)),
            rule: info.map(|i| i.id),
            action: m.action.as_str(),
        });
    }
    out
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// One element of a batch answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Answer(Answer<'a>),
    Error(ErrorBody),
}

/// Why a request (or one batch element) was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    status: StatusCode,
    error: String,
    /// Where in the body (serde_json's line and column), when known.
    location: Option<String>,
    /// The field whose value was refused, when one was.
    field: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl Problem {
    fn bad_request(error: String) -> Problem {
        Problem {
            status: StatusCode::BAD_REQUEST,
            error,
            location: None,
            field: None,
        }
    }

    /// RFC 9110 §15.5.21 (422): the JSON is fine, a value in it cannot be checked.
    fn invalid(field: &'static str, error: String) -> Problem {
        Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error,
            location: None,
            field: Some(field),
        }
    }

    fn too_large(error: String) -> Problem {
        Problem {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error,
            location: None,
            field: None,
        }
    }

    /// serde_json's message without its " at line L column C" tail, which goes in `where`.
    fn from_json(e: &serde_json::Error) -> Problem {
        let full = e.to_string();
        let tail = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&tail).unwrap_or(&full);
        let what = match e.classify() {
            serde_json::error::Category::Syntax => "the request body is not valid JSON",
            serde_json::error::Category::Eof => "the request body ends before its JSON does",
            serde_json::error::Category::Data => "the request is not what this endpoint takes",
            serde_json::error::Category::Io => "the request body could not be read",
        };
        Problem {
            location: (e.line() > 0).then(|| format!("line {} column {}", e.line(), e.column())),
            ..Problem::bad_request(format!("{what}: {msg}"))
        }
    }

    fn body(self) -> ErrorBody {
        ErrorBody {
            error: self.error,
            location: self.location,
            field: self.field,
        }
    }

    fn into_reply(self) -> (StatusCode, Vec<u8>) {
        let status = self.status;
        encode(status, &self.body())
    }
}

/// JSON bytes of `v`; encoding our own types cannot fail, but if it did the client gets a 500
/// with a fixed body rather than a panic.
fn encode<T: Serialize>(status: StatusCode, v: &T) -> (StatusCode, Vec<u8>) {
    match serde_json::to_vec(v) {
        Ok(mut b) => {
            b.push(b'\n');
            (status, b)
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            b"{\"error\":\"the answer could not be encoded as JSON\"}\n".to_vec(),
        ),
    }
}

/// At most 64 characters of client text, for error messages.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// RFC 9110 §15.5.16 (415): only `application/json` (RFC 8259 §11) is read. Parameters such as
/// `charset` are ignored: the registration defines none and JSON is UTF-8 (RFC 8259 §8.1).
fn json_content_type(h: &HeaderMap) -> Result<(), Problem> {
    let got = match h.get(header::CONTENT_TYPE).map(HeaderValue::to_str) {
        None => "none".to_string(),
        Some(Err(_)) => "a value that is not plain ASCII".to_string(),
        Some(Ok(v)) => {
            let essence = v.split(';').next().unwrap_or("").trim();
            if essence.eq_ignore_ascii_case("application/json") {
                return Ok(());
            }
            format!("'{}'", excerpt(v))
        }
    };
    Err(Problem {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        error: format!(
            "the request must have Content-Type: application/json (got {got}); with Kamailio \
             http_client, pass it in the headers argument"
        ),
        location: None,
        field: None,
    })
}

/// The body, at most `max` bytes (RFC 9110 §15.5.14, 413). A declared or hinted length over the
/// limit is refused before anything is read; a chunked body is cut off as soon as it passes it.
async fn read_body(mut body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let hinted = declared.unwrap_or(body.size_hint().lower());
    if hinted > max as u64 {
        return Err(Problem::too_large(format!(
            "the request body is {hinted} bytes, more than the {max}-byte limit (check.max_body)"
        )));
    }
    let mut buf = Vec::with_capacity(usize::try_from(hinted).unwrap_or(0).min(max));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            Problem::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if data.len() > max.saturating_sub(buf.len()) {
                return Err(Problem::too_large(format!(
                    "the request body is more than the {max}-byte limit (check.max_body)"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use axum::http::Request;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    struct Fixture {
        store: Arc<Store>,
        metrics: Metrics,
        api: Arc<CheckApi>,
        app: Router,
    }

    fn fixture(limits: CheckLimits) -> Fixture {
        let now = crate::unix_now();
        let store = Arc::new(Store::new(crate::examples::engine(now).unwrap(), now));
        let metrics = Metrics::new(store.clone());
        let api = Arc::new(
            CheckApi::new(store.clone(), limits, metrics.check.clone()).with_trunks([
                ("domestic".to_string(), false),
                ("intl-gw".to_string(), true),
            ]),
        );
        let app = api.clone().router();
        Fixture {
            store,
            metrics,
            api,
            app,
        }
    }

    async fn post_raw(
        app: &Router,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method("POST").uri(path);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {bytes:?}"));
        (status, v)
    }

    async fn post(app: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
        post_raw(app, path, Some("application/json"), body.to_string()).await
    }

    #[tokio::test]
    async fn call_blocked_and_allowed() {
        let f = fixture(CheckLimits::default());
        let (s, v) = post(
            &f.app,
            "/v1/check/call",
            &json!({"caller": "+8613800138000", "callee": "+8613912345678"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v,
            json!({"action": "block", "rule": "cn-fraud-0001", "category": "impersonating-police",
                   "fact": "caller", "protected": false, "snapshot": 1, "generation": 1})
        );
        let (s, v) = post(
            &f.app,
            "/v1/check/call",
            &json!({"caller": "+8613987654321", "callee": "+8613912345678"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            v,
            json!({"action": "allow", "rule": null, "category": null, "fact": "none",
                   "protected": false, "snapshot": 1, "generation": 1})
        );
        // National format through the snapshot's numbering plan, callee side only.
        let (_, v) = post(&f.app, "/v1/check/call", &json!({"callee": "13800138000"})).await;
        assert_eq!(
            (v["action"].as_str(), v["fact"].as_str()),
            (Some("block"), Some("callee"))
        );
    }

    #[tokio::test]
    async fn ingress_scopes_trunk_rules_and_unknown_trunks_are_refused() {
        let f = fixture(CheckLimits::default());
        let domestic_mobile = json!({"caller": "+8613912345678", "callee": "+8613800000001"});
        let (_, v) = post(&f.app, "/v1/check/call", &domestic_mobile).await;
        assert_eq!(v["action"], "allow");
        for trunk in ["international", "intl-gw"] {
            let mut req = domestic_mobile.clone();
            req["ingress"] = json!(trunk);
            let (s, v) = post(&f.app, "/v1/check/call", &req).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["rule"], "cn-spoof-mobile", "{trunk}: {v}");
            assert_eq!(v["category"], "spoofing");
        }
        let mut req = domestic_mobile.clone();
        req["ingress"] = json!("domestic");
        assert_eq!(
            post(&f.app, "/v1/check/call", &req).await.1["action"],
            "allow"
        );
        req["ingress"] = json!("internatinal");
        let (s, v) = post(&f.app, "/v1/check/call", &req).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["field"], "ingress");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("'internatinal'") && e.contains("international"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn protected_numbers_pass_whatever_the_rules_say() {
        let f = fixture(CheckLimits::default());
        // A listed fraud caller dialling the police: the call goes through.
        let (s, v) = post(
            &f.app,
            "/v1/check/call",
            &json!({"caller": "+8613800138000", "callee": "110"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            v,
            json!({"action": "allow", "rule": null, "category": null, "fact": "callee",
                   "protected": true, "snapshot": 1, "generation": 1})
        );
        // A PSAP call-back (protected caller) to a listed number.
        let (_, v) = post(
            &f.app,
            "/v1/check/call",
            &json!({"caller": "+86110", "callee": "+8613800138000"}),
        )
        .await;
        assert_eq!(
            (v["action"].as_str(), v["protected"].as_bool()),
            (Some("allow"), Some(true))
        );
        assert_eq!(v["fact"], "caller");
    }

    #[tokio::test]
    async fn domain_blocked_allowed_and_invalid() {
        let f = fixture(CheckLimits::default());
        let (s, v) = post(
            &f.app,
            "/v1/check/domain",
            &json!({"domain": "Login.Evil.Example."}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["action"], "block");
        assert_eq!(v["fact"], "domain");
        assert_eq!(v["category"], "phishing");
        assert!(
            v["rule"].as_str().unwrap().starts_with("scam-domains:"),
            "{v}"
        );
        let (_, v) = post(
            &f.app,
            "/v1/check/domain",
            &json!({"domain": "notevil.example"}),
        )
        .await;
        assert_eq!(
            (v["action"].as_str(), v["rule"].is_null()),
            (Some("allow"), true)
        );
        let (s, v) = post(
            &f.app,
            "/v1/check/domain",
            &json!({"domain": "a..b.example"}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["field"], "domain");
        assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
    }

    #[tokio::test]
    async fn url_blocked_allowed_and_invalid() {
        let f = fixture(CheckLimits::default());
        let (s, v) = post(
            &f.app,
            "/v1/check/url",
            &json!({"url": "https://shop.example/pay/confirm/step2"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            (v["action"].as_str(), v["fact"].as_str()),
            (Some("block"), Some("url"))
        );
        assert!(
            v["rule"].as_str().unwrap().starts_with("phishing-urls:"),
            "{v}"
        );
        let (_, v) = post(
            &f.app,
            "/v1/check/url",
            &json!({"url": "https://shop.example/about"}),
        )
        .await;
        assert_eq!(v["action"], "allow");
        let (s, v) = post(
            &f.app,
            "/v1/check/url",
            &json!({"url": "ftp://shop.example/x"}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["field"], "url");
    }

    #[tokio::test]
    async fn message_lists_every_url_and_keyword_hit() {
        let f = fixture(CheckLimits::default());
        let text = "您的账户存在风险，请转入安全账户 https://shop.example/pay/confirm/step2 \
                    and https://docs.example/share/phish.html 安全账户";
        let (s, v) = post(&f.app, "/v1/check/message", &json!({"text": text})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["action"], "block");
        assert_eq!(v["fact"], "url");
        let m = v["matches"].as_array().unwrap();
        let urls: Vec<&Value> = m.iter().filter(|h| h["fact"] == "url").collect();
        assert_eq!(urls.len(), 2, "{v}");
        assert!(urls
            .iter()
            .any(|h| h["pattern"] == "shop.example/pay/confirm/"));
        assert!(urls
            .iter()
            .any(|h| h["pattern"] == "docs.example/share/phish.html"));
        for h in &urls {
            assert_eq!(
                (h["kind"].as_str(), h["action"].as_str()),
                (Some("url"), Some("block"))
            );
            assert_eq!(h["category"], "phishing");
            assert!(h["rule"].as_str().unwrap().starts_with("phishing-urls:"));
        }
        let kw: Vec<&Value> = m.iter().filter(|h| h["fact"] == "keyword").collect();
        // The keyword occurs twice in the text: listed once.
        assert_eq!(kw.len(), 1, "{v}");
        assert_eq!(kw[0]["pattern"], "安全账户");
        assert_eq!(
            (
                kw[0]["action"].as_str(),
                kw[0]["kind"].as_str(),
                kw[0]["category"].as_str()
            ),
            (Some("warn"), Some("keyword"), Some("fraud"))
        );
        // Allowed: no rule, an empty list.
        let (_, v) = post(
            &f.app,
            "/v1/check/message",
            &json!({"text": "see you at 8"}),
        )
        .await;
        assert_eq!(v["action"], "allow");
        assert_eq!(v["matches"], json!([]));
    }

    #[tokio::test]
    async fn message_text_must_be_present_and_bounded() {
        let f = fixture(CheckLimits {
            max_text: 16,
            ..CheckLimits::default()
        });
        for text in ["", "  \n "] {
            let (s, v) = post(&f.app, "/v1/check/message", &json!({"text": text})).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(v["field"], "text");
            assert!(v["error"].as_str().unwrap().contains("empty"));
        }
        let (s, v) = post(
            &f.app,
            "/v1/check/message",
            &json!({"text": "x".repeat(17)}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["error"].as_str().unwrap().contains("17 bytes"), "{v}");
    }

    #[tokio::test]
    async fn batch_answers_in_order_and_isolates_bad_elements() {
        let f = fixture(CheckLimits::default());
        let (s, v) = post(
            &f.app,
            "/v1/check/call",
            &json!([
                {"caller": "+8613800138000"},
                {"caller": "alice", "callee": "+8613912345678"},
                {"callee": "+8613912345678", "colour": "red"},
                "not an object",
                {"caller": "+8613987654321", "callee": "+8613912345678"},
            ]),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0]["action"], "block");
        assert_eq!(a[1]["field"], "caller");
        assert!(
            a[1]["error"]
                .as_str()
                .unwrap()
                .contains("letters in 'alice'"),
            "{v}"
        );
        assert!(a[1].get("action").is_none());
        assert!(
            a[2]["error"]
                .as_str()
                .unwrap()
                .contains("unknown field `colour`"),
            "{v}"
        );
        assert!(
            a[3]["error"].as_str().unwrap().contains("\"caller\""),
            "{v}"
        );
        assert_eq!(a[4]["action"], "allow");
        assert_eq!(f.metrics.check.item_errors(Endpoint::Call), 3);
        // An empty batch is answered with an empty array.
        let (s, v) = post(&f.app, "/v1/check/domain", &json!([])).await;
        assert_eq!((s, v), (StatusCode::OK, json!([])));
    }

    #[tokio::test]
    async fn oversized_batch_and_body_get_413() {
        let f = fixture(CheckLimits {
            max_body: 256,
            max_batch: 2,
            max_text: 64,
        });
        let three =
            json!([{"domain": "a.example"}, {"domain": "b.example"}, {"domain": "c.example"}]);
        let (s, v) = post(&f.app, "/v1/check/domain", &three).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(v["error"].as_str().unwrap().contains("3 checks"), "{v}");
        let big = json!({"text": "x".repeat(300)}).to_string();
        // Known length (size hint) and declared Content-Length: refused before reading.
        let (s, v) = post_raw(
            &f.app,
            "/v1/check/message",
            Some("application/json"),
            big.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            v["error"].as_str().unwrap().contains("256-byte limit"),
            "{v}"
        );
        let req = Request::builder()
            .method("POST")
            .uri("/v1/check/message")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "100000")
            .body(Body::empty())
            .unwrap();
        let resp = f.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(f.metrics.check.requests(Endpoint::Message, "413"), 2);
    }

    /// One HTTP/1.1 exchange over a real socket; the request is written whole, then the answer
    /// read to the end (`Connection: close`).
    async fn exchange(addr: std::net::SocketAddr, request: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    fn chunked(path: &str, body: &str) -> String {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        for c in body.as_bytes().chunks(100) {
            r.push_str(&format!(
                "{:x}\r\n{}\r\n",
                c.len(),
                String::from_utf8_lossy(c)
            ));
        }
        r.push_str("0\r\n\r\n");
        r
    }

    #[tokio::test]
    async fn served_over_tcp_with_chunked_bodies() {
        let f = fixture(CheckLimits {
            max_body: 256,
            ..CheckLimits::default()
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = f.app.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        // No length known in advance: read chunk by chunk, cut off once past the limit.
        let small = json!({"domain": "evil.example"}).to_string();
        let r = exchange(addr, chunked("/v1/check/domain", &small)).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("\"action\":\"block\""), "{r}");
        let big = json!({"text": "x".repeat(300)}).to_string();
        let r = exchange(addr, chunked("/v1/check/message", &big)).await;
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        assert!(r.contains("more than the 256-byte limit"), "{r}");
        server.abort();
    }

    #[tokio::test]
    async fn wrong_content_type_gets_415() {
        let f = fixture(CheckLimits::default());
        let body = r#"{"domain": "evil.example"}"#;
        for ct in [
            Some("text/plain"),
            None,
            Some("application/x-www-form-urlencoded"),
        ] {
            let (s, v) = post_raw(&f.app, "/v1/check/domain", ct, body).await;
            assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            assert!(v["error"].as_str().unwrap().contains("application/json"));
        }
        let (s, _) = post_raw(
            &f.app,
            "/v1/check/domain",
            Some("Application/JSON; charset=utf-8"),
            body,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(f.metrics.check.requests(Endpoint::Domain, "415"), 3);
    }

    #[tokio::test]
    async fn bad_json_names_line_and_column() {
        let f = fixture(CheckLimits::default());
        let body = "{\n  \"caller\": \"+8613800138000\",\n  oops\n}";
        let (s, v) = post_raw(&f.app, "/v1/check/call", Some("application/json"), body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["where"], "line 3 column 3");
        let e = v["error"].as_str().unwrap();
        assert!(e.starts_with("the request body is not valid JSON: "), "{e}");
        assert!(!e.contains(" at line "), "{e}");
        let (s, v) = post_raw(
            &f.app,
            "/v1/check/call",
            Some("application/json"),
            "[{\"caller\": ",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["where"], "line 1 column 12");
        let (s, v) = post_raw(&f.app, "/v1/check/call", Some("application/json"), " \n").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().contains("empty"));
    }

    #[tokio::test]
    async fn unknown_and_missing_fields_are_named() {
        let f = fixture(CheckLimits::default());
        let (s, v) = post_raw(
            &f.app,
            "/v1/check/call",
            Some("application/json"),
            r#"{"caller": "+8613800138000", "colour": "red"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("unknown field `colour`") && e.contains("`callee`"),
            "{e}"
        );
        assert_eq!(v["where"], "line 1 column 37");
        let (s, v) = post(&f.app, "/v1/check/url", &json!({})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            v["error"].as_str().unwrap().contains("missing field `url`"),
            "{v}"
        );
        let (s, v) = post(&f.app, "/v1/check/call", &json!({})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }

    #[tokio::test]
    async fn a_number_that_is_not_a_phone_number_gets_422_naming_the_field() {
        let f = fixture(CheckLimits::default());
        for (req, field, why) in [
            (
                json!({"caller": "alice", "callee": "+8613800138000"}),
                "caller",
                "letters",
            ),
            (json!({"callee": "*21#"}), "callee", "service code"),
            (
                json!({"caller": "anonymous", "callee": "110"}),
                "caller",
                "anonymous",
            ),
            (
                json!({"callee": "+1234567890123456"}),
                "callee",
                "15 digits",
            ),
        ] {
            let (s, v) = post(&f.app, "/v1/check/call", &req).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{req}");
            assert_eq!(v["field"], field);
            let e = v["error"].as_str().unwrap();
            assert!(
                e.starts_with(&format!("{field}: ")) && e.contains(why),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn counters_move() {
        let f = fixture(CheckLimits::default());
        let block = json!({"caller": "+8613800138000"});
        post(&f.app, "/v1/check/call", &block).await;
        post(
            &f.app,
            "/v1/check/call",
            &json!([block, block, {"caller": "x"}]),
        )
        .await;
        post(&f.app, "/v1/check/call", &json!({"caller": "x"})).await;
        post_raw(&f.app, "/v1/check/call", Some("application/json"), "{").await;
        let c = &f.metrics.check;
        assert_eq!(c.requests(Endpoint::Call, "200"), 2);
        assert_eq!(c.requests(Endpoint::Call, "422"), 1);
        assert_eq!(c.requests(Endpoint::Call, "400"), 1);
        assert_eq!(c.latency.count(), 4);
        let hits = f.store.hit_totals();
        assert!(
            hits.iter().any(|(p, a, cat, n)| *p == Plane::Check
                && *a == "block"
                && cat == "impersonating-police"
                && *n == 3),
            "{hits:?}"
        );
        let text = f.metrics.encode();
        for line in [
            "dragnet_check_requests_total{endpoint=\"call\",status=\"200\"} 2",
            "dragnet_check_item_errors_total{endpoint=\"call\"} 1",
            "dragnet_verdicts_total{plane=\"check\",action=\"block\",category=\"impersonating-police\"} 3",
            "dragnet_check_duration_seconds_count 4",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[tokio::test]
    async fn answers_name_the_generation_that_decided() {
        let f = fixture(CheckLimits::default());
        let g = f
            .store
            .swap(crate::examples::engine(crate::unix_now()).unwrap(), 1);
        let (_, v) = post(
            &f.app,
            "/v1/check/domain",
            &json!({"domain": "evil.example"}),
        )
        .await;
        assert_eq!(v["generation"], g);
        assert_eq!(v["snapshot"], 1);
    }

    #[tokio::test]
    async fn other_methods_and_paths_are_not_served() {
        let f = fixture(CheckLimits::default());
        let req = Request::builder()
            .uri("/v1/check/call")
            .body(Body::empty())
            .unwrap();
        let resp = f.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// One API for every proptest case (compiling the example set per case would dominate).
    fn shared() -> &'static CheckApi {
        static API: std::sync::OnceLock<Arc<CheckApi>> = std::sync::OnceLock::new();
        API.get_or_init(|| {
            fixture(CheckLimits {
                max_batch: 3,
                ..CheckLimits::default()
            })
            .api
        })
    }

    fn status_of(api: &CheckApi, ep: Endpoint, body: &[u8]) -> (StatusCode, Vec<u8>) {
        match ep {
            Endpoint::Call => api.answer::<CallCheck>(body, 0),
            Endpoint::Domain => api.answer::<DomainCheck>(body, 0),
            Endpoint::Url => api.answer::<UrlCheck>(body, 0),
            Endpoint::Message => api.answer::<MessageCheck>(body, 0),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any body, to any endpoint: no panic, a JSON answer, a status the API documents.
        #[test]
        fn any_body_gets_a_json_answer(
            ep in prop::sample::select(Endpoint::ALL.to_vec()),
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                "[\\[{ ]{0,3}\"(caller|callee|ingress|domain|url|text|x)\": ?\"[-+0-9a-z.:/*#@ ]{0,30}\"[}\\] ,]{0,3}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            let (s, out) = status_of(shared(), ep, &body);
            prop_assert!(
                [200, 400, 413, 422].contains(&s.as_u16()),
                "status {s} for {:?}", String::from_utf8_lossy(&body)
            );
            let v: Value = serde_json::from_slice(&out).unwrap();
            if s == StatusCode::OK {
                prop_assert!(v.is_object() || v.is_array());
            } else {
                prop_assert!(v["error"].is_string());
            }
        }
    }
}
