//! ferry-server over TLS on real loopback sockets, with a certificate authority made in the
//! test: https:// endpoints and wss:// sessions, certificate reloads (by call and by SIGHUP to
//! the binary) that keep open sessions, and a stalled handshake under the header timeout.

mod common;

use common::{next_json, send};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Flags, TlsFiles};
use ferry_server::transport::Tls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Socket = WebSocketStream<TlsStream<TcpStream>>;

/// A certificate authority of the test's own.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    /// Writes a certificate for `localhost` and its key into `dir`, as PEM (the chain: leaf,
    /// then this CA), and returns the files and the leaf's DER.
    fn issue(&self, dir: &Path) -> (TlsFiles, CertificateDer<'static>) {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let key = KeyPair::generate().expect("a key");
        let leaf = params.signed_by(&key, &self.issuer).expect("a certificate");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, format!("{}{}", leaf.pem(), self.issuer.pem()))
            .expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        (files, leaf.der().clone())
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// A client configuration that trusts these authorities only.
fn trusting(cas: &[&TestCa]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der()).expect("a root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn tls_connect(address: &str, config: &Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.expect("connects");
    TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("the TLS handshake succeeds")
}

/// The certificate the server presents to a new connection.
async fn presented(address: &str, config: &Arc<ClientConfig>) -> CertificateDer<'static> {
    let stream = tls_connect(address, config).await;
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("certificates")[0]
        .clone()
}

/// One HTTP/1.1 request over a new TLS connection: its status and body.
async fn https(
    address: &str,
    config: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = tls_connect(address, config).await;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    // The server may close without a TLS close_notify; what arrived is the answer.
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 20 s");
    let answer = String::from_utf8(answer).expect("UTF-8");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A welcomed wss:// session, subscribed to `project:alpha:tasks`.
async fn session(address: &str, config: &Arc<ClientConfig>, token: &str) -> Socket {
    let (status, body) = https(address, config, "POST", "/v1/tickets", token, None).await;
    assert_eq!(status, 201, "{body}");
    let ticket = body["ticket"].as_str().expect("a ticket");
    let mut request = format!("wss://localhost/v1/ws?ticket={ticket}")
        .into_client_request()
        .expect("a URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ferry.v1"),
    );
    let stream = tls_connect(address, config).await;
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade succeeds");
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "s", "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    socket
}

/// The session publishes over its socket and hears its own event.
async fn still_works(socket: &mut Socket, n: u64) {
    let id = format!("p-{n}");
    send(socket, json!({ "type": "publish", "id": id, "channel": "project:alpha:tasks", "idempotency_key": id, "payload": task(n) })).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = next_json(socket).await;
        seen.push(frame["type"].as_str().unwrap_or_default().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["event", "published"], "the session still works");
}

fn task(n: u64) -> Value {
    json!({ "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null })
}

/// A server with development auth on a random loopback port.
struct Node {
    address: String,
    token: String,
    server: Arc<Server<MemoryBroker>>,
    _stop: oneshot::Sender<()>,
}

impl Node {
    /// Serves with the TLS files of `flags` ([`serve`]), or with `tls` when given.
    async fn start(flags: Flags, tls: Option<Arc<Tls>>) -> Self {
        let (auth, token) = Auth::development();
        let common::InProcess {
            server,
            address,
            stop,
            ..
        } = common::in_process(flags, auth, tls).await;
        let address = address.to_string();
        Self {
            address,
            token,
            server,
            _stop: stop,
        }
    }
}

fn tls_flags(files: &TlsFiles) -> Flags {
    Flags {
        tls_cert: Some(files.cert.clone()),
        tls_key: Some(files.key.clone()),
        ..Flags::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_health_and_tickets_and_a_wss_session_work_with_the_servers_ca() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = TestCa::new("Ferry test CA");
    let (files, leaf) = ca.issue(dir.path());
    let node = Node::start(tls_flags(&files), None).await;
    let trusts = trusting(&[&ca]);

    let (status, health) = https(&node.address, &trusts, "GET", "/v1/health", "", None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    assert_eq!(presented(&node.address, &trusts).await, leaf);

    let mut subscriber = session(&node.address, &trusts, &node.token).await;
    let (status, ack) = https(
        &node.address,
        &trusts,
        "POST",
        "/v1/publish",
        &node.token,
        Some(json!({ "channel": "project:alpha:tasks", "idempotency_key": "k-1", "payload": task(1) })),
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    let event = next_json(&mut subscriber).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["payload"]["task_id"], "T-1");

    // A client that does not trust the CA fails its handshake; plain HTTP gets no answer.
    let stranger = trusting(&[&TestCa::new("Another CA")]);
    let tcp = TcpStream::connect(&node.address).await.expect("connects");
    assert!(
        TlsConnector::from(stranger)
            .connect(ServerName::try_from("localhost").expect("a name"), tcp)
            .await
            .is_err()
    );
    let mut plain = TcpStream::connect(&node.address).await.expect("connects");
    plain
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), plain.read_to_end(&mut answer))
        .await
        .expect("closed within 20 s");
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plain HTTP is not served on a TLS port"
    );
    still_works(&mut subscriber, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_for_new_connections_and_keeps_open_sessions() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (first_ca, second_ca) = (TestCa::new("First CA"), TestCa::new("Second CA"));
    let (files, first) = first_ca.issue(dir.path());
    let tls = Arc::new(Tls::load(&files).expect("a usable pair"));
    let node = Node::start(Flags::default(), Some(tls.clone())).await;
    let trusts = trusting(&[&first_ca, &second_ca]);
    let mut open = session(&node.address, &trusts, &node.token).await;
    assert_eq!(presented(&node.address, &trusts).await, first);

    let (_, second) = second_ca.issue(dir.path());
    tls.reload().expect("the new pair is usable");
    assert_eq!(presented(&node.address, &trusts).await, second);
    still_works(&mut open, 1).await;

    // A key that is not the certificate's is refused, and the pair in use stays.
    let (_, _) = first_ca.issue(dir.path());
    std::fs::write(
        &files.key,
        KeyPair::generate().expect("a key").serialize_pem(),
    )
    .expect("write");
    let error = tls.reload().expect_err("a mismatched key").to_string();
    assert!(error.contains("key.pem"), "{error}");
    std::fs::write(&files.cert, "not PEM").expect("write");
    let error = tls.reload().expect_err("no certificate").to_string();
    assert!(error.contains("cert.pem"), "{error}");
    assert_eq!(presented(&node.address, &trusts).await, second);
    still_works(&mut open, 2).await;
    assert_eq!(node.server.metrics.tls_handshakes_failed.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_holds_a_connection_place_until_the_header_timeout_closes_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = TestCa::new("Ferry test CA");
    let (files, _) = ca.issue(dir.path());
    let node = Node::start(
        Flags {
            header_read_timeout_ms: Some(800),
            max_connections: Some(1),
            ..tls_flags(&files)
        },
        None,
    )
    .await;
    // The server's timer starts at its accept, which comes after this instant.
    let opened = Instant::now();
    let mut stalled = TcpStream::connect(&node.address).await.expect("connects");
    stalled.write_all(&[0x16, 0x03]).await.expect("two bytes");
    // While it stalls, it holds the only place: another connection is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.server.metrics.connections.get() != 1 {
        assert!(Instant::now() < deadline, "the handshake is counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut refused = TcpStream::connect(&node.address).await.expect("connects");
    let mut buf = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(20), refused.read(&mut buf))
        .await
        .expect("the refused connection is closed");
    assert!(node.server.metrics.connections_refused.get() >= 1);

    let _ = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf))
        .await
        .expect("the stalled handshake is closed");
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "closed after {waited:?}, before the 800 ms timeout"
    );
    assert_eq!(node.server.metrics.tls_handshakes_failed.get(), 1);

    // The place is free again.
    let trusts = trusting(&[&ca]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.server.metrics.connections.get() != 0 {
        assert!(Instant::now() < deadline, "the place is freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = https(&node.address, &trusts, "GET", "/v1/health", "", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_its_certificate_on_sighup_and_keeps_open_sessions() {
    let data = tempfile::tempdir().expect("a temp dir");
    let (first_ca, second_ca) = (TestCa::new("First CA"), TestCa::new("Second CA"));
    let (files, first) = first_ca.issue(data.path());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .env("XDG_DATA_HOME", data.path())
        .args(["--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ferry-server starts");
    let (base, token) = common::read_walkthrough(child.stdout.take().expect("stdout")).await;
    let address = base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("the walkthrough says https://, not {base}"))
        .to_owned();
    let trusts = trusting(&[&first_ca, &second_ca]);
    let mut open = session(&address, &trusts, &token).await;
    assert_eq!(presented(&address, &trusts).await, first);

    let (_, second) = second_ca.issue(data.path());
    let pid = child.id().expect("a pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(&address, &trusts).await != second {
        assert!(
            Instant::now() < deadline,
            "a new connection sees the new certificate within 20 s of SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_works(&mut open, 1).await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "the server still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_to_start_with_a_certificate_it_cannot_use_naming_the_file() {
    let data = tempfile::tempdir().expect("a temp dir");
    let cert = data.path().join("cert.pem");
    let key = data.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").expect("write");
    std::fs::write(&key, KeyPair::generate().expect("a key").serialize_pem()).expect("write");
    let home = data.path().to_owned();
    let refuse = |args: Vec<std::ffi::OsString>| {
        let home = home.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry-server"))
                .env("XDG_DATA_HOME", &home)
                .args(["--bind", "127.0.0.1:0"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(20), output)
                .await
                .expect("exits")
                .expect("runs");
            assert_eq!(output.status.code(), Some(2), "refuses to start");
            String::from_utf8(output.stderr).expect("UTF-8")
        }
    };
    let stderr = refuse(vec![
        "--tls-cert".into(),
        cert.clone().into(),
        "--tls-key".into(),
        key.into(),
    ])
    .await;
    assert!(
        stderr.contains("TLS certificate") && stderr.contains("cert.pem"),
        "{stderr}"
    );
    let stderr = refuse(vec!["--tls-cert".into(), cert.into()]).await;
    assert!(stderr.contains("tls_key"), "{stderr}");
}
