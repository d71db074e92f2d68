//! Whole component streams as the link reads them: a fixed stream header, then the fuzz bytes, through
//! `StrayTextFilter` (with stanza limits) in fuzz-chosen chunks, then rxml events built into minidom elements
//! stanza by stanza the way tokio-xmpp 6's xmlstream does (xso's `FromXml` builder for `Element`, which recurses
//! once per level). Never panics; the chunking changes nothing; no element the parser sees nests deeper than
//! `max_depth` (the stanza being level 1), which is what keeps that recursion off the end of the stack; a stanza
//! over `max_bytes` only ever arrives as a replacement; no stray text reaches the parser between stanzas.
#![no_main]

use avatar_gateway::link::limits::{LIMIT_ELEMENT, LIMIT_NS, StanzaLimits};
use avatar_gateway::link::stray_text::StrayTextFilter;
use libfuzzer_sys::fuzz_target;
use xmpp_parsers::minidom::Element;
use xso::exports::rxml;
use xso::{FromEventsBuilder, FromXml};

/// What Prosody 0.12's mod_component sends first (the link reads it before any stanza).
const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
    xmlns='jabber:component:accept' id='fuzz' from='avatars.localhost'>";

/// The production depth; a byte limit that libFuzzer's inputs (4 KiB at most here) can cross.
const LIMITS: StanzaLimits = StanzaLimits { max_depth: 64, max_bytes: 1024 };

/// The filtered stream, fed in chunks of `chunk` bytes.
fn filter(stream: &[u8], chunk: usize) -> Vec<u8> {
    let mut filter = StrayTextFilter::with_limits(LIMITS);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        let _ = filter.feed(piece, &mut out);
    }
    filter.finish(&mut out);
    out
}

/// Reads `out` as the link does until it ends or breaks (a broken stream costs the link a reconnect, not a crash).
fn parse(out: &[u8]) {
    let mut reader = rxml::Reader::new(out);
    let ctx = xso::Context::empty();
    let mut depth = 0usize;
    // The stanza being built, and its bytes so far.
    let mut stanza: Option<(<Element as FromXml>::Builder, usize)> = None;
    while let Ok(Some(event)) = reader.read() {
        let bytes = event.metrics().len();
        match &event {
            rxml::Event::StartElement(..) => {
                depth += 1;
                assert!(depth <= LIMITS.max_depth + 1, "an element at level {} reached the parser", depth - 1);
            }
            rxml::Event::EndElement(_) => depth -= 1,
            // tokio-xmpp refuses text between stanzas and drops the link: what the filter is for.
            rxml::Event::Text(_, text) if depth == 1 && stanza.is_none() => {
                assert!(xso::is_xml_whitespace(text.as_bytes()), "stray text reached the parser: {text:?}");
            }
            _ => {}
        }
        stanza = match (stanza, event) {
            (None, rxml::Event::StartElement(_, name, attrs)) if depth == 2 => {
                let Ok(builder) = Element::from_events(name, attrs, &ctx) else { return };
                Some((builder, bytes))
            }
            (None, _) => None,
            (Some((mut builder, size)), event) => match builder.feed(event, &ctx) {
                Ok(None) => Some((builder, size + bytes)),
                Ok(Some(element)) => {
                    check(&element, size + bytes);
                    None
                }
                Err(_) => return,
            },
        };
    }
}

/// One stanza as the engine gets it.
fn check(stanza: &Element, bytes: usize) {
    // Walked without recursion: only the code under test may recurse.
    let mut stack = vec![(stanza, 1usize)];
    while let Some((element, level)) = stack.pop() {
        assert!(level <= LIMITS.max_depth, "an element at level {level} reached the engine");
        stack.extend(element.children().map(|child| (child, level + 1)));
    }
    if bytes > LIMITS.max_bytes {
        let marker = stanza.children().next().filter(|m| m.is(LIMIT_ELEMENT, LIMIT_NS));
        let reason = marker.and_then(|m| m.attr("reason"));
        assert!(
            stanza.nodes().count() == 1 && matches!(reason, Some("depth" | "size")),
            "a stanza of {bytes} bytes (over {}) reached the engine unreplaced",
            LIMITS.max_bytes
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so libFuzzer explores boundaries along with content.
    let Some((&chunk, body)) = data.split_first() else { return };
    let mut stream = HEADER.to_vec();
    stream.extend_from_slice(body);
    let out = filter(&stream, usize::from(chunk % 32) + 1);
    assert!(out == filter(&stream, stream.len()), "chunking changed the result");
    parse(&out);
});
