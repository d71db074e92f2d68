//! XEP-0008 IQ-Based Avatars (v0.3.1, Historical/Obsolete): `jabber:x:avatar`, `jabber:iq:avatar` and
//! `storage:client:avatar`.
//!
//! Still spoken by Vacuum-IM, Miranda, Coccinella and the Waher IoT library, and by no server (specs §1): the
//! gateway answers `jabber:iq:avatar` and `storage:client:avatar` for bare JIDs (XEP-0355 delegation) and reads
//! `jabber:iq:avatar` from clients' full JIDs.
//!
//! Lenient in: `<data/>` without `mimetype` (Vacuum), base64 wrapped at 76 columns (Coccinella's tcllib) or
//! otherwise spaced or unpadded, hashes in either case or surrounded by whitespace, an empty `<hash/>`. Strict out:
//! the spec's shapes, a `mimetype` on every `<data/>`, one unwrapped padded base64 line, lower-case hashes.

use xmpp_parsers::minidom::Element;

use crate::avatar::{AvatarHash, HashError};
use crate::image::Rendition;
use crate::wire::b64::{self, Base64Error};
use crate::wire::ns;
use crate::wire::xml::{Attrs, element, trimmed_text};

/// Why an XEP-0008 payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Xep0008Error {
    /// [`XAvatar::from_presence`] was given something other than a `<presence/>` stanza.
    #[error("expected a <presence/> stanza, got <{name} xmlns='{ns}'/>")]
    NotPresence {
        /// The local name that arrived.
        name: String,
        /// The namespace that arrived.
        ns: String,
    },
    /// [`Query::parse`] was given something other than `<query/>` in `jabber:iq:avatar` or
    /// `storage:client:avatar`.
    #[error(
        "expected <query xmlns='jabber:iq:avatar'/> or <query xmlns='storage:client:avatar'/>, got <{name} xmlns='{ns}'/>"
    )]
    NotQuery {
        /// The local name that arrived.
        name: String,
        /// The namespace that arrived.
        ns: String,
    },
    /// The `<data/>` text is not base64, even after whitespace is stripped and padding ignored.
    #[error("expected base64 in XEP-0008 <data/>, got {0}")]
    Data(#[from] Base64Error),
    /// The `<hash/>` of `jabber:x:avatar` holds text that is not a SHA-1 in hex.
    #[error("expected a hex SHA-1 or nothing in jabber:x:avatar <hash/>, got a bad hash: {0}")]
    Hash(#[from] HashError),
    /// A `<data/>` with nothing in it: not the empty query that means "no avatar", so not taken for one.
    #[error("an empty XEP-0008 <data/> (\"no avatar\" is a query without <data/>)")]
    EmptyData,
    /// A query holding text or elements but no `<data/>`: garbage, not "no avatar".
    #[error("a XEP-0008 <query/> with content but no <data/>")]
    Junk,
}

/// The `jabber:x:avatar` state of one presence (XEP-0008 §3; specs §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAvatar {
    /// `<x><hash>h</hash></x>`: the avatar is the image whose SHA-1 is `h`.
    Hash(AvatarHash),
    /// `<x/>` with no (or an empty) `<hash/>`: the owner disabled the avatar.
    Disabled,
    /// No `jabber:x:avatar` child: keep the cached image (XEP-0008 §3: e.g. after a dropped connection).
    Absent,
}

impl XAvatar {
    /// Reads the first `jabber:x:avatar` child of a presence, in any presence namespace. Vacuum sends it next to
    /// `vcard-temp:x:update` with the same hash; each codec reads its own child. Hashes are validated by char, so
    /// non-ASCII cannot panic.
    pub fn from_presence(presence: &Element) -> Result<Self, Xep0008Error> {
        if presence.name() != "presence" {
            return Err(Xep0008Error::NotPresence { name: presence.name().to_owned(), ns: presence.ns() });
        }
        let Some(x) = presence.get_child("x", ns::X_AVATAR) else {
            return Ok(Self::Absent);
        };
        // "No hash information" (XEP-0008 §3) covers both a missing and an empty <hash/>; Coccinella treats both so.
        match x.get_child("hash", ns::X_AVATAR).and_then(trimmed_text) {
            None => Ok(Self::Disabled),
            Some(text) => Ok(Self::Hash(AvatarHash::parse(&text)?)),
        }
    }

    /// The presence child announcing this state, exactly as XEP-0008 shows it (lower-case hash), or `None` for
    /// [`XAvatar::Absent`], which is the absence of the child.
    pub fn to_element(&self) -> Option<Element> {
        let x = element("x", ns::X_AVATAR);
        match self {
            Self::Hash(hash) => Some(x.append(element("hash", ns::X_AVATAR).append(hash.to_string())).build()),
            Self::Disabled => Some(x.build()),
            Self::Absent => None,
        }
    }
}

/// Where XEP-0008 image data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// `jabber:iq:avatar`: asked of the client at its full JID (XEP-0008 §4, method 1).
    IqAvatar,
    /// `storage:client:avatar`: the server-side copy at the owner's bare JID (XEP-0008 §4, method 2).
    Storage,
}

impl Store {
    /// The namespace of this store's `<query/>`.
    pub fn ns(self) -> &'static str {
        match self {
            Self::IqAvatar => ns::IQ_AVATAR,
            Self::Storage => ns::STORAGE_AVATAR,
        }
    }

    /// The store a `<query/>` namespace names, if any.
    pub fn from_ns(namespace: &str) -> Option<Self> {
        match namespace {
            ns::IQ_AVATAR => Some(Self::IqAvatar),
            ns::STORAGE_AVATAR => Some(Self::Storage),
            _ => None,
        }
    }
}

/// Image data as XEP-0008 carries it, not yet validated as an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyData {
    /// The `mimetype` attribute, trimmed; `None` when absent or empty (Vacuum never sends it). Only a hint: the
    /// image module sniffs the bytes.
    pub mimetype: Option<String>,
    /// The decoded bytes (never empty).
    pub bytes: Vec<u8>,
}

/// A `jabber:iq:avatar` or `storage:client:avatar` `<query/>`, of any IQ type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Which namespace it is in.
    pub store: Store,
    /// The image, or `None` for an empty query: a get, a set that clears the storage (Coccinella's
    /// `store_remove`), or a result without an image.
    pub data: Option<LegacyData>,
}

impl Query {
    /// Reads a `<query/>` in either XEP-0008 namespace. Only the first `<data/>` in the query's own namespace
    /// counts. Only a query with nothing in it means "no image": an empty `<data/>`, or text or other elements
    /// without a `<data/>`, are errors, so a client's garbage never clears an owner's avatar.
    pub fn parse(el: &Element) -> Result<Self, Xep0008Error> {
        let store = (el.name() == "query").then(|| Store::from_ns(&el.ns())).flatten();
        let Some(store) = store else {
            return Err(Xep0008Error::NotQuery { name: el.name().to_owned(), ns: el.ns() });
        };
        let Some(data) = el.get_child("data", store.ns()) else {
            let empty = el.children().next().is_none() && el.text().trim().is_empty();
            return if empty { Ok(Self { store, data: None }) } else { Err(Xep0008Error::Junk) };
        };
        let bytes = b64::decode(&data.text())?;
        if bytes.is_empty() {
            return Err(Xep0008Error::EmptyData);
        }
        let mimetype = data.attr("mimetype").map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned);
        Ok(Self { store, data: Some(LegacyData { mimetype, bytes }) })
    }
}

/// A `<query/>` for `store`: empty without data (an IQ get, or the empty result acknowledging a set), else
/// `<query><data mimetype='…'>base64</data></query>` with the rendition's real type (XEP-0008 §4: the attribute is
/// `mimetype`, not `type`).
pub fn query(store: Store, data: Option<&Rendition>) -> Element {
    let query = element("query", store.ns());
    match data {
        None => query.build(),
        Some(r) => query
            .append(element("data", store.ns()).with_attr("mimetype", r.mime()).append(b64::encode(r.bytes())))
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageLimits;
    use crate::wire::xml::to_string;

    const PNG_B64: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    const PNG_SHA1: &str = "4a5eb7171b58e08a6881721e3b43d5a44419a2be";

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn png() -> Vec<u8> {
        b64::decode(PNG_B64).unwrap()
    }

    fn presence(inner: &str) -> Element {
        el(&format!("<presence xmlns='jabber:client'>{inner}</presence>"))
    }

    #[test]
    fn reads_the_three_presence_states() {
        let hash = AvatarHash::parse(PNG_SHA1).unwrap();
        let x = |inner: &str| presence(&format!("<x xmlns='jabber:x:avatar'>{inner}</x>"));
        assert_eq!(XAvatar::from_presence(&x(&format!("<hash>{PNG_SHA1}</hash>"))), Ok(XAvatar::Hash(hash)));
        let upper = format!("<hash>\n {} \n</hash>", PNG_SHA1.to_uppercase());
        assert_eq!(XAvatar::from_presence(&x(&upper)), Ok(XAvatar::Hash(hash)));
        assert_eq!(XAvatar::from_presence(&x("")), Ok(XAvatar::Disabled));
        assert_eq!(XAvatar::from_presence(&x("<hash/>")), Ok(XAvatar::Disabled));
        assert_eq!(XAvatar::from_presence(&presence("")), Ok(XAvatar::Absent));
        // Vacuum: both schemes in one presence; this codec reads only its own.
        let both = presence(&format!(
            "<x xmlns='vcard-temp:x:update'><photo/></x><x xmlns='jabber:x:avatar'><hash>{PNG_SHA1}</hash></x>"
        ));
        assert_eq!(XAvatar::from_presence(&both), Ok(XAvatar::Hash(hash)));
    }

    #[test]
    fn rejects_bad_hashes() {
        let x = |h: &str| presence(&format!("<x xmlns='jabber:x:avatar'><hash>{h}</hash></x>"));
        assert_eq!(XAvatar::from_presence(&x("abc")), Err(Xep0008Error::Hash(HashError::Length(3))));
        let evil = format!("0é{}", &PNG_SHA1[..38]);
        assert_eq!(XAvatar::from_presence(&x(&evil)), Err(Xep0008Error::Hash(HashError::NotHex('é'))));
        assert_eq!(
            XAvatar::from_presence(&x("abc")).unwrap_err().to_string(),
            "expected a hex SHA-1 or nothing in jabber:x:avatar <hash/>, got a bad hash: \
             an avatar hash is 40 hex digits, this one has 3 characters"
        );
    }

    #[test]
    fn rejects_non_presence() {
        assert_eq!(
            XAvatar::from_presence(&el("<iq xmlns='jabber:client'/>")),
            Err(Xep0008Error::NotPresence { name: "iq".into(), ns: "jabber:client".into() })
        );
    }

    #[test]
    fn emits_presence_states() {
        let hash = AvatarHash::parse(&PNG_SHA1.to_uppercase()).unwrap();
        let s = |x: XAvatar| x.to_element().map(|e| to_string(&e));
        assert_eq!(
            s(XAvatar::Hash(hash)).as_deref(),
            Some(format!("<x xmlns='jabber:x:avatar'><hash>{PNG_SHA1}</hash></x>").as_str())
        );
        assert_eq!(s(XAvatar::Disabled).as_deref(), Some("<x xmlns='jabber:x:avatar'/>"));
        assert_eq!(s(XAvatar::Absent), None);
    }

    #[test]
    fn reads_queries() {
        let q = |ns: &str, inner: &str| Query::parse(&el(&format!("<query xmlns='{ns}'>{inner}</query>")));
        assert_eq!(q(ns::IQ_AVATAR, ""), Ok(Query { store: Store::IqAvatar, data: None }));
        assert_eq!(q(ns::STORAGE_AVATAR, ""), Ok(Query { store: Store::Storage, data: None }));
        assert_eq!(
            q(ns::IQ_AVATAR, &format!("<data mimetype=' image/png '>{PNG_B64}</data>")),
            Ok(Query {
                store: Store::IqAvatar,
                data: Some(LegacyData { mimetype: Some("image/png".into()), bytes: png() })
            })
        );
        // Vacuum: no mimetype; wrapped and unpadded base64.
        let (a, b) = PNG_B64.trim_end_matches('=').split_at(40);
        assert_eq!(
            q(ns::STORAGE_AVATAR, &format!("<data>{a}\n{b}</data>")),
            Ok(Query { store: Store::Storage, data: Some(LegacyData { mimetype: None, bytes: png() }) })
        );
        // Only an empty query means "no image" (issue: a client's garbage cleared the owner's avatar).
        assert_eq!(q(ns::STORAGE_AVATAR, "<data mimetype='image/png'/>"), Err(Xep0008Error::EmptyData));
        assert_eq!(q(ns::STORAGE_AVATAR, "junk"), Err(Xep0008Error::Junk));
        assert_eq!(q(ns::STORAGE_AVATAR, "<other xmlns='x'/>"), Err(Xep0008Error::Junk));
        assert_eq!(q(ns::STORAGE_AVATAR, "\n  "), Ok(Query { store: Store::Storage, data: None }));
        // <data/> in another namespace is not XEP-0008's: neither an image nor a clear request.
        assert_eq!(q(ns::IQ_AVATAR, &format!("<data xmlns='urn:x'>{PNG_B64}</data>")), Err(Xep0008Error::Junk));
    }

    #[test]
    fn rejects_other_queries() {
        assert_eq!(
            Query::parse(&el("<query xmlns='jabber:x:avatar'/>")),
            Err(Xep0008Error::NotQuery { name: "query".into(), ns: "jabber:x:avatar".into() })
        );
        let err = Query::parse(&el("<vCard xmlns='storage:client:avatar'/>")).unwrap_err();
        assert_eq!(err, Xep0008Error::NotQuery { name: "vCard".into(), ns: "storage:client:avatar".into() });
        assert_eq!(
            err.to_string(),
            "expected <query xmlns='jabber:iq:avatar'/> or <query xmlns='storage:client:avatar'/>, \
             got <vCard xmlns='storage:client:avatar'/>"
        );
    }

    #[test]
    fn rejects_bad_base64() {
        let err = Query::parse(&el("<query xmlns='jabber:iq:avatar'><data>iVBO*w0K</data></query>")).unwrap_err();
        assert_eq!(err, Xep0008Error::Data(b64::decode("iVBO*w0K").unwrap_err()));
        assert!(err.to_string().starts_with("expected base64 in XEP-0008 <data/>, got invalid base64: "), "{err}");
    }

    #[test]
    fn emits_queries() {
        let r = Rendition::from_bytes(png(), &ImageLimits::default()).unwrap();
        assert_eq!(to_string(&query(Store::IqAvatar, None)), "<query xmlns='jabber:iq:avatar'/>");
        assert_eq!(to_string(&query(Store::Storage, None)), "<query xmlns='storage:client:avatar'/>");
        assert_eq!(
            to_string(&query(Store::Storage, Some(&r))),
            format!("<query xmlns='storage:client:avatar'><data mimetype='image/png'>{PNG_B64}</data></query>")
        );
        let back = Query::parse(&query(Store::IqAvatar, Some(&r))).unwrap();
        assert_eq!(
            back,
            Query {
                store: Store::IqAvatar,
                data: Some(LegacyData { mimetype: Some("image/png".into()), bytes: png() })
            }
        );
    }

    #[test]
    fn store_namespaces_round_trip() {
        for s in [Store::IqAvatar, Store::Storage] {
            assert_eq!(Store::from_ns(s.ns()), Some(s));
        }
        assert_eq!(Store::from_ns(ns::X_AVATAR), None);
    }
}
