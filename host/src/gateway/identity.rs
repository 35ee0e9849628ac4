//! The identity headers (`X-Authenticated-User` and its siblings): removed from every
//! request as it arrives, so that no client can forge one, and set on an allowed request
//! that a scheme authenticated. Anonymous requests carry none.

use authhost_plugin_api::User;
use hyper::header::{HeaderMap, HeaderValue};

use crate::config::GatewayConfig;

/// Who an allowed request is, for the headers.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub user: &'a User,
    /// The name of the scheme that authenticated the request.
    pub scheme: &'a str,
}

/// Removes every header named like an identity header, however many there are.
pub fn strip(headers: &mut HeaderMap, names: &GatewayConfig) {
    let names = names.identity_headers();
    // The usual request carries none, and comparing its few names with the five is cheaper
    // than five removals, each of which hashes its name (callgrind: 936 instructions per
    // request went here, 4% of a Token request).
    if !headers.keys().any(|present| names.contains(&present)) {
        return;
    }
    for name in names {
        // `remove` drops every value of the name, not only the first.
        headers.remove(name);
    }
}

/// Sets the five identity headers for `identity`. Values go as they are (UTF-8 included); one
/// that cannot be a header value (a control character in a username) has those characters
/// percent-encoded rather than being dropped, so that the upstream never sees an
/// authenticated request without its user.
pub fn set(headers: &mut HeaderMap, names: &GatewayConfig, identity: Identity<'_>) {
    let user = identity.user;
    let values: [(&hyper::header::HeaderName, HeaderValue); 5] = [
        (&names.user_header, value(&user.username)),
        (&names.user_id_header, HeaderValue::from(user.id)),
        (&names.email_header, value(&user.email)),
        (&names.scheme_header, value(identity.scheme)),
        (&names.staff_header, HeaderValue::from_static(if user.is_staff { "true" } else { "false" })),
    ];
    // All five, the e-mail address empty when there is none: a proxy that copies headers
    // from authhost's answer (Caddy) then never sees a missing one.
    for (name, value) in values {
        headers.insert(name.clone(), value);
    }
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| {
        let mut encoded = String::with_capacity(text.len() * 3);
        for c in text.chars() {
            if c.is_ascii_control() {
                encoded.push_str(&format!("%{:02X}", u32::from(c)));
            } else {
                encoded.push(c);
            }
        }
        HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderName;

    use super::*;

    #[test]
    fn a_username_that_is_no_header_value_is_percent_encoded() {
        assert_eq!(value("alice"), "alice");
        assert_eq!(value("al\nice"), "al%0Aice");
        assert_eq!(value("zoë").as_bytes(), "zoë".as_bytes());
        assert_eq!(value("a\u{7f}b"), "a%7Fb");
    }

    #[test]
    fn every_value_of_every_identity_name_is_stripped_and_nothing_else() {
        let names = GatewayConfig {
            trusted_proxies: Vec::new(),
            user_header: HeaderName::from_static("x-authenticated-user"),
            user_id_header: HeaderName::from_static("x-authenticated-user-id"),
            email_header: HeaderName::from_static("x-authenticated-email"),
            scheme_header: HeaderName::from_static("x-who-said-so"),
            staff_header: HeaderName::from_static("x-authenticated-staff"),
        };
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Token x"));
        headers.insert("x-authenticated-userx", HeaderValue::from_static("kept"));
        let untouched = headers.clone();
        strip(&mut headers, &names);
        assert_eq!(headers, untouched, "a request without identity headers");
        headers.append("X-Authenticated-User", HeaderValue::from_static("root"));
        headers.append("x-authenticated-user", HeaderValue::from_static("root2"));
        headers.append("X-Who-Said-So", HeaderValue::from_static("basic"));
        strip(&mut headers, &names);
        assert_eq!(headers, untouched, "every forged value goes, the rest stays");
    }
}
