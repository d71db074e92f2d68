//! Fixture loading and exact XML comparison shared by the golden tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};

use avatar_gateway::wire::xml;
use xmpp_parsers::minidom::{Element, Node};

/// `fixtures/` in the repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A stanza fixture: `fixtures/stanzas/<rel>`. Its first line must be an XML comment naming where the shape comes
/// from; the rest is one element.
pub struct Fixture {
    /// The path relative to `fixtures/stanzas/`.
    pub name: String,
    /// The provenance line.
    pub source: String,
    /// The parsed element.
    pub element: Element,
}

/// Loads `fixtures/stanzas/<rel>`, failing the test when the provenance line is missing.
pub fn stanza(rel: &str) -> Fixture {
    let path = fixtures_dir().join("stanzas").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let source = first
        .trim()
        .strip_prefix("<!--")
        .and_then(|s| s.strip_suffix("-->"))
        .unwrap_or_else(|| panic!("{rel}: the first line must be a <!-- source: … --> comment"))
        .trim()
        .to_owned();
    assert!(!source.is_empty(), "{rel}: empty provenance line");
    let element = rest.parse().unwrap_or_else(|e| panic!("{rel}: not XML: {e}"));
    Fixture { name: rel.to_owned(), source, element }
}

/// Every fixture file under `fixtures/stanzas/<dir>/`, sorted.
pub fn stanzas_in(dir: &str) -> Vec<Fixture> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join("stanzas").join(dir))
        .unwrap_or_else(|e| panic!("fixtures/stanzas/{dir}: {e}"))
        .map(|e| e.expect("readable dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    names.into_iter().map(|n| stanza(&format!("{dir}/{n}"))).collect()
}

/// A fixture from a directory's coverage list: a name missing from `covered` fails the test, so the list that
/// [`assert_covered`] checks against the disk stays honest.
pub fn covered_stanza(dir: &str, covered: &[&str], name: &str) -> Fixture {
    assert!(covered.contains(&name), "{dir}/{name} is missing from the coverage list");
    stanza(&format!("{dir}/{name}"))
}

/// Fails unless `fixtures/stanzas/<dir>/` holds exactly the files in `covered`, each read by a named test.
pub fn assert_covered(dir: &str, covered: &[&str]) {
    let on_disk: Vec<String> = stanzas_in(dir).into_iter().map(|f| f.name).collect();
    let mut listed: Vec<String> = covered.iter().map(|n| format!("{dir}/{n}")).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fixtures/stanzas/{dir}/ and its coverage list differ: add a named test");
}

/// SHA-1s of the small images inlined as base64 in the vCard and XEP-0008 fixtures (`base64 -d | sha1sum`).
pub mod inline_images {
    /// 1×1 PNG.
    pub const DOT_PNG: &str = "4a5eb7171b58e08a6881721e3b43d5a44419a2be";
    /// 16×16 PNG.
    pub const GRAD_PNG: &str = "450dcb77b6df573f132a55759bd729ef3e1c8a83";
    /// 8×8 JPEG.
    pub const RED_JPEG: &str = "b579e7fbe1253f8f56d5a470543c5832a36dbc32";
    /// 1×1 GIF.
    pub const DOT_GIF: &str = "b23d503735df16bafa3090645be7928a6461f21e";
}

/// Parses XML written by hand for a test, dropping whitespace-only text between elements so the expectation can be
/// indented for reading while the comparison stays exact.
pub fn xml(text: &str) -> Element {
    let element: Element = text.trim().parse().unwrap_or_else(|e| panic!("expected XML does not parse: {e}\n{text}"));
    without_indentation(element)
}

fn without_indentation(mut element: Element) -> Element {
    let has_children = element.children().next().is_some();
    let nodes = element.take_nodes();
    for node in nodes {
        match node {
            Node::Element(child) => {
                element.append_child(without_indentation(child));
            }
            Node::Text(text) if has_children && text.trim().is_empty() => {}
            Node::Text(text) => element.append_text_node(text),
        }
    }
    element
}

/// Asserts that `actual` serialises exactly as the golden file `fixtures/golden/<rel>` (indentation aside).
pub fn assert_golden(actual: &Element, rel: &str) {
    let path = fixtures_dir().join("golden").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_xml(actual, &text);
}

/// Asserts that `actual` serialises exactly as `expected` (indentation aside).
pub fn assert_xml(actual: &Element, expected: &str) {
    let expected = xml::to_string(&xml(expected));
    let actual = xml::to_string(actual);
    assert_eq!(actual, expected, "\n   actual: {actual}\n expected: {expected}\n");
}
