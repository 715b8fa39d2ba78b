//! One WebSocket session: a thin shell over `ferry_protocol::ServerSession`. It redeems the
//! ticket, then moves frames, broker answers, live events and time in and out; every protocol
//! decision is the session's.
//!
//! The connection's task waits on four things only: the socket, its [`Mailbox`] (the live
//! events of the channels it holds, pushed by their feeds; the server rings the same doorbell
//! when it drains or cuts, and the connection then reads the server's lifecycle), the outcomes
//! of the work it does not wait for (RPC calls, each on a task of its own, and hooked requests,
//! asked about in order on the session's hook task) and the session's next timer. Writes go
//! out in batches (`feed` each frame, one `flush`), and a write that cannot go on does not hold
//! the session hostage: while it waits, the connection still sees its mailbox overflow (close
//! 4410, FERRY-EVENT-6) and gives up after a heartbeat's interval plus timeout, the time in
//! which a live client must have answered a ping.

use std::collections::{HashSet, VecDeque};
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ferry_protocol::presence::Claimed;
use ferry_protocol::server::{Action, HoldClaim, Join, ServerSession, Transmit, error_info};
use ferry_protocol::tables::close_code;
use ferry_protocol::{
    BackendCall, ChannelName, ErrorCode, ErrorInfo, Frame, FrameText, IdempotencyKey, Payload,
    PublishHookCall, PublishResponse, RequestId, RpcCall, SessionId, StreamPosition,
    SubscribeHookCall,
};
use futures_util::stream::FusedStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tracing::{debug, info, warn};

use crate::backend::{Claim, Outcome, ask_hook, outcome_of, run_call};
use crate::broker::{Broker, PresentSession, SharedCall};
use crate::gate::Gate;
use crate::hub::{Delivery, Mailbox};
use crate::namespaces::Hook;
use crate::socket::{Socket as WebSocket, close_after_violation, shut_and_drain};
use crate::transport::Peer;
use crate::{Lifecycle, Server};

/// Runs one upgraded connection until it closes. An async block rather than an async fn,
/// so that the socket is held once in the task, not also as a copy of the argument.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its socket argument and a copy of it in every session's task"
)]
pub(crate) fn run<B: Broker>(
    server: Arc<Server<B>>,
    mut socket: WebSocket,
    ticket: Option<String>,
    peer: Option<Arc<Peer>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        // The session's own deadlines (the outbound queue, the heartbeat) bound its writes now.
        if let Some(peer) = &peer {
            peer.upgraded();
        }
        let mut lifecycle = server.lifecycle.subscribe();
        let cuts = lifecycle.borrow_and_update().cuts;
        let grant = match ticket {
            Some(ticket) => match server.broker.redeem_ticket(&ticket, server.now()).await {
                Ok(grant) => grant,
                Err(error) => {
                    // The ticket could not be checked: the client backs off and retries with a new
                    // one (1011's action), rather than renewing at once into the same outage.
                    warn!(%error, "cannot redeem a ticket: the broker is unavailable");
                    close(
                        &server,
                        &mut socket,
                        close_code::INTERNAL_ERROR,
                        "the broker is unavailable; retry later",
                    )
                    .await;
                    return;
                }
            },
            None => None,
        };
        let Some(grant) = grant else {
            // FERRY-TICKET-3: close with 4401 before any other frame; the ticket is not logged.
            debug!("a connection presented a missing, unknown, expired or used ticket");
            close(
                &server,
                &mut socket,
                close_code::TICKET_REJECTED,
                "ticket rejected",
            )
            .await;
            return;
        };
        if let Some(peer) = &peer {
            peer.authenticated();
        }
        let Some(mut slot) = server.connection_slot(&grant.user) else {
            info!(user = %grant.user.as_str(), "too many connections for this user");
            close(
                &server,
                &mut socket,
                close_code::TOO_MANY_CONNECTIONS,
                "too many connections for this user",
            )
            .await;
            return;
        };
        let id = server.next_session_id();
        let shared = slot.share(&id).await;
        if !matches!(shared, Ok(true)) {
            let (code, reason) = match shared {
                Err(error) => {
                    warn!(%error, "cannot count the user's connections: the broker is unavailable");
                    (
                        close_code::INTERNAL_ERROR,
                        "the broker is unavailable; retry later",
                    )
                }
                _ => {
                    info!(user = %grant.user.as_str(), "too many connections for this user across nodes");
                    (
                        close_code::TOO_MANY_CONNECTIONS,
                        "too many connections for this user",
                    )
                }
            };
            Box::pin(close(&server, &mut socket, code, reason)).await;
            return;
        }
        let mut session =
            ServerSession::new(server.session_config(), grant, id.clone(), server.now());
        debug!(session = %id.as_str(), user = %session.user().as_str(), "session opened");
        server.metrics.sessions_opened.inc();
        let mailbox = Arc::new(Mailbox::new(server.config.outbound_queue));
        // Rung when the lifecycle changes; a change before this is in `lifecycle` already.
        let _doorbell = server.doorbells.register(&mailbox);
        let mut link = Link {
            server: &server,
            mailbox,
            joined: HashSet::new(),
            presence: None,
            subscriptions: 0,
            answers: Answers::default(),
            hooks: None,
            batch: Vec::new(),
        };
        let mut live: VecDeque<Delivery> = VecDeque::new();
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = None;
        // Most wakes are for the mailbox: the socket and the timer are polled only once they
        // woke (or, the socket, after it had a message, since it may hold more).
        let (reads, ticks) = (Gate::new(), Gate::new());
        loop {
            if !link.flush(&mut session, &mut socket).await {
                debug!(session = %id.as_str(), "session closed");
                return;
            }
            // A cut or a drain is seen before anything else queued, as it would be on the wire.
            if lifecycle.has_changed().unwrap_or(true) {
                let state = *lifecycle.borrow_and_update();
                if !follow_lifecycle(&server, &mut session, state, cuts) {
                    return;
                }
                continue;
            }
            // Events queued while this task was busy are delivered before it waits again.
            // In a block of its own, so that nothing of it is kept across the wait below.
            let fell_behind = {
                let taken = link.mailbox.take(&mut live);
                for (channel, fence) in &taken.taken_over {
                    session.taken_over(channel, *fence);
                }
                taken.fell_behind
            };
            if session.is_closed() {
                info!(session = %id.as_str(), "another session took over a channel this one held; closing it with 4412");
                continue;
            }
            if fell_behind {
                link.fell_behind(&mut session);
                continue;
            }
            if !live.is_empty() {
                for delivery in live.drain(..) {
                    match delivery {
                        Delivery::Event(event) => session.deliver(&event),
                        Delivery::Presence(presence) => session.deliver_presence(&presence),
                    }
                }
                continue;
            }
            link.count_subscriptions(&session);
            let deadline = session.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(server.instant(at));
                    ticks.open();
                }
                armed = deadline;
            }
            tokio::select! {
                message = poll_fn(|cx| reads.poll(cx, |cx| socket.poll_next_unpin(cx))) => {
                    let now = server.now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            server.metrics.messages_in.inc();
                            session.handle_frame(Frame::Text(text.as_bytes()), now);
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            server.metrics.messages_in.inc();
                            session.handle_frame(Frame::Binary(&bytes), now);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) => {
                            // The client ended the session: its presence ends now, and is
                            // recorded before the close is answered (FERRY-PRESENCE-1).
                            link.leave_everywhere().await;
                            // The client closed: the WebSocket layer has queued the answer (its
                            // code echoed, or 1002 for a code no peer may send); send it, then
                            // close TCP first as a server does (RFC 6455 §5.5.1, §7.1.1), draining
                            // what still arrives so that no reset destroys the answer.
                            let _ = tokio::time::timeout(CLOSING_HANDSHAKE, socket.flush()).await;
                            shut_and_drain(&mut socket, CLOSING_HANDSHAKE).await;
                            return;
                        }
                        None => return,
                        Some(Err(error)) => match refused_frame(error) {
                            Some((code, reason)) => session.close(code, reason),
                            None => return,
                        },
                    }
                }
                () = link.mailbox.ready() => {}
                done = link.answers.next() => Box::pin(link.complete(&mut session, done)).await,
                () = poll_fn(|cx| ticks.poll(cx, |cx| timer.as_mut().poll(cx))), if armed.is_some() => {
                    armed = None;
                    session.handle_timeout(server.now());
                }
            }
        }
    }
}

/// Stores a checked publish in the broker; under the session's hold of an exclusive channel
/// when `fence` is given (FERRY-HOLD-3).
async fn store<B: Broker>(
    server: &Server<B>,
    channel: &ChannelName,
    key: IdempotencyKey,
    payload: Payload,
    fence: Option<u64>,
) -> Result<PublishResponse, ErrorInfo> {
    let (now, at) = (server.now(), crate::wall_clock_ms());
    let stored = match fence {
        None => server.broker.publish(channel, key, payload, now, at).await,
        Some(fence) => {
            server
                .broker
                .publish_fenced(channel, key, payload, fence, now, at)
                .await
        }
    };
    stored.map_err(|e| {
        server.metrics.publish_failed(&e);
        error_info(e.code(), &e.to_string())
    })
}

/// A session's hook task: asks the backend about each hooked publish and subscribe, in order
/// (FERRY-HOOK-1, FERRY-HOOK-2), stores the accepted publishes, and sends every outcome back
/// to the session's loop. Ends with the session.
async fn ask_in_order<B: Broker>(
    server: Arc<Server<B>>,
    mut requests: mpsc::UnboundedReceiver<Hooked>,
    answers: mpsc::UnboundedSender<Done>,
) {
    let timeout = server.config.hook_timeout;
    while let Some(request) = requests.recv().await {
        let done = match request {
            Hooked::Subscribe { call, asked } => {
                let (id, channel) = (call.request_id.clone(), call.channel.clone());
                let question = BackendCall::SubscribeHookCall(call);
                let decision = ask_hook(server.backend.as_ref(), question, timeout).await;
                Done::SubscribeDecided {
                    id,
                    channel,
                    asked,
                    decision: decision.map(drop),
                }
            }
            Hooked::Publish { call, fence } => {
                let (id, channel, key) = (
                    call.request_id.clone(),
                    call.channel.clone(),
                    call.idempotency_key.clone(),
                );
                let payload = call.payload.clone();
                let asked = BackendCall::PublishHookCall(call);
                let outcome = match ask_hook(server.backend.as_ref(), asked, timeout).await {
                    Err(refused) => Err(refused),
                    Ok(None) => store(&server, &channel, key, payload, fence).await,
                    Ok(Some(replaced)) => match server.namespaces.check(&channel, &replaced) {
                        Ok(()) => store(&server, &channel, key, replaced, fence).await,
                        Err(problem) => {
                            warn!(channel = %channel.as_str(), %problem, "the publish hook replaced the payload with one its namespace refuses");
                            let message = "the backend replaced the payload with one that breaks the namespace's schema";
                            Err(error_info(ErrorCode::Internal, message))
                        }
                    },
                };
                Done::Published { id, outcome }
            }
        };
        if answers.send(done).is_err() {
            return;
        }
    }
}

/// Runs a checked call at most once for its user, method and key (FERRY-RPC-3): the first
/// call with a key on this node claims it in the node's ledger (a repeat on the node waits
/// for its outcome), then in the broker's shared record when the broker keeps one (a repeat
/// on another node finds it there); only the call that holds both claims runs on the backend.
/// Returns the outcome and whether it is an earlier call's.
async fn call_once<B: Broker>(server: &Server<B>, call: RpcCall) -> (Outcome, bool) {
    let (user, method, key) = (
        call.user.clone(),
        call.method.clone(),
        call.idempotency_key.clone(),
    );
    let running = match server.ledger.claim(&user, &method, &key, server.now()) {
        Claim::Done(outcome) => return (outcome, true),
        Claim::Repeat(first) => return (outcome_of(first).await, true),
        Claim::Run(running) => running,
    };
    let budget = server.config.session.rpc_timeout * 2;
    let (outcome, forget, duplicate) = match shared_claim(server, &call, budget).await {
        Err(why) => (Err(why), true, false),
        Ok(Some(outcome)) => (outcome, false, true),
        Ok(None) => {
            let Some(declared) = server.namespaces.method(&method) else {
                unreachable!("the call's method was checked before it was claimed");
            };
            // Waiting for a slot counts toward the session's timeout, which runs from arrival.
            let _slot = server.calls.acquire().await;
            server.metrics.backend_calls.inc();
            let timeout = server.config.session.rpc_timeout;
            let (outcome, forget) =
                run_call(server.backend.as_ref(), declared, call, timeout).await;
            let kept = (!forget).then_some(&outcome);
            let window = server.config.dedup_window;
            if let Err(error) = server
                .broker
                .finish_call(&user, &method, &key, kept, window)
                .await
            {
                warn!(%error, method = %method.as_str(), "cannot record a call's outcome in the broker; a retry on another node may run it again");
            }
            (outcome, forget, false)
        }
    };
    server
        .ledger
        .finish(running, outcome.clone(), forget, server.now());
    (outcome, duplicate)
}

/// The broker's shared record of a call: `None` when this node is to run it (the broker keeps
/// no record, or this node claimed it), the outcome when another node ran it, waiting while
/// another node runs it, for at most `budget`.
async fn shared_claim<B: Broker>(
    server: &Server<B>,
    call: &RpcCall,
    budget: Duration,
) -> Result<Option<Outcome>, ferry_protocol::ErrorInfo> {
    let deadline = tokio::time::Instant::now() + budget;
    // The claim lapses if this node dies while it runs the call: past the runner's budget.
    let lease = budget + Duration::from_secs(1);
    loop {
        let claimed = server
            .broker
            .claim_call(&call.user, &call.method, &call.idempotency_key, lease)
            .await
            .map_err(|e| error_info(e.code(), &e.to_string()))?;
        match claimed {
            None | Some(SharedCall::Run) => return Ok(None),
            Some(SharedCall::Done(outcome)) => return Ok(Some(outcome)),
            Some(SharedCall::Running) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(SHARED_CALL_POLL).await;
            }
            Some(SharedCall::Running) => {
                return Err(error_info(
                    ErrorCode::Unavailable,
                    "another node runs this call and has not finished it; retry later",
                ));
            }
        }
    }
}

/// Acts on the server's lifecycle: false when the connection must drop at once (a cut since
/// the session opened); on a drain, the goodbye and the 1012 close are queued.
fn follow_lifecycle<B: Broker>(
    server: &Server<B>,
    session: &mut ServerSession,
    state: Lifecycle,
    cuts: u64,
) -> bool {
    if state.cuts != cuts {
        return false;
    }
    if let Some(drain) = state.drain {
        // FERRY-SHUTDOWN-1/2: goodbye with a retry hint drawn uniformly over the drain period,
        // so the clients' reconnects are spread across it.
        let drain = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX);
        session.shutdown(
            Duration::from_millis(rand::random_range(0..=drain)),
            server.now(),
        );
    }
    true
}

/// What one connection holds besides its session: its mailbox, the channels it joined in the
/// hub, and its share of the subscriptions gauge. Dropping it leaves every channel and gives
/// the share back.
struct Link<'a, B: Broker> {
    server: &'a Arc<Server<B>>,
    mailbox: Arc<Mailbox>,
    joined: HashSet<ChannelName>,
    /// The session's presence and holds, once it has either: most sessions never do, and
    /// this keeps them a pointer's size.
    presence: Option<Box<Presence>>,
    subscriptions: i64,
    /// Where the work the session's loop does not wait for sends its outcome: RPC calls, each
    /// on a task of its own, and the hooked requests.
    answers: Answers,
    /// The session's hooked publishes and subscribes, asked about one at a time and in the
    /// order they were sent (so a channel's publishes are stored in that order), on a task
    /// started with the first of them.
    hooks: Option<mpsc::UnboundedSender<Hooked>>,
    /// The frames of the batch being written, kept between batches so that a session that
    /// keeps up allocates nothing per delivery (given back past [`KEEP_BATCH`] frames).
    batch: Vec<FrameText>,
}

/// A batch buffer that held more than this many frames is given back once written.
const KEEP_BATCH: usize = 64;

/// What a session joined and holds, to end both when its connection ends.
struct Presence {
    /// The session's id.
    session: SessionId,
    /// The channels whose members the session joined (FERRY-PRESENCE-1).
    present: Vec<ChannelName>,
    /// The exclusive channels the session holds (FERRY-HOLD-1).
    holding: Vec<ChannelName>,
}

/// The outcomes of work that finishes off the session's loop, on a channel opened with the
/// first such work: most sessions never call or publish to a hooked namespace, and an open
/// channel holds a block of slots.
#[derive(Default)]
struct Answers {
    channel: Option<(mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>)>,
}

impl Answers {
    /// Where a piece of work sends its outcome.
    fn sender(&mut self) -> mpsc::UnboundedSender<Done> {
        let (sender, _) = self.channel.get_or_insert_with(mpsc::unbounded_channel);
        sender.clone()
    }

    /// The next outcome; never ready before the first [`sender`](Self::sender). The loop holds
    /// a sender, so the channel never closes while it waits.
    async fn next(&mut self) -> Done {
        match &mut self.channel {
            Some((_, receiver)) => match receiver.recv().await {
                Some(done) => done,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// Work that finished off the session's loop.
enum Done {
    /// A call's outcome; `duplicate` when it is an earlier call's (FERRY-RPC-3).
    Call {
        id: RequestId,
        outcome: Outcome,
        duplicate: bool,
    },
    /// A hooked publish, stored or refused.
    Published {
        id: RequestId,
        outcome: Result<PublishResponse, ErrorInfo>,
    },
    /// The hook's decision on a subscribe; an accepted one is carried out by the loop.
    SubscribeDecided {
        id: RequestId,
        channel: ChannelName,
        asked: Asked,
        decision: Result<(), ErrorInfo>,
    },
}

/// What a subscribe asks for besides its channel: the position it resumes from, and the
/// presence and hold its namespace calls for.
struct Asked {
    from: Option<StreamPosition>,
    presence: Option<Join>,
    hold: Option<HoldClaim>,
}

/// A request for the session's hook task.
enum Hooked {
    Publish {
        call: PublishHookCall,
        fence: Option<u64>,
    },
    Subscribe {
        call: SubscribeHookCall,
        asked: Asked,
    },
}

/// A text frame of `text`, as `Message::Text` would make it but without checking again that
/// the text is UTF-8: a [`FrameText`] is, and the check would be paid once per delivery.
fn text_frame(text: FrameText) -> Message {
    Message::Frame(WireFrame::message(
        text.into_bytes(),
        OpCode::Data(Data::Text),
        true,
    ))
}

/// Why a batch of writes did not go out.
enum WriteFailure {
    /// The socket is gone.
    Closed,
    /// The mailbox overflowed while the batch waited: the peer does not read.
    FellBehind,
    /// The batch waited longer than a live peer would let it.
    Stalled,
}

impl<B: Broker> Link<'_, B> {
    /// Carries out the session's actions and transmits; false once the connection is closed.
    async fn flush(&mut self, session: &mut ServerSession, socket: &mut WebSocket) -> bool {
        loop {
            let mut progressed = false;
            while let Some(action) = session.poll_action() {
                progressed = true;
                // Boxed: a request's broker call is rare beside deliveries, and its future,
                // held inline, would make every session's task that much larger.
                Box::pin(self.act(session, action)).await;
            }
            let mut closing = None;
            while let Some(transmit) = session.poll_transmit() {
                progressed = true;
                match transmit {
                    Transmit::Send { text } => {
                        if let Some(code) = error_code(&text) {
                            self.server.metrics.reject(&code);
                        }
                        self.batch.push(text);
                    }
                    Transmit::Close { code, reason } => {
                        closing = Some((code, reason));
                        break;
                    }
                }
            }
            if !self.batch.is_empty() {
                let mut batch = std::mem::take(&mut self.batch);
                self.server.metrics.messages_out.inc_by(batch.len() as u64);
                let written = self.write(socket, &mut batch).await;
                if batch.capacity() <= KEEP_BATCH {
                    batch.clear();
                    self.batch = batch;
                }
                match written {
                    Ok(()) => {}
                    Err(WriteFailure::Closed) => return false,
                    Err(WriteFailure::FellBehind) => {
                        self.fell_behind(session);
                        continue;
                    }
                    Err(WriteFailure::Stalled) => {
                        warn!(session = %session.session_id().as_str(), "a write stalled past the heartbeat deadline; dropping the connection");
                        return false;
                    }
                }
            }
            if let Some((code, reason)) = closing {
                Box::pin(close(self.server, socket, code, &reason)).await;
                return false;
            }
            if !progressed {
                return true;
            }
        }
    }

    /// Writes a batch of frames with one flush. Gives up when the mailbox overflows meanwhile
    /// or when the write takes longer than the heartbeat's interval plus timeout.
    async fn write(
        &self,
        socket: &mut WebSocket,
        batch: &mut Vec<FrameText>,
    ) -> Result<(), WriteFailure> {
        let send = async {
            for text in batch.drain(..) {
                socket
                    .feed(text_frame(text))
                    .await
                    .map_err(|_| WriteFailure::Closed)?;
            }
            socket.flush().await.map_err(|_| WriteFailure::Closed)
        };
        let overflow = async {
            loop {
                self.mailbox.ready().await;
                if self.mailbox.fell_behind() {
                    return WriteFailure::FellBehind;
                }
            }
        };
        // Most batches fit in the socket's buffer at once: only a write that has to wait sets
        // the timer that bounds it.
        let mut send = std::pin::pin!(send);
        if let Poll::Ready(written) =
            std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await
        {
            return written;
        }
        tokio::select! {
            written = send => written,
            failure = overflow => Err(failure),
            () = tokio::time::sleep(self.server.patience()) => Err(WriteFailure::Stalled),
        }
    }

    /// The session fell behind its outbound queue: close it with 4410 so that its client
    /// resumes at once, and nobody else waits for it (FERRY-EVENT-6).
    fn fell_behind(&self, session: &mut ServerSession) {
        info!(session = %session.session_id().as_str(), "the session fell behind its outbound queue; closing it with 4410");
        self.server.metrics.fell_behind.inc();
        session.close(
            close_code::FELL_BEHIND,
            "fell behind; resume from your last event",
        );
    }

    /// Does the broker's part of an action and answers the session.
    async fn act(&mut self, session: &mut ServerSession, action: Action) {
        let server = self.server;
        match action {
            Action::Subscribe {
                id,
                channel,
                from,
                presence,
                hold,
            } => {
                let asked = Asked {
                    from,
                    presence,
                    hold,
                };
                if server.namespaces.hooks(&channel, Hook::Subscribe) {
                    let call = SubscribeHookCall {
                        channel,
                        request_id: id,
                        session_id: session.session_id().clone(),
                        user: session.user().clone(),
                    };
                    self.hook(Hooked::Subscribe { call, asked });
                    return;
                }
                self.subscribe(session, id, channel, asked).await;
            }
            Action::Unsubscribe { channel, .. } => {
                let now = server.now();
                if let Some(presence) = &mut self.presence {
                    if let Some(at) = presence.present.iter().position(|c| *c == channel) {
                        presence.present.swap_remove(at);
                        // FERRY-PRESENCE-1: the unsubscribe is answered (after this action)
                        // once every node reads the leave.
                        recorded(
                            server
                                .broker
                                .leave_presence(&channel, &presence.session, now),
                        )
                        .await;
                    }
                    if let Some(at) = presence.holding.iter().position(|c| *c == channel) {
                        presence.holding.swap_remove(at);
                        server.broker.release_hold(&channel, &presence.session, now);
                    }
                }
                self.leave(&channel);
            }
            Action::Members {
                id,
                channel,
                after,
                limit,
            } => match server
                .broker
                .members(&channel, after.as_ref(), limit, server.now())
                .await
            {
                Ok((members, next, head)) => session.member_page(&id, members, next, head),
                Err(e) => session.request_failed(&id, error_info(e.code(), &e.to_string())),
            },
            Action::Publish {
                id,
                channel,
                idempotency_key,
                payload,
                fence,
            } => {
                if let Err(refusal) = server.namespaces.check(&channel, &payload) {
                    session.request_failed(&id, error_info(refusal.code(), &refusal.to_string()));
                    return;
                }
                if server.namespaces.hooks(&channel, Hook::Publish) {
                    let call = PublishHookCall {
                        channel,
                        idempotency_key,
                        payload,
                        request_id: id,
                        session_id: session.session_id().clone(),
                        user: session.user().clone(),
                    };
                    self.hook(Hooked::Publish { call, fence });
                    return;
                }
                match store(server, &channel, idempotency_key, payload, fence).await {
                    Ok(ack) => session.published(&id, ack),
                    Err(error) => session.request_failed(&id, error),
                }
            }
            Action::Rpc {
                id,
                method,
                idempotency_key,
                params,
            } => {
                let Some(declared) = server.namespaces.method(&method) else {
                    let message = "the method is not one this server's application declares";
                    session.request_failed(&id, error_info(ErrorCode::UnknownMethod, message));
                    return;
                };
                if let Err(refusal) = declared.check_params(&params) {
                    session.request_failed(&id, error_info(refusal.code(), &refusal.to_string()));
                    return;
                }
                let call = RpcCall {
                    idempotency_key,
                    method,
                    params,
                    request_id: id.clone(),
                    session_id: session.session_id().clone(),
                    user: session.user().clone(),
                };
                let server = Arc::clone(server);
                let answers = self.answers.sender();
                tokio::spawn(async move {
                    let (outcome, duplicate) = call_once(&server, call).await;
                    let _ = answers.send(Done::Call {
                        id,
                        outcome,
                        duplicate,
                    });
                });
            }
        }
    }

    /// Joins the channel in the hub, claims its hold if asked, reads its head (and replay)
    /// from the broker, joins its members if it keeps presence, and answers the session.
    async fn subscribe(
        &mut self,
        session: &mut ServerSession,
        id: RequestId,
        channel: ChannelName,
        asked: Asked,
    ) {
        let server = self.server;
        // Joined before the head is read, so no event after it is missed
        // (FERRY-SUBSCRIBE-2); the session drops those at or before it. Joined before the
        // hold is claimed, too, so a take-over that follows the grant reaches this session.
        if let Err(e) = self.join(&channel).await {
            session.request_failed(&id, error_info(e.code(), &e.to_string()));
            return;
        }
        let fence = match &asked.hold {
            None => None,
            Some(hold) => match self.claim(session, &channel, hold).await {
                Ok(fence) => Some(fence),
                Err(error) => {
                    self.leave(&channel);
                    session.request_failed(&id, error);
                    return;
                }
            },
        };
        let read = server
            .broker
            .subscribe(&channel, asked.from.as_ref(), server.now())
            .await;
        let joined = match (&read, asked.presence) {
            (Ok(_), Some(Join { info })) => {
                let present = PresentSession {
                    session: session.session_id().clone(),
                    user: session.user().clone(),
                    info,
                };
                server
                    .broker
                    .join_presence(&channel, present, server.now())
                    .await
                    .map(|()| self.presence(session).present.push(channel.clone()))
            }
            _ => Ok(()),
        };
        match (read, joined) {
            (Ok((head, recovery, replay)), Ok(())) => {
                server.metrics.replayed.inc_by(replay.len() as u64);
                session.subscribed_with_hold(&id, head, recovery, replay, fence);
            }
            (Err(e), _) | (_, Err(e)) => {
                if fence.is_some() {
                    self.presence(session)
                        .holding
                        .retain(|held| *held != channel);
                    server
                        .broker
                        .release_hold(&channel, session.session_id(), server.now());
                }
                self.leave(&channel);
                session.request_failed(&id, error_info(e.code(), &e.to_string()));
            }
        }
    }

    /// The session's presence and holds, made at the first.
    fn presence(&mut self, session: &ServerSession) -> &mut Presence {
        self.presence.get_or_insert_with(|| {
            Box::new(Presence {
                session: session.session_id().clone(),
                present: Vec::new(),
                holding: Vec::new(),
            })
        })
    }

    /// Claims the hold of an exclusive channel for the session (FERRY-HOLD-1, FERRY-HOLD-2):
    /// its fence, or the error to answer the subscribe with.
    async fn claim(
        &mut self,
        session: &ServerSession,
        channel: &ChannelName,
        hold: &HoldClaim,
    ) -> Result<u64, ErrorInfo> {
        let server = self.server;
        let claimed = server
            .broker
            .claim_hold(
                channel,
                session.session_id(),
                session.user(),
                hold.fence,
                hold.mode,
                server.now(),
            )
            .await
            .map_err(|e| error_info(e.code(), &e.to_string()))?;
        match claimed {
            Claimed::Granted { fence, displaced } => {
                if let Some(displaced) = displaced {
                    info!(channel = %channel.as_str(), session = %session.session_id().as_str(), displaced = %displaced.session.as_str(), "a hold passed to this session");
                }
                self.presence(session).holding.push(channel.clone());
                Ok(fence)
            }
            Claimed::Held => Err(error_info(
                ErrorCode::Held,
                "another session holds this exclusive channel",
            )),
        }
    }

    /// Hands a hooked request to the session's hook task, starting it with the first.
    fn hook(&mut self, request: Hooked) {
        let hooks = self.hooks.get_or_insert_with(|| {
            let (sender, requests) = mpsc::unbounded_channel();
            tokio::spawn(ask_in_order(
                Arc::clone(self.server),
                requests,
                self.answers.sender(),
            ));
            sender
        });
        // The task lives as long as this sender: it cannot have gone.
        let _ = hooks.send(request);
    }

    /// Hands the session what finished off its loop.
    async fn complete(&mut self, session: &mut ServerSession, done: Done) {
        match done {
            Done::Call {
                id,
                outcome,
                duplicate,
            } => session.answered(&id, outcome, duplicate, self.server.now()),
            Done::Published {
                id,
                outcome: Err(error),
            }
            | Done::SubscribeDecided {
                id,
                decision: Err(error),
                ..
            } => session.request_failed(&id, error),
            Done::Published {
                id,
                outcome: Ok(ack),
            } => session.published(&id, ack),
            Done::SubscribeDecided {
                id,
                channel,
                asked,
                decision: Ok(()),
            } => self.subscribe(session, id, channel, asked).await,
        }
    }

    async fn join(&mut self, channel: &ChannelName) -> Result<(), crate::broker::BrokerError> {
        let server = self.server;
        server
            .hub
            .join(&server.broker, channel, &self.mailbox, server.now())
            .await?;
        self.joined.insert(channel.clone());
        server.metrics.channels_followed.set(hub_channels(server));
        Ok(())
    }

    fn leave(&mut self, channel: &ChannelName) {
        if self.joined.remove(channel) {
            let server = self.server;
            server
                .hub
                .leave(&server.broker, channel, &self.mailbox, server.now());
            server.metrics.channels_followed.set(hub_channels(server));
        }
    }

    /// The subscriptions gauge follows this session's count.
    fn count_subscriptions(&mut self, session: &ServerSession) {
        let count = i64::try_from(session.subscriptions().count()).unwrap_or(i64::MAX);
        if count != self.subscriptions {
            self.server
                .metrics
                .subscriptions
                .inc_by(count - self.subscriptions);
            self.subscriptions = count;
        }
    }

    /// The client ended the session with its close frame: it leaves every channel it is
    /// present in now rather than lapsing (FERRY-PRESENCE-1), recorded where every node reads
    /// it before the close is answered.
    async fn leave_everywhere(&mut self) {
        let server = self.server;
        let now = server.now();
        let Some(presence) = &mut self.presence else {
            return;
        };
        let leaves: Vec<_> = presence
            .present
            .iter()
            .map(|channel| {
                server
                    .broker
                    .leave_presence(channel, &presence.session, now)
            })
            .collect();
        recorded(futures_util::future::join_all(leaves)).await;
        presence.present.clear();
    }
}

/// Waits for leaves to be recorded where every node reads them, at most [`LEAVE_WAIT`].
async fn recorded(leaves: impl Future) {
    if tokio::time::timeout(LEAVE_WAIT, leaves).await.is_err() {
        debug!("a leave is slow to record; the session is answered meanwhile");
    }
}

impl<B: Broker> Drop for Link<'_, B> {
    fn drop(&mut self) {
        let server = self.server;
        let now = server.now();
        // FERRY-PRESENCE-1: a client that closed has left already; any other end lapses, so
        // that a client reconnecting within leave_after causes no leave and no join.
        // FERRY-HOLD-4: every hold ends with its session.
        if let Some(presence) = self.presence.take() {
            for channel in &presence.present {
                server
                    .broker
                    .lapse_presence(channel, &presence.session, now);
            }
            for channel in &presence.holding {
                server.broker.release_hold(channel, &presence.session, now);
            }
        }
        for channel in std::mem::take(&mut self.joined) {
            server
                .hub
                .leave(&server.broker, &channel, &self.mailbox, server.now());
        }
        server.metrics.channels_followed.set(hub_channels(server));
        server.metrics.subscriptions.dec_by(self.subscriptions);
    }
}

fn hub_channels<B: Broker>(server: &Server<B>) -> i64 {
    i64::try_from(server.hub.channels()).unwrap_or(i64::MAX)
}

/// The error code of an outbound error message, for the rejections metric. Errors are rare,
/// so parsing the frame again costs nothing on the hot path (events are not errors).
fn error_code(text: &FrameText) -> Option<String> {
    if !text.as_bytes().starts_with(br#"{"type":"error""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(text.as_bytes()).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

/// The close code for a frame the WebSocket layer refused: the size gate runs there, before a
/// frame is buffered whole (1009, FERRY-SIZE-3), and so does UTF-8 validation of text frames
/// (1007, FERRY-TRANSPORT-4) and every framing rule of RFC 6455 (1002: an unmasked frame, RSV
/// bits, a fragmented or oversized control frame, a continuation out of place, a reserved
/// opcode, a malformed close frame). `None` for a broken connection.
fn refused_frame(error: tokio_tungstenite::tungstenite::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        Error::Capacity(_) => Some((close_code::MESSAGE_TOO_BIG, "message too big")),
        Error::Utf8(_) => Some((close_code::INVALID_PAYLOAD, "text frame is not UTF-8")),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(violation) => {
            debug!(%violation, "a WebSocket protocol violation; closing with 1002");
            Some((close_code::PROTOCOL_ERROR, "WebSocket protocol violation"))
        }
        _ => None,
    }
}

/// How long the peer may take to answer a close frame before the connection is dropped.
const CLOSING_HANDSHAKE: Duration = Duration::from_secs(2);

/// How long an unsubscribe's or a close frame's answer waits for its leaves to be recorded
/// where every node reads them; past it (a broker slow to answer), the answer goes and the
/// leaves complete on their own.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// How often a node asks the broker whether another node has finished a call it waits for.
const SHARED_CALL_POLL: Duration = Duration::from_millis(25);

/// Sends a close frame and completes the closing handshake (RFC 6455 §5.5.1): frames still
/// arriving are read and dropped until the peer's close. Dropping the TCP connection with
/// unread data would reset it, and a reset can destroy the close frame before the peer reads
/// its code. Both halves are bounded: the close frame gets out within the heartbeat's interval
/// plus timeout (a session that fell behind must first read what is queued before it; one
/// that does not read for that long is dead), and the answer comes within
/// [`CLOSING_HANDSHAKE`]. Then the server closes TCP first: it ends its write side and drains
/// what still arrives, within as long again, which also covers frames behind one the WebSocket
/// layer refused while the answer was awaited. When the WebSocket layer had already stopped
/// reading at a refused frame (1002, 1007, 1009), the bytes after it are drained at once.
async fn close<B: Broker>(server: &Server<B>, socket: &mut WebSocket, code: u16, reason: &str) {
    server.metrics.close(code);
    if socket.is_terminated() {
        close_after_violation(socket, code, reason, server.patience(), CLOSING_HANDSHAKE).await;
        return;
    }
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let sent = tokio::time::timeout(server.patience(), socket.send(Message::Close(Some(frame))));
    if !matches!(sent.await, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSING_HANDSHAKE, async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    // The frames read may have ended at one the WebSocket layer refused, with more of the
    // peer's bytes behind it: drain them, so that no reset destroys the close frame sent.
    shut_and_drain(socket, CLOSING_HANDSHAKE).await;
}
