//! `/auth/tokens`: the admin mints user tokens; `/auth/me`: who a token speaks for.

use crate::auth::{Caller, MintedToken, Role};
use crate::domain::UserId;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use taskflow_protocol::ErrorBody;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mint_token))
        .routes(routes!(who_am_i))
}

/// Body of `POST /auth/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    /// The user the token speaks for.
    user: String,
    /// `member` (default) or `admin`.
    role: Option<Role>,
    /// Lifetime in seconds; the server's default (`token_ttl_secs`) if absent.
    #[serde(default, deserialize_with = "crate::api::fields::integer")]
    ttl_secs: Option<i64>,
}

/// Mint a user token (admin only).
#[utoipa::path(post, path = "/auth/tokens", tag = "auth", request_body = TokenRequest, security(("bearer" = [])),
    responses((status = 201, body = MintedToken), (status = 403, body = ErrorBody)))]
async fn mint_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    caller.require_admin()?;
    let user = UserId::parse(&body.user, "user")?;
    if let Some(ttl) = body.ttl_secs {
        crate::domain::rules::TOKEN_TTL.check(ttl, "ttl_secs")?;
    }
    let minted = state.keys().mint(
        &user,
        body.role.unwrap_or(Role::Member),
        body.ttl_secs.map(|t| t.unsigned_abs()),
    );
    Ok((StatusCode::CREATED, Json(minted)))
}

/// Who the caller is: what a page needs to know about its own token (whose tasks are "mine",
/// whether to show the admin view, when to ask for a fresh token).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    /// The user id (`admin` for the admin token).
    user: String,
    /// `admin` or `member`.
    role: Role,
    /// Expiry, seconds since the Unix epoch; absent for the admin token, which does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

/// The caller's user id, role and token expiry.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn who_am_i(caller: Caller) -> Json<Me> {
    Json(Me {
        user: caller.user().to_string(),
        role: if caller.is_admin() {
            Role::Admin
        } else {
            Role::Member
        },
        expires_at: (caller.expires_at() != u64::MAX).then_some(caller.expires_at()),
    })
}
