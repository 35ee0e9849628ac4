//! Gateway mode: authhost protecting other services, as a reverse proxy (`proxy`) and as
//! the back-end of another proxy's sub-request (`forward_auth`). The app decides who the
//! request is and whether the route allows it; this module only moves requests, answers
//! and identity headers, and calls nothing of the app's.

pub mod forward_auth;
pub mod forwarded;
pub mod identity;
pub mod pool;
pub mod proxy;

pub use identity::Identity;
pub use proxy::Upstream;
