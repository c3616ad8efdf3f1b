//! Who is calling: the admin token, user JWTs, and the [`Caller`] every handler receives.

mod caller;
mod keys;

pub use caller::{bearer_token, Caller, Role};
pub use keys::{unix_now, Claims, Keys, MintedToken, Secrets};
