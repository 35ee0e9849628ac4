//! `authhost new-scheme NAME`: a standalone plugin crate that builds, tests and loads as
//! generated, outside this repository: Cargo.toml (edition, cdylib, the plugin-api
//! dependency), a scheme skeleton, a unit test that goes through the host's
//! pending-then-call-again path, and a README with the build and config lines.

use std::path::{Path, PathBuf};

use crate::config::library_file_name;
use crate::error::Error;

/// Where plugin-api's source was when this host was built: generated crates depend on it by
/// path when it is still there, else on the published version.
const PLUGIN_API_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api");

/// Writes the crate for scheme `name` into `dir/name`; the folder it made.
pub fn generate(name: &str, dir: &Path) -> Result<PathBuf, Error> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(Error::config(format!(
            "{name:?} is no scheme name: use lowercase letters, digits and dashes, starting with a letter"
        )));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(Error::config(format!(
            "{} exists already: choose another name or --dir",
            root.display()
        )));
    }
    let lib = name.replace('-', "_");
    let ty: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let dependency = match std::fs::canonicalize(PLUGIN_API_SOURCE) {
        Ok(path) if path.join("Cargo.toml").is_file() => {
            format!("authhost-plugin-api = {{ path = {:?} }}", path.display().to_string())
        }
        _ => format!("authhost-plugin-api = \"{}\"", authhost_plugin_api::VERSION),
    };
    let files = [
        ("Cargo.toml", cargo_toml(name, &lib, &dependency)),
        ("src/lib.rs", lib_rs(name, &ty)),
        ("README.md", readme(name, &lib)),
        (".gitignore", "/target\n".to_owned()),
    ];
    let io =
        |what: &Path, e: std::io::Error| Error::io(format!("cannot write {}", what.display())).with_source(e);
    std::fs::create_dir_all(root.join("src")).map_err(|e| io(&root, e))?;
    for (file, text) in files {
        let path = root.join(file);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    Ok(root)
}

fn cargo_toml(name: &str, lib: &str, dependency: &str) -> String {
    let file = library_file_name(lib);
    let dev_dependency = match dependency.strip_suffix(" }") {
        Some(path) => format!("{path}, features = [\"toml\"] }}"),
        None => format!(
            "authhost-plugin-api = {{ version = \"{}\", features = [\"toml\"] }}",
            authhost_plugin_api::VERSION
        ),
    };
    format!(
        r#"[package]
name = "authhost-{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A workspace of its own: it builds wherever it is, inside another workspace or not.
[workspace]

[lib]
# `plugin = "{name}"` in authhost's config finds {file} in plugins.dir.
name = "authhost_{lib}"
# cdylib: the library authhost loads; rlib: so that `cargo test` can call the scheme.
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependency}

[dev-dependencies]
# testing::build: the scheme from a TOML table, with the host's option checks.
{dev_dependency}

# Never `panic = "abort"`: plugin-api turns a panic into a fault only if it unwinds.
"#
    )
}

fn lib_rs(name: &str, ty: &str) -> String {
    let header = format!("X-{}-User", ty);
    format!(
        r#"//! The `{name}` authentication scheme for authhost.
//!
//! As generated it authenticates the user named in the `{header}` header (option
//! `header`): no header, not attempted; an unknown or inactive user, failed. Replace the
//! body of `authenticate` with your own check; `docs/writing-a-scheme.md` in authhost's
//! repository lists every host service and option helper.

use authhost_plugin_api::{{export_scheme, Host, Options, Outcome, RequestView, Scheme, SchemeError}};

#[derive(Debug)]
pub struct {ty} {{
    header: String,
}}

impl Scheme for {ty} {{
    /// Reads the options from the scheme's `[[scheme]]` table; a key never read here is
    /// refused at start-up, with a suggestion.
    fn new(options: &Options<'_>) -> Result<Self, SchemeError> {{
        Ok({ty} {{ header: options.str_or("header", "{header}")?.to_owned() }})
    }}

    fn authenticate(&self, request: &RequestView<'_>, host: &Host<'_>) -> Result<Outcome, SchemeError> {{
        let Some(username) = request.header(&self.header) else {{
            return Ok(Outcome::NotAttempted);
        }};
        // `?` passes a pending look-up back to the host, which fetches the user and calls
        // this function again: act on nothing before the last host call.
        Ok(match host.find_user(&username)? {{
            Some(user) if user.is_active => Outcome::authenticated(user),
            Some(_) => Outcome::failed("User inactive or deleted."),
            None => Outcome::failed("No such user"),
        }})
    }}

    /// The `WWW-Authenticate` challenge when this scheme is first in a chain (none: 403).
    fn authenticate_header(&self, _request: &RequestView<'_>) -> Option<String> {{
        None
    }}
}}

export_scheme!({ty});

#[cfg(test)]
mod tests {{
    use authhost_plugin_api::testing::{{authenticate, MemoryHost}};
    use authhost_plugin_api::Header;

    use super::*;

    fn outcome(username: Option<&str>) -> (Outcome, usize) {{
        let scheme: {ty} = authhost_plugin_api::testing::build("").unwrap();
        // Answers each look-up "pending" once, as the real host does for what it must fetch.
        let host = MemoryHost::new()
            .with_user("alice", None, true, false)
            .with_user("gone", None, false, false)
            .answering_later();
        let headers: Vec<Header<'_>> =
            username.map(|name| Header::new("{lower}", name.as_bytes())).into_iter().collect();
        let request = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        let outcome = authenticate(&scheme, &request, &host).unwrap();
        (outcome, host.calls())
    }}

    #[test]
    fn options_are_checked_as_the_host_checks_them() {{
        let scheme: Result<{ty}, _> = authhost_plugin_api::testing::build("header = \"X-Other\"");
        assert!(scheme.is_ok());
        let typo = authhost_plugin_api::testing::build::<{ty}>("headr = \"X-Other\"").unwrap_err();
        assert_eq!(typo.option_key(), Some("headr"));
    }}

    #[test]
    fn follows_the_contract() {{
        assert_eq!(outcome(None), (Outcome::NotAttempted, 1));
        assert_eq!(outcome(Some("alice")).0.username(), Some("alice"));
        assert_eq!(outcome(Some("alice")).1, 2, "pending once, then answered");
        assert_eq!(outcome(Some("nobody")).0, Outcome::failed("No such user"));
        assert_eq!(outcome(Some("gone")).0, Outcome::failed("User inactive or deleted."));
    }}
}}
"#,
        lower = header.to_ascii_lowercase()
    )
}

fn readme(name: &str, lib: &str) -> String {
    let file = library_file_name(lib);
    format!(
        r#"# The `{name}` scheme for authhost

```sh
cargo test                 # the scheme's unit tests
cargo build --release      # target/release/{file}
```

In authhost's config, name the library by path (relative to the config file's folder, or
absolute), or copy it into `[plugins] dir` and name it with `plugin = "{name}"`:

```toml
[[scheme]]
name = "{name}"
path = "/path/to/{name}/target/release/{file}"

[[route]]
path = "/api/me"
handler = "whoami"
schemes = ["{name}"]
permission = "is_authenticated"
```

`authhost check` loads it and prints each route's chain. After a rebuild, `kill -HUP` the
running host: it loads the new file (from a private copy, so rebuilding in place is safe).
"#
    )
}
