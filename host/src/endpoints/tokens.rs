//! knox's views for per-client tokens: `login_token` issues one to a user the route's chain
//! authenticated (with Basic, say), `logout_token` deletes the token in use, `logout_all`
//! every token of the user's.

use authhost_plugin_api::{RequestView, TokenPolicy, User};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::error::Error;
use crate::respond::{json_response, Body};
use crate::services::Services;
use crate::tokens::rfc3339;

/// knox's answer when a user holds `limit_per_user` live tokens already, under the key
/// `error` as knox's LoginView sends it (not DRF's `detail`).
pub const LIMIT_REACHED: &str = "Maximum amount of tokens allowed per user exceeded.";

/// The label of the client a token is for: the `client` field of a JSON or form body, else
/// the `User-Agent` header, else "unknown client"; printable, at most 100 characters.
fn client_label(req: &RequestView<'_>) -> String {
    label(req).unwrap_or_else(|| "unknown client".to_owned())
}

fn label(req: &RequestView<'_>) -> Option<String> {
    // request_data reads JSON, form and multipart bodies alike.
    let from_body = match super::request_data(req) {
        Ok(serde_json::Value::Object(fields)) => {
            fields.get("client").and_then(|c| c.as_str()).map(str::to_owned)
        }
        _ => None,
    };
    let label = from_body.or_else(|| req.header("user-agent").map(|ua| ua.into_owned()))?;
    let label: String = label.chars().filter(|c| !c.is_control()).take(100).collect();
    (!label.trim().is_empty()).then_some(label)
}

/// POST: `{"token": "<key>", "expiry": "<RFC 3339>" or null}`.
pub(crate) async fn login_token(
    services: &Services,
    policy: &TokenPolicy,
    user: &User,
    req: &RequestView<'_>,
) -> Result<Response<Body>, Error> {
    match services.issue_token(user, policy, Some(client_label(req))).await? {
        Some((key, expires)) => {
            Ok(json_response(StatusCode::OK, &json!({ "token": key, "expiry": expires.map(rfc3339) })))
        }
        None => Ok(json_response(StatusCode::FORBIDDEN, &json!({ "error": LIMIT_REACHED }))),
    }
}

/// POST: deletes the token the request came with; 204.
pub(crate) async fn logout_token(
    services: &Services,
    user: &User,
    token_id: i64,
) -> Result<Response<Body>, Error> {
    services.delete_token(user, token_id).await?;
    Ok(no_content())
}

/// POST: deletes every token of the user's; 204.
pub(crate) async fn logout_all(services: &Services, user: &User) -> Result<Response<Body>, Error> {
    services.delete_user_tokens(user).await?;
    Ok(no_content())
}

fn no_content() -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
