//! Prometheus metrics, kept with prometheus-client in one registry for the whole process
//! (so that counts survive a reload). Routes and schemes get their handles when the app is
//! built, so that a request counts without building labels.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_for_the_prometheus_format() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n# HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 0\n# EOF\n";
        let text = prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n# HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 0\n"
        );
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemeOutcome {
    scheme: Arc<String>,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemeLabel {
    scheme: Arc<String>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: Arc<String>,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<String>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteError {
    route: Arc<String>,
    error: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: &'static str,
}

/// Latency buckets from 10 µs to about 20 s, doubling: a cached token look-up and an
/// argon2 verification both land inside.
#[derive(Debug, Clone, Copy)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_01, 2.0, 22))
    }
}

/// What a scheme answered, as the metrics name it.
pub const OUTCOMES: [&str; 8] =
    ["not_attempted", "authenticated", "failed", "forbidden", "fault", "busy", "unavailable", "throttled"];

#[derive(Debug)]
struct Metrics {
    registry: Registry,
    scheme_outcomes: Family<SchemeOutcome, Counter>,
    scheme_seconds: Family<SchemeLabel, Histogram, Buckets>,
    requests: Family<RouteStatus, Counter>,
    upstream_seconds: Family<RouteLabel, Histogram, Buckets>,
    upstream_errors: Family<RouteError, Counter>,
    throttled: Family<RouteLabel, Counter>,
    queue_depth: Family<PoolLabel, Gauge>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("authhost");
        let scheme_outcomes = Family::default();
        let scheme_seconds = Family::new_with_constructor(Buckets);
        let requests = Family::default();
        let upstream_seconds = Family::new_with_constructor(Buckets);
        let upstream_errors = Family::default();
        let queue_depth = Family::default();
        registry.register(
            "scheme_outcomes",
            "What each scheme answered: not_attempted, authenticated, failed, forbidden, fault, busy, unavailable (the store), throttled",
            scheme_outcomes.clone(),
        );
        registry.register(
            "scheme_duration_seconds",
            "Time each scheme took to answer",
            scheme_seconds.clone(),
        );
        registry.register("requests", "Requests answered, by route and status", requests.clone());
        registry.register(
            "upstream_duration_seconds",
            "Time a proxy route's upstream took to send its response head",
            upstream_seconds.clone(),
        );
        registry.register(
            "upstream_errors",
            "Proxy requests that got no answer from the upstream: refused (502) or timeout (504)",
            upstream_errors.clone(),
        );
        let throttled = Family::default();
        registry.register("throttled_requests", "Requests refused by a throttle (429)", throttled.clone());
        registry.register(
            "pool_queue_depth",
            "Jobs waiting for a store or password worker",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            scheme_outcomes,
            scheme_seconds,
            requests,
            upstream_seconds,
            upstream_errors,
            throttled,
            queue_depth,
        }
    })
}

/// One scheme's handles.
#[derive(Debug, Clone)]
pub struct SchemeMetrics {
    outcomes: [Counter; OUTCOMES.len()],
    seconds: Histogram,
}

impl SchemeMetrics {
    pub fn new(scheme: &str) -> Self {
        let m = metrics();
        let name = Arc::new(scheme.to_owned());
        let outcomes = OUTCOMES.map(|outcome| {
            m.scheme_outcomes.get_or_create(&SchemeOutcome { scheme: Arc::clone(&name), outcome }).clone()
        });
        let seconds = m.scheme_seconds.get_or_create(&SchemeLabel { scheme: name }).clone();
        SchemeMetrics { outcomes, seconds }
    }

    /// Counts one answer (an outcome from `OUTCOMES`) and its time.
    pub fn record(&self, outcome: &str, elapsed: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].inc();
        }
        self.seconds.observe(elapsed.as_secs_f64());
    }
}

/// The statuses a route's counters are kept at hand for (others go through the family).
const COMMON_STATUSES: [u16; 12] = [200, 201, 204, 302, 303, 400, 401, 403, 404, 500, 502, 503];

/// One route's handles; the route is named by its `path` (with `*` for a prefix route).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    route: Arc<String>,
    upstream_seconds: Histogram,
    refused: Counter,
    timeouts: Counter,
    throttled: Counter,
    /// The counters of `COMMON_STATUSES`, each made on its first use (so that a status the
    /// route never answered is not exposed), then counted with no look-up.
    statuses: Arc<[OnceLock<Counter>; COMMON_STATUSES.len()]>,
}

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        let m = metrics();
        let route = Arc::new(route.to_owned());
        let error =
            |error| m.upstream_errors.get_or_create(&RouteError { route: Arc::clone(&route), error }).clone();
        let (refused, timeouts) = (error("refused"), error("timeout"));
        let upstream_seconds =
            m.upstream_seconds.get_or_create(&RouteLabel { route: Arc::clone(&route) }).clone();
        let statuses = Arc::new(std::array::from_fn(|_| OnceLock::new()));
        let throttled = m.throttled.get_or_create(&RouteLabel { route: Arc::clone(&route) }).clone();
        RouteMetrics { route, upstream_seconds, refused, timeouts, throttled, statuses }
    }

    /// For requests that match no route.
    pub fn unrouted() -> Self {
        RouteMetrics::new("-")
    }

    pub fn name(&self) -> &str {
        &self.route
    }

    /// Counts one answer.
    pub fn answered(&self, status: u16) {
        let family = || {
            metrics().requests.get_or_create(&RouteStatus { route: Arc::clone(&self.route), status }).clone()
        };
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.statuses[i].get_or_init(family).inc(),
            None => family().inc(),
        };
    }

    /// The upstream sent its response head after `elapsed`.
    pub fn upstream_answered(&self, elapsed: Duration) {
        self.upstream_seconds.observe(elapsed.as_secs_f64());
    }

    /// A throttle refused a request.
    pub fn throttled(&self) {
        self.throttled.inc();
    }

    /// The upstream refused (`timeout: false`) or timed out.
    pub fn upstream_failed(&self, timeout: bool) {
        if timeout { &self.timeouts } else { &self.refused }.inc();
    }
}

/// OpenMetrics text, what prometheus-client writes (Prometheus asks for it).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4, for every other client (curl, promtool).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, with the pools' queue depths as they are now (by pool name): as
/// OpenMetrics when `accept` (the request's `Accept`) asks for it, else in the Prometheus
/// text format. Returns the body and its content type.
pub fn render(queue_depths: &[(&'static str, usize)], accept: &str) -> (String, &'static str) {
    let text = render_openmetrics(queue_depths);
    if accept.contains("application/openmetrics-text") {
        (text, OPENMETRICS)
    } else {
        (prometheus_text(&text), PROMETHEUS_TEXT)
    }
}

/// OpenMetrics text as the Prometheus text format: the two differ, for what we write, only
/// in a counter family's name (OpenMetrics `# TYPE x counter` with samples `x_total`, the
/// Prometheus format `# TYPE x_total counter`) and in the `# EOF` line.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn render_openmetrics(queue_depths: &[(&'static str, usize)]) -> String {
    let m = metrics();
    for &(pool, depth) in queue_depths {
        m.queue_depth.get_or_create(&PoolLabel { pool }).set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &m.registry);
    text
}
