//! The application: routes, each with its chain and permission, in front of the built-in
//! handlers. Per request, in DRF's order: route → authenticate → permission → handler.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use authhost_plugin_api::{Header, Inspected, LoginField, RequestView, TokenPolicy, User};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode, Version};
use serde_json::json;
use tracing::{debug, error, info, warn};

use crate::chain::{Chain, Faulted, Verdict, Watch};
use crate::config::{Config, GatewayConfig, Handler, SessionConfig, TokenField};
use crate::endpoints::obtain_token;
use crate::endpoints::pages::{self, Page, PageContext};
use crate::endpoints::{self, jwt, session, tokens};
use crate::error::Error;
use crate::gateway::proxy::{Forward, UpstreamReport};
use crate::gateway::{forward_auth, forwarded, identity, Identity, Upstream};
use crate::loader::Scheme;
use crate::loader::Schemes;
use crate::metrics::{self, RouteMetrics, SchemeMetrics};
use crate::permission::{Permission, Subject};
use crate::pool::{PasswordPool, StorePoolConfig};
use crate::respond::{detail_response, json_response, Body, Refusal, NOT_AUTHENTICATED, PERMISSION_DENIED};
use crate::routes::{self, Pattern};
use crate::server::MAX_HEAD_BYTES;
use crate::services::{CachePolicy, Services};
use crate::store;
use crate::store::{Backend, PgBackend, PgOptions, SqliteBackend};
use crate::throttle::{self, Throttle};
use crate::tokens::TokenSecret;

/// whoami's answer: who the request is, and which scheme said so.
#[derive(serde::Serialize)]
struct Whoami<'a> {
    user: Option<&'a str>,
    auth: Option<&'a str>,
    scheme: Option<&'a str>,
    is_staff: bool,
}

/// forward_auth's 403 when the calling proxy did not say which request it asks about.
const NO_ORIGINAL: &str = "No original request to decide on: send X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI.";

/// Who a request is, once its route's chain and permission have allowed it.
#[derive(Debug)]
struct Principal<'r> {
    /// None: anonymous.
    user: Option<User>,
    auth: Option<String>,
    /// The scheme that authenticated the request.
    scheme: Option<&'r str>,
    /// The token in use, when a token scheme authenticated the request.
    token_id: Option<i64>,
}

impl Principal<'_> {
    fn subject<'m>(&self, method: &'m str) -> Subject<'m> {
        Subject {
            authenticated: self.user.is_some(),
            is_staff: self.user.as_ref().is_some_and(|u| u.is_staff),
            method,
        }
    }

    fn identity(&self) -> Option<Identity<'_>> {
        Some(Identity { user: self.user.as_ref()?, scheme: self.scheme? })
    }
}

/// The largest request body read; a larger one gets 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Route {
    pattern: Pattern,
    handler: Handler,
    chain: Chain,
    permission: Permission,
    /// For `login_token`: the policy of the token scheme it issues for.
    token_policy: Option<TokenPolicy>,
    /// For the JWT views: the scheme that mints and reads the tokens.
    minter: Option<Arc<Scheme>>,
    /// Which name logins give (`obtain_token`, `login`, `obtain_jwt`).
    login_field: LoginField,
    /// What `obtain_token` answers with.
    token_fields: Vec<TokenField>,
    /// A proxy route's upstream and its pool.
    upstream: Option<Upstream>,
    /// This route's counters, and its schemes', by position in the chain.
    metrics: RouteMetrics,
    scheme_metrics: Vec<SchemeMetrics>,
    access_log: bool,
    /// DRF's throttles, checked after the permission.
    throttles: Vec<Throttle>,
    /// Where unauthenticated browser navigations are sent to sign in.
    login_url: Option<String>,
    /// For `login_page` and `logout_page`: the template, and where a logout goes by default.
    page: Option<Arc<Page>>,
    after_logout: String,
    /// CORS preflights pass as anonymous requests (proxy and `allow` routes).
    cors_allow_preflight: bool,
}

/// What one request came to, for its metrics and its access-log line.
#[derive(Debug)]
struct Record<'r> {
    /// The route that decided (for forward-auth, the original request's route).
    route: Option<&'r Route>,
    scheme: Option<&'r str>,
    /// `authenticated`, `anonymous`, `failed`, `forbidden`, `fault`, `busy`, `denied` (by
    /// the permission), `throttled`, or `-` when no chain ran.
    outcome: &'static str,
    upstream: Option<UpstreamReport>,
    /// Whoever gets the answer passes a redirect on to the browser (not nginx's
    /// `auth_request`, which takes only 2xx, 401 and 403).
    may_redirect: bool,
}

impl Default for Record<'_> {
    fn default() -> Self {
        Record { route: None, scheme: None, outcome: "-", upstream: None, may_redirect: true }
    }
}

/// Times each scheme of a chain into its metrics. A chain of N schemes reads the clock
/// N + 1 times: one scheme's end is the next one's start (between them the chain only
/// looks at the outcome), and the clock is not read before the first scheme is due.
struct SchemeTimer<'a> {
    metrics: &'a [SchemeMetrics],
    /// When the running scheme started; None before the first.
    started: Option<Instant>,
}

impl Watch for SchemeTimer<'_> {
    fn scheme_started(&mut self, _position: usize) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
    }

    fn scheme_done(&mut self, position: usize, outcome: &'static str) {
        let now = Instant::now();
        if let (Some(metrics), Some(started)) = (self.metrics.get(position), self.started) {
            let outcome = if outcome == "not attempted" { "not_attempted" } else { outcome };
            metrics.record(outcome, now.saturating_duration_since(started));
        }
        self.started = Some(now);
    }
}

/// A loaded config: schemes, routes and the services behind them.
#[derive(Debug)]
pub struct App {
    routes: Vec<Route>,
    services: Arc<Services>,
    anonymous_user: Option<String>,
    anonymous_auth: Option<String>,
    /// Loaded when a route issues tokens.
    token_secret: Option<TokenSecret>,
    session: SessionConfig,
    gateway: GatewayConfig,
    /// Counts requests that match no route.
    unrouted: RouteMetrics,
    /// `[server] body_timeout`.
    body_timeout: std::time::Duration,
    /// `[server] header_timeout`, for the connections accepted while this app serves.
    header_timeout: std::time::Duration,
    /// `[server] allowed_hosts`; None: any.
    allowed_hosts: Option<Vec<String>>,
    /// Where DRF's throttle windows live: here, or in the shared store.
    counter: throttle::Counter,
    /// The port's TLS settings (certificate read when this app was built); None: plain.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// `[server] h2c`: plain connections may speak HTTP/2 by prior knowledge.
    h2c: bool,
    /// The OpenAPI document, when a route serves it.
    openapi: Option<Bytes>,
}

impl App {
    /// Opens the store, starts the pools and loads every plugin the config names.
    pub fn build(config: &Config) -> Result<App, Error> {
        let schemes = Schemes::load(config)?;
        App::with_schemes(config, &schemes)
    }

    /// As `build`, for a reload: a config with no routes is refused, since a config cut
    /// short (an editor's half-written file, say) would answer 404 to everything.
    pub fn rebuild(config: &Config) -> Result<App, Error> {
        if config.routes.is_empty() {
            return Err(Error::config(format!(
                "{}: no [[route]]: the new config routes nothing; keep at least one route",
                config.file.display()
            )));
        }
        App::build(config)
    }

    /// A reload of the host running `running`: its file read again and built, applied fully
    /// or not at all; a change to a key only a restart can apply (the address, the store)
    /// is refused naming it, so a typo in the store's url never switches the host to a new,
    /// empty database.
    pub fn reload(running: &Config) -> Result<App, Error> {
        let new = Config::load(&running.file)?;
        if let Some(key) = running.unchangeable(&new) {
            return Err(Error::config(format!(
                "{}: {key} cannot change while authhost runs; restart it to apply the new value",
                running.file.display()
            )));
        }
        App::rebuild(&new)
    }

    /// Builds the app around schemes already loaded (or linked statically, in benches).
    pub fn with_schemes(config: &Config, schemes: &Schemes) -> Result<App, Error> {
        if store::is_postgres(&config.store_url) {
            let options = PgOptions {
                password: config.store_password()?,
                busy_timeout: config.busy_timeout,
                max_connections: 16,
                change_log_keep: config.change_log_keep,
            };
            let backend = Arc::new(PgBackend::open(&config.store_url, &options)?);
            return App::with_backend(config, schemes, backend.clone(), Follower::Task(backend));
        }
        let store = store::open(&config.store_url, config.change_log_keep)?;
        App::with_store(config, schemes, store.as_ref())
    }

    /// Builds the app on a store opened by the caller (embedding, and tests that wrap the
    /// real store to make it fail on purpose); `[store] url` is not read.
    pub fn with_store(config: &Config, schemes: &Schemes, store: &dyn store::Store) -> Result<App, Error> {
        let backend = SqliteBackend::start(
            store,
            StorePoolConfig {
                busy_timeout: config.busy_timeout,
                purge_every: config.purge_every,
                ..StorePoolConfig::new(config.store_workers, 1024)
            },
        )?;
        App::with_backend(config, schemes, Arc::new(backend), Follower::Thread(store.connect()?))
    }

    /// Builds the app on `backend`, following its change log as `follower` says.
    fn with_backend(
        config: &Config,
        schemes: &Schemes,
        backend: Arc<dyn Backend>,
        follower: Follower,
    ) -> Result<App, Error> {
        let passwords = PasswordPool::start(config.password_workers, 64)?;
        let policy = CachePolicy {
            ttl: config.user_cache_ttl,
            capacity: config.cache_capacity,
            poll: config.change_poll,
            refresh_every: config.token_refresh_every,
        };
        let issues_tokens = config.routes.iter().any(|r| r.handler == Handler::ObtainToken);
        let token_secret = if issues_tokens || config.token_for_new_users {
            Some(TokenSecret::load(&config.token_secret_file)?)
        } else {
            None
        };
        let new_user_tokens = token_secret.clone().filter(|_| config.token_for_new_users);
        // Shared throttle windows: Redis when `[throttle] url` names one, else PostgreSQL's
        // (every host on the database counts in them), else this process's.
        let counter = match (&config.throttle_url, &follower) {
            (Some(url), _) => {
                let password = config.throttle_password()?;
                let windows = throttle::RedisWindows::open(url, password.as_deref(), config.busy_timeout)
                    .map_err(|e| Error::config(format!("{}: {}", config.file.display(), e.with_cause())))?;
                throttle::Counter::shared(Arc::new(windows))
            }
            (None, Follower::Thread(_)) => throttle::Counter::Local,
            (None, Follower::Task(pg)) => throttle::Counter::shared(Arc::clone(pg) as _),
        };
        let services = Arc::new(
            Services::with_failures(
                backend,
                passwords,
                policy,
                &config.session,
                new_user_tokens,
                config.failures,
            )
            .with_counter(counter.clone()),
        );
        match follower {
            Follower::Thread(conn) => Services::spawn_change_poller(&services, conn)?,
            Follower::Task(pg) => Services::spawn_store_tasks(&services, pg, config.purge_every)?,
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        // A logout page without a login_url goes to the first sign-in page.
        let sign_in = config.routes.iter().find(|r| r.handler == Handler::LoginPage).map(|r| r.path.clone());
        for (i, r) in config.routes.iter().enumerate() {
            let not_an_issuer = |index: usize, what: &str| {
                Error::config(format!(
                    "{}: route[{i}] ({:?}).token_scheme: scheme {:?} issues no {what}",
                    config.file.display(),
                    r.path,
                    config.schemes[index].name
                ))
            };
            let (token_policy, minter) =
                match (r.token_scheme, r.handler) {
                    (Some(index), Handler::LoginToken) => (
                        Some(schemes.token_policy(index).ok_or_else(|| {
                            not_an_issuer(index, "tokens; name a scheme of the token plugin")
                        })?),
                        None,
                    ),
                    (Some(index), _) => {
                        let scheme =
                            schemes.get(index).filter(|s| !matches!(s.inspect(""), Inspected::Unsupported));
                        (
                            None,
                            Some(scheme.ok_or_else(|| {
                                not_an_issuer(index, "JWTs; name a scheme of the jwt plugin")
                            })?),
                        )
                    }
                    (None, _) => (None, None),
                };
            let route_metrics =
                RouteMetrics::new(&if r.prefix { format!("{}*", r.path) } else { r.path.clone() });
            routes.push(Route {
                pattern: Pattern { path: r.path.clone(), prefix: r.prefix },
                handler: r.handler,
                chain: schemes.chain(&r.schemes),
                permission: r.permission,
                token_policy,
                minter,
                login_field: r.login_field,
                token_fields: r.token_fields.clone(),
                upstream: r.upstream.clone().map(|u| Upstream::new(&r.path, u, route_metrics.clone())),
                scheme_metrics: schemes.chain(&r.schemes).names().map(SchemeMetrics::new).collect(),
                metrics: route_metrics,
                access_log: r.access_log,
                throttles: r.throttles.clone(),
                login_url: r.login_url.clone(),
                page: r.page.clone(),
                after_logout: r
                    .login_url
                    .clone()
                    .or_else(|| sign_in.clone())
                    .unwrap_or_else(|| "/".to_owned()),
                cors_allow_preflight: r.cors_allow_preflight,
            });
        }
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::server_config(&files.cert, &files.key, &config.file)?),
            None => None,
        };
        // Exact routes first, then the longest prefix.
        routes.sort_by_key(|r| (r.pattern.prefix, std::cmp::Reverse(r.pattern.path.len())));
        Ok(App {
            routes,
            services,
            anonymous_user: config.anonymous_user.clone(),
            anonymous_auth: config.anonymous_auth.clone(),
            token_secret,
            session: config.session.clone(),
            gateway: config.gateway.clone(),
            unrouted: RouteMetrics::unrouted(),
            body_timeout: config.body_timeout,
            header_timeout: config.header_timeout,
            allowed_hosts: config.allowed_hosts.clone(),
            counter,
            tls,
            h2c: config.h2c,
            openapi: config.routes.iter().any(|r| r.handler == Handler::OpenApi).then(|| {
                Bytes::from(serde_json::to_vec(&crate::openapi::document(config)).unwrap_or_default())
            }),
        })
    }

    /// The TLS settings new connections are accepted with, when the port serves TLS.
    pub fn tls(&self) -> Option<&Arc<tokio_rustls::rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// How long a connection may take to send a request's head (`[server] header_timeout`).
    pub fn header_timeout(&self) -> std::time::Duration {
        self.header_timeout
    }

    /// Whether plain connections may speak HTTP/2 (`[server] h2c`).
    pub fn h2c(&self) -> bool {
        self.h2c
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The chain a path is protected by, if it is routed.
    pub fn chain_for(&self, path: &str) -> Option<&Chain> {
        // Only a path in normal form names a route (routes.rs).
        routes::check(path).ok()?;
        self.route(path).map(|r| &r.chain)
    }

    /// The route a path in normal form names (`handle` has checked it).
    fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.pattern.matches(path))
    }

    /// Answers one request, counting it and logging it. `app` is the caller's handle on
    /// the app (a connection's own reference), kept until the answer is made.
    pub async fn handle(
        app: impl std::ops::Deref<Target = App> + Send,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let this: &App = &app;
        let started = Instant::now();
        let method = req.method().clone();
        // A cheap clone (shared bytes); only its path is logged: a query may carry a secret.
        let uri = req.uri().clone();
        let mut record = Record::default();
        let resp = this.answer(req, peer, &mut record).await;
        let status = resp.status().as_u16();
        let route = record.route.map_or(&this.unrouted, |r| &r.metrics);
        route.answered(status);
        if record.route.is_none_or(|r| r.access_log) {
            let upstream_status = record.upstream.as_ref().map(|u| u.status);
            let upstream_ms = record.upstream.as_ref().map(|u| u.elapsed.as_secs_f64() * 1000.0);
            info!(
                target: "authhost::access",
                %method,
                path = uri.path(),
                route = route.name(),
                scheme = record.scheme.unwrap_or("-"),
                outcome = record.outcome,
                status,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                upstream_status,
                upstream_ms,
                "request"
            );
        }
        resp
    }

    async fn answer<'r>(
        &'r self,
        req: Request<Incoming>,
        peer: SocketAddr,
        record: &mut Record<'r>,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path();
        debug!(method = %parts.method, path, "request started");
        if let Err(bad) = routes::check(path) {
            return Refusal::BadPath { detail: bad.detail() }.into_response();
        }
        // HTTP/2 names the host in `:authority` (RFC 9113 8.3.1): it becomes the Host
        // header every scheme, handler and upstream reads, and a Host that names another
        // is refused.
        if parts.version == Version::HTTP_2 {
            if let Some(authority) = parts.uri.authority() {
                match parts.headers.get(HOST) {
                    Some(host) if host.as_bytes() != authority.as_str().as_bytes() => {
                        return Refusal::BadHost.into_response()
                    }
                    Some(_) => {}
                    None => match HeaderValue::from_str(authority.as_str()) {
                        Ok(value) => {
                            parts.headers.insert(HOST, value);
                        }
                        Err(_) => return Refusal::BadHost.into_response(),
                    },
                }
            }
        }
        // One pass over the head: its size, and its Host headers.
        let (mut head_bytes, mut hosts) = (0usize, 0usize);
        for (name, value) in &parts.headers {
            head_bytes += name.as_str().len() + value.len() + 4;
            hosts += usize::from(name == HOST);
        }
        // RFC 9112: an HTTP/1.1 request carries exactly one Host; none may carry two.
        if hosts > 1 || (hosts == 0 && parts.version == Version::HTTP_11) {
            return Refusal::BadHost.into_response();
        }
        // Django's ALLOWED_HOSTS, before any scheme runs.
        if let Some(allowed) = &self.allowed_hosts {
            let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !routes::host_allowed(host, allowed) {
                return Refusal::BadHost.into_response();
            }
        }
        let Some(route) = self.route(path) else {
            return Refusal::NotFound.into_response();
        };
        record.route = Some(route);
        if head_bytes > MAX_HEAD_BYTES {
            return Refusal::HeadersTooLarge.into_response();
        }
        // No client may claim an identity: the headers authhost sets are never taken in.
        identity::strip(&mut parts.headers, &self.gateway);
        let client = forwarded::client_addr(peer, &parts.headers, &self.gateway.trusted_proxies);
        match route.handler {
            Handler::Proxy => Box::pin(self.proxy(route, parts, body, peer, client, record)).await,
            Handler::ForwardAuth => self.forward_auth(route, &parts, client, record).await,
            _ => self.serve_handler(route, &parts, body, client, record).await,
        }
    }

    /// A built-in handler's route: the body (small: forms, JSON credentials) is read whole
    /// first, since handlers and schemes may read it.
    async fn serve_handler<'r>(
        &'r self,
        route: &'r Route,
        parts: &Parts,
        body: Incoming,
        client: SocketAddr,
        record: &mut Record<'r>,
    ) -> Response<Body> {
        // A declared length over the limit is refused from the head: no body byte is read
        // and no `100 Continue` invites one (hyper sends it only when the body is polled).
        if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
            return Refusal::BodyTooLarge.into_response();
        }
        let body = match Limited::new(body, MAX_BODY_BYTES) {
            body if body.size_hint().exact() == Some(0) => Ok(Ok(Bytes::new())),
            body => tokio::time::timeout(self.body_timeout, body.collect())
                .await
                .map(|read| read.map(|collected| collected.to_bytes())),
        };
        let body = match body {
            Ok(Ok(body)) => body,
            Err(_) => return Refusal::BodyTimeout.into_response(),
            Ok(Err(err)) if err.is::<LengthLimitError>() => return Refusal::BodyTooLarge.into_response(),
            Ok(Err(err)) => {
                debug!(error = %err, "could not read the request body");
                return Refusal::BadBody.into_response();
            }
        };
        let joined = joined_headers(&parts.headers);
        let views = header_views(&parts.headers, &joined);
        let view = head_view(parts, &views, client).with_body(&body);
        let principal = match self.authorize(route, &view, record).await {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        match self.run_handler(route, &view, principal).await {
            Ok(resp) | Err(resp) => resp,
        }
    }

    /// A proxy route: the chain and permission decide on the head alone, then the request,
    /// its body streaming, goes on to the upstream.
    async fn proxy<'r>(
        &'r self,
        route: &'r Route,
        parts: Parts,
        body: Incoming,
        peer: SocketAddr,
        client: SocketAddr,
        record: &mut Record<'r>,
    ) -> Response<Body> {
        let Some(upstream) = route.upstream.as_ref() else {
            return host_error(&Error::config("a proxy route without its upstream"));
        };
        let principal = {
            let joined = joined_headers(&parts.headers);
            let views = header_views(&parts.headers, &joined);
            let view = head_view(&parts, &views, client);
            match self.authorize(route, &view, record).await {
                Ok(principal) => principal,
                Err(refused) => return refused,
            }
        };
        let forward = Forward {
            parts,
            body: Body::Stream(body),
            peer,
            trusted_peer: forwarded::is_trusted(peer.ip(), &self.gateway.trusted_proxies),
            tls: self.tls.is_some(),
            identity: principal.identity(),
            gateway: &self.gateway,
            session_cookie: &self.session.cookie_name,
        };
        let (resp, report) = upstream.forward(forward).await;
        record.upstream = report;
        resp
    }

    /// Forward-auth: the route the ORIGINAL request names decides, with its own chain and
    /// permission; 200 with the identity headers when it allows. Anything that cannot be
    /// decided (no original request, a path not in normal form, no route, a forward_auth
    /// route) is 403: fail closed.
    async fn forward_auth<'r>(
        &'r self,
        own: &'r Route,
        parts: &Parts,
        client: SocketAddr,
        record: &mut Record<'r>,
    ) -> Response<Body> {
        let path = parts.uri.path();
        let rest = match routes::below(&own.pattern.path, path).filter(|_| own.pattern.prefix) {
            Some(rest) => match parts.uri.query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_owned(),
            },
            None => String::new(),
        };
        let refuse = |detail: &str| Refusal::Forbidden { detail: detail.to_owned() }.into_response();
        let Ok(original) = forward_auth::original(&parts.headers, &parts.method, &rest) else {
            return refuse(NO_ORIGINAL);
        };
        if let Err(bad) = routes::check(&original.path) {
            return refuse(bad.detail());
        }
        let route = match self.route(&original.path) {
            Some(route) if route.handler != Handler::ForwardAuth => route,
            _ => return refuse(PERMISSION_DENIED),
        };
        record.route = Some(route);
        record.may_redirect = original.passes_redirects;
        let joined = joined_headers(&parts.headers);
        let views = header_views(&parts.headers, &joined);
        let view =
            RequestView::new(original.method.as_str(), &original.path, &original.query, &views, client);
        match self.authorize(route, &view, record).await {
            Ok(principal) => self.allowed(&principal),
            Err(refused) => refused,
        }
    }

    /// 200, empty, with the identity headers of an authenticated request.
    fn allowed(&self, principal: &Principal<'_>) -> Response<Body> {
        let mut resp = Response::new(Body::Empty);
        if let Some(identity) = principal.identity() {
            identity::set(resp.headers_mut(), &self.gateway, identity);
        }
        resp
    }

    /// DRF's `initial()`: the route's chain, then its permission, then its throttles.
    /// Every route kind calls this one function: handlers, the proxy and forward-auth.
    /// A CORS preflight on a route that lets them pass skips the chain and the permission:
    /// it is anonymous (browsers never send credentials on one) and only throttled.
    async fn authorize<'r>(
        &self,
        route: &'r Route,
        req: &RequestView<'_>,
        record: &mut Record<'r>,
    ) -> Result<Principal<'r>, Response<Body>> {
        if route.cors_allow_preflight && is_cors_preflight(req) {
            record.outcome = "preflight";
            self.throttle(route, None, req, record).await?;
            return Ok(Principal { user: None, auth: None, scheme: None, token_id: None });
        }
        let mut timer = SchemeTimer { metrics: &route.scheme_metrics, started: None };
        let verdict = route.chain.authenticate_watched(req, &self.services, &mut timer).await;
        record.outcome = match &verdict {
            Verdict::Authenticated { .. } => "authenticated",
            Verdict::Anonymous => "anonymous",
            Verdict::Failed { .. } => "failed",
            Verdict::Forbidden { .. } => "forbidden",
            Verdict::Fault => "fault",
            Verdict::Busy => "busy",
            Verdict::Unavailable => "unavailable",
            Verdict::Throttled { .. } => "throttled",
        };
        let principal = match verdict {
            Verdict::Authenticated { user, auth, position } => {
                let by = route.chain.scheme(position);
                // The token in use, when a token scheme authenticated the request.
                let token_id = by
                    .filter(|s| s.token_policy().is_some())
                    .and_then(|_| auth.as_deref().and_then(|a| a.parse::<i64>().ok()));
                Principal { user: Some(user), auth, scheme: by.map(|s| s.name()), token_id }
            }
            Verdict::Anonymous => {
                Principal { user: None, auth: self.anonymous_auth.clone(), scheme: None, token_id: None }
            }
            Verdict::Failed { detail } => {
                return Err(self.not_authenticated(route, req, detail, record.may_redirect))
            }
            Verdict::Forbidden { detail } => return Err(Refusal::Forbidden { detail }.into_response()),
            Verdict::Fault => return Err(Refusal::Internal.into_response()),
            Verdict::Busy => return Err(Refusal::Busy.into_response()),
            Verdict::Unavailable => return Err(Refusal::StoreUnavailable.into_response()),
            Verdict::Throttled { wait } => {
                route.metrics.throttled();
                return Err(Refusal::Throttled { wait }.into_response());
            }
        };
        record.scheme = principal.scheme;
        if !route.permission.allows(principal.subject(req.method())) {
            record.outcome = "denied";
            // DRF's permission_denied: not authenticated only when there are authenticators.
            return Err(if principal.user.is_none() && !route.chain.is_empty() {
                self.not_authenticated(route, req, NOT_AUTHENTICATED.to_owned(), record.may_redirect)
            } else {
                Refusal::Forbidden { detail: PERMISSION_DENIED.to_owned() }.into_response()
            });
        }
        self.throttle(route, principal.user.as_ref().map(|u| u.id), req, record).await?;
        Ok(principal)
    }

    /// The route's throttles (DRF's `check_throttles`) for a request already allowed, as
    /// `user` (None: anonymous).
    async fn throttle(
        &self,
        route: &Route,
        user: Option<i64>,
        req: &RequestView<'_>,
        record: &mut Record<'_>,
    ) -> Result<(), Response<Body>> {
        if route.throttles.is_empty() {
            return Ok(());
        }
        match Box::pin(self.counter.check(&route.throttles, user, req.peer().ip())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => {
                record.outcome = "throttled";
                route.metrics.throttled();
                Err(Refusal::Throttled { wait }.into_response())
            }
            Err(err) => Err(host_error(&err)),
        }
    }

    async fn run_handler(
        &self,
        route: &Route,
        req: &RequestView<'_>,
        principal: Principal<'_>,
    ) -> Result<Response<Body>, Response<Body>> {
        let method = req.method();
        let Principal { user, auth, scheme, token_id } = &principal;
        match route.handler {
            Handler::Whoami if matches!(method, "GET" | "HEAD" | "POST") => {
                let username = match user {
                    Some(u) => Some(u.username.as_str()),
                    None => self.anonymous_user.as_deref(),
                };
                let is_staff = user.as_ref().is_some_and(|u| u.is_staff);
                let body = Whoami { user: username, auth: auth.as_deref(), scheme: *scheme, is_staff };
                Ok(json_response(StatusCode::OK, &body))
            }
            Handler::Allow => Ok(self.allowed(&principal)),
            Handler::Metrics if matches!(method, "GET" | "HEAD") => {
                let accept = req.header("accept").unwrap_or_default();
                let (text, content_type) = metrics::render(&self.services.queue_depths(), &accept);
                let mut resp = Response::new(Body::full(text));
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                Ok(resp)
            }
            Handler::Metrics => Err(method_not_allowed(method, "GET, HEAD")),
            Handler::OpenApi if matches!(method, "GET" | "HEAD") => {
                let mut resp = Response::new(Body::full(self.openapi.clone().unwrap_or_default()));
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(resp)
            }
            Handler::OpenApi => Err(method_not_allowed(method, "GET, HEAD")),
            Handler::Health if matches!(method, "GET" | "HEAD") => Ok(match self.services.health() {
                Ok(()) => json_response(StatusCode::OK, &json!({ "status": "ok" })),
                Err(reason) => {
                    error!(reason, "health: unavailable");
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({ "status": "unavailable", "detail": reason }),
                    )
                }
            }),
            Handler::ObtainToken if method == "POST" => Ok(Box::pin(self.obtain_token(route, req)).await),
            Handler::Whoami => Err(method_not_allowed(method, "GET, HEAD, POST")),
            Handler::ObtainToken => Err(method_not_allowed(method, "POST")),
            Handler::Login if matches!(method, "GET" | "HEAD") => Ok(session::csrf_token(&self.session, req)),
            Handler::Login if method == "POST" => {
                Ok(Box::pin(session::login(&self.services, &self.session, req, route.login_field))
                    .await
                    .unwrap_or_else(|e| host_error(&e)))
            }
            Handler::Logout if method == "POST" => {
                Ok(Box::pin(session::logout(&self.services, &self.session, req))
                    .await
                    .unwrap_or_else(|e| host_error(&e)))
            }
            Handler::LoginToken | Handler::LogoutToken | Handler::LogoutAll if method != "POST" => {
                Err(method_not_allowed(method, "POST"))
            }
            Handler::LoginToken | Handler::LogoutToken | Handler::LogoutAll => {
                let Some(user) = user.as_ref() else {
                    return Err(self.not_authenticated(route, req, NOT_AUTHENTICATED.to_owned(), false));
                };
                let answer = match (route.handler, &route.token_policy, *token_id) {
                    (Handler::LoginToken, Some(policy), _) => {
                        Box::pin(tokens::login_token(&self.services, policy, user, req)).await
                    }
                    (Handler::LogoutToken, _, Some(id)) => {
                        Box::pin(tokens::logout_token(&self.services, user, id)).await
                    }
                    (Handler::LogoutToken, _, None) => {
                        return Err(detail_response(
                            StatusCode::BAD_REQUEST,
                            "Not authenticated with a token.",
                        ))
                    }
                    _ => Box::pin(tokens::logout_all(&self.services, user)).await,
                };
                Ok(answer.unwrap_or_else(|e| host_error(&e)))
            }
            Handler::ObtainJwt | Handler::RefreshJwt | Handler::VerifyJwt if method != "POST" => {
                Err(method_not_allowed(method, "POST"))
            }
            Handler::ObtainJwt | Handler::RefreshJwt | Handler::VerifyJwt => {
                let Some(minter) = route.minter.as_deref() else {
                    return Err(host_error(&Error::config("a JWT route without its scheme")));
                };
                let answer = match route.handler {
                    Handler::ObtainJwt => {
                        Box::pin(jwt::obtain(&self.services, minter, req, route.login_field)).await
                    }
                    Handler::RefreshJwt => Box::pin(jwt::refresh(&self.services, minter, req)).await,
                    _ => Box::pin(jwt::verify(&self.services, minter, req)).await,
                };
                Ok(answer.unwrap_or_else(|e| host_error(&e)))
            }
            Handler::LoginPage | Handler::LogoutPage => {
                let Some(page) = route.page.as_deref() else {
                    return Err(host_error(&Error::config("a page route without its template")));
                };
                let ctx = PageContext { page, action: &route.pattern.path, login_url: &route.after_logout };
                let (services, session) = (&*self.services, &self.session);
                let answer = match (route.handler, method) {
                    (Handler::LoginPage, "GET" | "HEAD") => Ok(pages::login_form(ctx, session, req)),
                    (Handler::LoginPage, "POST") => {
                        Box::pin(pages::login_submit(services, ctx, session, req)).await
                    }
                    (Handler::LogoutPage, "GET" | "HEAD") => {
                        Box::pin(pages::logout_form(services, ctx, session, req)).await
                    }
                    (Handler::LogoutPage, "POST") => {
                        Box::pin(pages::logout_submit(services, ctx, session, req)).await
                    }
                    _ => return Err(method_not_allowed(method, "GET, HEAD, POST")),
                };
                answer.map_err(|err| host_error(&err))
            }
            Handler::Login => Err(method_not_allowed(method, "GET, HEAD, POST")),
            Handler::Logout => Err(method_not_allowed(method, "POST")),
            Handler::Health => Err(method_not_allowed(method, "GET, HEAD")),
            // Answered before any handler runs.
            Handler::Proxy | Handler::ForwardAuth => Err(Refusal::NotFound.into_response()),
        }
    }

    /// DRF's `obtain_auth_token`, or a custom `ObtainAuthToken` answering `route.token_fields`.
    async fn obtain_token(&self, route: &Route, req: &RequestView<'_>) -> Response<Body> {
        let user = match endpoints::active_user(&self.services, req, route.login_field).await {
            Ok(Ok(user)) => user,
            Ok(Err(answer)) => return answer,
            Err(err) => return host_error(&err),
        };
        let Some(secret) = self.token_secret.clone() else {
            return host_error(&Error::config("no token secret loaded"));
        };
        match self.services.get_or_create_token(secret, user.username.to_string()).await {
            Ok(Some(key)) => {
                json_response(StatusCode::OK, &obtain_token::answer(&route.token_fields, &key, &user))
            }
            Ok(None) => json_response(StatusCode::BAD_REQUEST, &obtain_token::bad_credentials()),
            Err(err) => host_error(&err),
        }
    }

    fn not_authenticated(
        &self,
        route: &Route,
        req: &RequestView<'_>,
        detail: String,
        may_redirect: bool,
    ) -> Response<Body> {
        // A browser navigating sees the sign-in page; API clients keep DRF's answer.
        if let Some(login_url) = route.login_url.as_deref().filter(|_| is_navigation(req)) {
            let location = login_redirect(login_url, req, self.session.secure);
            if may_redirect {
                return pages::redirect(StatusCode::FOUND, &location);
            }
            // nginx's auth_request passes no redirect: a 401 (never the 403 a chain without
            // a challenge gives) carrying where to go, which its `error_page 401` sends the
            // browser to (docs/gateway.md).
            let mut resp = detail_response(StatusCode::UNAUTHORIZED, &detail);
            if let Ok(value) = hyper::header::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(X_AUTHHOST_LOGIN, value);
            }
            return resp;
        }
        match route.chain.challenge(req) {
            Ok(challenge) => Refusal::Unauthenticated { detail, challenge }.into_response(),
            Err(Faulted) => Refusal::Internal.into_response(),
        }
    }
}

/// A CORS preflight (Fetch: an OPTIONS request with `Origin` and
/// `Access-Control-Request-Method`), as the original request forward-auth asks about or as
/// the request itself.
fn is_cors_preflight(req: &RequestView<'_>) -> bool {
    req.method() == "OPTIONS"
        && req.header_bytes("origin").is_some()
        && req.header_bytes("access-control-request-method").is_some()
}

/// A host failure in a handler: 503 when a queue is full or the store cannot answer in
/// time, 429 for a throttled login, else 500 with the cause logged.
fn host_error(err: &Error) -> Response<Body> {
    if err.is_busy() {
        return Refusal::Busy.into_response();
    }
    if err.is_unavailable() {
        let cause = err.with_cause();
        warn!(cause, "store unavailable: {cause}");
        return Refusal::StoreUnavailable.into_response();
    }
    if let Some(wait) = err.throttled_wait() {
        return Refusal::Throttled { wait }.into_response();
    }
    error!(cause = err.with_cause(), "handler failed");
    Refusal::Internal.into_response()
}

/// How a host follows its store's change log.
enum Follower {
    /// SQLite: a thread with a connection of its own.
    Thread(Box<dyn store::StoreConn>),
    /// PostgreSQL: async tasks (the change log, and the purge of expired credentials).
    Task(Arc<PgBackend>),
}

/// On forward-auth's 401 to nginx for a browser navigation: the sign-in URL (with `next`)
/// nginx should redirect the browser to.
const X_AUTHHOST_LOGIN: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-authhost-login");

/// A browser navigation: GET or HEAD, asking for HTML, carrying no `Authorization` (an API
/// client that sends credentials wants DRF's answer, whatever it accepts).
fn is_navigation(req: &RequestView<'_>) -> bool {
    matches!(req.method(), "GET" | "HEAD")
        && req.header("authorization").is_none()
        && req.header("accept").is_some_and(|accept| accept.contains("text/html"))
}

/// `login_url?next=<the original URL>`, as Django's `redirect_to_login` builds it: the path
/// and query, or the whole URL when the sign-in page is on another origin (the host and
/// scheme from `X-Forwarded-Host` and `X-Forwarded-Proto` when a proxy sent them).
fn login_redirect(login_url: &str, req: &RequestView<'_>, secure: bool) -> String {
    let mut next = req.path().to_owned();
    if !req.query().is_empty() {
        next.push('?');
        next.push_str(req.query());
    }
    if !login_url.starts_with('/') {
        let proto = req.header("x-forwarded-proto").map(|p| p.into_owned());
        let proto = proto.unwrap_or_else(|| if secure { "https" } else { "http" }.to_owned());
        let host = req.header("x-forwarded-host").or_else(|| req.header("host")).unwrap_or_default();
        next = format!("{proto}://{host}{next}");
    }
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", &next).finish();
    let separator = if login_url.contains('?') { '&' } else { '?' };
    format!("{login_url}{separator}{query}")
}

fn method_not_allowed(method: &str, allow: &'static str) -> Response<Body> {
    Refusal::MethodNotAllowed { method: method.to_owned(), allow }.into_response()
}

/// The request's head as schemes see it, from `client` (the address `X-Forwarded-For` gives
/// when a trusted proxy sent it).
fn head_view<'a>(parts: &'a Parts, headers: &'a [Header<'a>], client: SocketAddr) -> RequestView<'a> {
    RequestView::new(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        headers,
        client,
    )
}

/// The headers as schemes see them: hyper's map borrowed directly, or, when a name repeats,
/// `joined` (from `joined_headers`).
fn header_views<'h>(map: &'h hyper::HeaderMap, joined: &'h [(&'h str, Cow<'h, [u8]>)]) -> Vec<Header<'h>> {
    if joined.is_empty() {
        map.iter().map(|(n, v)| Header::new(n.as_str(), v.as_bytes())).collect()
    } else {
        joined.iter().map(|(n, v)| Header::new(n, v)).collect()
    }
}

/// Headers with repeated ones joined, as WSGI servers do: `, ` between values, `; ` for
/// cookies. So no scheme can be confused about which `Authorization` header counts. Empty
/// when no name repeats (the usual case): the views then borrow hyper's map.
fn joined_headers(map: &hyper::HeaderMap) -> Vec<(&str, Cow<'_, [u8]>)> {
    if map.keys_len() == map.len() {
        return Vec::new();
    }
    map.keys()
        .map(|name| {
            let mut values = map.get_all(name).iter();
            let first = values.next().map(|v| v.as_bytes()).unwrap_or_default();
            let mut value = Cow::Borrowed(first);
            let separator: &[u8] = if name == hyper::header::COOKIE { b"; " } else { b", " };
            for next in values {
                let joined = value.to_mut();
                joined.extend_from_slice(separator);
                joined.extend_from_slice(next.as_bytes());
            }
            (name.as_str(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what a function returns, from the function alone (no call is made).
    fn returned<A, B, C, R>(_: impl FnOnce(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    fn returned4<A, B, C, D, R>(_: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every request's future is built, then moved a few times (into hyper's slot, through
    /// each await), and a move is a memcpy of its whole size, whatever path the request
    /// takes. So the rare paths (the store, logins, JWTs, the proxy, throttle windows in
    /// Redis or PostgreSQL) are boxed where they are awaited, and what every request
    /// carries stays small. A new await on a common path that makes it large fails here.
    #[test]
    fn the_future_every_request_carries_stays_small() {
        let request = returned(|app: Arc<App>, req: Request<Incoming>, peer: SocketAddr| {
            crate::server::guarded(App::handle(app, req, peer))
        });
        // 4.7 KiB before the rare paths were boxed; 2.3 KiB after.
        assert!(request <= 2560, "a request's future is {request} bytes; box the new rare path");
        let chain = returned4(Chain::authenticate_watched::<()>);
        assert!(chain <= 320, "a chain's future is {chain} bytes; box the new rare path");
    }
}
