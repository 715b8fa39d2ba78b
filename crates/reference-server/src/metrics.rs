//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format: sessions,
//! subscriptions, messages in and out, replayed events, rejections by error code, closes by
//! close code, and the connections the accept loop holds, refused and timed out.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A direction of WebSocket messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `in` (from clients) or `out` (to clients).
    pub direction: &'static str,
}

/// An error code of the error table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The error code.
    pub code: String,
}

/// A close code of the close-code table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Close {
    /// The close code.
    pub code: u16,
}

/// An HTTP endpoint, by its name in `endpoints.json`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    /// The endpoint's name (`issue_ticket`, `publish`).
    pub endpoint: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// WebSocket sessions open now.
    pub sessions: Gauge,
    /// WebSocket sessions opened since start.
    pub sessions_opened: Counter,
    /// Subscriptions held now, over all sessions.
    pub subscriptions: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// WebSocket messages, by direction.
    pub messages: Family<Direction, Counter>,
    /// Events replayed to resuming subscribers.
    pub replayed: Counter<u64, AtomicU64>,
    /// Requests refused, over WebSocket or HTTP, by error code.
    pub rejections: Family<Reason, Counter>,
    /// Sessions the server closed, by close code.
    pub closes: Family<Close, Counter>,
    /// Sessions closed with 4410 because they fell behind their outbound queue limits.
    pub fell_behind: Counter,
    /// RPC calls run on the backend (repeats answered from the ledger are not counted).
    pub backend_calls: Counter,
    /// Channels this node follows now (some local session holds them).
    pub channels_followed: Gauge,
    /// Bytes of history this node holds over every channel (FERRY-RESUME-7); 0 with a broker
    /// that holds history elsewhere.
    pub history_bytes: Gauge,
    /// Publishes refused because the node's history was at its byte cap even after shedding
    /// the events past the resume window (FERRY-RESUME-7).
    pub history_full: Counter,
    /// HTTP requests refused with 429 because the caller's token bucket was empty
    /// (FERRY-RATE-4), by endpoint.
    pub http_rate_limited: Family<Endpoint, Counter>,
    /// Inbound WebSocket messages (the `in` series of `messages`), kept at hand for the hot path.
    pub messages_in: Counter,
    /// Outbound WebSocket messages (the `out` series of `messages`), kept at hand for the hot
    /// path.
    pub messages_out: Counter,
    /// TCP connections open now, WebSocket sessions included.
    pub connections: Gauge,
    /// Connections closed on accept because `max_connections` were open.
    pub connections_refused: Counter,
    /// Connections closed because a request head (or, on an idle keep-alive connection, the
    /// next request) did not arrive within the header read timeout.
    pub header_timeouts: Counter,
    /// TLS handshakes that failed or did not finish within the header read timeout.
    pub tls_handshakes_failed: Counter,
    /// Connections open now that have not presented a valid credential.
    pub unauthenticated_connections: Gauge,
    /// Connections closed on accept because `max_unauthenticated_connections` were open.
    pub unauthenticated_refused: Counter,
    /// HTTP connections closed because their peer took no response bytes within the write
    /// timeout.
    pub write_timeouts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let r = &mut registry;
        let messages: Family<Direction, Counter> = registered(
            r,
            "messages",
            "WebSocket messages, by direction",
            Family::default(),
        );
        let messages_in = messages
            .get_or_create(&Direction { direction: "in" })
            .clone();
        let messages_out = messages
            .get_or_create(&Direction { direction: "out" })
            .clone();
        Self {
            sessions: registered(
                r,
                "sessions",
                "WebSocket sessions open now",
                Gauge::default(),
            ),
            sessions_opened: registered(
                r,
                "sessions_opened",
                "WebSocket sessions opened since start",
                Counter::default(),
            ),
            subscriptions: registered(
                r,
                "subscriptions",
                "Subscriptions held now, over all sessions",
                Gauge::default(),
            ),
            messages,
            messages_in,
            messages_out,
            replayed: registered(
                r,
                "replayed_events",
                "Events replayed to resuming subscribers",
                Counter::default(),
            ),
            rejections: registered(
                r,
                "rejections",
                "Requests refused, by error code",
                Family::default(),
            ),
            closes: registered(
                r,
                "closes",
                "Sessions the server closed, by close code",
                Family::default(),
            ),
            fell_behind: registered(
                r,
                "sessions_fell_behind",
                "Sessions closed with 4410 because they fell behind their outbound queue limits",
                Counter::default(),
            ),
            backend_calls: registered(
                r,
                "backend_calls",
                "RPC calls run on the backend (repeats answered from the ledger are not counted)",
                Counter::default(),
            ),
            channels_followed: registered(
                r,
                "channels_followed",
                "Channels this node follows now (some local session holds them)",
                Gauge::default(),
            ),
            history_bytes: registered(
                r,
                "history_bytes",
                "Bytes of history this node holds over every channel",
                Gauge::default(),
            ),
            history_full: registered(
                r,
                "history_full",
                "Publishes refused because the node's history was at its byte cap",
                Counter::default(),
            ),
            http_rate_limited: registered(
                r,
                "http_rate_limited",
                "HTTP requests refused with 429 because the caller's token bucket was empty, by endpoint",
                Family::default(),
            ),
            connections: registered(
                r,
                "connections",
                "TCP connections open now, WebSocket sessions included",
                Gauge::default(),
            ),
            connections_refused: registered(
                r,
                "connections_refused",
                "Connections closed on accept because max_connections were open",
                Counter::default(),
            ),
            header_timeouts: registered(
                r,
                "header_timeouts",
                "Connections closed because no complete request head arrived within the header read timeout (a stalled request, or an idle keep-alive connection)",
                Counter::default(),
            ),
            tls_handshakes_failed: registered(
                r,
                "tls_handshakes_failed",
                "TLS handshakes that failed or did not finish within the header read timeout",
                Counter::default(),
            ),
            unauthenticated_connections: registered(
                r,
                "unauthenticated_connections",
                "Connections open now that have not presented a valid credential",
                Gauge::default(),
            ),
            unauthenticated_refused: registered(
                r,
                "unauthenticated_refused",
                "Connections closed on accept because max_unauthenticated_connections were open",
                Counter::default(),
            ),
            write_timeouts: registered(
                r,
                "write_timeouts",
                "HTTP connections closed because their peer took no response bytes within the write timeout",
                Counter::default(),
            ),
            registry,
        }
    }
}

/// Registers `metric` under `name` and returns it (the registry keeps a handle on the same
/// values).
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Counts a refusal with this error code.
    pub fn reject(&self, code: &str) {
        self.rejections
            .get_or_create(&Reason {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts a publish the broker refused, when it was for the history cap.
    pub fn publish_failed(&self, error: &crate::broker::BrokerError) {
        if matches!(error, crate::broker::BrokerError::HistoryFull { .. }) {
            self.history_full.inc();
        }
    }

    /// Counts a close the server sent.
    pub fn close(&self, code: u16) {
        self.closes.get_or_create(&Close { code }).inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The metrics in Prometheus' classic text format (version 0.0.4), for scrapers and tools
    /// that do not ask for OpenMetrics (`promtool check metrics`, curl).
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// The content type of [`Metrics::encode_classic`].
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as classic Prometheus text: a counter family is named by its
/// samples (`ferry_closes_total`, where OpenMetrics says `ferry_closes`), and the `# UNIT` and
/// `# EOF` lines, which the classic format does not have, go.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counter_families_by_their_samples() {
        let metrics = Metrics::default();
        metrics.close(1012);
        metrics.sessions_opened.inc();
        let text = metrics.encode_classic();
        assert!(
            text.contains("# HELP ferry_closes_total Sessions the server closed"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ferry_closes_total counter\nferry_closes_total{code=\"1012\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE ferry_sessions gauge"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}
