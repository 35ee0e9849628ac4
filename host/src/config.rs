//! The TOML config: parsed into `RawConfig` (serde, unknown keys refused), then resolved
//! and validated into [`Config`]. Every error names the file, the key and the fix.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use authhost_plugin_api::files::MAX_SMALL_FILE;
use authhost_plugin_api::net::Cidr;
use authhost_plugin_api::options::{edit_distance, parse_duration, DURATION_FORMS, MAX_DURATION};
use authhost_plugin_api::{LoginField, OptionEntry};
use hyper::header::HeaderName;
use hyper::http::uri::Authority;
use serde::Deserialize;

use crate::endpoints::pages::Page;
use crate::error::Error;
use crate::permission::Permission;
use crate::routes;
use crate::throttle::{Rate, Throttle};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    anonymous: RawAnonymous,
    #[serde(default)]
    session: RawSession,
    #[serde(default, rename = "scheme")]
    schemes: Vec<toml::Table>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    throttle: RawThrottle,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    body_timeout: Option<toml::Value>,
    header_timeout: Option<toml::Value>,
    max_connections: Option<i64>,
    allowed_hosts: Option<Vec<String>>,
    shutdown_timeout: Option<toml::Value>,
    store_workers: Option<usize>,
    password_workers: Option<usize>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    h2c: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    user_cache_ttl: Option<toml::Value>,
    cache_capacity: Option<i64>,
    change_poll: Option<toml::Value>,
    change_log_keep: Option<toml::Value>,
    token_secret_file: Option<String>,
    token_for_new_users: Option<bool>,
    token_refresh_every: Option<toml::Value>,
    busy_timeout: Option<toml::Value>,
    purge_every: Option<toml::Value>,
    password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    dir: Option<String>,
    allow_writable: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnonymous {
    user: Option<toml::Value>,
    auth: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    cookie_name: Option<String>,
    csrf_cookie_name: Option<String>,
    csrf_header_name: Option<String>,
    ttl: Option<toml::Value>,
    secure: Option<bool>,
    trusted_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    schemes: Vec<String>,
    permission: Option<String>,
    #[serde(default)]
    throttle: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    /// Scope → `"N/period"`.
    #[serde(default)]
    rates: std::collections::BTreeMap<String, String>,
    /// Failed logins allowed per client address and per name, `"N/period"`.
    failures: Option<String>,
    /// Shared windows in Redis: `"redis://HOST:PORT/DB"`.
    url: Option<String>,
    password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    trusted_proxies: Option<Vec<String>>,
    user_header: Option<String>,
    user_id_header: Option<String>,
    email_header: Option<String>,
    scheme_header: Option<String>,
    staff_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    #[serde(default)]
    prefix: bool,
    /// A built-in handler; none when the route has an `upstream`.
    handler: Option<String>,
    /// Gateway: forward allowed requests to `http://HOST:PORT[/base]`.
    upstream: Option<String>,
    strip_prefix: Option<bool>,
    strip_credentials: Option<bool>,
    /// An https upstream's CA certificates (PEM), instead of the system's.
    upstream_ca_file: Option<String>,
    /// false: the upstream gets its own `HOST[:PORT]` as `Host`, not the client's.
    pass_host_header: Option<bool>,
    /// Mutual TLS towards an https upstream: authhost's client certificate and key (PEM).
    upstream_client_cert_file: Option<String>,
    upstream_client_key_file: Option<String>,
    connect_timeout: Option<toml::Value>,
    timeout: Option<toml::Value>,
    /// One access-log line per request (default: on, but for health and metrics).
    access_log: Option<bool>,
    /// The throttle scopes that apply (default: `[defaults] throttle`).
    throttle: Option<Vec<String>>,
    schemes: Option<Vec<String>>,
    permission: Option<String>,
    /// For `login_token`: the token scheme whose policy new tokens follow.
    token_scheme: Option<String>,
    /// For `obtain_token`, `login` and `obtain_jwt`: `username` (default) or `email`.
    login_field: Option<String>,
    /// For `obtain_token`: what the answer carries (DRF's custom `ObtainAuthToken`).
    fields: Option<Vec<String>>,
    /// Unauthenticated browser navigations go to this sign-in page (302, with `next`).
    login_url: Option<String>,
    /// For `login_page` and `logout_page`: an HTML template of the operator's.
    template: Option<String>,
    /// Proxy and `allow` routes: CORS preflights pass without credentials.
    cors_allow_preflight: Option<bool>,
}

/// What an `obtain_token` answer can carry besides the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenField {
    Token,
    UserId,
    Username,
    Email,
    IsStaff,
}

impl TokenField {
    const NAMES: [&'static str; 5] = ["token", "user_id", "username", "email", "is_staff"];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "token" => TokenField::Token,
            "user_id" => TokenField::UserId,
            "username" => TokenField::Username,
            "email" => TokenField::Email,
            "is_staff" => TokenField::IsStaff,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenField::Token => "token",
            TokenField::UserId => "user_id",
            TokenField::Username => "username",
            TokenField::Email => "email",
            TokenField::IsStaff => "is_staff",
        }
    }
}

/// A built-in handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// 200 `{"user", "auth", "scheme", "is_staff"}` for GET and POST.
    Whoami,
    /// 200 `{"status": "ok"}`.
    Health,
    /// DRF's `obtain_auth_token`.
    ObtainToken,
    /// GET: a CSRF token; POST: credentials → a session cookie (Django's login view).
    Login,
    /// POST: ends the session.
    Logout,
    /// POST, authenticated (by Basic, say): a new per-client token (knox's login view).
    LoginToken,
    /// POST: deletes the token the request was authenticated with.
    LogoutToken,
    /// POST: deletes every token of the user's.
    LogoutAll,
    /// POST username, password: a JWT (drf-jwt's `obtain_jwt_token`).
    ObtainJwt,
    /// POST `{"token"}`: a new JWT, within the refresh window.
    RefreshJwt,
    /// POST `{"token"}`: the token back when it is good.
    VerifyJwt,
    /// Answers for another proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
    /// ForwardAuth, Envoy `ext_authz`): the route the original request names decides.
    ForwardAuth,
    /// A decision-only route for forward-auth: 200 when the chain and permission allow.
    Allow,
    /// The Prometheus text format.
    Metrics,
    /// GET: an HTML sign-in form; POST: a session, then 303 to a safe `next`.
    LoginPage,
    /// GET: an HTML confirmation form; POST: ends the session, then 303.
    LogoutPage,
    /// GET: an OpenAPI 3.1 document of the configured routes.
    OpenApi,
    /// A route with an `upstream`: allowed requests are forwarded to it.
    Proxy,
}

impl Handler {
    /// Every handler a route can name (`Proxy` comes from `upstream`, not by name).
    const NAMED: [Handler; 17] = [
        Handler::Whoami,
        Handler::Health,
        Handler::ObtainToken,
        Handler::Login,
        Handler::Logout,
        Handler::LoginToken,
        Handler::LogoutToken,
        Handler::LogoutAll,
        Handler::ObtainJwt,
        Handler::RefreshJwt,
        Handler::VerifyJwt,
        Handler::ForwardAuth,
        Handler::Allow,
        Handler::Metrics,
        Handler::LoginPage,
        Handler::LogoutPage,
        Handler::OpenApi,
    ];

    /// Views that issue credentials of the scheme the route names in `token_scheme`.
    pub fn issues(self) -> bool {
        matches!(self, Handler::LoginToken | Handler::ObtainJwt | Handler::RefreshJwt | Handler::VerifyJwt)
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Handler::Whoami => "whoami",
            Handler::Health => "health",
            Handler::ObtainToken => "obtain_token",
            Handler::Login => "login",
            Handler::Logout => "logout",
            Handler::LoginToken => "login_token",
            Handler::LogoutToken => "logout_token",
            Handler::LogoutAll => "logout_all",
            Handler::ObtainJwt => "obtain_jwt",
            Handler::RefreshJwt => "refresh_jwt",
            Handler::VerifyJwt => "verify_jwt",
            Handler::ForwardAuth => "forward_auth",
            Handler::Allow => "allow",
            Handler::Metrics => "metrics",
            Handler::LoginPage => "login_page",
            Handler::LogoutPage => "logout_page",
            Handler::OpenApi => "openapi",
            Handler::Proxy => "proxy",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Handler::NAMED.into_iter().find(|h| h.name() == name)
    }

    fn names() -> Vec<&'static str> {
        Handler::NAMED.iter().map(|h| h.name()).collect()
    }
}

/// `[session]`: the cookies the login view sets and the session scheme reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub csrf_cookie_name: String,
    pub csrf_header_name: String,
    pub ttl: Duration,
    /// Cookies get `Secure`, and the host's own origin is `https://`.
    pub secure: bool,
    pub trusted_origins: Vec<String>,
}

/// `[gateway]`: whose `X-Forwarded-For` is believed, and the identity headers' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub trusted_proxies: Vec<Cidr>,
    pub user_header: HeaderName,
    pub user_id_header: HeaderName,
    pub email_header: HeaderName,
    pub scheme_header: HeaderName,
    pub staff_header: HeaderName,
}

impl GatewayConfig {
    /// The five identity headers' names.
    pub fn identity_headers(&self) -> [&HeaderName; 5] {
        [&self.user_header, &self.user_id_header, &self.email_header, &self.scheme_header, &self.staff_header]
    }
}

/// A proxy route's upstream and how requests reach it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `HOST:PORT`.
    pub authority: Authority,
    /// An `https://` upstream: its TLS settings, the upstream's certificate checked
    /// against `upstream_ca_file`'s CA certificates or else the system's roots (read when
    /// the config is, so a reload picks up new ones).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// A path the forwarded path is put under (`""` for none; never ends with `/`).
    pub base: String,
    /// Forward the path after the route's own `path`, instead of the whole path.
    pub strip_prefix: bool,
    /// Remove the `Authorization` header and the session cookie before forwarding.
    pub strip_credentials: bool,
    /// The client's `Host` goes on (default); false: the upstream's own name and port (the
    /// client's stays in `X-Forwarded-Host`).
    pub pass_host_header: bool,
    pub connect_timeout: Duration,
    /// How long the upstream may take to answer with its response head.
    pub timeout: Duration,
}

impl UpstreamConfig {
    /// The upstream as configured: `http://HOST:PORT/base` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.base)
    }

    /// The upstream's own `Host`: its name, and its port unless the scheme's default.
    pub fn host(&self) -> &str {
        let default = if self.tls.is_some() { 443 } else { 80 };
        match self.authority.port_u16() {
            Some(port) if port != default => self.authority.as_str(),
            _ => self.authority.host(),
        }
    }
}

/// One `[[scheme]]`: a plugin library and its options.
#[derive(Debug, Clone)]
pub struct SchemeConfig {
    pub name: String,
    pub library: PathBuf,
    pub options: Vec<OptionEntry>,
}

/// One `[[route]]`, resolved: its chain as indexes into `Config::schemes`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path: String,
    pub prefix: bool,
    pub handler: Handler,
    pub schemes: Vec<usize>,
    pub permission: Permission,
    /// For `login_token`: the index of the token scheme whose policy new tokens follow.
    pub token_scheme: Option<usize>,
    /// Which name logins give to `obtain_token`, `login` and `obtain_jwt`.
    pub login_field: LoginField,
    /// What `obtain_token` answers with, in order (DRF's `{"token"}` by default).
    pub token_fields: Vec<TokenField>,
    /// For a proxy route: where allowed requests go.
    pub upstream: Option<UpstreamConfig>,
    /// Whether each request gets an access-log line.
    pub access_log: bool,
    /// The throttles that apply, in order, after the chain and the permission.
    pub throttles: Vec<Throttle>,
    /// Where unauthenticated browser navigations are sent to sign in (a path, or an http(s)
    /// URL); for `logout_page`, where it goes after logging out without a `next`.
    pub login_url: Option<String>,
    /// For `login_page` and `logout_page`: the page's template (the operator's `template`
    /// file, placed against the config file's folder, or the shipped one), compiled.
    pub page: Option<Arc<Page>>,
    /// A CORS preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) passes
    /// as an anonymous request, with no chain and no permission: a browser never sends
    /// credentials on one. Proxy routes (the upstream answers it) and `allow` routes (for
    /// forward-auth) only.
    pub cors_allow_preflight: bool,
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub listen: SocketAddr,
    /// `[server] tls_cert_file` and `tls_key_file`: the port serves TLS (HTTP/2 and
    /// HTTP/1.1 by ALPN), the files read again on every reload.
    pub tls: Option<TlsFiles>,
    /// `[server] h2c`: HTTP/2 without TLS (prior knowledge) beside HTTP/1.1 on a plain port.
    pub h2c: bool,
    pub shutdown_timeout: Duration,
    /// How long a request body may take to arrive whole (built-in handlers): then 408.
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's head whole, counted from when
    /// it waits for one (it opened, or the previous response was sent): then it is closed.
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait in the backlog.
    pub max_connections: usize,
    /// `[throttle] failures`: failed logins per client address and per name.
    pub failures: Option<Rate>,
    /// `[throttle] url`: the throttle windows live in this Redis, shared by every host
    /// pointed at it (else in the PostgreSQL store when there is one, else in memory).
    pub throttle_url: Option<String>,
    /// Redis's password file (`$AUTHHOST_THROTTLE_PASSWORD` wins), against the config
    /// file's folder.
    pub throttle_password_file: Option<PathBuf>,
    /// Django's ALLOWED_HOSTS (lowercase); None: any host.
    pub allowed_hosts: Option<Vec<String>>,
    pub store_workers: usize,
    pub password_workers: usize,
    pub store_url: String,
    /// How long users, tokens, sessions and verified passwords are served from memory;
    /// zero turns every cache off.
    pub user_cache_ttl: Duration,
    /// How many entries each cache holds at most (0: caching off).
    pub cache_capacity: usize,
    pub change_poll: Duration,
    /// How long a store call may wait (in the queue and for SQLite's locks) before it
    /// answers 503.
    pub busy_timeout: Duration,
    /// How often expired tokens and sessions are purged.
    pub purge_every: Duration,
    /// PostgreSQL: a file holding the store's password (`$AUTHHOST_STORE_PASSWORD` wins),
    /// placed against the config file's folder.
    pub store_password_file: Option<PathBuf>,
    /// How long the store's change log keeps a change.
    pub change_log_keep: Duration,
    /// Where the token secret lives (`$AUTHHOST_TOKEN_SECRET` wins), relative to the
    /// working directory.
    pub token_secret_file: PathBuf,
    /// Every new user gets a token (DRF's post_save recipe): `user add` prints its key.
    pub token_for_new_users: bool,
    /// Refresh on use writes a token's expiry at most this often (60 s).
    pub token_refresh_every: Duration,
    pub anonymous_user: Option<String>,
    pub anonymous_auth: Option<String>,
    pub session: SessionConfig,
    pub schemes: Vec<SchemeConfig>,
    pub routes: Vec<RouteConfig>,
    pub gateway: GatewayConfig,
    /// Load plugin files that other users can write (`[plugins] allow_writable`).
    pub allow_writable_plugins: bool,
    /// Relative paths that earlier releases placed elsewhere (the working directory, the
    /// executable's folder), where a file is found there and not here: serve warns once.
    pub moved: Vec<String>,
}

/// A password from `env`, else from the first line of `file` (the config key `key`).
fn secret(env: &str, file: Option<&Path>, key: &str) -> Result<Option<String>, Error> {
    if let Ok(password) = std::env::var(env) {
        return Ok(Some(password));
    }
    match file {
        None => Ok(None),
        Some(file) => authhost_plugin_api::files::read_text(file, MAX_SMALL_FILE)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| Error::config(format!("{}: {key}: cannot read it: {e}", file.display()))),
    }
}

/// The TLS certificate chain and private key files, placed against the config's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// The first key whose change a running host cannot apply (it holds the listening
    /// socket, the store's connections and the connection limits), when `new` changes one.
    pub fn unchangeable(&self, new: &Config) -> Option<&'static str> {
        [
            ("server.listen", self.listen != new.listen),
            ("store.url", self.store_url != new.store_url),
            ("server.max_connections", self.max_connections != new.max_connections),
            ("server.shutdown_timeout", self.shutdown_timeout != new.shutdown_timeout),
            // The port's scheme (http or https) and its protocols are fixed at start-up;
            // the certificate files may change (and are read again) on every reload.
            ("server.tls_cert_file", self.tls.is_some() != new.tls.is_some()),
            ("server.h2c", self.h2c != new.h2c),
        ]
        .into_iter()
        .find_map(|(key, changed)| changed.then_some(key))
    }

    /// The store's password: `$AUTHHOST_STORE_PASSWORD`, else `[store] password_file`.
    pub fn store_password(&self) -> Result<Option<String>, Error> {
        secret(crate::store::PASSWORD_ENV, self.store_password_file.as_deref(), "store.password_file")
    }

    /// Redis's password: `$AUTHHOST_THROTTLE_PASSWORD`, else `[throttle] password_file`.
    pub fn throttle_password(&self) -> Result<Option<String>, Error> {
        secret(
            crate::throttle::REDIS_PASSWORD_ENV,
            self.throttle_password_file.as_deref(),
            "throttle.password_file",
        )
    }

    /// Reads and validates the config at `file`.
    pub fn load(file: &Path) -> Result<Config, Error> {
        let text = authhost_plugin_api::files::read_text(file, MAX_SMALL_FILE).map_err(|e| {
            Error::config(format!(
                "{}: cannot read the config ({e}); pass --config PATH or set AUTHHOST_CONFIG",
                file.display()
            ))
        })?;
        Config::parse(file, &text)
    }

    /// Validates `text` as if read from `file` (which places relative paths).
    pub fn parse(file: &Path, text: &str) -> Result<Config, Error> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| Error::config(format!("{}: {}", file.display(), e.to_string().trim_end())))?;
        Resolver { file, moved: std::cell::RefCell::default() }.resolve(raw)
    }
}

struct Resolver<'a> {
    file: &'a Path,
    /// Warnings about paths earlier releases placed elsewhere.
    moved: std::cell::RefCell<Vec<String>>,
}

/// Where an earlier release placed a relative path.
enum Was {
    WorkingDir,
    Folder(PathBuf),
}

impl Resolver<'_> {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::config(format!("{}: {key}: {message}", self.file.display()))
    }

    fn config_dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// A path from the config: absolute as given, relative against the config's folder.
    /// Where an earlier release placed it against `was` and a file is there but not here,
    /// the move is noted for a warning at start-up.
    fn placed(&self, key: &str, path: &str, was: Was) -> PathBuf {
        let given = Path::new(path);
        let here = self.config_dir().join(given);
        if given.is_absolute() {
            return here;
        }
        let before = match was {
            Was::WorkingDir => given.to_owned(),
            Was::Folder(dir) => dir.join(given),
        };
        let same = match (before.canonicalize(), here.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            (Ok(_), Err(_)) => false,
            (Err(_), _) => true,
        };
        if !same {
            self.moved.borrow_mut().push(format!(
                "{}: {key} {path:?} now resolves against the config's folder, to {}; {} (where earlier \
                 releases looked) is not used: move it there, or give an absolute path",
                self.file.display(),
                here.display(),
                before.display()
            ));
        }
        here
    }

    fn resolve(&self, raw: RawConfig) -> Result<Config, Error> {
        let listen = raw.server.listen.as_deref().unwrap_or("127.0.0.1:8000");
        let listen = listen.parse().map_err(|_| {
            self.err("server.listen", format!("{listen:?} is not an address like \"127.0.0.1:8000\""))
        })?;
        let plugins_dir = self.plugins_dir(raw.plugins.dir.as_deref())?;
        let schemes = raw
            .schemes
            .into_iter()
            .enumerate()
            .map(|(i, table)| self.scheme(i, table, &plugins_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        for (i, scheme) in schemes.iter().enumerate() {
            if !seen.insert(scheme.name.as_str()) {
                return Err(self.err(
                    &format!("scheme[{i}].name"),
                    format!("duplicate scheme name {:?}: give each [[scheme]] its own name", scheme.name),
                ));
            }
        }
        let names: Vec<&str> = schemes.iter().map(|s| s.name.as_str()).collect();
        let default_chain = self.chain("defaults.schemes", &raw.defaults.schemes, &names)?;
        let default_permission = match &raw.defaults.permission {
            Some(p) => self.permission("defaults.permission", p)?,
            None => Permission::AllowAny,
        };
        let rates = self.rates(&raw.throttle.rates)?;
        let default_throttles = self.throttles("defaults.throttle", &raw.defaults.throttle, &rates)?;
        let mut paths = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, route) in raw.routes.into_iter().enumerate() {
            // Named by index and path: the path tells the operator which route it is.
            let key = format!("route[{i}] ({:?})", route.path);
            if !route.path.starts_with('/') {
                return Err(
                    self.err(&format!("{key}.path"), format!("{:?} must start with \"/\"", route.path))
                );
            }
            if !paths.insert((route.path.clone(), route.prefix)) {
                return Err(self.err(&format!("{key}.path"), format!("{:?} is routed twice", route.path)));
            }
            let handler = match (&route.handler, &route.upstream) {
                (Some(name), None) => Handler::parse(name).ok_or_else(|| {
                    self.err(&format!("{key}.handler"), unknown("handler", name, &Handler::names()))
                })?,
                (None, Some(_)) => Handler::Proxy,
                (Some(_), Some(_)) => {
                    return Err(self.err(
                        &format!("{key}.upstream"),
                        "a route either proxies to an upstream or has a handler: remove one of the two",
                    ))
                }
                (None, None) => {
                    return Err(self.err(
                        &format!("{key}.handler"),
                        "missing: name a handler (like handler = \"whoami\") or an upstream (like upstream = \"http://127.0.0.1:8080\")",
                    ))
                }
            };
            let upstream = self.upstream(&key, &route)?;
            let schemes = match &route.schemes {
                Some(list) => self.chain(&format!("{key}.schemes"), list, &names)?,
                None => default_chain.clone(),
            };
            let permission = match &route.permission {
                Some(p) => self.permission(&format!("{key}.permission"), p)?,
                None => default_permission,
            };
            let token_scheme = match (&route.token_scheme, handler.issues()) {
                (Some(name), true) => {
                    Some(self.chain(&format!("{key}.token_scheme"), std::slice::from_ref(name), &names)?[0])
                }
                (None, true) => {
                    return Err(self.err(
                        &format!("{key}.token_scheme"),
                        format!(
                            "missing: {} issues the credentials of a scheme; name it, like token_scheme = \"token\" (or \"jwt\")",
                            handler.name()
                        ),
                    ))
                }
                (Some(_), false) => {
                    return Err(self.err(
                        &format!("{key}.token_scheme"),
                        "only login_token, obtain_jwt, refresh_jwt and verify_jwt routes take a token_scheme",
                    ))
                }
                (None, false) => None,
            };
            let login_field = match (&route.login_field, handler) {
                (None, _) => LoginField::Username,
                (Some(name), Handler::ObtainToken | Handler::Login | Handler::ObtainJwt) => {
                    LoginField::parse(name).ok_or_else(|| {
                        self.err(
                            &format!("{key}.login_field"),
                            unknown("login field", name, &["username", "email"]),
                        )
                    })?
                }
                (Some(_), _) => {
                    return Err(self.err(
                        &format!("{key}.login_field"),
                        "only obtain_token, login and obtain_jwt routes take a login_field \
                         (for Basic, set the basic scheme's own login_field)",
                    ))
                }
            };
            let token_fields = match (&route.fields, handler) {
                (None, _) => vec![TokenField::Token],
                (Some(names), Handler::ObtainToken) => {
                    let key = format!("{key}.fields");
                    let fields = names
                        .iter()
                        .map(|n| {
                            TokenField::parse(n)
                                .ok_or_else(|| self.err(&key, unknown("field", n, &TokenField::NAMES)))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if !fields.contains(&TokenField::Token) {
                        return Err(self.err(&key, "must include \"token\""));
                    }
                    fields
                }
                (Some(_), _) => {
                    return Err(self.err(&format!("{key}.fields"), "only obtain_token routes take fields"));
                }
            };
            let throttles = match &route.throttle {
                Some(list) => self.throttles(&format!("{key}.throttle"), list, &rates)?,
                None => default_throttles.clone(),
            };
            let login_url = match &route.login_url {
                None => None,
                Some(url) if url.starts_with('/') && !url.starts_with("//") && !url.contains(['\\', '#']) => {
                    Some(url.clone())
                }
                Some(url)
                    if (url.starts_with("https://") || url.starts_with("http://"))
                        && !url.contains(['\\', '#']) =>
                {
                    Some(url.clone())
                }
                Some(url) => {
                    return Err(self.err(
                        &format!("{key}.login_url"),
                        format!(
                            "{url:?} is not a sign-in page: use a path like \"/login/\" or an http(s) URL"
                        ),
                    ))
                }
            };
            let page = match (&route.template, handler) {
                (file, Handler::LoginPage | Handler::LogoutPage) => {
                    let file = file.as_ref().map(|f| self.config_dir().join(f));
                    let page = Page::load(handler == Handler::LogoutPage, file.as_deref())
                        .map_err(|e| self.err(&format!("{key}.template"), e))?;
                    Some(Arc::new(page))
                }
                (None, _) => None,
                (Some(_), _) => {
                    return Err(self.err(
                        &format!("{key}.template"),
                        "only login_page and logout_page routes take a template",
                    ))
                }
            };
            let cors_allow_preflight = match (route.cors_allow_preflight, handler) {
                (None, _) => false,
                (Some(allow), Handler::Proxy | Handler::Allow) => allow,
                (Some(_), _) => {
                    return Err(self.err(
                        &format!("{key}.cors_allow_preflight"),
                        "only a proxy route (upstream) or a decision-only route (handler = \"allow\") takes this: \
                         the upstream answers the preflight, and authhost's own handlers do not speak CORS; remove it",
                    ))
                }
            };
            routes.push(RouteConfig {
                throttles,
                login_url,
                page,
                cors_allow_preflight,
                path: route.path,
                prefix: route.prefix,
                handler,
                schemes,
                permission,
                token_scheme,
                login_field,
                token_fields,
                upstream,
                access_log: route
                    .access_log
                    .unwrap_or(!matches!(handler, Handler::Health | Handler::Metrics)),
            });
        }
        Ok(Config {
            file: self.file.to_owned(),
            listen,
            shutdown_timeout: self.at_most(
                "server.shutdown_timeout",
                self.duration("server.shutdown_timeout", raw.server.shutdown_timeout, 30)?,
                Duration::from_secs(3600),
            )?,
            body_timeout: self.at_most(
                "server.body_timeout",
                self.millis("server.body_timeout", raw.server.body_timeout, 30_000)?,
                Duration::from_secs(3600),
            )?,
            header_timeout: self.at_most(
                "server.header_timeout",
                self.millis("server.header_timeout", raw.server.header_timeout, 30_000)?,
                Duration::from_secs(3600),
            )?,
            tls: match (&raw.server.tls_cert_file, &raw.server.tls_key_file) {
                (None, None) => None,
                (Some(cert), Some(key)) => {
                    Some(TlsFiles { cert: self.config_dir().join(cert), key: self.config_dir().join(key) })
                }
                (Some(_), None) => {
                    return Err(self.err("server.tls_key_file", "missing: tls_cert_file needs its private key file"))
                }
                (None, Some(_)) => {
                    return Err(self.err(
                        "server.tls_cert_file",
                        "missing: tls_key_file needs its certificate chain file (PEM, the server's first)",
                    ))
                }
            },
            h2c: raw.server.h2c.unwrap_or(false),
            max_connections: match raw.server.max_connections {
                None => 10_000,
                Some(n @ 1..=1_000_000) => usize::try_from(n).unwrap_or(10_000),
                Some(n) => {
                    return Err(
                        self.err("server.max_connections", format!("{n} is out of range: use 1 to 1000000"))
                    )
                }
            },
            allowed_hosts: self.allowed_hosts(raw.server.allowed_hosts)?,
            failures: match &raw.throttle.failures {
                None => None,
                Some(rate) => Some(rate.parse().map_err(|()| {
                    self.err(
                        "throttle.failures",
                        format!("{rate:?} is not a rate: use \"N/period\", like \"10/min\" (s, m, h or d)"),
                    )
                })?),
            },
            throttle_url: match raw.throttle.url {
                None => None,
                Some(url) if url.starts_with("redis://") => Some(url),
                Some(url) => {
                    return Err(self.err(
                        "throttle.url",
                        format!(
                            "{:?} is not a Redis URL: use \"redis://HOST:PORT/DB\" (or leave it out to count in the store)",
                            crate::store::redacted(&url)
                        ),
                    ))
                }
            },
            throttle_password_file: raw.throttle.password_file.map(|f| self.config_dir().join(f)),
            store_workers: self.count("server.store_workers", raw.server.store_workers, 2)?,
            password_workers: self.count("server.password_workers", raw.server.password_workers, 1)?,
            store_url: match raw.store.url {
                None => format!("sqlite://{}", self.placed("store.url", "authhost.db", Was::WorkingDir).display()),
                Some(url) if url.starts_with("sqlite://") && url.len() > "sqlite://".len() => {
                    format!("sqlite://{}", self.placed("store.url", &url["sqlite://".len()..], Was::WorkingDir).display())
                }
                Some(url) if crate::store::is_postgres(&url) => url,
                Some(url) => {
                    return Err(self.err(
                        "store.url",
                        format!(
                            "{:?} is not a store: use \"sqlite://PATH\" or \"postgres://USER@HOST:PORT/DB\"",
                            crate::store::redacted(&url)
                        ),
                    ))
                }
            },
            store_password_file: raw.store.password_file.map(|f| self.config_dir().join(f)),
            user_cache_ttl: self.at_most(
                "store.user_cache_ttl",
                self.duration("store.user_cache_ttl", raw.store.user_cache_ttl, 60)?,
                Duration::from_secs(24 * 60 * 60),
            )?,
            cache_capacity: match raw.store.cache_capacity {
                None => 100_000,
                Some(n @ 0..=10_000_000) => usize::try_from(n).unwrap_or(0),
                Some(n) => {
                    return Err(self.err(
                        "store.cache_capacity",
                        format!("{n} is out of range: use 0 (no caching) to 10000000 entries"),
                    ))
                }
            },
            change_poll: self.at_most(
                "store.change_poll",
                self.millis("store.change_poll", raw.store.change_poll, 250)?,
                Duration::from_secs(60),
            )?,
            busy_timeout: match self.at_most(
                "store.busy_timeout",
                self.millis("store.busy_timeout", raw.store.busy_timeout, 1000)?,
                Duration::from_secs(60),
            )? {
                t if t.is_zero() => return Err(self.err("store.busy_timeout", "must be at least 1ms")),
                t => t,
            },
            purge_every: match self.at_most(
                "store.purge_every",
                self.millis("store.purge_every", raw.store.purge_every, 60_000)?,
                Duration::from_secs(24 * 60 * 60),
            )? {
                t if t.is_zero() => return Err(self.err("store.purge_every", "must be at least 1ms")),
                t => t,
            },
            change_log_keep: match self.at_most(
                "store.change_log_keep",
                self.duration("store.change_log_keep", raw.store.change_log_keep, 24 * 60 * 60)?,
                Duration::from_secs(365 * 24 * 60 * 60),
            )? {
                keep if keep.is_zero() => {
                    return Err(self.err("store.change_log_keep", "must be at least 1s"));
                }
                keep => keep,
            },
            token_for_new_users: raw.store.token_for_new_users.unwrap_or(false),
            token_refresh_every: self.at_most(
                "store.token_refresh_every",
                self.duration("store.token_refresh_every", raw.store.token_refresh_every, 60)?,
                Duration::from_secs(86_400),
            )?,
            token_secret_file: self.placed(
                "store.token_secret_file",
                raw.store.token_secret_file.as_deref().unwrap_or("authhost.secret"),
                Was::WorkingDir,
            ),
            anonymous_user: self.string_or_false(
                "anonymous.user",
                raw.anonymous.user,
                Some("AnonymousUser"),
            )?,
            anonymous_auth: self.string_or_false("anonymous.auth", raw.anonymous.auth, None)?,
            session: self.session(raw.session)?,
            schemes,
            routes,
            gateway: self.gateway(raw.gateway)?,
            allow_writable_plugins: raw.plugins.allow_writable.unwrap_or(false),
            moved: self.moved.take(),
        })
    }

    fn session(&self, raw: RawSession) -> Result<SessionConfig, Error> {
        let name = |key: &str, value: Option<String>, default: &str| -> Result<String, Error> {
            let value = value.unwrap_or_else(|| default.to_owned());
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(self.err(key, format!("{value:?} must be letters, digits, '-', '_' or '.'")));
            }
            Ok(value)
        };
        let trusted_origins = raw.trusted_origins.unwrap_or_default();
        if let Some((i, bad)) = trusted_origins
            .iter()
            .enumerate()
            .find(|(_, o)| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
        {
            return Err(self.err(
                &format!("session.trusted_origins[{i}]"),
                format!(
                    "{bad:?} is not an origin like \"https://app.example.com\" (scheme and host, no path)"
                ),
            ));
        }
        Ok(SessionConfig {
            cookie_name: name("session.cookie_name", raw.cookie_name, "sessionid")?,
            csrf_cookie_name: name("session.csrf_cookie_name", raw.csrf_cookie_name, "csrftoken")?,
            csrf_header_name: name("session.csrf_header_name", raw.csrf_header_name, "X-CSRFToken")?,
            ttl: self.duration("session.ttl", raw.ttl, 14 * 86_400)?,
            secure: raw.secure.unwrap_or(false),
            trusted_origins,
        })
    }

    /// `plugins.dir`: absolute, or against the config's folder; unset, the executable's
    /// folder (where the shipped plugins are built and installed beside the binary).
    fn plugins_dir(&self, dir: Option<&str>) -> Result<PathBuf, Error> {
        let exe_dir = || {
            let exe = std::env::current_exe().map_err(|e| {
                self.err(
                    "plugins.dir",
                    format!(
                        "cannot find the executable's folder ({e}); give plugins.dir as an absolute path"
                    ),
                )
            })?;
            Ok::<_, Error>(exe.parent().unwrap_or(Path::new(".")).to_owned())
        };
        match dir {
            None => exe_dir(),
            Some(dir) => match exe_dir() {
                Ok(exe_dir) => Ok(self.placed("plugins.dir", dir, Was::Folder(exe_dir))),
                Err(_) => Ok(self.config_dir().join(dir)),
            },
        }
    }

    fn scheme(&self, i: usize, mut table: toml::Table, plugins_dir: &Path) -> Result<SchemeConfig, Error> {
        let key = format!("scheme[{i}]");
        let mut take_str = |field: &str| -> Result<Option<String>, Error> {
            match table.remove(field) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(self.err(
                    &format!("{key}.{field}"),
                    format!("expected a string, found {}", other.type_str()),
                )),
            }
        };
        let name = take_str("name")?.ok_or_else(|| {
            self.err(&format!("{key}.name"), "missing: every [[scheme]] needs a name that routes use")
        })?;
        let library = match (take_str("plugin")?, take_str("path")?) {
            (Some(plugin), None) => plugins_dir.join(library_file_name(&plugin)),
            (None, Some(path)) => self.config_dir().join(path),
            (Some(_), Some(_)) => {
                return Err(self.err(
                    &format!("{key}.path"),
                    "give either `plugin` (a name in plugins.dir) or `path`, not both",
                ))
            }
            (None, None) => {
                return Err(self.err(
                    &format!("{key}.plugin"),
                    format!("missing for scheme {name:?}: name a plugin, such as plugin = \"basic\""),
                ))
            }
        };
        let key = format!("{key} ({name:?})");
        let options = table
            .into_iter()
            .map(|(k, v)| {
                // A plugin option named `*_file` is a path: placed against the config's
                // folder like every other path, before the plugin sees it.
                let v = match v {
                    toml::Value::String(path) if k.ends_with("_file") && Path::new(&path).is_relative() => {
                        toml::Value::String(self.config_dir().join(path).display().to_string())
                    }
                    v => v,
                };
                OptionEntry::from_toml(&k, &v).ok_or_else(|| {
                    self.err(
                        &format!("{key}.{k}"),
                        format!(
                            "options must be strings, numbers, booleans or lists of strings, not {}",
                            v.type_str()
                        ),
                    )
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(SchemeConfig { name, library, options })
    }

    /// A route's upstream and its options; the options only where there is an upstream.
    fn upstream(&self, key: &str, route: &RawRoute) -> Result<Option<UpstreamConfig>, Error> {
        let Some(url) = &route.upstream else {
            let stray = [
                ("strip_prefix", route.strip_prefix.is_some()),
                ("strip_credentials", route.strip_credentials.is_some()),
                ("upstream_ca_file", route.upstream_ca_file.is_some()),
                ("pass_host_header", route.pass_host_header.is_some()),
                ("upstream_client_cert_file", route.upstream_client_cert_file.is_some()),
                ("upstream_client_key_file", route.upstream_client_key_file.is_some()),
                ("connect_timeout", route.connect_timeout.is_some()),
                ("timeout", route.timeout.is_some()),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(self.err(
                    &format!("{key}.{name}"),
                    "only a route with an upstream takes this; add upstream = \"http://HOST:PORT\" or remove it",
                )),
                None => Ok(None),
            };
        };
        let bad = |why: &str| {
            self.err(
                &format!("{key}.upstream"),
                format!("{url:?} {why}; use \"http://HOST:PORT\" or \"https://HOST:PORT\""),
            )
        };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        let tls_keys = [
            ("upstream_ca_file", &route.upstream_ca_file),
            ("upstream_client_cert_file", &route.upstream_client_cert_file),
            ("upstream_client_key_file", &route.upstream_client_key_file),
        ];
        let https = match uri.scheme_str() {
            Some("http") => match tls_keys.iter().find(|(_, set)| set.is_some()) {
                Some((name, _)) => {
                    return Err(self.err(
                        &format!("{key}.{name}"),
                        "only an https:// upstream takes this; make the upstream https:// or remove it",
                    ))
                }
                None => false,
            },
            Some("https") => true,
            _ => return Err(bad("has no http:// or https:// scheme")),
        };
        let identity = match (&route.upstream_client_cert_file, &route.upstream_client_key_file) {
            (Some(cert), Some(private)) => {
                Some((self.config_dir().join(cert), self.config_dir().join(private)))
            }
            (None, None) => None,
            (cert, _) => {
                let missing =
                    if cert.is_some() { "upstream_client_key_file" } else { "upstream_client_cert_file" };
                return Err(self.err(
                    &format!("{key}.{missing}"),
                    "missing: a client certificate goes with its key; give upstream_client_cert_file and upstream_client_key_file",
                ));
            }
        };
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.port_u16().is_none() || authority.as_str().contains('@') {
            return Err(bad("must name a port and no user"));
        }
        if uri.query().is_some() {
            return Err(bad("has a query"));
        }
        let base = uri.path().trim_end_matches('/').to_owned();
        if routes::check(if base.is_empty() { "/" } else { &base }).is_err() {
            return Err(bad("has a path that is not in normal form"));
        }
        let key_of = |name: &str| format!("{key}.{name}");
        // The CA certificates last: the system's are read only for an upstream otherwise valid.
        let tls = if https {
            let ca_file = route.upstream_ca_file.as_ref().map(|f| self.config_dir().join(f));
            let identity = identity.as_ref().map(|(cert, private)| (cert.as_path(), private.as_path()));
            Some(crate::tls::upstream_client_config(ca_file.as_deref(), identity, self.file, key)?)
        } else {
            None
        };
        Ok(Some(UpstreamConfig {
            authority,
            tls,
            base,
            strip_prefix: route.strip_prefix.unwrap_or(false),
            strip_credentials: route.strip_credentials.unwrap_or(false),
            pass_host_header: route.pass_host_header.unwrap_or(true),
            connect_timeout: self.at_most(
                &key_of("connect_timeout"),
                self.millis(&key_of("connect_timeout"), route.connect_timeout.clone(), 5_000)?,
                Duration::from_secs(3600),
            )?,
            timeout: self.at_most(
                &key_of("timeout"),
                self.millis(&key_of("timeout"), route.timeout.clone(), 60_000)?,
                Duration::from_secs(86_400),
            )?,
        }))
    }

    fn gateway(&self, raw: RawGateway) -> Result<GatewayConfig, Error> {
        let trusted_proxies = match raw.trusted_proxies {
            None => vec![Cidr::LOOPBACK_V4, Cidr::LOOPBACK_V6],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    text.parse().map_err(|()| {
                        self.err(
                            &format!("gateway.trusted_proxies[{i}]"),
                            format!("{text:?} is not an address or a range like \"10.0.0.0/8\""),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let header = |name: &str, value: Option<String>, default: &'static str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
                self.err(
                    &format!("gateway.{name}"),
                    format!("{value:?} is not a header name like {default:?}"),
                )
            })
        };
        let config = GatewayConfig {
            trusted_proxies,
            user_header: header("user_header", raw.user_header, "X-Authenticated-User")?,
            user_id_header: header("user_id_header", raw.user_id_header, "X-Authenticated-User-Id")?,
            email_header: header("email_header", raw.email_header, "X-Authenticated-Email")?,
            scheme_header: header("scheme_header", raw.scheme_header, "X-Authenticated-Scheme")?,
            staff_header: header("staff_header", raw.staff_header, "X-Authenticated-Staff")?,
        };
        let names = config.identity_headers();
        if names.iter().enumerate().any(|(i, n)| names[..i].contains(n)) {
            return Err(self.err("gateway", "two identity headers have the same name: give each its own"));
        }
        Ok(config)
    }

    /// `[server] allowed_hosts`: names, `.domain` suffixes or `*` (any, the default).
    fn allowed_hosts(&self, raw: Option<Vec<String>>) -> Result<Option<Vec<String>>, Error> {
        let Some(list) = raw else { return Ok(None) };
        if list.iter().any(|h| h == "*") {
            return Ok(None);
        }
        if list.is_empty() {
            return Err(self.err(
                "server.allowed_hosts",
                "empty: every request would be refused; name the hosts clients use, or \"*\"",
            ));
        }
        for (i, host) in list.iter().enumerate() {
            if host.is_empty() || host.contains(['/', ' ', '*']) {
                return Err(self.err(
                    &format!("server.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name like \"api.example.com\" or \".example.com\""),
                ));
            }
        }
        Ok(Some(list.iter().map(|h| h.to_ascii_lowercase()).collect()))
    }

    /// `[throttle.rates]`, each checked.
    fn rates(&self, raw: &std::collections::BTreeMap<String, String>) -> Result<Vec<(String, Rate)>, Error> {
        raw.iter()
            .map(|(scope, rate)| {
                let parsed = rate.parse().map_err(|()| {
                    self.err(
                        &format!("throttle.rates.{scope}"),
                        format!("{rate:?} is not a rate: use \"N/period\", like \"100/min\" (s, m, h or d)"),
                    )
                })?;
                Ok((scope.clone(), parsed))
            })
            .collect()
    }

    /// A list of throttle scopes, each with its rate from `[throttle.rates]`.
    fn throttles(
        &self,
        key: &str,
        list: &[String],
        rates: &[(String, Rate)],
    ) -> Result<Vec<Throttle>, Error> {
        let known: Vec<&str> = rates.iter().map(|(scope, _)| scope.as_str()).collect();
        list.iter()
            .enumerate()
            .map(|(i, scope)| match rates.iter().find(|(s, _)| s == scope) {
                Some((_, rate)) => Ok(Throttle::new(scope, *rate)),
                None => Err(self.err(
                    &format!("{key}[{i}]"),
                    unknown("throttle scope", scope, &known) + "; give it a rate under [throttle.rates]",
                )),
            })
            .collect()
    }

    fn chain(&self, key: &str, list: &[String], names: &[&str]) -> Result<Vec<usize>, Error> {
        list.iter()
            .enumerate()
            .map(|(i, name)| {
                names.iter().position(|n| n == name).ok_or_else(|| {
                    self.err(
                        &format!("{key}[{i}]"),
                        unknown("scheme", name, names) + "; define it in a [[scheme]] table",
                    )
                })
            })
            .collect()
    }

    fn permission(&self, key: &str, name: &str) -> Result<Permission, Error> {
        name.parse().map_err(|()| self.err(key, unknown("permission", name, &Permission::NAMES)))
    }

    fn duration(&self, key: &str, value: Option<toml::Value>, default_secs: u64) -> Result<Duration, Error> {
        let parsed = self.any_duration(key, value, default_secs)?;
        self.at_most(key, parsed, MAX_DURATION)
    }

    fn any_duration(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default_secs: u64,
    ) -> Result<Duration, Error> {
        match value {
            None => Ok(Duration::from_secs(default_secs)),
            Some(toml::Value::Integer(n)) if n >= 0 => Ok(Duration::from_secs(n.unsigned_abs())),
            Some(toml::Value::String(s)) if parse_duration(&s).is_some() => {
                Ok(parse_duration(&s).unwrap_or_default())
            }
            Some(other) => Err(self.err(key, format!("{other} is not a duration: use {DURATION_FORMS}"))),
        }
    }

    /// A duration that must be more than zero, with a default in milliseconds.
    fn millis(&self, key: &str, value: Option<toml::Value>, default_ms: u64) -> Result<Duration, Error> {
        match value {
            None => Ok(Duration::from_millis(default_ms)),
            other => match self.duration(key, other, 0)? {
                d if d.is_zero() => Err(self.err(key, "must be more than zero")),
                d => Ok(d),
            },
        }
    }

    /// `value`, unless it is more than `max`.
    fn at_most(&self, key: &str, value: Duration, max: Duration) -> Result<Duration, Error> {
        if value > max {
            return Err(
                self.err(key, format!("{}s is too long: use at most {}s", value.as_secs(), max.as_secs()))
            );
        }
        Ok(value)
    }

    fn count(&self, key: &str, value: Option<usize>, default: usize) -> Result<usize, Error> {
        match value {
            None => Ok(default),
            Some(n @ 1..=64) => Ok(n),
            Some(n) => Err(self.err(key, format!("{n} is out of range: use 1 to 64"))),
        }
    }

    fn string_or_false(
        &self,
        key: &str,
        value: Option<toml::Value>,
        default: Option<&str>,
    ) -> Result<Option<String>, Error> {
        match value {
            None => Ok(default.map(str::to_owned)),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(toml::Value::Boolean(false)) => Ok(None),
            Some(other) => Err(self.err(key, format!("expected a string or false, found {other}"))),
        }
    }
}

/// `libauthhost_x_username.so` for plugin `x-username` (per platform).
pub fn library_file_name(plugin: &str) -> String {
    format!(
        "{}authhost_{}{}",
        std::env::consts::DLL_PREFIX,
        plugin.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// `unknown scheme "tokn" (did you mean "token"?)`, or the list of known names.
fn unknown(what: &str, name: &str, known: &[&str]) -> String {
    match closest(name, known.iter().copied()) {
        Some(k) => format!("unknown {what} {name:?} (did you mean {k:?}?)"),
        None if known.is_empty() => format!("unknown {what} {name:?}"),
        None => format!("unknown {what} {name:?}; known: {}", known.join(", ")),
    }
}

/// The known name closest to a misspelt one, within two edits.
pub(crate) fn closest<'k>(name: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    known.into_iter().map(|k| (edit_distance(name, k), k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authhost_plugin_api::OptionValue;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("conf/test.toml"), text)
    }

    const SCHEMES: &str = r#"
        plugins.dir = "/plugins"
        [[scheme]]
        name = "who"
        plugin = "x-username"
        [[scheme]]
        name = "token"
        plugin = "token"
        keyword = "Bearer"
    "#;

    #[test]
    fn routes_take_the_default_chain_and_permission_unless_they_name_their_own() {
        let config = parse(&format!(
            "{SCHEMES}
            [defaults]
            schemes = [\"token\", \"who\"]
            permission = \"is_authenticated\"
            [[route]]
            path = \"/me\"
            handler = \"whoami\"
            [[route]]
            path = \"/health\"
            handler = \"health\"
            schemes = []
            permission = \"allow_any\"
            "
        ))
        .unwrap();
        assert_eq!(config.routes[0].schemes, vec![1, 0]);
        assert_eq!(config.routes[0].permission, Permission::IsAuthenticated);
        assert!(config.routes[1].schemes.is_empty());
        assert_eq!(config.schemes[0].library, Path::new("/plugins").join(library_file_name("x-username")));
        assert_eq!(
            config.schemes[1].options,
            vec![OptionEntry::new("keyword", OptionValue::Str("Bearer".into()))]
        );
        assert_eq!(config.anonymous_user.as_deref(), Some("AnonymousUser"));
    }

    #[test]
    fn an_unknown_scheme_in_a_route_is_named_with_a_suggestion() {
        let err = parse(&format!(
            "{SCHEMES}\n[[route]]\npath = \"/x\"\nhandler = \"whoami\"\nschemes = [\"tokn\"]\n"
        ))
        .unwrap_err();
        assert!(err.is_config());
        assert_eq!(
            err.to_string(),
            "conf/test.toml: route[0] (\"/x\").schemes[0]: unknown scheme \"tokn\" (did you mean \"token\"?); define it in a [[scheme]] table"
        );
    }

    #[test]
    fn cors_allow_preflight_is_taken_by_proxy_and_allow_routes_only() {
        let route = |kind: &str| {
            parse(&format!(
                "{SCHEMES}\n[[route]]\npath = \"/x\"\n{kind}\nschemes = [\"token\"]\ncors_allow_preflight = true\n"
            ))
        };
        let allowed = |config: Config| config.routes[0].cors_allow_preflight;
        assert!(allowed(route("upstream = \"http://127.0.0.1:8080\"").unwrap()));
        assert!(allowed(route("handler = \"allow\"").unwrap()));
        assert_eq!(
            route("handler = \"whoami\"").unwrap_err().to_string(),
            "conf/test.toml: route[0] (\"/x\").cors_allow_preflight: only a proxy route (upstream) or a \
             decision-only route (handler = \"allow\") takes this: the upstream answers the preflight, and \
             authhost's own handlers do not speak CORS; remove it"
        );
        let unset = parse(&format!("{SCHEMES}\n[[route]]\npath = \"/x\"\nhandler = \"allow\"\n")).unwrap();
        assert!(!allowed(unset));
    }

    #[test]
    fn upstream_ca_file_is_read_at_load_and_only_for_an_https_upstream() {
        let route = |upstream: &str, ca: &str| {
            parse(&format!("[[route]]\npath = \"/x\"\nupstream = \"{upstream}\"\n{ca}\nschemes = []\n"))
        };
        let err = route("http://127.0.0.1:8080", "upstream_ca_file = \"ca.pem\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "conf/test.toml: route[0] (\"/x\").upstream_ca_file: only an https:// upstream takes this; \
             make the upstream https:// or remove it"
        );
        let err = route("https://127.0.0.1:8443", "upstream_ca_file = \"nope.pem\"").unwrap_err().to_string();
        assert!(
            err.starts_with("conf/test.toml: route[0] (\"/x\").upstream_ca_file: conf/nope.pem: cannot read PEM certificates"),
            "{err}"
        );
        let err = route("https://127.0.0.1", "").unwrap_err().to_string();
        assert!(err.contains("must name a port"), "{err}");
        let err = route("https://127.0.0.1:8443", "upstream_client_cert_file = \"me.pem\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "conf/test.toml: route[0] (\"/x\").upstream_client_key_file: missing: a client certificate goes \
             with its key; give upstream_client_cert_file and upstream_client_key_file"
        );
        let err = route("http://127.0.0.1:8080", "upstream_client_key_file = \"me.key\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("route[0] (\"/x\").upstream_client_key_file: only an https:// upstream takes this"),
            "{err}"
        );
        let err = route(
            "https://127.0.0.1:8443",
            "upstream_ca_file = \"/dev/null\"\nupstream_client_cert_file = \"me.pem\"\nupstream_client_key_file = \"me.key\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("route[0] (\"/x\").upstream_ca_file: /dev/null: no certificate in it"), "{err}");
        let err = parse("[[route]]\npath = \"/x\"\nhandler = \"whoami\"\npass_host_header = false\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route[0] (\"/x\").pass_host_header: only a route with an upstream takes this"),
            "{err}"
        );
        let err = parse("[[route]]\npath = \"/x\"\nhandler = \"whoami\"\nupstream_ca_file = \"ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route[0] (\"/x\").upstream_ca_file: only a route with an upstream takes this"),
            "{err}"
        );
    }

    #[test]
    fn an_upstreams_own_host_leaves_out_its_schemes_default_port() {
        let host = |upstream: &str| {
            let config =
                parse(&format!("[[route]]\npath = \"/x\"\nupstream = \"{upstream}\"\nschemes = []\n"))
                    .unwrap();
            config.routes[0].upstream.as_ref().map(|u| u.host().to_owned()).unwrap()
        };
        assert_eq!(host("http://app.internal:80"), "app.internal");
        assert_eq!(host("http://app.internal:8080"), "app.internal:8080");
        assert_eq!(host("https://api.example.com:443"), "api.example.com");
        assert_eq!(host("https://api.example.com:8443"), "api.example.com:8443");
        assert_eq!(host("http://[::1]:80"), "[::1]");
    }

    #[test]
    fn duplicate_scheme_names_are_refused() {
        let err = parse(&format!("{SCHEMES}\n[[scheme]]\nname = \"who\"\nplugin = \"basic\"\n")).unwrap_err();
        assert!(
            err.to_string().starts_with("conf/test.toml: scheme[2].name: duplicate scheme name \"who\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("conf/test.toml: "), "{text}");
        assert!(text.contains("unknown field `lisen`"), "{text}");
    }
}
