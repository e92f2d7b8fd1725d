//! The webhook sink: a batch of events as one JSON array, `POST`ed over HTTP/1.1.
//!
//! Retry policy: connect errors, timeouts, 5xx and 429 (RFC 6585 §4: Too Many Requests) are
//! retried `retries` times with exponential backoff and "equal jitter" (half the delay fixed, half
//! random), so that a fleet of gateways does not hammer a recovering endpoint in lockstep. Then
//! the batch goes to the spool. Any other status (a 4xx) means the receiver refuses the content:
//! resending it would loop forever, so the batch is dropped and counted (`reason="rejected"`).
//! One connection per batch: batches are seconds apart, and a fresh connection never trips
//! over a keep-alive the receiver already closed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::config::WebhookConfig;
use super::sink::Delivery;

/// Where the webhook posts: parsed from `events.webhook.url` at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The `Host` header (RFC 9110 §7.2): host, and port when not 80.
    pub authority: String,
}

impl Target {
    /// Accepts `http://host[:port][/path]`; the reason says what is wrong otherwise.
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.is_empty() {
            return Err("the webhook sink is enabled but has no URL".into());
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!(
                "{url:?}: only http:// URLs are supported (terminate TLS in a local proxy for https)"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: needs a host (and no user:password@)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return Err(format!("{url:?}: unclosed '[' in the host"));
            };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
                None if after.is_empty() => 80,
                None => return Err(format!("{url:?}: junk after the IPv6 host")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
                ),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(format!("{url:?}: needs a host and a non-zero port"));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{url:?}: spaces or control characters in the path"));
        }
        Ok(Target {
            host,
            port,
            path,
            authority: authority.to_string(),
        })
    }
}

/// The webhook sink.
#[derive(Debug)]
pub struct WebhookSink {
    target: Target,
    cfg: WebhookConfig,
    rng: ring::rand::SystemRandom,
}

/// The outcome of one POST.
enum Post {
    Status(u16),
    Failed(String),
}

impl WebhookSink {
    /// `cfg` has been validated (the URL parses).
    pub fn new(cfg: &WebhookConfig) -> Result<WebhookSink, String> {
        Ok(WebhookSink {
            target: Target::parse(&cfg.url)?,
            cfg: cfg.clone(),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The delay before retry number `attempt` (0-based): exponential, capped, equal jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_ms
            .saturating_mul(1u64 << attempt.min(30))
            .min(self.cfg.backoff_max_ms);
        let mut r = [0u8; 8];
        let rand =
            ring::rand::SecureRandom::fill(&self.rng, &mut r).map_or(0, |()| u64::from_le_bytes(r));
        let half = exp / 2;
        Duration::from_millis(half + rand % (exp - half + 1))
    }

    async fn post(&self, body: Bytes) -> Post {
        let t = &self.target;
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("connect to {}:{}: {e}", t.host, t.port))?;
            let _ = tcp.set_nodelay(true);
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("HTTP handshake with {}: {e}", t.authority))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::post(t.path.as_str())
                .header(hyper::header::HOST, t.authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::USER_AGENT, "dragnet-gateway")
                .body(Full::new(body))
                .map_err(|e| format!("building the request: {e}"))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| format!("POST to {}: {e}", t.authority))?;
            Ok::<u16, String>(resp.status().as_u16())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(status)) => Post::Status(status),
            Ok(Err(e)) => Post::Failed(e),
            Err(_) => Post::Failed(format!(
                "no answer from {} within {} ms",
                t.authority, self.cfg.timeout_ms
            )),
        }
    }

    /// Posts the lines as one JSON array, retrying as the policy says.
    pub async fn deliver(&mut self, lines: &[Bytes]) -> Delivery {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(l);
        }
        body.push(b']');
        let body = Bytes::from(body);
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            match self.post(body.clone()).await {
                Post::Status(s) if (200..300).contains(&s) => return Delivery::Done,
                Post::Status(s) if s == 429 || s >= 500 => {
                    last = format!("{} answered {s}", self.target.authority);
                }
                Post::Status(s) => {
                    return Delivery::Rejected(format!(
                        "{} refused the batch with {s}",
                        self.target.authority
                    ))
                }
                Post::Failed(e) => last = e,
            }
        }
        Delivery::Down {
            delivered: 0,
            reason: last,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_http_urls_only() {
        let t = Target::parse("http://hooks.example:8080/v1/hits?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("hooks.example", 8080, "/v1/hits?x=1")
        );
        assert_eq!(t.authority, "hooks.example:8080");
        let t = Target::parse("http://[2001:db8::1]").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("2001:db8::1", 80, "/")
        );
        for bad in [
            "",
            "https://x/",
            "http://",
            "http://h:0/",
            "http://h:x/",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let s = WebhookSink::new(&WebhookConfig {
            url: "http://h/".into(),
            backoff_ms: 100,
            backoff_max_ms: 1000,
            ..WebhookConfig::default()
        })
        .unwrap();
        for (attempt, lo, hi) in [(0, 50, 100), (1, 100, 200), (3, 400, 800), (9, 500, 1000)] {
            for _ in 0..50 {
                let d = s.backoff(attempt).as_millis() as u64;
                assert!((lo..=hi).contains(&d), "attempt {attempt}: {d}");
            }
        }
    }
}
