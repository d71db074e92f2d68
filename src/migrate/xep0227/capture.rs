//! Builds a minidom [`Element`] from quick-xml events, so the scheme codecs (`wire::vcard`, `wire::xep0008`,
//! `wire::xep0084`) read the few subtrees of a `<user/>` that matter. Namespaces come resolved from the reader, so a
//! prefix declared on an ancestor (even outside the `<user/>`) is honoured. Only what the codecs read is kept:
//! names, namespaces, unprefixed attributes and text; anything odd (a bad attribute, an unknown entity) is dropped
//! rather than failing, since the bytes written out are the raw ones anyway.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::minidom::rxml::NcName;

/// A subtree being built: the open elements, outermost first.
pub(super) struct Capture {
    open: Vec<Element>,
    /// The made-up parent of [`Capture::within`].
    parent: Option<Element>,
}

impl Capture {
    /// Starts at `root`, an element in namespace `ns`.
    pub(super) fn new(ns: &str, root: &BytesStart) -> Self {
        Self { open: vec![element(ns, root)], parent: None }
    }

    /// Starts at `root` inside a made-up parent (e.g. an `<items/>` inside a `<pubsub/>`, which is what the
    /// XEP-0084 parser reads); [`Capture::close`] then returns the parent.
    pub(super) fn within(parent: Element, ns: &str, root: &BytesStart) -> Self {
        Self { open: vec![element(ns, root)], parent: Some(parent) }
    }

    /// A start tag inside the subtree (a self-closing one is followed by [`Capture::close`]).
    pub(super) fn open(&mut self, ns: &str, start: &BytesStart) {
        self.open.push(element(ns, start));
    }

    /// Character data (text or CDATA) inside the subtree.
    pub(super) fn text(&mut self, text: &str) {
        if let Some(parent) = self.open.last_mut() {
            parent.append_text(text);
        }
    }

    /// An entity or character reference inside the subtree.
    pub(super) fn reference(&mut self, reference: &BytesRef) {
        let resolved = match reference.resolve_char_ref() {
            Ok(Some(c)) => Some(c.to_string()),
            Ok(None) => resolve_xml_entity(&reference.xml10_content()).map(str::to_owned),
            Err(_) => None,
        };
        if let Some(text) = resolved {
            self.text(&text);
        }
    }

    /// An end tag: `Some(root)` (or the made-up parent holding it) when it closes the root.
    pub(super) fn close(&mut self) -> Option<Element> {
        let done = self.open.pop()?;
        if let Some(parent) = self.open.last_mut() {
            parent.append_child(done);
            return None;
        }
        match self.parent.take() {
            Some(mut parent) => {
                parent.append_child(done);
                Some(parent)
            }
            None => Some(done),
        }
    }
}

fn element(ns: &str, start: &BytesStart) -> Element {
    let mut builder = Element::builder(start.local_name().as_ref(), ns);
    for attribute in start.attributes().flatten() {
        // Namespace declarations are already resolved; prefixed attributes mean nothing to the codecs.
        if attribute.key.prefix().is_some() || attribute.key.as_ref() == "xmlns" {
            continue;
        }
        let (Ok(name), Ok(value)) =
            (NcName::try_from(attribute.key.as_ref()), attribute.normalized_value(XmlVersion::default()))
        else {
            continue;
        };
        builder = builder.attr(name, value.into_owned());
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    use super::*;

    /// Captures the whole document.
    fn capture(xml: &str) -> Element {
        let mut reader = NsReader::from_str(xml);
        let mut capture: Option<Capture> = None;
        loop {
            let (ns, event) = reader.read_resolved_event().unwrap();
            let ns = match ns {
                ResolveResult::Bound(ns) => ns.0.to_owned(),
                _ => String::new(),
            };
            match (event, capture.as_mut()) {
                (Event::Start(e), None) => capture = Some(Capture::new(&ns, &e)),
                (Event::Start(e), Some(c)) => c.open(&ns, &e),
                (Event::Empty(e), Some(c)) => {
                    c.open(&ns, &e);
                    c.close();
                }
                (Event::Text(t), Some(c)) => c.text(&t.xml10_content()),
                (Event::GeneralRef(r), Some(c)) => c.reference(&r),
                (Event::End(_), Some(c)) => {
                    if let Some(done) = c.close() {
                        return done;
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn resolves_prefixes_references_and_skips_declarations() {
        let el = capture(
            "<v:vCard xmlns:v='vcard-temp' a='&lt;'><v:PHOTO><v:BINVAL>YW&#13;&#10;Jj&amp;</v:BINVAL><x/></v:PHOTO></v:vCard>",
        );
        assert!(el.is("vCard", "vcard-temp"));
        assert_eq!(el.attr("a"), Some("<"));
        assert_eq!(el.attrs().len(), 1);
        let photo = el.get_child("PHOTO", "vcard-temp").unwrap();
        assert_eq!(photo.get_child("BINVAL", "vcard-temp").unwrap().text(), "YW\r\nJj&");
        assert!(photo.children().nth(1).unwrap().is("x", ""));
    }
}
