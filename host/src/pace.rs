//! The header-read limit of a plain HTTP/1.1 connection. From the moment a connection waits
//! for a request's head (when it opens, and when the previous response has been sent), the
//! head must arrive whole within `[server] header_timeout`, or the connection is closed: a
//! client trickling a head byte by byte (slowloris) cannot hold a connection, and neither
//! can an idle keep-alive one. A request in flight, however long it takes (a slow scheme,
//! a long download through the proxy), is never cut by this limit.
//!
//! hyper has the same limit (`header_read_timeout`), but it allocates a timer and arms and
//! disarms it in tokio's timer wheel on every request: a tenth of a plain request's
//! user-space instructions (callgrind, an anonymous `whoami` route: 14,513 instructions per
//! request with hyper's timer, 13,036 without). Here a request reads the clock once, when
//! its response is done with, and the connection's one timer wakes once per limit. TLS and
//! h2c connections keep hyper's timer (HTTP/2 has no head to wait for, and TLS costs more
//! than the timer does).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Frame, SizeHint};
use tokio::time::Instant;

use crate::respond::Body;

/// One connection's requests in flight, and since when it has waited for a head.
#[derive(Debug)]
pub(crate) struct Pace {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the connection last began to wait for a head, in nanoseconds after `epoch`.
    waiting_since: AtomicU64,
}

impl Pace {
    /// A connection that opens now, waiting for its first head.
    pub(crate) fn new() -> Arc<Pace> {
        Arc::new(Pace {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(0),
        })
    }

    /// A request's head has arrived: it is in flight until the returned guard is dropped
    /// (with its response body, once sent; or with the request, if it is abandoned).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        // Relaxed suffices: the counts are exact (read-modify-write), and they are read only
        // by the watch of a plain HTTP/1.1 connection, whose requests run in the watch's own
        // task. (TLS and h2c connections count too, for one service type, but are not watched.)
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn end(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waiting_since.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Resolves once the connection has waited `limit` for a head with nothing in flight.
    pub(crate) async fn overdue(&self, limit: Duration) {
        loop {
            let since = self.waiting_since.load(Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            let deadline = if busy {
                // Looked at again a limit from now; the wait starts when the request ends.
                Instant::now() + limit
            } else {
                self.epoch + Duration::from_nanos(since) + limit
            };
            tokio::time::sleep_until(deadline).await;
            let unchanged = self.waiting_since.load(Ordering::Relaxed) == since;
            if !busy && unchanged && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
    }
}

/// A request in flight on its connection (see [`Pace::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Pace>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request in flight until it has been sent or dropped.
#[derive(Debug)]
pub(crate) struct Paced {
    body: Body,
    _in_flight: InFlight,
}

impl Paced {
    pub(crate) fn new(body: Body, in_flight: InFlight) -> Self {
        Paced { body, _in_flight: in_flight }
    }
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    /// Whether `overdue` has resolved by `at` (the test clock, paused, jumps there).
    async fn overdue_by(watch: &mut Pin<Box<impl std::future::Future<Output = ()>>>, at: Instant) -> bool {
        tokio::time::sleep_until(at).await;
        watch.as_mut().now_or_never().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_for_its_first_head_is_overdue_after_the_limit() {
        let pace = Pace::new();
        let start = Instant::now();
        let mut watch = Box::pin(pace.overdue(LIMIT));
        assert!(!overdue_by(&mut watch, start + LIMIT - Duration::from_millis(1)).await);
        assert!(overdue_by(&mut watch, start + LIMIT).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_cut_and_the_wait_restarts_when_it_ends() {
        let pace = Pace::new();
        let start = Instant::now();
        let mut watch = Box::pin(pace.overdue(LIMIT));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let request = pace.begin();
        // In flight for ten limits: not overdue.
        assert!(!overdue_by(&mut watch, start + LIMIT * 10).await);
        let ended = Instant::now();
        drop(request);
        assert!(!overdue_by(&mut watch, ended + LIMIT - Duration::from_millis(1)).await);
        assert!(overdue_by(&mut watch, ended + LIMIT).await);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_one_after_another_keep_the_connection() {
        let pace = Pace::new();
        let mut watch = Box::pin(pace.overdue(LIMIT));
        // A request every 20 s, each answered at once, for five minutes.
        for _ in 0..15 {
            let at = Instant::now() + Duration::from_secs(20);
            assert!(!overdue_by(&mut watch, at).await);
            drop(pace.begin());
        }
        let last = Instant::now();
        assert!(overdue_by(&mut watch, last + LIMIT).await);
    }
}
