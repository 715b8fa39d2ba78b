//! ferry-client against ferry-server over TLS (https:// tickets, wss:// session), trusting a
//! certificate authority made in the test through `ClientBuilder::ca_file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_client::{ChannelEvent, Client, Handler};
use ferry_protocol::ClientState;
use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use ferry_server::{Server, serve};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;

/// Writes a CA (`ca.pem`) and a certificate for `localhost` signed by it (`cert.pem`,
/// `key.pem`) into `dir`.
fn certificates(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA");
    let key = KeyPair::generate().expect("a key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("a certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
}

/// A TLS server on a random loopback port; its `https://localhost:PORT` URL and token.
async fn tls_server(dir: &Path) -> (String, String) {
    let config = Config::resolve(Flags {
        tls_cert: Some(dir.join("cert.pem")),
        tls_key: Some(dir.join("key.pem")),
        ..Flags::default()
    })
    .expect("a valid configuration");
    let (auth, token) = Auth::development();
    let broker = MemoryBroker::new(config.memory_broker());
    let server = Server::new(config, auth, broker, Namespaces::none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(serve(server, listener, std::future::pending()));
    (format!("https://localhost:{port}"), token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_servers_ca_gets_tickets_over_https_and_events_over_wss() {
    let dir = tempfile::tempdir().expect("a temp dir");
    certificates(dir.path());
    let (url, token) = tls_server(dir.path()).await;
    let client = Client::builder(&url, &token)
        .ca_file(dir.path().join("ca.pem"))
        .expect("a usable CA file")
        .connect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        Handler::new(move |event| {
            if let ChannelEvent::Event(event) = event {
                seen.lock().push(event.payload.clone());
            }
        })
    };
    client
        .subscribe("project:alpha:tasks".parse().expect("valid"), &handler)
        .expect("running");
    assert!(
        client.wait_active(Duration::from_secs(20)).await,
        "{:?}",
        client.state()
    );
    let ack = client
        .publish(
            "project:alpha:tasks".parse().expect("valid"),
            json!({ "task_id": "T-1" }),
        )
        .await
        .expect("acknowledged over wss://");
    assert_eq!(ack.position.seq.get(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the event arrives");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.lock()[0].to_value().expect("JSON")["task_id"], "T-1");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_servers_certificate_never_gets_a_ticket() {
    let dir = tempfile::tempdir().expect("a temp dir");
    certificates(dir.path());
    let (url, token) = tls_server(dir.path()).await;
    // The system's authorities only: the test CA is not among them.
    let client = Client::builder(&url, &token).connect();
    let state = tokio::time::timeout(
        Duration::from_secs(20),
        client.wait_for(|s| matches!(s, ClientState::Active | ClientState::BackingOff { .. })),
    )
    .await
    .expect("a ticket attempt ends within 20 s");
    let reconnecting = matches!(state, ClientState::BackingOff { .. });
    assert!(
        reconnecting,
        "the failed handshake is retried, never active"
    );
    assert_ne!(client.state(), ClientState::Active);
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "nothing here").expect("write");
    let error = Client::builder("https://localhost:1", "token")
        .ca_file(&path)
        .expect_err("no certificate")
        .to_string();
    assert!(error.contains("ca.pem"), "{error}");
}
