//! Direct messages: the one policy the WebSocket `direct` command and
//! `POST /users/{id}/messages` share, so the two ways in cannot drift apart: what a message may
//! hold (chat's rule), who may message whom, and the idempotent post.

use crate::auth::Caller;
use crate::domain::{rules, Invalid, UserId};
use crate::state::AppState;
use crate::store::StoreError;
use taskflow_protocol::LoggedEvent;

/// Why a direct message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The recipient or the text breaks a rule (or the recipient is the sender).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The two users share no project, and neither is the admin.
    #[error("you share no project with {0}, so you cannot message them")]
    NoSharedProject(UserId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends `text` from the caller to the user `to`: validated as chat is (the text is stored
/// trimmed), allowed between members of a common project and to or from the admin, logged in
/// both users' rooms. A `command_id` (as JSON, like chat's) makes a resend return the first
/// send's event. Returns the sender's copy.
pub async fn send(
    state: &AppState,
    caller: &Caller,
    to: &str,
    text: &str,
    command_id: Option<&str>,
) -> Result<LoggedEvent, DirectError> {
    let to = UserId::parse(to, "to")?;
    rules::CHAT_TEXT.check(text, "text")?;
    if &to == caller.user() {
        return Err(Invalid::new("to", "a direct message goes to someone else").into());
    }
    let admin = Caller::admin();
    let allowed = caller.is_admin()
        || &to == admin.user()
        || state.store().share_project(caller.user(), &to).await?;
    if !allowed {
        return Err(DirectError::NoSharedProject(to));
    }
    Ok(state
        .store()
        .post_direct(caller.user(), &to, text.trim(), command_id)
        .await?)
}
