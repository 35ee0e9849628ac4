//! RemoteUser (DRF's `RemoteUserAuthentication`): the identity a trusted front proxy set in
//! a header. Honoured only when the peer is one of `trusted_proxies`; from any other peer
//! the header is not attempted, and a warning is logged once per peer (someone may be
//! trying to forge an identity, or the proxy list is wrong).
//!
//! Options: `header` (`"X-Remote-User"`), `trusted_proxies` (addresses and CIDR ranges,
//! none by default), `create_unknown_user` (`true`, Django's default).
//!
//! It never fails: no header, an empty one, an unknown user (when not created) and an
//! inactive user are all "not attempted", as with Django's `RemoteUserBackend`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use authhost_plugin_api::{
    export_scheme, Host, OptionKind, OptionSpec, Options, Outcome, RequestView, Scheme, SchemeError,
};

use authhost_plugin_api::net::Cidr;

/// Peers warned about, at most this many (then the set starts again).
const WARNED_PEERS_MAX: usize = 10_000;

#[derive(Debug)]
pub struct RemoteUser {
    header: String,
    trusted: Vec<Cidr>,
    create_unknown_user: bool,
    warned: Mutex<HashSet<IpAddr>>,
}

impl Scheme for RemoteUser {
    const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec::new("header", OptionKind::Text, "X-Remote-User", "the header the front proxy sets"),
        OptionSpec::new(
            "trusted_proxies",
            OptionKind::List,
            "",
            "addresses and CIDR ranges the header is believed from",
        ),
        OptionSpec::new("create_unknown_user", OptionKind::Boolean, "true", "create users the proxy names"),
    ];

    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {
        let header = options.str_or("header", "X-Remote-User")?.to_owned();
        let trusted = options
            .list("trusted_proxies")?
            .unwrap_or_default()
            .into_iter()
            .map(|text| {
                text.parse::<Cidr>().map_err(|()| {
                    SchemeError::option(
                        "trusted_proxies",
                        format!("{text:?} is not an address or CIDR range (like \"10.0.0.0/8\" or \"::1\")"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let create_unknown_user = options.bool_or("create_unknown_user", true)?;
        Ok(RemoteUser { header, trusted, create_unknown_user, warned: Mutex::default() })
    }

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {
        let Some(username) = request.header(&self.header) else {
            return Ok(Outcome::NotAttempted);
        };
        let peer = request.peer().ip();
        if !self.trusted.iter().any(|range| range.contains(peer)) {
            self.warn_once(peer, host);
            return Ok(Outcome::NotAttempted);
        }
        let username = username.trim();
        if username.is_empty() {
            return Ok(Outcome::NotAttempted);
        }
        // Two headers arrive joined ("alice, root"), and a proxy may pass on anything: only
        // a name Django's username validator accepts (letters, digits, @ . + - _; at most
        // 150 characters) is looked up or created; anything else fails.
        if !is_username(username) {
            return Ok(Outcome::failed("Invalid remote user."));
        }
        let user = if self.create_unknown_user {
            Some(host.create_user(username)?)
        } else {
            host.find_user(username)?
        };
        Ok(match user {
            Some(user) if user.is_active => Outcome::authenticated(user),
            _ => Outcome::NotAttempted,
        })
    }
}

/// Django's `UnicodeUsernameValidator` (`^[\w.@+-]+\Z`) and `max_length = 150`.
fn is_username(name: &str) -> bool {
    name.chars().count() <= 150 && name.chars().all(|c| c.is_alphanumeric() || "_.@+-".contains(c))
}

impl RemoteUser {
    fn warn_once(&self, peer: IpAddr, host: &Host<'_>) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() >= WARNED_PEERS_MAX {
            warned.clear();
        }
        if warned.insert(peer) {
            host.warn(&format!(
                "ignoring the {} header from {peer}, which is not in trusted_proxies",
                self.header
            ));
        }
    }
}

export_scheme!(RemoteUser);

#[cfg(test)]
mod tests {
    use authhost_plugin_api::testing::{authenticate, MemoryHost};
    use authhost_plugin_api::{Header, OptionEntry, OptionValue};

    use super::*;

    fn scheme(create: bool) -> RemoteUser {
        let entries = [
            OptionEntry::new(
                "trusted_proxies",
                OptionValue::StrList(vec!["10.0.0.0/8".into(), "::1".into()].into()),
            ),
            OptionEntry::new("create_unknown_user", OptionValue::Bool(create)),
        ];
        RemoteUser::new(&Options::new(&entries)).unwrap()
    }

    fn outcome(scheme: &RemoteUser, host: &MemoryHost, peer: &str, user: Option<&str>) -> Outcome {
        let headers: Vec<Header<'_>> =
            user.map(|u| Header::new("x-remote-user", u.as_bytes())).into_iter().collect();
        let request = RequestView::new("GET", "/", "", &headers, peer.parse().unwrap());
        authenticate(scheme, &request, host).unwrap()
    }

    #[test]
    fn trusted_peers_only_and_one_warning_per_peer() {
        let host =
            MemoryHost::new().with_user("alice", None, true, false).with_user("gone", None, false, false);
        let s = scheme(false);
        assert!(matches!(outcome(&s, &host, "10.1.2.3:5", Some("alice")), Outcome::Authenticated { .. }));
        assert!(matches!(outcome(&s, &host, "[::1]:5", Some("alice")), Outcome::Authenticated { .. }));
        assert_eq!(outcome(&s, &host, "192.168.0.1:5", Some("alice")), Outcome::NotAttempted);
        assert_eq!(outcome(&s, &host, "192.168.0.1:6", Some("alice")), Outcome::NotAttempted);
        assert_eq!(host.warnings().len(), 1, "{:?}", host.warnings());
        assert!(host.warnings()[0].contains("192.168.0.1"));
        assert_eq!(outcome(&s, &host, "10.1.2.3:5", Some("gone")), Outcome::NotAttempted);
        assert_eq!(outcome(&s, &host, "10.1.2.3:5", Some("nobody")), Outcome::NotAttempted);
        assert_eq!(outcome(&s, &host, "10.1.2.3:5", Some("  ")), Outcome::NotAttempted);
        assert_eq!(outcome(&s, &host, "10.1.2.3:5", None), Outcome::NotAttempted);
    }

    #[test]
    fn only_a_valid_username_is_looked_up_or_created() {
        let mut host = MemoryHost::new();
        for good in ["alice", "alice@example.com", "a.b+c-d_e", "zoë"] {
            host = host.with_user(good, None, true, false);
        }
        let s = scheme(false);
        for bad in ["alice, root", "al ice", "alice\troot", "a/b", &"a".repeat(151)] {
            assert_eq!(
                outcome(&s, &host, "10.1.2.3:5", Some(bad)),
                Outcome::failed("Invalid remote user."),
                "{bad}"
            );
        }
        for good in ["alice", "alice@example.com", "a.b+c-d_e", "zoë"] {
            assert!(
                matches!(outcome(&s, &host, "10.1.2.3:5", Some(good)), Outcome::Authenticated { .. }),
                "{good}"
            );
        }
        // 150 characters is a name (not found here), 151 is none.
        assert_eq!(outcome(&s, &host, "10.1.2.3:5", Some(&"a".repeat(150))), Outcome::NotAttempted);
    }

    #[test]
    fn a_bad_range_names_the_option() {
        let entries =
            [OptionEntry::new("trusted_proxies", OptionValue::StrList(vec!["10.0.0.0/33".into()].into()))];
        assert_eq!(
            RemoteUser::new(&Options::new(&entries)).unwrap_err().option_key(),
            Some("trusted_proxies")
        );
    }
}
