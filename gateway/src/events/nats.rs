//! The NATS JetStream sink: each event published to `subject`, acknowledged by the stream.
//!
//! The client connects in the background and reconnects by itself (quickly: 100 ms doubling to
//! 2 s), so a server that is down at start or goes away later only makes the sink report
//! `Down` and the events spool. While disconnected nothing is published: the client would buffer
//! it and replay it on reconnect, ahead of what waits in the spool, and break the order. Each
//! message carries `Nats-Msg-Id` = the event id, so a message whose ack was lost and which is
//! sent again from the spool is stored once (JetStream deduplication window).

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use bytes::Bytes;

use super::config::NatsConfig;
use super::sink::Delivery;

/// The NATS sink.
pub struct NatsSink {
    cfg: NatsConfig,
    js: Option<jetstream::Context>,
    client: Option<async_nats::Client>,
    stream_ready: bool,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.cfg.url)
            .field("subject", &self.cfg.subject)
            .field("connected", &self.connected())
            .finish()
    }
}

/// The event id at the start of a line (`{"id":"…"`), for `Nats-Msg-Id`.
pub fn line_id(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(b"{\"id\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

impl NatsSink {
    pub fn new(cfg: &NatsConfig) -> NatsSink {
        NatsSink {
            cfg: cfg.clone(),
            js: None,
            client: None,
            stream_ready: false,
        }
    }

    fn connected(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.connection_state() == State::Connected)
    }

    async fn context(&mut self) -> Result<jetstream::Context, String> {
        if self.js.is_none() {
            let client = async_nats::ConnectOptions::new()
                .name("dragnet-gateway")
                .retry_on_initial_connect()
                .max_reconnects(None)
                .connection_timeout(Duration::from_millis(self.cfg.ack_timeout_ms))
                .reconnect_delay_callback(|n| {
                    Duration::from_millis(100u64.saturating_mul(1 << n.min(5)).min(2000))
                })
                .connect(self.cfg.url.as_str())
                .await
                .map_err(|e| format!("NATS {}: {e}", self.cfg.url))?;
            let mut js = jetstream::new(client.clone());
            js.set_timeout(Duration::from_millis(self.cfg.ack_timeout_ms));
            self.client = Some(client);
            self.js = Some(js);
        }
        if !self.connected() {
            return Err(format!("NATS {}: not connected", self.cfg.url));
        }
        let js = self
            .js
            .clone()
            .ok_or_else(|| format!("NATS {}: no client", self.cfg.url))?;
        if !self.stream_ready && !self.cfg.stream.is_empty() {
            js.get_or_create_stream(jetstream::stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![self.cfg.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("NATS stream {:?}: {e}", self.cfg.stream))?;
        }
        self.stream_ready = true;
        Ok(js)
    }

    /// Publishes the lines in order and waits for every ack. `Down` says how many leading
    /// lines were acknowledged.
    pub async fn deliver(&mut self, lines: &[Bytes]) -> Delivery {
        let js = match self.context().await {
            Ok(js) => js,
            Err(reason) => {
                return Delivery::Down {
                    delivered: 0,
                    reason,
                }
            }
        };
        let mut acks = Vec::with_capacity(lines.len());
        let mut failed = None;
        for l in lines {
            let mut h = async_nats::HeaderMap::new();
            if let Some(id) = line_id(l) {
                h.insert("Nats-Msg-Id", id);
            }
            match js
                .publish_with_headers(self.cfg.subject.clone(), h, l.clone())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    failed = Some(format!("NATS publish to {}: {e}", self.cfg.subject));
                    break;
                }
            }
        }
        let mut delivered = 0;
        for ack in acks {
            match ack.await {
                Ok(_) if failed.is_none() => delivered += 1,
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert_with(|| format!("NATS ack on {}: {e}", self.cfg.subject));
                }
            }
        }
        match failed {
            None => Delivery::Done,
            Some(reason) => {
                // A missing stream is a configuration problem, but it heals when the operator
                // creates it: treat it like an outage, and try to create ours again.
                self.stream_ready = false;
                Delivery::Down { delivered, reason }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id() {
        assert_eq!(line_id(br#"{"id":"19a-7","ts_ms":1}"#), Some("19a-7"));
        assert_eq!(line_id(br#"{"ts_ms":1}"#), None);
        assert_eq!(line_id(br#"{"id":"unterminated"#), None);
    }
}
