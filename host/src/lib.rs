//! authhost: an HTTP authentication host with Django REST Framework's semantics, whose
//! schemes are plugins behind a stable ABI (`authhost-plugin-api`).
//!
//! `App::build(&config)` loads a config's plugins and routes; `serve` runs it on a listener.

pub mod app;
pub mod bench;
pub mod cache;
pub mod chain;
pub mod config;
pub mod django_hashes;
pub mod django_import;
pub mod endpoints;
pub mod error;
pub mod gateway;
pub mod library;
pub mod loader;
pub mod metrics;
pub mod new_scheme;
pub mod openapi;
mod pace;
pub mod permission;
pub mod pool;
pub mod respond;
pub mod routes;
pub mod server;
pub mod services;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod tokens;
pub mod trial;
pub mod usernames;

pub use app::App;
pub use chain::{Chain, Verdict, Watch};
pub use config::Config;
pub use error::Error;
pub use loader::Schemes;
pub use server::{reload_on_hangup, serve, shutdown_signal, AppSlot};
pub use services::Services;
