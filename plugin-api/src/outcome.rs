//! What one scheme says about one request.

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use abi_stable::StableAbi;

/// A user as the host's store knows it.
///
/// The layout is fixed; what later versions learn about users (groups, claims, profile
/// fields) travels in `attributes`, by name, so that a plugin built before a new fact
/// existed still loads, and passes it on untouched when it returns the user.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: RString,
    pub is_active: bool,
    pub is_staff: bool,
    /// Bumped by every password change and deactivation: a credential minted for an older
    /// generation (a JWT) is no longer good.
    pub generation: u64,
    /// The e-mail address; empty when none is known.
    pub email: RString,
    /// Further facts, by name; a name may repeat (one `group` entry per group).
    pub attributes: RVec<Tuple2<RString, RString>>,
}

impl User {
    /// An active, non-staff user with no e-mail address and no attributes.
    pub fn new(id: i64, username: impl Into<RString>) -> Self {
        User {
            id,
            username: username.into(),
            is_active: true,
            is_staff: false,
            generation: 0,
            email: RString::new(),
            attributes: RVec::new(),
        }
    }

    /// The first value of the attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.0.as_str() == name).map(|a| a.1.as_str())
    }

    /// Every value of the attribute `name`, in order.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes.iter().filter(move |a| a.0.as_str() == name).map(|a| a.1.as_str())
    }
}

// abi_stable's derives put impls inside `const _`, which trips `non_local_definitions`;
// an `allow` on the item does not reach them, on the module it does.
#[allow(non_local_definitions)]
mod outcome_enum {
    use super::User;
    use abi_stable::std_types::{ROption, RString};
    use abi_stable::StableAbi;

    /// What one scheme says about one request (DRF's `authenticate`).
    ///
    /// Non-exhaustive across the ABI: append variants only, never reorder. A host that meets
    /// a variant it does not know treats it as a fault, never as "not attempted".
    #[repr(u8)]
    #[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
    #[sabi(kind(WithNonExhaustive(size = [usize; 24], traits(Debug, Clone, PartialEq))))]
    #[non_exhaustive]
    pub enum Outcome {
        /// No credentials of this kind: try the next scheme.
        NotAttempted,
        /// Valid credentials: the request is `user`; `auth` is scheme data (token id, claims).
        Authenticated { user: User, auth: ROption<RString> },
        /// Credentials of this kind present and wrong: stop the chain, 401 or 403.
        Failed { detail: RString },
        /// Credentials fine but the request is refused (CSRF): stop, 403.
        Forbidden { detail: RString },
        /// The scheme broke (panic, internal error): stop, 500. Never read as not attempted.
        Fault { message: RString },
    }
}

pub use outcome_enum::{Outcome, Outcome_NE};

impl Outcome {
    /// The request is `user`, with no scheme data.
    pub fn authenticated(user: User) -> Self {
        Outcome::Authenticated { user, auth: ROption::RNone }
    }

    /// The request is `user`; `auth` is what `request.auth` holds in DRF (token id, claims).
    pub fn authenticated_with(user: User, auth: impl Into<String>) -> Self {
        Outcome::Authenticated { user, auth: ROption::RSome(RString::from(auth.into())) }
    }

    /// Credentials of this kind were present and wrong.
    pub fn failed(detail: impl Into<String>) -> Self {
        Outcome::Failed { detail: RString::from(detail.into()) }
    }

    /// Credentials were fine but the request is refused (a CSRF failure, for example).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Outcome::Forbidden { detail: RString::from(detail.into()) }
    }

    /// The user, when authenticated (for tests and the host; no abi_stable types).
    pub fn user(&self) -> Option<&User> {
        match self {
            Outcome::Authenticated { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The username, when authenticated.
    pub fn username(&self) -> Option<&str> {
        self.user().map(|u| u.username.as_str())
    }

    /// The scheme data (`request.auth`), when authenticated with some.
    pub fn auth(&self) -> Option<&str> {
        match self {
            Outcome::Authenticated { auth: ROption::RSome(auth), .. } => Some(auth.as_str()),
            _ => None,
        }
    }

    /// The detail of a failed or forbidden outcome.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Failed { detail } | Outcome::Forbidden { detail } => Some(detail.as_str()),
            _ => None,
        }
    }

    /// Wraps the outcome for the trip across the ABI.
    pub fn into_ffi(self) -> Outcome_NE {
        Outcome_NE::new(self)
    }
}
