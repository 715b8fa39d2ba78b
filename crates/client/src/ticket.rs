//! The ticket request: one `POST` to the ticket endpoint, over `http://` or `https://`, on a
//! connection of its own (a ticket is fetched once per connect, so there is nothing to pool).

use std::sync::Arc;

use ferry_protocol::client::TicketError;
use ferry_protocol::tables::endpoint;
use ferry_protocol::{Ticket, TicketResponse};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The most the ticket response may weigh; a ticket response is a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Asks the ticket endpoint of the server at `base_url` for a ticket, within `timeout`.
pub(crate) async fn fetch(
    base_url: String,
    credential: String,
    tls: Arc<ClientConfig>,
    timeout: std::time::Duration,
) -> Result<Ticket, TicketError> {
    let (status, body) = tokio::time::timeout(timeout, post(&base_url, &credential, tls))
        .await
        .map_err(|_| {
            TicketError::Failed(
                "the ticket endpoint did not answer within the request timeout".into(),
            )
        })?
        .map_err(TicketError::Failed)?;
    if status == StatusCode::UNAUTHORIZED {
        return Err(TicketError::Unauthorized);
    }
    if !status.is_success() {
        return Err(TicketError::Failed(format!(
            "the ticket endpoint answered {status}"
        )));
    }
    let body: TicketResponse = serde_json::from_slice(&body).map_err(|e| {
        TicketError::Failed(format!("the ticket response is not a TicketResponse: {e}"))
    })?;
    Ok(body.ticket)
}

async fn post(
    base_url: &str,
    credential: &str,
    tls: Arc<ClientConfig>,
) -> Result<(StatusCode, Bytes), String> {
    let base: Uri = base_url
        .parse()
        .map_err(|e| format!("not a server URL ({e})"))?;
    let https = match base.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the server URL must start with http:// or https://".into()),
    };
    let authority = base
        .authority()
        .ok_or("the server URL has no host")?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = format!(
        "{}{}",
        base.path().trim_end_matches('/'),
        endpoint::ISSUE_TICKET.path
    );
    let request = Request::post(path)
        .header(HOST, authority.as_str())
        .header(AUTHORIZATION, format!("Bearer {credential}"))
        .header(CONTENT_LENGTH, "0")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot make the ticket request: {e}"))?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if https {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("the TLS handshake with {authority} failed: {e}"))?;
        send(stream, request).await
    } else {
        send(tcp, request).await
    }
}

async fn send<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("the ticket request failed: {e}"))?;
    // The connection is driven beside the request and ends with it.
    let driven = tokio::spawn(connection);
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the ticket request failed: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the ticket response could not be read: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    drop(sender);
    driven.abort();
    answer
}
