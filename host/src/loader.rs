//! Loads plugin libraries and builds scheme instances and chains. Each library is checked
//! and copied privately under its content hash (`library.rs`), tried in a child process
//! when new (`trial.rs`), then mapped from the copy with `lib_header_from_path` +
//! `init_root_module`, never `RootModule::load_from_*`, which caches the first library per
//! type and hands it back for every later path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::RSlice;
use authhost_plugin_api::options::check_declared;
use authhost_plugin_api::{OptionSpec, SchemeBox, SchemeModRef, TokenPolicy};
use tracing::debug;

use crate::chain::Chain;
use crate::config::{Config, SchemeConfig};
use crate::error::Error;
use crate::{library, trial};

/// How long a private copy of a plugin build no host has loaded is kept (`library::prune`).
const PRUNE_UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// One configured scheme, ready to call.
pub struct Scheme {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) object: SchemeBox,
    token_policy: Option<TokenPolicy>,
}

impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheme").field("name", &self.name).field("file", &self.file).finish_non_exhaustive()
    }
}

impl Scheme {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mints a credential (a JWT) for `user`; `orig_iat` > 0 when refreshing.
    pub fn mint(&self, user: &authhost_plugin_api::User, orig_iat: i64) -> authhost_plugin_api::Minted {
        self.object.mint(user, orig_iat)
    }

    /// Reads back a credential this scheme minted.
    pub fn inspect(&self, credential: &str) -> authhost_plugin_api::Inspected {
        self.object.inspect(credential.into())
    }

    /// For a token scheme, how its tokens live.
    pub fn token_policy(&self) -> Option<&TokenPolicy> {
        self.token_policy.as_ref()
    }

    /// The library it came from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Every scheme of a config, in config order.
#[derive(Debug)]
pub struct Schemes {
    all: Vec<Arc<Scheme>>,
}

impl Schemes {
    /// Loads every library the config names (each once, from a private copy of what the
    /// file holds now, tried in a child process first when new) and builds every scheme.
    pub fn load(config: &Config) -> Result<Schemes, Error> {
        let dir = library::private_dir().map_err(Error::plugin)?;
        let mut libraries: HashMap<PathBuf, SchemeModRef> = HashMap::new();
        let mut all = Vec::with_capacity(config.schemes.len());
        for (index, scheme) in config.schemes.iter().enumerate() {
            let module = match libraries.get(&scheme.library) {
                Some(module) => *module,
                None => {
                    let module =
                        library::copy_privately(&scheme.library, &dir, config.allow_writable_plugins)
                            .and_then(|copy| {
                                trial::run(Some(&config.file), &scheme.library, &copy)?;
                                load_library(&copy.path)
                            })
                            .map_err(|problem| plugin_error(config, index, &problem))?;
                    *libraries.entry(scheme.library.clone()).or_insert(module)
                }
            };
            all.push(Arc::new(instantiate(module, scheme, index, &config.file)?));
        }
        // The copies just loaded were marked used; those of old builds go.
        let pruned = library::prune(&dir, PRUNE_UNUSED_FOR);
        if pruned > 0 {
            debug!(pruned, dir = %dir.display(), "removed private plugin copies unused for an hour");
        }
        Ok(Schemes { all })
    }

    /// The trial load's own work, in the child, for a library alone: maps `copy`.
    pub fn trial_library(copy: &Path) -> Result<(), Error> {
        load_library(copy).map(drop).map_err(Error::plugin)
    }

    /// The trial load's own work, in the child: maps `copy` (of the library the config
    /// names as `original`) and builds every scheme made from it.
    pub fn trial(config: &Config, original: &Path, copy: &Path) -> Result<(), Error> {
        let mut module = None;
        for (index, scheme) in config.schemes.iter().enumerate().filter(|(_, s)| s.library == original) {
            let module = match module {
                Some(module) => module,
                None => *module
                    .insert(load_library(copy).map_err(|problem| plugin_error(config, index, &problem))?),
            };
            instantiate(module, scheme, index, &config.file)?;
        }
        Ok(())
    }

    /// Builds schemes from modules linked into this program (benches, tests): the same
    /// scheme code as the plugins, without the dynamic boundary.
    pub fn from_static(config: &Config, modules: &[(&str, SchemeModRef)]) -> Result<Schemes, Error> {
        let mut all = Vec::with_capacity(config.schemes.len());
        for (index, scheme) in config.schemes.iter().enumerate() {
            let stem = scheme.library.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let module = modules
                .iter()
                .find(|(name, _)| stem.ends_with(&name.replace('-', "_")))
                .map(|(_, m)| *m)
                .ok_or_else(|| Error::plugin(format!("no static module for {}", scheme.library.display())))?;
            all.push(Arc::new(instantiate(module, scheme, index, &config.file)?));
        }
        Ok(Schemes { all })
    }

    /// The token policy of the scheme at this config index, if it is a token scheme.
    pub fn token_policy(&self, index: usize) -> Option<TokenPolicy> {
        self.all.get(index).and_then(|s| s.token_policy().cloned())
    }

    /// The scheme at this config index.
    pub fn get(&self, index: usize) -> Option<Arc<Scheme>> {
        self.all.get(index).cloned()
    }

    /// The chain of the schemes at these config indexes, in this order.
    pub fn chain(&self, indexes: &[usize]) -> Chain {
        Chain::new(indexes.iter().map(|&i| Arc::clone(&self.all[i])).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scheme> {
        self.all.iter().map(|s| s.as_ref())
    }
}

fn instantiate(
    module: SchemeModRef,
    scheme: &SchemeConfig,
    index: usize,
    config_file: &Path,
) -> Result<Scheme, Error> {
    check_declared(module.options().as_slice(), &scheme.options).map_err(|err| {
        Error::plugin(format!(
            "{}: scheme[{index}] ({:?}).{err} (plugin {})",
            config_file.display(),
            scheme.name,
            scheme.library.display()
        ))
    })?;
    let new_scheme = module.new_scheme();
    match new_scheme(RSlice::from_slice(&scheme.options)).into_result() {
        Ok(object) => {
            let token_policy = object.token_policy().into_result().map_err(|message| {
                Error::plugin(format!(
                    "{}: scheme[{index}] ({:?}): {} panicked in token_policy: {message}; fix or rebuild the plugin",
                    config_file.display(),
                    scheme.name,
                    scheme.library.display()
                ))
            })?;
            Ok(Scheme {
                name: scheme.name.clone(),
                file: scheme.library.clone(),
                object,
                token_policy: token_policy.into_option(),
            })
        }
        Err(err) => {
            let key = match err.key.as_ref().into_option() {
                Some(key) => format!("scheme[{index}] ({:?}).{key}", scheme.name),
                None => format!("scheme[{index}] ({:?})", scheme.name),
            };
            Err(Error::plugin(format!(
                "{}: {key}: {} (plugin {})",
                config_file.display(),
                err.message,
                scheme.library.display()
            )))
        }
    }
}

/// What `authhost plugin info` tells about a library file.
#[derive(Debug)]
pub struct LibraryInfo {
    /// The plugin-api it was built against, when its header could be read.
    pub plugin_api: Option<String>,
    /// Its crate name and declared options, when this host can load it; else why not.
    pub loaded: Result<(String, Vec<OptionSpec>), String>,
}

/// Checks, copies, tries and loads the library at `path` as a serving host would, and says
/// what it is. Loading it maps it into this process: for the command line only.
pub fn describe_library(path: &Path) -> LibraryInfo {
    let tried = library::private_dir().and_then(|dir| {
        let copy = library::copy_privately(path, &dir, false)?;
        trial::run(None, path, &copy)?;
        Ok(copy)
    });
    let copy = match tried {
        Ok(copy) => copy,
        Err(why) => return LibraryInfo { plugin_api: None, loaded: Err(why) },
    };
    let plugin_api =
        lib_header_from_path(&copy.path).ok().map(|h| h.version_strings().version.as_str().to_owned());
    let loaded = load_library(&copy.path)
        .map(|module| (module.plugin_name().as_str().to_owned(), module.options().as_slice().to_vec()));
    LibraryInfo { plugin_api, loaded }
}

fn plugin_error(config: &Config, index: usize, problem: &str) -> Error {
    let scheme = &config.schemes[index];
    Error::plugin(format!(
        "{}: scheme[{index}] ({:?}): plugin {}: {problem}",
        config.file.display(),
        scheme.name,
        scheme.library.display()
    ))
}

/// Opens one library (a private copy) and checks its ABI. The error is short and says
/// what to do.
///
/// abi_stable's own check accepts a library whose prefix types (the root module, the
/// scheme's methods, the host's services) have as many fields as the host's or more: a
/// newer plugin in an older host. Within plugin-api 1.x the other direction must load too
/// (an older plugin in a newer host, which then reaches the methods the plugin lacks
/// through accessors that fall back to their default bodies). So the layouts are checked
/// both ways here, and either passing is enough; everything that is not a prefix type
/// (requests, outcomes, users) must match exactly either way, and a library newer in one
/// part and older in another fails both.
fn load_library(path: &Path) -> Result<SchemeModRef, String> {
    use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
    let header = lib_header_from_path(path).map_err(|e| describe(&e))?;
    // Another major is another ABI: say so in one line, before any layout detail.
    let version = abi_stable::sabi_types::VersionNumber::new(header.version_strings())
        .map_err(|e| format!("its plugin-api version does not parse: {e}"))?;
    if version.major.to_string() != ABI_MAJOR {
        return Err(other_major(&version));
    }
    let Some(theirs) = header.layout() else {
        return Err("it carries no ABI layout to check; build it with plugin-api's export_scheme!".into());
    };
    let ours = <SchemeModRef as abi_stable::StableAbi>::LAYOUT;
    if let Err(as_newer) = check_layout_compatibility(ours, theirs) {
        check_layout_compatibility(theirs, ours).map_err(|_| {
            format!(
                "built against a different plugin ABI; rebuild it against plugin-api {}.x (this host has {}).\n{}",
                ABI_MAJOR,
                authhost_plugin_api::VERSION,
                abi_errors(&as_newer.to_string())
            )
        })?;
    }
    // SAFETY: the layouts were found compatible just above, in one direction or the other,
    // which is what abi_stable's own check establishes before the same call.
    unsafe { header.init_root_module_with_unchecked_layout::<SchemeModRef>() }.map_err(|e| describe(&e))
}

/// The plugin ABI's major version: plugin-api's.
const ABI_MAJOR: &str = "1";

fn describe(err: &LibraryError) -> String {
    match err {
        LibraryError::OpenError { err, .. } => format!("cannot open the library: {err}"),
        LibraryError::GetSymbolError { .. } => {
            "not an authhost plugin: it exports no root module (a plugin invokes export_scheme!)".into()
        }
        LibraryError::AbiInstability(_) => format!(
            "built against a different plugin ABI; rebuild it against plugin-api {ABI_MAJOR}.x.\n{}",
            abi_errors(&err.to_string())
        ),
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => other_major(actual_version),
        other => first_line(&other.to_string()).to_owned(),
    }
}

/// The `Error:` blocks of abi_stable's report (about 900 lines), one line each, at most six.
fn abi_errors(report: &str) -> String {
    let mut out = String::new();
    let mut lines = report.lines().map(str::trim).peekable();
    let mut count = 0;
    while let Some(line) = lines.next() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        count += 1;
        if count > 6 {
            continue;
        }
        let _ = write!(out, "  error: {}", what.trim());
        let mut detail = Vec::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("Error:") || next.is_empty() {
                break;
            }
            detail.push(*next);
            lines.next();
        }
        let detail = detail.join(" ");
        if !detail.is_empty() {
            let mut detail: String = detail.chars().take(120).collect();
            if detail.len() == 120 {
                detail.push('…');
            }
            let _ = write!(out, " ({detail})");
        }
        out.push('\n');
    }
    if count > 6 {
        let _ = writeln!(out, "  ... and {} more", count - 6);
    }
    if count == 0 {
        out.push_str("  (no details in the report)\n");
    }
    out.trim_end().to_owned()
}

/// A library built against another plugin-api major: one line, and what to do.
fn other_major(version: &impl std::fmt::Display) -> String {
    format!(
        "built against plugin-api {version}, whose ABI this host (plugin-api {}) cannot load; \
         rebuild it against plugin-api {ABI_MAJOR}.x",
        authhost_plugin_api::VERSION
    )
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_report_shrinks_to_its_error_lines() {
        let report = "Layout...\n  field: x\nError:incompatible type size\nExpected:\n    48\nFound:\n    64\n\nmore noise\nError:too many fields\nExpected:\n 3\nFound:\n 4\n";
        assert_eq!(
            abi_errors(report),
            "  error: incompatible type size (Expected: 48 Found: 64)\n  error: too many fields (Expected: 3 Found: 4)"
        );
    }
}
