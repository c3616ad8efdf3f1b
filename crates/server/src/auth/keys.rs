//! Token material: the admin token (kept only as a hash) and the JWT signing key, from config or
//! generated on first start and stored in the database.

use super::{Caller, Role};
use crate::config::{Config, Secret};
use crate::domain::UserId;
use crate::store::{Store, StoreError};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const ADMIN_HASH_KEY: &str = "admin_token_sha256";
const JWT_SECRET_KEY: &str = "jwt_secret";

/// The claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// `admin` or `member`.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

/// A freshly minted token and when it expires.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MintedToken {
    /// The bearer token.
    pub token: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Verifies and mints tokens. Holds no plaintext admin token, only its SHA-256.
#[derive(Clone)]
pub struct Keys {
    /// SHA-256 of the admin token: a database leak does not leak the token.
    admin_hash: [u8; 32],
    /// Signs user tokens.
    encoding: EncodingKey,
    /// Verifies user tokens.
    decoding: DecodingKey,
    /// Default token lifetime in seconds.
    default_ttl: u64,
}

/// The outcome of loading keys: the keys, and the admin token if this start generated it (to be
/// shown once to the person starting the server, never logged).
pub struct Secrets {
    /// The keys.
    pub keys: Keys,
    /// Set only on the start that generated the admin token.
    pub generated_admin_token: Option<Secret>,
}

impl Keys {
    /// Uses the configured secrets, else those stored in the database, else generates and stores
    /// new ones. Concurrent first starts agree: only one insert wins, the others read it back.
    pub async fn load(config: &Config, store: &Store) -> Result<Secrets, StoreError> {
        let mut generated_admin_token = None;
        let admin_hash = match &config.admin_token {
            Some(token) => sha256(token.expose()),
            None => {
                let fresh = random_token();
                if store
                    .set_meta_if_absent(ADMIN_HASH_KEY, &hex(&sha256(&fresh)))
                    .await?
                {
                    generated_admin_token = Some(Secret::new(fresh));
                }
                let stored = store.meta(ADMIN_HASH_KEY).await?.unwrap_or_default();
                unhex(&stored).ok_or_else(|| StoreError::Corrupt("admin token hash".into()))?
            }
        };
        let jwt_secret = match &config.jwt_secret {
            Some(secret) => secret.expose().to_owned(),
            None => {
                store
                    .set_meta_if_absent(JWT_SECRET_KEY, &random_token())
                    .await?;
                store.meta(JWT_SECRET_KEY).await?.unwrap_or_default()
            }
        };
        Ok(Secrets {
            keys: Keys {
                admin_hash,
                encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
                decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
                default_ttl: config.token_ttl_secs,
            },
            generated_admin_token,
        })
    }

    /// Keys from secrets given here, with no store: the fuzz targets and property tests
    /// ([`crate::fuzzing`]) verify tokens millions of times and need no database for it.
    pub(crate) fn from_secrets(admin_token: &str, jwt_secret: &[u8], default_ttl: u64) -> Self {
        Keys {
            admin_hash: sha256(admin_token),
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            default_ttl,
        }
    }

    /// Who a bearer token belongs to, or `None` if it is neither the admin token nor a valid,
    /// unexpired user token.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        if sha256(token) == self.admin_hash {
            return Some(Caller::admin());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        let user = UserId::parse(&data.claims.sub, "sub").ok()?;
        Some(Caller::new(user, data.claims.role, data.claims.exp))
    }

    /// Mints a user token valid for `ttl_secs` (the configured default if `None`).
    pub fn mint(&self, user: &UserId, role: Role, ttl_secs: Option<u64>) -> MintedToken {
        let now = unix_now();
        let exp = now + ttl_secs.unwrap_or(self.default_ttl);
        let claims = Claims {
            sub: user.to_string(),
            role,
            exp,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        MintedToken {
            token,
            expires_at: exp,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            admin_hash: sha256("admin-secret"),
            encoding: EncodingKey::from_secret(b"k"),
            decoding: DecodingKey::from_secret(b"k"),
            default_ttl: 60,
        }
    }

    #[test]
    fn the_admin_token_is_recognised() {
        let caller = keys().verify("admin-secret").unwrap();
        assert!(caller.is_admin());
        assert!(keys().verify("admin-secret ").is_none());
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_user() {
        let keys = keys();
        let alice = UserId::parse("alice", "user").unwrap();
        let minted = keys.mint(&alice, Role::Member, None);
        let caller = keys.verify(&minted.token).unwrap();
        assert_eq!(caller.user(), &alice);
        assert!(!caller.is_admin());
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let keys = keys();
        let alice = UserId::parse("alice", "user").unwrap();
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Member,
            exp: unix_now() - 1,
            iat: 0,
        };
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&expired).is_none());
        let other = Keys {
            encoding: EncodingKey::from_secret(b"other"),
            ..keys.clone()
        };
        assert!(keys
            .verify(&other.mint(&alice, Role::Admin, None).token)
            .is_none());
    }

    #[test]
    fn hex_round_trips() {
        let h = sha256("x");
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
    }
}
