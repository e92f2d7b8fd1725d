//! Prometheus metrics (prometheus-client, text exposition at the admin `/metrics`).
//!
//! The data path only ever does one relaxed atomic add per counter: every labelled counter it
//! touches is created at start and held as a handle (no family lookup, no lock), hit counts per
//! category live in the snapshot [`Store`](crate::store::Store), and the latency histogram is
//! a fixed array of atomic buckets. Scrapes read them through a collector.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::check::Endpoint;
use crate::store::Store;

/// Upper bounds (seconds) of the latency buckets: 1 µs … 100 ms.
pub const LATENCY_BUCKETS: [f64; 16] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1,
];

/// A lock-free histogram with fixed buckets (nanosecond input).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let s = ns as f64 * 1e-9;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn encode(&self, name: &str, help: &str, e: &mut DescriptorEncoder) -> std::fmt::Result {
        // The encoder accumulates: hand it the count of each bucket alone.
        let mut b = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut total = 0u64;
        for (i, ub) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            total += n;
            b.push((*ub, n));
        }
        let n = self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        total += n;
        b.push((f64::INFINITY, n));
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        let mut me = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
        me.encode_histogram::<Vec<(String, String)>>(sum, total, &b, None)
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// SIP plane counters.
#[derive(Debug, Clone)]
pub struct SipMetrics {
    /// Messages received, by transport and kind.
    pub rx_udp_request: Counter,
    pub rx_udp_response: Counter,
    pub rx_tcp_request: Counter,
    pub rx_tcp_response: Counter,
    /// Requests forwarded and responses relayed.
    pub forwarded_requests: Counter,
    pub forwarded_responses: Counter,
    /// INVITE retransmissions (and their ACK/CANCEL) answered from the transaction cache.
    pub cache_hits: Counter,
    pub acks_absorbed: Counter,
    /// Locally generated responses by status.
    pub responses: ResponseCounters,
    /// Parse errors by kind.
    pub parse_errors: Family<Labels, Counter>,
    /// Dropped messages by reason.
    pub drops: DropCounters,
    /// Internal errors that failed open (the request was forwarded unscreened).
    pub fail_open: Counter,
    /// Overload: requests answered 503 (or dropped) because the queue was full.
    pub overload: Counter,
    /// TCP connections accepted / refused at the limit.
    pub tcp_accepted: Counter,
    pub tcp_refused: Counter,
    /// Time from the datagram in hand to the bytes out, per screened INVITE.
    pub screen_latency: Arc<Histogram>,
    /// 1 for the running mode (`proxy` or `redirect`).
    pub mode: Family<Labels, Gauge>,
}

/// Responses we generate, by status code (a fixed set; others count as `other`).
#[derive(Debug, Clone)]
pub struct ResponseCounters {
    fam: Family<Labels, Counter>,
    pub r200: Counter,
    pub r302: Counter,
    pub r400: Counter,
    pub r416: Counter,
    pub r420: Counter,
    pub r481: Counter,
    pub r483: Counter,
    pub r503: Counter,
    pub r505: Counter,
    pub r603: Counter,
    pub r607: Counter,
    pub r608: Counter,
    pub other: Counter,
}

impl ResponseCounters {
    fn new(fam: Family<Labels, Counter>) -> Self {
        let c = |code: &'static str| fam.get_or_create(&vec![("code", code)]).clone();
        ResponseCounters {
            r200: c("200"),
            r302: c("302"),
            r400: c("400"),
            r416: c("416"),
            r420: c("420"),
            r481: c("481"),
            r483: c("483"),
            r503: c("503"),
            r505: c("505"),
            r603: c("603"),
            r607: c("607"),
            r608: c("608"),
            other: c("other"),
            fam,
        }
    }

    #[inline]
    pub fn count(&self, code: u16) {
        match code {
            200 => &self.r200,
            302 => &self.r302,
            400 => &self.r400,
            416 => &self.r416,
            420 => &self.r420,
            481 => &self.r481,
            483 => &self.r483,
            503 => &self.r503,
            505 => &self.r505,
            603 => &self.r603,
            607 => &self.r607,
            608 => &self.r608,
            _ => &self.other,
        }
        .inc();
    }

    /// The count for one code label (tests and status).
    pub fn get(&self, code: &'static str) -> u64 {
        self.fam.get_or_create(&vec![("code", code)]).get()
    }
}

/// Why a message was dropped.
#[derive(Debug, Clone)]
pub struct DropCounters {
    fam: Family<Labels, Counter>,
    /// Unparseable and no response can be routed.
    pub unroutable: Counter,
    /// A response whose top Via is not ours, or has no usable next Via.
    pub stray_response: Counter,
    /// A request from an unknown peer whose target is not the next hop (no open relay).
    pub relay_denied: Counter,
    /// The TCP connection a response belongs to is gone.
    pub connection_gone: Counter,
    /// Sending failed (socket error).
    pub send_failed: Counter,
    /// Overload beyond even a 503.
    pub overload: Counter,
    /// A request that would loop back to us.
    pub loop_detected: Counter,
}

impl DropCounters {
    fn new(fam: Family<Labels, Counter>) -> Self {
        let c = |r: &'static str| fam.get_or_create(&vec![("reason", r)]).clone();
        DropCounters {
            unroutable: c("unroutable"),
            stray_response: c("stray_response"),
            relay_denied: c("relay_denied"),
            connection_gone: c("connection_gone"),
            send_failed: c("send_failed"),
            overload: c("overload"),
            loop_detected: c("loop"),
            fam,
        }
    }

    pub fn get(&self, r: &'static str) -> u64 {
        self.fam.get_or_create(&vec![("reason", r)]).get()
    }
}

impl SipMetrics {
    fn register(reg: &mut Registry) -> SipMetrics {
        let rx: Family<Labels, Counter> = Family::default();
        let c = |t: &'static str, k: &'static str| {
            rx.get_or_create(&vec![("transport", t), ("kind", k)])
                .clone()
        };
        let m = SipMetrics {
            rx_udp_request: c("udp", "request"),
            rx_udp_response: c("udp", "response"),
            rx_tcp_request: c("tcp", "request"),
            rx_tcp_response: c("tcp", "response"),
            forwarded_requests: Counter::default(),
            forwarded_responses: Counter::default(),
            cache_hits: Counter::default(),
            acks_absorbed: Counter::default(),
            responses: ResponseCounters::new(Family::default()),
            parse_errors: Family::default(),
            drops: DropCounters::new(Family::default()),
            fail_open: Counter::default(),
            overload: Counter::default(),
            tcp_accepted: Counter::default(),
            tcp_refused: Counter::default(),
            screen_latency: Arc::new(Histogram::default()),
            mode: Family::default(),
        };
        let r = reg.sub_registry_with_prefix("sip");
        r.register("messages_received", "SIP messages received", rx);
        r.register(
            "requests_forwarded",
            "Requests forwarded statelessly",
            m.forwarded_requests.clone(),
        );
        r.register(
            "responses_forwarded",
            "Responses relayed back along the Via path",
            m.forwarded_responses.clone(),
        );
        r.register(
            "transaction_cache_hits",
            "Retransmitted INVITEs, ACKs and CANCELs answered from the per-transaction verdict cache",
            m.cache_hits.clone(),
        );
        r.register(
            "acks_absorbed",
            "Hop-by-hop ACKs to our own final responses, absorbed",
            m.acks_absorbed.clone(),
        );
        r.register(
            "responses_sent",
            "Responses generated by the gateway, by status code",
            m.responses.fam.clone(),
        );
        r.register(
            "parse_errors",
            "Messages refused by the parser, by reason",
            m.parse_errors.clone(),
        );
        r.register(
            "dropped",
            "Messages dropped, by reason",
            m.drops.fam.clone(),
        );
        r.register(
            "fail_open",
            "Internal errors that let a request through unscreened (fail open)",
            m.fail_open.clone(),
        );
        r.register(
            "overload",
            "Requests refused with 503 (or dropped) because the worker queue was full",
            m.overload.clone(),
        );
        r.register(
            "mode",
            "The SIP plane's mode (proxy or redirect): 1 for the running one",
            m.mode.clone(),
        );
        r.register(
            "tcp_connections_accepted",
            "TCP connections accepted",
            m.tcp_accepted.clone(),
        );
        r.register(
            "tcp_connections_refused",
            "TCP connections closed at once because max_tcp_connections was reached",
            m.tcp_refused.clone(),
        );
        m
    }

    /// Counts a parse error under a short stable reason label.
    pub fn parse_error(&self, e: &crate::sip::ParseError) {
        use crate::sip::ParseError as P;
        let reason: &'static str = match e {
            P::Empty => "empty",
            P::TooLarge => "too_large",
            P::NoHeaderEnd => "no_header_end",
            P::BadStartLine(_) => "bad_start_line",
            P::BadRequestUri => "bad_request_uri",
            P::BadHeaderLine(_) => "bad_header_line",
            P::TooManyHeaders => "too_many_headers",
            P::BadContentLength => "bad_content_length",
            P::MissingContentLength => "missing_content_length",
            P::MissingHeader(_) => "missing_header",
            P::BadHeader { .. } => "bad_header",
            P::CseqMismatch => "cseq_mismatch",
            P::BadUri(_) => "bad_uri",
        };
        // A family lookup (read lock) only on the error path.
        self.parse_errors
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }
}

/// DNS plane counters.
#[derive(Debug, Clone)]
pub struct DnsMetrics {
    /// Well-formed queries received.
    pub queries: Counter,
    /// Queries that could not be parsed (FORMERR/NOTIMP/BADVERS sent when possible).
    pub malformed: Counter,
    /// Queries not answered at all (unreadable, RPZ drop).
    pub dropped: Counter,
    /// Clients outside `dns.allow` (REFUSED).
    pub refused_clients: Counter,
    /// Clients over `dns.rate_limit` (REFUSED).
    pub rate_limited: Counter,
    answers: Family<Labels, Counter>,
    a_noerror: Counter,
    a_nxdomain: Counter,
    a_servfail: Counter,
    a_refused: Counter,
    a_formerr: Counter,
    a_other: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// Queries sent upstream, and their failures.
    pub forwarded: Counter,
    pub upstream_timeouts: Counter,
    pub upstream_errors: Counter,
    /// Truncated upstream answers retried over TCP (RFC 7766).
    pub tcp_retries: Counter,
    /// Answers that could not be sent to the client (socket error).
    pub send_failed: Counter,
    /// Queries received over DNS-over-QUIC (RFC 9250): complete messages read from a stream.
    pub doq_queries: Counter,
    /// DoQ streams abandoned for a protocol error (RFC 9250 §4.3.3: incomplete message,
    /// non-zero Message ID, read timeout); the stream is reset, the connection kept.
    pub doq_protocol_errors: Counter,
    /// Upstream round trip.
    pub upstream_latency: Arc<Histogram>,
}

impl DnsMetrics {
    fn register(reg: &mut Registry) -> DnsMetrics {
        let answers: Family<Labels, Counter> = Family::default();
        let c = |r: &'static str| answers.get_or_create(&vec![("rcode", r)]).clone();
        let m = DnsMetrics {
            queries: Counter::default(),
            malformed: Counter::default(),
            dropped: Counter::default(),
            refused_clients: Counter::default(),
            rate_limited: Counter::default(),
            a_noerror: c("noerror"),
            a_nxdomain: c("nxdomain"),
            a_servfail: c("servfail"),
            a_refused: c("refused"),
            a_formerr: c("formerr"),
            a_other: c("other"),
            answers,
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            forwarded: Counter::default(),
            upstream_timeouts: Counter::default(),
            upstream_errors: Counter::default(),
            tcp_retries: Counter::default(),
            send_failed: Counter::default(),
            doq_queries: Counter::default(),
            doq_protocol_errors: Counter::default(),
            upstream_latency: Arc::new(Histogram::default()),
        };
        let r = reg.sub_registry_with_prefix("dns");
        r.register(
            "queries",
            "Well-formed DNS queries received",
            m.queries.clone(),
        );
        r.register(
            "malformed",
            "Queries that could not be parsed",
            m.malformed.clone(),
        );
        r.register(
            "dropped",
            "Queries not answered (unreadable, RPZ drop)",
            m.dropped.clone(),
        );
        r.register(
            "refused_clients",
            "Queries from clients outside dns.allow",
            m.refused_clients.clone(),
        );
        r.register(
            "send_failed",
            "Answers that could not be sent to the client",
            m.send_failed.clone(),
        );
        r.register(
            "rate_limited",
            "Queries over the per-client rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "answers",
            "Answers the gateway built itself (policy, errors), by RCODE",
            m.answers.clone(),
        );
        r.register(
            "cache_hits",
            "Queries answered from the packet cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Forwardable queries not in the cache",
            m.cache_misses.clone(),
        );
        r.register(
            "forwarded",
            "Queries sent to an upstream resolver",
            m.forwarded.clone(),
        );
        r.register(
            "upstream_timeouts",
            "Upstream queries that timed out (SERVFAIL sent)",
            m.upstream_timeouts.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream sends or answers that failed",
            m.upstream_errors.clone(),
        );
        r.register(
            "tcp_retries",
            "Truncated upstream answers retried over TCP",
            m.tcp_retries.clone(),
        );
        r.register(
            "doq_queries",
            "Queries received over DNS-over-QUIC (RFC 9250)",
            m.doq_queries.clone(),
        );
        r.register(
            "doq_protocol_errors",
            "DoQ streams reset for a protocol error (RFC 9250 section 4.3.3)",
            m.doq_protocol_errors.clone(),
        );
        m
    }

    /// Counts an answer we built, by RCODE label.
    #[inline]
    pub fn answered(&self, rcode: &'static str) {
        match rcode {
            "noerror" => &self.a_noerror,
            "nxdomain" => &self.a_nxdomain,
            "servfail" => &self.a_servfail,
            "refused" => &self.a_refused,
            "formerr" => &self.a_formerr,
            _ => &self.a_other,
        }
        .inc();
    }

    /// The count of answers with one RCODE label (tests, status).
    pub fn answers(&self, rcode: &'static str) -> u64 {
        self.answers.get_or_create(&vec![("rcode", rcode)]).get()
    }
}

/// Check API counters (`/v1/check/*`); verdicts are counted in the store under
/// `plane="check"`.
#[derive(Debug, Clone)]
pub struct CheckMetrics {
    requests: Family<Labels, Counter>,
    /// Handles resolved at start: `[endpoint][status]` in [`Endpoint::ALL`] × [`CHECK_STATUSES`]
    /// order, so counting a request is one atomic add.
    by_status: Arc<[Counter]>,
    item_errors: Family<Labels, Counter>,
    item_error: Arc<[Counter]>,
    /// From the request body in hand to the answer encoded; a batch is one observation.
    pub latency: Arc<Histogram>,
}

/// The statuses the check API answers with (the `status` label); any other counts as `other`.
pub const CHECK_STATUSES: [&str; 7] = ["200", "400", "413", "415", "422", "500", "other"];

impl CheckMetrics {
    fn register(reg: &mut Registry) -> CheckMetrics {
        let requests: Family<Labels, Counter> = Family::default();
        let item_errors: Family<Labels, Counter> = Family::default();
        let by_status = Endpoint::ALL
            .iter()
            .flat_map(|e| {
                CHECK_STATUSES.iter().map(|s| {
                    requests
                        .get_or_create(&vec![("endpoint", e.as_str()), ("status", *s)])
                        .clone()
                })
            })
            .collect();
        let item_error = Endpoint::ALL
            .iter()
            .map(|e| {
                item_errors
                    .get_or_create(&vec![("endpoint", e.as_str())])
                    .clone()
            })
            .collect();
        let m = CheckMetrics {
            requests,
            by_status,
            item_errors,
            item_error,
            latency: Arc::new(Histogram::default()),
        };
        let r = reg.sub_registry_with_prefix("check");
        r.register(
            "requests",
            "Check API requests, by endpoint and HTTP status",
            m.requests.clone(),
        );
        r.register(
            "item_errors",
            "Elements of batch check requests answered with an error (the request itself got 200)",
            m.item_errors.clone(),
        );
        m
    }

    /// Counts one answered request.
    #[inline]
    pub fn request(&self, endpoint: Endpoint, status: u16) {
        let s = match status {
            200 => 0,
            400 => 1,
            413 => 2,
            415 => 3,
            422 => 4,
            500 => 5,
            _ => 6,
        };
        if let Some(c) = self
            .by_status
            .get(endpoint as usize * CHECK_STATUSES.len() + s)
        {
            c.inc();
        }
    }

    /// Counts one batch element answered with an error.
    #[inline]
    pub fn item_error(&self, endpoint: Endpoint) {
        if let Some(c) = self.item_error.get(endpoint as usize) {
            c.inc();
        }
    }

    /// The count for one endpoint and status label (tests, status).
    pub fn requests(&self, endpoint: Endpoint, status: &'static str) -> u64 {
        self.requests
            .get_or_create(&vec![("endpoint", endpoint.as_str()), ("status", status)])
            .get()
    }

    /// The batch elements answered with an error, for one endpoint (tests, status).
    pub fn item_errors(&self, endpoint: Endpoint) -> u64 {
        self.item_errors
            .get_or_create(&vec![("endpoint", endpoint.as_str())])
            .get()
    }
}

/// Everything a gateway exports.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub sip: SipMetrics,
    pub dns: DnsMetrics,
    pub check: CheckMetrics,
    pub web_http: Arc<crate::web::http::HttpMetrics>,
    pub web_tls: Arc<crate::web::sni::SniMetrics>,
    pub web_quic: Arc<crate::web::quic_relay::QuicRelayMetrics>,
    /// Snapshot reloads refused (bad file, checksum, version …); the running one stayed.
    pub reload_failures: Counter,
    /// Snapshots installed and refused, by origin.
    pub snapshots: crate::snapshots::SnapshotMetrics,
    /// Mutating admin API requests.
    pub admin: crate::admin::AdminMetrics,
    /// Hit events: emitted, delivered, dropped, spooled, sink state.
    pub events: crate::events::EventsMetrics,
    /// The block-rate circuit breaker.
    pub breaker: crate::breaker::BreakerMetrics,
    /// The rules-server subscription (`[control]`); None when it is off.
    pub control: Option<crate::control::client::ControlMetrics>,
}

#[derive(Debug)]
struct StoreCollector {
    store: Arc<Store>,
    sip_latency: Arc<Histogram>,
    dns_latency: Arc<Histogram>,
    check_latency: Arc<Histogram>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let a = self.store.load();
        let g = ConstGauge::new(a.engine.version() as i64);
        g.encode(e.encode_descriptor(
            "dragnet_snapshot_version",
            "Rule-set version of the active snapshot",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(a.engine.rule_count() as i64);
        g.encode(e.encode_descriptor(
            "dragnet_snapshot_rules",
            "Rules in the active snapshot",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(self.store.loaded_at() as i64);
        g.encode(e.encode_descriptor(
            "dragnet_snapshot_loaded_timestamp_seconds",
            "When the active snapshot was loaded (Unix time)",
            None,
            g.metric_type(),
        )?)?;
        let c = ConstCounter::new(self.store.swaps());
        c.encode(e.encode_descriptor(
            "dragnet_snapshot_swaps",
            "Snapshots swapped in since start",
            None,
            c.metric_type(),
        )?)?;
        // Shadow mode: the candidate's version (0 = none) and what it would decide differently.
        let shadow = self.store.shadow();
        let g = ConstGauge::new(shadow.as_ref().map_or(0, |s| s.engine.version() as i64));
        g.encode(e.encode_descriptor(
            "dragnet_shadow_version",
            "Rule-set version of the candidate snapshot running in shadow (0 = none)",
            None,
            g.metric_type(),
        )?)?;
        if let Some(s) = &shadow {
            let mut me = e.encode_descriptor(
                "dragnet_shadow_compared",
                "Decisions also taken with the shadow candidate, by plane",
                None,
                MetricType::Counter,
            )?;
            for (plane, n) in s.compared() {
                ConstCounter::new(n).encode(me.encode_family(&[("plane", plane)])?)?;
            }
            let mut me = e.encode_descriptor(
                "dragnet_shadow_differences",
                "Decisions where the shadow candidate differs from the active snapshot, by plane, both actions and the candidate's category",
                None,
                MetricType::Counter,
            )?;
            for d in s.differences() {
                let labels = [
                    ("plane", d.plane),
                    ("active", d.active),
                    ("candidate", d.candidate),
                    ("category", d.category.as_str()),
                ];
                ConstCounter::new(d.count).encode(me.encode_family(&labels)?)?;
            }
        }
        let totals = self.store.hit_totals();
        let mut me = e.encode_descriptor(
            "dragnet_verdicts",
            "Decisions by plane, action and rule category (none = no rule matched)",
            None,
            MetricType::Counter,
        )?;
        for (plane, action, category, n) in &totals {
            let labels = [
                ("plane", plane.as_str()),
                ("action", *action),
                ("category", category.as_str()),
            ];
            let c = ConstCounter::new(*n);
            c.encode(me.encode_family(&labels)?)?;
        }
        self.sip_latency.encode(
            "dragnet_sip_screen_duration_seconds",
            "Per screened INVITE: from the message in hand to the answer or forward built",
            &mut e,
        )?;
        self.dns_latency.encode(
            "dragnet_dns_upstream_duration_seconds",
            "Upstream resolver round trip per forwarded query",
            &mut e,
        )?;
        self.check_latency.encode(
            "dragnet_check_duration_seconds",
            "Per check API request: from the body in hand to the answer encoded (a batch counts once)",
            &mut e,
        )
    }
}

impl Metrics {
    /// Every family of a gateway without a control-plane subscription.
    pub fn new(store: Arc<Store>) -> Metrics {
        Metrics::build(store, false)
    }

    /// With the control plane's families too (`dragnet_control_*`): only a gateway that
    /// subscribes exports them, so `dragnet_control_connected == 0` means "lost", never "not
    /// configured".
    pub fn with_control(store: Arc<Store>) -> Metrics {
        Metrics::build(store, true)
    }

    fn build(store: Arc<Store>, control: bool) -> Metrics {
        let mut registry = Registry::default();
        let sip = SipMetrics::register(registry.sub_registry_with_prefix("dragnet"));
        let dns = DnsMetrics::register(registry.sub_registry_with_prefix("dragnet"));
        let check = CheckMetrics::register(registry.sub_registry_with_prefix("dragnet"));
        let web_http = Arc::new(crate::web::http::HttpMetrics::new());
        web_http.register(
            registry
                .sub_registry_with_prefix("dragnet")
                .sub_registry_with_prefix("web"),
        );
        let web_tls = Arc::new(crate::web::sni::SniMetrics::default());
        web_tls.register(registry.sub_registry_with_prefix("dragnet"));
        let web_quic = Arc::new(crate::web::quic_relay::QuicRelayMetrics::default());
        web_quic.register(registry.sub_registry_with_prefix("dragnet"));
        let reload_failures = Counter::default();
        registry.register(
            "dragnet_snapshot_reload_failures",
            "Snapshot reloads refused (the running snapshot stayed)",
            reload_failures.clone(),
        );
        let snapshots = crate::snapshots::SnapshotMetrics::register(&mut registry);
        let admin = crate::admin::AdminMetrics::register(&mut registry);
        let events =
            crate::events::EventsMetrics::register(registry.sub_registry_with_prefix("dragnet"));
        let breaker =
            crate::breaker::BreakerMetrics::register(registry.sub_registry_with_prefix("dragnet"));
        let control = control.then(|| {
            crate::control::client::ControlMetrics::register(
                registry.sub_registry_with_prefix("dragnet"),
            )
        });
        registry.register_collector(Box::new(StoreCollector {
            store,
            sip_latency: sip.screen_latency.clone(),
            dns_latency: dns.upstream_latency.clone(),
            check_latency: check.latency.clone(),
        }));
        Metrics {
            registry,
            sip,
            dns,
            check,
            web_http,
            web_tls,
            web_quic,
            reload_failures,
            snapshots,
            admin,
            events,
            breaker,
            control,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
            s.push_str("# metrics encoding failed\n");
        }
        s
    }
}
