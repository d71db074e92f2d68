//! The file system side of an export: include paths, the files of a directory, what a document's root is, and
//! output files that appear only once complete and never replace anything.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::error::{Error, IncludeProblem};
use super::rewrite::{PIE, PIE_OLD};

/// Resolves an include's href against the directory of the including document (both relative to the export's
/// root), lexically: an absolute path or URL, or `..` above the root, is refused. XEP-0227 requires only
/// relative hrefs; ejabberd writes bare file names.
pub(super) fn resolve(including: &Path, href: &str) -> Result<PathBuf, IncludeProblem> {
    let scheme = href.split('/').next().is_some_and(|first| first.contains(':'));
    if href.is_empty() || href.starts_with('/') || scheme || href.contains(['?', '#']) {
        return Err(IncludeProblem::NotRelative);
    }
    // `including` is a path this module resolved: only normal components.
    let mut path: Vec<&std::ffi::OsStr> = match including.parent() {
        Some(dir) => dir.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| c.as_os_str()).collect(),
        None => Vec::new(),
    };
    for segment in href.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                path.pop().ok_or(IncludeProblem::Escapes)?;
            }
            name => path.push(name.as_ref()),
        }
    }
    if path.is_empty() {
        return Err(IncludeProblem::NotRelative);
    }
    Ok(path.iter().collect())
}

/// Every file under `root`, as paths relative to it, directories depth first, names sorted (one directory's
/// names are held at a time).
pub(super) fn walk(root: &Path, each: &mut dyn FnMut(&Path) -> Result<(), Error>) -> Result<(), Error> {
    walk_in(root, Path::new(""), each)
}

fn walk_in(root: &Path, rel: &Path, each: &mut dyn FnMut(&Path) -> Result<(), Error>) -> Result<(), Error> {
    let dir = root.join(rel);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
        names.push(entry.map_err(Error::io(&dir))?.file_name());
    }
    names.sort();
    for name in names {
        let rel = rel.join(name);
        let path = root.join(&rel);
        if fs::metadata(&path).map_err(Error::io(&path))?.is_dir() {
            walk_in(root, &rel, each)?;
        } else {
            each(&rel)?;
        }
    }
    Ok(())
}

/// The local name of a document's root element when it is in a XEP-0227 namespace (`server-data`, `host`,
/// `user`); `None` for any other root. Reads only up to the root's start tag.
pub(super) fn pie_root(path: &Path, name: &str) -> Result<Option<String>, Error> {
    let file = File::open(path).map_err(Error::io(path))?;
    let mut reader = NsReader::from_reader(io::BufReader::new(file));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|source| Error::Xml {
            file: name.to_owned(),
            offset: reader.error_position(),
            source,
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) => {
                let pie = matches!(reader.resolver().resolve_element(start.name()).0,
                    ResolveResult::Bound(ns) if matches!(ns.0, PIE | PIE_OLD));
                return Ok(pie.then(|| start.local_name().as_ref().to_owned()));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// An output file written under a temporary name and renamed into place by [`Staged::commit`]; dropped
/// uncommitted (an error midway), the temporary file is removed. An existing destination is never replaced.
pub(super) struct Staged {
    dest: PathBuf,
    partial: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Staged {
    pub(super) fn create(dest: &Path) -> Result<Self, Error> {
        if dest.symlink_metadata().is_ok() {
            return Err(Error::Exists(dest.to_owned()));
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create_new(&partial).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => Error::Exists(partial.clone()),
            _ => Error::Io { path: partial.clone(), source },
        })?;
        Ok(Self { dest: dest.to_owned(), partial, file: Some(BufWriter::new(file)) })
    }

    /// Flushes and renames into place.
    pub(super) fn commit(mut self) -> Result<(), Error> {
        if let Some(file) = self.file.take() {
            file.into_inner().map_err(|e| Error::Io { path: self.partial.clone(), source: e.into_error() })?;
        }
        if self.dest.symlink_metadata().is_ok() {
            return Err(Error::Exists(self.dest.clone()));
        }
        fs::rename(&self.partial, &self.dest).map_err(Error::io(&self.dest))
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or_else(|| io::Error::other("already committed"))?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Best effort: an error is already on its way up, and a stray `.partial` file is harmless.
            let _ = fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_hrefs_and_refuses_the_rest() {
        let main = Path::new("main.xml");
        let host = Path::new("example.org/hosts.xml");
        assert_eq!(resolve(main, "example.org.xml"), Ok(PathBuf::from("example.org.xml")));
        assert_eq!(resolve(main, "./example.org/alice.xml"), Ok(PathBuf::from("example.org/alice.xml")));
        assert_eq!(resolve(host, "../other.xml"), Ok(PathBuf::from("other.xml")));
        assert_eq!(resolve(host, "alice.xml"), Ok(PathBuf::from("example.org/alice.xml")));
        assert_eq!(resolve(main, "../etc/passwd"), Err(IncludeProblem::Escapes));
        assert_eq!(resolve(host, "../../x.xml"), Err(IncludeProblem::Escapes));
        for absolute in ["/etc/passwd", "file:///etc/passwd", "http://example.org/a.xml", "a.xml#x", "", "."] {
            assert_eq!(resolve(main, absolute), Err(IncludeProblem::NotRelative), "{absolute}");
        }
    }
}
