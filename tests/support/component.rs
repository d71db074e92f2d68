//! A raw XEP-0114 component connection for harness tests: the handshake by hand, then whole stanzas as the server
//! wrote them (text, so a fixture can be captured byte for byte) and parsed ([`element`]).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use xmpp_parsers::minidom::Element;

use super::images::sha1_hex;
use super::server::XmppServer;

/// The component stream's default namespace, which the stanzas on it inherit.
pub const COMPONENT_NS: &str = "jabber:component:accept";

/// An authenticated component stream.
pub struct RawComponent {
    stream: TcpStream,
    /// Bytes read but not yet split into stanzas.
    pending: String,
    /// Every stanza received after `<handshake/>`, in order, as text.
    received: Vec<String>,
}

impl RawComponent {
    /// Opens the stream to `server`'s component port as its component and completes the handshake with its secret.
    pub fn connect<S: XmppServer + ?Sized>(server: &S) -> RawComponent {
        let stream = TcpStream::connect(("127.0.0.1", server.component_port())).expect("connecting the component port");
        stream.set_read_timeout(Some(Duration::from_millis(100))).expect("setting a read timeout");
        let mut c = RawComponent { stream, pending: String::new(), received: Vec::new() };
        c.send(&format!(
            "<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
            server.component_jid()
        ));
        c.read_while(|text| !text.contains(" id='") || !text[text.find("<stream:stream").unwrap_or(0)..].contains('>'));
        let id = c.pending.split(" id='").nth(1).and_then(|r| r.split('\'').next()).expect("a stream id").to_owned();
        let handshake = sha1_hex(format!("{id}{}", server.secret()).as_bytes());
        c.send(&format!("<handshake>{handshake}</handshake>"));
        c.read_while(|text| !text.contains("<handshake/>"));
        let after = c.pending.split_once("<handshake/>").map(|(_, rest)| rest.to_owned()).unwrap_or_default();
        c.pending = after;
        c
    }

    /// Writes raw XML to the stream.
    pub fn send(&mut self, xml: &str) {
        self.stream.write_all(xml.as_bytes()).unwrap_or_else(|e| panic!("writing to the component stream: {e}"));
    }

    /// Every stanza received since the handshake, in order.
    pub fn received(&self) -> &[String] {
        &self.received
    }

    /// Reads until `done` holds for every stanza received so far (5 s at most, then panics with them).
    pub fn wait_until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> &[String] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.split_pending();
            if done(&self.received) {
                return &self.received;
            }
            assert!(Instant::now() < deadline, "component stream: {what} never came; received:\n{:#?}", self.received);
            self.read_some();
        }
    }

    /// Waits for the first stanza received that satisfies `pick`, and returns it.
    pub fn wait_for(&mut self, what: &str, pick: impl Fn(&str) -> bool) -> String {
        let found = self.wait_until(what, |all| all.iter().any(|s| pick(s)));
        found.iter().find(|s| pick(s)).cloned().expect("wait_until checked it")
    }

    fn read_while(&mut self, more: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while more(&self.pending) {
            assert!(
                Instant::now() < deadline,
                "the component stream never showed what was expected:\n{}",
                self.pending
            );
            self.read_some();
        }
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("the server closed the component stream:\n{}{:#?}", self.pending, self.received),
            Ok(n) => self.pending.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the component stream: {e}\n{}", self.pending),
        }
    }

    /// Moves every complete top-level element out of `pending` into `received`.
    fn split_pending(&mut self) {
        while let Some(end) = first_element_end(&self.pending) {
            let stanza: String = self.pending.drain(..end).collect();
            self.received.push(stanza.trim().to_owned());
        }
    }
}

/// The end of the first complete element in `text` (leading whitespace included), if it is all there. Tags are
/// scanned with quoted attribute values skipped, so a `>` inside a value does not end a tag.
fn first_element_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut i, mut depth) = (0usize, 0usize);
    loop {
        let open = i + text[i..].find('<')?;
        let mut j = open + 1;
        let mut quote = None;
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (None, b'\'' | b'"') => quote = Some(bytes[j]),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        if j >= bytes.len() {
            return None; // the tag is not complete yet
        }
        let tag = &text[open..=j];
        if tag.starts_with("</") {
            depth = depth.checked_sub(1)?; // a closing tag with nothing open: the stream's own end
        } else if !tag.ends_with("/>") && !tag.starts_with("<?") && !tag.starts_with("<!") {
            depth += 1;
        }
        i = j + 1;
        if depth == 0 {
            return Some(i);
        }
    }
}

/// Parses a stanza as received on the component stream, giving its root the stream's default namespace
/// (`jabber:component:accept`) that it inherits there.
pub fn element(stanza: &str) -> Element {
    with_stream_ns(stanza).parse().unwrap_or_else(|e| panic!("not XML ({e}): {stanza}"))
}

/// The stanza's text with `xmlns='jabber:component:accept'` on its root when it has no `xmlns` of its own: what a
/// fixture file holds, so that it parses on its own.
pub fn with_stream_ns(stanza: &str) -> String {
    let name_end = stanza.find([' ', '>', '/']).unwrap_or(stanza.len());
    let root_tag_end = stanza.find('>').unwrap_or(stanza.len());
    if stanza[..root_tag_end].contains(" xmlns=") {
        stanza.to_owned()
    } else {
        format!("{} xmlns='{COMPONENT_NS}'{}", &stanza[..name_end], &stanza[name_end..])
    }
}
