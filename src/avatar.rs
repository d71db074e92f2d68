//! The avatar model every scheme shares: one hash, the lower-case hex SHA-1 of the decoded image bytes.
//!
//! XEP-0008 `<hash/>`, XEP-0153 `<photo/>` and XEP-0084 item ids all name an image by the SHA-1 of its raw
//! bytes (never of the base64 text), so one [`AvatarHash`] keys the cache for all three schemes. Hashes read off
//! the wire are only *claims*; the hash of bytes we hold comes from [`AvatarHash::of`], and the image module pairs
//! it with those bytes in a [`Rendition`](crate::image::Rendition) so an advertised hash always matches what is
//! served.

use std::fmt;

use sha1::{Digest, Sha1};

/// The SHA-1 of an image's bytes. Displays as 40 lower-case hex digits (XEP-0153 §1.1: emit lower case).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AvatarHash([u8; 20]);

/// Why a hash read off the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Not 40 characters once surrounding whitespace is trimmed.
    #[error("an avatar hash is 40 hex digits, this one has {0} characters")]
    Length(usize),
    /// A character other than `0-9a-fA-F`.
    #[error("an avatar hash is hexadecimal, this one has {0:?} in it")]
    NotHex(char),
}

impl AvatarHash {
    /// The hash of `bytes`: what every scheme must advertise for them.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha1::digest(bytes).into())
    }

    /// Parses a hash as clients send it: either case, surrounded by any whitespace (XEP-0153 says entities must
    /// process both cases; Psi and others wrap text in newlines). Works on `char`s, never byte offsets, so no
    /// input can panic it (xmpp-parsers 0.23's `FixedHex` does on non-ASCII).
    pub fn parse(text: &str) -> Result<Self, HashError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let count = text.chars().count();
        if count != 40 {
            return Err(HashError::Length(count));
        }
        let mut out = [0u8; 20];
        let mut nibbles = text.chars().map(|c| c.to_digit(16).map(|d| d as u8).ok_or(HashError::NotHex(c)));
        for byte in &mut out {
            // Both unwrap-free: `count == 40` guarantees two nibbles per byte.
            let (Some(hi), Some(lo)) = (nibbles.next(), nibbles.next()) else {
                return Err(HashError::Length(count));
            };
            *byte = (hi? << 4) | lo?;
        }
        Ok(Self(out))
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Rebuilds a hash from bytes we stored ourselves (the store's keys).
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for AvatarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AvatarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AvatarHash({self})")
    }
}

impl std::str::FromStr for AvatarHash {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-1("abc"), RFC 3174 test vector.
    const ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    #[test]
    fn hashes_bytes_as_lower_hex() {
        assert_eq!(AvatarHash::of(b"abc").to_string(), ABC);
    }

    #[test]
    fn parses_upper_case_and_surrounding_whitespace() {
        let h = AvatarHash::parse(&format!("\n  {}\t\r\n", ABC.to_uppercase())).unwrap();
        assert_eq!(h, AvatarHash::of(b"abc"));
    }

    #[test]
    fn rejects_short_long_and_inner_space() {
        assert_eq!(AvatarHash::parse("abc"), Err(HashError::Length(3)));
        assert_eq!(AvatarHash::parse(&format!("{ABC}0")), Err(HashError::Length(41)));
        assert_eq!(AvatarHash::parse(&format!("{} {}", &ABC[..20], &ABC[21..])), Err(HashError::NotHex(' ')));
    }

    #[test]
    fn rejects_non_ascii_without_panicking() {
        // 40 bytes with an 'é' at an odd offset: the input that panics xmpp-parsers 0.23.
        let evil = format!("0é{}", &ABC[..37]);
        assert_eq!(evil.len(), 40);
        assert_eq!(AvatarHash::parse(&evil), Err(HashError::Length(39)));
        let evil = format!("0é{}", &ABC[..38]);
        assert_eq!(AvatarHash::parse(&evil), Err(HashError::NotHex('é')));
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(AvatarHash::parse("   "), Err(HashError::Length(0)));
    }
}
