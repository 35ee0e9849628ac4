//! Django's login and logout views, for the session scheme: `login` GET hands out a CSRF
//! token, `login` POST checks it and the credentials and sets a new session cookie (the id
//! and the CSRF secret are rotated), `logout` POST ends the session.

use std::time::Duration;

use authhost_plugin_api::csrf::{self, CsrfSettings};
use authhost_plugin_api::form::form_field;
use authhost_plugin_api::{LoginField, RequestView};
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::config::SessionConfig;
use crate::error::Error;
use crate::respond::{detail_response, json_response, Body};
use crate::services::Services;
use crate::sessions;

/// Django's `CSRF_COOKIE_AGE`: a year.
pub(crate) const CSRF_COOKIE_AGE: Duration = Duration::from_secs(31_449_600);

pub(crate) fn csrf_settings<'a>(config: &'a SessionConfig, origins: &'a [&'a str]) -> CsrfSettings<'a> {
    CsrfSettings {
        cookie_name: &config.csrf_cookie_name,
        header_name: &config.csrf_header_name,
        secure: config.secure,
        trusted_origins: origins,
    }
}

/// A `Set-Cookie` value (built by the `cookie` crate): `Path=/`, `SameSite=Lax`, and
/// `Max-Age` as Django sets it.
pub(crate) fn cookie(
    name: &str,
    value: &str,
    max_age: Duration,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let cookie = cookie::Cookie::build((name, value))
        .max_age(cookie::time::Duration::seconds(seconds))
        .path("/")
        .same_site(cookie::SameSite::Lax)
        .http_only(http_only)
        .secure(secure)
        .build();
    HeaderValue::from_str(&cookie.to_string())
        .unwrap_or_else(|_| unreachable!("cookie names are checked and values are alphanumeric"))
}

fn csrf_failed(reason: &str) -> Response<Body> {
    detail_response(StatusCode::FORBIDDEN, &format!("CSRF Failed: {reason}"))
}

/// GET: a masked CSRF token and the cookie with its secret (reused when the request
/// already has a valid one, as Django's `get_token` does).
pub(crate) fn csrf_token(config: &SessionConfig, req: &RequestView<'_>) -> Response<Body> {
    let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
    let secret = csrf::cookie_secret(req, &csrf_settings(config, &origins))
        .ok()
        .flatten()
        .unwrap_or_else(sessions::new_csrf_secret);
    let mut resp = json_response(StatusCode::OK, &json!({ "csrftoken": sessions::masked_token(&secret) }));
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&config.csrf_cookie_name, &secret, CSRF_COOKIE_AGE, false, config.secure));
    resp
}

/// POST: login CSRF, then credentials, then a new session.
pub(crate) async fn login(
    services: &Services,
    config: &SessionConfig,
    req: &RequestView<'_>,
    field: LoginField,
) -> Result<Response<Body>, Error> {
    let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
    let form_token = form_field(req, "csrfmiddlewaretoken");
    if let Err(reason) = csrf::check(req, &csrf_settings(config, &origins), None, form_token.as_deref()) {
        return Ok(csrf_failed(&reason));
    }
    let user = match super::active_user(services, req, field).await? {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    // The old session, if any, ends: the id is rotated at login.
    if let Some(old) = req.cookie(&config.cookie_name) {
        services.delete_session(&old).await?;
    }
    let secret = sessions::new_csrf_secret();
    let key = services.create_session(&user, secret.clone(), config.ttl).await?;
    let mut resp = json_response(
        StatusCode::OK,
        &json!({ "user": user.username.as_str(), "csrftoken": sessions::masked_token(&secret) }),
    );
    let headers = resp.headers_mut();
    headers.append(SET_COOKIE, cookie(&config.cookie_name, &key, config.ttl, true, config.secure));
    headers
        .append(SET_COOKIE, cookie(&config.csrf_cookie_name, &secret, CSRF_COOKIE_AGE, false, config.secure));
    Ok(resp)
}

/// POST: ends the session (CSRF-checked against it), and clears the cookie. 204 whether or
/// not there was a live session.
pub(crate) async fn logout(
    services: &Services,
    config: &SessionConfig,
    req: &RequestView<'_>,
) -> Result<Response<Body>, Error> {
    if let Some(key) = req.cookie(&config.cookie_name) {
        if let Some(session) = services.find_session(&key).await? {
            let origins: Vec<&str> = config.trusted_origins.iter().map(String::as_str).collect();
            let form_token = form_field(req, "csrfmiddlewaretoken");
            let settings = csrf_settings(config, &origins);
            if let Err(reason) =
                csrf::check(req, &settings, Some(session.csrf_secret.as_str()), form_token.as_deref())
            {
                return Ok(csrf_failed(&reason));
            }
            services.delete_session(&key).await?;
        }
    }
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&config.cookie_name, "\"\"", Duration::ZERO, true, config.secure));
    Ok(resp)
}
