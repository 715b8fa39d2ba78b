//! HTTP requests to an `https://` server: one request per connection, with hyper over a
//! rustls stream (the runner's reqwest client speaks plain HTTP only).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// The most of a response body the runner reads.
const MAX_BODY_BYTES: usize = 8 << 20;

/// Sends `method path` to the `https://` server at `base`, with the `authorization` header
/// and JSON `body` when given; its status and body, within `timeout`.
pub(crate) async fn request(
    tls: &Arc<ClientConfig>,
    base: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, send(tls, base, method, path, authorization, body))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}

async fn send(
    tls: &Arc<ClientConfig>,
    base: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String), String> {
    let uri: Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", uri.path().trim_end_matches('/')))
        .header(HOST, authority.as_str());
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let body = match body {
        Some(body) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(body)
        }
        None => Bytes::new(),
    };
    let request = request
        .header(CONTENT_LENGTH, body.len())
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("the TLS handshake failed: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driven = tokio::spawn(connection);
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the body could not be read ({e})"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    drop(sender);
    driven.abort();
    answer
}
