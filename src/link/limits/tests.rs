use proptest::prelude::*;
use proptest::sample::select;
use xmpp_parsers::minidom::Element;

use super::*;
use crate::link::stray_text::StrayTextFilter;

/// The header Prosody 0.12's mod_component writes, with the XML declaration before it.
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
    xmlns='jabber:component:accept' id='0d9c5a1e' from='avatars.localhost'>";
/// The start tag of the stanzas made too deep or too long below.
const TAG: &str = "<message from='mallory@localhost/x' to='alice@avatars.localhost' id='deep1' type='chat'>";
const NEXT: &str =
    "<presence from='bob@localhost/pc' to='avatars.localhost'><x xmlns='vcard-temp:x:update'/></presence>";
/// A next stanza short enough for the tiny size limits.
const SHORT: &str = "<r/>";

fn limits(max_depth: usize, max_bytes: usize) -> StanzaLimits {
    StanzaLimits { max_depth, max_bytes }
}

fn marker(reason: &str) -> String {
    format!("<limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='{reason}'/>")
}

/// The replacement of a `<message/>` opened by [`TAG`].
fn replaced(reason: &str) -> String {
    format!("{TAG}{}</message>", marker(reason))
}

/// A `<message/>` whose deepest element sits at `levels` (the message itself is level 1).
fn nested(levels: usize) -> String {
    let inner = levels - 1;
    format!("{TAG}{}{}</message>", "<a>".repeat(inner), "</a>".repeat(inner))
}

/// A `<message/>` of exactly `bytes` bytes (text padding).
fn sized(bytes: usize) -> String {
    format!("{TAG}{}</message>", "x".repeat(bytes - TAG.len() - "</message>".len()))
}

/// What came out of a whole stream: the bytes, the stray bytes dropped, every over-limit report.
#[derive(Debug, PartialEq)]
struct Run {
    out: Vec<u8>,
    stray: usize,
    found: Vec<OverLimit>,
}

/// Feeds `input` cut at `cuts` (sorted), then finishes.
fn run_cut(limits: StanzaLimits, input: &[u8], cuts: &[usize]) -> Run {
    let mut filter = StrayTextFilter::with_limits(limits);
    let mut run = Run { out: Vec::new(), stray: 0, found: Vec::new() };
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        if let Some(d) = filter.feed(&input[start..cut], &mut run.out) {
            run.stray += d.bytes;
            run.found.extend(d.over_limit);
        }
        start = cut;
    }
    filter.finish(&mut run.out);
    assert_eq!(filter.total_over_limit(), run.found.len() as u64);
    run
}

/// Feeds `input` in chunks of `chunk` bytes.
fn chunked(limits: StanzaLimits, input: &str, chunk: usize) -> Run {
    let cuts: Vec<usize> = (chunk..input.len()).step_by(chunk.max(1)).collect();
    run_cut(limits, input.as_bytes(), &cuts)
}

/// `input` must give `expected` whole, cut at any one byte, and byte by byte; returns the whole run.
fn assert_filters(limits: StanzaLimits, input: &str, expected: &str) -> Run {
    let whole = run_cut(limits, input.as_bytes(), &[]);
    assert_eq!(String::from_utf8_lossy(&whole.out), expected, "whole");
    let mut cases: Vec<Vec<usize>> = (1..input.len()).map(|i| vec![i]).collect();
    cases.push((1..input.len()).collect());
    for cuts in cases {
        assert_eq!(run_cut(limits, input.as_bytes(), &cuts), whole, "cut at {cuts:?}");
    }
    whole
}

/// The deepest element level (1 = a stanza) in `out`, a stream without quoted `>` nor comments.
fn deepest(out: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (i, &b) in out.iter().enumerate() {
        match (b, out.get(i + 1)) {
            (b'<', Some(b'/')) => depth -= 1,
            (b'<', Some(b'?' | b'!')) => {}
            (b'<', _) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (b'/', Some(b'>')) => depth -= 1,
            _ => {}
        }
    }
    deepest.saturating_sub(1)
}

#[test]
fn a_stanza_at_the_depth_limit_passes_and_one_level_deeper_is_replaced() {
    let limit = limits(64, 1 << 20);
    let ok = format!("{HEADER}{}{NEXT}", nested(64));
    assert_filters(limit, &ok, &ok);
    let deep = format!("{HEADER}{}{NEXT}", nested(65));
    let run = assert_filters(limit, &deep, &format!("{HEADER}{}{NEXT}", replaced("depth")));
    assert_eq!(
        format!("{HEADER}{}{NEXT}", replaced("depth")),
        format!(
            "{HEADER}<message from='mallory@localhost/x' to='alice@avatars.localhost' id='deep1' type='chat'>\
             <limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='depth'/></message>{NEXT}"
        )
    );
    // Reported once, as soon as the 65th level opened: through the `>` of its `<a>`.
    assert_eq!(run.found.len(), 1);
    assert_eq!((run.found[0].reason, run.found[0].bytes), (LimitReason::Depth, TAG.len() + 64 * 3));
    assert_eq!(run.found[0].excerpt_escaped(), TAG);
    // Empty elements are levels too.
    let empty = format!("{HEADER}{TAG}<a><b/></a></message>");
    assert_filters(limits(3, 1 << 20), &empty, &empty);
    assert_filters(limits(2, 1 << 20), &empty, &format!("{HEADER}{}", replaced("depth")));
}

#[test]
fn a_stanza_at_the_size_limit_passes_and_one_byte_more_is_replaced() {
    let small = limits(64, 256);
    let ok = format!("{HEADER}{}{NEXT}", sized(256));
    assert_filters(small, &ok, &ok);
    let run =
        assert_filters(small, &format!("{HEADER}{}{NEXT}", sized(257)), &format!("{HEADER}{}{NEXT}", replaced("size")));
    assert_eq!((run.found[0].reason, run.found[0].bytes), (LimitReason::Size, 257));
    // The defaults, in a few chunkings (1 MiB byte by byte is too slow for a unit test).
    for (bytes, expected) in [(1 << 20, sized(1 << 20)), ((1 << 20) + 1, replaced("size"))] {
        let input = format!("{HEADER}{}{NEXT}", sized(bytes));
        for chunk in [input.len(), 8192, 4093] {
            let run = chunked(StanzaLimits::DEFAULT, &input, chunk);
            assert!(run.out == format!("{HEADER}{expected}{NEXT}").as_bytes(), "{bytes} bytes, chunks of {chunk}");
        }
    }
}

#[test]
fn twenty_thousand_levels_give_one_replacement_however_they_arrive() {
    let input = format!("{HEADER}{}{NEXT}</stream:stream>", nested(20_000));
    let expected = format!("{HEADER}{}{NEXT}</stream:stream>", replaced("depth"));
    for chunk in [input.len(), 1, 7, 4096] {
        let run = chunked(StanzaLimits::DEFAULT, &input, chunk);
        assert_eq!(String::from_utf8_lossy(&run.out), expected, "chunks of {chunk}");
        assert_eq!(run.found.len(), 1, "chunks of {chunk}");
        assert_eq!(run.found[0].bytes, TAG.len() + 64 * 3, "chunks of {chunk}");
    }
}

#[test]
fn a_start_tag_over_4_kib_is_not_kept_and_the_stanza_vanishes() {
    let tag = |len: usize| format!("<message id='{}'>", "i".repeat(len - "<message id=''>".len()));
    let deep = |tag: &str| format!("{tag}<a><b></b></a></message>");
    let kept = tag(MAX_KEPT_START_TAG);
    assert_eq!(kept.len(), 4096);
    let input = format!("{HEADER}{}{NEXT}", deep(&kept));
    let run = chunked(limits(2, 1 << 20), &input, 1000);
    assert_eq!(String::from_utf8_lossy(&run.out), format!("{HEADER}{kept}{}</message>{NEXT}", marker("depth")));
    let long = tag(MAX_KEPT_START_TAG + 1);
    for chunk in [1, 7, 4096, 10_000] {
        let run = chunked(limits(2, 1 << 20), &format!("{HEADER}{}{NEXT}", deep(&long)), chunk);
        assert_eq!(String::from_utf8_lossy(&run.out), format!("{HEADER}{NEXT}"), "chunks of {chunk}");
        assert_eq!(run.found.len(), 1);
        assert_eq!(run.found[0].excerpt().len(), START_TAG_EXCERPT_LEN);
        assert!(run.found[0].excerpt_escaped().ends_with('…'));
    }
    // Over the size limit inside the start tag itself: the rest of the tag is still collected, up to 4 KiB.
    for chunk in [1, 7, 4096, 10_000] {
        let run = chunked(limits(64, 100), &format!("{HEADER}{}{SHORT}", deep(&kept)), chunk);
        assert_eq!(String::from_utf8_lossy(&run.out), format!("{HEADER}{kept}{}</message>{SHORT}", marker("size")));
        assert_eq!(run.found[0].excerpt(), &kept.as_bytes()[..100], "what had arrived of the tag");
        let run = chunked(limits(64, 100), &format!("{HEADER}{}{SHORT}", deep(&long)), chunk);
        assert_eq!(String::from_utf8_lossy(&run.out), format!("{HEADER}{SHORT}"));
        let run = chunked(limits(64, 100), &format!("{HEADER}<message id='{}'/>{SHORT}", "i".repeat(5000)), chunk);
        assert_eq!(String::from_utf8_lossy(&run.out), format!("{HEADER}{SHORT}"));
    }
}

#[test]
fn stray_text_still_goes_around_replaced_stanzas() {
    let input = format!("{HEADER}12{}34 {NEXT}5{}\n<![CDATA[6]]></stream:stream>", nested(5), nested(2));
    let expected = format!("{HEADER}{} {NEXT}{}\n</stream:stream>", replaced("depth"), nested(2));
    let run = assert_filters(limits(4, 1 << 20), &input, &expected);
    assert_eq!(run.stray, "12345<![CDATA[6]]>".len());
    assert_eq!(run.found.len(), 1);
}

#[test]
fn quoted_markup_in_the_start_tag_is_kept_as_received() {
    let tag = "<x:iq type='set' id='a>b' to=\"c/>d\" xmlns:x='jabber:component:accept' e='</x:iq>'>";
    let input = format!("{HEADER}{tag}<q a='>'><r b='/>'/></q></x:iq>{NEXT}");
    let expected = format!("{HEADER}{tag}{}</x:iq>{NEXT}", marker("depth"));
    assert_filters(limits(2, 1 << 20), &input, &expected);
    assert_filters(limits(3, 1 << 20), &input, &input);
    // The log line's excerpt: readable, with the line's own quotes and control characters escaped.
    let tag = "<iq a=\"\u{1}\\\" b='é'>";
    let run =
        assert_filters(limits(1, 1 << 20), &format!("<s>{tag}<q/></iq>"), &format!("<s>{tag}{}</iq>", marker("depth")));
    assert_eq!(run.found[0].excerpt_escaped(), "<iq a=\\\"\\u{1}\\\\\\\" b='é'>");
}

#[test]
fn a_self_closing_stanza_over_the_size_limit_gets_content() {
    let tag = "<presence from='bob@localhost/pc' to='avatars.localhost' id='p1' type='unavailable'";
    let input = format!("{HEADER}{tag}/>{SHORT}");
    let expected = format!("{HEADER}{tag}>{}</presence>{SHORT}", marker("size"));
    let run = assert_filters(limits(64, 64), &input, &expected);
    assert_eq!((run.found.len(), run.found[0].bytes), (1, 65));
    assert_eq!(run.found[0].excerpt_escaped(), format!("{}…", &tag[..64]), "what had arrived of the tag, cut");
}

#[test]
fn stanzas_are_held_until_they_end_but_the_stream_header_is_not() {
    let mut filter = StrayTextFilter::new();
    let mut out = Vec::new();
    assert_eq!(filter.feed(HEADER.as_bytes(), &mut out), None);
    assert_eq!(out, HEADER.as_bytes(), "the header is no stanza");
    let (head, tail) = NEXT.split_at(NEXT.len() - 1);
    filter.feed(head.as_bytes(), &mut out);
    assert_eq!(out, HEADER.as_bytes(), "held until its end tag");
    filter.feed(tail.as_bytes(), &mut out);
    filter.feed(b"\n</stream:stream>", &mut out);
    assert_eq!(String::from_utf8_lossy(&out), format!("{HEADER}{NEXT}\n</stream:stream>"));
}

#[test]
fn a_stream_cut_mid_stanza_releases_it_only_within_the_limits() {
    let cut = format!("{HEADER}<iq id='1'><a>te");
    assert_filters(limits(2, 1 << 20), &cut, &cut);
    assert_filters(limits(1, 1 << 20), &cut, HEADER);
    // A depth of 0 would refuse every stanza element: it counts as 1.
    assert_eq!(StrayTextFilter::with_limits(limits(0, 10)).limits(), limits(1, 10));
}

#[test]
fn fifteen_thousand_levels_come_out_parseable_and_shallow() {
    // What any user of the server can send (about 105 KB, under Prosody 0.12's 256 KiB c2s limit); unfiltered,
    // building it overflows the stack.
    let input = format!("{HEADER}{}{NEXT}</stream:stream>", nested(15_000));
    assert!(input.len() > 100_000 && input.len() < 256 << 10);
    let run = chunked(StanzaLimits::DEFAULT, &input, 8192);
    assert!(deepest(&run.out) <= StanzaLimits::DEFAULT.max_depth, "{}", deepest(&run.out));
    assert_eq!(deepest(input.as_bytes()), 15_000, "the scan sees the depth");
    let text = std::str::from_utf8(&run.out).expect("UTF-8");
    let root: Element = text.strip_prefix("<?xml version='1.0'?>").expect("declaration").parse().expect("parses");
    let message = root.children().next().expect("the replacement");
    assert_eq!((message.name(), message.attr("id")), ("message", Some("deep1")));
    let marker = message.get_child(LIMIT_ELEMENT, LIMIT_NS).expect("the marker");
    assert_eq!(marker.attr("reason"), Some(LimitReason::Depth.as_str()));
    assert_eq!(root.children().nth(1).map(Element::name), Some("presence"));
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Streams built from the lexer's tokens, nesting ones included, with tiny limits so both are hit.
fn stream() -> impl Strategy<Value = (Vec<u8>, StanzaLimits, Vec<usize>)> {
    let tokens = "<a>|</a>|<b x='>'>|</b>|<c/>|<d y=\"/>\"/>|t| |\n|<|>|/|'|\"|<!--|-->|<![CDATA[|]]>|<?p?>|&amp;|1|é";
    let token = select(tokens.split('|').collect::<Vec<_>>());
    (
        proptest::collection::vec(token, 0..80),
        1..6usize,
        8..160usize,
        any::<bool>(),
        proptest::collection::vec(any::<usize>(), 0..8),
    )
        .prop_map(|(tokens, max_depth, max_bytes, sized, cuts)| {
            let input = format!("{HEADER}{}", tokens.concat()).into_bytes();
            let max_bytes = if sized { max_bytes } else { usize::MAX };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % input.len()).collect();
            cuts.sort_unstable();
            (input, limits(max_depth, max_bytes), cuts)
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn chunking_changes_nothing_and_no_stanza_comes_out_too_deep((input, limits, cuts) in stream()) {
        let whole = run_cut(limits, &input, &[]);
        prop_assert_eq!(&run_cut(limits, &input, &cuts), &whole);
        // The lexer itself measures what came out: the stream level, then at most max_depth.
        let mut scan = StrayTextFilter::with_limits(StanzaLimits::UNLIMITED);
        let mut sink = Vec::new();
        for b in &whole.out {
            scan.feed(std::slice::from_ref(b), &mut sink);
            prop_assert!(scan.depth() <= limits.max_depth + 1, "{}", String::from_utf8_lossy(&whole.out));
        }
        if limits.max_bytes == usize::MAX {
            // What passed is within the depth limit and free of stray text: filtering it again changes nothing.
            let again = run_cut(limits, &whole.out, &[]);
            prop_assert_eq!(String::from_utf8_lossy(&again.out), String::from_utf8_lossy(&whole.out));
        }
    }
}
