//! HTML form bodies (`application/x-www-form-urlencoded`), decoded as Django decodes them.

use crate::request::RequestView;

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

/// A field of the request's form body; `None` when the body is not a form or lacks it.
/// The last value of a repeated field wins, as Django's `QueryDict.get` does.
pub fn form_field(request: &RequestView<'_>, name: &str) -> Option<String> {
    let content_type = request.header("content-type")?;
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    parse_form(request.body()).into_iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Header;

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

    #[test]
    fn form_fields_come_from_form_bodies_only() {
        let form = [Header::new("content-type", b"application/x-www-form-urlencoded; charset=utf-8")];
        let req =
            RequestView::new("POST", "/", "", &form, "127.0.0.1:1".parse().unwrap()).with_body(b"a=1&a=2");
        assert_eq!(form_field(&req, "a").as_deref(), Some("2"));
        let json = [Header::new("content-type", b"application/json")];
        let req = RequestView::new("POST", "/", "", &json, "127.0.0.1:1".parse().unwrap()).with_body(b"a=1");
        assert_eq!(form_field(&req, "a"), None);
    }
}
