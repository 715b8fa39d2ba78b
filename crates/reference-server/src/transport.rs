//! The transport under the HTTP endpoints: Ferry's own accept loop, with TLS, a header-read
//! timeout and a cap on open connections.
//!
//! [`crate::serve`] accepts TCP connections and serves each with hyper's HTTP/1.1 connection
//! (WebSocket upgrades included), in front of the router of [`crate::http`]. What it bounds:
//!
//! - **Open connections.** At most `max_connections` TCP connections are open at once, counting
//!   TLS handshakes in progress, HTTP requests and WebSocket sessions (a connection counts until
//!   its socket closes, after an upgrade too). One more is closed as soon as it is accepted,
//!   without a byte written: answering it (a 503) would itself cost a handshake and a buffer
//!   per refused peer, which is what the cap is there to bound. Counted in
//!   `ferry_connections_refused_total`.
//! - **Connections without a credential.** At most `max_unauthenticated_connections` of them
//!   are open at once: a connection counts until it presents a valid credential (a bearer token
//!   that an HTTP request's handler accepts, or the ticket its WebSocket session redeems, see
//!   `Peer::authenticated`). One more is closed on accept, as above, and counted in
//!   `ferry_unauthenticated_refused_total`, so peers that never authenticate cannot take the
//!   places that sessions need.
//! - **Slow peers.** A new connection has `header_read_timeout` to finish its TLS handshake
//!   (`ferry_tls_handshakes_failed_total` counts the ones that fail or run out of time), and
//!   every request as long to deliver its head; the connection is closed, without an answer,
//!   when the time is up (`ferry_header_timeouts_total`). The same timer runs while a
//!   keep-alive connection waits for its next request, so an idle keep-alive connection is
//!   closed after `header_read_timeout` too (and counted there): HTTP clients open a new
//!   connection for their next request, and WebSocket sessions, which are past their
//!   request head, are not affected. Bodies have their own limit ([`crate::http::BODY_READ_TIMEOUT`]).
//!   A response has `write_timeout` to be taken by its peer: a write that makes no progress for
//!   that long fails and closes the connection (`ferry_write_timeouts_total`). Once a WebSocket
//!   session runs on the connection (`Peer::upgraded`), its own deadlines apply instead: the
//!   outbound queue and the heartbeat.
//! - **TLS.** With a [`Tls`], every connection is TLS (`https://`, `wss://`), HTTP/1.1 by ALPN,
//!   with rustls and its `ring` provider. [`Tls::reload`] swaps the certificate and key for the
//!   connections that come next; open ones keep the keys they were made with, so no session is
//!   dropped. [`reload_on_hangup`] calls it on every SIGHUP.
//!
//! Stopping: when `stop` completes the server drains ([`crate::Server::drain`]) while it still
//! accepts (new tickets and sessions get `unavailable`), then stops accepting, asks every open
//! HTTP connection to finish its request in flight and close, and returns once they have.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, error, info, warn};

use crate::broker::Broker;
use crate::config::TlsFiles;
use crate::{Server, http};

/// A certificate and key that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("cannot use the TLS certificate {}: {why}", path.display())]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("cannot use the TLS key {}: {why}", path.display())]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// rustls refuses the pair (for example a key that is not the certificate's).
    #[error("cannot serve TLS with {} and {}: {why}", files.cert.display(), files.key.display())]
    Pair {
        /// The files.
        files: TlsFiles,
        /// What rustls said.
        why: String,
    },
}

/// The server's TLS certificate and key, read from their PEM files and swappable while the
/// server runs.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads the certificate chain and key from `files`.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            files: files.clone(),
            current: RwLock::new(acceptor(files)?),
        })
    }

    /// Reads the files again; from now on new connections get the new certificate. On an
    /// error the previous certificate and key stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.files)?;
        *self.current.write() = fresh;
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certificate = |why: String| TlsError::Certificate {
        path: files.cert.clone(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| certificate(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(certificate("it holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        why: pem_error(&e),
    })?;
    let pair = |why: String| TlsError::Pair {
        files: files.clone(),
        why,
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| pair(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_error(error: &tokio_rustls::rustls::pki_types::pem::Error) -> String {
    use tokio_rustls::rustls::pki_types::pem::Error;
    match error {
        Error::NoItemsFound => "it holds no PEM item of this kind".into(),
        Error::Io(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}

/// Reloads `tls` on every SIGHUP, logging the outcome: a certificate or key that cannot be
/// used is logged and the previous pair kept. Runs until the task is dropped; does nothing off
/// Unix.
pub async fn reload_on_hangup(tls: Arc<Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                warn!(%error, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            log_reload(&tls);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
        std::future::pending::<()>().await;
    }
}

fn log_reload(tls: &Tls) {
    match tls.reload() {
        Ok(()) => info!(
            cert = %tls.files.cert.display(),
            key = %tls.files.key.display(),
            "reloaded the TLS certificate and key"
        ),
        Err(error) => error!(%error, "kept the previous TLS certificate and key"),
    }
}

/// How the accept loop bounds its connections.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Time for a TLS handshake, and for each request head.
    header_read_timeout: Duration,
    /// Most connections open at once.
    max_connections: usize,
    /// Most connections open at once that have presented no valid credential.
    max_unauthenticated_connections: usize,
    /// Time a write may make no progress before the HTTP connection is closed.
    write_timeout: Duration,
}

/// A connection as the handlers see it (a request extension): they tell it when its peer has
/// authenticated or its WebSocket session has started.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The connection's place among the unauthenticated ones, until it authenticates.
    unauthenticated: Mutex<Option<ConnectionSlot>>,
    /// Whether the transport still times out writes (false once a session runs on it).
    write_deadline: AtomicBool,
}

impl Peer {
    /// The peer presented a valid credential: its connection no longer counts among the
    /// unauthenticated ones.
    pub(crate) fn authenticated(&self) {
        self.unauthenticated.lock().take();
    }

    /// A WebSocket session runs on the connection from now on, with its own write deadlines.
    pub(crate) fn upgraded(&self) {
        self.write_deadline.store(false, Ordering::Relaxed);
    }
}

/// Serves `server`'s endpoints on `listener`, over TLS when `tls` is given, until `stop`
/// completes; then drains and returns once every HTTP connection has closed.
pub(crate) async fn accept_loop<B: Broker>(
    server: Arc<Server<B>>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = Limits {
        header_read_timeout: server.config.header_read_timeout,
        max_connections: server.config.max_connections,
        max_unauthenticated_connections: server.config.max_unauthenticated_connections,
        write_timeout: server.config.write_timeout,
    };
    let app = http::router(server.clone());
    let shared = server.clone();
    let open = Arc::new(AtomicUsize::new(0));
    let unauthenticated = Arc::new(AtomicUsize::new(0));
    // Dropped to ask every connection to shut down; each connection holds a `done` receiver,
    // so `closed` completes once all have finished.
    let (shutdown, shutting_down) = watch::channel(());
    let (done, _) = watch::channel(());
    let mut stop = pin!(async move {
        stop.await;
        server.drain().await;
    });
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_error(error).await;
                    continue;
                }
            },
        };
        let metrics = &shared.metrics;
        let Some(slot) = ConnectionSlot::take(&open, limits.max_connections, &metrics.connections)
        else {
            metrics.connections_refused.inc();
            debug!("refused a connection: max_connections are open");
            drop(stream);
            continue;
        };
        let Some(pending) = ConnectionSlot::take(
            &unauthenticated,
            limits.max_unauthenticated_connections,
            &metrics.unauthenticated_connections,
        ) else {
            metrics.unauthenticated_refused.inc();
            debug!("refused a connection: max_unauthenticated_connections are open");
            drop(stream);
            continue;
        };
        let peer = Arc::new(Peer {
            unauthenticated: Mutex::new(Some(pending)),
            write_deadline: AtomicBool::new(true),
        });
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            app: app.clone(),
            limits,
            server: shared.clone(),
            shutting_down: shutting_down.clone(),
            done: done.subscribe(),
        };
        let tls = tls.as_ref().map(|tls| tls.acceptor());
        let stream = Counted {
            io: stream,
            _slot: slot,
            peer,
            write_timeout: limits.write_timeout,
            write_timeouts: metrics.write_timeouts.clone(),
            stalled: None,
        };
        tokio::spawn(connection.run(stream, tls));
    }
    drop(listener);
    drop(shutdown);
    done.closed().await;
    Ok(())
}

/// What each connection's task holds.
struct Connection<B: Broker> {
    app: Router,
    limits: Limits,
    server: Arc<Server<B>>,
    shutting_down: watch::Receiver<()>,
    /// Held until the connection is done, so that the loop can wait for it.
    done: watch::Receiver<()>,
}

impl<B: Broker> Connection<B> {
    async fn run(self, stream: Counted<TcpStream>, tls: Option<TlsAcceptor>) {
        let peer = stream.peer.clone();
        let Some(acceptor) = tls else {
            return self.http(stream, peer).await;
        };
        match tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.http(stream, peer).await,
            Ok(Err(error)) => {
                self.server.metrics.tls_handshakes_failed.inc();
                debug!(%error, "TLS handshake failed");
            }
            Err(_) => {
                self.server.metrics.tls_handshakes_failed.inc();
                debug!("TLS handshake timed out");
            }
        }
    }

    async fn http<S>(mut self, io: S, peer: Arc<Peer>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Every request carries its connection's `Peer`, for the handlers to report to.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            self.app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(peer.clone());
                request
            },
        ));
        let mut connection = pin!(
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
        );
        let mut asked = false;
        let outcome = loop {
            tokio::select! {
                outcome = connection.as_mut() => break outcome,
                _ = self.shutting_down.changed(), if !asked => {
                    asked = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(error) = outcome {
            if error.is_timeout() {
                self.server.metrics.header_timeouts.inc();
                debug!("closed a connection whose request head did not arrive in time");
            } else {
                debug!(%error, "HTTP connection ended with an error");
            }
        }
        drop(self.done);
    }
}

/// Waits out an accept error the way hyper's server did: a peer that went away is no reason to
/// pause, but running out of descriptors is (it is logged, and accepting resumes a second
/// later, when some may be free).
async fn accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    error!(%error, "cannot accept connections; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One place among `max` (of all connections, or of the unauthenticated ones); dropping it
/// frees it.
#[derive(Debug)]
struct ConnectionSlot {
    open: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl ConnectionSlot {
    fn take(open: &Arc<AtomicUsize>, max: usize, gauge: &Gauge) -> Option<Self> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        gauge.inc();
        Some(Self {
            open: open.clone(),
            gauge: gauge.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

/// The TCP socket as the accept loop hands it on: it holds the connection's place, moving with
/// the socket into a WebSocket session after an upgrade so that the place is freed when the
/// socket closes, whoever holds it then; and it fails a write that makes no progress for
/// `write_timeout` while the connection serves HTTP.
pub(crate) struct Counted<S> {
    io: S,
    _slot: ConnectionSlot,
    peer: Arc<Peer>,
    write_timeout: Duration,
    write_timeouts: Counter,
    /// Armed while a write waits on a peer that does not read.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Counted<S> {
    /// Passes a write's outcome on; a pending one arms the write deadline, and past it fails
    /// with `TimedOut`.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() || !self.peer.write_deadline.load(Ordering::Relaxed) {
            self.stalled = None;
            return poll;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.write_timeouts.inc();
        debug!("closed a connection whose peer took no response bytes within the write timeout");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer read nothing within the write timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.deadline(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.deadline(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.deadline(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
