//! How request fields deserialize where serde's defaults would disagree with the published
//! document: JSON Schema's `integer` is any number without a fractional part (`72.0` included),
//! and a field may be absent without being nullable, or nullable with `null` meaning "clear".

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A JSON Schema integer within `i64`: `72` and `72.0`, not `72.5`.
struct Integer(i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        if let Some(i) = number.as_i64() {
            return Ok(Integer(i));
        }
        match number.as_f64() {
            // 2^63 is exactly representable and just out of range, hence the strict bound.
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Ok(Integer(f as i64))
            }
            _ => Err(D::Error::custom(format!(
                "{number} is not an integer from -2^63 to 2^63-1"
            ))),
        }
    }
}

/// An optional integer; `null` is the same as absent.
pub(crate) fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Integer>::deserialize(d)?.map(|i| i.0))
}

/// An integer that may be absent (`None`, via `default`) but not `null`.
pub(crate) fn non_null_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Integer::deserialize(d).map(|i| Some(i.0))
}

/// A field that may be absent (`None`, via `default`) but not `null`: the document says so, and
/// a change that names a field changes it.
pub(crate) fn non_null<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Tells a field set to `null` (`Some(None)`) from an absent one (`None`, via `default`).
pub(crate) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "integer")]
        n: Option<i64>,
    }

    fn n(json: &str) -> Result<Option<i64>, serde_json::Error> {
        serde_json::from_str::<Body>(json).map(|b| b.n)
    }

    #[test]
    fn integers_are_json_schema_integers() {
        assert_eq!(n(r#"{"n": 72}"#).unwrap(), Some(72));
        assert_eq!(n(r#"{"n": 72.0}"#).unwrap(), Some(72));
        assert_eq!(n(r#"{"n": -1e2}"#).unwrap(), Some(-100));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n("{}").unwrap(), None);
        assert!(n(r#"{"n": 72.5}"#).is_err());
        assert!(n(r#"{"n": 9223372036854775808}"#).is_err());
        assert!(n(r#"{"n": "7"}"#).is_err());
    }
}
