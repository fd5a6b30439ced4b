//! Small deserialization helpers that the build script substitutes into the
//! pbjson-generated code (see `adjust_serde_code` in `build.rs`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Reads `T`, treating a JSON `null` as `T::default()` (protobuf JSON treats
/// `null` as "field not set").
#[derive(Debug, Default)]
pub(crate) struct NullOr<T>(pub T);

impl<'de, T> Deserialize<'de> for NullOr<T>
where
    T: Deserialize<'de> + Default,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(|v| NullOr(v.unwrap_or_default()))
    }
}

/// A protobuf numeric field read from a JSON number or a JSON string.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct NumberDeserialize<T>(pub T);

/// Numeric types that protobuf JSON carries.
pub(crate) trait ProtoNumber: Sized {
    const NAME: &'static str;
    fn from_i128(v: i128) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
    fn parse(s: &str) -> Option<Self>;
}

/// Accepts `v` for an integer type only when it has no fractional part.
fn integral(v: f64) -> Option<i128> {
    // Every f64 at or above 2^127 in magnitude is out of range for all
    // integer targets anyway.
    const LIMIT: f64 = 1.7e38;
    (v.is_finite() && v.fract() == 0.0 && v.abs() < LIMIT).then_some(v as i128)
}

/// True when `s` looks like a JSON number (so `"inf"`, `" 1"`, `"0x10"` and
/// the like are refused, as protojson does).
fn json_number_syntax(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
}

macro_rules! proto_int {
    ($($t:ty),*) => {$(
        impl ProtoNumber for $t {
            const NAME: &'static str = stringify!($t);
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                integral(v).and_then(Self::from_i128)
            }
            fn parse(s: &str) -> Option<Self> {
                if !json_number_syntax(s) {
                    return None;
                }
                match s.parse::<i128>() {
                    Ok(v) => Self::from_i128(v),
                    Err(_) => s.parse::<f64>().ok().and_then(Self::from_f64),
                }
            }
        }
    )*};
}

proto_int!(i32, i64, u32, u64);

macro_rules! proto_float {
    ($($t:ty),*) => {$(
        impl ProtoNumber for $t {
            const NAME: &'static str = stringify!($t);
            fn from_i128(v: i128) -> Option<Self> {
                Some(v as $t)
            }
            fn from_f64(v: f64) -> Option<Self> {
                Some(v as $t)
            }
            fn parse(s: &str) -> Option<Self> {
                match s {
                    "NaN" => Some(<$t>::NAN),
                    "Infinity" => Some(<$t>::INFINITY),
                    "-Infinity" => Some(<$t>::NEG_INFINITY),
                    _ if json_number_syntax(s) => s.parse::<$t>().ok(),
                    _ => None,
                }
            }
        }
    )*};
}

proto_float!(f32, f64);

impl<'de, T: ProtoNumber> Deserialize<'de> for NumberDeserialize<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor<T>(PhantomData<T>);

        impl<T: ProtoNumber> NumberVisitor<T> {
            fn out_of_range<E: de::Error>(v: impl fmt::Display) -> E {
                E::custom(format!("{v} is not a valid {}", T::NAME))
            }
        }

        impl<T: ProtoNumber> Visitor<'_> for NumberVisitor<T> {
            type Value = NumberDeserialize<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} as a JSON number or string", T::NAME)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::from_i128(v.into())
                    .map(NumberDeserialize)
                    .ok_or_else(|| Self::out_of_range(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::from_i128(v.into())
                    .map(NumberDeserialize)
                    .ok_or_else(|| Self::out_of_range(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::from_f64(v)
                    .map(NumberDeserialize)
                    .ok_or_else(|| Self::out_of_range(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::parse(v)
                    .map(NumberDeserialize)
                    .ok_or_else(|| Self::out_of_range(format!("{v:?}")))
            }
        }

        deserializer.deserialize_any(NumberVisitor(PhantomData))
    }
}
