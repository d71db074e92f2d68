//! The socket as the XML parser sees it: reads pass through [`StrayTextFilter`], writes pass straight through.
//!
//! This is the shell around the sans-IO filter: it reads the clock to rate-limit the over-limit log lines.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::warn;

use super::limits::{LIMIT_ELEMENT, MAX_KEPT_START_TAG, OverLimit, StanzaLimits};
use super::stray_text::{Dropped, StrayTextFilter};

/// How much is read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// An I/O object whose incoming bytes lose the stray text between stanzas (see [`super::stray_text`]) and whose
/// stanzas over the [`StanzaLimits`] come out replaced (see [`super::limits`]).
#[derive(Debug)]
pub struct StrayTextGuard<S> {
    inner: S,
    filter: StrayTextFilter,
    over_limit_log: RateLimit,
    /// Filtered bytes not yet handed to the reader, from `ready[pos..]`.
    ready: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
    eof: bool,
}

impl<S> StrayTextGuard<S> {
    /// Wraps `inner` at the start of a stream, holding each incoming stanza to `limits`.
    pub fn new(inner: S, limits: StanzaLimits) -> Self {
        Self {
            inner,
            filter: StrayTextFilter::with_limits(limits),
            over_limit_log: RateLimit::default(),
            ready: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
        }
    }

    /// Stray text dropped so far on this stream: (runs, bytes).
    pub fn dropped(&self) -> (u64, u64) {
        (self.filter.total_runs(), self.filter.total_bytes())
    }

    /// Stanzas replaced for going over a limit so far on this stream.
    pub fn over_limit(&self) -> u64 {
        self.filter.total_over_limit()
    }

    fn report(&mut self, dropped: &Dropped) {
        if dropped.bytes > 0 {
            // An excerpt, never the buffer: the server's bug is worth a line, not a flood.
            warn!(
                bytes = dropped.bytes,
                runs = dropped.runs,
                total = self.filter.total_runs(),
                "dropped stray text between stanzas (a server bug; Prosody's mod_privilege writes a byte count \
                 after refusing a privileged IQ): \"{}\"",
                dropped.excerpt_escaped()
            );
        }
        for found in &dropped.over_limit {
            self.report_over_limit(found);
        }
    }

    /// Any remote user can send such stanzas as fast as the server forwards them: one line a second at most.
    fn report_over_limit(&mut self, found: &OverLimit) {
        let Some(suppressed) = self.over_limit_log.allow(Instant::now()) else { return };
        warn!(
            reason = %found.reason,
            bytes = found.bytes,
            limit = self.filter.limits().of(found.reason),
            total = self.filter.total_over_limit(),
            suppressed,
            "stanza over the {} limit skipped before parsing; the engine gets its start tag with a <{LIMIT_ELEMENT}/> \
             child instead (nothing if that tag is over {MAX_KEPT_START_TAG} bytes): \"{}\"",
            found.reason,
            found.excerpt_escaped()
        );
    }
}

/// At most one event per [`RateLimit::PERIOD`], counting the ones suppressed in between.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    const PERIOD: Duration = Duration::from_secs(1);

    /// Whether an event at `now` may be logged: `Some(n)` with the `n` suppressed since the last one logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.saturating_duration_since(last) < Self::PERIOD) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StrayTextGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Everything filtered away (or held back, as a stanza is until it ends) is no end of file: read on until
        // something passes.
        while this.pos == this.ready.len() && !this.eof && buf.remaining() > 0 {
            this.ready.clear();
            this.pos = 0;
            let mut chunk = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.eof = true;
                this.filter.finish(&mut this.ready);
            } else if let Some(dropped) = this.filter.feed(chunk.filled(), &mut this.ready) {
                this.report(&dropped);
            }
        }
        let n = buf.remaining().min(this.ready.len() - this.pos);
        buf.put_slice(&this.ready[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StrayTextGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_filtered_across_writes_and_writes_through() {
        let (mut server, client) = tokio::io::duplex(64);
        let mut guard = StrayTextGuard::new(client, StanzaLimits::DEFAULT);
        let writer = tokio::spawn(async move {
            for part in ["<s>", "<a/>3", "0", "5<", "b/>", " <c>1</c>", "</s>"] {
                server.write_all(part.as_bytes()).await?;
                tokio::task::yield_now().await;
            }
            let mut echo = [0u8; 2];
            server.read_exact(&mut echo).await?;
            assert_eq!(&echo, b"hi");
            io::Result::Ok(())
        });
        guard.write_all(b"hi").await.expect("write through");
        let mut got = String::new();
        guard.read_to_string(&mut got).await.expect("read to the end");
        assert_eq!(got, "<s><a/><b/> <c>1</c></s>");
        // `305` was written in three parts: however the reads fell, each byte was dropped once.
        assert_eq!(guard.dropped().1, 3);
        writer.await.expect("writer task").expect("writer I/O");
    }

    #[tokio::test]
    async fn small_reader_buffers_get_everything() {
        let (mut server, client) = tokio::io::duplex(1024);
        server.write_all(b"<s><a x='>'/>42<b/>").await.expect("write");
        drop(server);
        let mut guard = StrayTextGuard::new(client, StanzaLimits::DEFAULT);
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        while guard.read(&mut one).await.expect("read") == 1 {
            got.push(one[0]);
        }
        assert_eq!(got, b"<s><a x='>'/><b/>");
    }

    #[tokio::test]
    async fn a_stanza_over_the_limits_is_read_as_its_replacement() {
        let (mut server, client) = tokio::io::duplex(1024);
        let deep = format!("<m id='1'>{}{}</m>", "<a>".repeat(40), "</a>".repeat(40));
        let writer = tokio::spawn(async move {
            server.write_all(format!("<s>{deep}<n/>{deep}</s>").as_bytes()).await?;
            io::Result::Ok(())
        });
        let mut guard = StrayTextGuard::new(client, StanzaLimits { max_depth: 16, max_bytes: 1 << 16 });
        let mut got = String::new();
        guard.read_to_string(&mut got).await.expect("read to the end");
        let replaced = "<m id='1'><limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='depth'/></m>";
        assert_eq!(got, format!("<s>{replaced}<n/>{replaced}</s>"));
        assert_eq!(guard.over_limit(), 2);
        writer.await.expect("writer task").expect("writer I/O");
    }

    #[test]
    fn over_limit_lines_are_rate_limited_with_a_count() {
        let mut log = RateLimit::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log.allow(at(0)), Some(0));
        assert_eq!(log.allow(at(500)), None);
        assert_eq!(log.allow(at(999)), None);
        assert_eq!(log.allow(at(1000)), Some(2), "the two suppressed are counted in the next line");
        assert_eq!(log.allow(at(1500)), None);
        assert_eq!(log.allow(at(5000)), Some(1));
        assert_eq!(log.allow(at(200)), None, "a clock going back suppresses, never panics");
    }
}
