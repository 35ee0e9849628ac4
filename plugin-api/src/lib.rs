//! The stable ABI between the authhost host and its authentication scheme plugins.
//!
//! A plugin author implements [`Scheme`] in plain Rust and invokes [`export_scheme!`] once.
//! Everything unsafe or fiddly lives here: the exported root module, catching panics at every
//! call into plugin code, converting outcomes, and parsing the scheme's options with errors
//! that name the key.
//!
//! The host calls a scheme synchronously on its async worker. A scheme asks the host for data
//! through [`Host`]; what the host has in memory comes back at once, and what it has not
//! comes back as a pending [`SchemeError`], which the scheme passes on with `?`. The host then
//! fetches the data off the worker (store pool, password pool) and calls the scheme again,
//! so plugin code never blocks and never awaits.
//!
//! # Compatibility
//!
//! This crate's major version is the plugin ABI. Within 1.x, a plugin built against 1.x
//! loads and works in a host built against 1.y whether y ≥ x or y < x: a host older than
//! the plugin answers a service it lacks with a clean error (logged as "needs plugin-api
//! 1.N"), and a host newer than the plugin reaches the scheme methods the plugin lacks
//! through their default bodies. Types that cross the ABI keep their layout within 1.x;
//! new facts about users arrive as named [`User::attributes`]. The rules a minor release
//! follows are in the repository's `docs/plugin-abi.md`.

pub mod authorization;
pub mod csrf;
pub mod export;
pub mod files;
pub mod form;
pub mod host;
pub mod mint;
pub mod net;
pub mod options;
pub mod outcome;
pub mod request;
pub mod root;
pub mod scheme;
pub mod testing;

pub use abi_stable;
/// Compares two secrets in time that depends only on their lengths.
pub use csrf::constant_time_eq;

/// This plugin-api's version; its major version is the plugin ABI's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use host::{
    Host, HostError, HostErrorKind, HostServices, HostServicesRef, LoginField, SessionMatch, SessionSettings,
    TokenMatch, TokenPolicy,
};
pub use mint::{Claims, Inspected, Minted};
pub use options::{OptionEntry, OptionError, OptionKind, OptionSpec, OptionValue, Options};
pub use outcome::{Outcome, Outcome_NE, User};
pub use request::{Header, PeerAddr, RequestView};
pub use root::{SchemeBox, SchemeMod, SchemeModRef, SchemeObject, SchemeObject_TO};
pub use scheme::{Scheme, SchemeError};
