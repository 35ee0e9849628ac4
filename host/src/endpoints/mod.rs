//! The built-in handlers that read a body, and DRF's parsing of it (`request.data`).

pub mod obtain_token;

use serde_json::{Map, Value};

use authhost_plugin_api::RequestView;

/// Why a body could not be read as data: DRF's parse errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 400 `JSON parse error - <parser's message>`.
    Json(String),
    /// 415 `Unsupported media type "<type>" in request.`
    UnsupportedMediaType(String),
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
        "application/x-www-form-urlencoded" => {
            Ok(Value::Object(parse_form(body).into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
        }
        _ => Err(ParseError::UnsupportedMediaType(content_type)),
    }
}

fn is_known(media_type: &str) -> bool {
    matches!(media_type, "application/json" | "application/x-www-form-urlencoded")
}

/// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; bytes that are not
/// UTF-8 are replaced, as Django does.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let key = decode_component(kv.next().unwrap_or_default());
            let value = decode_component(kv.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => {
                match std::str::from_utf8(&raw[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_django() {
        assert_eq!(
            parse_form(b"username=alice+b&password=p%40ss%3D&x=%zz&username=last"),
            vec![
                ("username".into(), "alice b".into()),
                ("password".into(), "p@ss=".into()),
                ("x".into(), "%zz".into()),
                ("username".into(), "last".into())
            ]
        );
        assert_eq!(parse_form(b"a=%4"), vec![("a".into(), "%4".into())]);
    }
}
