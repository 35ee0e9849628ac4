//! Schemes that mint their own credentials (JWT): the host's `obtain_jwt`, `refresh_jwt`
//! and `verify_jwt` views ask the scheme to mint one for a user, or to read one back.

use abi_stable::std_types::{RString, RVec, Tuple2};
use abi_stable::StableAbi;

/// What a minted credential says, as its scheme reads it back.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: i64,
    pub username: RString,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires: i64,
    /// When the first credential of its line was minted; refreshes keep it. 0: none.
    pub orig_iat: i64,
    /// Until when it may be refreshed (Unix seconds); 0: it may not.
    pub refresh_until: i64,
    /// The user's generation when it was minted (see `User::generation`).
    pub generation: u64,
    /// Further claims, by name (the layout is fixed; what later versions read travels here).
    pub extra: RVec<Tuple2<RString, RString>>,
}

/// A scheme's answer to "mint a credential".
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Minted {
    /// This scheme mints nothing.
    Unsupported,
    Credential(RString),
    /// It broke (a panic, a bad key): the host answers 500 and logs this.
    Fault(RString),
}

/// A scheme's answer to "read this credential back".
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// This scheme mints nothing.
    Unsupported,
    Claims(Claims),
    /// Not a good credential: the reason, for the client (`Signature has expired.`).
    Invalid(RString),
    /// It broke: the host answers 500 and logs this.
    Fault(RString),
}
