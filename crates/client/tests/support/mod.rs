//! The client's tests run against the real `ferry-server` (in memory, on a random loopback
//! port), with short timings and no declared namespaces, so any channel and payload will do.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use ferry_protocol::{Payload, PublishResponse};
use ferry_server::auth::Auth;
use ferry_server::broker::{Broker, MemoryBroker};
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use ferry_server::{Server, serve};
use serde_json::json;

/// A running server.
pub struct TestServer {
    pub url: String,
    /// The development token, with every right.
    pub token: String,
    server: Arc<Server<MemoryBroker>>,
}

impl TestServer {
    /// Starts a server whose channels keep the last `history` events and, with `window_ms`
    /// above 0, every event younger than that.
    pub async fn start(history: u64, window_ms: u64) -> Self {
        Self::start_with(history, window_ms, Namespaces::none()).await
    }

    /// [`start`](Self::start), serving the example application's namespaces: payloads are
    /// checked, `project:*:approvals` keeps presence and `daemon:*:output` is exclusive.
    pub async fn example_app(history: u64, window_ms: u64) -> Self {
        Self::start_with(history, window_ms, Namespaces::example_app()).await
    }

    async fn start_with(history: u64, window_ms: u64, namespaces: Namespaces) -> Self {
        let flags = Flags {
            heartbeat_interval_ms: Some(1_000),
            heartbeat_timeout_ms: Some(1_000),
            max_message_bytes: Some(8_192),
            rate_limit_per_second: Some(1_000),
            rate_limit_burst: Some(1_000),
            ticket_rate_limit_per_second: Some(100_000),
            ticket_rate_limit_burst: Some(100_000),
            publish_rate_limit_per_second: Some(100_000),
            publish_rate_limit_burst: Some(100_000),
            resume_max_events: Some(history),
            resume_window_ms: Some(window_ms),
            dedup_window_ms: Some(window_ms.max(120_000)),
            ..Flags::default()
        };
        let mut config = Config::resolve(flags).expect("a valid test configuration");
        // Reconnects within milliseconds, so that tests that cut connections stay fast.
        config.session.reconnect = serde_json::from_value(json!({ "base_ms": 20, "factor": 2, "cap_ms": 200, "jitter": 0.5, "max_attempts": 20, "reset_after_ms": 1_000 })).expect("a valid policy");
        let (auth, token) = Auth::development();
        let broker = MemoryBroker::new(config.memory_broker());
        let server = Server::new(config, auth, broker, namespaces);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(serve(server.clone(), listener, std::future::pending()));
        Self { url, token, server }
    }

    /// Publishes from a backend, straight into the broker.
    pub async fn publish(
        &self,
        channel: &str,
        key: &str,
        payload: serde_json::Value,
    ) -> PublishResponse {
        let channel = channel.parse().expect("a valid channel");
        self.server
            .broker()
            .publish(
                &channel,
                key.parse().expect("a valid key"),
                Payload::from(payload),
                self.server.now(),
                0,
            )
            .await
            .expect("the broker stores it")
    }

    /// Drops every open connection without a close frame, as a crashed proxy or a cut cable would.
    pub fn cut_off_everyone(&self) {
        self.server.disconnect_all();
    }

    /// How many events a channel holds.
    pub async fn head(&self, channel: &str) -> u64 {
        let channel = channel.parse().expect("a valid channel");
        let (head, _, _) = self
            .server
            .broker()
            .subscribe(&channel, None, self.server.now())
            .await
            .expect("the broker answers");
        head.seq.get()
    }
}
