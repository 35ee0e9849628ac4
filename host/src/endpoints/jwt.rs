//! djangorestframework-jwt's views, for a scheme that mints JWTs (`token_scheme` on the
//! route): `obtain_jwt` (username, password → `{"token"}`), `refresh_jwt` (`{"token"}` → a
//! new one with the same `orig_iat`, refused past the refresh window) and `verify_jwt`
//! (`{"token"}` back, or 400 `{"non_field_errors": [reason]}`).

use authhost_plugin_api::{Claims, Inspected, LoginField, Minted, RequestView, User};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::obtain_token::char_fields;
use super::{parse_error, request_data};
use crate::error::Error;
use crate::loader::Scheme;
use crate::respond::{json_response, Body};
use crate::services::Services;
use crate::sessions;

/// What a handler answers: a response, or a fault to log and answer with 500.
type Answer = Result<Response<Body>, Error>;

fn refused(reason: &str) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "non_field_errors": [reason] }))
}

fn token_response(token: &str) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "token": token }))
}

fn mint(issuer: &Scheme, user: &User, orig_iat: i64) -> Answer {
    match issuer.mint(user, orig_iat) {
        Minted::Credential(token) => Ok(token_response(&token)),
        Minted::Unsupported => Err(Error::plugin(format!("scheme {:?} mints no tokens", issuer.name()))),
        Minted::Fault(message) => {
            Err(Error::plugin(format!("scheme {:?} could not mint: {message}", issuer.name())))
        }
    }
}

/// POST username (or the route's `login_field`), password.
pub(crate) async fn obtain(
    services: &Services,
    issuer: &Scheme,
    req: &RequestView<'_>,
    field: LoginField,
) -> Answer {
    match super::active_user(services, req, field).await? {
        Ok(user) => mint(issuer, &user, 0),
        Err(answer) => Ok(answer),
    }
}

/// The token in the body, read back and checked against its user (drf-jwt's
/// `VerificationBaseSerializer`): the claims and the user, or the 400 answer.
async fn check(
    services: &Services,
    issuer: &Scheme,
    req: &RequestView<'_>,
) -> Result<Result<(String, Claims, User), Response<Body>>, Error> {
    let data = match request_data(req) {
        Ok(data) => data,
        Err(err) => return Ok(Err(parse_error(err))),
    };
    let token = match char_fields(&data, &[("token", true)]) {
        Ok(mut values) => values.pop().unwrap_or_default(),
        Err(errors) => return Ok(Err(json_response(StatusCode::BAD_REQUEST, &errors))),
    };
    let claims = match issuer.inspect(&token) {
        Inspected::Claims(claims) => claims,
        Inspected::Invalid(reason) => return Ok(Err(refused(&reason))),
        Inspected::Unsupported => {
            return Err(Error::plugin(format!("scheme {:?} mints no tokens", issuer.name())))
        }
        Inspected::Fault(message) => {
            return Err(Error::plugin(format!(
                "scheme {:?} could not read a token: {message}",
                issuer.name()
            )))
        }
    };
    if claims.username.is_empty() {
        return Ok(Err(refused("Invalid payload.")));
    }
    let user = match services.find_user(claims.username.as_str()).await? {
        Some(user) if user.id == claims.user_id => user,
        _ => return Ok(Err(refused("User doesn't exist."))),
    };
    if !user.is_active {
        return Ok(Err(refused("User account is disabled.")));
    }
    if user.generation != claims.generation {
        return Ok(Err(refused("Token has been revoked.")));
    }
    Ok(Ok((token, claims, user)))
}

/// POST `{"token"}`: a new token with the same `orig_iat`, within the refresh window.
pub(crate) async fn refresh(services: &Services, issuer: &Scheme, req: &RequestView<'_>) -> Answer {
    let (_, claims, user) = match check(services, issuer, req).await? {
        Ok(checked) => checked,
        Err(answer) => return Ok(answer),
    };
    if claims.orig_iat == 0 || claims.refresh_until == 0 {
        return Ok(refused("orig_iat field is required."));
    }
    if sessions::now() > claims.refresh_until {
        return Ok(refused("Refresh has expired."));
    }
    mint(issuer, &user, claims.orig_iat)
}

/// POST `{"token"}`: the same token back when it is good.
pub(crate) async fn verify(services: &Services, issuer: &Scheme, req: &RequestView<'_>) -> Answer {
    Ok(match check(services, issuer, req).await? {
        Ok((token, _, _)) => token_response(&token),
        Err(answer) => answer,
    })
}
