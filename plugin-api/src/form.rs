//! HTML form bodies (`application/x-www-form-urlencoded`), decoded as Django decodes them.

use crate::request::RequestView;

/// `application/x-www-form-urlencoded` (the `form_urlencoded` crate): `+` is a space,
/// `%XX` a byte, a `%` not followed by two hex digits kept as it is; bytes that are not
/// UTF-8 are replaced, as Django does.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
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

/// `multipart/form-data` (RFC 7578, parsed by `multer`): the text fields, in order; file
/// parts and parts without a name are skipped.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    // The body is whole in memory: one chunk, so every future below is ready at once.
    let chunk = Ok::<_, std::convert::Infallible>(bytes::Bytes::copy_from_slice(body));
    let mut multipart = multer::Multipart::new(futures_util::stream::iter([chunk]), boundary);
    let mut fields = Vec::new();
    while let Some(field) = ready(multipart.next_field())?.map_err(|e| e.to_string())? {
        let name = field.name().map(str::to_owned);
        let is_file = field.file_name().is_some();
        let content = ready(field.bytes())?.map_err(|e| e.to_string())?;
        if let (Some(name), false) = (name, is_file) {
            fields.push((name, String::from_utf8_lossy(&content).into_owned()));
        }
    }
    Ok(fields)
}

/// The output of a future that needs nothing but memory (`multer` over a whole body).
fn ready<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err("the multipart parser waited for more than the body".to_owned()),
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
