//! The tasks behind the queue: one consumer that turns queued hits into JSON lines, and one
//! runner per sink that batches them, delivers them, and spools them while the sink is down.
//!
//! Order: the consumer hands lines to every runner in queue order; a runner that has anything
//! spooled appends new lines behind it and drains the spool oldest first, so a sink sees events
//! in emit order even across an outage. A runner's channel is bounded; when a runner is stuck
//! in a retry the consumer waits for it, the bounded queue fills, and new hits are dropped and
//! counted there (`queue_full`) — the data path itself never waits.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::EventsConfig;
use super::file::FileSink;
use super::nats::NatsSink;
use super::record::Hasher;
use super::spool::Spool;
use super::webhook::WebhookSink;
use super::{Events, EventsMetrics, LogSampler, Receiver};

/// What a sink made of a batch.
#[derive(Debug)]
pub enum Delivery {
    /// All delivered.
    Done,
    /// The sink is unreachable: the first `delivered` lines arrived, the rest must wait.
    Down { delivered: usize, reason: String },
    /// The receiver refused the batch for its content: resending cannot help.
    Rejected(String),
}

/// One configured sink.
#[derive(Debug)]
pub enum Sink {
    File(FileSink),
    Webhook(WebhookSink),
    Nats(Box<NatsSink>),
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::File(_) => "file",
            Sink::Webhook(_) => "webhook",
            Sink::Nats(_) => "nats",
        }
    }

    async fn deliver(&mut self, lines: &[Bytes]) -> Delivery {
        match self {
            Sink::File(f) => match f.write(lines) {
                Ok(()) => Delivery::Done,
                Err(e) => Delivery::Down {
                    delivered: 0,
                    reason: format!("writing the event file: {e}"),
                },
            },
            Sink::Webhook(w) => w.deliver(lines).await,
            Sink::Nats(n) => n.deliver(lines).await,
        }
    }
}

/// Why the event pipeline could not start.
#[derive(Debug)]
pub enum StartError {
    /// `events.hash_key_file` and friends (see [`EventsConfig::validate`]).
    Config(crate::config::ConfigError),
    /// The spool directory of a sink could not be opened.
    Spool {
        dir: std::path::PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Spool { dir, error } => write!(
                f,
                "events.spool_dir: cannot open the spool {}: {error}",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// The running pipeline; [`EventsTask::shutdown`] drains it.
#[derive(Debug)]
pub struct EventsTask {
    stop: Arc<AtomicBool>,
    consumer: Option<JoinHandle<()>>,
    runners: Vec<JoinHandle<()>>,
}

impl EventsTask {
    /// Delivers what is queued (or spools it), then stops every task. Events emitted after
    /// this call may be lost.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.consumer.take() {
            let _ = c.await;
        }
        for r in self.runners.drain(..) {
            let _ = r.await;
        }
    }
}

impl Drop for EventsTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the consumer looks at an empty queue. The data path does not wake it (that
/// would take a lock or a syscall per hit), so an event waits at most this long for it.
const POLL: Duration = Duration::from_millis(5);

/// Lines a runner's channel holds.
const RUNNER_CHANNEL: usize = 4096;

/// Starts the pipeline for a validated `[events]`: reads the key, opens the spools, spawns the
/// consumer and one runner per enabled sink on the current tokio runtime. `events.enabled =
/// false` gives [`Events::off`] and no task.
pub fn start(
    cfg: &EventsConfig,
    metrics: EventsMetrics,
) -> Result<(Events, EventsTask), StartError> {
    let stop = Arc::new(AtomicBool::new(false));
    if !cfg.enabled {
        return Ok((
            Events::off(),
            EventsTask {
                stop,
                consumer: None,
                runners: Vec::new(),
            },
        ));
    }
    cfg.validate().map_err(StartError::Config)?;
    let key = cfg.load_key().map_err(StartError::Config)?;
    let hasher = Hasher::new(key.as_deref(), cfg);
    let mut sinks = Vec::new();
    if cfg.file.enabled {
        sinks.push((
            Sink::File(FileSink::new(&cfg.file)),
            64,
            Duration::from_millis(200),
        ));
    }
    if cfg.webhook.enabled {
        let w = WebhookSink::new(&cfg.webhook).map_err(|reason| {
            StartError::Config(crate::config::ConfigError {
                key: "events.webhook.url".into(),
                reason,
            })
        })?;
        sinks.push((
            Sink::Webhook(w),
            cfg.webhook.batch,
            Duration::from_millis(cfg.webhook.flush_ms),
        ));
    }
    if cfg.nats.enabled {
        sinks.push((
            Sink::Nats(Box::new(NatsSink::new(&cfg.nats))),
            256,
            Duration::from_millis(20),
        ));
    }
    let mut txs = Vec::new();
    let mut runners = Vec::new();
    for (sink, batch, flush) in sinks {
        let name = sink.name();
        let dir = cfg.spool_dir.join(name);
        let spool = open_spool(&dir, cfg.spool_max_bytes, &metrics, name)
            .map_err(|error| StartError::Spool { dir, error })?;
        let (tx, rx) = mpsc::channel(RUNNER_CHANNEL);
        txs.push(tx);
        let runner = Runner {
            sink,
            spool,
            batch: batch.max(1),
            flush,
            delivered: metrics
                .delivered
                .get_or_create(&vec![("sink", name)])
                .clone(),
            rejected: metrics.dropped_handle("rejected"),
            up: metrics.sink_up.get_or_create(&vec![("sink", name)]).clone(),
            backoff: Duration::ZERO,
        };
        runners.push(tokio::spawn(runner.run(rx)));
    }
    let (events, rx) = Events::channel(cfg.queue, metrics.clone());
    let consumer = Consumer {
        rx,
        hasher,
        sampler: LogSampler::new(cfg.log_sample),
        start_ms: crate::unix_now().saturating_mul(1000),
        encode_failed: metrics.dropped_handle("encode"),
        txs,
        stop: stop.clone(),
    };
    let consumer = tokio::spawn(consumer.run());
    Ok((
        events,
        EventsTask {
            stop,
            consumer: Some(consumer),
            runners,
        },
    ))
}

fn open_spool(
    dir: &Path,
    max: u64,
    m: &EventsMetrics,
    name: &'static str,
) -> std::io::Result<Spool> {
    Spool::open(
        dir,
        max,
        m.dropped_handle("spool_full"),
        m.spooled_bytes.get_or_create(&vec![("sink", name)]).clone(),
    )
}

struct Consumer {
    rx: Receiver,
    hasher: Hasher,
    sampler: LogSampler,
    start_ms: u64,
    encode_failed: Counter,
    txs: Vec<mpsc::Sender<Bytes>>,
    stop: Arc<AtomicBool>,
}

impl Consumer {
    async fn run(self) {
        loop {
            // Read the flag before draining: whatever was queued before shutdown is delivered.
            let stopping = self.stop.load(Ordering::Relaxed);
            let mut n = 0u32;
            while let Some(e) = self.rx.pop() {
                let rec = self.hasher.record(&e, self.start_ms);
                if self.sampler.sample(e.plane) {
                    tracing::info!(
                        target: "dragnet_gateway::events::hit",
                        plane = rec.plane,
                        action = rec.action,
                        category = %rec.category,
                        rule = %rec.rule,
                        source = rec.source.as_deref().unwrap_or(""),
                        caller = rec.caller.as_deref().unwrap_or(""),
                        callee = rec.callee.as_deref().unwrap_or(""),
                        domain = rec.domain.as_deref().unwrap_or(""),
                        "hit (sampled)"
                    );
                }
                let line = match serde_json::to_vec(&rec) {
                    Ok(v) => Bytes::from(v),
                    Err(_) => {
                        self.encode_failed.inc();
                        continue;
                    }
                };
                for tx in &self.txs {
                    // A closed runner (it panicked) is not waited on.
                    let _ = tx.send(line.clone()).await;
                }
                n += 1;
                if n % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if stopping {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

struct Runner {
    sink: Sink,
    spool: Spool,
    batch: usize,
    flush: Duration,
    delivered: Counter,
    rejected: Counter,
    up: Gauge,
    backoff: Duration,
}

/// Retry of a down sink's spool: 100 ms doubling to 10 s (the webhook's own retries come first).
const SPOOL_RETRY_MIN: Duration = Duration::from_millis(100);
const SPOOL_RETRY_MAX: Duration = Duration::from_secs(10);

impl Runner {
    async fn run(mut self, mut rx: mpsc::Receiver<Bytes>) {
        self.up.set(1);
        let mut pending: Vec<Bytes> = Vec::new();
        let mut flush_at = Instant::now();
        // What a previous run left in the spool goes first.
        let mut retry_at = (!self.spool.is_empty()).then(Instant::now);
        let mut closed = false;
        loop {
            let wake = match (pending.is_empty(), retry_at) {
                (false, Some(r)) => Some(r.min(flush_at)),
                (false, None) => Some(flush_at),
                (true, r) => r,
            };
            if !closed {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(line) => {
                            if pending.is_empty() {
                                flush_at = Instant::now() + self.flush;
                            }
                            pending.push(line);
                            if pending.len() < self.batch {
                                continue;
                            }
                        }
                        None => closed = true,
                    },
                    () = sleep_until(wake) => {}
                }
            }
            let now = Instant::now();
            if !pending.is_empty() && (pending.len() >= self.batch || now >= flush_at || closed) {
                let batch = std::mem::take(&mut pending);
                if self.spool.is_empty() && retry_at.is_none() {
                    self.send(&batch, &mut retry_at).await;
                } else {
                    self.spool_lines(&batch);
                }
            }
            if !self.spool.is_empty() && retry_at.is_none_or(|t| now >= t) {
                retry_at = None;
                self.drain_spool(&mut rx, &mut retry_at, closed).await;
            }
            if closed && pending.is_empty() && (self.spool.is_empty() || retry_at.is_some()) {
                return;
            }
        }
    }

    fn spool_lines(&mut self, lines: &[Bytes]) {
        if let Err(e) = self.spool.append(lines) {
            tracing::warn!(sink = self.sink.name(), error = %e, lost = lines.len(),
                "cannot write the event spool; events lost");
        }
    }

    fn down(&mut self, reason: &str, retry_at: &mut Option<Instant>) {
        if self.up.get() != 0 {
            tracing::warn!(sink = self.sink.name(), %reason, "event sink down; spooling events");
        }
        self.up.set(0);
        self.backoff = (self.backoff * 2).clamp(SPOOL_RETRY_MIN, SPOOL_RETRY_MAX);
        *retry_at = Some(Instant::now() + self.backoff);
    }

    fn recovered(&mut self) {
        if self.up.get() == 0 {
            tracing::info!(
                sink = self.sink.name(),
                "event sink back; delivering the spool"
            );
        }
        self.up.set(1);
        self.backoff = Duration::ZERO;
    }

    /// Delivers a fresh batch; what does not arrive goes to the spool.
    async fn send(&mut self, batch: &[Bytes], retry_at: &mut Option<Instant>) {
        match self.sink.deliver(batch).await {
            Delivery::Done => {
                self.delivered.inc_by(batch.len() as u64);
                self.recovered();
            }
            Delivery::Down { delivered, reason } => {
                let delivered = delivered.min(batch.len());
                self.delivered.inc_by(delivered as u64);
                self.spool_lines(&batch[delivered..]);
                self.down(&reason, retry_at);
            }
            Delivery::Rejected(reason) => {
                tracing::warn!(sink = self.sink.name(), %reason, lost = batch.len(),
                    "event sink refused a batch; dropped");
                self.rejected.inc_by(batch.len() as u64);
            }
        }
    }

    /// Delivers the spool oldest first until it is empty or the sink fails again; lines that
    /// arrive meanwhile are appended behind it.
    async fn drain_spool(
        &mut self,
        rx: &mut mpsc::Receiver<Bytes>,
        retry_at: &mut Option<Instant>,
        closed: bool,
    ) {
        loop {
            if !closed {
                let mut fresh = Vec::new();
                while let Ok(l) = rx.try_recv() {
                    fresh.push(l);
                    if fresh.len() >= self.batch {
                        self.spool_lines(&fresh);
                        fresh.clear();
                    }
                }
                self.spool_lines(&fresh);
            }
            let lines = match self.spool.peek(self.batch) {
                Ok(l) if l.is_empty() => return,
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(sink = self.sink.name(), error = %e, "cannot read the event spool");
                    self.down("spool unreadable", retry_at);
                    return;
                }
            };
            let (consumed, ok) = match self.sink.deliver(&lines).await {
                Delivery::Done => {
                    self.delivered.inc_by(lines.len() as u64);
                    self.recovered();
                    (lines.len(), true)
                }
                Delivery::Down { delivered, reason } => {
                    let d = delivered.min(lines.len());
                    self.delivered.inc_by(d as u64);
                    self.down(&reason, retry_at);
                    (d, false)
                }
                Delivery::Rejected(reason) => {
                    tracing::warn!(sink = self.sink.name(), %reason, lost = lines.len(),
                        "event sink refused a spooled batch; dropped");
                    self.rejected.inc_by(lines.len() as u64);
                    (lines.len(), true)
                }
            };
            if let Err(e) = self.spool.consume(consumed) {
                tracing::warn!(sink = self.sink.name(), error = %e, "cannot trim the event spool");
            }
            if !ok {
                return;
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
