//! The golden-stanza harness for the sans-IO engine (after slidge's `SlixTestPlus` and quinn-proto's `Pair`):
//! stanzas in with [`Harness::recv`], stanzas out compared exactly with [`Harness::expect_sent`], a simulated clock
//! moved by [`Harness::advance`], and [`Harness::drive_bounded`] to let the [`FakeServer`] answer every privileged
//! IQ until the engine is idle, failing when it never gets there (ping-pong between schemes).
#![allow(dead_code, unused_imports)] // shared by the engine test crates; each uses its own subset

pub mod fake_server;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::cache::CacheLimits;
use avatar_gateway::engine::grants::{Direction, DirectionStatus};
use avatar_gateway::engine::{Engine, EngineConfig, Event, ServerConverts, TranscodeJob};
use avatar_gateway::image::{ImageLimits, PngRendition, Rendition};
use avatar_gateway::link::store_task::{StoreAnswer, carry_out};
use avatar_gateway::link::workers;
use avatar_gateway::store::{MemoryStore, Snapshot};
use avatar_gateway::wire::{b64, ns, xml};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use crate::common;
pub use fake_server::{FakeServer, privileged_error, privileged_result};

/// The component's JID.
pub const COMPONENT: &str = "avatars.localhost";
/// The server's domain.
pub const DOMAIN: &str = "localhost";
/// The account most scenarios are about.
pub const ALICE: &str = "alice@localhost";
/// How long the engine waits for a reply.
pub const IQ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after connecting the capabilities are reported.
pub const REPORT_DELAY: Duration = Duration::from_secs(1);
/// How long a privileged IQ the server refused is not sent again.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(300);

/// Parses test XML, indentation removed (see `common::xml`).
pub fn parse(text: &str) -> Element {
    common::xml(text)
}

/// The engine configuration every scenario uses.
pub fn config(server_converts: ServerConverts) -> EngineConfig {
    EngineConfig {
        component: COMPONENT.into(),
        hosts: vec![BareJid::new(DOMAIN).expect("a domain JID")],
        limits: ImageLimits::default(),
        cache: CacheLimits::default(),
        iq_timeout: IQ_TIMEOUT,
        max_in_flight: 256,
        rates: Default::default(),
        transcode_backlog_bytes: 64 << 20,
        refusal_retry: REFUSAL_RETRY,
        report_delay: REPORT_DELAY,
        pep_access_model: None,
        server_converts,
        dry_run: false,
        // Off in the scenarios of the other features; tests/engine_stamp.rs turns it on.
        stamp_presence: false,
    }
}

/// The engine on a simulated clock, with the fake server beside it.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// The simulated clock.
    pub now: Instant,
    /// Events polled and not yet taken by the test.
    pub events: VecDeque<Event>,
    /// The XMPP server's side of privileged IQs.
    pub server: FakeServer,
    /// Image jobs are kept in `held` instead of being run after each input (a busy worker pool).
    pub hold_transcodes: bool,
    /// The jobs kept while `hold_transcodes` is set, in the order the engine handed them out.
    pub held: VecDeque<TranscodeJob>,
    /// Every worker busy: the engine's image jobs are not even asked for (they stay queued in the engine).
    pub workers_busy: bool,
    /// The store the scripted shell carries the engine's requests out on (each input's requests as one group).
    pub store: MemoryStore,
    /// Sync answers are kept in `held_syncs` instead of being fed back (a commit still under way).
    pub hold_syncs: bool,
    /// The sync answers kept while `hold_syncs` is set.
    pub held_syncs: VecDeque<StoreAnswer>,
    config: EngineConfig,
}

impl Harness {
    /// A fresh engine, not connected yet.
    pub fn new(server_converts: ServerConverts, server: FakeServer) -> Self {
        Self::with_config(config(server_converts), server)
    }

    /// A fresh engine with its own configuration, not connected yet.
    pub fn with_config(config: EngineConfig, server: FakeServer) -> Self {
        let engine = Engine::new(config.clone(), Snapshot::default());
        Self {
            config,
            engine,
            now: Instant::now(),
            events: VecDeque::new(),
            server,
            hold_transcodes: false,
            held: VecDeque::new(),
            workers_busy: false,
            store: MemoryStore::new(64 << 20),
            hold_syncs: false,
            held_syncs: VecDeque::new(),
        }
    }

    /// Connected to a Prosody that granted everything (the announcements with Prosody's nested `<namespace/>`s,
    /// delegation of both XEP-0008 namespaces after the disco#info checks), capabilities reported and taken.
    pub fn prosody(server_converts: ServerConverts, server: FakeServer) -> Self {
        let mut h = Self::new(server_converts, server);
        h.connect_prosody();
        h
    }

    /// The connection sequence of [`Harness::prosody`], reusable after a reconnect.
    pub fn connect_prosody(&mut self) {
        self.engine.handle_connected(self.now);
        // Held until the server has announced (see the engine's `opening`), then asked.
        self.expect_nothing_sent();
        self.recv(PROSODY_PRIVILEGES);
        self.answer_version_query("Prosody", "0.12.3");
        for namespace in [ns::STORAGE_AVATAR, ns::IQ_AVATAR] {
            let node = format!("urn:xmpp:delegation:2:bare:{namespace}");
            self.recv(&format!(
                "<iq xmlns='jabber:component:accept' type='get' id='disco-{namespace}' from='{DOMAIN}' to='{COMPONENT}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
            ));
            self.expect_sent(&format!(
                "<iq xmlns='jabber:component:accept' type='result' id='disco-{namespace}' from='{COMPONENT}' to='{DOMAIN}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'>\
                 <feature var='{namespace}'/></query></iq>"
            ));
        }
        self.recv(PROSODY_DELEGATION);
        self.expect_nothing_sent();
        self.advance(REPORT_DELAY);
        let all_on: Vec<DirectionStatus> = Direction::ALL
            .iter()
            .map(|&direction| DirectionStatus { direction, missing: vec![], limited: vec![] })
            .collect();
        self.expect_events(vec![
            Event::Server { host: DOMAIN.into(), software: "Prosody 0.12.3".into() },
            Event::Capabilities { host: DOMAIN.into(), directions: all_on },
        ]);
        self.expect_nothing_sent();
    }

    /// Connected to an ejabberd 23.01 (specs.md §9): its version, `urn:xmpp:privilege:1` (no IQ permission) and
    /// `urn:xmpp:delegation:1` of both XEP-0008 namespaces after the disco#info checks; the report still to come.
    pub fn connect_ejabberd_23(&mut self) {
        self.engine.handle_connected(self.now);
        // ejabberd 23.01 (specs.md §9): all three perms always present, no IQ permission.
        self.recv(
            "<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'>
               <privilege xmlns='urn:xmpp:privilege:1'>
                 <perm access='message' type='outgoing'/>
                 <perm access='roster' type='none'/>
                 <perm access='presence' type='managed_entity'/>
               </privilege>
             </message>",
        );
        self.answer_version_query("ejabberd", "23.01");
        self.expect_events(vec![Event::Server { host: DOMAIN.into(), software: "ejabberd 23.01".into() }]);
        // mod_delegation activates a namespace only once the component answers disco#info on both nodes.
        for namespace in [ns::STORAGE_AVATAR, ns::IQ_AVATAR] {
            for node in
                [format!("urn:xmpp:delegation:1::{namespace}"), format!("urn:xmpp:delegation:1:bare:{namespace}")]
            {
                answers_delegation_disco(self, "q1", &node, namespace);
            }
        }
        self.recv(
            "<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'>
               <delegation xmlns='urn:xmpp:delegation:1'><delegated namespace='storage:client:avatar'/></delegation>
             </message>",
        );
        self.recv(
            "<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'>
               <delegation xmlns='urn:xmpp:delegation:1'><delegated namespace='jabber:iq:avatar'/></delegation>
             </message>",
        );
    }

    /// The XEP-0092 query the engine sends the host on connecting, answered as `name` `version`.
    pub fn answer_version_query(&mut self, name: &str, version: &str) {
        self.expect_sent(&format!(
            "<iq xmlns='jabber:component:accept' type='get' id='version-{DOMAIN}' from='{COMPONENT}' to='{DOMAIN}'>\
             <query xmlns='jabber:iq:version'/></iq>"
        ));
        self.recv(&format!(
            "<iq xmlns='jabber:component:accept' type='result' id='version-{DOMAIN}' from='{DOMAIN}' to='{COMPONENT}'>\
             <query xmlns='jabber:iq:version'><name>{name}</name><version>{version}</version></query></iq>"
        ));
    }

    /// Feeds one stanza to the engine.
    pub fn recv(&mut self, text: &str) {
        self.recv_element(parse(text));
    }

    /// Feeds one parsed stanza to the engine.
    pub fn recv_element(&mut self, stanza: Element) {
        self.engine.handle_stanza(self.now, stanza);
        self.collect_events();
    }

    /// Runs the oldest held image job and feeds its result back.
    pub fn run_held(&mut self) {
        let job = self.held.pop_front().expect("a held image job");
        self.engine.handle_transcoded(self.now, workers::run(job));
        self.collect_events();
    }

    /// Starts a sweep of `account` (`migrate live`).
    pub fn sweep(&mut self, account: &str) {
        let jid = account.parse().expect("a bare JID");
        self.engine.sweep(self.now, &jid);
        self.collect_events();
    }

    /// The gateway restarted (a crash: only what the store committed survives): a new engine from the store's
    /// snapshot, its cache empty, not connected yet.
    pub fn restart(&mut self) {
        let snapshot = Snapshot::read(&self.store).expect("the test store reads");
        self.engine = Engine::new(self.config.clone(), snapshot);
        self.collect_events();
    }

    /// The workers are free again: the engine's queued image jobs are asked for and run.
    pub fn free_workers(&mut self) {
        self.workers_busy = false;
        self.collect_events();
    }

    /// Feeds the oldest held sync answer back.
    pub fn release_sync(&mut self) {
        let answer = self.held_syncs.pop_front().expect("a held sync");
        self.answer_store(answer);
        self.collect_events();
    }

    /// What the shell does after every input: run the image jobs the engine asked for (here at once, in the order
    /// handed out) and carry out its store requests, feeding each result back until it asks nothing more, then
    /// take the events.
    fn collect_events(&mut self) {
        loop {
            let mut asked = false;
            while let Some(job) = if self.workers_busy { None } else { self.engine.poll_transcode() } {
                asked = true;
                if self.hold_transcodes {
                    self.held.push_back(job);
                } else {
                    self.engine.handle_transcoded(self.now, workers::run(job));
                }
            }
            let group: Vec<_> = std::iter::from_fn(|| self.engine.poll_store()).collect();
            if !group.is_empty() {
                asked = true;
                for answer in carry_out(&mut self.store, group) {
                    match answer {
                        StoreAnswer::Stored(..) if self.hold_syncs => self.held_syncs.push_back(answer),
                        answer => self.answer_store(answer),
                    }
                }
            }
            if !asked {
                break;
            }
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push_back(e);
        }
    }

    fn answer_store(&mut self, answer: StoreAnswer) {
        match answer {
            StoreAnswer::Stored(id, outcome) => self.engine.handle_stored(self.now, id, outcome),
            StoreAnswer::Loaded(hash, blob) => self.engine.handle_loaded(self.now, hash, blob),
            StoreAnswer::Failed(e) => panic!("the test store failed: {e}"),
            StoreAnswer::Committed { .. } => {}
        }
    }

    /// The next stanza the engine sends, if any.
    pub fn next_sent(&mut self) -> Option<Element> {
        self.engine.poll_transmit()
    }

    /// Pops the next stanza and compares it exactly with `expected` (indentation aside); returns it.
    #[track_caller]
    pub fn expect_sent(&mut self, expected: &str) -> Element {
        let expected_text = xml::to_string(&parse(expected));
        let Some(actual) = self.next_sent() else {
            panic!("nothing was sent\n expected: {expected_text}\n");
        };
        let actual_text = xml::to_string(&actual);
        assert!(
            actual_text == expected_text,
            "sent stanza differs\n   actual: {actual_text}\n expected: {expected_text}\n"
        );
        actual
    }

    /// Pops the next stanza, which must be exactly `expected`, and lets the fake server answer it.
    #[track_caller]
    pub fn expect_sent_and_serve(&mut self, expected: &str) {
        let sent = self.expect_sent(expected);
        self.serve(&sent);
    }

    /// Lets the fake server answer a privileged IQ the engine sent; its reply and notifications go to the engine.
    pub fn serve(&mut self, sent: &Element) {
        assert!(FakeServer::is_privileged(sent), "not a privileged IQ: {}", xml::to_string(sent));
        for stanza in self.server.answer(sent) {
            self.recv_element(stanza);
        }
    }

    /// Asserts that the engine has nothing more to send.
    #[track_caller]
    pub fn expect_nothing_sent(&mut self) {
        if let Some(s) = self.next_sent() {
            panic!("expected silence, the engine sent: {}", xml::to_string(&s));
        }
    }

    /// Moves the simulated clock by `by`, calling `handle_timeout` at every deadline on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..10_000 {
            match self.engine.poll_timeout() {
                Some(due) if due <= target => {
                    self.now = self.now.max(due);
                    self.engine.handle_timeout(self.now);
                    self.collect_events();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("poll_timeout never moved past {:?}", self.engine.poll_timeout());
    }

    /// Lets the fake server answer every privileged IQ until the engine is idle, and returns the other stanzas it
    /// sent (to clients, delegated replies). Fails after `max_steps` stanzas: the gateway and the server would be
    /// feeding each other for ever.
    #[track_caller]
    pub fn drive_bounded(&mut self, max_steps: usize) -> Vec<Element> {
        let mut others = Vec::new();
        let mut steps = 0;
        while let Some(sent) = self.next_sent() {
            steps += 1;
            assert!(
                steps <= max_steps,
                "the engine is not idle after {max_steps} stanzas (ping-pong?); last: {}\nserver log: {:#?}",
                xml::to_string(&sent),
                self.server.log
            );
            if FakeServer::is_privileged(&sent) {
                self.serve(&sent);
            } else {
                others.push(sent);
            }
        }
        others
    }

    /// Takes every event polled so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Takes every event polled so far and compares them with `expected`, in order.
    #[track_caller]
    pub fn expect_events(&mut self, expected: Vec<Event>) {
        let actual = self.take_events();
        assert_eq!(actual, expected, "events differ");
    }

    /// Asserts that no event was polled since the last take.
    #[track_caller]
    pub fn expect_no_events(&mut self) {
        self.expect_events(vec![]);
    }
}

/// Prosody 0.12 mod_privilege's announcement, with its nesting bug (specs.md §9): three IQ namespaces, each
/// `<namespace/>` inside the previous one.
pub const PROSODY_PRIVILEGES: &str = "
<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'>
  <privilege xmlns='urn:xmpp:privilege:2'>
    <perm access='presence' type='managed_entity'/>
    <perm access='iq'>
      <namespace ns='http://jabber.org/protocol/pubsub' type='both'>
        <namespace ns='http://jabber.org/protocol/pubsub#owner' type='both'>
          <namespace ns='vcard-temp' type='both'/>
        </namespace>
      </namespace>
    </perm>
  </privilege>
</message>";

/// Prosody mod_delegation's announcement (admin mode, `urn:xmpp:delegation:2`).
pub const PROSODY_DELEGATION: &str = "
<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'>
  <delegation xmlns='urn:xmpp:delegation:2'>
    <delegated namespace='storage:client:avatar'/>
    <delegated namespace='jabber:iq:avatar'/>
  </delegation>
</message>";

// ---- images ----------------------------------------------------------------------------------------------------

/// An image from `fixtures/images/`, with what each scheme carries of it.
#[derive(Clone)]
pub struct Image {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// SHA-1 of the bytes.
    pub hash: AvatarHash,
    /// Base64 as the gateway writes it (one padded line).
    pub b64: String,
}

impl Image {
    /// `fixtures/images/<name>`.
    pub fn fixture(name: &str) -> Self {
        let path = common::fixtures_dir().join("images").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self::from_bytes(bytes)
    }

    /// Arbitrary bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { hash: AvatarHash::of(&bytes), b64: b64::encode(&bytes), bytes }
    }

    /// The validated image (panics if the image module refuses it).
    pub fn rendition(&self) -> Rendition {
        Rendition::from_bytes(self.bytes.clone(), &ImageLimits::default()).expect("a valid fixture image")
    }

    /// The PNG the image module makes of it for XEP-0084 and the vCard.
    pub fn png(&self) -> PngRendition {
        self.rendition().to_png(&ImageLimits::default()).expect("a PNG rendition")
    }

    /// The ≤ 64 px, < 8 KB rendition the image module makes of it for XEP-0008 readers.
    pub fn legacy(&self) -> Rendition {
        self.rendition().to_legacy(&ImageLimits::default()).expect("a legacy rendition")
    }
}

// ---- the wire outcomes, written out as the specs show them -----------------------------------------------------

/// A XEP-0356 privileged IQ from the component to `account`, about the account's own data: the inner IQ has the
/// same id, and `from` and `to` both the account (XEP-0356 §4.5; ejabberd routes by the inner `to`).
pub fn privileged(id: &str, account: &str, kind: &str, payload: &str) -> String {
    privileged_as(id, account, account, kind, payload)
}

/// A privileged IQ sent as `managed` to `target` (the gateway asking as a XEP-0008 reader).
pub fn privileged_as(id: &str, managed: &str, target: &str, kind: &str, payload: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='{kind}' id='{id}' from='{COMPONENT}' to='{managed}'>\
         <privileged_iq xmlns='urn:xmpp:privilege:2'>\
         <iq xmlns='jabber:client' type='{kind}' id='{id}' from='{managed}' to='{target}'>{payload}</iq>\
         </privileged_iq></iq>"
    )
}

/// The read of `account`'s metadata node as `reader`, by which the server decides whether the reader may see it.
pub fn reader_access(id: &str, reader: &str, account: &str) -> String {
    let payload = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>";
    privileged_as(id, reader, account, "get", payload)
}

/// Privileged items get of the whole metadata node (XEP-0084 §3.4).
pub fn pep_poll(id: &str, account: &str) -> String {
    let payload = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>";
    privileged(id, account, "get", payload)
}

/// Privileged items-by-id get of one data item.
pub fn pep_data_get(id: &str, account: &str, hash: &AvatarHash) -> String {
    let payload = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='{hash}'/></items></pubsub>"
    );
    privileged(id, account, "get", &payload)
}

/// Privileged publish of `png` to the data node (item id = its SHA-1, one base64 line).
pub fn publish_data(id: &str, account: &str, png: &Rendition) -> String {
    let payload = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:data'>\
         <item id='{}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></publish></pubsub>",
        png.hash(),
        b64::encode(png.bytes())
    );
    privileged(id, account, "set", &payload)
}

/// The `<metadata/>` describing `png` alone.
pub fn metadata_of(png: &Rendition) -> String {
    format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{}' height='{}' id='{}' type='image/png' width='{}'/></metadata>",
        png.bytes().len(),
        png.height(),
        png.hash(),
        png.width()
    )
}

/// Privileged publish of the metadata for `png` (item id = its SHA-1).
pub fn publish_metadata(id: &str, account: &str, png: &Rendition) -> String {
    let payload = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'>\
         <item id='{}'>{}</item></publish></pubsub>",
        png.hash(),
        metadata_of(png)
    );
    privileged(id, account, "set", &payload)
}

/// Privileged publish of an empty `<metadata/>` in an item without id (XEP-0084 §3.5: avatar disabled).
pub fn publish_no_avatar(id: &str, account: &str) -> String {
    let payload = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'>\
                   <item><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub>";
    privileged(id, account, "set", payload)
}

/// Privileged vCard get.
pub fn vcard_get(id: &str, account: &str) -> String {
    privileged(id, account, "get", "<vCard xmlns='vcard-temp'/>")
}

/// A plain (unprivileged) vCard get from the component, as anyone may read a vCard (no vCard privilege).
pub fn plain_vcard_get(id: &str, account: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='get' id='{id}' from='{COMPONENT}' to='{account}'>\
         <vCard xmlns='vcard-temp'/></iq>"
    )
}

/// Privileged vCard set of `<vCard xmlns='vcard-temp'>{children}</vCard>`.
pub fn vcard_set(id: &str, account: &str, children: &str) -> String {
    privileged(id, account, "set", &format!("<vCard xmlns='vcard-temp'>{children}</vCard>"))
}

/// A vCard PHOTO holding `r`, as the gateway writes it (TYPE then BINVAL, one base64 line).
pub fn photo(r: &Rendition) -> String {
    format!("<PHOTO><TYPE>{}</TYPE><BINVAL>{}</BINVAL></PHOTO>", r.mime(), b64::encode(r.bytes()))
}

/// The `jabber:iq:avatar` get to a client's full JID (XEP-0008 §4, method 1).
pub fn iq_avatar_get(id: &str, full_jid: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='get' id='{id}' from='{COMPONENT}' to='{full_jid}'>\
         <query xmlns='jabber:iq:avatar'/></iq>"
    )
}

/// The client's answer to [`iq_avatar_get`].
pub fn iq_avatar_result(id: &str, full_jid: &str, mimetype: &str, b64: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{full_jid}' to='{COMPONENT}'>\
         <query xmlns='jabber:iq:avatar'><data mimetype='{mimetype}'>{b64}</data></query></iq>"
    )
}

/// An available presence from `full_jid` with `children`, as mod_privilege forwards it.
pub fn presence(full_jid: &str, children: &str) -> String {
    format!("<presence xmlns='jabber:component:accept' from='{full_jid}' to='{COMPONENT}'>{children}</presence>")
}

/// `<x xmlns='jabber:x:avatar'><hash>…</hash></x>`.
pub fn x_avatar(hash: &AvatarHash) -> String {
    format!("<x xmlns='jabber:x:avatar'><hash>{hash}</hash></x>")
}

/// `<x xmlns='vcard-temp:x:update'><photo>…</photo></x>`.
pub fn x_update(hash: &AvatarHash) -> String {
    format!("<x xmlns='vcard-temp:x:update'><photo>{hash}</photo></x>")
}

/// A delegated IQ (XEP-0355 admin mode, Prosody's `urn:xmpp:delegation:2`) wrapping a user's IQ.
pub fn delegated(outer_id: &str, inner: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='{outer_id}' from='{DOMAIN}' to='{COMPONENT}'>\
         <delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded>\
         </delegation></iq>"
    )
}

/// The gateway's answer to a delegated IQ: `inner` wrapped in a result to the outer id.
pub fn delegated_reply(outer_id: &str, inner: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='result' id='{outer_id}' from='{COMPONENT}' to='{DOMAIN}'>\
         <delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded>\
         </delegation></iq>"
    )
}

/// Answers the disco#info query mod_delegation sends for `node` before it activates `namespace`.
pub fn answers_delegation_disco(h: &mut Harness, id: &str, node: &str, namespace: &str) {
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='get' id='{id}' from='localhost' to='avatars.localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/>
         </iq>"
    ));
    h.expect_sent(&format!(
        "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='avatars.localhost' to='localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'><feature var='{namespace}'/></query>
         </iq>"
    ));
}

/// Alice's avatar (the 96×96 PNG), published to PEP by her own client: both nodes on the fake server.
pub fn alice_with_pep_avatar(h: &mut Harness) -> Image {
    let img = Image::fixture("avatar-96x96-alpha.png");
    let png = img.png();
    h.server.put_item(
        ALICE,
        ns::AVATAR_DATA,
        &img.hash.to_string(),
        &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", img.b64),
    );
    h.server.put_item(ALICE, ns::AVATAR_METADATA, &img.hash.to_string(), &metadata_of(&png));
    img
}

/// A delegated `storage:client:avatar` set by `full_jid` (the owner's client; Prosody forwards it without `to`)
/// carrying `img` labelled image/png (whatever it is: the label is a client's claim), outer id `outer`, inner id
/// `inner`.
pub fn storage_set(outer: &str, inner: &str, full_jid: &str, img: &Image) -> String {
    delegated(
        outer,
        &format!(
            "<iq xmlns='jabber:client' type='set' id='{inner}' from='{full_jid}'>\
             <query xmlns='storage:client:avatar'><data mimetype='image/png'>{}</data></query></iq>",
            img.b64
        ),
    )
}
