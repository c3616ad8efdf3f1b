//! The headers of a WebSocket opening handshake (RFC 6455 §4.2.1).
//!
//! Input: one byte for the HTTP version, then `name: value` lines. Checks the handshake's
//! verdict against the RFC's rules written out here independently: the first rule broken is the
//! one named, and a request that breaks none gets as far as the upgrade itself.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use taskflow_server::fuzzing::upgrade_check;

fuzz_target!(|data: &[u8]| {
    let [version, rest @ ..] = data else {
        return;
    };
    let version = *version % 5;
    let headers: Vec<(&[u8], &[u8])> = rest
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            let value = &value[1..];
            let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
            Some((name, &value[start..]))
        })
        .collect();
    let verdict = upgrade_check(version, &headers);
    assert_eq!(verdict, Err(expected(version, &headers)), "{headers:?}");
});

/// What RFC 6455 §4.2.1 says of this request, as `Rejection`'s name.
fn expected(version: u8, headers: &[(&[u8], &[u8])]) -> String {
    match version {
        1 => return "HttpVersion(HTTP/1.0)".into(),
        2 => {}
        _ => return "NotUpgradable".into(),
    }
    // What the http crate keeps: valid names (stored lowercase) with valid values.
    let kept: Vec<(String, &[u8])> = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = axum_name(name)?;
            value_ok(value).then_some((name, *value))
        })
        .collect();
    let all = |name: &'static str| kept.iter().filter(move |(n, _)| n == name).map(|(_, v)| *v);
    let first = |name: &'static str| all(name).next();
    let has_token = |name: &'static str, token: &str| {
        all(name).any(|v| {
            v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
                && std::str::from_utf8(v)
                    .expect("ascii")
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("connection", "upgrade") {
        return "NoConnectionUpgrade".into();
    }
    if !has_token("upgrade", "websocket") {
        return "NoUpgradeWebsocket".into();
    }
    if first("sec-websocket-version") != Some(b"13") {
        return "WrongVersion".into();
    }
    let Some(key) = first("sec-websocket-key") else {
        return "NoKey".into();
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if key.len() != 24 || decoded.map_or(true, |k| k.len() != 16) {
        return "BadKey".into();
    }
    if first("host").is_none_or(|h| h.is_empty()) {
        return "NoHost".into();
    }
    "NotUpgradable".into()
}

/// A header name as the http crate stores it, if it is one (RFC 9110 token characters).
fn axum_name(name: &[u8]) -> Option<String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!name.is_empty() && name.iter().all(|&b| token(b)))
        .then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Whether the http crate takes these bytes as a header value.
fn value_ok(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
