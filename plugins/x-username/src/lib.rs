//! X-USERNAME: the DRF documentation's example of a custom authentication scheme, and the
//! template to copy when writing your own (see `docs/writing-a-scheme.md`).
//!
//! - no `X-USERNAME` header: not attempted, so the next scheme in the chain decides;
//! - a header naming no user: failed, `No such user`;
//! - a header naming an inactive user: failed, `User inactive or deleted.` (stricter than
//!   the DRF docs' example, which lets inactive users in);
//! - otherwise: authenticated as that user.

use authhost_plugin_api::{
    export_scheme, Host, OptionKind, OptionSpec, Options, Outcome, RequestView, Scheme, SchemeError,
};

/// The scheme. It has no state, so `new` only checks that it was given no options.
#[derive(Debug)]
pub struct XUsername {
    header: String,
}

impl Scheme for XUsername {
    // Declared for `authhost plugin info`; `authhost check` refuses another key or kind.
    const OPTIONS: &'static [OptionSpec] = &[OptionSpec::new(
        "header",
        OptionKind::Text,
        "X-USERNAME",
        "the request header that names the user",
    )];

    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        // Every option is read through `options`; a key this scheme never reads is refused
        // at start-up as unknown. This one option is not in the DRF example.
        let header = options.str_or("header", "X-USERNAME")?.to_owned();
        Ok(XUsername { header })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        // DRF's example: `if not username: return None`. An empty header is no credential.
        let Some(username) = request.header(&self.header).filter(|name| !name.is_empty()) else {
            return Ok(Outcome::NotAttempted);
        };
        // `?` passes on a pending look-up: the host fetches the user off its async workers
        // and calls this function again with the answer in memory.
        Ok(match host.find_user(&username)? {
            Some(user) if user.is_active => Outcome::authenticated(user),
            Some(_) => Outcome::failed("User inactive or deleted."),
            None => Outcome::failed("No such user"),
        })
    }
}

export_scheme!(XUsername);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::Header;

    use super::*;

    fn host() -> MemoryHost {
        MemoryHost::new().with_user("alice", None, true, false).with_user("gone", None, false, false)
    }

    fn outcome(headers: &[Header<'_>]) -> Outcome {
        let scheme = XUsername::new(&Options::new(&[])).unwrap();
        let request = RequestView::new("GET", "/", "", headers, "127.0.0.1:1".parse().unwrap());
        authenticate(&scheme, &request, &host()).unwrap()
    }

    #[test]
    fn no_header_is_not_attempted() {
        assert_eq!(outcome(&[]), Outcome::NotAttempted);
    }

    #[test]
    fn an_empty_header_is_not_attempted() {
        assert_eq!(outcome(&[Header::new("x-username", b"")]), Outcome::NotAttempted);
    }

    #[test]
    fn a_known_user_is_authenticated() {
        match outcome(&[Header::new("x-username", b"alice")]) {
            Outcome::Authenticated { user, .. } => assert_eq!(user.username.as_str(), "alice"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_user_fails() {
        assert_eq!(outcome(&[Header::new("x-username", b"mallory")]), Outcome::failed("No such user"));
    }

    #[test]
    fn an_inactive_user_fails() {
        assert_eq!(
            outcome(&[Header::new("x-username", b"gone")]),
            Outcome::failed("User inactive or deleted.")
        );
    }

    #[test]
    fn the_same_answers_when_the_host_must_fetch_first() {
        // The host answers "pending" when a user is not in its memory, fetches, and calls
        // the scheme again: the outcome must be the same, after exactly two calls.
        let scheme = XUsername::new(&Options::new(&[])).unwrap();
        for (name, want) in [
            ("alice", None),
            ("mallory", Some(Outcome::failed("No such user"))),
            ("gone", Some(Outcome::failed("User inactive or deleted."))),
        ] {
            let host = host().answering_later();
            let headers = [Header::new("x-username", name.as_bytes())];
            let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
            let outcome = authenticate(&scheme, &request, &host).unwrap();
            match want {
                Some(want) => assert_eq!(outcome, want),
                None => assert!(matches!(outcome, Outcome::Authenticated { .. }), "{outcome:?}"),
            }
            assert_eq!(host.calls(), 2, "{name}: one pending call, then the answer");
        }
    }

    #[test]
    fn the_header_is_configurable_and_other_keys_are_refused() {
        let scheme: XUsername = authhost_plugin_api::testing::build("header = \"X-Remote\"").unwrap();
        let headers = [Header::new("x-remote", b"alice")];
        let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        assert!(matches!(authenticate(&scheme, &request, &host()).unwrap(), Outcome::Authenticated { .. }));
        let typo = authhost_plugin_api::testing::build::<XUsername>("headr = \"X-Remote\"").unwrap_err();
        assert_eq!(typo.to_string(), "headr: unknown option (did you mean \"header\"?)");
        let kind = authhost_plugin_api::testing::build::<XUsername>("header = 3").unwrap_err();
        assert_eq!(kind.to_string(), "header: expected a string, found an integer");
    }
}
