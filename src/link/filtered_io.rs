//! The socket as the XML parser sees it: reads pass through [`StrayTextFilter`], writes pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::warn;

use super::stray_text::StrayTextFilter;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// An I/O object whose incoming bytes lose the stray text between stanzas (see [`super::stray_text`]).
#[derive(Debug)]
pub struct StrayTextGuard<S> {
    inner: S,
    filter: StrayTextFilter,
    /// Filtered bytes not yet handed to the reader, from `ready[pos..]`.
    ready: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
    eof: bool,
}

impl<S> StrayTextGuard<S> {
    /// Wraps `inner` at the start of a stream.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            filter: StrayTextFilter::new(),
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
}

impl<S: AsyncRead + Unpin> AsyncRead for StrayTextGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Everything filtered away (or held back) is no end of file: read on until something passes.
        while this.pos == this.ready.len() && !this.eof && buf.remaining() > 0 {
            this.ready.clear();
            this.pos = 0;
            let mut chunk = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.eof = true;
                this.filter.finish(&mut this.ready);
            } else if let Some(dropped) = this.filter.feed(chunk.filled(), &mut this.ready) {
                // An excerpt, never the buffer: the server's bug is worth a line, not a flood.
                warn!(
                    bytes = dropped.bytes,
                    runs = dropped.runs,
                    total = this.filter.total_runs(),
                    "dropped stray text between stanzas (a server bug; Prosody's mod_privilege writes a byte count \
                     after refusing a privileged IQ): \"{}\"",
                    dropped.excerpt_escaped()
                );
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
        let mut guard = StrayTextGuard::new(client);
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
        let mut guard = StrayTextGuard::new(client);
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        while guard.read(&mut one).await.expect("read") == 1 {
            got.push(one[0]);
        }
        assert_eq!(got, b"<s><a x='>'/><b/>");
    }
}
