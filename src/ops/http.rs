//! `GET /metrics` and `GET /health` on the `[ops] listen` address.
//!
//! Two read-only routes for a scraper and a health checker on the same host do not need an HTTP stack: this
//! reads the request line, answers, and closes the connection. Every request is bounded in size, time and
//! concurrency, so a stuck or hostile client costs a few kilobytes at most.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{Health, Ops};

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 << 10;
/// How long a client has to send its request and read the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed unanswered.
const CONCURRENT: usize = 16;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} (ops.listen): {source}")]
pub struct ListenError {
    /// The configured address.
    pub address: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `address` (port 0 picks a free one; the log line names the port taken).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ListenError> {
    let listener = TcpListener::bind(address).await.map_err(|source| ListenError { address, source })?;
    let local = listener.local_addr().map_err(|source| ListenError { address, source })?;
    if !local.ip().is_loopback() {
        warn!("ops.listen {local} is not a loopback address: the metrics are readable by anyone who reaches it");
    }
    info!("metrics on http://{local}/metrics, health on http://{local}/health");
    Ok(listener)
}

/// Serves until the runtime stops.
pub async fn serve(listener: TcpListener, ops: Ops) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                warn!("ops endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "ops endpoint busy: connection closed");
            continue;
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(DEADLINE, answer(stream, &ops)).await.is_err() {
                debug!(%peer, "ops endpoint: request timed out");
            }
            drop(slot);
        });
    }
}

async fn answer(mut stream: TcpStream, ops: &Ops) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, content_type, body) = route(&head, ops);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(response.as_bytes()).await {
        debug!("ops endpoint: answer not sent: {e}");
    }
    let _ = stream.shutdown().await;
}

const TEXT: &str = "text/plain; charset=utf-8";
/// What prometheus-client writes (Prometheus negotiates it; `# EOF` ends it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to a request head: status line, content type, body.
fn route(head: &[u8], ops: &Ops) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (method, target) = (parts.next(), parts.next().map(|t| t.split('?').next().unwrap_or(t)));
    match (method, target) {
        (Some("GET"), Some("/metrics")) => ("200 OK", OPENMETRICS, ops.render(SystemTime::now())),
        (Some("GET"), Some("/health")) => match ops.health() {
            Health::Linked => ("200 OK", TEXT, "ok: linked, handshake done\n".into()),
            Health::Down => ("503 Service Unavailable", TEXT, "down: not linked to the server\n".into()),
            Health::Draining => ("503 Service Unavailable", TEXT, "draining: shutting down\n".into()),
            Health::Standby => ("503 Service Unavailable", TEXT, "standby: another instance holds the lease\n".into()),
        },
        (Some("GET"), Some(_)) => ("404 Not Found", TEXT, "not found: try /metrics or /health\n".into()),
        (Some(_), Some(_)) => ("405 Method Not Allowed", TEXT, "only GET\n".into()),
        _ => ("400 Bad Request", TEXT, "bad request\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Ops {
        Ops::new(vec![xmpp_parsers::jid::BareJid::new("localhost").unwrap()], Duration::from_secs(5))
    }

    #[test]
    fn routes() {
        let ops = ops();
        let (status, _, body) = route(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &ops);
        assert_eq!((status, body.as_str()), ("503 Service Unavailable", "down: not linked to the server\n"));
        ops.set_linked(true);
        assert_eq!(route(b"GET /health?x=1 HTTP/1.0\r\n\r\n", &ops).0, "200 OK");
        let (status, kind, body) = route(b"GET /metrics HTTP/1.1\r\n\r\n", &ops);
        assert_eq!((status, kind), ("200 OK", OPENMETRICS));
        assert!(body.contains("avatar_gateway_link_up 1\n") && body.ends_with("# EOF\n"), "{body}");
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n", &ops).0, "405 Method Not Allowed");
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n", &ops).0, "404 Not Found");
        assert_eq!(route(b"\xff\xfe\r\n\r\n", &ops).0, "400 Bad Request");
    }
}
