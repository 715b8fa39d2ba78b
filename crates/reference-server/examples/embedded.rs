//! ferry-server embedded in a Rust application that is its own backend: the example
//! application's `tasks:start` method answered by a Rust handler, behind a `tower` layer that
//! logs every call. No HTTP between them. (Hooks are registered the same way, with
//! `on_publish` and `on_subscribe`, for namespaces whose `channels.json` declares them.)
//!
//! ```sh
//! cargo run -p ferry-server --example embedded            # 127.0.0.1:7400, development auth
//! ```
//!
//! Then call it with any client, for example the Rust client's `Client::call`.

// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_protocol::{BackendCall, BackendRefusalCode, Payload};
use ferry_server::auth::Auth;
use ferry_server::backend::{Backend, Handlers, refusal};
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let next_task = Arc::new(AtomicU64::new(1));
    let handlers = Handlers::new().on_rpc("tasks:start".parse()?, move |call| {
        let task = next_task.fetch_add(1, Ordering::Relaxed);
        async move {
            let params = call.params.to_value().unwrap_or_default();
            if params["project"] == "frozen" {
                return Err(refusal(
                    BackendRefusalCode::Rejected,
                    "project frozen takes no new tasks",
                ));
            }
            println!(
                "{} starts {:?} in {}",
                call.user.as_str(),
                params["title"],
                params["project"]
            );
            Ok(Payload::from(json!({ "task_id": format!("t-{task}") })))
        }
    });
    // Any tower layer goes around the handlers: logging here; auth, limits and tracing alike.
    let backend = tower::ServiceBuilder::new()
        .map_request(|call: BackendCall| {
            println!(
                "backend: {}",
                serde_json::to_string(&call).unwrap_or_default()
            );
            call
        })
        .service(handlers);

    let config = Config::resolve(Flags::default())?;
    let (auth, token) = Auth::development();
    let broker = MemoryBroker::new(config.memory_broker());
    let bind = config.bind;
    let server = ferry_server::Server::with_backend(
        config,
        auth,
        broker,
        Namespaces::example_app(),
        Some(Backend::new(backend)),
    );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!(
        "listening on http://{}, token {token}",
        listener.local_addr()?
    );
    ferry_server::serve(server, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
