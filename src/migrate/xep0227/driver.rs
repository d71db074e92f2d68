//! The shell around the rewriter: which files make up the export, where each one's output goes, the report and
//! the progress display.
//!
//! - IN a file → OUT a file. Files it includes are rewritten to the same relative paths next to OUT.
//! - IN a directory (Prosody's `<user>@<host>.xml`, each a whole `<server-data/>`) → OUT a new directory with the
//!   same names. Every `<server-data/>` document is rewritten, with the files it includes; every other file is
//!   copied unchanged (an XEP-0227 `<host/>` or `<user/>` document that nothing includes is copied with a
//!   warning: its accounts were not looked at).
//! - Outputs appear only once complete, and nothing is ever overwritten, so OUT must not exist yet.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::convert::Converter;
use super::error::{Error, IncludeProblem};
use super::layout::{Staged, pie_root, resolve, walk};
use super::rewrite::{Document, Hooks, Include, rewrite};
use crate::image::ImageLimits;
use crate::migrate::progress::Progress;
use crate::migrate::report::{AccountReport, ReportWriter, Summary};
use crate::wire::xep0084::AccessModel;

/// A migration to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The export: a file, or a directory of files.
    pub input: PathBuf,
    /// Where the rewritten export goes (must not exist); `None` for a dry run, which writes no export.
    pub output: Option<PathBuf>,
    /// Where the JSON report goes, if anywhere.
    pub report: Option<PathBuf>,
    /// The access model of the avatar nodes created.
    pub access_model: AccessModel,
    /// Image budgets, as in the live gateway.
    pub limits: ImageLimits,
    /// Whether to draw a progress line on stdout.
    pub progress: bool,
}

/// Runs a migration; the summary is what the caller prints.
pub fn run(options: &Options) -> Result<Summary, Error> {
    let input = &options.input;
    let is_dir = fs::metadata(input).map_err(Error::io(input))?.is_dir();
    let root = if is_dir { input.clone() } else { parent(input) };
    if let Some(output) = options.output.as_deref().filter(|out| out.symlink_metadata().is_ok()) {
        return Err(Error::Exists(output.to_owned()));
    }
    let report = match &options.report {
        Some(path) => {
            let file = File::create(path).map_err(Error::io(path))?;
            Some((ReportWriter::new(BufWriter::new(file)).map_err(Error::io(path))?, path.clone()))
        }
        None => None,
    };
    let mut run = Run {
        converter: Converter::new(options.access_model, options.limits.clone()),
        canonical_root: root.canonicalize().map_err(Error::io(&root))?,
        root,
        out_root: None,
        chain: Vec::new(),
        report,
        summary: Summary::default(),
        progress: Progress::new(options.progress),
    };
    let output = options.output.as_deref();
    if is_dir { run.directory(output) } else { run.file(input, output) }?;
    run.progress.finish();
    if let Some((writer, path)) = run.report.take() {
        writer.finish(&run.summary).map_err(Error::io(path))?;
    }
    Ok(run.summary)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

struct Run {
    converter: Converter,
    /// The input's root directory; documents are named relative to it.
    root: PathBuf,
    canonical_root: PathBuf,
    /// Where relative outputs go; `None` in a dry run.
    out_root: Option<PathBuf>,
    /// The documents being rewritten, outermost first: relative and canonical paths (for cycles).
    chain: Vec<(PathBuf, PathBuf)>,
    report: Option<(ReportWriter<BufWriter<File>>, PathBuf)>,
    summary: Summary,
    progress: Progress,
}

impl Run {
    fn file(&mut self, input: &Path, output: Option<&Path>) -> Result<(), Error> {
        self.out_root = output.map(parent);
        self.progress.add_total(fs::metadata(input).map_err(Error::io(input))?.len());
        let name = PathBuf::from(input.file_name().unwrap_or(input.as_os_str()));
        self.document(&name, output.map(Path::to_owned), None)
    }

    fn directory(&mut self, output: Option<&Path>) -> Result<(), Error> {
        if let Some(output) = output {
            let canonical = parent(output).canonicalize().map_err(Error::io(parent(output)))?;
            if canonical.join(output.file_name().unwrap_or_default()).starts_with(&self.canonical_root) {
                return Err(Error::OutputInsideInput(output.to_owned()));
            }
            fs::create_dir(output).map_err(Error::io(output))?;
            self.out_root = Some(output.to_owned());
        }
        let root = self.root.clone();
        // Walking a directory only to size it is wasted when nothing is drawn.
        if self.progress.shown() {
            let mut total = 0;
            walk(&root, &mut |rel| {
                total += fs::metadata(root.join(rel)).map_err(Error::io(root.join(rel)))?.len();
                Ok(())
            })?;
            self.progress.known_total(total);
        }
        walk(&root, &mut |rel| {
            let dest = self.out_root.as_ref().map(|out| out.join(rel));
            // Already written: a document another one included.
            let written = dest.as_ref().is_some_and(|d| d.symlink_metadata().is_ok());
            if !written && is_xml(rel) && pie_root(&root.join(rel), &name(rel))?.as_deref() == Some("server-data") {
                self.document(rel, dest, None)?;
            }
            Ok(())
        })?;
        let Some(out_root) = self.out_root.clone() else { return Ok(()) };
        // What no document wrote: other files, and documents nothing included.
        walk(&root, &mut |rel| {
            let dest = out_root.join(rel);
            if dest.symlink_metadata().is_ok() {
                return Ok(());
            }
            if is_xml(rel) {
                if let Some(kind) = pie_root(&root.join(rel), &name(rel))? {
                    tracing::warn!(
                        "{}: a XEP-0227 <{kind}/> that no <server-data/> includes: copied unchanged",
                        name(rel)
                    );
                }
            }
            copy(&root.join(rel), &dest)
        })
    }

    /// Rewrites the document at `rel` into `dest` (discarded when `None`).
    fn document(&mut self, rel: &Path, dest: Option<PathBuf>, host: Option<&str>) -> Result<(), Error> {
        let src = self.root.join(rel);
        let canonical = src.canonicalize().map_err(Error::io(&src))?;
        let input = self.progress.reader(File::open(&src).map_err(Error::io(&src))?);
        let mut output = match dest {
            Some(dest) => Output::File(Staged::create(&dest)?),
            None => Output::Discard(io::sink()),
        };
        let file = name(rel);
        self.chain.push((rel.to_owned(), canonical));
        let result = rewrite(input, &mut output, Document { file: &file, host }, self);
        self.chain.pop();
        result?;
        match output {
            Output::File(staged) => staged.commit(),
            Output::Discard(_) => Ok(()),
        }
    }
}

impl Hooks for Run {
    fn converter(&mut self) -> &mut Converter {
        &mut self.converter
    }

    fn include(&mut self, include: &Include<'_>) -> Result<(), Error> {
        let fail = |problem| Error::Include {
            file: include.file.to_owned(),
            offset: include.offset,
            href: include.href.to_owned(),
            problem,
        };
        let including = self.chain.last().map(|(rel, _)| rel.clone()).unwrap_or_default();
        let rel = resolve(&including, include.href).map_err(fail)?;
        let src = self.root.join(&rel);
        let canonical = src.canonicalize().map_err(Error::io(&src))?;
        if !canonical.starts_with(&self.canonical_root) {
            return Err(fail(IncludeProblem::Escapes));
        }
        if self.chain.iter().any(|(_, open)| *open == canonical) {
            return Err(fail(IncludeProblem::Cycle));
        }
        self.progress.add_total(fs::metadata(&src).map_err(Error::io(&src))?.len());
        let dest = self.out_root.as_ref().map(|out| out.join(&rel));
        match dest {
            // Inside a <user/> the included part is only copied: that account is refused.
            Some(dest) if include.in_user => copy(&src, &dest),
            None if include.in_user => Ok(()),
            dest => self.document(&rel, dest, include.host),
        }
    }

    fn account(&mut self, report: AccountReport) -> Result<(), Error> {
        if let Some((writer, path)) = &mut self.report {
            writer.record(&report).map_err(Error::io(path.as_path()))?;
        }
        self.summary.add(&report);
        self.progress.account();
        Ok(())
    }
}

/// Where a rewritten document goes.
enum Output {
    File(Staged),
    Discard(io::Sink),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(file) => file.write(buf),
            Self::Discard(sink) => sink.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::File(file) => file.flush(),
            Self::Discard(sink) => sink.flush(),
        }
    }
}

fn copy(src: &Path, dest: &Path) -> Result<(), Error> {
    let mut staged = Staged::create(dest)?;
    io::copy(&mut File::open(src).map_err(Error::io(src))?, &mut staged).map_err(Error::io(dest))?;
    staged.commit()
}

fn is_xml(rel: &Path) -> bool {
    rel.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("xml"))
}

/// A relative path as reports and errors show it.
fn name(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}
