//! The admin HTTP API (axum), on `admin.listen`:
//!
//! | method and path | token | what |
//! |---|---|---|
//! | `GET /metrics` | – | Prometheus text exposition |
//! | `GET /healthz` | – | the process answers |
//! | `GET /readyz` | – | a valid snapshot is loaded (always true once started: a gateway never runs without one) |
//! | `GET /v1/status` | – | snapshot (version, SHA-256, origin, counts), planes, shadow differences, control plane |
//! | `POST /v1/snapshot` | yes | direct push: body = snapshot bytes, `X-Dragnet-Signature` = the `.sig` on one line, optional `X-Dragnet-Rollback` = a rollback order on one line |
//! | `POST /v1/reload` | yes | reload `rules.snapshot` (as SIGHUP) |
//! | `PUT /v1/shadow` | yes | run a candidate snapshot in shadow (body and headers as a push) |
//! | `POST /v1/shadow/promote` | yes | make the candidate active (verified, version-checked, persisted) |
//! | `DELETE /v1/shadow` | yes | stop shadow mode |
//!
//! Mutating endpoints need `Authorization: Bearer <token>` (RFC 6750 §2.1) with the token from
//! `admin.token_file`: 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3) when it is missing or
//! wrong, 403 when no token is configured (they are off). The token is compared in constant time.
//! Headers carry `.sig` texts on one line with `;` for newlines: `-H "X-Dragnet-Signature: $(tr
//! '\n' ';' < SNAPSHOT.sig)"` (see [`crate::signing::to_header`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::signing;
use crate::snapshots::{Arrival, Lifecycle};
use crate::store::Store;
use dragnet_rules::snapshot::hex;

/// The largest snapshot a push may carry (a 10⁷-entry snapshot is about 180 MB).
pub const MAX_PUSH: usize = 1 << 30;

/// What `/v1/status` says about the control-plane subscription, filled in by its owner.
pub type ControlStatus = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The admin API's shared state.
#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub lifecycle: Arc<Lifecycle>,
    /// The bearer token for mutating endpoints; None = those endpoints are off (403).
    pub token: Option<Arc<str>>,
    /// Planes and their listeners, e.g. `("sip", ["udp 127.0.0.1:5060"])`.
    pub planes: Arc<Vec<(&'static str, Vec<String>)>>,
    pub control: Option<ControlStatus>,
}

/// `dragnet_admin_requests_total{endpoint,status}` for the mutating endpoints.
#[derive(Debug, Clone, Default)]
pub struct AdminMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl AdminMetrics {
    pub fn register(reg: &mut prometheus_client::registry::Registry) -> AdminMetrics {
        let m = AdminMetrics::default();
        reg.register(
            "dragnet_admin_requests",
            "Mutating admin API requests by endpoint and HTTP status (401/403 = refused)",
            m.requests.clone(),
        );
        m
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("planes", &self.planes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

impl Admin {
    pub fn new(
        metrics: Arc<Metrics>,
        store: Arc<Store>,
        lifecycle: Arc<Lifecycle>,
        token: Option<String>,
        planes: Vec<(&'static str, Vec<String>)>,
        control: Option<ControlStatus>,
    ) -> Admin {
        Admin {
            metrics,
            store,
            lifecycle,
            token: token.map(Arc::from),
            planes: Arc::new(planes),
            control,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/v1/status", get(status))
            .route("/v1/snapshot", post(push))
            .route("/v1/reload", post(reload))
            .route("/v1/shadow", put(shadow_load).delete(shadow_stop))
            .route("/v1/shadow/promote", post(shadow_promote))
            .layer(DefaultBodyLimit::max(MAX_PUSH))
            .with_state(self)
    }

    /// RFC 6750: 403 when no token is configured, 401 + `WWW-Authenticate` when absent/wrong.
    /// `Some(answer)` = refused.
    fn refused(&self, endpoint: &'static str, h: &HeaderMap) -> Option<Response> {
        let refuse = |status: StatusCode, msg: &str| {
            self.count(endpoint, status);
            let mut r = (status, format!("{msg}\n")).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"dragnet\""),
                );
            }
            Some(r)
        };
        let Some(token) = &self.token else {
            return refuse(
                StatusCode::FORBIDDEN,
                "mutating admin endpoints are off: set admin.token_file",
            );
        };
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(g) if ct_eq(g.as_bytes(), token.as_bytes()) => None,
            Some(_) => refuse(StatusCode::UNAUTHORIZED, "wrong bearer token"),
            None => refuse(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <token>",
            ),
        }
    }

    fn count(&self, endpoint: &'static str, status: StatusCode) {
        self.metrics
            .admin
            .requests
            .get_or_create(&RequestLabels {
                endpoint,
                status: status.as_u16(),
            })
            .inc();
    }

    /// Runs a lifecycle step off the runtime's threads (building 10⁷ entries takes seconds) and
    /// answers 200 `{"version": N}` or 422 `{"error": …}`.
    async fn run(
        &self,
        endpoint: &'static str,
        f: impl FnOnce(&Lifecycle) -> Result<u64, String> + Send + 'static,
    ) -> Response {
        let l = self.lifecycle.clone();
        let r = tokio::task::spawn_blocking(move || f(&l))
            .await
            .unwrap_or_else(|e| Err(format!("internal: {e}")));
        let (status, body) = match r {
            Ok(v) => (StatusCode::OK, serde_json::json!({ "version": v })),
            Err(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "error": e }),
            ),
        };
        self.count(endpoint, status);
        json(status, &body)
    }
}

/// Constant-time equality (length is not secret: tokens have a fixed configured length).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: StatusCode, v: &impl Serialize) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

async fn metrics(State(a): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        a.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(a): State<Admin>) -> Response {
    // A gateway never runs without a valid snapshot: the store always holds one.
    let v = a.store.load().engine.version();
    (StatusCode::OK, format!("ready: snapshot version {v}\n")).into_response()
}

/// The `.sig` text and rollback order from a push's headers.
fn arrival_headers(h: &HeaderMap) -> Result<(Option<String>, Option<String>), String> {
    let get = |name: &str| -> Result<Option<String>, String> {
        match h.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(signing::from_header(s)))
                .map_err(|_| format!("{name}: not ASCII text")),
        }
    };
    Ok((get("x-dragnet-signature")?, get("x-dragnet-rollback")?))
}

async fn push(State(a): State<Admin>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = a.refused("snapshot", &h) {
        return r;
    }
    let (sig, rollback) = match arrival_headers(&h) {
        Ok(x) => x,
        Err(e) => {
            a.count("snapshot", StatusCode::BAD_REQUEST);
            return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e }));
        }
    };
    let bytes = body.to_vec();
    a.run("snapshot", move |l| {
        l.apply(Arrival {
            bytes,
            sig,
            rollback,
            origin: "push",
        })
    })
    .await
}

async fn reload(State(a): State<Admin>, h: HeaderMap) -> Response {
    if let Some(r) = a.refused("reload", &h) {
        return r;
    }
    a.run("reload", |l| l.reload()).await
}

async fn shadow_load(State(a): State<Admin>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = a.refused("shadow", &h) {
        return r;
    }
    let sig = match arrival_headers(&h) {
        Ok((sig, _)) => sig,
        Err(e) => {
            a.count("shadow", StatusCode::BAD_REQUEST);
            return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e }));
        }
    };
    let bytes = body.to_vec();
    a.run("shadow", move |l| l.load_candidate(bytes, sig)).await
}

async fn shadow_promote(State(a): State<Admin>, h: HeaderMap) -> Response {
    if let Some(r) = a.refused("promote", &h) {
        return r;
    }
    a.run("promote", |l| l.promote()).await
}

async fn shadow_stop(State(a): State<Admin>, h: HeaderMap) -> Response {
    if let Some(r) = a.refused("shadow", &h) {
        return r;
    }
    let stopped = a.store.take_shadow().map(|s| s.engine.version());
    a.count("shadow", StatusCode::OK);
    json(StatusCode::OK, &serde_json::json!({ "stopped": stopped }))
}

async fn status(State(a): State<Admin>) -> Response {
    json(StatusCode::OK, &status_value(&a))
}

/// The `/v1/status` document.
pub fn status_value(a: &Admin) -> serde_json::Value {
    let act = a.store.load();
    let e = &act.engine;
    let p = a.store.provenance();
    let m = e.meta();
    let shadow = a.store.shadow().map(|s| {
        let compared: BTreeMap<&str, u64> = s.compared().into_iter().collect();
        serde_json::json!({
            "version": s.engine.version(),
            "rules": s.engine.rule_count(),
            "loaded_at": s.loaded_at,
            "compared": compared,
            "differences": s.differences(),
        })
    });
    let planes: BTreeMap<&str, &Vec<String>> = a.planes.iter().map(|(k, v)| (*k, v)).collect();
    let sm = &a.metrics.snapshots;
    let origins = ["file", "push", "server", "promote"];
    let applied: BTreeMap<&str, u64> = origins.iter().map(|o| (*o, sm.applied(o))).collect();
    let refused: BTreeMap<&str, u64> = origins.iter().map(|o| (*o, sm.refused(o))).collect();
    serde_json::json!({
        "snapshot": {
            "version": e.version(),
            "generation": act.generation,
            "sha256": p.sha256.map(|s| hex(&s)),
            "origin": p.origin,
            "signed_by": p.key_id,
            "loaded_at": a.store.loaded_at(),
            "rules": e.rule_count(),
            "counts": m.counts,
            "categories": m.categories,
            "swaps": a.store.swaps(),
            "applied": applied,
            "refused": refused,
            "state_dir": a.lifecycle.state_dir().map(|d| d.display().to_string()),
        },
        "planes": planes,
        "shadow": shadow,
        "control": a.control.as_ref().map(|c| c()),
    })
}

/// A blocking HTTP/1.1 client for the admin API (`dragnet rules push`, tests): one request,
/// `Connection: close`, answer read to the end (bounded to 1 MiB), 30 s timeouts.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut s = std::net::TcpStream::connect(addr)?;
    let t = Some(std::time::Duration::from_secs(30));
    s.set_read_timeout(t)?;
    s.set_write_timeout(t)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/octet-stream\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        if v.contains(['\r', '\n']) {
            return Err(bad(format!("header {k} holds a line break")));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.take(1 << 20).read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no HTTP header in the answer".into()))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            bad(format!(
                "not an HTTP status line: {:?}",
                head.lines().next()
            ))
        })?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const TOKEN: &str = "0123456789abcdef0123";

    fn admin(dir: &std::path::Path) -> (Admin, Vec<u8>) {
        let k = signing::keygen(&dir.join("ops")).unwrap();
        let trusted = vec![signing::TrustedKey::load(&k.public).unwrap()];
        let store = Arc::new(Store::new(crate::examples::engine(0).unwrap(), 0));
        let metrics = Metrics::new(store.clone());
        let l = Arc::new(Lifecycle::new(
            store.clone(),
            trusted,
            false,
            Some(dir.join("state")),
            None,
            metrics.snapshots.clone(),
        ));
        let a = Admin::new(
            Arc::new(metrics),
            store,
            l,
            Some(TOKEN.into()),
            vec![("dns", vec!["udp 127.0.0.1:53".into()])],
            None,
        );
        (a, std::fs::read(&k.key).unwrap())
    }

    fn snap(pkcs8: &[u8], v: u64) -> (Vec<u8>, String) {
        let e = crate::examples::engine(0).unwrap();
        let b = dragnet_rules::snapshot::write_snapshot(e.tables(), v, 0).unwrap();
        let (_, sig) = signing::sign_bytes(&b, pkcs8).unwrap();
        (b, signing::to_header(&sig))
    }

    async fn call(a: &Admin, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let r = a.clone().router().oneshot(req).await.unwrap();
        let (parts, body) = r.into_parts();
        let b = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&b).into_owned(),
        )
    }

    #[tokio::test]
    async fn mutating_endpoints_need_the_bearer_token() {
        let d = std::env::temp_dir().join(format!("dragnet-admin-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (a, pkcs8) = admin(&d);
        let (b, sig) = snap(&pkcs8, 9);
        let req = |auth: Option<&str>| {
            let mut r = Request::post("/v1/snapshot").header("x-dragnet-signature", &sig);
            if let Some(t) = auth {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.body(Body::from(b.clone())).unwrap()
        };
        let (s, h, _) = call(&a, req(None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(h
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let (s, _, _) = call(&a, req(Some("0123456789abcdef0124"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(a.store.load().engine.version(), 1);
        let (s, _, body) = call(&a, req(Some(TOKEN))).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(a.store.load().engine.version(), 9);
        // No token configured: the endpoints are off.
        let mut off = a.clone();
        off.token = None;
        let (s, _, _) = call(&off, req(Some(TOKEN))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // Status says v9 came by push, signed, with its SHA-256.
        let (s, _, body) = call(&a, Request::get("/v1/status").body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["snapshot"]["version"], 9);
        assert_eq!(v["snapshot"]["origin"], "push");
        assert_eq!(v["snapshot"]["applied"]["push"], 1);
        assert_eq!(v["planes"]["dns"][0], "udp 127.0.0.1:53");
        assert!(v["snapshot"]["sha256"].as_str().unwrap().len() == 64);
        let m = a.metrics.encode();
        assert!(
            m.contains("dragnet_admin_requests_total{endpoint=\"snapshot\",status=\"401\"} 2"),
            "{m}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn a_bad_push_is_refused_with_the_reason_and_v_stays() {
        let d = std::env::temp_dir().join(format!("dragnet-admin-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (a, pkcs8) = admin(&d);
        let (b, sig) = snap(&pkcs8, 3);
        let mut bad = b.clone();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        let r = Request::post("/v1/snapshot")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("x-dragnet-signature", &sig)
            .body(Body::from(bad))
            .unwrap();
        let (s, _, body) = call(&a, r).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("changed since signing"), "{body}");
        assert_eq!(a.store.load().engine.version(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn shadow_runs_a_candidate_and_promote_switches() {
        let d = std::env::temp_dir().join(format!("dragnet-admin-shadow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (a, pkcs8) = admin(&d);
        let (b, sig) = snap(&pkcs8, 4);
        let auth = format!("Bearer {TOKEN}");
        let r = Request::put("/v1/shadow")
            .header("authorization", &auth)
            .header("x-dragnet-signature", &sig)
            .body(Body::from(b))
            .unwrap();
        let (s, _, body) = call(&a, r).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (_, _, body) = call(&a, Request::get("/v1/status").body(Body::empty()).unwrap()).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["shadow"]["version"], 4);
        assert!(a.metrics.encode().contains("dragnet_shadow_version 4"));
        let r = Request::post("/v1/shadow/promote")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap();
        let (s, _, body) = call(&a, r).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(a.store.load().engine.version(), 4);
        assert!(a.store.shadow().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
