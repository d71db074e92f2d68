//! The hot path: the engine with its real shell parts (the store thread over a RedbStore in a temp dir, or a
//! MemoryStore) and a server played in memory (the engine tests' `FakeServer`, answering as Prosody does).
//!
//! - `presence`: N accounts whose avatar is bridged, fed rounds of presences whose hash did not change; the
//!   reference is the same run over a MemoryStore. Printed: presences/s, the RedbStore / MemoryStore ratio, and IQs
//!   sent per unchanged presence, for a converting (mod_vcard_legacy) and a plain server.
//! - `burst`: N accounts' first presences at once (a reconnect beside a busy server), each with its own image: time
//!   to convert them all on the wall clock (a 10 s IQ timeout applies), accounts not converted, and time per
//!   account (linear growth = the same figure for every N).
//! - `latency`: while a 1600×1200 JPEG is transcoded on another thread (as the shell's worker pool does), the time
//!   from an unchanged presence in to the engine having nothing left to do: p50 / p99.
//! - `link`: presences through the XEP-0114 link (`link::drive`: handshake, byte filter, limits, session loop)
//!   from a server on a loopback socket, against the same bytes from the same server read by tokio-xmpp's
//!   xmlstream alone (parse-only). Printed: stanzas/s of each and the ratio (target ≥ 0.5).
//! - `memory`: heap bytes per tracked account (a counting allocator), 100,000 accounts restored from a snapshot
//!   (cache empty).
//!
//! Run: `cargo bench --bench hot_path` (full sizes). Under `cargo test --benches` (the test command) every scenario
//! runs once at a small size, so the bench cannot rot.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/engine_support/mod.rs"]
mod engine_support;

use std::time::{Duration, Instant};

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::{Current, Scheme, Seen};
use avatar_gateway::engine::{Engine, Event, ServerConverts};
use avatar_gateway::link::store_task::{StoreAnswer, StoreTask};
use avatar_gateway::store::{MemoryStore, RedbStore, Snapshot, Store, StoredAccount};
use avatar_gateway::wire::{b64, ns};
use engine_support::{COMPONENT, FakeServer, Harness, config, parse};
use xmpp_parsers::minidom::Element;

/// Counts live heap bytes, so the memory figure is what the engine holds (not what the allocator kept).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = |full_size: usize, quick: usize| if full { full_size } else { quick };
    // First, while nothing else runs: the heap figure must not see another scenario's threads free memory.
    memory(scale(100_000, 1_000));
    presence(scale(2_000, 20), scale(10, 2));
    let sizes = if full { vec![2_000, 10_000, 20_000] } else { vec![50] };
    burst(&sizes);
    latency(scale(5_000, 20));
    link(scale(200_000, 200));
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Redb,
    Memory,
}

/// The engine, its store thread, and the server, driven synchronously on this thread.
struct Shell {
    engine: Engine,
    server: FakeServer,
    store: Option<StoreTask>,
    /// Bytes each XEP-0008 client serves for `jabber:iq:avatar`, by account name.
    images: std::collections::HashMap<String, String>,
    sent: u64,
    adopted: usize,
    _dir: tempfile::TempDir,
}

impl Shell {
    fn new(converts: bool, backend: Backend) -> Self {
        let (mode, server) = if converts {
            (ServerConverts::Yes, FakeServer::converting())
        } else {
            (ServerConverts::No, FakeServer::plain())
        };
        let mut h = Harness::prosody(mode, server);
        let engine = std::mem::replace(&mut h.engine, Engine::new(config(mode), Snapshot::default()));
        let dir = tempfile::tempdir().expect("a temp dir");
        let store: Box<dyn Store> = match backend {
            Backend::Redb => Box::new(RedbStore::open(&dir.path().join("bench.redb"), 64 << 20).expect("redb")),
            Backend::Memory => Box::new(MemoryStore::new(64 << 20)),
        };
        Self {
            engine,
            server: std::mem::take(&mut h.server),
            store: Some(StoreTask::spawn(store)),
            images: Default::default(),
            sent: 0,
            adopted: 0,
            _dir: dir,
        }
    }

    fn input(&mut self, stanza: Element) {
        self.engine.handle_stanza(Instant::now(), stanza);
        self.settle();
    }

    /// What the shell does after every input, until the engine asks nothing more.
    fn settle(&mut self) {
        loop {
            let mut busy = false;
            while let Some(job) = self.engine.poll_transcode() {
                busy = true;
                self.engine.handle_transcoded(Instant::now(), avatar_gateway::link::workers::run(job));
            }
            let store = self.store.as_mut().expect("open");
            while let Some(request) = self.engine.poll_store() {
                store.submit(request);
            }
            while let Some(answer) = store.try_next() {
                busy = true;
                match answer {
                    StoreAnswer::Stored(id, outcome) => self.engine.handle_stored(Instant::now(), id, outcome),
                    StoreAnswer::Loaded(hash, blob) => self.engine.handle_loaded(Instant::now(), hash, blob),
                    StoreAnswer::Failed(e) => panic!("store: {e}"),
                    StoreAnswer::Committed { .. } => {}
                }
            }
            while let Some(sent) = self.engine.poll_transmit() {
                busy = true;
                self.sent += 1;
                for reply in self.answer(&sent) {
                    self.engine.handle_stanza(Instant::now(), reply);
                }
            }
            while let Some(event) = self.engine.poll_event() {
                self.adopted += usize::from(matches!(event, Event::Adopted { .. }));
            }
            if !busy {
                return;
            }
        }
    }

    /// The server's and the clients' answers to what the gateway sent.
    fn answer(&mut self, sent: &Element) -> Vec<Element> {
        if FakeServer::is_privileged(sent) {
            return self.server.answer(sent);
        }
        let query = sent.get_child("query", ns::IQ_AVATAR);
        let (Some(to), Some(id), Some(_)) = (sent.attr("to"), sent.attr("id"), query) else { return vec![] };
        let user = to.split('@').next().unwrap_or_default();
        let Some(data) = self.images.get(user) else { return vec![] };
        vec![parse(&format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{to}' to='{COMPONENT}'>\
             <query xmlns='jabber:iq:avatar'><data mimetype='image/png'>{data}</data></query></iq>"
        ))]
    }

    /// Alice-like XEP-0008 client `user` (`u<i>`) announcing its image's hash.
    fn presence(&mut self, user: &str, hash: &AvatarHash) -> Element {
        parse(&format!(
            "<presence xmlns='jabber:component:accept' from='{user}@localhost/pandion' to='{COMPONENT}'>\
             <x xmlns='jabber:x:avatar'><hash>{hash}</hash></x></presence>"
        ))
    }

    /// Every account `u0…` gets image `seed + i` and announces it; returns the presences to replay and their hashes.
    fn bridge(&mut self, accounts: usize, distinct: bool) -> Vec<Element> {
        let mut presences = Vec::with_capacity(accounts);
        for i in 0..accounts {
            let user = format!("u{i}");
            let png = tiny_png(if distinct { i as u32 } else { 0 });
            self.images.insert(user.clone(), b64::encode(&png));
            presences.push(self.presence(&user, &AvatarHash::of(&png)));
        }
        presences
    }

    fn close(mut self) {
        if let Some(store) = self.store.take() {
            store.close();
        }
    }
}

/// A distinct 8×8 PNG for each `seed` (its pixels spell the seed).
fn tiny_png(seed: u32) -> Vec<u8> {
    let mut img = image::RgbaImage::new(8, 8);
    for (i, px) in img.pixels_mut().enumerate() {
        let byte = (seed >> ((i % 4) * 8)) as u8;
        *px = image::Rgba([byte, (i as u8).wrapping_mul(31), byte ^ 0x5a, 255]);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("PNG encode");
    out.into_inner()
}

/// Unchanged presences per second and IQs sent per unchanged presence.
fn unchanged_rate(converts: bool, backend: Backend, accounts: usize, rounds: usize) -> (f64, f64) {
    let mut shell = Shell::new(converts, backend);
    let presences = shell.bridge(accounts, true);
    for p in &presences {
        shell.input(p.clone());
    }
    assert_eq!(shell.adopted, accounts, "every account bridged before the measured rounds");
    let sent_before = shell.sent;
    let start = Instant::now();
    for _ in 0..rounds {
        for p in &presences {
            shell.input(p.clone());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = (accounts * rounds) as f64;
    let iq = (shell.sent - sent_before) as f64 / n;
    shell.close();
    (n / elapsed, iq)
}

fn presence(accounts: usize, rounds: usize) {
    println!("\npresence: {accounts} bridged accounts × {rounds} rounds of unchanged XEP-0008 presences (median of 3)");
    println!("| server | store | presences/s | redb / memory | IQ per unchanged presence |");
    println!("|---|---|---|---|---|");
    for converts in [true, false] {
        let median = |backend| {
            let mut runs: Vec<(f64, f64)> =
                (0..3).map(|_| unchanged_rate(converts, backend, accounts, rounds)).collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            runs[1]
        };
        let (memory, _) = median(Backend::Memory);
        let (redb, iq) = median(Backend::Redb);
        let server = if converts { "converting" } else { "plain" };
        println!("| {server} | memory | {memory:.0} | | |");
        println!("| {server} | redb | {redb:.0} | {:.2} | {iq:.3} |", redb / memory);
    }
}

fn burst(sizes: &[usize]) {
    println!("\nburst: N accounts' first presences at once, each its own image, RedbStore, plain server");
    println!("| N | time to convert all | per account | not converted |");
    println!("|---|---|---|---|");
    for &n in sizes {
        let mut shell = Shell::new(false, Backend::Redb);
        let presences = shell.bridge(n, true);
        let start = Instant::now();
        // All presences arrive before the gateway hears any answer: queue them as the link would read them.
        for p in presences {
            shell.engine.handle_stanza(Instant::now(), p);
        }
        shell.settle();
        let elapsed = start.elapsed();
        let lost = n - shell.adopted;
        println!("| {n} | {:.2} s | {:.0} µs | {lost} |", elapsed.as_secs_f64(), elapsed.as_micros() as f64 / n as f64);
        shell.close();
    }
}

fn latency(samples: usize) {
    let jpeg = std::fs::read(common::fixtures_dir().join("images/large-1600x1200.jpg")).expect("the large JPEG");
    let mut shell = Shell::new(true, Backend::Redb);
    let presences = shell.bridge(100, true);
    for p in &presences {
        shell.input(p.clone());
    }
    let limits = avatar_gateway::image::ImageLimits { max_input_bytes: 1 << 20, ..Default::default() };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = avatar_gateway::image::Transcoded::from_bytes(jpeg.clone(), &limits);
                runs += 1;
            }
            runs
        })
    };
    let mut times: Vec<Duration> = (0..samples)
        .map(|i| {
            let start = Instant::now();
            shell.input(presences[i % presences.len()].clone());
            start.elapsed()
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let transcodes = worker.join().expect("the transcode thread");
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "\nlatency: unchanged presence in → nothing left to do, {samples} samples while 1600×1200 JPEGs were \
         transcoded on another thread ({transcodes} done): p50 {:?}, p99 {:?}",
        at(0.5),
        at(0.99)
    );
    shell.close();
}

fn memory(accounts: usize) {
    let h = |i: usize, k: u8| {
        let mut bytes = [k; 20];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        AvatarHash::from_bytes(bytes)
    };
    let heap = live();
    let snapshot = Snapshot {
        accounts: (0..accounts)
            .map(|i| {
                let current = Current { original: h(i, 1), source: Scheme::Legacy, png: h(i, 2), legacy: h(i, 3) };
                let seen = [Seen::Avatar(h(i, 1)), Seen::Avatar(h(i, 2)), Seen::Avatar(h(i, 2))];
                (format!("user{i}@localhost"), StoredAccount { seen, current: Some(current), storage: Some(h(i, 1)) })
            })
            .collect(),
        blobs: (0..accounts).flat_map(|i| [h(i, 1), h(i, 2), h(i, 3)]).collect(),
        corrupt: vec![],
    };
    let engine = Engine::new(config(ServerConverts::Auto), snapshot);
    // The snapshot is gone now: what is live beyond what was before it is the engine's.
    println!(
        "\nmemory: {accounts} tracked accounts (each with a current avatar, 3 blobs in the store, XEP-0008 storage): \
         {} heap bytes per account (target ≤ 1024)",
        live().saturating_sub(heap) / accounts
    );
    drop(engine);
}

/// What the link drives in the `link` bench: counts stanzas, done after `n`.
struct Counter {
    seen: usize,
    n: usize,
}

impl avatar_gateway::link::Driven for Counter {
    fn handle_connected(&mut self, _: Instant) {}
    fn handle_disconnected(&mut self, _: Instant) {}
    fn handle_stanza(&mut self, _: Instant, _: Element) {
        self.seen += 1;
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Element> {
        None
    }
    fn poll_transcode(&mut self) -> Option<avatar_gateway::engine::TranscodeJob> {
        None
    }
    fn handle_transcoded(&mut self, _: Instant, _: avatar_gateway::engine::TranscodeResult) {}
    fn poll_store(&mut self) -> Option<avatar_gateway::engine::StoreRequest> {
        None
    }
    fn handle_stored(&mut self, _: Instant, _: avatar_gateway::engine::SyncId, _: Result<(), String>) {}
    fn handle_loaded(&mut self, _: Instant, _: AvatarHash, _: Option<avatar_gateway::image::Rendition>) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn drain(&mut self) {}
    fn is_done(&self) -> bool {
        self.seen >= self.n
    }
}

/// A component listener that accepts one connection, does the XEP-0114 handshake (any secret), writes `stanzas`
/// and then reads until the client goes away. Returns its port.
fn serve_once(stanzas: std::sync::Arc<Vec<u8>>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("the client");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read_until = |tcp: &mut std::net::TcpStream, needle: &[u8], seen: &mut Vec<u8>| {
            while !seen.windows(needle.len()).any(|w| w == needle) {
                let n = tcp.read(&mut buf).expect("reading the client");
                assert!(n > 0, "the client left early");
                seen.extend_from_slice(&buf[..n]);
            }
        };
        read_until(&mut tcp, b"<stream:stream", &mut seen);
        read_until(&mut tcp, b">", &mut seen);
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' id='bench' from='{COMPONENT}'>"
        );
        tcp.write_all(header.as_bytes()).expect("the header");
        seen.clear();
        read_until(&mut tcp, b"handshake", &mut seen);
        read_until(&mut tcp, b">", &mut seen);
        tcp.write_all(b"<handshake/>").expect("the handshake");
        tcp.write_all(&stanzas).expect("the stanzas");
        while tcp.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    port
}

fn link(n: usize) {
    use futures::{SinkExt, StreamExt};
    let stanzas: String = (0..n)
        .map(|i| {
            format!(
                "<presence from='u{i}@localhost/pandion' to='{COMPONENT}'><x xmlns='jabber:x:avatar'>\
                 <hash>{}</hash></x></presence>",
                AvatarHash::of(&i.to_le_bytes())
            )
        })
        .collect();
    let stanzas = std::sync::Arc::new(stanzas.into_bytes());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let config = |port: u16| avatar_gateway::link::LinkConfig {
        address: format!("127.0.0.1:{port}"),
        component: COMPONENT.into(),
        secret: "bench".into(),
        keepalive: Duration::from_secs(60),
        max_backoff: Duration::from_secs(1),
        stanza_limits: avatar_gateway::link::limits::StanzaLimits::DEFAULT,
        drain_timeout: Duration::from_secs(1),
    };
    let through_link = {
        let port = serve_once(stanzas.clone());
        let mut counter = Counter { seen: 0, n };
        let start = Instant::now();
        let store = Box::new(MemoryStore::new(1 << 20));
        runtime.block_on(avatar_gateway::link::drive(&config(port), &mut counter, store, std::future::pending()));
        assert_eq!(counter.seen, n);
        n as f64 / start.elapsed().as_secs_f64()
    };
    let parse_only = {
        use tokio_xmpp::xmlstream::{self, StreamHeader, Timeouts};
        let port = serve_once(stanzas);
        let start = Instant::now();
        let seen = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connecting");
            let header = StreamHeader { to: Some(COMPONENT.into()), from: None, id: None };
            let timeouts =
                Timeouts { read_timeout: Duration::from_secs(60), response_timeout: Duration::from_secs(60) };
            let pending = xmlstream::initiate_stream(tokio::io::BufStream::new(tcp), ns::COMPONENT, header, timeouts)
                .await
                .expect("the stream");
            let mut stream: xmlstream::XmlStream<_, Element> = pending.skip_features();
            let handshake = tokio_xmpp::parsers::component::Handshake::from_stream_id_and_password("bench".into(), "x");
            stream.send(&handshake).await.expect("the handshake");
            let mut seen = 0;
            while seen <= n {
                match stream.next().await {
                    Some(Ok(_)) => seen += 1,
                    other => panic!("the stream ended: {other:?}"),
                }
            }
            seen - 1 // the <handshake/>
        });
        assert_eq!(seen, n);
        n as f64 / start.elapsed().as_secs_f64()
    };
    println!(
        "\nlink: {n} presences over loopback: through the link {through_link:.0}/s, parse-only {parse_only:.0}/s, \
         ratio {:.2} (target ≥ 0.5)",
        through_link / parse_only
    );
}
