//! Parameter values as the executor sees them: typed, formatted into command lines,
//! and parsed back from output files.

use crate::error::Error;
use kfpd_ir::spec::ParameterType;
use serde_json::{Number, Value};

/// Integral numbers become JSON integers: the SDK's executor rejects `3.0` for an
/// `int` input, and protobuf `Value`s carry every number as a double.
pub fn normalize_number(value: Value) -> Value {
    match &value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or_default();
            let integral = float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0;
            if integral {
                return Value::Number(Number::from(float as i64));
            }
            value
        }
        Value::Array(items) => Value::Array(items.iter().cloned().map(normalize_number).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), normalize_number(item.clone())))
                .collect(),
        ),
        _ => value,
    }
}

/// Brings a resolved value to the declared type where KFP converts (a STRING input
/// takes any value as JSON text), and reports a mismatch otherwise.
pub fn coerce(name: &str, declared: ParameterType, value: Value) -> Result<Value, Error> {
    (|| -> Result<Value, String> {
        let value = normalize_number(value);
        let fits = match declared {
            ParameterType::String => {
                return Ok(match value {
                    Value::String(_) => value,
                    other => Value::String(other.to_string()),
                })
            }
            ParameterType::NumberInteger => match &value {
                Value::Number(number) => number.is_i64() || number.is_u64(),
                // Loop items and outputs of STRING producers may carry numbers as text.
                Value::String(text) => {
                    if let Ok(parsed) = text.trim().parse::<i64>() {
                        return Ok(Value::from(parsed));
                    }
                    false
                }
                _ => false,
            },
            ParameterType::NumberDouble => match &value {
                Value::Number(_) => true,
                Value::String(text) => {
                    if let Some(number) = text.trim().parse::<f64>().ok().and_then(Number::from_f64)
                    {
                        return Ok(normalize_number(Value::Number(number)));
                    }
                    false
                }
                _ => false,
            },
            ParameterType::Boolean => match &value {
                Value::Bool(_) => true,
                Value::String(text) => match text.trim() {
                    "true" | "True" => return Ok(Value::Bool(true)),
                    "false" | "False" => return Ok(Value::Bool(false)),
                    _ => false,
                },
                _ => false,
            },
            ParameterType::List => match &value {
                Value::Array(_) => true,
                Value::String(text) => {
                    if let Ok(parsed @ Value::Array(_)) = serde_json::from_str::<Value>(text) {
                        return Ok(normalize_number(parsed));
                    }
                    false
                }
                _ => false,
            },
            ParameterType::Struct | ParameterType::TaskFinalStatus | ParameterType::TaskConfig => {
                match &value {
                    Value::Object(_) => true,
                    Value::String(text) => {
                        if let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
                            return Ok(normalize_number(parsed));
                        }
                        false
                    }
                    _ => false,
                }
            }
            _ => true,
        };
        if fits || value.is_null() {
            return Ok(value);
        }
        Err(format!(
            "input parameter {name:?} expects {} but got {}",
            declared.as_str(),
            describe(&value)
        ))
    })()
    .map_err(Error::Value)
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    let shown: String = text.chars().take(60).collect();
    match value {
        Value::String(_) => format!("the string {shown}"),
        Value::Number(_) => format!("the number {shown}"),
        Value::Bool(_) => format!("the boolean {shown}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a struct".to_string(),
        Value::Null => "null".to_string(),
    }
}

/// How a value is written into a command line: strings as they are, numbers without
/// a trailing `.0`, booleans as `true`/`false`, lists and structs as JSON.
pub fn format_for_command(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Number(_) => normalize_number(value.clone()).to_string(),
        other => normalize_number(other.clone()).to_string(),
    }
}

/// Parses the text a task wrote into an output parameter file, by declared type.
pub fn parse_output(name: &str, declared: ParameterType, text: &str) -> Result<Value, Error> {
    (|| -> Result<Value, String> {
        let trimmed = text.trim();
        let invalid = |what: &str| format!("output parameter {name:?}: {text:?} is not {what}");
        match declared {
            ParameterType::String | ParameterType::Unspecified => {
                Ok(Value::String(text.to_string()))
            }
            ParameterType::NumberInteger => {
                if let Ok(integer) = trimmed.parse::<i64>() {
                    return Ok(Value::from(integer));
                }
                let float: f64 = trimmed.parse().map_err(|_| invalid("an integer"))?;
                if float.fract() != 0.0 {
                    return Err(invalid("an integer"));
                }
                Ok(Value::from(float as i64))
            }
            ParameterType::NumberDouble => {
                let float: f64 = trimmed.parse().map_err(|_| invalid("a number"))?;
                let number = Number::from_f64(float).ok_or_else(|| invalid("a finite number"))?;
                Ok(normalize_number(Value::Number(number)))
            }
            ParameterType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(invalid("a boolean")),
            },
            ParameterType::List => match serde_json::from_str::<Value>(trimmed) {
                Ok(list @ Value::Array(_)) => Ok(normalize_number(list)),
                _ => Err(invalid("a JSON list")),
            },
            _ => match serde_json::from_str::<Value>(trimmed) {
                Ok(object @ Value::Object(_)) => Ok(normalize_number(object)),
                _ => Err(invalid("a JSON object")),
            },
        }
    })()
    .map_err(Error::Outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_doubles_become_integers() {
        assert_eq!(normalize_number(json!(3.0)), json!(3));
        assert_eq!(normalize_number(json!([1.0, 2.5])), json!([1, 2.5]));
        assert_eq!(normalize_number(json!({"a": 4.0})), json!({"a": 4}));
    }

    #[test]
    fn coercion_by_type() {
        assert_eq!(
            coerce("x", ParameterType::NumberInteger, json!(5.0)).unwrap(),
            json!(5)
        );
        assert!(coerce("x", ParameterType::NumberInteger, json!(5.5)).is_err());
        assert_eq!(
            coerce("x", ParameterType::String, json!({"a": 1})).unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(
            coerce("x", ParameterType::List, json!("[1, 2]")).unwrap(),
            json!([1, 2])
        );
        let error = coerce("n", ParameterType::Boolean, json!([1]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"n\"") && error.contains("BOOLEAN"),
            "{error}"
        );
    }

    #[test]
    fn command_formatting() {
        assert_eq!(format_for_command(&json!("a b")), "a b");
        assert_eq!(format_for_command(&json!(2.0)), "2");
        assert_eq!(format_for_command(&json!(2.5)), "2.5");
        assert_eq!(format_for_command(&json!(true)), "true");
        assert_eq!(format_for_command(&json!([1, "a"])), "[1,\"a\"]");
    }

    #[test]
    fn output_parsing() {
        assert_eq!(
            parse_output("o", ParameterType::NumberInteger, "7\n").unwrap(),
            json!(7)
        );
        assert_eq!(
            parse_output("o", ParameterType::NumberDouble, "7.0").unwrap(),
            json!(7)
        );
        assert_eq!(
            parse_output("o", ParameterType::String, "hi\n").unwrap(),
            json!("hi\n")
        );
        assert_eq!(
            parse_output("o", ParameterType::Boolean, "True").unwrap(),
            json!(true)
        );
        assert_eq!(
            parse_output("o", ParameterType::Struct, "{\"a\":1.0}").unwrap(),
            json!({"a": 1})
        );
        assert!(parse_output("o", ParameterType::List, "nope").is_err());
    }
}
