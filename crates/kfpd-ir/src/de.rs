//! Serde helpers shared by the IR model.
//!
//! The model is deserialized from a `serde_json::Value`, whose errors carry no
//! location. The `labeled*` helpers prefix an error with the map key or field it
//! happened under, so a user reads `component "comp-a": dag: task "t": unknown
//! field ...` instead of a bare serde message. The number helpers accept what
//! protobuf's JSON mapping accepts (numbers, or numbers written as strings).

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// How a message type is named in error messages.
pub(crate) trait Labeled {
    /// Prefix for an entry of a map of this type, followed by the quoted key.
    const ENTRY: &'static str = "entry";
    /// Prefix when the type appears as a single field.
    const FIELD: &'static str = "field";
}

fn wrap<E: serde::de::Error>(prefix: impl Display, err: impl Display) -> E {
    E::custom(format!("{prefix}: {err}"))
}

/// A map of messages; `null` counts as empty, like protobuf's JSON mapping.
pub(crate) fn labeled_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Labeled,
{
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (key, value) in raw.unwrap_or_default() {
        let item = T::deserialize(value).map_err(|e| wrap(format!("{} {key:?}", T::ENTRY), e))?;
        out.insert(key, item);
    }
    Ok(out)
}

/// A message-typed field that is always present in the model; `null` means unset.
pub(crate) fn labeled<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Labeled + Default,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(T::default()),
        Some(value) => T::deserialize(value).map_err(|e| wrap(T::FIELD, e)),
    }
}

/// An optional message-typed field.
pub(crate) fn labeled_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Labeled,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|e| wrap(T::FIELD, e)),
    }
}

/// A `google.protobuf.Value` field: present-but-null is a value (`Some(Null)`),
/// which matters for "has a default value".
pub(crate) fn present_value<'de, D>(d: D) -> Result<Option<Value>, D::Error>
where
    D: Deserializer<'de>,
{
    Value::deserialize(d).map(Some)
}

/// A scalar field where `null` means "unset" (protobuf's JSON mapping allows it).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn integer_from_value(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
                    _ => Err(format!("expected an integer, got {n}")),
                }
            }
        }
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expected an integer, got string {s:?}")),
        other => Err(format!("expected an integer, got {}", kind_of(other))),
    }
}

fn double_from_value(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("expected a number, got {n}")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number, got string {s:?}")),
        },
        other => Err(format!("expected a number, got {}", kind_of(other))),
    }
}

/// An integer field (`int32`/`int64`): a JSON number or a decimal string.
pub(crate) fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + Default,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(T::default()),
        Some(value) => {
            let i = integer_from_value(&value).map_err(D::Error::custom)?;
            T::try_from(i).map_err(|_| D::Error::custom(format!("integer {i} is out of range")))
        }
    }
}

/// An optional `int64` field (used where "unset" differs from zero).
pub(crate) fn opt_int64<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(value) => integer_from_value(&value)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// A `double` field: a JSON number or a numeric string.
pub(crate) fn double<'de, D>(d: D) -> Result<f64, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(0.0),
        Some(value) => double_from_value(&value).map_err(D::Error::custom),
    }
}

/// An optional `double` field (used where "unset" differs from zero).
pub(crate) fn opt_double<'de, D>(d: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(value) => double_from_value(&value)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// Writes an `int64` as a decimal string, as protobuf's JSON mapping does.
pub(crate) fn int64_as_string<S: serde::Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Writes an optional `int64` as a decimal string.
pub(crate) fn opt_int64_as_string<S: serde::Serializer>(
    value: &Option<i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// For `skip_serializing_if`: protobuf's JSON mapping omits default values.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A short description of a JSON value's kind, for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
