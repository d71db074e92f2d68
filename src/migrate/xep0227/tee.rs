//! A reader that remembers exactly the bytes its consumer consumed: quick-xml reads through it, and after each
//! event [`Tee::take`] hands over that event's raw bytes, so the rewriter can copy them without re-serialising.

use std::io::{self, BufRead, BufReader, Read};

/// Read buffer size: large enough that the per-chunk overhead vanishes, small enough to be irrelevant in memory.
const CHUNK: usize = 64 * 1024;

/// Wraps a reader; every byte consumed through [`BufRead::consume`] is also appended to a side buffer until taken.
pub(super) struct Tee<R> {
    // Our own BufReader, so `consume` can copy from `buffer()` without another (fallible) `fill_buf`.
    inner: BufReader<R>,
    taken: Vec<u8>,
}

impl<R: Read> Tee<R> {
    pub(super) fn new(inner: R) -> Self {
        Self { inner: BufReader::with_capacity(CHUNK, inner), taken: Vec::new() }
    }

    /// Moves the bytes consumed since the last call into `into` (replacing its content).
    pub(super) fn take(&mut self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(into, &mut self.taken);
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Tee<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        let buffered = self.inner.buffer();
        self.taken.extend_from_slice(&buffered[..amount.min(buffered.len())]);
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;
    use quick_xml::reader::NsReader;

    use super::*;

    /// Every event's raw bytes, as the tee hands them over.
    fn raw_events(xml: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = NsReader::from_reader(Tee::new(xml));
        let (mut buf, mut raw, mut events) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            buf.clear();
            let eof = matches!(reader.read_event_into(&mut buf).unwrap(), Event::Eof);
            reader.get_mut().take(&mut raw);
            if eof {
                assert!(raw.is_empty(), "bytes after the last event: {raw:?}");
                return events;
            }
            events.push(raw.clone());
        }
    }

    #[test]
    fn each_event_gets_exactly_its_own_bytes() {
        let xml =
            "\u{feff}<?xml version='1.0'?>\n<!-- c --><a xmlns='u' b=\"&amp;\">t&amp;&#13;x<b/><![CDATA[<>]]></a >\n";
        let events: Vec<String> =
            raw_events(xml.as_bytes()).into_iter().map(|e| String::from_utf8(e).unwrap()).collect();
        assert_eq!(events.concat(), xml);
        let expected = [
            "\u{feff}<?xml version='1.0'?>",
            "\n",
            "<!-- c -->",
            "<a xmlns='u' b=\"&amp;\">",
            "t",
            "&amp;",
            "&#13;",
            "x",
            "<b/>",
            "<![CDATA[<>]]>",
            "</a >",
            "\n",
        ];
        assert_eq!(events, expected);
    }
}
