//! `export_scheme!` and what stands behind it: the exported root module, and the guard that
//! catches a panic around every call into plugin code. Without that guard, a panic reaching
//! abi_stable's FFI shims ends the whole host process with `exit(1)`.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString};

use crate::host::{Host, HostServicesRef, TokenPolicy};
use crate::mint::{Inspected, Minted};
use crate::options::{OptionEntry, OptionError, Options};
use crate::outcome::User;
use crate::outcome::{Outcome, Outcome_NE};
use crate::request::RequestView;
use crate::root::{SchemeBox, SchemeMod, SchemeModRef, SchemeObject, SchemeObject_TO};
use crate::scheme::{Scheme, SchemeError};

/// Exports a [`Scheme`] implementation as this library's root module.
///
/// Also defines `pub fn authhost_root_module() -> SchemeModRef`, so that benches and tests
/// can link the same scheme statically. Every plugin exports the root module under the one
/// name abi_stable looks for, so one binary can link only one plugin crate statically.
#[macro_export]
macro_rules! export_scheme {
    ($scheme:ty) => {
        /// The root module of this plugin, for static linking (benches, tests).
        pub fn authhost_root_module() -> $crate::SchemeModRef {
            $crate::export::root_module::<$scheme>(env!("CARGO_PKG_NAME"))
        }

        /// The header abi_stable's loader looks for (`abi_stable::library::ROOT_MODULE_LOADER_NAME`).
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            extern "C" fn load() -> $crate::abi_stable::library::RootModuleResult {
                $crate::export::install_panic_hook();
                $crate::abi_stable::library::__call_root_module_loader(authhost_root_module)
            }
            // SAFETY: `load` returns the `SchemeModRef` built by `authhost_root_module`,
            // which is the module type named here, as `from_constructor` requires.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::SchemeModRef>(
                    load,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Builds the root module for scheme type `S`. Called by `export_scheme!`.
pub fn root_module<S: Scheme>(plugin_name: &'static str) -> SchemeModRef {
    SchemeMod {
        plugin_name: RStr::from_str(plugin_name),
        options: RSlice::from_slice(S::OPTIONS),
        new_scheme: new_scheme::<S>,
    }
    .leak_into_prefix()
}

extern "C" fn new_scheme<S: Scheme>(options: RSlice<'_, OptionEntry>) -> RResult<SchemeBox, OptionError> {
    let built = guard(|| construct::<S>(options.as_slice()));
    match built {
        Ok(Ok(scheme)) => RResult::ROk(SchemeObject_TO::from_value(Guarded(scheme), TD_Opaque)),
        Ok(Err(err)) => RResult::RErr(OptionError {
            key: err.option_key().map(RString::from).into(),
            message: RString::from(err.message()),
        }),
        Err(panic) => RResult::RErr(OptionError {
            key: ROption::RNone,
            message: RString::from(format!("panicked while starting: {panic}")),
        }),
    }
}

/// Builds a scheme as the host does: its constructor, then the check that it read every
/// key (an unread one is unknown, with a suggestion). The host checks the declared options
/// before it calls the plugin; `testing::build` does both.
pub(crate) fn construct<S: Scheme>(entries: &[OptionEntry]) -> Result<S, SchemeError> {
    let options = Options::new(entries);
    let scheme = S::new(&options)?;
    if let Some((key, suggestion)) = options.unread().into_iter().next() {
        return Err(SchemeError::option(key, crate::options::unknown_option(suggestion)));
    }
    Ok(scheme)
}

/// A scheme behind the ABI, with every call guarded.
struct Guarded<S>(S);

impl<S: Scheme> SchemeObject for Guarded<S> {
    fn authenticate(&self, request: &RequestView<'_>, host: &HostServicesRef<'_>) -> Outcome_NE {
        let host = Host::new(host);
        let outcome = match guard(|| self.0.authenticate(request, &host)) {
            Ok(Ok(outcome)) => outcome,
            // The host recorded what it needs and calls again; this outcome is not read.
            Ok(Err(err)) if err.is_pending() => Outcome::Fault { message: RString::from(err.message()) },
            Ok(Err(err)) => Outcome::Fault { message: RString::from(err.to_string()) },
            Err(panic) => Outcome::Fault { message: RString::from(format!("panicked: {panic}")) },
        };
        outcome.into_ffi()
    }

    fn authenticate_header(&self, request: &RequestView<'_>) -> RResult<ROption<RString>, RString> {
        match guard(|| self.0.authenticate_header(request)) {
            Ok(challenge) => RResult::ROk(challenge.map(RString::from).into()),
            Err(panic) => RResult::RErr(RString::from(format!("panicked: {panic}"))),
        }
    }

    fn mint(&self, user: &User, orig_iat: i64) -> Minted {
        match guard(|| self.0.mint(user, (orig_iat > 0).then_some(orig_iat))) {
            Ok(None) => Minted::Unsupported,
            Ok(Some(Ok(credential))) => Minted::Credential(credential.into()),
            Ok(Some(Err(err))) => Minted::Fault(err.to_string().into()),
            Err(panic) => Minted::Fault(format!("panicked: {panic}").into()),
        }
    }

    fn inspect(&self, credential: RStr<'_>) -> Inspected {
        match guard(|| self.0.inspect(credential.as_str())) {
            Ok(None) => Inspected::Unsupported,
            Ok(Some(Ok(claims))) => Inspected::Claims(claims),
            Ok(Some(Err(reason))) => Inspected::Invalid(reason.into()),
            Err(panic) => Inspected::Fault(format!("panicked: {panic}").into()),
        }
    }

    fn token_policy(&self) -> RResult<ROption<TokenPolicy>, RString> {
        // Asked once at load; a panic here is a fault that stops the load, never "no policy"
        // (which would turn a token scheme's tokens into ones that never refresh or log out).
        match guard(|| self.0.token_policy()) {
            Ok(policy) => RResult::ROk(policy.into()),
            Err(message) => RResult::RErr(message.into()),
        }
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs plugin code, turning a panic into its message (with its location when the plugin
/// was loaded dynamically and its own panic hook recorded it).
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| payload_message(payload.as_ref()))
    })
}

/// The text of a panic's payload (what `panic!` was given), for a log line.
pub fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// In a dynamically loaded plugin (its own copy of std), records each panic's message and
/// location for the host to log, instead of printing it on the process's stderr.
#[doc(hidden)]
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = payload_message(info.payload());
            let text = match info.location() {
                Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
                None => message,
            };
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_for() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
