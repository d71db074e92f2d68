//! Per-stanza depth and size limits, enforced on the byte stream before any tree is built.
//!
//! Why: building a minidom element recurses once per nesting level (xso 0.4 `ElementFromEvents::feed`), and so do
//! its drop, clone and serialisation. Any user of the server can send the component one stanza about 15 000
//! levels deep (~105 KB, under Prosody 0.12's 256 KiB `c2s_stanza_size_limit`, so the server forwards it); about
//! 13 700 levels overflow the main thread's stack and the process aborts. A bigger stack only moves the threshold,
//! so the depth is limited where it is known before parsing: in [`super::stray_text`]'s lexer, which drives
//! [`Stanza`] here. A byte limit per stanza bounds what is held meanwhile.
//!
//! Each top-level stanza (an element opened between stanzas) is held until its end tag (the parser could not hand
//! it on earlier anyway), then passed whole. One that goes over a limit is discarded as it is read (only its start
//! tag is kept, so memory stays bounded by `max_bytes`) and, once it ends, replaced by its start tag exactly as
//! received, a marker child and its end tag:
//!
//! ```xml
//! <iq from='a@b/c' to='avatars.b' id='x' type='set'><limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='depth'/></iq>
//! ```
//!
//! (`reason='size'` for the byte limit; a self-closing start tag loses its `/`). The engine sees an ordinary
//! stanza with a [`LIMIT_ELEMENT`] child in [`LIMIT_NS`] and refuses it; the link stays up. A start tag longer than
//! [`MAX_KEPT_START_TAG`] is not kept, and such a stanza disappears without a trace but the log line.

/// Namespace of the marker that replaces the content of a stanza over a limit.
pub const LIMIT_NS: &str = crate::wire::ns::STANZA_LIMIT;
/// Name of that marker; its `reason` attribute is [`LimitReason::as_str`].
pub const LIMIT_ELEMENT: &str = "limit-exceeded";
/// Longest start tag kept for a replacement (JIDs, id, type and namespaces are far shorter).
pub const MAX_KEPT_START_TAG: usize = 4096;
/// How many bytes of an over-limit stanza's start tag a report keeps for the log.
pub const START_TAG_EXCERPT_LEN: usize = 160;

/// How deep and how long one top-level stanza may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaLimits {
    /// Nesting levels, the stanza's own element being level 1 (empty elements count too).
    pub max_depth: usize,
    /// Bytes from the stanza's `<` to the `>` that closes it.
    pub max_bytes: usize,
}

impl StanzaLimits {
    /// 64 levels (real payloads nest fewer than 10) and 1 MiB (twice Prosody's largest stanza limit).
    pub const DEFAULT: Self = Self { max_depth: 64, max_bytes: 1 << 20 };
    /// No limit: every stanza passes (it is still held until complete).
    pub const UNLIMITED: Self = Self { max_depth: usize::MAX, max_bytes: usize::MAX };

    /// The limit `reason` names.
    pub fn of(&self, reason: LimitReason) -> usize {
        match reason {
            LimitReason::Depth => self.max_depth,
            LimitReason::Size => self.max_bytes,
        }
    }
}

impl Default for StanzaLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which limit a stanza went over first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// [`StanzaLimits::max_depth`].
    Depth,
    /// [`StanzaLimits::max_bytes`].
    Size,
}

impl LimitReason {
    /// The marker's `reason` attribute: `depth` or `size`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Depth => "depth",
            Self::Size => "size",
        }
    }
}

impl std::fmt::Display for LimitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stanza found over a limit, reported once, as soon as it is found (its replacement follows when it ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// The limit it went over.
    pub reason: LimitReason,
    /// Its bytes up to where it went over: through the `>` of the element too deep, or `max_bytes + 1`.
    pub bytes: usize,
    excerpt: Vec<u8>,
    cut: bool,
}

impl OverLimit {
    /// The first [`START_TAG_EXCERPT_LEN`] bytes of its start tag (or of what had arrived of it), raw.
    pub fn excerpt(&self) -> &[u8] {
        &self.excerpt
    }

    /// The excerpt as printable text, `…` when cut short: control characters, `"` and `\` escaped, invalid
    /// UTF-8 replaced, and the `'` of attribute values left alone.
    pub fn excerpt_escaped(&self) -> String {
        let mut text = String::with_capacity(self.excerpt.len() + 3);
        for c in String::from_utf8_lossy(&self.excerpt).chars() {
            if c.is_control() || c == '"' || c == '\\' {
                text.extend(c.escape_debug());
            } else {
                text.push(c);
            }
        }
        if self.cut {
            text.push('…');
        }
        text
    }
}

/// Where the stanza being read stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between stanzas (or in the stream header): bytes pass straight on.
    Idle,
    /// Within limits so far: every byte is held.
    Reading,
    /// Over a limit: bytes are counted, and only the start tag is kept while `keep_tag`.
    Skipping { reason: LimitReason, keep_tag: bool },
}

/// The top-level stanza being read, held whole until it ends; the sink of every byte [`super::stray_text`] passes.
#[derive(Debug, Clone)]
pub(super) struct Stanza {
    limits: StanzaLimits,
    state: State,
    /// Reading: the stanza so far; skipping with `keep_tag`: its start tag (so far).
    buf: Vec<u8>,
    /// Bytes of the stanza read so far.
    bytes: usize,
    /// Length of its start tag, once complete.
    tag_len: Option<usize>,
}

impl Stanza {
    /// A sink between stanzas. A zero depth would refuse the stanza element itself: at least 1.
    pub(super) fn new(limits: StanzaLimits) -> Self {
        let limits = StanzaLimits { max_depth: limits.max_depth.max(1), ..limits };
        Self { limits, state: State::Idle, buf: Vec::new(), bytes: 0, tag_len: None }
    }

    pub(super) fn limits(&self) -> StanzaLimits {
        self.limits
    }

    /// The `<` of a start tag between stanzas is about to be put: a stanza begins.
    pub(super) fn begin(&mut self) {
        self.state = State::Reading;
        self.buf.clear();
        self.bytes = 0;
        self.tag_len = None;
    }

    pub(super) fn put(&mut self, b: u8, out: &mut Vec<u8>, found: &mut Vec<OverLimit>) {
        match self.state {
            State::Idle => out.push(b),
            _ => self.put_slice(std::slice::from_ref(&b), out, found),
        }
    }

    /// Bytes the lexer passes: on to `out` between stanzas, into the stanza otherwise.
    pub(super) fn put_slice(&mut self, bytes: &[u8], out: &mut Vec<u8>, found: &mut Vec<OverLimit>) {
        match self.state {
            State::Idle => out.extend_from_slice(bytes),
            // `buf.len() <= max_bytes` always holds here: no subtraction overflow, no buffer beyond the limit.
            State::Reading if bytes.len() <= self.limits.max_bytes - self.buf.len() => {
                self.buf.extend_from_slice(bytes);
                self.bytes += bytes.len();
            }
            State::Reading => {
                // Up to the limit exactly, so the report says the same however the stream was cut.
                let (within, beyond) = bytes.split_at(self.limits.max_bytes - self.buf.len());
                self.buf.extend_from_slice(within);
                self.bytes += within.len();
                self.over(LimitReason::Size, found);
                self.skip(beyond);
            }
            State::Skipping { .. } => self.skip(bytes),
        }
    }

    /// A start tag's `>` was put; `level`: the element's nesting level (1: the stanza itself, 0: the stream header).
    pub(super) fn start_tag_closed(
        &mut self,
        level: usize,
        empty: bool,
        out: &mut Vec<u8>,
        found: &mut Vec<OverLimit>,
    ) {
        if self.state == State::Idle {
            return;
        }
        if level == 1 {
            self.tag_len = Some(self.bytes);
            if empty {
                self.end(out);
            }
        } else if level > self.limits.max_depth && self.state == State::Reading {
            self.over(LimitReason::Depth, found);
        }
    }

    /// The stanza's end tag was put: hands it on whole, or its replacement.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Idle => {}
            State::Reading => out.extend_from_slice(&self.buf),
            State::Skipping { reason, keep_tag } => {
                let tag = self.tag_len.filter(|_| keep_tag).and_then(|len| self.buf.get(..len));
                if let Some(tag) = tag {
                    replacement(tag, reason, out);
                }
            }
        }
        self.state = State::Idle;
        self.buf.clear();
    }

    /// The stream ended: a stanza within the limits is handed on as far as it came (the parser reports the
    /// truncation), one over them is dropped.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state == State::Reading {
            out.extend_from_slice(&self.buf);
        }
        self.state = State::Idle;
        self.buf.clear();
    }

    /// Goes over `reason`'s limit: reports, keeps only the start tag.
    fn over(&mut self, reason: LimitReason, found: &mut Vec<OverLimit>) {
        // Reading holds everything so far: the start tag is `buf`'s beginning, or all of it while incomplete.
        let tag = self.tag_len.unwrap_or(self.buf.len());
        let shown = tag.min(START_TAG_EXCERPT_LEN);
        found.push(OverLimit {
            reason,
            bytes: match reason {
                LimitReason::Depth => self.bytes,
                // The byte that went over is the next one.
                LimitReason::Size => self.bytes.saturating_add(1),
            },
            excerpt: self.buf[..shown].to_vec(),
            cut: tag > shown || self.tag_len.is_none(),
        });
        let keep_tag = tag <= MAX_KEPT_START_TAG;
        self.buf.truncate(if keep_tag { tag } else { 0 });
        self.state = State::Skipping { reason, keep_tag };
    }

    /// Counts bytes of a stanza over a limit, keeping those of its start tag while it is short enough.
    fn skip(&mut self, bytes: &[u8]) {
        self.bytes = self.bytes.saturating_add(bytes.len());
        if let State::Skipping { reason, keep_tag: true } = self.state {
            if self.tag_len.is_some() {
                return;
            }
            if self.buf.len() + bytes.len() <= MAX_KEPT_START_TAG {
                self.buf.extend_from_slice(bytes);
            } else {
                self.buf.clear();
                self.state = State::Skipping { reason, keep_tag: false };
            }
        }
    }
}

/// `<NAME …>` (a complete start tag as received), the marker, `</NAME>`. Nothing for a tag without a name: the
/// parser would refuse it, and there is nothing to answer.
fn replacement(tag: &[u8], reason: LimitReason, out: &mut Vec<u8>) {
    let Some(body) = tag.strip_prefix(b"<") else { return };
    let name_len = body.iter().position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'));
    let name = &body[..name_len.unwrap_or(body.len())];
    if name.is_empty() {
        return;
    }
    match tag.strip_suffix(b"/>") {
        // Self-closing (an unquoted `/` right before `>`; a quoted one is followed by its quote): now it has content.
        Some(head) => {
            out.extend_from_slice(head);
            out.push(b'>');
        }
        None => out.extend_from_slice(tag),
    }
    for part in ["<", LIMIT_ELEMENT, " xmlns='", LIMIT_NS, "' reason='", reason.as_str(), "'/></"] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(name);
    out.push(b'>');
}

#[cfg(test)]
mod tests;
