//! The streaming core: reads one XEP-0227 document and writes it back byte for byte, buffering one `<user/>` at a
//! time and inserting the avatar nodes the converter asks for. No file system here: includes and reports go to the
//! caller's [`Hooks`].

use std::io::{self, Read, Write};

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::convert::Converter;
use super::error::{Error, IncludeProblem};
use super::tee::Tee;
use super::user::{Spot, UserScan, attr};
use crate::migrate::report::{AccountReport, Outcome, Why};

/// XEP-0227's namespace.
pub const PIE: &str = "urn:xmpp:pie:0";
/// The namespace of XEP-0227 before 1.0, still written by ejabberd's `export_piefxis` and accepted by importers.
pub const PIE_OLD: &str = "http://www.xmpp.org/extensions/xep-0227.html#ns";
/// XInclude 1.0, which XEP-0227 allows for splitting an export into files.
pub const XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

/// What the rewriter needs from around it.
pub trait Hooks {
    /// The converter that decides each user; one per run, so its image cache spans every document.
    fn converter(&mut self) -> &mut Converter;
    /// An `<xi:include/>` was met (its `parse`/`xpointer` already checked): process or copy the included file.
    fn include(&mut self, include: &Include<'_>) -> Result<(), Error>;
    /// An account is done and its bytes written.
    fn account(&mut self, report: AccountReport) -> Result<(), Error>;
}

/// An `<xi:include/>` met in a document.
#[derive(Debug)]
pub struct Include<'a> {
    /// The href, unescaped.
    pub href: &'a str,
    /// The host in scope: an included `<user/>` document belongs to it.
    pub host: Option<&'a str>,
    /// Whether it is inside a `<user/>` (that user is then refused, and the file only copied).
    pub in_user: bool,
    /// The including document's name.
    pub file: &'a str,
    /// Where the include starts in it.
    pub offset: u64,
}

/// The document being rewritten.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// Its name in reports and errors (the path relative to the export's root).
    pub file: &'a str,
    /// The host of an included document, for `<user/>` elements outside any `<host/>`.
    pub host: Option<&'a str>,
}

/// Rewrites `input` into `output`. Everything but the inserted avatar nodes is copied byte for byte; memory holds
/// one `<user/>` at a time.
pub fn rewrite<R: Read, W: Write, H: Hooks>(
    input: R,
    output: W,
    document: Document<'_>,
    hooks: &mut H,
) -> Result<(), Error> {
    let mut reader = NsReader::from_reader(Tee::new(input));
    let (mut buf, mut raw) = (Vec::new(), Vec::new());
    let mut pass = Pass {
        out: output,
        hooks,
        document,
        frames: Vec::new(),
        in_user: false,
        root_done: false,
        user: UserScan::default(),
    };
    loop {
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|source| Error::Xml {
            file: document.file.to_owned(),
            offset: reader.error_position(),
            source,
        })?;
        reader.get_mut().take(&mut raw);
        let offset = reader.buffer_position().saturating_sub(raw.len() as u64);
        let ns = match &event {
            Event::Start(start) | Event::Empty(start) => match reader.resolver().resolve_element(start.name()).0 {
                ResolveResult::Bound(ns) => Some(ns.0),
                ResolveResult::Unbound => None,
                ResolveResult::Unknown(prefix) => {
                    return Err(Error::UndeclaredPrefix { file: document.file.to_owned(), offset, prefix });
                }
            },
            Event::Eof => return pass.eof(offset),
            _ => None,
        };
        pass.event(ns, &event, &raw, offset)?;
    }
}

/// What a start tag outside any user is.
enum Kind {
    Host(String),
    User,
    Other,
}

struct Pass<'h, W, H> {
    out: W,
    hooks: &'h mut H,
    document: Document<'h>,
    /// Open elements outside users: the host's JID for `<host/>`, `None` for others.
    frames: Vec<Option<String>>,
    in_user: bool,
    root_done: bool,
    user: UserScan,
}

impl<W: Write, H: Hooks> Pass<'_, W, H> {
    fn event(&mut self, ns: Option<&str>, event: &Event, raw: &[u8], offset: u64) -> Result<(), Error> {
        if self.in_user {
            if let Event::Start(start) | Event::Empty(start) = event
                && is_include(ns, start)
            {
                self.user.includes = true;
                self.include(start, true, offset)?;
            }
            if self.user.feed(ns, event, raw) {
                self.finish_user()?;
            }
            return Ok(());
        }
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let empty = matches!(event, Event::Empty(_));
                match self.kind(ns, start, offset)? {
                    Kind::User => {
                        self.user.begin(start, raw);
                        self.in_user = true;
                        // A self-closing user has no children, hence nothing to convert: report and copy it.
                        return if empty { self.finish_user() } else { Ok(()) };
                    }
                    _ if empty => self.root_done |= self.frames.is_empty(),
                    Kind::Host(jid) => self.frames.push(Some(jid)),
                    Kind::Other => self.frames.push(None),
                }
            }
            Event::End(_) => {
                self.frames.pop();
                self.root_done |= self.frames.is_empty();
            }
            _ => {}
        }
        self.write(raw)
    }

    /// Classifies a start tag outside users, checking the root and following includes.
    fn kind(&mut self, ns: Option<&str>, start: &BytesStart, offset: u64) -> Result<Kind, Error> {
        let pie = matches!(ns, Some(PIE | PIE_OLD));
        let name = start.local_name();
        if self.frames.is_empty() {
            let problem = if self.root_done {
                Some("a second root element".to_owned())
            } else if !(pie && matches!(name.as_ref(), "server-data" | "host" | "user")) {
                Some(format!(
                    "the root element is <{} xmlns='{}'>, not XEP-0227's <server-data/>, <host/> or <user/> in {PIE}",
                    start.name().as_ref(),
                    ns.unwrap_or("")
                ))
            } else if name.as_ref() == "user" && self.document.host.is_none() {
                Some("a <user/> document has no host: give the file that includes it".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(self.not_an_export(offset, problem));
            }
        }
        if is_include(ns, start) {
            self.include(start, false, offset)?;
            return Ok(Kind::Other);
        }
        Ok(match (pie, name.as_ref()) {
            (true, "host") => match attr(start, "jid") {
                Some(jid) => Kind::Host(jid),
                None => return Err(self.not_an_export(offset, "<host/> without a jid".to_owned())),
            },
            (true, "user") if self.frames.last().is_none_or(Option::is_some) => Kind::User,
            _ => Kind::Other,
        })
    }

    fn include(&mut self, start: &BytesStart, in_user: bool, offset: u64) -> Result<(), Error> {
        let href = attr(start, "href");
        let problem = match (&href, attr(start, "parse").as_deref(), attr(start, "xpointer")) {
            (None, ..) => Some(IncludeProblem::NoHref),
            (_, _, Some(_)) => Some(IncludeProblem::Unsupported("xpointer")),
            (_, Some(parse), _) if parse != "xml" => Some(IncludeProblem::Unsupported("parse (only 'xml' is)")),
            _ => None,
        };
        let file = self.document.file;
        match (href, problem) {
            (Some(href), None) => {
                let host = self.frames.iter().rev().find_map(Option::as_deref).or(self.document.host);
                self.hooks.include(&Include { href: &href, host, in_user, file, offset })
            }
            (href, problem) => Err(Error::Include {
                file: file.to_owned(),
                offset,
                href: href.unwrap_or_default(),
                problem: problem.unwrap_or(IncludeProblem::NoHref),
            }),
        }
    }

    /// `</user>` was read (or the user was self-closing): decide, write, report.
    fn finish_user(&mut self) -> Result<(), Error> {
        self.in_user = false;
        self.root_done |= self.frames.is_empty();
        let host = self.frames.iter().rev().find_map(Option::as_deref).or(self.document.host).unwrap_or_default();
        let name = self.user.name.clone();
        let (account, outcome, insertions) = match name {
            Some(name) => {
                let decision = self.hooks.converter().decide(&mut self.user, self.document.file);
                (format!("{name}@{host}"), decision.outcome, decision.insertions)
            }
            None => {
                let reason = "the <user/> has no name attribute".to_owned();
                (format!("@{host}"), Outcome::Refused { why: Why::NoName, reason }, Vec::new())
            }
        };
        splice(&self.user.buf, insertions, &mut self.out)
            .map_err(|source| Error::Write { file: self.document.file.to_owned(), source })?;
        self.hooks.account(AccountReport { account, outcome })
    }

    fn eof(mut self, offset: u64) -> Result<(), Error> {
        if self.in_user || !self.frames.is_empty() {
            return Err(Error::Truncated { file: self.document.file.to_owned(), offset });
        }
        if !self.root_done {
            return Err(self.not_an_export(offset, "no root element".to_owned()));
        }
        self.out.flush().map_err(|source| Error::Write { file: self.document.file.to_owned(), source })
    }

    fn write(&mut self, raw: &[u8]) -> Result<(), Error> {
        self.out.write_all(raw).map_err(|source| Error::Write { file: self.document.file.to_owned(), source })
    }

    fn not_an_export(&self, offset: u64, problem: String) -> Error {
        Error::NotAnExport { file: self.document.file.to_owned(), offset, problem }
    }
}

fn is_include(ns: Option<&str>, start: &BytesStart) -> bool {
    ns == Some(XINCLUDE) && start.local_name().as_ref() == "include"
}

/// Writes `buf` with each text inserted at its spot.
fn splice(buf: &[u8], mut insertions: Vec<(Spot, String)>, out: &mut impl Write) -> io::Result<()> {
    insertions.sort_by_key(|(spot, _)| spot.offset());
    let mut from = 0;
    for (spot, text) in &insertions {
        let at = spot.offset();
        out.write_all(buf.get(from..at).ok_or_else(|| io::Error::other("insertion spots out of order"))?)?;
        match spot {
            Spot::Before(_) => {
                out.write_all(text.as_bytes())?;
                from = at;
            }
            Spot::Open { close, .. } => {
                // `<pubsub …/>` becomes `<pubsub …>` + text + `</pubsub>`.
                out.write_all(b">")?;
                out.write_all(text.as_bytes())?;
                out.write_all(close.as_bytes())?;
                from = at + 2;
            }
        }
    }
    out.write_all(buf.get(from..).unwrap_or_default())
}
