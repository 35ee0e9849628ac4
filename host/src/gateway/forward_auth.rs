//! Forward-auth: which request another proxy asks about. Traefik and Caddy send
//! `X-Forwarded-Method` and `X-Forwarded-Uri`, nginx's `auth_request` the
//! `X-Original-Method` and `X-Original-URI` its config sets, and Envoy's `ext_authz` (HTTP,
//! with `path_prefix`) the original method and, after the prefix, the original path.

use hyper::header::{HeaderMap, HeaderName};
use hyper::{Method, Uri};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The request the calling proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// As sent, percent-encoded: the route table checks its form.
    pub path: String,
    pub query: String,
    /// The calling proxy passes a denial on to the client as it is, redirects included
    /// (Traefik and Caddy); nginx's `auth_request` takes only 2xx, 401 and 403, and Envoy
    /// passes on only the headers it is told to.
    pub passes_redirects: bool,
}

/// Why the original request cannot be known: the answer is 403 (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown;

/// Reads the original request from `headers`; `own_rest` is the path after the
/// forward_auth route's own prefix (with its query), for Envoy, and `own_method` the
/// sub-request's method.
pub fn original(headers: &HeaderMap, own_method: &Method, own_rest: &str) -> Result<Original, Unknown> {
    let pairs = [(&X_FORWARDED_METHOD, &X_FORWARDED_URI), (&X_ORIGINAL_METHOD, &X_ORIGINAL_URI)];
    for (method_header, uri_header) in pairs {
        if let Some(uri) = single(headers, uri_header)? {
            let method = match single(headers, method_header)? {
                Some(method) => Method::from_bytes(method.as_bytes()).map_err(|_| Unknown)?,
                None => own_method.clone(),
            };
            let passes_redirects = *uri_header == X_FORWARDED_URI;
            return from_uri(method, uri).map(|o| Original { passes_redirects, ..o });
        }
    }
    if own_rest.is_empty() {
        return Err(Unknown);
    }
    from_uri(own_method.clone(), own_rest)
}

/// One value of `name`, if any; two (which one would the proxy have meant?) are refused.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Unknown> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value.to_str().map(Some).map_err(|_| Unknown),
        (Some(_), Some(_)) => Err(Unknown),
    }
}

/// An origin-form target (`/path?query`), or an absolute URL whose path and query count.
fn from_uri(method: Method, text: &str) -> Result<Original, Unknown> {
    let uri: Uri = text.parse().map_err(|_| Unknown)?;
    let path = uri.path();
    if !path.starts_with('/') || (uri.scheme().is_none() && !text.starts_with('/')) {
        return Err(Unknown);
    }
    Ok(Original {
        method,
        path: path.to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        passes_redirects: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn each_proxy_family_is_read() {
        let traefik = headers(&[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/api/x?a=1")]);
        let got = original(&traefik, &Method::GET, "").unwrap();
        assert_eq!((got.method, got.path.as_str(), got.query.as_str()), (Method::POST, "/api/x", "a=1"));
        let nginx = headers(&[("x-original-method", "DELETE"), ("x-original-uri", "/admin/")]);
        let got = original(&nginx, &Method::GET, "").unwrap();
        assert_eq!((got.method, got.path.as_str()), (Method::DELETE, "/admin/"));
        let envoy = original(&HeaderMap::new(), &Method::PUT, "/api/y?b=2").unwrap();
        assert_eq!((envoy.method, envoy.path.as_str(), envoy.query.as_str()), (Method::PUT, "/api/y", "b=2"));
    }

    #[test]
    fn an_unknowable_original_is_refused() {
        assert_eq!(original(&HeaderMap::new(), &Method::GET, ""), Err(Unknown));
        let doubled = headers(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert_eq!(original(&doubled, &Method::GET, ""), Err(Unknown));
        let relative = headers(&[("x-forwarded-uri", "api/x")]);
        assert_eq!(original(&relative, &Method::GET, ""), Err(Unknown));
        let bad_method = headers(&[("x-forwarded-method", "G T"), ("x-forwarded-uri", "/a")]);
        assert_eq!(original(&bad_method, &Method::GET, ""), Err(Unknown));
    }
}
