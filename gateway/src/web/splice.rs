//! Splicing two byte streams with an idle timeout: the CONNECT tunnels of the HTTP proxy and
//! the allowed connections of the TLS SNI port.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a splice last moved a byte: milliseconds since `start` (one atomic, no lock).
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing was read for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let due =
                self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A stream whose reads mark the activity clock (and count bytes), so that
/// `copy_bidirectional` can do the copying and idle splices still end.
struct Metered<'a, T> {
    io: T,
    bytes: Option<&'a Counter>,
    activity: &'a Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            if let Some(b) = this.bytes {
                b.inc_by(n as u64);
            }
            this.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Copies both directions (each half-closed on its own EOF) until both are done, an error
/// occurs, or nothing moved for `idle`; true if it ended for being idle. `a_bytes` counts the
/// bytes read from `a` (sent on to `b`), `b_bytes` those read from `b`.
pub(crate) async fn splice(
    a: impl AsyncRead + AsyncWrite + Unpin,
    b: impl AsyncRead + AsyncWrite + Unpin,
    idle: Duration,
    a_bytes: Option<&Counter>,
    b_bytes: Option<&Counter>,
) -> bool {
    let activity = Activity::new();
    let mut a = Metered {
        io: a,
        bytes: a_bytes,
        activity: &activity,
    };
    let mut b = Metered {
        io: b,
        bytes: b_bytes,
        activity: &activity,
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => false,
        _ = activity.idle(idle) => true,
    }
}
