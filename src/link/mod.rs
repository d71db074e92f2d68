//! The tokio shell: one XEP-0114 connection at a time, feeding the engine and draining what it wants sent.
//!
//! Framing and the handshake come from tokio-xmpp's `xmlstream` layer (stanzas as plain minidom elements, so the
//! engine sees exactly what the server sent). What this shell adds: reconnect with exponential backoff, a
//! keepalive ping on silence, the engine's timers, logging of the engine's events, and a filter under the parser
//! that drops stray text between stanzas ([`stray_text`]: a server bug that would otherwise cost a reconnect) and
//! replaces a stanza too deep or too long for the parser by a marker stanza ([`limits`]: one remote user's stanza
//! nested 15 000 levels would otherwise overflow the stack).

pub mod check;
pub mod filtered_io;
pub mod limits;
mod shutdown;
pub mod store_task;
pub mod stray_text;
pub mod workers;

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::xmlstream::{self, ReadError, StreamHeader, Timeouts, XmlStream};
use tracing::{debug, error, info, warn};
use xmpp_parsers::minidom::Element;

use crate::avatar::AvatarHash;
use crate::engine::grants::{Direction, Right};
use crate::engine::{Engine, Event, StampStatus, StoreRequest, SyncId, TranscodeJob, TranscodeResult};
use crate::image::Rendition;
use crate::ops::Ops;
use crate::ops::logs::Redacted;
use crate::ops::observed::Observed;
use crate::store::Store;
use crate::wire::stanza::{IqType, iq};
use crate::wire::{ns, xml};
use filtered_io::StrayTextGuard;
use limits::StanzaLimits;
use store_task::{StoreAnswer, StoreTask};
use workers::ImageWorkers;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `host:port` of the server's component listener.
    pub address: String,
    /// The component's JID (`to` of the stream header).
    pub component: String,
    /// The shared secret.
    pub secret: String,
    /// Silence after which the link pings the server.
    pub keepalive: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How deep and long one incoming stanza may be (enforced before parsing).
    pub stanza_limits: StanzaLimits,
    /// On shutdown, how long image jobs already running may take to finish ([`shutdown`]).
    pub drain_timeout: Duration,
}

/// Why a connection attempt or a session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP or stream I/O.
    #[error("connection to {address} failed: {source}")]
    Io {
        /// The server address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server did not accept the handshake (wrong secret or component name).
    #[error("the server refused the handshake for {component}: {detail}")]
    Handshake {
        /// The component JID.
        component: String,
        /// What came instead of `<handshake/>`.
        detail: String,
    },
    /// The server closed the stream or it broke.
    #[error("stream lost: {0}")]
    Lost(String),
}

type Stream = XmlStream<BufStream<StrayTextGuard<TcpStream>>, Element>;

/// What the link drives: the gateway's engine, or a migration sweep around it. Same sans-IO contract as
/// [`Engine`]: inputs with `now`, then every output drained.
pub trait Driven {
    /// The stream is up.
    fn handle_connected(&mut self, now: std::time::Instant);
    /// The stream went away.
    fn handle_disconnected(&mut self, now: std::time::Instant);
    /// One stanza from the server.
    fn handle_stanza(&mut self, now: std::time::Instant, stanza: Element);
    /// A deadline from [`Driven::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: std::time::Instant);
    /// The next stanza to send.
    fn poll_transmit(&mut self) -> Option<Element>;
    /// The next image job to run off this thread ([`Engine::poll_transcode`]).
    fn poll_transcode(&mut self) -> Option<TranscodeJob>;
    /// An image job's result.
    fn handle_transcoded(&mut self, now: std::time::Instant, done: TranscodeResult);
    /// The next request for the store ([`Engine::poll_store`]).
    fn poll_store(&mut self) -> Option<StoreRequest>;
    /// A sync's outcome ([`Engine::handle_stored`]).
    fn handle_stored(&mut self, now: std::time::Instant, id: SyncId, outcome: Result<(), String>);
    /// A blob read back ([`Engine::handle_loaded`]).
    fn handle_loaded(&mut self, now: std::time::Instant, hash: AvatarHash, blob: Option<Rendition>);
    /// The store committed a group of `writes` in `took` (for metrics; nothing waits on it).
    fn handle_committed(&mut self, _writes: usize, _took: Duration) {}
    /// When [`Driven::handle_timeout`] must next be called.
    fn poll_timeout(&self) -> Option<std::time::Instant>;
    /// Hands what happened to the operator (logs, reports), after every input.
    fn drain(&mut self);
    /// Whether the work is finished: the link then closes the stream and returns.
    fn is_done(&self) -> bool {
        false
    }
}

/// Runs the gateway until `shutdown` resolves, reconnecting whenever the server goes away; `ops` sees it all.
pub async fn run(
    config: LinkConfig,
    engine: Engine,
    store: Box<dyn Store>,
    ops: Ops,
    shutdown: impl Future<Output = ()>,
) {
    drive(&config, &mut Observed::new(engine, ops), store, shutdown).await;
}

/// Drives `driven` until it is done or `shutdown` resolves, reconnecting whenever the server goes away; `store`
/// carries out its store requests on a thread of its own, and every one asked is committed before this returns.
pub async fn drive(
    config: &LinkConfig,
    driven: &mut impl Driven,
    store: Box<dyn Store>,
    shutdown: impl Future<Output = ()>,
) {
    let mut store = StoreTask::spawn(store);
    connect_and_serve(config, driven, &mut store, shutdown).await;
    finish(driven, store);
}

/// One connection attempt, driven until `driven` is done or the stream ends (`avatar-gateway check`).
pub async fn drive_once(config: &LinkConfig, driven: &mut impl Driven, store: Box<dyn Store>) -> Result<(), LinkError> {
    let mut store = StoreTask::spawn(store);
    let ended = match connect(config).await {
        Ok(stream) => serve(config, driven, &mut store, stream, std::pin::pin!(std::future::pending())).await,
        Err(e) => Err(e),
    };
    finish(driven, store);
    ended
}

/// Every store request asked is carried out before the store closes.
fn finish(driven: &mut impl Driven, store: StoreTask) {
    while let Some(request) = driven.poll_store() {
        store.submit(request);
    }
    store.close();
}

/// One connected session, from the engine's point of view: connected, served, disconnected.
async fn serve(
    config: &LinkConfig,
    driven: &mut impl Driven,
    store: &mut StoreTask,
    stream: Stream,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), LinkError> {
    info!(component = %config.component, address = %config.address, "connected");
    driven.handle_connected(now());
    let ended = session(config, driven, store, stream, shutdown).await;
    driven.handle_disconnected(now());
    driven.drain();
    ended
}

async fn connect_and_serve(
    config: &LinkConfig,
    driven: &mut impl Driven,
    store: &mut StoreTask,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(500);
    loop {
        // A server that never answers the TCP connect must not hold up a shutdown for the kernel's timeout.
        let connected = tokio::select! {
            connected = connect(config) => connected,
            () = shutdown.as_mut() => return info!("shut down"),
        };
        match connected {
            Ok(stream) => {
                backoff = Duration::from_millis(500);
                match serve(config, driven, store, stream, shutdown.as_mut()).await {
                    Ok(()) => return info!("shut down"),
                    Err(e) => warn!("{e}; reconnecting"),
                }
            }
            Err(e @ LinkError::Handshake { .. }) => error!("{e}; check component_secret and the Component name"),
            Err(e) => warn!("{e}; retrying in {backoff:?}"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.as_mut() => return info!("shut down"),
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

/// Opens the stream and authenticates (XEP-0114 §3: SHA-1 of stream id + secret, lower-case hex).
async fn connect(config: &LinkConfig) -> Result<Stream, LinkError> {
    let io = |source| LinkError::Io { address: config.address.clone(), source };
    let tcp = TcpStream::connect(&config.address).await.map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let header = StreamHeader { to: Some(Cow::Borrowed(&config.component)), from: None, id: None };
    let timeouts = Timeouts { read_timeout: config.keepalive, response_timeout: config.keepalive };
    let guard = StrayTextGuard::new(tcp, config.stanza_limits);
    let pending =
        xmlstream::initiate_stream(BufStream::new(guard), ns::COMPONENT, header, timeouts).await.map_err(io)?;
    let stream_id = pending.header().id.map(Cow::into_owned).ok_or_else(|| LinkError::Handshake {
        component: config.component.clone(),
        detail: "the stream header has no id".into(),
    })?;
    let mut stream: Stream = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    stream.send(&handshake).await.map_err(io)?;
    match stream.next().await {
        Some(Ok(el)) if el.name() == "handshake" => Ok(stream),
        other => Err(LinkError::Handshake { component: config.component.clone(), detail: format!("{other:?}") }),
    }
}

/// One connected session: returns `Ok` on shutdown, `Err` when the stream is lost.
async fn session(
    config: &LinkConfig,
    driven: &mut impl Driven,
    store: &mut StoreTask,
    mut stream: Stream,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<(), LinkError> {
    let server = config.component.split_once('.').map_or(config.component.as_str(), |(_, d)| d).to_owned();
    let mut pings = 0u64;
    let mut workers = ImageWorkers::per_core();
    // Store answers this session still waits for (a shutdown waits for them too). Answers to a previous session's
    // requests may arrive in this one: the count saturates at 0, so at worst a drain stops waiting early.
    let mut due = 0usize;
    loop {
        workers.start(driven);
        flush(driven, store, &mut due, &mut stream).await?;
        if driven.is_done() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        let timer = driven.poll_timeout().map(Instant::from_std);
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(stanza)) => {
                    debug!(r#in = %Redacted(&stanza));
                    driven.handle_stanza(now(), stanza);
                }
                // Silence: make the server say something before the hard timeout (XEP-0199 ping; its reply is an
                // unsolicited result the engine drops).
                Some(Err(ReadError::SoftTimeout)) => {
                    pings += 1;
                    let ping = iq(ns::COMPONENT, IqType::Get, &format!("keepalive{pings}"), Some(&config.component),
                        Some(&server), Some(xml::element("ping", ns::PING).build()));
                    stream.send(&ping).await.map_err(|e| LinkError::Lost(e.to_string()))?;
                }
                // One malformed stanza from a remote user is not a reason to drop everyone's link.
                Some(Err(ReadError::ParseError(e))) => warn!("unparseable stanza dropped: {e}"),
                Some(Err(ReadError::StreamFooterReceived)) | None => return Err(LinkError::Lost("the server closed the stream".into())),
                Some(Err(ReadError::HardError(e))) => return Err(LinkError::Lost(e.to_string())),
            },
            done = workers.next() => driven.handle_transcoded(now(), done),
            answer = store.next() => answered(driven, answer, &mut due),
            () = sleep_until(timer) => driven.handle_timeout(now()),
            () = shutdown.as_mut() => return shutdown::drain(config, driven, store, due, stream, workers).await,
        }
    }
}

/// Hands `driven`'s events to the operator (which may make it ask for more: a check starts its reads then), then
/// the store what it asks of it (counting in `due` the requests it will answer), and sends what it wants sent.
async fn flush(
    driven: &mut impl Driven,
    store: &StoreTask,
    due: &mut usize,
    stream: &mut Stream,
) -> Result<(), LinkError> {
    driven.drain();
    while let Some(request) = driven.poll_store() {
        if matches!(request, StoreRequest::Sync(_) | StoreRequest::LoadBlob(_)) {
            *due += 1;
        }
        store.submit(request);
    }
    while let Some(stanza) = driven.poll_transmit() {
        debug!(out = %Redacted(&stanza));
        stream.send(&stanza).await.map_err(|e| LinkError::Lost(e.to_string()))?;
    }
    Ok(())
}

/// A store answer back to `driven`.
fn answered(driven: &mut impl Driven, answer: StoreAnswer, due: &mut usize) {
    match answer {
        StoreAnswer::Stored(id, outcome) => {
            *due = due.saturating_sub(1);
            driven.handle_stored(now(), id, outcome);
        }
        StoreAnswer::Loaded(hash, bytes) => {
            *due = due.saturating_sub(1);
            driven.handle_loaded(now(), hash, bytes);
        }
        StoreAnswer::Failed(e) => error!("store: {e}"),
        StoreAnswer::Committed { writes, took } => driven.handle_committed(writes, took),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Logs what the engine reports; the capability report is the operator's start-up checklist.
pub fn log_event(event: &Event) {
    match event {
        Event::Capabilities { host, directions } => {
            // One line per direction, readable at a glance; what to add to the server's config is on the line.
            for status in directions {
                let what = status.direction.describe();
                let fixes = |rights: &[Right]| {
                    rights.iter().map(|r| format!("{r} ({})", r.how_to_grant())).collect::<Vec<_>>().join("; ")
                };
                if !status.missing.is_empty() {
                    warn!(%host, "OFF {what}: needs {}", fixes(&status.missing));
                } else if !status.limited.is_empty() {
                    let (_, left_out) = status.direction.improved_by();
                    warn!(%host, "ON  {what}, but {left_out}: add {}", fixes(&status.limited));
                } else {
                    info!(%host, "ON  {what}");
                }
            }
        }
        Event::PresenceStamp { host, status: status @ StampStatus::Works } => info!(%host, "{status}"),
        Event::PresenceStamp { host, status } => warn!(%host, "{status}"),
        Event::Server { host, software } => info!(%host, "the server runs {software}"),
        Event::RightRefused { host, right, reason, retry_in } => {
            let off: Vec<&str> =
                Direction::ALL.iter().filter(|d| d.needs().contains(right)).map(|d| d.describe()).collect();
            let off = if off.is_empty() { String::new() } else { format!(", so these stay off: {}", off.join("; ")) };
            warn!(%host, "the server refused the {right} it granted ({reason}): not asked again for {retry_in:?}{off}");
        }
        Event::Refused { account, scheme, reason } => warn!(%account, scheme = scheme.name(), "refused: {reason}"),
        Event::Untrusted { from, what } => warn!(%from, "{what} from {from} (this sender is quiet for a minute now)"),
        Event::StoreFailed(e) => error!("store: {e}"),
        Event::RateLimited { account, limit, retry_in } => {
            warn!(%account, "over its rate of {limit}: its new avatars, sets and reads wait {retry_in:?}")
        }
        Event::NotGranted { account, what } => warn!(%account, "not granted: {what}"),
        other => info!("{other:?}"),
    }
}
