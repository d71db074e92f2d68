//! XEP-0054 vcard-temp (v1.3.0) PHOTO and XEP-0153 vCard-Based Avatars (v1.1.1) `vcard-temp:x:update`.
//!
//! A vCard is kept whole: XEP-0054 has no partial update, so the gateway writes a PHOTO by reading the account's
//! vCard, swapping the PHOTO and setting the result. [`VCard`] therefore wraps the raw element and
//! [`VCard::with_photo`] touches nothing but PHOTO children: every other child, attribute, text node and their
//! order survive node for node.
//!
//! Lenient in (real clients): BINVAL without TYPE (emite), TYPE disagreeing with the bytes (aTalk labels PNG bytes
//! `image/jpeg`; the hint is kept as given and the image module sniffs), EXTVAL, an empty PHOTO or BINVAL, base64
//! wrapped at 76 columns with CRLF (`&#13;&#10;` too), spaced, tabbed or unpadded, several PHOTOs (the first
//! counts), and XEP-0153 hashes in upper case or wrapped in whitespace. Strict out: `<PHOTO><TYPE/><BINVAL/>` in
//! that order with unwrapped padded base64, and lower-case hashes.
//!
//! Element names are case-sensitive and vCard children are ALL CAPS (XEP-0054 §8, Implementation Notes): a
//! lower-case `<photo/>` or `<binval/>` inside a vCard (draft-dawson spelling) is not a PHOTO; it is kept untouched
//! like any other unknown child.

use xmpp_parsers::minidom::{Element, Node};

use crate::avatar::{AvatarHash, HashError};
use crate::image::Rendition;
use crate::wire::b64::{self, Base64Error};
use crate::wire::ns;
use crate::wire::xml::{element, trimmed_text};

/// Why a vCard or an XEP-0153 presence could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VCardError {
    /// [`VCard::parse`] was given something other than `<vCard xmlns='vcard-temp'/>` (name and namespace are both
    /// case-sensitive).
    #[error("expected <vCard xmlns='vcard-temp'/>, got <{name} xmlns='{ns}'/>")]
    NotVCard {
        /// The local name that arrived.
        name: String,
        /// The namespace that arrived.
        ns: String,
    },
    /// [`Update::from_presence`] was given something other than a `<presence/>` stanza.
    #[error("expected a <presence/> stanza, got <{name} xmlns='{ns}'/>")]
    NotPresence {
        /// The local name that arrived.
        name: String,
        /// The namespace that arrived.
        ns: String,
    },
    /// The first PHOTO's BINVAL is not base64, even after whitespace is stripped and padding ignored.
    #[error("expected base64 in vCard PHOTO/BINVAL, got {0}")]
    Binval(#[from] Base64Error),
    /// The `<photo/>` of `vcard-temp:x:update` holds text that is not a SHA-1 in hex.
    #[error("expected a hex SHA-1 or nothing in vcard-temp:x:update <photo/>, got a bad hash: {0}")]
    PhotoHash(#[from] HashError),
}

/// A whole `<vCard xmlns='vcard-temp'/>`, kept as it arrived so that a rewrite changes only PHOTO.
#[derive(Debug, Clone, PartialEq)]
pub struct VCard(Element);

/// What a vCard's PHOTO says, read leniently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Photo {
    /// No PHOTO, an empty `<PHOTO/>`, or a PHOTO whose BINVAL is empty: the owner has no avatar (XEP-0153 §4.3,
    /// §4.4: an empty or missing BINVAL means advertise no image).
    None,
    /// Inline image bytes, decoded from BINVAL.
    Binval {
        /// TYPE as given (trimmed), or `None` when absent or empty. Only a hint: XEP-0153 §5 (Implementation Notes)
        /// says the bytes win, and aTalk sends PNG bytes labelled `image/jpeg`.
        type_hint: Option<String>,
        /// The decoded bytes, not yet validated as an image.
        bytes: Vec<u8>,
    },
    /// A URL to the image (XEP-0054 DTD allows it; XEP-0153 §4.5 says SHOULD NOT). The gateway does not fetch it.
    Extval(String),
}

impl VCard {
    /// Wraps a `<vCard xmlns='vcard-temp'/>`, checking only its name and namespace: the content is read lazily and
    /// leniently by [`VCard::photo`].
    pub fn parse(element: Element) -> Result<Self, VCardError> {
        if element.is("vCard", ns::VCARD) {
            Ok(Self(element))
        } else {
            Err(VCardError::NotVCard { name: element.name().to_owned(), ns: element.ns() })
        }
    }

    /// An empty vCard (XEP-0054 §3.1 Example 4: what a server may return when the account has none).
    pub fn empty() -> Self {
        Self(request())
    }

    /// The first PHOTO, read leniently. Later PHOTOs are ignored (xmpp-parsers rejects the whole vCard instead).
    pub fn photo(&self) -> Result<Photo, VCardError> {
        match self.0.children().find(|c| is_photo(c)) {
            Some(photo) => parse_photo(photo),
            None => Ok(Photo::None),
        }
    }

    /// A copy with the avatar set to `photo`, or with every PHOTO removed when `None` (an absent PHOTO is the
    /// XEP-0153 "no avatar" state).
    ///
    /// The first PHOTO is replaced where it stands; any further PHOTOs are dropped so readers cannot pick a stale
    /// one; with no PHOTO the new one is appended. Everything else (attributes, other children, whitespace,
    /// order) is kept as it was, because the vCard is set back whole (XEP-0054 §3.2: no partial update).
    pub fn with_photo(&self, photo: Option<&Rendition>) -> Self {
        let mut out = self.0.clone();
        let mut replacement = photo.map(photo_element);
        for node in out.take_nodes() {
            match node {
                Node::Element(child) if is_photo(&child) => {
                    // The first PHOTO takes the new one in its place; `take` leaves `None` to drop the rest.
                    if let Some(new) = replacement.take() {
                        out.append_child(new);
                    }
                }
                other => out.append_node(other),
            }
        }
        if let Some(new) = replacement {
            out.append_child(new);
        }
        Self(out)
    }

    /// The vCard element, e.g. to put in an IQ set.
    pub fn element(&self) -> &Element {
        &self.0
    }

    /// The vCard element, by value.
    pub fn into_element(self) -> Element {
        self.0
    }
}

/// The payload of a vCard IQ get: `<vCard xmlns='vcard-temp'/>` (XEP-0054 §3.1, §3.3; to the bare JID).
pub fn request() -> Element {
    element("vCard", ns::VCARD).build()
}

fn is_photo(child: &Element) -> bool {
    // Case-sensitive on purpose: XEP-0054 §8 makes vCard children ALL CAPS.
    child.is("PHOTO", ns::VCARD)
}

fn parse_photo(photo: &Element) -> Result<Photo, VCardError> {
    let child = |name: &str| photo.get_child(name, ns::VCARD);
    if let Some(binval) = child("BINVAL") {
        // `b64::decode` strips every kind of XML whitespace (76-column CRLF wrapping, `&#13;&#10;`, spaces, tabs)
        // and ignores padding: XEP-0153 §4.6 says whitespace in BINVAL MUST be ignored.
        let bytes = b64::decode(&binval.text())?;
        if !bytes.is_empty() {
            return Ok(Photo::Binval { type_hint: child("TYPE").and_then(trimmed_text), bytes });
        }
    }
    // An empty BINVAL next to an EXTVAL is odd but the URL is the only information there is.
    Ok(match child("EXTVAL").and_then(trimmed_text) {
        Some(url) => Photo::Extval(url),
        None => Photo::None,
    })
}

fn photo_element(rendition: &Rendition) -> Element {
    // XEP-0054 DTD order (TYPE, BINVAL); TYPE is the sniffed format, never a client's label; BINVAL is one
    // unwrapped line, which every reader accepts.
    element("PHOTO", ns::VCARD)
        .append(element("TYPE", ns::VCARD).append(rendition.mime()))
        .append(element("BINVAL", ns::VCARD).append(b64::encode(rendition.bytes())))
        .build()
}

/// The XEP-0153 `vcard-temp:x:update` state of one presence (XEP-0153 §4.1, §4.3; specs §0 "no avatar" vs
/// "unknown").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// `<x><photo>hash</photo></x>`: the vCard PHOTO has these bytes.
    Hash(AvatarHash),
    /// `<x><photo/></x>`: the owner has no avatar.
    NoAvatar,
    /// `<x/>` without `<photo/>`: the client supports XEP-0153 but has not downloaded its vCard yet; keep what
    /// you have.
    NotReady,
    /// No `vcard-temp:x:update` child at all: the resource does not speak XEP-0153 (and may change the vCard).
    Unknown,
}

impl Update {
    /// Reads the first `vcard-temp:x:update` child of a presence. Any presence namespace is accepted
    /// (`jabber:client`, `jabber:component:accept`, or inside a XEP-0356 wrapper). The hash may be in either case
    /// and surrounded by whitespace (XEP-0153 v1.1: process both cases); it is validated by char, so non-ASCII
    /// cannot panic (xmpp-parsers 0.23's `FixedHex` does).
    pub fn from_presence(presence: &Element) -> Result<Self, VCardError> {
        if presence.name() != "presence" {
            return Err(VCardError::NotPresence { name: presence.name().to_owned(), ns: presence.ns() });
        }
        let Some(x) = presence.get_child("x", ns::VCARD_UPDATE) else {
            return Ok(Self::Unknown);
        };
        let Some(photo) = x.get_child("photo", ns::VCARD_UPDATE) else {
            return Ok(Self::NotReady);
        };
        match trimmed_text(photo) {
            None => Ok(Self::NoAvatar),
            Some(text) => Ok(Self::Hash(AvatarHash::parse(&text)?)),
        }
    }

    /// The presence child announcing this state, exactly as XEP-0153 shows it (lower-case hash), or `None` for
    /// [`Update::Unknown`], which is the absence of the child.
    pub fn to_element(&self) -> Option<Element> {
        let x = element("x", ns::VCARD_UPDATE);
        let photo = element("photo", ns::VCARD_UPDATE);
        match self {
            Self::Hash(hash) => Some(x.append(photo.append(hash.to_string())).build()),
            Self::NoAvatar => Some(x.append(photo.build()).build()),
            Self::NotReady => Some(x.build()),
            Self::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageLimits;
    use crate::wire::xml::to_string;

    /// A 1×1 PNG and its SHA-1 (`base64 -d | sha1sum`).
    const PNG_B64: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    const PNG_SHA1: &str = "4a5eb7171b58e08a6881721e3b43d5a44419a2be";

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn png() -> Vec<u8> {
        b64::decode(PNG_B64).unwrap()
    }

    fn vcard(inner: &str) -> VCard {
        VCard::parse(el(&format!("<vCard xmlns='vcard-temp'>{inner}</vCard>"))).unwrap()
    }

    fn rendition() -> Rendition {
        Rendition::from_bytes(png(), &ImageLimits::default()).unwrap()
    }

    #[test]
    fn reads_type_and_binval() {
        let v = vcard(&format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG_B64}</BINVAL></PHOTO>"));
        assert_eq!(v.photo(), Ok(Photo::Binval { type_hint: Some("image/png".into()), bytes: png() }));
    }

    #[test]
    fn reads_binval_without_type_and_keeps_a_wrong_type() {
        let v = vcard(&format!("<PHOTO><BINVAL>{PNG_B64}</BINVAL></PHOTO>"));
        assert_eq!(v.photo(), Ok(Photo::Binval { type_hint: None, bytes: png() }));
        // aTalk: BINVAL first, PNG bytes labelled JPEG, padded with whitespace.
        let v = vcard(&format!("<PHOTO><BINVAL>\n {PNG_B64}\n</BINVAL><TYPE>\n image/jpeg\n</TYPE></PHOTO>"));
        assert_eq!(v.photo(), Ok(Photo::Binval { type_hint: Some("image/jpeg".into()), bytes: png() }));
    }

    #[test]
    fn reads_wrapped_spaced_and_unpadded_base64() {
        let (a, b) = PNG_B64.split_at(76);
        let v = vcard(&format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{a}&#13;&#10;{b}</BINVAL></PHOTO>"));
        assert_eq!(v.photo().unwrap(), Photo::Binval { type_hint: Some("image/png".into()), bytes: png() });
        let spaced = PNG_B64.trim_end_matches('=').replace("AAAA", "AA AA\t");
        let v = vcard(&format!("<PHOTO><BINVAL>{spaced}</BINVAL></PHOTO>"));
        assert_eq!(v.photo().unwrap(), Photo::Binval { type_hint: None, bytes: png() });
    }

    #[test]
    fn reads_extval_and_empty_shapes() {
        let v = vcard("<PHOTO><EXTVAL> https://example.org/a.png </EXTVAL></PHOTO>");
        assert_eq!(v.photo(), Ok(Photo::Extval("https://example.org/a.png".into())));
        assert_eq!(vcard("<PHOTO/>").photo(), Ok(Photo::None));
        assert_eq!(vcard("<PHOTO><TYPE>image/png</TYPE><BINVAL>\n</BINVAL></PHOTO>").photo(), Ok(Photo::None));
        assert_eq!(vcard("<FN>x</FN>").photo(), Ok(Photo::None));
        assert_eq!(VCard::empty().photo(), Ok(Photo::None));
    }

    #[test]
    fn uses_the_first_of_two_photos() {
        let v = vcard(&format!("<PHOTO><BINVAL>{PNG_B64}</BINVAL></PHOTO><PHOTO><EXTVAL>u</EXTVAL></PHOTO>"));
        assert_eq!(v.photo(), Ok(Photo::Binval { type_hint: None, bytes: png() }));
    }

    #[test]
    fn ignores_lower_case_photo() {
        // XEP-0054 §8: element names are case-sensitive and ALL CAPS.
        let v = vcard(&format!("<photo><binval>{PNG_B64}</binval></photo>"));
        assert_eq!(v.photo(), Ok(Photo::None));
        let v = vcard(&format!("<PHOTO><binval>{PNG_B64}</binval></PHOTO>"));
        assert_eq!(v.photo(), Ok(Photo::None));
    }

    #[test]
    fn rejects_other_elements() {
        assert_eq!(
            VCard::parse(el("<vcard xmlns='vcard-temp'/>")),
            Err(VCardError::NotVCard { name: "vcard".into(), ns: "vcard-temp".into() })
        );
        let err = VCard::parse(el("<vCard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/>")).unwrap_err();
        assert_eq!(err, VCardError::NotVCard { name: "vCard".into(), ns: "urn:ietf:params:xml:ns:vcard-4.0".into() });
        assert_eq!(
            err.to_string(),
            "expected <vCard xmlns='vcard-temp'/>, got <vCard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/>"
        );
    }

    #[test]
    fn rejects_bad_base64() {
        let err = vcard("<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBO*w0K</BINVAL></PHOTO>").photo().unwrap_err();
        assert_eq!(err, VCardError::Binval(b64::decode("iVBO*w0K").unwrap_err()));
        assert!(err.to_string().starts_with("expected base64 in vCard PHOTO/BINVAL, got invalid base64: "), "{err}");
        // Non-ASCII in BINVAL is an error, not a panic.
        let err = vcard("<PHOTO><BINVAL>iVBOé</BINVAL></PHOTO>").photo().unwrap_err();
        assert!(matches!(err, VCardError::Binval(_)), "{err}");
    }

    #[test]
    fn replaces_photo_in_place_and_keeps_the_rest() {
        let v = VCard::parse(el(&format!(
            "<vCard xmlns='vcard-temp' version='2.0'><FN>A</FN>\n <PHOTO><EXTVAL>u</EXTVAL></PHOTO>\n \
             <NICKNAME>a</NICKNAME><PHOTO><BINVAL>{PNG_B64}</BINVAL></PHOTO><X xmlns='urn:x'/></vCard>"
        )))
        .unwrap();
        let out = v.with_photo(Some(&rendition()));
        assert_eq!(
            to_string(out.element()),
            format!(
                "<vCard xmlns='vcard-temp' version='2.0'><FN>A</FN>\n <PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG_B64}\
                 </BINVAL></PHOTO>\n <NICKNAME>a</NICKNAME><X xmlns='urn:x'/></vCard>"
            )
        );
        assert_eq!(out.photo(), Ok(Photo::Binval { type_hint: Some("image/png".into()), bytes: png() }));
        // The original is untouched.
        assert_eq!(v.photo(), Ok(Photo::Extval("u".into())));
    }

    #[test]
    fn appends_photo_when_missing_and_removes_all_on_none() {
        let out = vcard("<FN>A</FN>").with_photo(Some(&rendition()));
        assert_eq!(
            to_string(out.element()),
            format!(
                "<vCard xmlns='vcard-temp'><FN>A</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{PNG_B64}</BINVAL></PHOTO>\
                 </vCard>"
            )
        );
        let out = vcard("<PHOTO/><FN>A</FN><PHOTO/>").with_photo(None);
        assert_eq!(to_string(out.element()), "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>");
        assert_eq!(out.photo(), Ok(Photo::None));
        // Lower-case <photo/> is not a PHOTO: kept.
        let out = vcard("<photo/>").with_photo(None);
        assert_eq!(to_string(out.element()), "<vCard xmlns='vcard-temp'><photo/></vCard>");
    }

    #[test]
    fn builds_the_request() {
        assert_eq!(to_string(&request()), "<vCard xmlns='vcard-temp'/>");
        assert_eq!(VCard::empty().into_element(), request());
    }

    fn presence(inner: &str) -> Element {
        el(&format!("<presence xmlns='jabber:client'>{inner}</presence>"))
    }

    #[test]
    fn reads_the_four_update_states() {
        let hash = AvatarHash::parse(PNG_SHA1).unwrap();
        let x = |inner: &str| presence(&format!("<x xmlns='vcard-temp:x:update'>{inner}</x>"));
        assert_eq!(Update::from_presence(&x(&format!("<photo>{PNG_SHA1}</photo>"))), Ok(Update::Hash(hash)));
        let upper = format!("<photo>\n  {}\n</photo>", PNG_SHA1.to_uppercase());
        assert_eq!(Update::from_presence(&x(&upper)), Ok(Update::Hash(hash)));
        assert_eq!(Update::from_presence(&x("<photo/>")), Ok(Update::NoAvatar));
        assert_eq!(Update::from_presence(&x("<photo> </photo>")), Ok(Update::NoAvatar));
        assert_eq!(Update::from_presence(&x("")), Ok(Update::NotReady));
        assert_eq!(Update::from_presence(&presence("<show>away</show>")), Ok(Update::Unknown));
        // A photo in another namespace is not XEP-0153's.
        assert_eq!(Update::from_presence(&x("<photo xmlns='urn:other'/>")), Ok(Update::NotReady));
        let component = el("<presence xmlns='jabber:component:accept'><x xmlns='vcard-temp:x:update'/></presence>");
        assert_eq!(Update::from_presence(&component), Ok(Update::NotReady));
    }

    #[test]
    fn rejects_bad_update_hashes() {
        let x = |h: &str| presence(&format!("<x xmlns='vcard-temp:x:update'><photo>{h}</photo></x>"));
        assert_eq!(Update::from_presence(&x("abc")), Err(VCardError::PhotoHash(HashError::Length(3))));
        // 40 bytes with a non-ASCII char at an odd offset: panics xmpp-parsers 0.23, an error here.
        let evil = format!("0é{}", &PNG_SHA1[..38]);
        assert_eq!(Update::from_presence(&x(&evil)), Err(VCardError::PhotoHash(HashError::NotHex('é'))));
        assert_eq!(
            Update::from_presence(&x("abc")).unwrap_err().to_string(),
            "expected a hex SHA-1 or nothing in vcard-temp:x:update <photo/>, got a bad hash: \
             an avatar hash is 40 hex digits, this one has 3 characters"
        );
    }

    #[test]
    fn rejects_non_presence() {
        assert_eq!(
            Update::from_presence(&el("<message xmlns='jabber:client'/>")),
            Err(VCardError::NotPresence { name: "message".into(), ns: "jabber:client".into() })
        );
    }

    #[test]
    fn emits_update_states() {
        let hash = AvatarHash::parse(&PNG_SHA1.to_uppercase()).unwrap();
        let s = |u: Update| u.to_element().map(|e| to_string(&e));
        assert_eq!(
            s(Update::Hash(hash)).as_deref(),
            Some(format!("<x xmlns='vcard-temp:x:update'><photo>{PNG_SHA1}</photo></x>").as_str())
        );
        assert_eq!(s(Update::NoAvatar).as_deref(), Some("<x xmlns='vcard-temp:x:update'><photo/></x>"));
        assert_eq!(s(Update::NotReady).as_deref(), Some("<x xmlns='vcard-temp:x:update'/>"));
        assert_eq!(s(Update::Unknown), None);
    }

    #[test]
    fn update_round_trips() {
        let hash = AvatarHash::parse(PNG_SHA1).unwrap();
        for u in [Update::Hash(hash), Update::NoAvatar, Update::NotReady, Update::Unknown] {
            let mut p = presence("");
            if let Some(x) = u.to_element() {
                p.append_child(x);
            }
            assert_eq!(Update::from_presence(&p), Ok(u));
        }
    }
}
