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

/// The fields of a form body (`application/x-www-form-urlencoded` or `multipart/form-data`,
/// whose file parts are left out); `None` when the body is not a form, `Some(Err(why))`
/// when it claims to be multipart and is not.
pub fn form_fields(request: &RequestView<'_>) -> Option<Result<Vec<(String, String)>, String>> {
    let content_type = request.header("content-type")?;
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or_default().trim().to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-www-form-urlencoded" => Some(Ok(parse_form(request.body()))),
        "multipart/form-data" => {
            let boundary = params.find_map(|p| {
                let (key, value) = p.trim().split_once('=')?;
                key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
            });
            Some(match boundary.filter(|b| !b.is_empty() && b.len() <= 70) {
                Some(boundary) => parse_multipart(request.body(), &boundary),
                None => Err("Invalid boundary in multipart: None".to_owned()),
            })
        }
        _ => None,
    }
}

/// A field of the request's form body; `None` when the body is not a form or lacks it.
/// The last value of a repeated field wins, as Django's `QueryDict.get` does.
pub fn form_field(request: &RequestView<'_>, name: &str) -> Option<String> {
    form_fields(request)?.ok()?.into_iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `multipart/form-data` (RFC 7578): the text fields, in order; file parts are skipped.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let start = find(body, delimiter).ok_or("no boundary in the body")?;
    let mut rest = &body[start + delimiter.len()..];
    let mut fields = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or("a boundary is not followed by a line break")?;
        let end = find(rest, delimiter).ok_or("the body ends before its closing boundary")?;
        let part = &rest[..end];
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = find(part, b"\r\n\r\n").ok_or("a part has no blank line after its headers")?;
        let (head, content) = (&part[..split], &part[split + 4..]);
        let head = String::from_utf8_lossy(head);
        let disposition = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-disposition").then(|| value.to_owned())
            })
            .ok_or("a part has no Content-Disposition")?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(name), None) = (param("name"), param("filename")) {
            fields.push((name, String::from_utf8_lossy(content).into_owned()));
        }
        rest = &rest[end + delimiter.len()..];
    }
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
    fn multipart_text_fields_are_read_and_files_skipped() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--XyZ\r\ncontent-disposition: form-data; name=\"password\"\r\n\r\np\r\nw\r\n--XyZ--\r\n";
        assert_eq!(
            parse_multipart(body, "XyZ").unwrap(),
            vec![("username".into(), "alice".into()), ("password".into(), "p\r\nw".into())]
        );
        assert!(parse_multipart(b"--XyZ\r\nno blank line--XyZ--", "XyZ").is_err());
        assert!(parse_multipart(b"nothing", "XyZ").is_err());
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
