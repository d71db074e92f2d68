//! Drops character data between top-level stanzas before the XML parser sees it.
//!
//! Why: Prosody's mod_privilege (prosody-modules hg 2023-02-23, `mod_privilege.lua` lines 547–548 and 602–603)
//! refuses a privileged IQ with `session.send(session.send(st.error_reply(…)))`: when the host granted no IQ
//! permission at all, or not this namespace and type. The inner send writes the error; a component session's `send`
//! returns the connection's `write()` result, the byte count, which the outer send writes as text: `…</iq>273`.
//! Character data at stream level is fatal to tokio-xmpp's parser, and a reconnect drops every outstanding
//! exchange, so the link filters it out instead.
//!
//! The filter is a byte-level lexer that knows just enough XML to track the element depth across arbitrary chunk
//! boundaries: tags (with quoted attribute values, which may hold `>` or `/>`), end tags, self-closing tags,
//! processing instructions (the `<?xml …?>` declaration), comments, CDATA sections and declarations. Depth 1 is
//! "inside `<stream:stream>`, between stanzas"; non-whitespace character data there (including character
//! references and CDATA sections) is dropped and reported. Whitespace passes (keepalives), and everything else passes
//! unchanged, well-formed or not: the parser stays the judge of the rest.
//!
//! The same lexer is the only place that knows the depth before anything is parsed, so it also enforces the
//! [`StanzaLimits`]: each top-level stanza is held until it ends, and one too deep or too long is replaced by a
//! marker stanza (see [`super::limits`]). The stream header itself is never held.

use super::limits::{OverLimit, Stanza, StanzaLimits};

/// How many dropped bytes a report keeps for the log.
pub const EXCERPT_LEN: usize = 32;

/// What [`StrayTextFilter::feed`] dropped from one chunk: stray text, and stanzas found over a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Separate stretches of stray text (one ends at the next markup or with the chunk).
    pub runs: usize,
    /// Bytes of stray text dropped.
    pub bytes: usize,
    excerpt: Vec<u8>,
    /// Stanzas found over a limit in this chunk, each reported once (their bytes are not in `bytes`).
    pub over_limit: Vec<OverLimit>,
}

impl Dropped {
    /// The first [`EXCERPT_LEN`] bytes dropped, raw.
    pub fn excerpt(&self) -> &[u8] {
        &self.excerpt
    }

    /// The excerpt as printable text (control characters and invalid UTF-8 escaped), `…` when cut short.
    pub fn excerpt_escaped(&self) -> String {
        let mut text: String = String::from_utf8_lossy(&self.excerpt).escape_debug().collect();
        if self.bytes > self.excerpt.len() {
            text.push('…');
        }
        text
    }

    fn drop_byte(&mut self, b: u8, starts_run: bool) {
        self.runs += usize::from(starts_run);
        self.bytes += 1;
        if self.excerpt.len() < EXCERPT_LEN {
            self.excerpt.push(b);
        }
    }
}

/// Where the lexer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data, or the prolog before the stream header.
    Text,
    /// After `<`: the next byte says what follows.
    Open,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// After `<!` and the first `matched` bytes of `[CDATA[`.
    BangCdata { matched: usize },
    /// Inside a start tag; `slash`: the last byte was a `/` outside quotes (so `>` closes an empty element).
    StartTag { slash: bool },
    /// Inside a quoted attribute value of a start tag.
    Quoted { quote: u8 },
    /// Inside an end tag.
    EndTag,
    /// Inside `<?…?>`; `question`: the last byte was `?`.
    Pi { question: bool },
    /// Inside `<!--…-->`; `dashes`: trailing `-` seen (at most 2).
    Comment { dashes: u8 },
    /// Inside `<![CDATA[…]]>`; `brackets`: trailing `]` seen (at most 2); `drop`: it sits between stanzas.
    Cdata { brackets: u8, drop: bool },
    /// Inside another `<!…>` (DOCTYPE: not allowed in XMPP, but never a reason to lose track).
    Decl,
}

const CDATA_OPEN: &[u8] = b"[CDATA[";

/// The sans-IO filter: feed it the incoming stream in chunks of any size, read back what the parser may see.
#[derive(Debug, Clone)]
pub struct StrayTextFilter {
    lex: Lex,
    /// Open elements: 0 before the stream header, 1 between stanzas.
    depth: usize,
    /// The start of markup opened between stanzas, held until it is known not to be a CDATA section (at most
    /// `<![CDATA` — 8 bytes — ever waits here).
    held: Vec<u8>,
    holding: bool,
    /// Dropping began since the last markup in this chunk: a further drop continues the run (whitespace between
    /// stray bytes passes without ending it).
    in_run: bool,
    /// The top-level stanza being read: where every passed byte goes.
    stanza: Stanza,
    total_runs: u64,
    total_bytes: u64,
    total_over_limit: u64,
}

impl Default for StrayTextFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl StrayTextFilter {
    /// A filter at the start of a stream, with the default [`StanzaLimits`].
    pub fn new() -> Self {
        Self::with_limits(StanzaLimits::DEFAULT)
    }

    /// A filter at the start of a stream, holding each stanza to `limits` (a depth of 0 counts as 1).
    pub fn with_limits(limits: StanzaLimits) -> Self {
        Self {
            lex: Lex::Text,
            depth: 0,
            held: Vec::with_capacity(CDATA_OPEN.len() + 2),
            holding: false,
            in_run: false,
            stanza: Stanza::new(limits),
            total_runs: 0,
            total_bytes: 0,
            total_over_limit: 0,
        }
    }

    /// Appends to `out` every byte of `input` the parser may see, and says what was dropped, if anything.
    ///
    /// Up to 8 bytes of markup opened between stanzas may be held back until the next chunk says what they start,
    /// and a stanza is held until its end tag (or, over a limit, replaced then).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<Dropped> {
        let mut dropped = Dropped::default();
        // A run cut by the chunk boundary is reported with each chunk, so no report waits for the next stanza.
        self.in_run = false;
        let mut rest = input;
        while !rest.is_empty() {
            let skip = self.pass_through(rest);
            self.stanza.put_slice(&rest[..skip], out, &mut dropped.over_limit);
            rest = &rest[skip..];
            if let Some((&b, tail)) = rest.split_first() {
                self.step(b, out, &mut dropped);
                rest = tail;
            }
        }
        self.total_runs += dropped.runs as u64;
        self.total_bytes += dropped.bytes as u64;
        self.total_over_limit += dropped.over_limit.len() as u64;
        (dropped.bytes > 0 || !dropped.over_limit.is_empty()).then_some(dropped)
    }

    /// The stream ended: releases held bytes and a stanza within the limits as far as it came (the parser will
    /// report the truncation itself).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        // Markup is held only between stanzas, so it never sits beside a stanza's bytes.
        out.append(&mut self.held);
        self.holding = false;
        self.stanza.finish(out);
    }

    /// The limits each stanza is held to.
    pub fn limits(&self) -> StanzaLimits {
        self.stanza.limits()
    }

    /// Current element depth (1 = between stanzas).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Runs of stray text dropped since the stream opened.
    pub fn total_runs(&self) -> u64 {
        self.total_runs
    }

    /// Bytes of stray text dropped since the stream opened.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Stanzas found over a limit since the stream opened.
    pub fn total_over_limit(&self) -> u64 {
        self.total_over_limit
    }

    /// How many leading bytes of `rest` pass unchanged without changing state: the fast path through stanza text
    /// and attribute values, which is where the bytes (base64 avatars) are.
    fn pass_through(&self, rest: &[u8]) -> usize {
        let until = |stop: u8| rest.iter().position(|&b| b == stop).unwrap_or(rest.len());
        match self.lex {
            Lex::Text if self.depth != 1 => until(b'<'),
            Lex::Quoted { quote } => until(quote),
            _ => 0,
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>, dropped: &mut Dropped) {
        self.lex = match self.lex {
            Lex::Text => return self.text(b, out, dropped),
            Lex::Open => match b {
                b'!' => {
                    self.emit(b, out, dropped);
                    Lex::Bang
                }
                b'/' | b'?' => {
                    self.release(out, dropped);
                    self.put(b, out, dropped);
                    if b == b'/' { Lex::EndTag } else { Lex::Pi { question: false } }
                }
                _ => {
                    if self.depth == 1 {
                        // A start tag between stanzas: a stanza begins with the held `<`.
                        self.stanza.begin();
                    }
                    self.release(out, dropped);
                    self.lex = Lex::StartTag { slash: false };
                    return self.step(b, out, dropped);
                }
            },
            Lex::Bang => match b {
                b'-' => {
                    self.emit(b, out, dropped);
                    Lex::BangDash
                }
                b'[' => {
                    self.emit(b, out, dropped);
                    Lex::BangCdata { matched: 1 }
                }
                _ => return self.declaration(b, out, dropped),
            },
            Lex::BangDash if b == b'-' => {
                self.release(out, dropped);
                self.put(b, out, dropped);
                Lex::Comment { dashes: 0 }
            }
            Lex::BangCdata { matched } if CDATA_OPEN.get(matched) == Some(&b) => {
                self.emit(b, out, dropped);
                if matched + 1 < CDATA_OPEN.len() {
                    Lex::BangCdata { matched: matched + 1 }
                } else if self.holding {
                    // A CDATA section between stanzas is character data too.
                    for &h in &std::mem::take(&mut self.held) {
                        dropped.drop_byte(h, !std::mem::replace(&mut self.in_run, true));
                    }
                    self.holding = false;
                    Lex::Cdata { brackets: 0, drop: true }
                } else {
                    Lex::Cdata { brackets: 0, drop: false }
                }
            }
            Lex::BangDash | Lex::BangCdata { .. } => return self.declaration(b, out, dropped),
            Lex::StartTag { .. } => {
                self.put(b, out, dropped);
                match b {
                    b'\'' | b'"' => Lex::Quoted { quote: b },
                    b'/' => Lex::StartTag { slash: true },
                    b'>' => {
                        let empty = matches!(self.lex, Lex::StartTag { slash: true });
                        // Depth 1 opens a stanza (level 1), deeper ones nest in it; 0 is the stream header.
                        self.stanza.start_tag_closed(self.depth, empty, out, &mut dropped.over_limit);
                        if !empty {
                            self.depth = self.depth.saturating_add(1);
                        }
                        Lex::Text
                    }
                    _ => Lex::StartTag { slash: false },
                }
            }
            Lex::Quoted { quote } => {
                self.put(b, out, dropped);
                if b == quote { Lex::StartTag { slash: false } } else { self.lex }
            }
            Lex::EndTag => {
                self.put(b, out, dropped);
                if b == b'>' {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 1 {
                        self.stanza.end(out);
                    }
                    Lex::Text
                } else {
                    Lex::EndTag
                }
            }
            Lex::Pi { question } => {
                self.put(b, out, dropped);
                match b {
                    b'>' if question => Lex::Text,
                    _ => Lex::Pi { question: b == b'?' },
                }
            }
            Lex::Comment { dashes } => {
                self.put(b, out, dropped);
                match b {
                    b'>' if dashes >= 2 => Lex::Text,
                    b'-' => Lex::Comment { dashes: (dashes + 1).min(2) },
                    _ => Lex::Comment { dashes: 0 },
                }
            }
            Lex::Cdata { brackets, drop } => {
                if drop {
                    dropped.drop_byte(b, !std::mem::replace(&mut self.in_run, true));
                } else {
                    self.put(b, out, dropped);
                }
                match b {
                    b'>' if brackets >= 2 => Lex::Text,
                    b']' => Lex::Cdata { brackets: (brackets + 1).min(2), drop },
                    _ => Lex::Cdata { brackets: 0, drop },
                }
            }
            Lex::Decl => {
                self.put(b, out, dropped);
                if b == b'>' { Lex::Text } else { Lex::Decl }
            }
        };
    }

    /// A byte of character data.
    fn text(&mut self, b: u8, out: &mut Vec<u8>, dropped: &mut Dropped) {
        if b == b'<' {
            self.in_run = false;
            self.holding = self.depth == 1;
            self.emit(b, out, dropped);
            self.lex = Lex::Open;
        } else if self.depth == 1 && !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            dropped.drop_byte(b, !std::mem::replace(&mut self.in_run, true));
        } else {
            self.put(b, out, dropped);
        }
    }

    /// `<!` turned out to be neither a comment nor CDATA: pass it on and read to the next `>`.
    fn declaration(&mut self, b: u8, out: &mut Vec<u8>, dropped: &mut Dropped) {
        self.release(out, dropped);
        self.lex = Lex::Decl;
        self.step(b, out, dropped);
    }

    /// A markup byte: held while its kind is unknown between stanzas, passed otherwise.
    fn emit(&mut self, b: u8, out: &mut Vec<u8>, dropped: &mut Dropped) {
        if self.holding {
            self.held.push(b);
        } else {
            self.put(b, out, dropped);
        }
    }

    fn release(&mut self, out: &mut Vec<u8>, dropped: &mut Dropped) {
        self.stanza.put_slice(&self.held, out, &mut dropped.over_limit);
        self.held.clear();
        self.holding = false;
    }

    /// A byte that passes: on to `out` between stanzas, into the stanza being read otherwise.
    fn put(&mut self, b: u8, out: &mut Vec<u8>, dropped: &mut Dropped) {
        self.stanza.put(b, out, &mut dropped.over_limit);
    }
}

#[cfg(test)]
mod tests;
