//! `ferry-server`: run Ferry's reference server.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ferry_server::auth::{Auth, JwtVerifier, dev_token_dir, stable_dev_token};
use ferry_server::broker::{Broker, MemoryBroker, RedisBroker};
use ferry_server::config::{AuthMode, Config, Flags, JwtKey, LogFormat};
use ferry_server::namespaces::Namespaces;
use ferry_server::transport::{Tls, reload_on_hangup};
use ferry_server::{Server, serve_with_tls};
use std::sync::Arc;
use tracing::{info, warn};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Flags::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry-server: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(flags: Flags) -> Result<()> {
    let config = Config::resolve(flags)?;
    init_logs(config.log_format);
    let namespaces = if config.apps.is_empty() {
        Namespaces::example_app()
    } else {
        let namespaces = Namespaces::load(&config.apps)?;
        info!(apps = ?config.apps, namespaces = ?namespaces.patterns().iter().map(|p| p.to_string()).collect::<Vec<_>>(), "serving the application schema sets");
        namespaces
    };
    let (auth, dev_token) = match config.auth {
        AuthMode::Dev => {
            let token = match config.dev_token.clone() {
                Some(token) => token,
                None => {
                    let dir = dev_token_dir().context(
                        "no data directory (HOME and XDG_DATA_HOME are unset) to keep the development token in; give one with --dev-token",
                    )?;
                    stable_dev_token(&dir).with_context(|| {
                        format!("cannot keep the development token in {}", dir.display())
                    })?
                }
            };
            let (auth, token) = Auth::development_with(token);
            (auth, Some(token))
        }
        AuthMode::Tokens => {
            let path = config
                .tokens_file
                .as_deref()
                .context("auth = tokens needs a tokens file")?;
            (Auth::from_file(path)?, None)
        }
        AuthMode::Jwt => {
            let verifier = match config.jwt_key.as_ref().context("auth = jwt needs a key")? {
                JwtKey::Hs256SecretFile(path) => {
                    let secret = std::fs::read(path).with_context(|| {
                        format!("cannot read the JWT secret {}", path.display())
                    })?;
                    JwtVerifier::hs256(secret.trim_ascii_end())
                }
                JwtKey::Rs256PublicKeyFile(path) => {
                    let pem = std::fs::read(path).with_context(|| {
                        format!("cannot read the JWT public key {}", path.display())
                    })?;
                    JwtVerifier::rs256(&pem)?
                }
            };
            (Auth::jwt(verifier), None)
        }
    };
    match config.redis_broker() {
        None => {
            let broker = MemoryBroker::new(config.memory_broker());
            serve_with(config, auth, broker, namespaces, dev_token).await
        }
        Some(redis) => {
            let prefix = redis.prefix.clone();
            let broker = RedisBroker::new(redis).context("cannot use the Redis broker")?;
            match broker.ping().await {
                Ok(()) => info!(prefix, "using the Redis broker"),
                Err(error) => {
                    warn!(%error, "Redis does not answer yet; requests get `unavailable` until it does")
                }
            }
            serve_with(config, auth, broker, namespaces, dev_token).await
        }
    }
}

async fn serve_with<B: Broker>(
    config: Config,
    auth: Auth,
    broker: B,
    namespaces: Namespaces,
    dev_token: Option<String>,
) -> Result<()> {
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(Tls::load(files)?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let address = listener.local_addr()?;
    let server = Server::new(config, auth, broker, namespaces);
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%address, scheme, "ferry-server listening");
    if let Some(tls) = &tls {
        tokio::spawn(reload_on_hangup(tls.clone()));
    }
    if let Some(token) = dev_token {
        warn!("DEVELOPMENT AUTH: one generated token holds every right; do not expose this server");
        print_walkthrough(&format!("{scheme}://{address}"), &token);
    }
    serve_with_tls(server, listener, tls, stop_signal())
        .await
        .context("the server failed")?;
    info!("stopped");
    Ok(())
}

/// Logs to stderr, filtered by RUST_LOG (default `info`), as text or JSON lines; text is
/// coloured only on a terminal, and never when NO_COLOR is set (https://no-color.org).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            logs.with_ansi(colour).init();
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    info!("stopping: draining sessions");
}

/// Prints the walkthrough on standard output, for the server at `base` (`http://HOST:PORT`). A
/// closed output (a pipe whose reader left) is no reason to stop serving, so a failed write is
/// ignored.
fn print_walkthrough(base: &str, token: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout().lock(),
        "\nferry-server is running on {base} with development auth.\n\
         Development token (every right): {token}\n\n\
         Try it:\n  \
         export FERRY_TOKEN={token}\n  \
         curl -s -X POST -H \"Authorization: Bearer $FERRY_TOKEN\" {base}/v1/tickets\n  \
         curl -s -X POST -H \"Authorization: Bearer $FERRY_TOKEN\" -H 'content-type: application/json' \\\n    \
         -d '{{\"channel\":\"project:alpha:tasks\",\"idempotency_key\":\"k-1\",\"payload\":{{\"task_id\":\"T-1\",\"status\":\"running\",\"progress\":0.5,\"assignee\":null}}}}' \\\n    \
         {base}/v1/publish\n  \
         curl -s -H \"Authorization: Bearer $FERRY_TOKEN\" '{base}/v1/history?channel=project:alpha:tasks'\n"
    );
}
