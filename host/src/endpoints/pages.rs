//! Browser sign-in: Django's `LoginView` and a logout page, as HTML rendered on the server
//! (minijinja, autoescaped; no script), with Django's CSRF rules, its AuthenticationForm
//! messages and its `url_has_allowed_host_and_scheme` for `next`.

use std::path::Path;
use std::time::Duration;

use authhost_plugin_api::form::form_field;
use authhost_plugin_api::{csrf, LoginField, RequestView};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use hyper::{Response, StatusCode};

use super::session::{cookie, csrf_settings, CSRF_COOKIE_AGE};
use crate::config::SessionConfig;
use crate::error::Error;
use crate::respond::Body;
use crate::services::Services;
use crate::sessions;

/// Django's AuthenticationForm `invalid_login`, for a wrong password, an unknown user and
/// an inactive one alike (ModelBackend refuses inactive users before the form sees them).
pub const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";
/// A form field left empty (Django's `required`).
pub const REQUIRED: &str = "This field is required.";

const DEFAULT_LOGIN: &str = include_str!("../../templates/login.html");
const DEFAULT_LOGOUT: &str = include_str!("../../templates/logout.html");

/// A page's template: the shipped one or the operator's file, compiled at load.
#[derive(Debug)]
pub struct Page {
    env: minijinja::Environment<'static>,
}

impl Page {
    /// The template for `handler` (`login_page` or `logout_page`): `file`'s when given (an
    /// error names the file and the template's own error), else the shipped one.
    pub fn load(logout: bool, file: Option<&Path>) -> Result<Page, Error> {
        let source = match file {
            Some(file) => {
                authhost_plugin_api::files::read_text(file, authhost_plugin_api::files::MAX_SMALL_FILE)
                    .map_err(|e| {
                        Error::config(format!("{}: cannot read the page template: {e}", file.display()))
                    })?
            }
            None => if logout { DEFAULT_LOGOUT } else { DEFAULT_LOGIN }.to_owned(),
        };
        let mut env = minijinja::Environment::new();
        // Every value is HTML-escaped, whatever the file is called.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_template_owned("page.html", source).map_err(|e| {
            let name =
                file.map_or_else(|| "the shipped page template".to_owned(), |f| f.display().to_string());
            Error::config(format!("{name}: the template does not parse: {e}"))
        })?;
        Ok(Page { env })
    }

    fn render(&self, context: minijinja::Value) -> Result<String, Error> {
        self.env
            .get_template("page.html")
            .and_then(|t| t.render(context))
            .map_err(|e| Error::io(format!("a page template failed to render: {e}")))
    }
}

/// What the pages need besides the session settings.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    pub page: &'a Page,
    /// The form's own path (its `action`).
    pub action: &'a str,
    /// Where a logout goes without a safe `next`: the login page.
    pub login_url: &'a str,
}

/// GET: the sign-in form, with a CSRF token (the cookie's secret reused, as Django's
/// `get_token` does).
pub(crate) fn login_form(
    ctx: PageContext<'_>,
    config: &SessionConfig,
    req: &RequestView<'_>,
) -> Response<Body> {
    let secret = csrf_secret(config, req);
    let next = query_next(req).unwrap_or_default();
    render_login(ctx, config, StatusCode::OK, &secret, &next, "", None)
}

/// POST: CSRF, then the credentials; a new session and 303 to a safe `next`, or the form
/// again with Django's message.
pub(crate) async fn login_submit(
    services: &Services,
    ctx: PageContext<'_>,
    config: &SessionConfig,
    req: &RequestView<'_>,
) -> Result<Response<Body>, Error> {
    let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
    let field = |name: &str| form_field(req, name);
    let form_token = field("csrfmiddlewaretoken");
    if let Err(reason) = csrf::check(req, &csrf_settings(config, &origins), None, form_token.as_deref()) {
        return Ok(csrf_failure(&reason));
    }
    let next = field("next").unwrap_or_default();
    let secret = csrf_secret(config, req);
    let username = field("username").unwrap_or_default();
    let password = field("password").unwrap_or_default();
    if username.trim().is_empty() || password.is_empty() {
        return Ok(render_login(ctx, config, StatusCode::OK, &secret, &next, &username, Some(REQUIRED)));
    }
    let verified =
        services.verify_login(LoginField::Username, username.clone(), password, req.peer().ip()).await;
    let user = match verified {
        Ok(Some(user)) if user.is_active => user,
        Ok(_) => {
            return Ok(render_login(
                ctx,
                config,
                StatusCode::OK,
                &secret,
                &next,
                &username,
                Some(INVALID_LOGIN),
            ))
        }
        Err(err) => match err.throttled_wait() {
            Some(wait) => {
                let message = crate::respond::throttled_detail(wait);
                let mut resp = render_login(
                    ctx,
                    config,
                    StatusCode::TOO_MANY_REQUESTS,
                    &secret,
                    &next,
                    &username,
                    Some(&message),
                );
                if let Some(n) = wait.filter(|n| *n > 0) {
                    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(n));
                }
                return Ok(resp);
            }
            None => return Err(err),
        },
    };
    // The old session, if any, ends: the id is rotated at login.
    if let Some(old) = req.cookie(&config.cookie_name) {
        services.delete_session(&old).await?;
    }
    let new_secret = sessions::new_csrf_secret();
    let key = services.create_session(&user, new_secret.clone(), config.ttl).await?;
    let target = if safe_next(&next, req, config) { next.as_str() } else { "/" };
    let mut resp = redirect(StatusCode::SEE_OTHER, target);
    let headers = resp.headers_mut();
    headers.append(SET_COOKIE, cookie(&config.cookie_name, &key, config.ttl, true, config.secure));
    headers.append(
        SET_COOKIE,
        cookie(&config.csrf_cookie_name, &new_secret, CSRF_COOKIE_AGE, false, config.secure),
    );
    Ok(resp)
}

/// GET: a confirmation form (a link cannot log anyone out: the POST needs the CSRF token).
pub(crate) async fn logout_form(
    services: &Services,
    ctx: PageContext<'_>,
    config: &SessionConfig,
    req: &RequestView<'_>,
) -> Result<Response<Body>, Error> {
    let session = match req.cookie(&config.cookie_name) {
        Some(key) => services.find_session(&key).await?,
        None => None,
    };
    let (secret, username) = match &session {
        Some(s) => (s.csrf_secret.to_string(), s.user.username.to_string()),
        None => (csrf_secret(config, req), String::new()),
    };
    let next = query_next(req).unwrap_or_default();
    let context = minijinja::context! {
        action => ctx.action,
        csrf_token => sessions::masked_token(&secret),
        next => next,
        username => username,
    };
    let mut resp = html(StatusCode::OK, ctx.page.render(context)?, config);
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&config.csrf_cookie_name, &secret, CSRF_COOKIE_AGE, false, config.secure));
    Ok(resp)
}

/// POST: ends the session (CSRF-checked against it), clears the cookie, and 303 to a safe
/// `next` or the login page.
pub(crate) async fn logout_submit(
    services: &Services,
    ctx: PageContext<'_>,
    config: &SessionConfig,
    req: &RequestView<'_>,
) -> Result<Response<Body>, Error> {
    let field = |name: &str| form_field(req, name);
    if let Some(key) = req.cookie(&config.cookie_name) {
        if let Some(session) = services.find_session(&key).await? {
            let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
            let token = field("csrfmiddlewaretoken");
            let settings = csrf_settings(config, &origins);
            if let Err(reason) = csrf::check(req, &settings, Some(&session.csrf_secret), token.as_deref()) {
                return Ok(csrf_failure(&reason));
            }
            services.delete_session(&key).await?;
        }
    }
    let next = field("next").unwrap_or_default();
    let target = if safe_next(&next, req, config) { next.as_str() } else { ctx.login_url };
    let mut resp = redirect(StatusCode::SEE_OTHER, target);
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&config.cookie_name, "\"\"", Duration::ZERO, true, config.secure));
    Ok(resp)
}

fn render_login(
    ctx: PageContext<'_>,
    config: &SessionConfig,
    status: StatusCode,
    secret: &str,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response<Body> {
    let context = minijinja::context! {
        action => ctx.action,
        csrf_token => sessions::masked_token(secret),
        next => next,
        username => username,
        error => error,
    };
    let mut resp = match ctx.page.render(context) {
        Ok(text) => html(status, text, config),
        Err(err) => {
            tracing::error!(cause = err.with_cause(), "the login page cannot be shown");
            crate::respond::Refusal::Internal.into_response()
        }
    };
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&config.csrf_cookie_name, secret, CSRF_COOKIE_AGE, false, config.secure));
    resp
}

/// The CSRF cookie's secret when it is well formed, else a new one.
fn csrf_secret(config: &SessionConfig, req: &RequestView<'_>) -> String {
    let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
    csrf::cookie_secret(req, &csrf_settings(config, &origins))
        .ok()
        .flatten()
        .unwrap_or_else(sessions::new_csrf_secret)
}

/// `next` from the query string.
fn query_next(req: &RequestView<'_>) -> Option<String> {
    form_urlencoded::parse(req.query().as_bytes())
        .filter(|(k, _)| k == "next")
        .last()
        .map(|(_, v)| v.into_owned())
}

/// Django's CSRF failure page, in short: 403, and why.
fn csrf_failure(reason: &str) -> Response<Body> {
    let text = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>403 Forbidden</title></head>\
         <body><h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p><p>{}</p></body></html>\n",
        minijinja::HtmlEscape(reason)
    );
    let mut resp = Response::new(Body::full(text.into_bytes()));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    security_headers(&mut resp, "");
    resp
}

fn html(status: StatusCode, text: String, config: &SessionConfig) -> Response<Body> {
    let mut resp = Response::new(Body::full(text.into_bytes()));
    *resp.status_mut() = status;
    let trusted: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
    security_headers(&mut resp, &trusted.join(" "));
    resp
}

/// The pages' headers: HTML, no script at all, never framed, no referrer to other sites,
/// never cached. The form may post back here and redirect to a trusted origin.
fn security_headers(resp: &mut Response<Body>, trusted_origins: &str) {
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
         form-action 'self' {trusted_origins}; frame-ancestors 'none'; base-uri 'none'"
    );
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(csp) = HeaderValue::from_str(csp.trim()) {
        headers.insert("content-security-policy", csp);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A redirect to `location` (already checked, or the host's own).
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    match HeaderValue::from_str(location) {
        Ok(value) => {
            resp.headers_mut().insert(LOCATION, value);
        }
        Err(_) => {
            resp.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
        }
    }
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether `next` may be followed: Django's `url_has_allowed_host_and_scheme` with the
/// request's own host and the trusted origins' hosts allowed, https required when the
/// host is served over https.
fn safe_next(next: &str, req: &RequestView<'_>, config: &SessionConfig) -> bool {
    let own = req.header("host").map(|h| h.into_owned());
    let mut allowed: Vec<&str> = own.as_deref().into_iter().collect();
    allowed.extend(config.trusted_origins.iter().filter_map(|o| o.split_once("://").map(|(_, host)| host)));
    url_has_allowed_host_and_scheme(next, &allowed, config.secure)
}

/// Django's `url_has_allowed_host_and_scheme`: a relative URL, or one whose host is in
/// `allowed_hosts` (exactly, port included) and whose scheme is http(s) (https only when
/// `require_https`). Checked as written and with `\` read as `/`, as Chrome reads it.
pub fn url_has_allowed_host_and_scheme(url: &str, allowed_hosts: &[&str], require_https: bool) -> bool {
    let url = url.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    !url.is_empty()
        && allowed(url, allowed_hosts, require_https)
        && allowed(&url.replace('\\', "/"), allowed_hosts, require_https)
}

fn allowed(url: &str, allowed_hosts: &[&str], require_https: bool) -> bool {
    // Chrome reads three slashes or more as an absolute URL.
    if url.starts_with("///") {
        return false;
    }
    // Browsers skip control characters at the start; Django refuses any (category C).
    // Stricter: any first character that is not printable ASCII.
    if !url.chars().next().is_some_and(|c| c.is_ascii_graphic()) {
        return false;
    }
    let (scheme, netloc) = urlsplit(url);
    // `http:///example.com`: a scheme without a host, which Chrome reads as a host.
    if netloc.is_empty() && !scheme.is_empty() {
        return false;
    }
    let scheme = if scheme.is_empty() && !netloc.is_empty() { "http".to_owned() } else { scheme };
    let scheme_ok = scheme.is_empty() || scheme == "https" || (!require_https && scheme == "http");
    (netloc.is_empty() || allowed_hosts.contains(&netloc.as_str())) && scheme_ok
}

/// Python's `urlsplit`, as far as the scheme and the host go: tabs and line breaks are
/// removed first, the scheme is lowercased.
fn urlsplit(url: &str) -> (String, String) {
    let url: String = url.chars().filter(|c| !matches!(c, '\t' | '\r' | '\n')).collect();
    let mut rest = url.as_str();
    let mut scheme = String::new();
    if let Some(i) = rest.find(':') {
        let candidate = &rest[..i];
        let valid = candidate.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && candidate.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if valid {
            scheme = candidate.to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
    }
    let netloc = match rest.strip_prefix("//") {
        Some(after) => after.split(['/', '?', '#']).next().unwrap_or_default().to_owned(),
        None => String::new(),
    };
    (scheme, netloc)
}

#[cfg(test)]
mod tests {
    use super::url_has_allowed_host_and_scheme as safe;

    // Django's own cases (tests/utils_tests/test_http.py), with "testserver" allowed.
    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "http://example.com",
            "http:///example.com",
            "https://example.com",
            "ftp://example.com",
            r"\\example.com",
            r"\\\example.com",
            r"/\\/example.com",
            r"\\\example.com",
            r"\\example.com",
            r"\\//example.com",
            r"/\/example.com",
            r"\/example.com",
            r"/\example.com",
            "http:///example.com",
            r"http:/\//example.com",
            r"http:\/example.com",
            r"http:/\example.com",
            "javascript:alert(\"XSS\")",
            "\njavascript:alert(x)",
            "\x08//example.com",
            r"http://otherserver\@example.com",
            r"http:\\testserver\@example.com",
            r"http://testserver\me:pass@example.com",
            r"http://testserver\@example.com",
            r"http:\\testserver\confirm\me@example.com",
            "http:999999999",
            "ftp:9999999999",
            "\n",
            "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
            "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
            "//evil.example",
            "/\t/evil.example",
            "",
        ] {
            assert!(!safe(bad, &["testserver"], false), "{bad:?} must be refused");
        }
    }

    #[test]
    fn good_urls_are_followed() {
        for good in [
            "/view/?param=http://example.com",
            "/view/?param=https://example.com",
            "/view?param=ftp://example.com",
            "view/?param=//example.com",
            "https://testserver/",
            "HTTPS://testserver/",
            "//testserver/",
            "http://testserver/confirm?email=me@example.com",
            "/url%20with%20spaces/",
            "path/http:2222222222",
        ] {
            assert!(safe(good, &["testserver"], false), "{good:?} must be followed");
        }
    }

    #[test]
    fn https_only_when_required() {
        assert!(safe("https://testserver/", &["testserver"], true));
        assert!(!safe("http://testserver/", &["testserver"], true));
        assert!(!safe("//testserver/", &["testserver"], true), "scheme-relative reads as http");
        assert!(safe("/relative", &["testserver"], true));
    }
}
