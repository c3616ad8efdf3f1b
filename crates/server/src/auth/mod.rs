//! Who is calling: the admin token, user JWTs, and the [`Caller`] every handler receives.

mod caller;
mod keys;

pub use caller::{bearer_token, Caller, Role};
pub use keys::{Claims, Keys, MintedToken, Secrets};
