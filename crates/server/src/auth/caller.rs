//! The authenticated caller, extracted from `Authorization: Bearer` on every protected route.

use crate::domain::{ProjectId, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and changes everything, mints tokens.
    Admin,
    /// Sees and changes the projects they are a member of.
    Member,
}

/// Who is making the request. Only [`Keys::verify`](super::Keys::verify) creates one, so holding
/// a `Caller` means the token was valid.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user id (`admin` for the admin token).
    user: UserId,
    /// What the token allows.
    role: Role,
    /// When the token expires (seconds since the epoch); `u64::MAX` for the admin token.
    expires_at: u64,
}

impl Caller {
    pub(crate) fn new(user: UserId, role: Role, expires_at: u64) -> Self {
        Self {
            user,
            role,
            expires_at,
        }
    }

    pub(crate) fn admin() -> Self {
        Self::new(
            UserId::parse("admin", "user").expect("valid id"),
            Role::Admin,
            u64::MAX,
        )
    }

    /// The caller's user id.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Whether the caller may do everything.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// When the caller's token expires.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// `None` for the admin (sees everything), else the user whose memberships limit what is
    /// visible.
    pub fn visibility(&self) -> Option<UserId> {
        (!self.is_admin()).then(|| self.user.clone())
    }

    /// Fails with 403 unless the caller is the admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only the admin may do this".into()))
        }
    }

    /// Fails with 403 unless the caller may see and change `project`.
    pub async fn require_member(
        &self,
        state: &AppState,
        project: &ProjectId,
    ) -> Result<(), ApiError> {
        if self.is_admin() || state.store().is_member(project, &self.user).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "you are not a member of project {project}"
            )))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let caller = state
            .keys()
            .verify(token)
            .ok_or(ApiError::Unauthorized("invalid or expired token"))?;
        state.check_rate(caller.user())?;
        Ok(caller)
    }
}
