//! Session authentication (DRF's `SessionAuthentication`): the session cookie the host's
//! `login` view sets. An authenticated session must pass Django's CSRF checks on unsafe
//! methods; anonymous requests are never checked. It has no challenge, so a chain that
//! starts with it answers every refusal with 403.
//!
//! Cookie names, https and trusted origins come from the host's `[session]` settings,
//! which the login view shares, so the two can never disagree. No options of its own.

use authhost_plugin_api::csrf::{self, CsrfSettings};
use authhost_plugin_api::form::form_field;
use authhost_plugin_api::{export_scheme, Host, Options, Outcome, RequestView, Scheme, SchemeError};

#[derive(Debug)]
pub struct Session;

impl Scheme for Session {
    fn new(_options: &Options<'_>) -> Result<Self, SchemeError> {
        Ok(Session)
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let settings = host.session_settings();
        let Some(key) = request.cookie(&settings.cookie_name) else { return Ok(Outcome::NotAttempted) };
        // No live session, or an inactive user: anonymous, as Django's middleware leaves it.
        let Some(session) = host.find_session(&key)? else { return Ok(Outcome::NotAttempted) };
        if !session.user.is_active {
            return Ok(Outcome::NotAttempted);
        }
        if !request.is_safe_method() {
            let origins: Vec<&str> = settings.trusted_origins.iter().map(|o| o.as_str()).collect();
            let csrf_settings = CsrfSettings {
                cookie_name: &settings.csrf_cookie_name,
                header_name: &settings.csrf_header_name,
                secure: settings.secure,
                trusted_origins: &origins,
            };
            let form_token =
                if request.method() == "POST" { form_field(request, "csrfmiddlewaretoken") } else { None };
            if let Err(reason) = csrf::check(
                request,
                &csrf_settings,
                Some(session.csrf_secret.as_str()),
                form_token.as_deref(),
            ) {
                return Ok(Outcome::forbidden(format!("CSRF Failed: {reason}")));
            }
        }
        Ok(Outcome::authenticated(session.user))
    }
}

export_scheme!(Session);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::Header;

    use super::*;

    const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";

    fn outcome(method: &str, headers: &[(&str, &str)]) -> Outcome {
        let host = MemoryHost::new()
            .with_user("alice", None, true, false)
            .with_user("gone", None, false, false)
            .with_session("k-alice", "alice", SECRET)
            .with_session("k-gone", "gone", SECRET);
        let headers: Vec<Header<'_>> = headers.iter().map(|(n, v)| Header::new(n, v.as_bytes())).collect();
        let request = RequestView::new(method, "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        authenticate(&Session, &request, &host).unwrap()
    }

    #[test]
    fn sessions_authenticate_and_unsafe_methods_need_csrf() {
        let cookies = format!("sessionid=k-alice; csrftoken={SECRET}");
        assert!(matches!(outcome("GET", &[("cookie", &cookies)]), Outcome::Authenticated { .. }));
        assert_eq!(
            outcome("POST", &[("cookie", &cookies)]),
            Outcome::forbidden("CSRF Failed: CSRF token missing.")
        );
        assert!(matches!(
            outcome("POST", &[("cookie", &cookies), ("x-csrftoken", SECRET)]),
            Outcome::Authenticated { .. }
        ));
        assert_eq!(outcome("GET", &[("cookie", "sessionid=nope")]), Outcome::NotAttempted);
        assert_eq!(outcome("POST", &[("cookie", "sessionid=k-gone")]), Outcome::NotAttempted);
        assert_eq!(outcome("POST", &[]), Outcome::NotAttempted);
    }
}
