//! Base64 as the avatar schemes carry it: decoded leniently, encoded strictly.
//!
//! XEP-0084 says line feeds "SHOULD NOT be added but MUST be accepted"; XEP-0153 says any whitespace in BINVAL
//! "MUST be ignored" (RFC 2045 wraps at 76 columns, Openfire had to special-case it). Clients also drop the `=`
//! padding. So decoding strips XML whitespace and ignores padding; encoding writes one unwrapped, padded line.

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why base64 text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64: {0}")]
pub struct Base64Error(String);

/// Decodes base64 that may be wrapped, spaced or unpadded.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let compact: Vec<u8> = text.bytes().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
    LENIENT.decode(compact).map_err(|e| Base64Error(e.to_string()))
}

/// Encodes as one padded line with no breaks (what every scheme's readers accept).
pub fn encode(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wrapped_spaced_and_unpadded() {
        assert_eq!(decode("aGVs\r\n bG8\tgd2\n9ybGQ=").unwrap(), b"hello world");
        assert_eq!(decode("aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn rejects_foreign_characters() {
        assert!(decode("aGVs*bG8=").is_err());
        assert!(decode("aGVsé").is_err());
    }

    #[test]
    fn encodes_padded_single_line() {
        assert_eq!(encode(b"hello world"), "aGVsbG8gd29ybGQ=");
    }
}
