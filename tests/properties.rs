//! Generated input (proptest) against the parsers, over real sockets where a request is
//! involved: the `Authorization` header (Basic and Token), cookies and CSRF tokens, form and
//! multipart bodies, and config files. Each property compares authhost's answer with a model
//! of what DRF and Django answer, written here from their source, apart from authhost's
//! code; none may ever give a 5xx. The suite runs `PROPTEST_CASES` cases of each (64 unless
//! set); `scripts/proptest` runs many more.
//! See: issue 12 (item 10).

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::support::{Site, TestHost};

const CONFIG: &str = r#"
[[scheme]]
name = "basic"
plugin = "basic"

[[scheme]]
name = "token"
plugin = "token"

[[scheme]]
name = "session"
plugin = "session"

[[route]]
path = "/basic-token"
handler = "whoami"
schemes = ["basic", "token"]
permission = "is_authenticated"

[[route]]
path = "/session"
handler = "whoami"
schemes = ["session"]
permission = "is_authenticated"

[[route]]
path = "/login"
handler = "login"
schemes = []
permission = "allow_any"

[[route]]
path = "/api-token-auth/"
handler = "obtain_token"
schemes = []
permission = "allow_any"
"#;

const NOT_PROVIDED: &str = "Authentication credentials were not provided.";

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    // Failures print their shrunk input; nothing is written into the source tree.
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Runs `property` over `strategy`, panicking with the smallest failing input.
fn check<S: Strategy>(strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(err) = runner().run(&strategy, property) {
        panic!("{err}");
    }
}

fn site() -> (Site, TestHost) {
    let site = Site::new(CONFIG);
    site.add_user("alice", "alice-pw", &[]);
    let host = site.serve();
    (site, host)
}

/// An answer over a raw socket: status, `WWW-Authenticate`, JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

/// Sends one request with these header lines (each `name: value` bytes) and body.
fn send(host: &TestHost, method: &str, path: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Answer {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    let text = host.raw(&request);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let challenge = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("www-authenticate").then(|| value.trim().to_owned())
    });
    Answer { status, challenge, body: serde_json::from_str(body).unwrap_or(Value::Null) }
}

/// Bytes a header value may hold on the wire: visible ASCII, space, tab, and obs-text.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![0x20u8..=0x7e, Just(b'\t'), 0x80u8..=0xff]
}

// ---- Authorization: Basic and Token, DRF's answers ----

/// What DRF answers a route whose chain is Basic then Token, with IsAuthenticated, for this
/// `Authorization` value (`key` is alice's token): status and detail, or the user.
fn drf_authorization(value: &[u8], key: &str) -> (u16, String) {
    // `get_authorization_header(request).split()`: Python's bytes.split().
    let parts: Vec<&[u8]> =
        value.split(|b| b" \t\n\r\x0b\x0c".contains(b)).filter(|p| !p.is_empty()).collect();
    let failed = |detail: &str| (401, detail.to_owned());
    match parts.first().map(|k| k.to_ascii_lowercase()).as_deref() {
        Some(b"basic") => {
            if parts.len() == 1 {
                return failed("Invalid basic header. No credentials provided.");
            }
            if parts.len() > 2 {
                return failed("Invalid basic header. Credentials string should not contain spaces.");
            }
            let bad = "Invalid basic header. Credentials not correctly base64 encoded.";
            let Ok(decoded) = STANDARD.decode(parts[1]) else { return failed(bad) };
            let text = match String::from_utf8(decoded.clone()) {
                Ok(text) => text,
                Err(_) => decoded.iter().map(|&b| char::from(b)).collect(),
            };
            match text.split_once(':') {
                None => failed(bad),
                Some(("alice", "alice-pw")) => (200, "alice".to_owned()),
                Some(_) => failed("Invalid username/password."),
            }
        }
        Some(b"token") => {
            if parts.len() == 1 {
                return failed("Invalid token header. No credentials provided.");
            }
            if parts.len() > 2 {
                return failed("Invalid token header. Token string should not contain spaces.");
            }
            match std::str::from_utf8(parts[1]) {
                Err(_) => failed("Invalid token header. Token string should not contain invalid characters."),
                Ok(token) if token == key => (200, "alice".to_owned()),
                Ok(_) => failed("Invalid token."),
            }
        }
        _ => failed(NOT_PROVIDED),
    }
}

/// Authorization values: junk, and keyword + parts built from good and bad pieces.
fn authorization(key: String) -> impl Strategy<Value = Vec<u8>> {
    let keyword = prop_oneof![
        Just("Basic"),
        Just("basic"),
        Just("BASIC"),
        Just("Token"),
        Just("token"),
        Just("Bearer"),
        Just("Other")
    ];
    let credentials = prop_oneof![
        Just("alice:alice-pw".as_bytes().to_vec()),
        Just(b"alice:wrong".to_vec()),
        Just(b"alice".to_vec()),
        Just(b":alice-pw".to_vec()),
        Just(b"bob:alice-pw".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    let part = prop_oneof![
        credentials.prop_map(|c| STANDARD.encode(c).into_bytes()),
        Just(key.into_bytes()),
        proptest::collection::vec(header_byte(), 1..48),
        "[A-Za-z0-9+/=]{0,24}".prop_map(String::into_bytes),
    ];
    let separator = prop_oneof![Just(&b" "[..]), Just(&b"  "[..]), Just(&b"\t"[..]), Just(&b" \t "[..])];
    let structured = (keyword, proptest::collection::vec((separator, part), 0..4)).prop_map(|(k, parts)| {
        let mut value = k.as_bytes().to_vec();
        for (sep, part) in parts {
            value.extend_from_slice(sep);
            value.extend_from_slice(&part);
        }
        value
    });
    prop_oneof![proptest::collection::vec(header_byte(), 0..64), structured]
}

#[test]
fn authorization_headers_get_drfs_answers_and_never_a_5xx() {
    let (site, host) = site();
    let key = site.token_for("alice");
    check(authorization(key.clone()), |value| {
        let answer = send(&host, "GET", "/basic-token", &[("Authorization", &value)], b"");
        let (status, expected) = drf_authorization(&value, &key);
        prop_assert!(answer.status < 500, "{answer:?}");
        prop_assert_eq!(answer.status, status, "{:?}", answer);
        if status == 200 {
            prop_assert_eq!(&answer.body["user"], &json!(expected));
        } else {
            prop_assert_eq!(&answer.body, &json!({ "detail": expected }));
            // The first scheme's challenge on every 401.
            prop_assert_eq!(answer.challenge.as_deref(), Some("Basic realm=\"api\""));
        }
        Ok(())
    });
}

// ---- Cookies and CSRF: Django's parse_cookie and CsrfViewMiddleware ----

/// Django's `parse_cookie`: chunks split on `;`, `key=value` (no `=`: an empty key), both
/// stripped, kept when either is non-empty, a later one replacing an earlier one, values
/// unquoted (values here hold no backslash, so unquoting is dropping surrounding quotes).
fn django_cookies(header: &str) -> HashMap<String, String> {
    let mut cookies = HashMap::new();
    for chunk in header.split(';') {
        let (key, value) = chunk.split_once('=').unwrap_or(("", chunk));
        let (key, value) = (key.trim_matches(PY_WHITESPACE), value.trim_matches(PY_WHITESPACE));
        if !key.is_empty() || !value.is_empty() {
            let unquoted = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) if value.len() >= 2 => inner,
                _ => value,
            };
            cookies.insert(key.to_owned(), unquoted.to_owned());
        }
    }
    cookies
}

/// What Python's `str.strip()` removes (`str.isspace`), the ASCII and Latin-1 part.
const PY_WHITESPACE: &[char] =
    &[' ', '\t', '\n', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x1f', '\u{85}', '\u{a0}'];

const CSRF_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Django's `_check_token_format`, then the secret the token stands for
/// (`_unmask_cipher_token` for a 64-character one).
fn django_secret(token: &str) -> Result<String, &'static str> {
    if token.len() != 32 && token.len() != 64 {
        return Err("has incorrect length");
    }
    if !token.bytes().all(|b| CSRF_CHARS.contains(&b)) {
        return Err("has invalid characters");
    }
    if token.len() == 32 {
        return Ok(token.to_owned());
    }
    let pos = |c: u8| CSRF_CHARS.iter().position(|&a| a == c).unwrap_or(0);
    let (mask, cipher) = token.as_bytes().split_at(32);
    Ok(cipher.iter().zip(mask).map(|(&c, &m)| char::from(CSRF_CHARS[(pos(c) + 62 - pos(m)) % 62])).collect())
}

/// What DRF's SessionAuthentication answers an unsafe request (no `Origin`, plain http)
/// to a route with IsAuthenticated: the session (from `sessionid`) must be `session`,
/// then Django's CSRF checks against the session's secret `csrf`.
fn drf_session_post(cookie: &str, header: Option<&str>, session: &str, csrf: &str) -> (u16, String) {
    let cookies = django_cookies(cookie);
    if cookies.get("sessionid").map(String::as_str) != Some(session) {
        // No session: not attempted, anonymous; the session scheme has no challenge.
        return (403, NOT_PROVIDED.to_owned());
    }
    let failed = |reason: String| (403, format!("CSRF Failed: {reason}"));
    let cookie_secret = match cookies.get("csrftoken").map(|c| django_secret(c)) {
        None => return failed("CSRF cookie not set.".to_owned()),
        Some(Err(why)) => return failed(format!("CSRF cookie {why}.")),
        Some(Ok(secret)) => secret,
    };
    let Some(token) = header else { return failed("CSRF token missing.".to_owned()) };
    let source = "the 'X-Csrftoken' HTTP header";
    match django_secret(token) {
        Err(why) => failed(format!("CSRF token from {source} {why}.")),
        Ok(secret) if secret == cookie_secret && secret == csrf => (200, "alice".to_owned()),
        Ok(_) => failed(format!("CSRF token from {source} incorrect.")),
    }
}

/// A cookie value: the real ones, their near misses, or junk without `;`, `"` or `\\`.
fn cookie_value(real: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(real.clone()),
        proptest::sample::select(real).prop_map(|v| format!("\"{v}\"")),
        "[A-Za-z0-9]{0,70}",
        "[ -!#-:<-\\[\\]-~]{0,40}",
    ]
}

fn cookie_header(real: Vec<String>) -> impl Strategy<Value = String> {
    let name = prop_oneof![Just("sessionid"), Just("csrftoken"), Just("other"), Just(" sessionid"), Just("")];
    let pair = (name, cookie_value(real), prop_oneof![Just(";"), Just("; "), Just(" ; ")], any::<bool>());
    proptest::collection::vec(pair, 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(
                |(name, value, sep, with_eq)| {
                    if with_eq {
                        format!("{name}={value}{sep}")
                    } else {
                        format!("{value}{sep}")
                    }
                },
            )
            .collect()
    })
}

#[test]
fn cookies_and_csrf_tokens_get_djangos_answers_and_never_a_5xx() {
    let (_site, host) = site();
    // A session for alice through the login view: its cookie and its CSRF secret.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (cookies, csrf) = rt.block_on(crate::support::session_login(&host, "alice", "alice-pw"));
    let session = django_cookies(&cookies)["sessionid"].clone();
    let secret = django_secret(&csrf).unwrap();
    let masked = {
        // Django's _mask_cipher_secret with a fixed mask.
        let mask = "abcdefghijklmnopqrstuvwxyzABCDEF";
        let pos = |c: u8| CSRF_CHARS.iter().position(|&a| a == c).unwrap();
        let cipher: String = secret
            .bytes()
            .zip(mask.bytes())
            .map(|(s, m)| char::from(CSRF_CHARS[(pos(s) + pos(m)) % 62]))
            .collect();
        format!("{mask}{cipher}")
    };
    let real = vec![session.clone(), csrf.clone(), secret.clone(), masked.clone()];
    let token = prop_oneof![
        Just(None),
        proptest::sample::select(real.clone()).prop_map(Some),
        "[A-Za-z0-9]{30,66}".prop_map(Some),
        "[!-~]{0,70}".prop_map(Some),
    ];
    check((cookie_header(real), token), |(cookie, token)| {
        let mut headers: Vec<(&str, &[u8])> = vec![("Cookie", cookie.as_bytes())];
        if let Some(token) = &token {
            headers.push(("X-CSRFToken", token.as_bytes()));
        }
        let answer = send(&host, "POST", "/session", &headers, b"");
        let (status, expected) = drf_session_post(&cookie, token.as_deref(), &session, &secret);
        prop_assert!(answer.status < 500, "{answer:?}");
        prop_assert_eq!(answer.status, status, "{:?}", answer);
        if status == 200 {
            prop_assert_eq!(&answer.body["user"], &json!(expected));
        } else {
            prop_assert_eq!(&answer.body, &json!({ "detail": expected }));
        }
        Ok(())
    });
}

// ---- obtain_token bodies: DRF's parsers and AuthTokenSerializer ----

/// A field's value in a body: a string, or (JSON only) null or a number.
#[derive(Debug, Clone)]
enum Field {
    Text(String),
    Null,
    Int(i64),
}

/// DRF's `CharField` (required, not null, not blank, trimmed with Python's `strip()` when
/// `trim`, no NUL): the value, or its error.
fn drf_char_field(value: Option<&Field>, trim: bool) -> Result<String, &'static str> {
    let text = match value {
        None => return Err("This field is required."),
        Some(Field::Null) => return Err("This field may not be null."),
        Some(Field::Int(n)) => n.to_string(),
        Some(Field::Text(text)) => text.clone(),
    };
    if text.is_empty() || (trim && text.trim_matches(PY_WHITESPACE).is_empty()) {
        return Err("This field may not be blank.");
    }
    let text = if trim { text.trim_matches(PY_WHITESPACE).to_owned() } else { text };
    if text.contains('\0') {
        return Err("Null characters are not allowed.");
    }
    Ok(text)
}

/// What DRF's `obtain_auth_token` answers these fields (the last of a repeated name wins).
fn drf_obtain_token(fields: &[(&str, Field)]) -> (u16, Value) {
    let get = |name: &str| fields.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v);
    let username = drf_char_field(get("username"), true);
    let password = drf_char_field(get("password"), false);
    match (username, password) {
        (Ok(username), Ok(password)) => {
            if username == "alice" && password == "alice-pw" {
                (200, json!("token"))
            } else {
                (400, json!({"non_field_errors": ["Unable to log in with provided credentials."]}))
            }
        }
        (username, password) => {
            let mut errors = serde_json::Map::new();
            if let Err(e) = username {
                errors.insert("username".into(), json!([e]));
            }
            if let Err(e) = password {
                errors.insert("password".into(), json!([e]));
            }
            (400, Value::Object(errors))
        }
    }
}

/// Percent-encodes every byte but the unreserved ones; spaces as `+` or `%20`.
fn urlencode(text: &str, plus: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            b' ' if plus => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Form { plus: bool },
    Multipart,
    Json,
}

/// The body and content type for `fields` in `encoding`; `None` when the fields cannot be
/// written so (null in a form, a value holding the multipart delimiter).
fn encode(fields: &[(&str, Field)], encoding: Encoding, boundary: &str) -> Option<(Vec<u8>, String)> {
    let text = |v: &Field| match v {
        Field::Text(t) => Some(t.clone()),
        Field::Int(n) => Some(n.to_string()),
        Field::Null => None,
    };
    match encoding {
        Encoding::Form { plus } => {
            let pairs: Option<Vec<String>> = fields
                .iter()
                .map(|(n, v)| Some(format!("{}={}", urlencode(n, plus), urlencode(&text(v)?, plus))))
                .collect();
            Some((pairs?.join("&").into_bytes(), "application/x-www-form-urlencoded".to_owned()))
        }
        Encoding::Multipart => {
            let delimiter = format!("--{boundary}");
            let mut body = String::new();
            for (name, value) in fields {
                let value = text(value)?;
                if value.contains(&delimiter) {
                    return None;
                }
                body.push_str(&format!(
                    "{delimiter}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                ));
            }
            // A file part, which is not a field.
            body.push_str(&format!(
                "{delimiter}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n\
                 Content-Type: text/plain\r\n\r\nfile body\r\n{delimiter}--\r\n"
            ));
            Some((body.into_bytes(), format!("multipart/form-data; boundary=\"{boundary}\"")))
        }
        Encoding::Json => {
            let mut object = serde_json::Map::new();
            for (name, value) in fields {
                let value = match value {
                    Field::Text(t) => json!(t),
                    Field::Int(n) => json!(n),
                    Field::Null => Value::Null,
                };
                object.insert((*name).to_owned(), value);
            }
            Some((Value::Object(object).to_string().into_bytes(), "application/json".to_owned()))
        }
    }
}

fn field_value() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "alice", "alice-pw", " alice ", "\u{1c}alice\u{a0}", "alice\0", "alice-pw ", "", "  ", "\u{85}",
        ])
        .prop_map(|s| Field::Text(s.to_owned())),
        3 => "\\PC{0,12}".prop_map(Field::Text),
        1 => Just(Field::Null),
        1 => any::<i64>().prop_map(Field::Int),
    ]
}

#[test]
fn obtain_token_bodies_get_drfs_answers_and_never_a_5xx() {
    let (site, host) = site();
    let key = site.token_for("alice");
    let name = prop_oneof![Just("username"), Just("password"), Just("other")];
    let fields = proptest::collection::vec((name, field_value()), 0..5);
    let encoding = prop_oneof![
        any::<bool>().prop_map(|plus| Encoding::Form { plus }),
        Just(Encoding::Multipart),
        Just(Encoding::Json)
    ];
    check((fields, encoding, "[A-Za-z0-9'()+_,./:=?-]{1,70}"), |(fields, encoding, boundary)| {
        let Some((body, content_type)) = encode(&fields, encoding, &boundary) else { return Ok(()) };
        // JSON objects keep one value per name, as forms keep the last.
        let answer =
            send(&host, "POST", "/api-token-auth/", &[("Content-Type", content_type.as_bytes())], &body);
        let (status, expected) = drf_obtain_token(&fields);
        prop_assert!(answer.status < 500, "{answer:?}");
        prop_assert_eq!(answer.status, status, "{:?} for {}", answer, String::from_utf8_lossy(&body));
        if status == 200 {
            prop_assert_eq!(&answer.body, &json!({ "token": key }));
        } else {
            prop_assert_eq!(&answer.body, &expected, "for {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    });
}

// ---- The parsers in-process: no input makes one panic ----

#[test]
fn the_parsers_take_any_bytes_without_panicking() {
    use authhost_plugin_api::authorization::{
        authorization_parts, credentials, keyword_matches, Credentials,
    };
    use authhost_plugin_api::form::{form_fields, parse_form, parse_multipart};
    use authhost_plugin_api::{csrf, Header, RequestView};
    let bytes = || proptest::collection::vec(any::<u8>(), 0..200);
    check((bytes(), bytes(), "\\PC{0,80}", "\\PC{0,70}"), |(a, b, text, boundary)| {
        let _ = parse_form(&a);
        let _ = parse_multipart(&a, &boundary);
        let headers = [
            Header::new("authorization", &a),
            Header::new("cookie", &b),
            Header::new("content-type", text.as_bytes()),
            Header::new("x-csrftoken", &b),
        ];
        let req = RequestView::new("POST", "/", "", &headers, "127.0.0.1:1".parse().unwrap()).with_body(&a);
        // The schemes' reading of `keyword credentials` agrees with the split parts.
        let parts = authorization_parts(&req);
        let keyword = std::str::from_utf8(parts.first().copied().unwrap_or(b"Token")).unwrap_or("Token");
        for keyword in [keyword, "Token"] {
            let expected = match parts.as_slice() {
                _ if !keyword_matches(&parts, keyword) => Credentials::Absent,
                [_] => Credentials::Missing,
                [_, given] => Credentials::Given(given),
                _ => Credentials::Spaced,
            };
            prop_assert_eq!(credentials(&req, keyword), expected);
        }
        let _ = req.cookie("sessionid");
        let _ = form_fields(&req);
        let settings = csrf::CsrfSettings {
            cookie_name: "sessionid",
            header_name: "X-CSRFToken",
            secure: true,
            trusted_origins: &[],
        };
        let _ = csrf::check(&req, &settings, None, Some(&text));
        let _ = csrf::check_format(&text).map(|()| csrf::secret_of(&text));
        Ok(())
    });
}

/// A form body written from pairs reads back as those pairs, in order.
#[test]
fn form_bodies_read_back_what_was_written() {
    use authhost_plugin_api::form::parse_form;
    let pairs = proptest::collection::vec(("\\PC{0,10}", "\\PC{0,10}", any::<bool>()), 0..6);
    check(pairs, |pairs| {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v, plus)| format!("{}={}", urlencode(k, *plus), urlencode(v, *plus)))
            .collect();
        let read = parse_form(body.join("&").as_bytes());
        // Every pair is a chunk, even `=` (an empty name and value), as in parse_qsl.
        let expected: Vec<(String, String)> = pairs.into_iter().map(|(k, v, _)| (k, v)).collect();
        prop_assert_eq!(read, expected);
        Ok(())
    });
}

// ---- Config loading: no config makes it panic; every refusal names the file ----

#[test]
fn config_loading_refuses_bad_configs_by_name_and_never_panics() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authhost.toml")).unwrap();
    let lines: Vec<String> = shipped.lines().map(str::to_owned).collect();
    let value = prop_oneof![
        Just("9223372036854775807".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"0ms\"".to_owned()),
        Just("\"100000000000d\"".to_owned()),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        Just("{}".to_owned()),
        "\"\\PC{0,12}\"".prop_map(|s| s.replace('\\', "")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    // Each mutation: a line's value replaced, a line dropped, or a line repeated.
    let mutation = (0..lines.len(), 0u8..3, value);
    let file = Path::new("/etc/authhost/authhost.toml");
    check(proptest::collection::vec(mutation, 1..4), |mutations| {
        let mut lines = lines.clone();
        for (at, kind, value) in mutations {
            let at = at % lines.len();
            match kind {
                0 => {
                    if let Some((key, _)) = lines[at].split_once(" = ") {
                        lines[at] = format!("{key} = {value}");
                    }
                }
                1 => {
                    lines.remove(at);
                }
                _ => {
                    let line = lines[at].clone();
                    lines.insert(at, line);
                }
            }
            if lines.is_empty() {
                break;
            }
        }
        let text = lines.join("\n");
        let loaded = std::panic::catch_unwind(|| authhost::Config::parse(file, &text));
        prop_assert!(loaded.is_ok(), "config loading panicked on:\n{text}");
        if let Ok(Err(err)) = loaded {
            let message = err.to_string();
            prop_assert!(message.contains("/etc/authhost/authhost.toml"), "{message}");
        }
        Ok(())
    });
}
