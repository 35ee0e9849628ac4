//! The host's one error type: opaque, over a private kind, read through predicates.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Plugin,
    Store,
    Busy,
    /// The store did not answer within `[store] busy_timeout` (locked, or its queue slow).
    Unavailable,
    Io,
    /// Too many failed logins: 429 with this wait (whole seconds), when there is one.
    Throttled(Option<u64>),
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// An error from loading, configuring, storing or serving. `Display` gives one level;
/// `source()` gives the cause.
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<Source>,
}

impl Error {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// A bad config: the message names the file, the key and the fix.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(Kind::Config, message)
    }

    /// A plugin library that cannot be loaded or a scheme that cannot be built.
    pub(crate) fn plugin(message: impl Into<String>) -> Self {
        Error::new(Kind::Plugin, message)
    }

    pub(crate) fn store(message: impl Into<String>) -> Self {
        Error::new(Kind::Store, message)
    }

    /// A bounded queue is full: the client should retry (503).
    pub(crate) fn busy(message: impl Into<String>) -> Self {
        Error::new(Kind::Busy, message)
    }

    /// The store cannot answer now: 503, and the client should retry.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::new(Kind::Unavailable, message)
    }

    pub(crate) fn io(message: impl Into<String>) -> Self {
        Error::new(Kind::Io, message)
    }

    /// `[throttle] failures` refused a login before any password work: 429.
    pub(crate) fn throttled(wait: Option<u64>) -> Self {
        Error::new(Kind::Throttled(wait), "too many failed logins")
    }

    pub(crate) fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// This error and its cause on one line (`store error: database is locked`), for logs.
    pub fn with_cause(&self) -> String {
        match &self.source {
            Some(source) => format!("{}: {source}", self.message),
            None => self.message.clone(),
        }
    }

    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    pub fn is_plugin(&self) -> bool {
        self.kind == Kind::Plugin
    }

    pub fn is_store(&self) -> bool {
        self.kind == Kind::Store
    }

    pub fn is_busy(&self) -> bool {
        self.kind == Kind::Busy
    }

    pub fn is_unavailable(&self) -> bool {
        self.kind == Kind::Unavailable
    }

    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }

    /// For a throttled login: `Some(wait)`, the wait in whole seconds when there is one.
    pub fn throttled_wait(&self) -> Option<Option<u64>> {
        match self.kind {
            Kind::Throttled(wait) => Some(wait),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match err.sqlite_error_code() {
            // Another connection held the lock for longer than busy_timeout.
            Some(DatabaseBusy | DatabaseLocked) => {
                Error::unavailable("the store is locked by another connection").with_source(err)
            }
            _ => Error::store("store error").with_source(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn display_gives_one_level_and_source_the_cause() {
        let err = Error::store("cannot open store").with_source(Error::io("disk full"));
        assert_eq!(err.to_string(), "cannot open store");
        assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "disk full");
        assert_eq!(err.with_cause(), "cannot open store: disk full");
        assert!(err.is_store() && !err.is_config());
    }
}
