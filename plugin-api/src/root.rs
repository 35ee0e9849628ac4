//! The root module every plugin library exports, and the scheme object behind it.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::options::{OptionEntry, OptionError, OptionSpec};

// abi_stable's derives put impls inside `const _`, which trips `non_local_definitions`;
// an `allow` on the item does not reach them, on the module it does.
#[allow(non_local_definitions)]
mod object_trait {
    use crate::host::{HostServicesRef, TokenPolicy};
    use crate::mint::{Inspected, Minted};
    use crate::outcome::Outcome_NE;
    use crate::outcome::User;
    use crate::request::RequestView;
    use abi_stable::sabi_trait;
    use abi_stable::std_types::RStr;
    use abi_stable::std_types::{ROption, RResult, RString};

    /// One configured scheme as it crosses the ABI. Built only by `export_scheme!`, whose
    /// implementation catches panics around every call.
    #[sabi_trait]
    pub trait SchemeObject: Send + Sync {
        fn authenticate(&self, request: &RequestView<'_>, host: &HostServicesRef<'_>) -> Outcome_NE;

        /// The challenge, or none; `Err` carries a panic's message (a fault, like one in
        /// `authenticate`).
        fn authenticate_header(&self, request: &RequestView<'_>) -> RResult<ROption<RString>, RString>;

        /// The policy of the tokens this scheme accepts, if it is a token scheme; asked once
        /// at load. `Err` carries a panic's message (the scheme cannot be loaded).
        fn token_policy(&self) -> RResult<ROption<TokenPolicy>, RString>;

        /// A new credential for `user` (a JWT); `orig_iat` > 0 when refreshing.
        fn mint(&self, user: &User, orig_iat: i64) -> Minted;

        /// Reads back a credential this scheme minted, without a request.
        /// Frozen at plugin-api 1.0 up to here: a later minor appends methods after this
        /// one, each with a default body, which a host calls on a plugin built before it.
        #[sabi(last_prefix_field)]
        fn inspect(&self, credential: RStr<'_>) -> Inspected;
    }
}

pub use object_trait::{SchemeObject, SchemeObject_TO};

/// A scheme instance owned by the host.
pub type SchemeBox = SchemeObject_TO<'static, RBox<()>>;

/// The root module of a plugin library.
#[allow(missing_debug_implementations)] // holds only a name and a function pointer
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SchemeModRef)))]
#[sabi(missing_field(panic))]
pub struct SchemeMod {
    /// The plugin's crate name, for messages.
    pub plugin_name: RStr<'static>,

    /// The options its schemes take (`Scheme::OPTIONS`); empty when undeclared.
    pub options: RSlice<'static, OptionSpec>,

    /// Builds one scheme instance from its options. New fields go after this one.
    #[sabi(last_prefix_field)]
    pub new_scheme: extern "C" fn(options: RSlice<'_, OptionEntry>) -> RResult<SchemeBox, OptionError>,
}

impl RootModule for SchemeModRef {
    declare_root_module_statics! {SchemeModRef}
    const BASE_NAME: &'static str = "authhost_scheme";
    const NAME: &'static str = "authhost_scheme";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
