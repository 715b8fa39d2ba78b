//! Subscribes to channels and prints every event as a JSON line on stdout. On stderr it reports
//! every change of the connection's state (connecting, active, backing off, ...) and every hole
//! in a channel's history (a gap, an epoch reset, a resume beyond the server's history). It
//! follows the server across restarts, and exits with status 1 when the client stops for good
//! (the credential was rejected, a close whose action is stop, or the retries ran out); Ctrl-C
//! closes the session and exits with 0.
//!
//! ```sh
//! cargo run -p ferry-client --example tail -- --token "$FERRY_TOKEN" project:alpha:tasks
//! ```

use anyhow::{Result, bail};
use clap::Parser;
use ferry_client::{ChannelEvent, Client, Handler};
use ferry_protocol::ChannelName;
use ferry_protocol::ClientState;
use tokio::sync::broadcast::error::RecvError;

/// Print a Ferry channel's events as JSON lines.
#[derive(Parser)]
struct Args {
    /// The Ferry server's base URL (https:// for a server with TLS).
    #[arg(long, env = "FERRY_URL", default_value = "http://127.0.0.1:7400")]
    url: String,
    /// A PEM file of certificate authorities to trust besides the system's (a private CA).
    #[arg(long, env = "FERRY_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// The bearer credential for the ticket endpoint.
    #[arg(long, env = "FERRY_TOKEN")]
    token: String,
    /// The channels to follow.
    #[arg(required = true)]
    channels: Vec<ChannelName>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = Client::builder(&args.url, &args.token);
    if let Some(ca_file) = &args.ca_file {
        builder = builder.ca_file(ca_file)?;
    }
    let client = builder.connect();
    let printer = Handler::new(|event: &ChannelEvent| match event {
        ChannelEvent::Event(event) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", serde_json::to_string(event).unwrap_or_default());
            }
        }
        ChannelEvent::Incomplete(cause) => {
            eprintln!("tail: the channel's history has a hole ({cause:?}); refetch its state")
        }
        ChannelEvent::Subscribed(resumption) => eprintln!("tail: subscribed ({resumption:?})"),
        ChannelEvent::Refused(error) => eprintln!(
            "tail: the server refused the subscription: {}",
            error.message.as_str()
        ),
        ChannelEvent::Presence(presence) => eprintln!(
            "tail: {} {} {}",
            presence.user.as_str(),
            presence.change,
            presence.channel.as_str()
        ),
        // tail tracks no members: these come only to subscriptions that do.
        ChannelEvent::Members(_) | ChannelEvent::MembersFailed(_) => {}
    });
    let mut changes = client.state_changes();
    for channel in args.channels {
        client.subscribe(channel, &printer)?;
    }
    let mut state = client.state();
    let stopped = loop {
        match &state {
            ClientState::Stopped(reason) => break reason.to_string(),
            state => eprintln!("tail: {state} ({})", args.url),
        }
        tokio::select! {
            change = changes.recv() => match change {
                Ok(next) => state = next,
                Err(RecvError::Lagged(_)) => state = client.state(),
                Err(RecvError::Closed) => break format!("the client's task ended ({})", client.state()),
            },
            interrupted = tokio::signal::ctrl_c() => {
                interrupted?;
                client.close().await;
                return Ok(());
            }
        }
    };
    bail!("stopped for good: {stopped}")
}
