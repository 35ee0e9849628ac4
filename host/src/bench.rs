//! `authhost bench`: runs one route's chain of a user's own config in-process, against a
//! request they describe, and reports each scheme's cost and the chain's (median, p99), so
//! that two orderings can be compared without writing code. The chain runs exactly as it
//! does when serving: the same plugins, host services, caches and store.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authhost_plugin_api::{Header, RequestView};

use crate::app::App;
use crate::chain::{Verdict, Watch};

/// The request to run the chain on.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

/// How long to run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests: usize,
    pub time: Duration,
    /// Requests run first and not counted (they fill the caches).
    pub warmup: usize,
}

/// One scheme's timings over the run.
#[derive(Debug, Clone)]
pub struct SchemeReport {
    pub name: String,
    pub outcome: &'static str,
    pub median: Duration,
    pub p99: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub verdict: Verdict,
    pub requests: usize,
    pub elapsed: Duration,
    pub schemes: Vec<SchemeReport>,
    pub median: Duration,
    pub p99: Duration,
}

#[derive(Default)]
struct Timer {
    started: Option<Instant>,
    samples: Vec<Vec<u64>>,
    outcomes: Vec<&'static str>,
}

impl Watch for Timer {
    fn scheme_started(&mut self, _position: usize) {
        self.started = Some(Instant::now());
    }

    fn scheme_done(&mut self, position: usize, outcome: &'static str) {
        let elapsed =
            self.started.take().map_or(0, |t| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if self.samples.len() <= position {
            self.samples.resize_with(position + 1, Vec::new);
            self.outcomes.resize(position + 1, "");
        }
        self.samples[position].push(elapsed);
        self.outcomes[position] = outcome;
    }
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Runs the chain of the route `request.path` routes to. `progress(done, total)` is called
/// now and then. `None` when no route matches.
pub fn run(
    app: &App,
    runtime: &tokio::runtime::Runtime,
    request: &BenchRequest,
    limits: Limits,
    mut progress: impl FnMut(usize, usize),
) -> Option<Report> {
    let chain = app.chain_for(&request.path)?.clone();
    let headers: Vec<Header<'_>> = request.headers.iter().map(|(n, v)| Header::new(n, v)).collect();
    let view = RequestView::new(&request.method, &request.path, &request.query, &headers, request.peer)
        .with_body(&request.body);
    let services = app.services();
    let mut verdict = Verdict::Anonymous;
    for _ in 0..limits.warmup {
        verdict = runtime.block_on(chain.authenticate(&view, services));
        // A chain that faults cannot be timed: stop at the first fault, whose one log line
        // names the scheme, its plugin and the cause.
        if verdict == Verdict::Fault {
            return Some(Report {
                verdict,
                requests: 0,
                elapsed: Duration::ZERO,
                schemes: Vec::new(),
                median: Duration::ZERO,
                p99: Duration::ZERO,
            });
        }
    }
    let mut timer = Timer::default();
    let mut totals = Vec::with_capacity(limits.requests.min(1 << 20));
    let start = Instant::now();
    let step = (limits.requests / 100).max(1);
    while totals.len() < limits.requests && start.elapsed() < limits.time {
        let (v, total) = runtime.block_on(async {
            let t = Instant::now();
            let v = chain.authenticate_watched(&view, services, &mut timer).await;
            (v, t.elapsed())
        });
        verdict = v;
        totals.push(u64::try_from(total.as_nanos()).unwrap_or(u64::MAX));
        if totals.len() % step == 0 {
            progress(totals.len(), limits.requests);
        }
    }
    let elapsed = start.elapsed();
    progress(totals.len(), totals.len());
    totals.sort_unstable();
    let names: Vec<&str> = chain.names().collect();
    let schemes = timer
        .samples
        .iter_mut()
        .enumerate()
        .map(|(i, samples)| {
            samples.sort_unstable();
            SchemeReport {
                name: names.get(i).copied().unwrap_or("?").to_owned(),
                outcome: timer.outcomes[i],
                median: percentile(samples, 50.0),
                p99: percentile(samples, 99.0),
            }
        })
        .collect();
    Some(Report {
        verdict,
        requests: totals.len(),
        elapsed,
        schemes,
        median: percentile(&totals, 50.0),
        p99: percentile(&totals, 99.0),
    })
}

/// A progress bar on stderr, `[#########...........]  45%  4500/10000`, drawn only on a
/// terminal (never into a pipe or a file).
pub fn progress_bar(done: usize, total: usize) {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let total = total.max(1);
    let filled = done * 30 / total;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:>3}%  {done}/{total}",
        "#".repeat(filled.min(30)),
        ".".repeat(30 - filled.min(30)),
        done * 100 / total
    );
    if done >= total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// `1.23 µs`, `456 ns`, `14.2 ms`.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else {
        format!("{:.2} s", ns / 1_000_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_nanos(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_nanos(99));
        assert_eq!(percentile(&[7], 99.0), Duration::from_nanos(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_nanos(456)), "456 ns");
        assert_eq!(human(Duration::from_nanos(1_234)), "1.23 µs");
        assert_eq!(human(Duration::from_micros(14_200)), "14.20 ms");
    }
}
