//! List request parameters: the filter JSON and the page/sort settings.

use kfpd_api::v2beta1::{predicate, Filter};
use kfpd_store::list::{Op, Predicate, Resource, Value};
use kfpd_store::ListQuery;

use crate::error::{Error, Result};

/// Parses the `filter` query parameter: the JSON form of a `Filter` message, with
/// enum names or numbers and snake_case or lowerCamel keys. A value that still
/// looks percent-encoded (some clients encode twice) is decoded once more.
pub fn parse_filter(text: &str) -> Result<Option<Vec<Predicate>>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let decoded;
    let json = if trimmed.starts_with('{') {
        trimmed
    } else {
        decoded = percent_decode(trimmed)
            .ok_or_else(|| Error::invalid(format!("invalid filter {trimmed:?}: not JSON")))?;
        decoded.as_str()
    };
    let filter: Filter = serde_json::from_str(json)
        .map_err(|error| Error::invalid(format!("invalid filter: {error}")))?;
    filter
        .predicates
        .iter()
        .map(predicate)
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn predicate(given: &kfpd_api::v2beta1::Predicate) -> Result<Predicate> {
    use predicate::Operation;
    let key = given.key.clone();
    let op = match Operation::try_from(given.operation) {
        Ok(Operation::Equals) => Op::Eq,
        Ok(Operation::NotEquals) => Op::Ne,
        Ok(Operation::GreaterThan) => Op::Gt,
        Ok(Operation::GreaterThanEquals) => Op::Ge,
        Ok(Operation::LessThan) => Op::Lt,
        Ok(Operation::LessThanEquals) => Op::Le,
        Ok(Operation::In) => Op::In,
        Ok(Operation::IsSubstring) => Op::Substring,
        Ok(Operation::Unspecified) | Err(_) => {
            return Err(Error::invalid(format!(
                "invalid filter: predicate on {key:?} has no valid operation"
            )))
        }
    };
    let value = match &given.value {
        Some(predicate::Value::IntValue(number)) => Value::Int(i64::from(*number)),
        Some(predicate::Value::LongValue(number)) => Value::Int(*number),
        Some(predicate::Value::StringValue(text)) => Value::Str(text.clone()),
        Some(predicate::Value::TimestampValue(time)) => Value::Int(time.seconds),
        Some(predicate::Value::IntValues(list)) => {
            Value::Ints(list.values.iter().map(|n| i64::from(*n)).collect())
        }
        Some(predicate::Value::LongValues(list)) => Value::Ints(list.values.clone()),
        Some(predicate::Value::StringValues(list)) => Value::Strs(list.values.clone()),
        None => {
            return Err(Error::invalid(format!(
                "invalid filter: predicate on {key:?} has no value"
            )))
        }
    };
    Ok(Predicate { key, op, value })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A checked list query from the common list parameters.
pub fn query(
    resource: Resource,
    page_size: i32,
    page_token: &str,
    sort_by: &str,
    filter: &str,
) -> Result<ListQuery> {
    let predicates = parse_filter(filter)?;
    Ok(ListQuery::new(
        resource, page_size, page_token, sort_by, predicates,
    )?)
}

/// `total_size` is an int32 in the API.
pub fn total(total_size: i64) -> i32 {
    i32::try_from(total_size).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_filter_with_numeric_operation() {
        let parsed = parse_filter(
            r#"{"predicates":[{"operation":1,"key":"display_name","stringValue":"Default"}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed,
            vec![Predicate {
                key: "display_name".into(),
                op: Op::Eq,
                value: Value::Str("Default".into())
            }]
        );
    }

    #[test]
    fn named_operations_lists_and_double_encoding() {
        let parsed = parse_filter(
            "%7B%22predicates%22%3A%5B%7B%22operation%22%3A%22IN%22%2C%22key%22%3A%22name%22%2C%22string_values%22%3A%7B%22values%22%3A%5B%22a%2Bb%22%5D%7D%7D%5D%7D",
        )
        .unwrap()
        .unwrap();
        assert_eq!(parsed[0].op, Op::In);
        assert_eq!(parsed[0].value, Value::Strs(vec!["a+b".into()]));
    }

    #[test]
    fn bad_filters_are_invalid_arguments() {
        for bad in [
            "not json",
            r#"{"predicates":[{"operation":"EQUALS","key":"a"}]}"#,
            r#"{"predicates":[{"operation":"NOPE","key":"a","string_value":"x"}]}"#,
            r#"{"predicates":[{"key":"a","string_value":"x"}]}"#,
            r#"{"predicatez":[]}"#,
        ] {
            let error = parse_filter(bad).unwrap_err();
            assert_eq!(error.code, crate::error::Code::InvalidArgument, "{bad}");
        }
    }
}
