//! Which route a request path names. A path routes only in its normal form: no empty
//! segments (`//`), no dot segments (`.`, `..`, also percent-encoded), no encoded slash,
//! backslash or NUL. A path in any other form is refused (400) rather than normalised,
//! so that authhost can never decide for one path while the service behind it, or a proxy
//! in front of it, reads another. A prefix route matches on segment boundaries: `/api`
//! matches `/api` and `/api/x`, never `/apiary`.

/// A route's path: exact, or a prefix of whole segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub path: String,
    pub prefix: bool,
}

impl Pattern {
    /// Whether `path` (in normal form) is one this pattern names.
    pub fn matches(&self, path: &str) -> bool {
        if !self.prefix {
            return path == self.path;
        }
        match path.strip_prefix(self.path.as_str()) {
            None => false,
            // `/api/` as the prefix: everything below it.
            Some(_) if self.path.ends_with('/') => true,
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
        }
    }
}

/// The part of `path` below the prefix route `route` (from its `/`): `/x` for `/api/x` under
/// `/api` or `/api/`; None when nothing is below it (`/api` itself).
pub fn below<'p>(route: &str, path: &'p str) -> Option<&'p str> {
    path.strip_prefix(route.trim_end_matches('/')).filter(|rest| rest.starts_with('/'))
}

/// Why a path is not in normal form, for the 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// Empty segments: `//`.
    EmptySegment,
    /// `.` or `..`, as sent or percent-encoded.
    DotSegment,
    /// `%2F`, `%5C` or `%00`: a slash, a backslash or a NUL in disguise.
    EncodedSeparator,
    /// Not starting with `/` (an absolute-form or asterisk-form target).
    NotAbsolute,
}

impl BadPath {
    pub fn detail(self) -> &'static str {
        match self {
            BadPath::EmptySegment => "Malformed request path: empty segment.",
            BadPath::DotSegment => "Malformed request path: dot segment.",
            BadPath::EncodedSeparator => "Malformed request path: encoded separator.",
            BadPath::NotAbsolute => "Malformed request path.",
        }
    }
}

/// Checks that `path` (as sent, percent-encoded) is in normal form.
pub fn check(path: &str) -> Result<(), BadPath> {
    // Every request passes here: no allocation.
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadPath::NotAbsolute);
    };
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            if let Some(code) = bytes.get(i + 1..i + 3) {
                if code.eq_ignore_ascii_case(b"2f") || code.eq_ignore_ascii_case(b"5c") || code == b"00" {
                    return Err(BadPath::EncodedSeparator);
                }
            }
        }
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        // A trailing slash (an empty last segment) is normal: DRF's routes end with one.
        if segment.is_empty() && segments.peek().is_some() {
            return Err(BadPath::EmptySegment);
        }
        if is_dot_segment(segment) {
            return Err(BadPath::DotSegment);
        }
    }
    Ok(())
}

/// `.` or `..`, each dot as sent or as `%2e`/`%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
}

/// Django's `validate_host`: whether a `Host` header names one of `allowed` (lowercase
/// names; `.example.com` is that domain and every subdomain). The port is ignored; a Host
/// that is no valid host name (Django's `host_validation_re`) never matches.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(domain) = domain_of(host) else { return false };
    allowed.iter().any(|pattern| authhost_plugin_api::csrf::is_same_domain(&domain, pattern))
}

/// Django's `split_domain_port`: the lowercase domain of a Host value, without its port
/// and trailing dot; None when it is no valid host (`host_validation_re`).
fn domain_of(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let (domain, port) = match host.strip_prefix('[') {
        // An IPv6 literal, with or without a port.
        Some(rest) => {
            let (address, after) = rest.split_once(']')?;
            let port =
                if after.is_empty() { "" } else { after.strip_prefix(':').filter(|p| !p.is_empty())? };
            let valid = address.contains(':')
                && address.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            (valid.then(|| format!("[{address}]"))?, port)
        }
        None => {
            let (domain, port) = match host.rsplit_once(':') {
                Some((_, "")) => return None,
                Some((domain, port)) => (domain, port),
                None => (host.as_str(), ""),
            };
            let valid = !domain.is_empty()
                && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            (valid.then(|| domain.to_owned())?, port)
        }
    };
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(domain.strip_suffix('.').map(str::to_owned).unwrap_or(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_as_djangos_allowed_hosts_do() {
        let allowed = vec!["api.example.com".to_owned(), ".example.org".to_owned(), "[::1]".to_owned()];
        for ok in [
            "api.example.com",
            "API.EXAMPLE.COM:443",
            "api.example.com.",
            "example.org",
            "a.b.example.org",
            "[::1]",
            "[::1]:8000",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for no in [
            "example.com",
            "api.example.com.evil",
            "badexample.org",
            "api.example.com:x",
            "a b",
            "",
            "[::2]",
            "api.example.com:",
        ] {
            assert!(!host_allowed(no, &allowed), "{no}");
        }
    }

    fn prefix(path: &str) -> Pattern {
        Pattern { path: path.into(), prefix: true }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let api = prefix("/api");
        assert!(api.matches("/api") && api.matches("/api/") && api.matches("/api/x/y"));
        assert!(!api.matches("/apiary") && !api.matches("/ap") && !api.matches("/api.json"));
        let slash = prefix("/app/");
        assert!(slash.matches("/app/") && slash.matches("/app/x"));
        assert!(!slash.matches("/app") && !slash.matches("/apple"));
        let exact = Pattern { path: "/me".into(), prefix: false };
        assert!(exact.matches("/me") && !exact.matches("/me/") && !exact.matches("/me/x"));
    }

    #[test]
    fn only_normal_paths_route() {
        for good in ["/", "/api", "/api/", "/api/x.json", "/a/..b/c", "/a/.well-known/x", "/caf%C3%A9"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("//admin", BadPath::EmptySegment),
            ("/api//x", BadPath::EmptySegment),
            ("/api/../admin", BadPath::DotSegment),
            ("/api/./x", BadPath::DotSegment),
            ("/api/..", BadPath::DotSegment),
            ("/api/%2e%2e/admin", BadPath::DotSegment),
            ("/api/%2E./admin", BadPath::DotSegment),
            ("/api%2fadmin", BadPath::EncodedSeparator),
            ("/api/%5Cadmin", BadPath::EncodedSeparator),
            ("/api/%00", BadPath::EncodedSeparator),
            ("*", BadPath::NotAbsolute),
        ] {
            assert_eq!(check(bad), Err(why), "{bad}");
        }
    }
}
