//! Small helpers over minidom shared by the scheme codecs.

use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, ElementBuilder};

/// Starts an element; attributes are added with [`Attrs::with_attr`].
pub(crate) fn element(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}

/// Attribute setting with `&'static str` names, which are always valid NCNames.
pub(crate) trait Attrs {
    /// Sets attribute `name` to `value`.
    fn with_attr(self, name: &'static str, value: impl Into<String>) -> Self;
    /// Sets attribute `name` when `value` is `Some`.
    fn with_attr_opt(self, name: &'static str, value: Option<impl Into<String>>) -> Self
    where
        Self: Sized,
    {
        match value {
            Some(v) => self.with_attr(name, v),
            None => self,
        }
    }
}

impl Attrs for ElementBuilder {
    fn with_attr(self, name: &'static str, value: impl Into<String>) -> Self {
        ElementBuilder::attr(self, ncname(name), value.into())
    }
}

fn ncname(name: &'static str) -> NcName {
    // Only ever called with literal attribute names from this crate; the test below covers all of them.
    NcName::try_from(name).unwrap_or_else(|_| panic!("{name:?} is not an NCName"))
}

/// Serialises an element as the wire carries it (attributes in sorted order, namespaces declared where they change).
pub fn to_string(element: &Element) -> String {
    String::from(element)
}

/// The text of `element` with surrounding XML whitespace trimmed, or `None` when nothing is left.
pub(crate) fn trimmed_text(element: &Element) -> Option<String> {
    let text = element.text();
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_sorted_attributes() {
        let e = element("info", "urn:x")
            .with_attr("type", "image/png")
            .with_attr("bytes", "70")
            .with_attr_opt("url", None::<String>)
            .build();
        assert_eq!(to_string(&e), "<info xmlns='urn:x' bytes='70' type='image/png'/>");
    }

    #[test]
    fn trims_text() {
        let e: Element = "<a xmlns='x'>\n  abc \t</a>".parse().unwrap();
        assert_eq!(trimmed_text(&e).as_deref(), Some("abc"));
        let e: Element = "<a xmlns='x'> </a>".parse().unwrap();
        assert_eq!(trimmed_text(&e), None);
    }
}
