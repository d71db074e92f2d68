//! A one-line progress display, redrawn in place at most five times a second, and only when asked to (stdout is a
//! terminal): bytes read of the total for an export, accounts done of the total for a live sweep; both with the
//! accounts per second.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

const REDRAW: Duration = Duration::from_millis(200);
const MB: f64 = 1e6;

/// Progress of a run. Bytes are counted by the [`Counting`] readers it hands out.
pub(crate) struct Progress {
    shown: bool,
    total: u64,
    /// Set when the total was measured up front: files found later are already in it.
    total_known: bool,
    read: Rc<Cell<u64>>,
    accounts: u64,
    /// Accounts to do, when known up front (a live sweep); the line then counts accounts, not bytes.
    accounts_total: u64,
    started: Instant,
    /// When the line was last drawn (the start, before the first draw).
    drawn_at: Instant,
    drawn: bool,
}

impl Progress {
    pub(crate) fn new(shown: bool) -> Self {
        let now = Instant::now();
        Self {
            shown,
            total: 0,
            total_known: false,
            read: Rc::default(),
            accounts: 0,
            accounts_total: 0,
            started: now,
            drawn_at: now,
            drawn: false,
        }
    }

    /// Progress over a known number of accounts.
    pub(crate) fn of_accounts(shown: bool, total: u64) -> Self {
        Self { accounts_total: total, ..Self::new(shown) }
    }

    /// Whether anything is drawn.
    pub(crate) fn shown(&self) -> bool {
        self.shown
    }

    /// Counts the bytes read from `inner`.
    pub(crate) fn reader<R: Read>(&self, inner: R) -> Counting<R> {
        Counting { inner, read: Rc::clone(&self.read) }
    }

    /// More input to read (an included file), unless the total was known up front.
    pub(crate) fn add_total(&mut self, bytes: u64) {
        if !self.total_known {
            self.total += bytes;
        }
    }

    /// The whole input's size, measured up front.
    pub(crate) fn known_total(&mut self, bytes: u64) {
        (self.total, self.total_known) = (bytes, true);
    }

    /// One more account done; redraws when due.
    pub(crate) fn account(&mut self) {
        self.accounts += 1;
        let now = Instant::now();
        if self.shown && now.duration_since(self.drawn_at) >= REDRAW {
            (self.drawn_at, self.drawn) = (now, true);
            let rate = self.accounts as f64 / now.duration_since(self.started).as_secs_f64();
            let (done, total, unit) = match self.accounts_total {
                0 => (self.read.get() as f64 / MB, self.total as f64 / MB, "MB"),
                n => (self.accounts as f64, n as f64, "accounts"),
            };
            let percent = if total > 0.0 { 100.0 * done / total } else { 0.0 };
            // Cosmetic: a failed write to the terminal must not stop the migration.
            let mut out = io::stdout().lock();
            let _ = write!(
                out,
                "\r{done:>9.1} / {total:.1} {unit} ({percent:>3.0}%)  {} accounts  {rate:.0} accounts/s\x1b[K",
                self.accounts
            );
            let _ = out.flush();
        }
    }

    /// Clears the line before the summary is printed.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut out = io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
        }
    }
}

/// A reader that adds what it reads to its [`Progress`].
pub(crate) struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}
