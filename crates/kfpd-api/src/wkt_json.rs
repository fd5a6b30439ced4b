//! JSON form and helpers for the `google.protobuf` well-known types used by
//! the API (`Timestamp`, `Struct`, `Value`, `ListValue`, `Any`).
//!
//! The JSON form follows the protobuf JSON mapping as produced by Go's
//! `protojson` (which is what the upstream API server emits):
//!
//! * `Timestamp` is an RFC 3339 string in UTC with a `Z` suffix and 0, 3, 6
//!   or 9 fractional digits, e.g. `"2024-05-01T10:00:00Z"`. Input accepts any
//!   RFC 3339 offset.
//! * `Struct`, `Value` and `ListValue` are plain JSON objects, values and
//!   arrays. Numbers with an integral value below 1e21 are written without a
//!   fractional part (`3`, not `3.0`).
//! * `Any` is `{"@type": "<type url>", ...}`: message fields inline for
//!   `google.rpc.Status` and `google.protobuf.Empty`, or a `"value"` key
//!   holding the JSON of a `Struct`/`Value`/`ListValue`/`Timestamp`. Other
//!   payload types fall back to `{"@type": ..., "value": "<base64 bytes>"}`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use prost::{Message, Name};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::generated::google::protobuf::{value::Kind, Any, ListValue, NullValue, Struct, Value};
use crate::generated::google::protobuf::{Empty, Timestamp};
use crate::generated::google::rpc::Status;

/// Smallest seconds value protobuf allows (0001-01-01T00:00:00Z).
const MIN_SECONDS: i64 = -62_135_596_800;
/// Largest seconds value protobuf allows (9999-12-31T23:59:59Z).
const MAX_SECONDS: i64 = 253_402_300_799;

// ---------------------------------------------------------------------------
// Timestamp
// ---------------------------------------------------------------------------

/// Error for a `Timestamp` outside the range protobuf permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRangeError;

impl fmt::Display for TimestampRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timestamp outside 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z")
    }
}

impl std::error::Error for TimestampRangeError {}

impl Timestamp {
    /// Whole seconds since the Unix epoch.
    pub const fn from_unix(seconds: i64) -> Self {
        Self { seconds, nanos: 0 }
    }

    /// The current time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// RFC 3339 text as used in JSON, e.g. `2024-05-01T10:00:00Z`.
    pub fn to_rfc3339(&self) -> Result<String, TimestampRangeError> {
        let dt = DateTime::<Utc>::try_from(*self)?;
        Ok(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    /// Parses RFC 3339 text with any UTC offset.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let dt = DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("invalid RFC 3339 timestamp {s:?}: {e}"))?;
        let ts = Timestamp::from(dt.with_timezone(&Utc));
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
            return Err(format!("timestamp {s:?} is out of range"));
        }
        Ok(ts)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Self {
            seconds: dt.timestamp(),
            nanos: dt.timestamp_subsec_nanos() as i32,
        }
    }
}

impl TryFrom<Timestamp> for DateTime<Utc> {
    type Error = TimestampRangeError;

    fn try_from(ts: Timestamp) -> Result<Self, Self::Error> {
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds)
            || !(0..1_000_000_000).contains(&ts.nanos)
        {
            return Err(TimestampRangeError);
        }
        DateTime::from_timestamp(ts.seconds, ts.nanos as u32).ok_or(TimestampRangeError)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            },
            Err(e) => {
                let d = e.duration();
                let mut seconds = -(d.as_secs() as i64);
                let mut nanos = -(d.subsec_nanos() as i32);
                if nanos < 0 {
                    seconds -= 1;
                    nanos += 1_000_000_000;
                }
                Self { seconds, nanos }
            }
        }
    }
}

impl TryFrom<Timestamp> for SystemTime {
    type Error = TimestampRangeError;

    fn try_from(ts: Timestamp) -> Result<Self, Self::Error> {
        if !(0..1_000_000_000).contains(&ts.nanos) {
            return Err(TimestampRangeError);
        }
        let nanos = Duration::from_nanos(ts.nanos as u64);
        if ts.seconds >= 0 {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(ts.seconds as u64) + nanos)
                .ok_or(TimestampRangeError)
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))
                .and_then(|t| t.checked_add(nanos))
                .ok_or(TimestampRangeError)
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TimestampVisitor)
    }
}

// ---------------------------------------------------------------------------
// Value / Struct / ListValue
// ---------------------------------------------------------------------------

impl Value {
    /// A JSON `null`.
    pub fn null() -> Self {
        Self {
            kind: Some(Kind::NullValue(NullValue::NullValue as i32)),
        }
    }

    /// Converts to `serde_json::Value`. Non-finite numbers (which JSON cannot
    /// hold) and an unset kind become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
            Some(Kind::NumberValue(n)) => json_number(*n),
            Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
            Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
            Some(Kind::StructValue(s)) => serde_json::Value::Object(s.to_json_map()),
            Some(Kind::ListValue(l)) => l.to_json(),
        }
    }
}

/// Integral numbers become JSON integers, others JSON floats.
fn json_number(n: f64) -> serde_json::Value {
    if let Some(i) = integral_i64(n) {
        serde_json::Value::from(i)
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

/// `Some(i)` when `n` holds an integer that fits an `i64` exactly.
fn integral_i64(n: f64) -> Option<i64> {
    // 2^63 is exactly representable; everything strictly below fits in i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (n.is_finite() && n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n)).then_some(n as i64)
}

impl From<serde_json::Value> for Value {
    /// Numbers are stored as `f64` (integers beyond 2^53 lose precision, as
    /// in every protobuf implementation).
    fn from(v: serde_json::Value) -> Self {
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(NullValue::NullValue as i32),
            serde_json::Value::Bool(b) => Kind::BoolValue(b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Kind::StringValue(s),
            serde_json::Value::Array(a) => Kind::ListValue(ListValue {
                values: a.into_iter().map(Value::from).collect(),
            }),
            serde_json::Value::Object(o) => Kind::StructValue(Struct::from(o)),
        };
        Self { kind: Some(kind) }
    }
}

impl From<Value> for serde_json::Value {
    fn from(v: Value) -> Self {
        v.to_json()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Kind::StringValue(s.to_owned()).into()
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Kind::StringValue(s).into()
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Kind::NumberValue(n).into()
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Kind::BoolValue(b).into()
    }
}

impl From<Struct> for Value {
    fn from(s: Struct) -> Self {
        Kind::StructValue(s).into()
    }
}

impl From<ListValue> for Value {
    fn from(l: ListValue) -> Self {
        Kind::ListValue(l).into()
    }
}

impl From<Vec<Value>> for Value {
    fn from(values: Vec<Value>) -> Self {
        Kind::ListValue(ListValue { values }).into()
    }
}

impl From<Kind> for Value {
    fn from(kind: Kind) -> Self {
        Self { kind: Some(kind) }
    }
}

impl Struct {
    /// Converts to a JSON object map.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }

    /// Converts to a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.to_json_map())
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Struct {
    fn from(map: serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            fields: map.into_iter().map(|(k, v)| (k, Value::from(v))).collect(),
        }
    }
}

impl From<BTreeMap<String, Value>> for Struct {
    fn from(fields: BTreeMap<String, Value>) -> Self {
        Self { fields }
    }
}

impl TryFrom<serde_json::Value> for Struct {
    type Error = String;

    /// Fails unless the value is a JSON object.
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        match v {
            serde_json::Value::Object(o) => Ok(o.into()),
            other => Err(format!("expected a JSON object, got {other}")),
        }
    }
}

impl From<Struct> for serde_json::Value {
    fn from(s: Struct) -> Self {
        s.to_json()
    }
}

impl ListValue {
    /// Converts to a JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.values.iter().map(Value::to_json).collect())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.kind {
            None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::NumberValue(n)) => serialize_number(*n, serializer),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::StructValue(s)) => s.serialize(serializer),
            Some(Kind::ListValue(l)) => l.serialize(serializer),
        }
    }
}

/// Writes a number the way Go's protojson does for values that hold
/// integers (no trailing `.0`); other finite numbers use the shortest
/// round-tripping decimal form.
fn serialize_number<S: Serializer>(n: f64, serializer: S) -> Result<S::Ok, S::Error> {
    if !n.is_finite() {
        return Err(ser::Error::custom(format!(
            "google.protobuf.Value cannot hold the non-finite number {n}"
        )));
    }
    if let Some(i) = integral_i64(n) {
        return serializer.serialize_i64(i);
    }
    if n.fract() == 0.0 && n.abs() < 1e21 {
        return serializer.serialize_i128(n as i128);
    }
    serializer.serialize_f64(n)
}

impl Serialize for Struct {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for ListValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.values.len()))?;
        for v in &self.values {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(b.into())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok((n as f64).into())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok((n as f64).into())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(s.into())
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(s.into())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::null())
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::null())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        ListVisitor.visit_seq(seq).map(Value::from)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        StructVisitor.visit_map(map).map(Value::from)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct StructVisitor;

impl<'de> Visitor<'de> for StructVisitor {
    type Value = Struct;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Struct, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            if fields.insert(k.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate key {k:?} in object")));
            }
        }
        Ok(Struct { fields })
    }
}

impl<'de> Deserialize<'de> for Struct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StructVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ListValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<Value>()? {
            values.push(v);
        }
        Ok(ListValue { values })
    }
}

impl<'de> Deserialize<'de> for ListValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ListVisitor)
    }
}

// ---------------------------------------------------------------------------
// Any
// ---------------------------------------------------------------------------

impl Any {
    /// Packs a message, with a `type.googleapis.com/<full name>` type URL.
    pub fn pack<M: Name>(msg: &M) -> Self {
        Self {
            type_url: M::type_url(),
            value: msg.encode_to_vec(),
        }
    }

    /// Unpacks the payload if it holds an `M`; `Ok(None)` for another type.
    pub fn unpack<M: Name + Default>(&self) -> Result<Option<M>, prost::DecodeError> {
        if type_name(&self.type_url) != M::full_name() {
            return Ok(None);
        }
        M::decode(self.value.as_slice()).map(Some)
    }
}

/// The part of a type URL after the last `/`.
fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Payload types whose JSON form is a single value under a `"value"` key.
fn wrapped_json<M>(bytes: &[u8]) -> Result<serde_json::Value, String>
where
    M: Message + Default + Serialize,
{
    let msg = M::decode(bytes).map_err(|e| e.to_string())?;
    serde_json::to_value(&msg).map_err(|e| e.to_string())
}

impl Serialize for Any {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.type_url.is_empty() && self.value.is_empty() {
            return serializer.serialize_map(Some(0))?.end();
        }
        let name = type_name(&self.type_url);
        let fail = |e: String| ser::Error::custom(format!("cannot encode Any of {name}: {e}"));
        // Fields written after "@type".
        let rest: serde_json::Map<String, serde_json::Value> = match name {
            "google.rpc.Status" => match wrapped_json::<Status>(&self.value).map_err(fail)? {
                serde_json::Value::Object(o) => o,
                _ => serde_json::Map::new(),
            },
            "google.protobuf.Empty" => {
                Empty::decode(self.value.as_slice()).map_err(|e| fail(e.to_string()))?;
                serde_json::Map::new()
            }
            "google.protobuf.Struct" => {
                value_entry(wrapped_json::<Struct>(&self.value).map_err(fail)?)
            }
            "google.protobuf.Value" => {
                value_entry(wrapped_json::<Value>(&self.value).map_err(fail)?)
            }
            "google.protobuf.ListValue" => {
                value_entry(wrapped_json::<ListValue>(&self.value).map_err(fail)?)
            }
            "google.protobuf.Timestamp" => {
                value_entry(wrapped_json::<Timestamp>(&self.value).map_err(fail)?)
            }
            _ => value_entry(serde_json::Value::String(
                base64::engine::general_purpose::STANDARD.encode(&self.value),
            )),
        };
        let mut map = serializer.serialize_map(Some(rest.len() + 1))?;
        map.serialize_entry("@type", &self.type_url)?;
        for (k, v) in &rest {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn value_entry(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("value".to_owned(), v);
    m
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut obj = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        if obj.is_empty() {
            return Ok(Any::default());
        }
        let type_url = match obj.remove("@type") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            _ => return Err(de::Error::custom("Any object needs a non-empty \"@type\"")),
        };
        let name = type_name(&type_url).to_owned();
        let fail = |e: String| de::Error::custom(format!("invalid Any of {name}: {e}"));

        // Decode the single "value" entry of a wrapped type.
        fn only_value(
            mut obj: serde_json::Map<String, serde_json::Value>,
        ) -> Result<serde_json::Value, String> {
            let v = obj
                .remove("value")
                .ok_or_else(|| "missing \"value\"".to_owned())?;
            if let Some(k) = obj.keys().next() {
                return Err(format!("unknown field {k:?}"));
            }
            Ok(v)
        }
        fn encode<M>(v: serde_json::Value) -> Result<Vec<u8>, String>
        where
            M: Message + for<'a> Deserialize<'a>,
        {
            let m: M = serde_json::from_value(v).map_err(|e| e.to_string())?;
            Ok(m.encode_to_vec())
        }

        let value = match name.as_str() {
            "google.rpc.Status" => encode::<Status>(serde_json::Value::Object(obj)),
            "google.protobuf.Empty" => encode::<Empty>(serde_json::Value::Object(obj)),
            "google.protobuf.Struct" => only_value(obj).and_then(encode::<Struct>),
            "google.protobuf.Value" => only_value(obj).and_then(encode::<Value>),
            "google.protobuf.ListValue" => only_value(obj).and_then(encode::<ListValue>),
            "google.protobuf.Timestamp" => only_value(obj).and_then(encode::<Timestamp>),
            _ => match only_value(obj) {
                Ok(serde_json::Value::String(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| e.to_string()),
                _ => Err("payload type is not known to this server".to_owned()),
            },
        }
        .map_err(fail)?;
        Ok(Any { type_url, value })
    }
}
