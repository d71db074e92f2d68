//! [`StoredAccount`]'s hand-written binary encoding: stable across builds (tags by explicit `match`), and
//! decoded without a panic whatever the bytes.

use super::StoredAccount;
use crate::avatar::AvatarHash;
use crate::engine::account::{Current, Scheme, Seen};

/// Why a [`StoredAccount`] encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the record does.
    #[error("truncated record")]
    Truncated,
    /// A version byte no gateway ever wrote.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// A tag byte outside its enumeration.
    #[error("invalid tag {tag} for {field}")]
    BadTag {
        /// Which field.
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// Bytes left after a complete record: a writer we do not know, so do not guess.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// The account encoding's version byte. A future layout gets version 2 and `decode` keeps reading version 1.
const ENCODING_V1: u8 = 1;

impl StoredAccount {
    /// The stable binary encoding, version 1: the version byte; then `seen` in [`Scheme::ALL`] order, each a tag
    /// (0 unknown, 1 no avatar, 2 avatar + 20-byte hash); then `current` (0 none, or 1 + original hash + source
    /// tag (0 legacy, 1 vCard, 2 PEP) + png hash + legacy hash); then `storage` (0 none, or 1 + hash). Tags are
    /// written by explicit `match`, never `as u8`, so reordering an enum cannot silently change the format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_V1];
        let mut tagged = |tag: u8, hashes: &[&AvatarHash]| {
            out.push(tag);
            hashes.iter().for_each(|hash| out.extend_from_slice(hash.as_bytes()));
        };
        for seen in &self.seen {
            match seen {
                Seen::Unknown => tagged(0, &[]),
                Seen::NoAvatar => tagged(1, &[]),
                Seen::Avatar(hash) => tagged(2, &[hash]),
            }
        }
        match &self.current {
            None => tagged(0, &[]),
            Some(current) => {
                tagged(1, &[&current.original]);
                let source = match current.source {
                    Scheme::Legacy => 0,
                    Scheme::Vcard => 1,
                    Scheme::Pep => 2,
                };
                tagged(source, &[&current.png, &current.legacy]);
            }
        }
        match &self.storage {
            None => tagged(0, &[]),
            Some(hash) => tagged(1, &[hash]),
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s output. Never panics: any other input is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        match r.byte()? {
            ENCODING_V1 => {}
            other => return Err(DecodeError::UnknownVersion(other)),
        }
        let mut seen = [Seen::Unknown; 3];
        for slot in &mut seen {
            *slot = match r.byte()? {
                0 => Seen::Unknown,
                1 => Seen::NoAvatar,
                2 => Seen::Avatar(r.hash()?),
                tag => return Err(DecodeError::BadTag { field: "seen", tag }),
            };
        }
        let current = match r.byte()? {
            0 => None,
            1 => {
                let original = r.hash()?;
                let source = match r.byte()? {
                    0 => Scheme::Legacy,
                    1 => Scheme::Vcard,
                    2 => Scheme::Pep,
                    tag => return Err(DecodeError::BadTag { field: "current.source", tag }),
                };
                Some(Current { original, source, png: r.hash()?, legacy: r.hash()? })
            }
            tag => return Err(DecodeError::BadTag { field: "current", tag }),
        };
        let storage = match r.byte()? {
            0 => None,
            1 => Some(r.hash()?),
            tag => return Err(DecodeError::BadTag { field: "storage", tag }),
        };
        match r.0.len() {
            0 => Ok(Self { seen, current, storage }),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// A cursor that only hands out bytes it has (slice methods, no indexing), so decoding cannot panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&byte, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(byte)
    }

    fn hash(&mut self) -> Result<AvatarHash, DecodeError> {
        let (hash, rest) = self.0.split_first_chunk::<20>().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(AvatarHash::from_bytes(*hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> AvatarHash {
        AvatarHash::from_bytes([n; 20])
    }

    fn full() -> StoredAccount {
        StoredAccount {
            seen: [Seen::Unknown, Seen::NoAvatar, Seen::Avatar(h(1))],
            current: Some(Current { original: h(2), source: Scheme::Pep, png: h(3), legacy: h(4) }),
            storage: Some(h(5)),
        }
    }

    #[test]
    fn layout_is_pinned_down() {
        let mut expected = vec![1, 0, 1, 2];
        expected.extend([1; 20]);
        expected.push(1);
        expected.extend([2; 20]);
        expected.push(2);
        expected.extend([3; 20].into_iter().chain([4; 20]));
        expected.push(1);
        expected.extend([5; 20]);
        assert_eq!(full().encode(), expected);
        assert_eq!(StoredAccount::default().encode(), [1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_variant_round_trips() {
        for source in Scheme::ALL {
            let mut account = full();
            account.current.as_mut().unwrap().source = source;
            assert_eq!(StoredAccount::decode(&account.encode()), Ok(account));
        }
        let empty = StoredAccount::default();
        assert_eq!(StoredAccount::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let bytes = full().encode();
        for cut in 0..bytes.len() {
            assert_eq!(StoredAccount::decode(&bytes[..cut]), Err(DecodeError::Truncated), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(StoredAccount::decode(&long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(StoredAccount::decode(&[2]), Err(DecodeError::UnknownVersion(2)));
        assert_eq!(StoredAccount::decode(&[1, 3]), Err(DecodeError::BadTag { field: "seen", tag: 3 }));
        let mut bad_source = bytes;
        bad_source[1 + 1 + 1 + 21 + 1 + 20] = 9;
        assert_eq!(StoredAccount::decode(&bad_source), Err(DecodeError::BadTag { field: "current.source", tag: 9 }));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_decode_canonically(bytes in proptest::collection::vec(0u8..4, 0..160)) {
            if let Ok(account) = StoredAccount::decode(&bytes) {
                proptest::prop_assert_eq!(account.encode(), bytes);
            }
        }
    }
}
