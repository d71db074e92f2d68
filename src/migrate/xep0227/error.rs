//! Why a XEP-0227 migration stopped. Each error names the file (relative to the export's root) and, for problems
//! in the XML, the byte offset where they were found. Problems with one account's avatar are not errors: they are
//! reported as `refused` and the account is copied unchanged.

use std::io;
use std::path::PathBuf;

/// A migration that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The XML is not well-formed (or not namespace-well-formed).
    #[error("{file}: malformed XML at byte {offset}: {source}")]
    Xml {
        /// The file.
        file: String,
        /// Where the reader stopped.
        offset: u64,
        /// What the XML reader said.
        #[source]
        source: quick_xml::Error,
    },
    /// An element whose namespace prefix is not declared (not namespace-well-formed; importers refuse it).
    #[error("{file}: malformed XML at byte {offset}: the namespace prefix `{prefix}` is not declared")]
    UndeclaredPrefix {
        /// The file.
        file: String,
        /// Where the element starts.
        offset: u64,
        /// The prefix.
        prefix: String,
    },
    /// The file ended before its root element was closed.
    #[error("{file}: the file ends at byte {offset} before its root element is closed (truncated?)")]
    Truncated {
        /// The file.
        file: String,
        /// The file's length.
        offset: u64,
    },
    /// The structure is not a XEP-0227 export.
    #[error("{file}: byte {offset}: {problem}")]
    NotAnExport {
        /// The file.
        file: String,
        /// Where.
        offset: u64,
        /// What is wrong, in words.
        problem: String,
    },
    /// An `<xi:include/>` that cannot be followed.
    #[error("{file}: byte {offset}: <xi:include href='{href}'/>: {problem}")]
    Include {
        /// The including file.
        file: String,
        /// Where the include is.
        offset: u64,
        /// The href as written.
        href: String,
        /// Why it cannot be followed.
        problem: IncludeProblem,
    },
    /// An output file or directory is already there: the migration never overwrites.
    #[error("{0} already exists; the migration writes a new export and never overwrites (was it included twice?)")]
    Exists(PathBuf),
    /// The output directory is inside the input directory, where the migration would read its own output.
    #[error("the output {0} is inside the input directory")]
    OutputInsideInput(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Writing the rewritten document failed.
    #[error("{file}: writing the output: {source}")]
    Write {
        /// The file being rewritten.
        file: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Why an `<xi:include/>` is not followed (XEP-0227 requires only relative hrefs without `parse`/`xpointer`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncludeProblem {
    /// No `href`.
    #[error("no href")]
    NoHref,
    /// An absolute path or a URL.
    #[error("not a relative path")]
    NotRelative,
    /// A relative path that leads out of the export's directory.
    #[error("leads outside the export's directory")]
    Escapes,
    /// The file includes itself, directly or not.
    #[error("include cycle")]
    Cycle,
    /// `parse='text'` or an `xpointer`, which XEP-0227 importers need not support.
    #[error("unsupported {0}")]
    Unsupported(&'static str),
}

impl Error {
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
