//! Any bytes as an `Authorization` header, and any string as a token.
//!
//! Checks: extracting and verifying never panic; a bearer token comes only from a
//! `Bearer <token>` value (any case), trimmed; and nothing is accepted but the admin token and
//! the JWTs this target signed itself (the seed corpus holds them): a forged, altered, expired or
//! re-signed token is refused.
#![no_main]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use taskflow_server::auth::{Claims, Keys, Role};
use taskflow_server::fuzzing::{bearer_token, keys};

const ADMIN: &str = "fuzz-admin-token";
const SECRET: &[u8] = b"fuzz-jwt-secret";

static KEYS: LazyLock<Keys> = LazyLock::new(|| keys(ADMIN, SECRET));

/// The tokens that must verify: alice (member) and root (admin) until 2100. `jsonwebtoken`
/// signs deterministically, so these are the very strings in `corpus/bearer_jwt/`.
static SIGNED: LazyLock<Vec<(String, &str, bool)>> = LazyLock::new(|| {
    [("alice", Role::Member), ("root", Role::Admin)]
        .into_iter()
        .map(|(sub, role)| {
            let claims = Claims {
                sub: sub.into(),
                role,
                exp: 4_102_444_800,
                iat: 0,
            };
            let token = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .expect("signs");
            (token, sub, role == Role::Admin)
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    if let Some(token) = bearer_token(data) {
        let value = std::str::from_utf8(data).expect("a header value with a token is text");
        let (scheme, rest) = value.split_once(' ').expect("scheme and token");
        assert!(scheme.eq_ignore_ascii_case("bearer"));
        assert_eq!(token, rest.trim());
        check(&token);
    }
    if let Ok(token) = std::str::from_utf8(data) {
        check(token);
    }
});

fn check(token: &str) {
    let Some(caller) = KEYS.verify(token) else {
        return;
    };
    if token == ADMIN {
        assert!(caller.is_admin());
        return;
    }
    let Some((_, sub, admin)) = SIGNED.iter().find(|(signed, _, _)| signed == token) else {
        panic!(
            "accepted a token nobody signed: {token:?} as {}",
            caller.user()
        );
    };
    assert_eq!(caller.user().as_str(), *sub);
    assert_eq!(caller.is_admin(), *admin);
}
