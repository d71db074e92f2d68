use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Prosody 0.12.3 to a component: the error stanza and the `300` after it are verbatim from mod_privilege (300 is
/// the stanza's length; tests/e2e_link.rs captures such bytes live), the header has the shape mod_component writes.
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
    xmlns='jabber:component:accept' id='0d9c5a1e-5ad3-4c06-8d1c-7b7d4f1f5c0e' from='avatars.localhost'>";
const ERROR_IQ: &str = "<iq id='o1' to='avatars.localhost' type='error' from='alice@localhost'><error type='auth'>\
    <forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>you \
    are not allowed to send privileged &lt;IQ&gt; stanzas of this type and namespace</text></error></iq>";
const NEXT: &str =
    "<presence from='bob@localhost/pc' to='avatars.localhost'><x xmlns='vcard-temp:x:update'/></presence>";

/// Feeds `input` cut at `cuts` (sorted), then finishes; returns the output and the total dropped.
fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Dropped) {
    let mut filter = StrayTextFilter::new();
    let mut out = Vec::new();
    let mut total = Dropped::default();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        if let Some(d) = filter.feed(&input[start..cut], &mut out) {
            total.runs += d.runs;
            total.bytes += d.bytes;
            total.excerpt.extend_from_slice(d.excerpt());
        }
        start = cut;
    }
    filter.finish(&mut out);
    assert_eq!(filter.total_bytes(), total.bytes as u64);
    assert_eq!(filter.total_runs(), total.runs as u64);
    (out, total)
}

/// `input` must come out as `expected` whether it arrives whole, cut at any one byte, or byte by byte.
fn assert_filters(input: &str, expected: &str, stray: &str) {
    let input = input.as_bytes();
    let mut cases: Vec<Vec<usize>> = (0..=input.len()).map(|i| vec![i]).collect();
    cases.push((1..input.len()).collect());
    for cuts in cases {
        let (out, dropped) = run(input, &cuts);
        assert_eq!(String::from_utf8_lossy(&out), expected, "cut at {cuts:?}");
        assert_eq!(dropped.bytes, stray.len(), "cut at {cuts:?}");
        if cuts.len() == 1 {
            assert_eq!(dropped.excerpt(), stray.as_bytes(), "cut at {cuts:?}");
        }
    }
}

#[test]
fn drops_mod_privileges_byte_count_and_keeps_the_stanzas() {
    let clean = format!("{HEADER}<handshake/>{ERROR_IQ}{NEXT}");
    assert_eq!(ERROR_IQ.len(), 300);
    assert_filters(&format!("{HEADER}<handshake/>{ERROR_IQ}300{NEXT}"), &clean, "300");
}

#[test]
fn one_report_per_run_with_an_escaped_excerpt() {
    let mut filter = StrayTextFilter::new();
    let mut out = Vec::new();
    let d = filter.feed(format!("{HEADER}<a/>12 3<b/>\u{1}\"é<c/>").as_bytes(), &mut out).expect("dropped");
    assert_eq!((d.runs, d.bytes), (2, 3 + 4));
    assert_eq!(d.excerpt_escaped(), "123\\u{1}\\\"é");
    assert_eq!(String::from_utf8_lossy(&out), format!("{HEADER}<a/> <b/><c/>"));
    let long = "9".repeat(EXCERPT_LEN + 5);
    let d = filter.feed(long.as_bytes(), &mut out).expect("dropped");
    assert_eq!(d.excerpt_escaped(), format!("{}…", &long[..EXCERPT_LEN]));
    assert_eq!((filter.total_runs(), filter.total_bytes()), (3, 7 + long.len() as u64));
    assert_eq!(filter.feed(b"  <d/>\n", &mut out), None, "keepalive whitespace is no drop");
}

#[test]
fn quoted_attribute_values_hide_markup() {
    let stanza = "<iq a='x>y' b=\"/>'\" c='\"/>' d='>'><q e='/'/>text > more</iq>";
    let input = format!("{HEADER}{stanza}42<x f='/>'/>7<y g=\"a>\"/>");
    assert_filters(&input, &format!("{HEADER}{stanza}<x f='/>'/><y g=\"a>\"/>"), "427");
}

#[test]
fn references_and_cdata_between_stanzas_are_stray_but_not_inside() {
    let inside = "<m>&#x33;&amp;<![CDATA[ <not a tag> ]] ]>]]>&lt;</m>";
    let input = format!("{HEADER}&#x33;{inside}<![CDATA[x]]]>&amp; \n<n/>");
    assert_filters(&input, &format!("{HEADER}{inside} \n<n/>"), "&#x33;<![CDATA[x]]]>&amp;");
}

#[test]
fn declaration_comments_and_instructions_keep_the_depth() {
    let input = format!("{HEADER}<!-- a > b -- -->1<?pi a>b ??>2<!DOCTYPE x>3<p><!-- <q> --></p>4</stream:stream>5");
    let expected = format!("{HEADER}<!-- a > b -- --><?pi a>b ??><!DOCTYPE x><p><!-- <q> --></p></stream:stream>5");
    assert_filters(&input, &expected, "1234");
}

#[test]
fn text_before_the_header_and_after_the_footer_is_not_ours() {
    // Depth 0 is the parser's business (it rejects text there itself); only depth 1 is filtered.
    assert_filters("junk<s>1<a>2</a>3</s>junk", "junk<s><a>2</a></s>junk", "13");
}

#[test]
fn held_markup_is_released_at_the_end_of_the_stream() {
    for tail in ["<", "<!", "<![CDA", "<!-"] {
        let input = format!("{HEADER}{tail}");
        let (out, dropped) = run(input.as_bytes(), &[]);
        assert_eq!(String::from_utf8_lossy(&out), input);
        assert_eq!(dropped.bytes, 0);
    }
    let mut filter = StrayTextFilter::new();
    let mut out = Vec::new();
    filter.feed(HEADER.as_bytes(), &mut out);
    out.clear();
    assert_eq!(filter.feed(b"<", &mut out), None);
    assert!(out.is_empty(), "held until its kind is known");
    filter.feed(b"a/>", &mut out);
    assert_eq!(out, b"<a/>");
    assert_eq!(filter.depth(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Text that is legal character data and attribute content once escaped, with the bytes the lexer watches for.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        select(vec![
            "a", "Z", "0", " ", "\n", "\t", ">", "/>", "/", "]", "]]", "?", "!", "-", "=", "é", "€", "&amp;", "&lt;",
            "&#x33;", "&#10;",
        ]),
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn attribute() -> impl Strategy<Value = String> {
    (select(vec!["id", "to", "xmlns", "a:b", "type"]), text(), any::<bool>(), any::<bool>()).prop_map(
        |(name, value, double, other_quote)| {
            let (q, other) = if double { ('"', '\'') } else { ('\'', '"') };
            let value = if other_quote { format!("{value}{other}{value}") } else { value };
            format!(" {name}={q}{value}{q}")
        },
    )
}

/// One element, well-formed, with everything a stanza may carry (and comments and instructions, which XMPP
/// forbids but which must not confuse the depth).
fn element() -> impl Strategy<Value = String> {
    let leaf = (select(vec!["iq", "x", "stream:features", "data"]), proptest::collection::vec(attribute(), 0..3))
        .prop_map(|(name, attrs)| format!("<{name}{}/>", attrs.concat()));
    leaf.prop_recursive(4, 32, 6, |inner| {
        let child = prop_oneof![
            4 => inner,
            3 => text(),
            1 => text().prop_map(|t| format!("<![CDATA[{}<a>&]]]>", t.replace('>', ""))),
            1 => text().prop_map(|t| format!("<!--{}-->", t.replace('-', ""))),
            1 => text().prop_map(|t| format!("<?pi {}?>", t.replace('?', ""))),
        ];
        (
            select(vec!["message", "presence", "iq", "pubsub", "p:q"]),
            proptest::collection::vec(attribute(), 0..3),
            proptest::collection::vec(child, 0..5),
            select(vec!["", " ", "\n"]),
        )
            .prop_map(|(name, attrs, children, space)| {
                format!("<{name}{}{space}>{}</{name}{space}>", attrs.concat(), children.concat())
            })
    })
}

/// A stream of stanzas and keepalives, with cut points; `stray`: also interleave stray text between stanzas.
fn stream(stray: bool) -> impl Strategy<Value = (String, String, usize, Vec<usize>)> {
    let stray_text = if stray {
        proptest::collection::vec(
            select(vec!["3", "05", "&#x33;", "&amp;", "é", ">", "]]>", "x y", "/", "?", "\u{1}"]),
            0..3,
        )
        .prop_map(|p| p.concat())
        .boxed()
    } else {
        Just(String::new()).boxed()
    };
    let item = (element(), select(vec!["", " ", "\n", "\r\n\t"]), stray_text);
    (
        any::<bool>(),
        proptest::collection::vec(item, 0..6),
        any::<bool>(),
        proptest::collection::vec(any::<usize>(), 0..8),
    )
        .prop_map(|(decl, items, footer, cuts)| {
            let prolog = if decl { "<?xml version='1.0'?>" } else { "" };
            let header = format!("{prolog}<stream:stream xmlns='jabber:component:accept' id='a/>b'>");
            let (mut input, mut expected, mut stray_bytes) = (header.clone(), header, 0);
            for (stanza, space, stray) in items {
                input.push_str(&format!("{stanza}{stray}{space}"));
                let kept: String = stray.chars().filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n')).collect();
                stray_bytes += stray.len() - kept.len();
                expected.push_str(&format!("{stanza}{kept}{space}"));
            }
            if footer {
                input.push_str("</stream:stream>");
                expected.push_str("</stream:stream>");
            }
            let len = input.len().max(1);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % len).collect();
            cuts.sort_unstable();
            (input, expected, stray_bytes, cuts)
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn well_formed_streams_pass_unchanged((input, _, _, cuts) in stream(false)) {
        let (out, dropped) = run(input.as_bytes(), &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&out), input);
        prop_assert_eq!(dropped.bytes, 0);
    }

    #[test]
    fn stray_text_between_stanzas_is_all_that_goes((input, expected, stray, cuts) in stream(true)) {
        let (out, dropped) = run(input.as_bytes(), &cuts);
        prop_assert_eq!(String::from_utf8_lossy(&out), expected);
        prop_assert_eq!(dropped.bytes, stray);
    }

    #[test]
    fn any_bytes_are_either_passed_or_counted(
        input in proptest::collection::vec(select(b"<>/!?-[]CDATA'\" &;x1\n".to_vec()), 0..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % input.len().max(1)).collect();
        cuts.sort_unstable();
        let mut framed = HEADER.as_bytes().to_vec();
        framed.extend_from_slice(&input);
        let (out, dropped) = run(&framed, &cuts);
        prop_assert_eq!(out.len() + dropped.bytes, framed.len());
        prop_assert!(out.starts_with(HEADER.as_bytes()));
        // Chunk boundaries change nothing, and what passed has nothing left to drop.
        let (whole, whole_dropped) = run(&framed, &[]);
        prop_assert_eq!(&whole, &out);
        prop_assert_eq!(whole_dropped.bytes, dropped.bytes);
        let (again, none) = run(&out, &[]);
        prop_assert_eq!(again, out);
        prop_assert_eq!(none.bytes, 0);
    }
}
