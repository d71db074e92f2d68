//! Shared by the XML targets: bytes to a minidom tree, and every element of it.

use xmpp_parsers::minidom::Element;

/// The element `data` spells, when it is UTF-8 and well-formed XML (everything else never reaches a codec: the
/// stream parser refuses it first).
pub fn element(data: &[u8]) -> Option<Element> {
    std::str::from_utf8(data).ok()?.parse().ok()
}

/// Every element of the tree, root first, walked without recursion so deep nesting cannot overflow the stack
/// here (only in the code under test). Each codec is called on each of them: the fuzzer then finds its payload
/// anywhere in the input, not only at the root.
pub fn all(root: &Element) -> Vec<&Element> {
    let mut out = vec![root];
    let mut next = 0;
    while let Some(&el) = out.get(next) {
        out.extend(el.children());
        next += 1;
    }
    out
}
