//! End-to-end tests of the web plane's HTTP proxy: `web::http::serve` started from the library
//! on `127.0.0.1:0` with the embedded example rule set (`dragnet run` does not start the web
//! plane yet), the real `curl` binary as the client, and a small hyper origin server written
//! here.
//!
//! Every name the tests use (`shop.example`, `evil.example` …) maps to 127.0.0.1 through the
//! proxy's static `hosts` table: nothing is resolved. The origin records what reached it (method,
//! path, the fields a proxy must add or remove, the body's length and FNV-1a hash) and counts
//! the connections it accepted, so the tests assert on what crossed the proxy, not only on what
//! curl saw.
//!
//! The tests run one at a time (a lock): they share two cores. No sleep stands in for
//! synchronisation. Without `curl` on the PATH they say so loudly on stderr and pass.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use dragnet_gateway::store::Store;
use dragnet_gateway::web::http::{serve, HttpConfig, HttpMetrics};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Is curl installed? If not, say so where a CI log shows it (the stderr handle, not the
/// captured `eprintln!` of a passing test), and let the caller return.
fn curl_missing(test: &str) -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: curl not installed (test {test}); install it (Debian: curl)"
        );
    }
    !found
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(h: &mut u64, data: &[u8]) {
    for &b in data {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(FNV_PRIME);
    }
}

/// `n` bytes that are not all alike (a tiny LCG), so a reordered or lost chunk shows.
fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The origin

/// What one request looked like when it reached the origin.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    host: String,
    via: Vec<String>,
    max_forwards: Option<String>,
    /// Names of every field received (lower case).
    fields: Vec<String>,
    body_len: usize,
    body_fnv: u64,
}

/// A response body in one piece.
struct Once(Option<Bytes>);

impl Body for Once {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

const BIG: usize = 5 * 1024 * 1024;

async fn answer(req: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<Once> {
    let (parts, mut body) = req.into_parts();
    let mut len = 0;
    let mut h = FNV_OFFSET;
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(d) = f.unwrap().into_data() {
            len += d.len();
            fnv(&mut h, &d);
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("", |p| p.as_str())
        .to_string();
    let s = Seen {
        method: parts.method.to_string(),
        host: parts
            .headers
            .get("host")
            .map_or("", |v| v.to_str().unwrap())
            .to_string(),
        via: parts
            .headers
            .get_all("via")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
        max_forwards: parts
            .headers
            .get("max-forwards")
            .map(|v| v.to_str().unwrap().to_string()),
        fields: parts
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .collect(),
        path: path.clone(),
        body_len: len,
        body_fnv: h,
    };
    let text = format!(
        "origin saw {} {} len={} fnv={:016x}",
        s.method, s.path, s.body_len, s.body_fnv
    );
    seen.lock().unwrap().push(s);
    if path == "/big" {
        return Response::new(Once(Some(Bytes::from(payload(BIG)))));
    }
    Response::new(Once(Some(Bytes::from(text))))
}

struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn start_origin() -> Origin {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, s) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(answer(req, &s).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Origin {
        addr,
        accepted,
        seen,
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test

struct Harness {
    rt: tokio::runtime::Runtime,
    proxy: String,
    origin: Origin,
    metrics: Arc<HttpMetrics>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Names the tests use; all are 127.0.0.1.
const NAMES: [&str; 5] = [
    "shop.example",
    "evil.example",
    "docs.example",
    "slow.example",
    "dead.example",
];

fn start(test: &str, tune: impl FnOnce(&mut HttpConfig, u16)) -> Harness {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let origin = rt.block_on(start_origin());
    let mut cfg = HttpConfig {
        enabled: true,
        listen: vec!["127.0.0.1:0".into()],
        connect_ports: vec![443, origin.port()],
        ..HttpConfig::default()
    };
    for n in NAMES {
        cfg.hosts.insert(n.into(), "127.0.0.1".into());
    }
    tune(&mut cfg, origin.port());
    cfg.validate().unwrap();
    let engine = dragnet_gateway::examples::engine(dragnet_gateway::unix_now()).unwrap();
    let store = Arc::new(Store::new(engine, 0));
    let metrics = Arc::new(HttpMetrics::new());
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(serve(listener, store, Arc::new(cfg), metrics.clone()));
    let dir = std::env::temp_dir().join(format!(
        "dragnet-web-http-e2e-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Harness {
        rt,
        proxy,
        origin,
        metrics,
        dir,
    }
}

/// What curl got for one URL.
#[derive(Debug)]
struct Reply {
    /// Status of the final response (0: none).
    code: u16,
    /// Status of the proxy's answer to CONNECT (0: no CONNECT).
    connect: u16,
    /// The response head(s), as curl dumped them.
    head: String,
    body: Vec<u8>,
    exit: i32,
    stderr: String,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Harness {
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.origin.port())
    }

    /// curl through the proxy, one URL; `args` come before it.
    fn curl(&self, args: &[&str], url: &str) -> Reply {
        let body = self.dir.join("body");
        let head = self.dir.join("head");
        let _ = std::fs::remove_file(&body);
        let _ = std::fs::remove_file(&head);
        let out = curl_cmd()
            .args(["-x", &self.proxy])
            .arg("-o")
            .arg(&body)
            .arg("-D")
            .arg(&head)
            .args(["-w", "%{http_code} %{http_connect}"])
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        let w = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut codes = w.split_whitespace().map(|c| c.parse::<u16>().unwrap_or(0));
        Reply {
            code: codes.next().unwrap_or(0),
            connect: codes.next().unwrap_or(0),
            head: std::fs::read_to_string(&head).unwrap_or_default(),
            body: std::fs::read(&body).unwrap_or_default(),
            exit: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

fn curl_cmd() -> Command {
    let mut c = Command::new("curl");
    // No proxy from the environment; --noproxy "" also overrides NO_PROXY.
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        c.env_remove(v);
    }
    c.args(["-sS", "--max-time", "60", "--noproxy", ""]);
    c
}

/// The id and category of the rule the example engine blocks `host` with.
fn domain_rule(host: &str) -> (String, String) {
    let e = dragnet_gateway::examples::engine(dragnet_gateway::unix_now()).unwrap();
    let v = e.check_domain(host.as_bytes(), dragnet_gateway::unix_now());
    assert_eq!(v.action, dragnet_rules::Action::Block, "{host}");
    let mut id = String::new();
    let cat = e
        .write_rule_id(v.rule.unwrap(), &mut id)
        .unwrap()
        .to_string();
    (id, cat)
}

fn url_rule(url: &str) -> String {
    let e = dragnet_gateway::examples::engine(dragnet_gateway::unix_now()).unwrap();
    let v = e.check_url(
        url.as_bytes(),
        dragnet_gateway::unix_now(),
        &mut dragnet_rules::Scratch::new(),
    );
    assert_eq!(v.action, dragnet_rules::Action::Block, "{url}");
    let mut id = String::new();
    e.write_rule_id(v.rule.unwrap(), &mut id).unwrap();
    id
}

fn header_lines(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn blocked_host_gets_the_page_and_never_reaches_the_origin() {
    let _g = serial();
    if curl_missing("blocked_host_gets_the_page_and_never_reaches_the_origin") {
        return;
    }
    let h = start("blocked-host", |_, _| {});
    let (rule, category) = domain_rule("evil.example");
    let r = h.curl(&[], &h.url("login.evil.example", "/account?next=/"));
    assert_eq!(r.code, 403, "{r:?}");
    let t = r.text();
    assert!(t.contains(&rule) && t.contains(&category), "{t}");
    assert!(
        t.contains("12381") && t.contains("login.evil.example"),
        "{t}"
    );
    assert_eq!(
        header_lines(&r.head, "content-type"),
        ["text/html; charset=utf-8"]
    );
    assert_eq!(header_lines(&r.head, "cache-control"), ["no-store"]);

    // The same page in Chinese when the client prefers it and it is configured.
    drop(h);
    let h = start("blocked-host-zh", |c, _| {
        c.languages = vec!["en".into(), "zh-CN".into()];
        c.status_by_category.insert(category.clone(), 451);
    });
    let r = h.curl(
        &["-H", "Accept-Language: zh-CN,zh;q=0.9,en;q=0.8"],
        &h.url("evil.example", "/"),
    );
    assert_eq!(r.code, 451, "{r:?}");
    assert!(
        r.text().contains("反诈骗") && r.text().contains(&rule),
        "{}",
        r.text()
    );
    assert_eq!(header_lines(&r.head, "content-language"), ["zh-CN"]);
    assert!(h.origin.seen().is_empty(), "{:?}", h.origin.seen());
    assert_eq!(h.origin.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(h.metrics.blocked.get(), 1);
}

#[test]
fn blocked_url_prefix_under_an_allowed_host() {
    let _g = serial();
    if curl_missing("blocked_url_prefix_under_an_allowed_host") {
        return;
    }
    let h = start("url-prefix", |_, _| {});
    // examples/rules/phishing.urls: `shop.example/pay/confirm/` covers everything below it.
    let rule = url_rule("http://shop.example/pay/confirm/");
    let r = h.curl(&[], &h.url("shop.example", "/pay/confirm/step2?order=42"));
    assert_eq!(r.code, 403, "{r:?}");
    assert!(
        r.text().contains(&rule) && r.text().contains("phishing"),
        "{}",
        r.text()
    );
    // Canonicalisation: an escaped path is the same path.
    let r = h.curl(&[], &h.url("shop.example", "/pay/%63onfirm/x"));
    assert_eq!(r.code, 403, "{r:?}");
    let r = h.curl(&[], &h.url("shop.example", "/pay/history"));
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.text().starts_with("origin saw GET /pay/history"),
        "{}",
        r.text()
    );
    let seen = h.origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn allowed_get_is_forwarded_with_via_and_without_hop_by_hop_fields() {
    let _g = serial();
    if curl_missing("allowed_get_is_forwarded_with_via_and_without_hop_by_hop_fields") {
        return;
    }
    let h = start("allowed-get", |_, _| {});
    let r = h.curl(
        &[
            "-H",
            "X-Dragnet-Category: forged-by-client",
            "-H",
            "Connection: X-Hop",
            "-H",
            "X-Hop: secret",
            "-H",
            "X-End-To-End: kept",
            "-H",
            "Proxy-Authorization: Basic dXNlcjpwYXNz",
        ],
        &h.url("shop.example", "/hello?a=1"),
    );
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.text().starts_with("origin saw GET /hello?a=1 len=0"),
        "{}",
        r.text()
    );
    // RFC 9110 §7.6.3: our Via on the response too.
    assert!(
        header_lines(&r.head, "via")
            .iter()
            .any(|v| v == "1.1 dragnet"),
        "{}",
        r.head
    );
    let seen = h.origin.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.host, format!("shop.example:{}", h.origin.port()));
    assert_eq!(s.via, ["1.1 dragnet"]);
    for gone in [
        "proxy-connection",
        "connection",
        "x-hop",
        "x-dragnet-category",
        "proxy-authorization",
    ] {
        assert!(
            !s.fields.iter().any(|f| f == gone),
            "{gone}: {:?}",
            s.fields
        );
    }
    assert!(
        s.fields.iter().any(|f| f == "x-end-to-end"),
        "{:?}",
        s.fields
    );
    assert_eq!(h.metrics.forwarded.get(), 1);
}

#[test]
fn post_bodies_arrive_intact_small_and_streamed() {
    let _g = serial();
    if curl_missing("post_bodies_arrive_intact_small_and_streamed") {
        return;
    }
    let h = start("post", |_, _| {});
    for (name, n) in [("small", 1000usize), ("large", BIG)] {
        let data = payload(n);
        let mut want = FNV_OFFSET;
        fnv(&mut want, &data);
        let f = h.file(name, &data);
        let arg = format!("@{}", f.display());
        let r = h.curl(
            &[
                "--data-binary",
                &arg,
                "-H",
                "Content-Type: application/octet-stream",
            ],
            &h.url("docs.example", "/upload"),
        );
        assert_eq!(r.code, 200, "{name}: {r:?}");
        assert_eq!(
            r.text(),
            format!("origin saw POST /upload len={n} fnv={want:016x}"),
            "{name}"
        );
    }
    // Chunked upload (no Content-Length): re-framed and intact.
    let data = payload(300_000);
    let mut want = FNV_OFFSET;
    fnv(&mut want, &data);
    let f = h.file("chunked", &data);
    let arg = format!("@{}", f.display());
    let r = h.curl(
        &["--data-binary", &arg, "-H", "Transfer-Encoding: chunked"],
        &h.url("docs.example", "/chunked"),
    );
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(
        r.text(),
        format!("origin saw POST /chunked len=300000 fnv={want:016x}")
    );
    // And a large download.
    let r = h.curl(&[], &h.url("docs.example", "/big"));
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.body.len(), BIG);
    assert!(r.body == payload(BIG), "downloaded body differs");
}

#[test]
fn connect_is_screened_and_tunnels_only_to_allowed_ports() {
    let _g = serial();
    if curl_missing("connect_is_screened_and_tunnels_only_to_allowed_ports") {
        return;
    }
    let h = start("connect", |_, _| {});
    let (rule, _) = domain_rule("evil.example");
    // curl -p: CONNECT even for http:// URLs.
    let r = h.curl(&["-p"], "https://evil.example/");
    assert_eq!(r.connect, 403, "{r:?}");
    assert_ne!(r.exit, 0, "curl must fail: {}", r.stderr);
    let r = h.curl(&["-p"], "https://fake-bank-login.example/");
    assert_eq!(r.connect, 403, "{r:?}");
    // A port not in connect_ports.
    let r = h.curl(&["-p"], "https://shop.example:8443/");
    assert_eq!(r.connect, 403, "{r:?}");
    assert_eq!(h.metrics.port_refused.get(), 1);
    assert_eq!(h.metrics.blocked.get(), 2);
    // An allowed host on an allowed port: a tunnel, through which plain HTTP reaches the
    // origin untouched (no Via: the proxy does not see inside a tunnel).
    let r = h.curl(&["-p"], &h.url("shop.example", "/through"));
    assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    assert!(
        r.text().starts_with("origin saw GET /through"),
        "{}",
        r.text()
    );
    let seen = h.origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].via.is_empty(), "{seen:?}");
    assert_eq!(h.metrics.tunnelled.get(), 1);
    // The page the 403 carried names the rule (curl does not keep a CONNECT body; ask raw).
    let raw = h.rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = h.proxy.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        String::from_utf8_lossy(&v).into_owned()
    });
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(raw.contains(&rule), "{raw}");
}

#[test]
fn idle_tunnels_are_closed() {
    let _g = serial();
    let h = start("tunnel-idle", |c, _| c.timeouts.tunnel_idle_ms = 200);
    let port = h.origin.port();
    let (head, rest) = h.rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = h.proxy.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("CONNECT shop.example:{port} HTTP/1.1\r\nHost: shop.example:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        // The 200, then nothing moves: the proxy closes the tunnel (EOF), long before the
        // deadline that only keeps a broken test from hanging.
        let mut v = Vec::new();
        let r =
            tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut v)).await;
        assert!(r.is_ok(), "the idle tunnel was not closed");
        let text = String::from_utf8_lossy(&v).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), rest.to_string())
    });
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(rest, "");
    assert_eq!(h.metrics.tunnel_idle_timeouts.get(), 1);
}

#[test]
fn keep_alive_reuses_one_origin_connection() {
    let _g = serial();
    if curl_missing("keep_alive_reuses_one_origin_connection") {
        return;
    }
    let h = start("keep-alive", |_, _| {});
    let out = curl_cmd()
        .args(["-x", &h.proxy, "-o", "/dev/null", "-o", "/dev/null"])
        .args(["-w", "%{http_code}\n"])
        .arg(h.url("shop.example", "/one"))
        .arg(h.url("shop.example", "/two"))
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        codes,
        "200\n200\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths: Vec<String> = h.origin.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/one", "/two"]);
    assert_eq!(
        h.origin.accepted.load(Ordering::SeqCst),
        1,
        "both requests on one origin connection"
    );
    assert_eq!(h.metrics.upstream_connections.get(), 1);
    assert_eq!(h.metrics.upstream_reused.get(), 1);
}

#[test]
fn origin_failures_loops_and_bad_targets() {
    let _g = serial();
    if curl_missing("origin_failures_loops_and_bad_targets") {
        return;
    }
    // A port nobody listens on, and an origin that accepts and never answers.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h = start("failures", |c, _| c.timeouts.response_ms = 300);
    let slow = h.rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let slow_port = slow.local_addr().unwrap().port();
    h.rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = slow.accept().await {
            held.push(s);
        }
    });
    let r = h.curl(&[], &format!("http://dead.example:{dead_port}/"));
    assert_eq!(r.code, 502, "{r:?}");
    assert!(r.text().starts_with("502 Bad Gateway"), "{}", r.text());
    let r = h.curl(&[], &format!("http://slow.example:{slow_port}/"));
    assert_eq!(r.code, 504, "{r:?}");
    assert!(r.text().starts_with("504 Gateway Timeout"), "{}", r.text());
    // Our own Via: a loop (508).
    let r = h.curl(&["-H", "Via: 1.1 dragnet"], &h.url("shop.example", "/"));
    assert_eq!(r.code, 508, "{r:?}");
    // Origin-form to a forward proxy: 400 (curl without -x).
    let out = curl_cmd()
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/direct", h.proxy))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    // Max-Forwards: 0 on OPTIONS is answered by the proxy (RFC 9110 §7.6.2).
    let r = h.curl(
        &["-X", "OPTIONS", "-H", "Max-Forwards: 0"],
        &h.url("shop.example", "/"),
    );
    assert_eq!(r.code, 200, "{r:?}");
    assert!(!header_lines(&r.head, "allow").is_empty(), "{}", r.head);
    assert!(h.origin.seen().is_empty(), "{:?}", h.origin.seen());
    // Max-Forwards: 3 on TRACE is forwarded as 2: the origin's reply shows it got there.
    let r = h.curl(
        &["-X", "TRACE", "-H", "Max-Forwards: 3"],
        &h.url("shop.example", "/t"),
    );
    assert_eq!(r.code, 200, "{r:?}");
    let seen = h.origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].max_forwards.as_deref(), Some("2"));
    assert_eq!(h.metrics.bad_gateway.get(), 1);
    assert_eq!(h.metrics.gateway_timeout.get(), 1);
    assert_eq!(h.metrics.loop_detected.get(), 1);
    assert_eq!(h.metrics.answered_locally.get(), 1);
    // Nothing of that left a connection slot taken: the proxy still serves.
    let r = h.curl(&[], &h.url("shop.example", "/after"));
    assert_eq!(r.code, 200, "{r:?}");
}

/// Transparent mode: the client talks to the proxy as if it were the origin (origin-form target,
/// Host header); the Host and the path decide, and allowed requests go to the configured upstream.
#[test]
fn transparent_mode_screens_on_host_and_path() {
    let _g = serial();
    if curl_missing("transparent_mode_screens_on_host_and_path") {
        return;
    }
    let h = start("transparent", |c, port| {
        c.mode = dragnet_gateway::web::http::HttpMode::Transparent;
        c.upstream = Some(format!("127.0.0.1:{port}"));
    });
    let direct = |host: &str, path: &str| -> (u16, String) {
        let out = curl_cmd()
            .args(["-H", &format!("Host: {host}")])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}{path}", h.proxy))
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    };
    let (code, body) = direct("login.evil.example", "/account");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(&domain_rule("evil.example").0), "{body}");
    let (code, body) = direct("shop.example", "/pay/confirm/step2");
    assert_eq!(code, 403, "{body}");
    let (code, body) = direct("shop.example", "/pay/history");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("origin saw GET /pay/history"), "{body}");
    let seen = h.origin.seen();
    assert_eq!(
        seen.len(),
        1,
        "only the allowed request reaches the origin: {seen:?}"
    );
    assert_eq!(
        seen[0].host, "shop.example",
        "the Host is passed on: {seen:?}"
    );
}
