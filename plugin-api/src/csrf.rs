//! Django's CSRF protection, in Django's words, so that Django and DRF front ends work
//! unchanged: a 32-character secret in the `csrftoken` cookie; a request token that is the
//! secret or its 64-character masked form (salt + secret shifted by salt); an `Origin`
//! that must be the host's own or a trusted one. Used by the session scheme and by the
//! host's login view.

use crate::request::RequestView;

/// The characters of secrets, salts and masked tokens.
pub const ALLOWED: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const SECRET_LENGTH: usize = 32;
pub const TOKEN_LENGTH: usize = 2 * SECRET_LENGTH;

/// Where the cookie, header and trusted origins come from.
#[derive(Debug, Clone, Copy)]
pub struct CsrfSettings<'a> {
    pub cookie_name: &'a str,
    /// The header a token may come in (`X-CSRFToken`).
    pub header_name: &'a str,
    /// Whether the host is reached over https (its own origin's scheme).
    pub secure: bool,
    /// Other origins allowed to post (`https://app.example.com`).
    pub trusted_origins: &'a [&'a str],
}

fn index(c: u8) -> Option<usize> {
    ALLOWED.iter().position(|&a| a == c)
}

/// Django's `_mask_cipher_secret`: `salt` and `secret` are 32 allowed characters each.
pub fn mask(secret: &str, salt: &str) -> String {
    let cipher: String = secret
        .bytes()
        .zip(salt.bytes())
        .map(|(s, k)| {
            let (s, k) = (index(s).unwrap_or(0), index(k).unwrap_or(0));
            char::from(ALLOWED[(s + k) % ALLOWED.len()])
        })
        .collect();
    format!("{salt}{cipher}")
}

/// Django's `_unmask_cipher_token`: the secret inside a 64-character masked token.
pub fn unmask(token: &str) -> String {
    let (salt, cipher) = token.split_at(SECRET_LENGTH.min(token.len()));
    cipher
        .bytes()
        .zip(salt.bytes())
        .map(|(c, k)| {
            let (c, k) = (index(c).unwrap_or(0), index(k).unwrap_or(0));
            char::from(ALLOWED[(c + ALLOWED.len() - k) % ALLOWED.len()])
        })
        .collect()
}

/// `Err("has incorrect length")` or `Err("has invalid characters")`, Django's order.
pub fn check_format(token: &str) -> Result<(), &'static str> {
    if token.len() != SECRET_LENGTH && token.len() != TOKEN_LENGTH {
        return Err("has incorrect length");
    }
    if !token.bytes().all(|b| index(b).is_some()) {
        return Err("has invalid characters");
    }
    Ok(())
}

/// The secret a well-formed token or cookie stands for.
pub fn secret_of(token: &str) -> String {
    if token.len() == TOKEN_LENGTH {
        unmask(token)
    } else {
        token.to_owned()
    }
}

/// Compares in constant time (`subtle`), so that timing does not tell how much matched;
/// only the lengths may show.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// `Django's X-CSRFToken` shown the way Django names a header: `X-Csrftoken`.
fn display_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The secret in the CSRF cookie: `Ok(None)` when there is none, `Err(reason)` when it is
/// malformed (`CSRF cookie has incorrect length.`).
pub fn cookie_secret(
    request: &RequestView<'_>,
    settings: &CsrfSettings<'_>,
) -> Result<Option<String>, String> {
    let Some(cookie) = request.cookie(settings.cookie_name) else { return Ok(None) };
    check_format(&cookie).map_err(|why| format!("CSRF cookie {why}."))?;
    Ok(Some(secret_of(&cookie)))
}

/// Django's `CsrfViewMiddleware` checks for an unsafe request: the origin, the cookie, then
/// the token (the `csrfmiddlewaretoken` form field of a POST, else the header), which must
/// stand for `expected` (the session's secret; for a login, the cookie's). `Err` is Django's
/// reason, to be sent as `CSRF Failed: <reason>`.
pub fn check(
    request: &RequestView<'_>,
    settings: &CsrfSettings<'_>,
    expected: Option<&str>,
    form_token: Option<&str>,
) -> Result<(), String> {
    if let Some(origin) = request.header("origin") {
        let own = request
            .header("host")
            .map(|host| format!("{}://{}", if settings.secure { "https" } else { "http" }, host));
        let trusted = own.as_deref() == Some(&*origin) || settings.trusted_origins.contains(&&*origin);
        if !trusted {
            return Err(format!("Origin checking failed - {origin} does not match any trusted origins."));
        }
    } else if settings.secure {
        check_referer(request, settings)?;
    }
    let cookie = cookie_secret(request, settings)?.ok_or_else(|| "CSRF cookie not set.".to_owned())?;
    let expected = expected.unwrap_or(&cookie);
    let (token, source) = match form_token.filter(|t| !t.is_empty()) {
        Some(token) => (token.to_owned(), "POST".to_owned()),
        None => match request.header(settings.header_name) {
            Some(token) => {
                (token.into_owned(), format!("the '{}' HTTP header", display_header(settings.header_name)))
            }
            None => return Err("CSRF token missing.".to_owned()),
        },
    };
    check_format(&token).map_err(|why| format!("CSRF token from {source} {why}."))?;
    let matches_cookie = constant_time_eq(secret_of(&token).as_bytes(), cookie.as_bytes());
    let matches_expected = constant_time_eq(secret_of(&token).as_bytes(), expected.as_bytes());
    if !(matches_cookie && matches_expected) {
        return Err(format!("CSRF token from {source} incorrect."));
    }
    Ok(())
}

/// Django's `_check_referer`, for an unsafe request over https without an `Origin`: the
/// `Referer` must be an https URL of the host itself or of a trusted origin.
fn check_referer(request: &RequestView<'_>, settings: &CsrfSettings<'_>) -> Result<(), String> {
    let Some(referer) = request.header("referer") else {
        return Err("Referer checking failed - no Referer.".to_owned());
    };
    let malformed = || "Referer checking failed - Referer is malformed.".to_owned();
    let (scheme, rest) = referer.split_once("://").ok_or_else(malformed)?;
    let netloc = rest.split(['/', '?', '#']).next().unwrap_or("");
    if scheme.is_empty() || netloc.is_empty() {
        return Err(malformed());
    }
    if !scheme.eq_ignore_ascii_case("https") {
        return Err("Referer checking failed - Referer is insecure while host is secure.".to_owned());
    }
    let trusted_hosts = settings.trusted_origins.iter().filter_map(|o| o.split_once("://").map(|(_, h)| h));
    let own = request.header("host");
    let good = trusted_hosts
        .map(|h| h.trim_start_matches('*'))
        .chain(own.as_deref())
        .any(|h| is_same_domain(netloc, h));
    if !good {
        return Err(format!("Referer checking failed - {referer} does not match any trusted origins."));
    }
    Ok(())
}

/// Django's `is_same_domain`: `pattern` itself, or with a leading `.`, any subdomain too
/// (also the host's `[server] allowed_hosts`).
pub fn is_same_domain(host: &str, pattern: &str) -> bool {
    let (host, pattern) = (host.to_ascii_lowercase(), pattern.to_ascii_lowercase());
    match pattern.strip_prefix('.') {
        Some(parent) => host == parent || host.ends_with(&pattern),
        None => !pattern.is_empty() && host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Header;

    const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";
    const SALT: &str = "0123456789abcdefghijklmnopqrstuv";

    #[test]
    fn masking_round_trips_like_django() {
        let token = mask(SECRET, SALT);
        assert_eq!(token.len(), TOKEN_LENGTH);
        assert_eq!(&token[..32], SALT);
        assert_eq!(unmask(&token), SECRET);
        // Django: 'a' (0) shifted by '0' (52) is '0'.
        assert_eq!(&token[32..33], "0");
    }

    #[test]
    fn header_names_show_as_django_shows_them() {
        assert_eq!(display_header("X-CSRFToken"), "X-Csrftoken");
    }

    fn settings() -> CsrfSettings<'static> {
        CsrfSettings {
            cookie_name: "csrftoken",
            header_name: "X-CSRFToken",
            secure: false,
            trusted_origins: &["https://app.example"],
        }
    }

    fn check_with(headers: &[(&str, String)], form: Option<&str>) -> Result<(), String> {
        let headers: Vec<Header<'_>> = headers.iter().map(|(n, v)| Header::new(n, v.as_bytes())).collect();
        let req = RequestView::new("POST", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        check(&req, &settings(), Some(SECRET), form)
    }

    #[test]
    fn over_https_without_an_origin_the_referer_must_be_our_own_or_trusted() {
        let secure = CsrfSettings { secure: true, ..settings() };
        let run = |referer: Option<&str>| {
            let mut headers = vec![
                Header::new("cookie", b"csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF"),
                Header::new("host", b"api.test"),
                Header::new("x-csrftoken", SECRET.as_bytes()),
            ];
            if let Some(r) = referer {
                headers.push(Header::new("referer", r.as_bytes()));
            }
            let req = RequestView::new("POST", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
            check(&req, &secure, Some(SECRET), None)
        };
        assert_eq!(run(None), Err("Referer checking failed - no Referer.".into()));
        assert_eq!(run(Some("nonsense")), Err("Referer checking failed - Referer is malformed.".into()));
        assert_eq!(run(Some("https://")), Err("Referer checking failed - Referer is malformed.".into()));
        assert_eq!(
            run(Some("http://api.test/form")),
            Err("Referer checking failed - Referer is insecure while host is secure.".into())
        );
        assert_eq!(
            run(Some("https://evil.test/form")),
            Err("Referer checking failed - https://evil.test/form does not match any trusted origins.".into())
        );
        assert_eq!(run(Some("https://api.test/form?x=1")), Ok(()));
        assert_eq!(run(Some("https://app.example/page")), Ok(()), "a trusted origin");
        // Over http, Django checks no Referer.
        assert_eq!(
            check_with(&[("cookie", format!("csrftoken={SECRET}")), ("x-csrftoken", SECRET.into())], None),
            Ok(())
        );
    }

    #[test]
    fn every_django_reason() {
        let cookie = ("cookie", format!("csrftoken={SECRET}"));
        let host = ("host", "api.test".to_owned());
        let masked = mask(SECRET, SALT);
        assert_eq!(check_with(&[cookie.clone(), ("x-csrftoken", masked.clone())], None), Ok(()));
        assert_eq!(check_with(&[cookie.clone(), ("x-csrftoken", SECRET.into())], None), Ok(()));
        assert_eq!(check_with(std::slice::from_ref(&cookie), Some(&masked)), Ok(()));
        assert_eq!(check_with(&[("x-csrftoken", masked.clone())], None), Err("CSRF cookie not set.".into()));
        assert_eq!(
            check_with(&[("cookie", "csrftoken=short".into())], None),
            Err("CSRF cookie has incorrect length.".into())
        );
        assert_eq!(check_with(std::slice::from_ref(&cookie), None), Err("CSRF token missing.".into()));
        assert_eq!(
            check_with(&[cookie.clone(), ("x-csrftoken", "x".repeat(10))], None),
            Err("CSRF token from the 'X-Csrftoken' HTTP header has incorrect length.".into())
        );
        assert_eq!(
            check_with(&[cookie.clone(), ("x-csrftoken", "!".repeat(32))], None),
            Err("CSRF token from the 'X-Csrftoken' HTTP header has invalid characters.".into())
        );
        assert_eq!(
            check_with(&[cookie.clone(), ("x-csrftoken", "z".repeat(32))], None),
            Err("CSRF token from the 'X-Csrftoken' HTTP header incorrect.".into())
        );
        assert_eq!(
            check_with(std::slice::from_ref(&cookie), Some(&"z".repeat(64))),
            Err("CSRF token from POST incorrect.".into())
        );
        assert_eq!(
            check_with(
                &[cookie.clone(), host.clone(), ("origin", "https://evil.test".into())],
                Some(&masked)
            ),
            Err("Origin checking failed - https://evil.test does not match any trusted origins.".into())
        );
        assert_eq!(
            check_with(&[cookie.clone(), host.clone(), ("origin", "http://api.test".into())], Some(&masked)),
            Ok(())
        );
        assert_eq!(
            check_with(&[cookie, host, ("origin", "https://app.example".into())], Some(&masked)),
            Ok(())
        );
    }
}
