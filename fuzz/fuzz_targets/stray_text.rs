//! `StrayTextFilter` on arbitrary bytes cut into arbitrary chunks: never panics, every byte is either passed or
//! counted as dropped, the chunking changes nothing, and filtering what passed drops nothing more. Without stanza
//! limits, so that no byte is replaced (`component_stream` fuzzes the limits).
#![no_main]

use avatar_gateway::link::limits::StanzaLimits;
use avatar_gateway::link::stray_text::StrayTextFilter;
use libfuzzer_sys::fuzz_target;

/// The filtered stream and the bytes dropped, fed in chunks of `chunk` bytes.
fn filter(stream: &[u8], chunk: usize) -> (Vec<u8>, u64) {
    let mut filter = StrayTextFilter::with_limits(StanzaLimits::UNLIMITED);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        let reported = filter.feed(piece, &mut out).map_or(0, |d| d.bytes);
        assert!(reported <= piece.len() + 8, "at most the chunk and the held markup");
    }
    filter.finish(&mut out);
    (out, filter.total_bytes())
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so libFuzzer explores boundaries along with content.
    let Some((&chunk, stream)) = data.split_first() else { return };
    let whole = filter(stream, stream.len());
    let (out, dropped) = filter(stream, usize::from(chunk % 32) + 1);
    assert_eq!((&out, dropped), (&whole.0, whole.1), "chunking changed the result");
    assert_eq!(out.len() as u64 + dropped, stream.len() as u64, "a byte was lost or made up");
    assert_eq!(filter(&out, out.len()), (out.clone(), 0), "what passed still had stray text");
});
