//! The one integration test binary. Every test runs the real `authhost` binary with the
//! real plugin libraries, over real sockets on 127.0.0.1:0, with a fresh SQLite store.
//! Run them with `scripts/test`, which builds the plugins first.

mod support;

// The chain and permissions: DRF's semantics, X-USERNAME, ordering, anonymous.
mod chain;
// DRF conformance: SPEC section 2's table for every shipped scheme, and ordering.
mod conformance;
// DRF's obtain_auth_token, and what the store keeps of keys.
mod obtain_token;
// Users' e-mail addresses: obtain_token's extra fields, logging in by e-mail.
mod login_by_email;
// Per-client tokens: login_token, expiry, refresh on use, limit, logout, logout-all.
mod client_tokens;
// JWTs: obtain, refresh, verify, expiry, revocation, an independent signature check.
mod jwt;
// Sessions with Django's CSRF rules; login and logout.
mod session;
// Faults: panicking and erroring schemes give 500 and a log line; the host keeps serving.
mod faults;
// The author's path: authhost new-scheme, built and loaded outside the repository.
mod new_scheme;
// The plugin ABI across minor versions of plugin-api.
mod abi;
// Plugin files swapped under a running host: private copies, trial loads, refusals.
mod swap;
// Loading: bad configs and bad plugins fail at start-up naming the file and the key.
mod loading;
// Route matching: whole segments, and paths in normal form only.
mod routes;
// Gateway mode: the streaming reverse proxy and the forward-auth back-end.
mod gateway;
// Proxy routes to https:// upstreams.
mod https_upstream;
// Browser sign-in over HTTP: login and logout pages, next, redirects for navigations.
mod sign_in;
// The sign-in pages in a real headless Chromium, behind nginx and authhost's proxy.
mod browser;
// Real nginx and Caddy asking authhost's forward_auth route.
mod gateway_peers;
// Metrics (read back, checked by promtool) and the access log.
mod metrics;
// Hostile clients: slow and oversized bodies, Host headers, empty credentials.
mod hardening;
// DRF's throttles: anon, user and scoped rates; 429 with Retry-After and DRF's detail.
mod throttle;
// A store another process holds locked: 503 within busy_timeout; reads go on.
mod store_lock;
// Generated input (proptest): the parsers and config loading against DRF's answers.
mod properties;
// Operations: reloads that cannot apply live, the start-up line.
mod operations;
// HTTP: malformed requests, methods, graceful shutdown.
mod http;
// Host services across the ABI: store look-ups, argon2 and user creation off the reactor.
mod services;
// The command line: users.
mod cli;
// Pools survive their jobs: a panicking store job fails alone; health stays ok.
mod pools;
// Caches: bounded per entry; a host behind a pruned change log drops them.
mod caches;
// One store test suite, run against SQLite and PostgreSQL alike.
mod store_suite;
// Several hosts on one PostgreSQL database: shared credentials, revocations everywhere.
mod scale_out;
// Moving a Django project over: users, password hashes and DRF tokens.
mod django_import;
// The OpenAPI document, and schemathesis against the running host.
mod openapi;
// TLS and HTTP/2 on the listening port, spoken to by curl and openssl.
mod tls;
// Revocation is final: logout, logout_token, a new password, a deactivation under load.
mod revocation;
