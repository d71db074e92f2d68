//! The log: human lines by default, one JSON object per line for collectors (`--log-format json`), and stanzas
//! logged at debug level with their image data elided, so neither format ever carries an avatar's bytes.

use std::fmt;

use tracing_subscriber::EnvFilter;
use xmpp_parsers::minidom::Element;

use crate::wire::xml;

/// How log lines are written (to stderr, where journald and `docker logs` take them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text lines.
    #[default]
    Human,
    /// One JSON object per line (tracing-subscriber's format: timestamp, level, fields, target).
    Json,
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Text nodes at least this long made only of base64 characters are image data (a SHA-1 in hex is 40).
const ELIDE_FROM: usize = 64;

/// A stanza as the wire carries it, except that long base64 text (XEP-0084 `<data>`, vCard `<BINVAL>`,
/// XEP-0008 `<data>`, in any namespace generation) is replaced by `[N base64 chars]`. Image bytes are users'
/// data, and a debug log kept for a bug report must not hold them.
pub struct Redacted<'a>(pub &'a Element);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = self.0.clone();
        elide(&mut copy);
        f.write_str(&xml::to_string(&copy))
    }
}

fn elide(element: &mut Element) {
    // The parser hands long text over in chunks (one text node per 8 KiB): judge and elide the element's text whole.
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let chars: usize = element.texts().map(|t| t.chars().filter(|c| !c.is_ascii_whitespace()).count()).sum();
    let only_base64 = element.texts().all(|t| t.chars().all(|c| base64(c) || c.is_ascii_whitespace()));
    if chars >= ELIDE_FROM && only_base64 {
        for (i, text) in element.texts_mut().enumerate() {
            *text = if i == 0 { format!("[{chars} base64 chars]") } else { String::new() };
        }
    }
    for child in element.children_mut() {
        elide(child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_data_is_elided_and_the_rest_kept() {
        let b64 = "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAYAAACqaXHeAAAA".repeat(4);
        let stanza: Element = format!(
            "<iq xmlns='jabber:component:accept' id='gw1' type='set'><vCard xmlns='vcard-temp'><FN>Alice</FN>\
             <PHOTO><TYPE>image/png</TYPE><BINVAL>\n{}\n{}</BINVAL></PHOTO></vCard>\
             <x xmlns='jabber:x:avatar'><hash>0123456789abcdef0123456789abcdef01234567</hash></x></iq>",
            &b64[..76],
            &b64[76..]
        )
        .parse()
        .unwrap();
        let line = Redacted(&stanza).to_string();
        assert!(line.contains(&format!("<BINVAL>[{} base64 chars]</BINVAL>", b64.len())), "{line}");
        assert!(line.contains("<FN>Alice</FN>") && line.contains("0123456789abcdef0123456789abcdef01234567"), "{line}");
        assert!(!line.contains(&b64[..20]), "{line}");
    }
}
