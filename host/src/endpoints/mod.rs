//! The built-in handlers that read a body, and DRF's parsing of it (`request.data`).

pub mod jwt;
pub mod obtain_token;
pub mod pages;
pub mod session;
pub mod tokens;

use serde_json::{Map, Value};

use authhost_plugin_api::form::form_fields;
use authhost_plugin_api::{LoginField, RequestView, User};
use hyper::{Response, StatusCode};

use crate::error::Error;
use crate::respond::{json_response, Body};
use crate::services::Services;

/// DRF's credentials serializer on the request body (login in the field `field`, and
/// `password`): the active user they are of, or DRF's 400 (or 415) answer. Inactive users
/// cannot log in (Django's ModelBackend), and read as bad credentials.
pub(crate) async fn active_user(
    services: &Services,
    req: &RequestView<'_>,
    field: LoginField,
) -> Result<Result<User, Response<Body>>, Error> {
    let data = match request_data(req) {
        Ok(data) => data,
        Err(err) => return Ok(Err(parse_error(err))),
    };
    let credentials = match obtain_token::validate(&data, field) {
        Ok(credentials) => credentials,
        Err(errors) => return Ok(Err(json_response(StatusCode::BAD_REQUEST, &errors))),
    };
    let user = services
        .verify_login(credentials.field, credentials.login, credentials.password, req.peer().ip())
        .await?;
    Ok(user
        .filter(|u| u.is_active)
        .ok_or_else(|| json_response(StatusCode::BAD_REQUEST, &obtain_token::bad_credentials())))
}

/// Why a body could not be read as data: DRF's parse errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 400 `JSON parse error - <parser's message>`.
    Json(String),
    /// 400 `Multipart form parse error - <why>`.
    Multipart(String),
    /// 415 `Unsupported media type "<type>" in request.`
    UnsupportedMediaType(String),
}

/// DRF's answers to a body it cannot parse.
pub(crate) fn parse_error(err: ParseError) -> hyper::Response<crate::respond::Body> {
    use hyper::StatusCode;
    match err {
        ParseError::Json(message) => {
            crate::respond::detail_response(StatusCode::BAD_REQUEST, &format!("JSON parse error - {message}"))
        }
        ParseError::Multipart(why) => crate::respond::detail_response(
            StatusCode::BAD_REQUEST,
            &format!("Multipart form parse error - {why}"),
        ),
        ParseError::UnsupportedMediaType(media_type) => crate::respond::detail_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Unsupported media type \"{media_type}\" in request."),
        ),
    }
}

/// The body as DRF's parsers see it: JSON (any value), or a form as an object of strings
/// (the last value of a repeated field wins, as `QueryDict.get` does). No content type, or
/// an empty body, gives an empty object.
pub fn request_data(request: &RequestView<'_>) -> Result<Value, ParseError> {
    let content_type = request.header("content-type").map(|c| c.into_owned());
    let body = request.body();
    let Some(content_type) = content_type.filter(|c| !c.trim().is_empty()) else {
        return Ok(Value::Object(Map::new()));
    };
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media_type.as_str() {
        _ if body.is_empty() && is_known(&media_type) => Ok(Value::Object(Map::new())),
        "application/json" => serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string())),
        "application/x-www-form-urlencoded" | "multipart/form-data" => match form_fields(request) {
            Some(Ok(fields)) => {
                Ok(Value::Object(fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
            }
            Some(Err(why)) => Err(ParseError::Multipart(why)),
            None => Ok(Value::Object(Map::new())),
        },
        _ => Err(ParseError::UnsupportedMediaType(content_type)),
    }
}

fn is_known(media_type: &str) -> bool {
    matches!(media_type, "application/json" | "application/x-www-form-urlencoded" | "multipart/form-data")
}
