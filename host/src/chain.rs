//! A chain runs its schemes in order (DRF's `_authenticate`): the first success wins, a
//! failure or a fault stops the chain, and if no scheme authenticates the request is
//! anonymous. A fault is never read as "not attempted".

use std::sync::Arc;

use authhost_plugin_api::host::lend;
use authhost_plugin_api::{Outcome, Outcome_NE as PluginOutcome, RequestView, User};
use tracing::{error, warn};

use crate::loader::Scheme;
use crate::services::{Need, RequestHost, Services};

/// How many times one scheme may ask the host for data it lacks, on one request.
const MAX_HOST_ROUNDS: usize = 8;

/// What a chain decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The scheme at `position` authenticated the request.
    Authenticated { user: User, auth: Option<String>, position: usize },
    /// No scheme authenticated it.
    Anonymous,
    /// A scheme refused the credentials: 401 with the first scheme's challenge, else 403.
    Failed { detail: String },
    /// A scheme refused the request itself (CSRF): 403.
    Forbidden { detail: String },
    /// A scheme broke, or the host could not serve it: 500. Already logged.
    Fault,
    /// A bounded queue was full: 503.
    Busy,
    /// The store did not answer within `[store] busy_timeout`: 503. Already logged.
    Unavailable,
    /// `[throttle] failures` refused a login before any password work: 429.
    Throttled { wait: Option<u64> },
}

/// A scheme broke while answering; the fault is logged and the answer is a 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faulted;

/// An ordered list of schemes. Only the loader builds one.
#[derive(Debug, Clone)]
pub struct Chain {
    schemes: Vec<Arc<Scheme>>,
}

impl Chain {
    pub(crate) fn new(schemes: Vec<Arc<Scheme>>) -> Self {
        Chain { schemes }
    }

    pub fn is_empty(&self) -> bool {
        self.schemes.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schemes.iter().map(|s| s.name())
    }

    pub fn scheme(&self, position: usize) -> Option<&Scheme> {
        self.schemes.get(position).map(|s| s.as_ref())
    }

    /// Runs the schemes in order.
    pub async fn authenticate(&self, request: &RequestView<'_>, services: &Services) -> Verdict {
        self.authenticate_watched(request, services, &mut ()).await
    }

    /// As `authenticate`, telling `watch` when each scheme starts and what it answered
    /// (`authhost bench` times each scheme this way; `()` watches nothing, for free).
    pub async fn authenticate_watched<W: Watch>(
        &self,
        request: &RequestView<'_>,
        services: &Services,
        watch: &mut W,
    ) -> Verdict {
        for (position, scheme) in self.schemes.iter().enumerate() {
            watch.scheme_started(position);
            let outcome = match run_scheme(scheme, position, request, services) {
                Ok(answered) => answered,
                Err(fetching) => fetching.await,
            };
            watch.scheme_done(position, outcome_label(&outcome));
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(verdict) => return verdict,
            };
            match outcome {
                Outcome::NotAttempted => continue,
                Outcome::Authenticated { user, auth } => {
                    return Verdict::Authenticated {
                        user,
                        auth: auth.into_option().map(Into::into),
                        position,
                    };
                }
                Outcome::Failed { detail } => return Verdict::Failed { detail: detail.into() },
                Outcome::Forbidden { detail } => return Verdict::Forbidden { detail: detail.into() },
                Outcome::Fault { message } => {
                    log_fault(scheme, position, &message);
                    return Verdict::Fault;
                }
                // A variant from a newer plugin-api: never read as "not attempted".
                _ => {
                    log_fault(scheme, position, "returned an outcome this host does not know");
                    return Verdict::Fault;
                }
            }
        }
        Verdict::Anonymous
    }

    /// The first scheme's `WWW-Authenticate` challenge (DRF's `get_authenticate_header`).
    /// `Err` when that scheme panicked (already logged).
    pub fn challenge(&self, request: &RequestView<'_>) -> Result<Option<String>, Faulted> {
        let Some(first) = self.schemes.first() else {
            return Ok(None);
        };
        match first.object.authenticate_header(request).into_result() {
            Ok(challenge) => Ok(challenge.into_option().map(Into::into)),
            Err(message) => {
                log_fault(first, 0, &format!("authenticate_header {message}"));
                Err(Faulted)
            }
        }
    }
}

/// Sees a chain run, scheme by scheme.
pub trait Watch {
    fn scheme_started(&mut self, _position: usize) {}
    fn scheme_done(&mut self, _position: usize, _outcome: &'static str) {}
}

impl Watch for () {}

fn outcome_label(outcome: &Result<Outcome, Verdict>) -> &'static str {
    match outcome {
        Ok(Outcome::NotAttempted) => "not attempted",
        Ok(Outcome::Authenticated { .. }) => "authenticated",
        Ok(Outcome::Failed { .. }) => "failed",
        Ok(Outcome::Forbidden { .. }) => "forbidden",
        Err(Verdict::Busy) => "busy",
        Err(Verdict::Unavailable) => "unavailable",
        Err(Verdict::Throttled { .. }) => "throttled",
        _ => "fault",
    }
}

/// Calls one scheme. Most answers come from memory on the first call (a cached token or
/// user), and those are returned as they are: no future is made. A scheme that asks the
/// host for something not in memory gets a boxed future that fetches it and calls the
/// scheme again, so the rare path does not size every request's future.
fn run_scheme<'a>(
    scheme: &'a Scheme,
    position: usize,
    request: &'a RequestView<'a>,
    services: &'a Services,
) -> Result<Result<Outcome, Verdict>, Fetching<'a>> {
    let host = RequestHost::new(services, scheme.name(), scheme.token_policy(), request.peer().ip());
    let outcome = scheme.object.authenticate(request, &lend(&host));
    match host.take_need() {
        None => Ok(known_outcome(scheme, position, outcome).ok_or(Verdict::Fault)),
        Some(need) => Err(Box::pin(fetch_and_retry(scheme, position, request, services, host, need))),
    }
}

/// A scheme's call still waiting on the store.
type Fetching<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, Verdict>> + Send + 'a>>;

/// An outcome the scheme gave; None (a fault, logged) for a variant this host does not know.
fn known_outcome(scheme: &Scheme, position: usize, outcome: PluginOutcome) -> Option<Outcome> {
    let known = outcome.into_enum().ok();
    if known.is_none() {
        log_fault(scheme, position, "returned an outcome this host does not know (a newer plugin-api?)");
    }
    known
}

/// Fetches what the scheme asked for, then calls it again, until it answers.
async fn fetch_and_retry(
    scheme: &Scheme,
    position: usize,
    request: &RequestView<'_>,
    services: &Services,
    host: RequestHost<'_>,
    first: Need,
) -> Result<Outcome, Verdict> {
    let mut need = first;
    for _ in 0..MAX_HOST_ROUNDS {
        match services.fulfil(&need).await {
            Ok(answer) => host.answer(need, answer),
            Err(err) if err.is_busy() => return Err(Verdict::Busy),
            Err(err) if err.is_unavailable() => {
                let cause = err.with_cause();
                warn!(scheme = %scheme.name(), cause, "store unavailable: {cause}");
                return Err(Verdict::Unavailable);
            }
            Err(err) if err.throttled_wait().is_some() => {
                return Err(Verdict::Throttled { wait: err.throttled_wait().flatten() })
            }
            Err(err) => {
                log_fault(scheme, position, &format!("host service failed: {}", err.with_cause()));
                return Err(Verdict::Fault);
            }
        }
        let outcome = scheme.object.authenticate(request, &lend(&host));
        match host.take_need() {
            None => return known_outcome(scheme, position, outcome).ok_or(Verdict::Fault),
            Some(next) => need = next,
        }
    }
    log_fault(scheme, position, &format!("asked the host for more than {MAX_HOST_ROUNDS} answers"));
    Err(Verdict::Fault)
}

fn log_fault(scheme: &Scheme, position: usize, cause: &str) {
    error!(
        scheme = %scheme.name(),
        position,
        plugin = %scheme.file().display(),
        cause,
        "scheme {:?} faulted: {cause}",
        scheme.name()
    );
}
