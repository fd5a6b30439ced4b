//! Run parameters: checking what a user passes when creating a run against the
//! pipeline's declared inputs, and generating values for tests.

use serde_json::{Map, Number, Value};

use crate::error::Error;
use crate::package::Package;
use crate::spec::{ParameterSpec, ParameterType};

/// Largest integer a `NUMBER_INTEGER` can carry exactly: the backend stores
/// parameter values as `google.protobuf.Value`, i.e. as doubles.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Checks run parameters (`runtime_config.parameters`) against the pipeline's
/// root inputs, as a user creating a run would expect:
///
/// * every name must be a declared input (checked first: a misspelt name is
///   the usual reason a required one seems missing);
/// * every input that is neither optional nor defaulted must be given;
/// * every value must fit the declared type and, if the input lists allowed
///   literals, be one of them. `null` counts as "not given" for an input that
///   may be left unset.
pub fn check_runtime_parameters(
    package: &Package,
    given: &Map<String, Value>,
) -> Result<(), Error> {
    let declared = package.root_parameters();
    let mut unknown: Vec<&String> = given
        .keys()
        .filter(|k| !declared.contains_key(*k))
        .collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        let hint = if declared.is_empty() {
            "; the pipeline takes no parameters".to_string()
        } else {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            format!("; its inputs are: {}", names.join(", "))
        };
        return Err(Error::UnknownParameter {
            name: (*name).clone(),
            hint,
        });
    }
    for (name, spec) in declared {
        match given.get(name) {
            None | Some(Value::Null) if !spec.is_required() => {}
            None => return Err(Error::MissingParameter { name: name.clone() }),
            Some(value) => check_value(name, spec, value)?,
        }
    }
    Ok(())
}

fn check_value(name: &str, spec: &ParameterSpec, value: &Value) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidParameter {
        name: name.to_string(),
        reason,
    };
    let ty = spec.effective_type();
    match ty {
        ParameterType::Unspecified => {
            return Err(invalid(
                "the pipeline declares no type for it, so no value can be checked or passed".into(),
            ))
        }
        ParameterType::TaskFinalStatus | ParameterType::TaskConfig => {
            return Err(invalid(format!(
                "its type {ty} is filled in by the backend and cannot be given as a run parameter"
            )))
        }
        _ => {}
    }
    if let Some(expected) = type_mismatch(ty, value) {
        return Err(Error::ParameterType {
            name: name.to_string(),
            expected: expected.to_string(),
            given: describe(value),
        });
    }
    if ty == ParameterType::NumberInteger {
        if let Some(f) = value.as_f64() {
            if f.abs() > MAX_SAFE_INTEGER {
                return Err(invalid(format!(
                    "integer {value} is too large to be passed exactly (the limit is 2^53-1)"
                )));
            }
        }
    }
    if !spec.literals.is_empty() && !spec.literals.iter().any(|l| json_equal(l, value)) {
        let allowed: Vec<String> = spec.literals.iter().map(Value::to_string).collect();
        return Err(invalid(format!(
            "{} is not one of the allowed values: {}",
            describe(value),
            allowed.join(", ")
        )));
    }
    Ok(())
}

/// What a value of type `ty` must be, if `value` is not that; `None` when it
/// fits or when the type is not one a value can be checked against.
pub(crate) fn type_mismatch(ty: ParameterType, value: &Value) -> Option<&'static str> {
    let (ok, expected) = match ty {
        ParameterType::NumberInteger => (is_integral(value), "an integer (NUMBER_INTEGER)"),
        ParameterType::NumberDouble => (value.is_number(), "a number (NUMBER_DOUBLE)"),
        ParameterType::String => (value.is_string(), "a string (STRING)"),
        ParameterType::Boolean => (value.is_boolean(), "a boolean (BOOLEAN)"),
        ParameterType::List => (value.is_array(), "a list (LIST)"),
        ParameterType::Struct => (value.is_object(), "an object (STRUCT)"),
        ParameterType::Unspecified | ParameterType::TaskFinalStatus | ParameterType::TaskConfig => {
            (true, "")
        }
    };
    (!ok).then_some(expected)
}

fn is_integral(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Numbers compare by value (`1` equals `1.0`), like protobuf `Value`s do.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A value as a user would recognize it in an error message.
pub(crate) fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > MAX_CHARS => {
            let head: String = s.chars().take(MAX_CHARS).collect();
            format!("string {head:?}…")
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Values for the pipeline's required parameters (no default, not optional)
/// the way upstream's end-to-end test makes them up: an integer below 1000, a
/// 20-character alphanumeric string, a struct `{"A": "<float>", "B": "<float>"}`,
/// a one-element list of such a string, `true`, or a double in `[0, 1)`.
/// The same seed gives the same values.
pub fn generate_test_parameters(package: &Package, seed: u64) -> Map<String, Value> {
    let mut rng = SplitMix64(seed);
    let mut out = Map::new();
    for (name, spec) in package.root_parameters() {
        if !spec.is_required() {
            continue;
        }
        let value = match spec.effective_type() {
            ParameterType::NumberInteger => Value::from(rng.below(1000)),
            ParameterType::NumberDouble => float_value(rng.unit()),
            ParameterType::Struct => {
                let mut object = Map::new();
                object.insert("A".into(), Value::String(rng.unit().to_string()));
                object.insert("B".into(), Value::String(rng.unit().to_string()));
                Value::Object(object)
            }
            ParameterType::List => Value::Array(vec![Value::String(rng.alphanumeric(20))]),
            ParameterType::Boolean => Value::Bool(true),
            _ => Value::String(rng.alphanumeric(20)),
        };
        out.insert(name.clone(), value);
    }
    out
}

fn float_value(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A tiny deterministic generator; test values need repeatability, not quality.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn alphanumeric(&mut self, len: usize) -> String {
        const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| char::from(CHARSET[self.below(CHARSET.len() as u64) as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::parse_spec_value;
    use serde_json::json;

    fn package(params: Value) -> Package {
        parse_spec_value(&json!({
            "schemaVersion": "2.1.0",
            "pipelineInfo": {"name": "p"},
            "deploymentSpec": {"executors": {"exec-a": {"container": {"image": "alpine"}}}},
            "components": {"comp-a": {"executorLabel": "exec-a"}},
            "root": {
                "inputDefinitions": {"parameters": params},
                "dag": {"tasks": {"a": {"componentRef": {"name": "comp-a"}, "taskInfo": {"name": "a"}}}}
            }
        }))
        .unwrap()
    }

    fn given(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn check(p: &Package, v: Value) -> Result<(), String> {
        check_runtime_parameters(p, &given(v)).map_err(|e| e.to_string())
    }

    #[test]
    fn types() {
        let p = package(json!({
            "i": {"parameterType": "NUMBER_INTEGER"},
            "d": {"parameterType": "NUMBER_DOUBLE"},
            "s": {"parameterType": "STRING"},
            "b": {"parameterType": "BOOLEAN"},
            "l": {"parameterType": "LIST"},
            "o": {"parameterType": "STRUCT"},
            "legacy": {"type": "INT"}
        }));
        let good = json!({"i": 3, "d": 2, "s": "x", "b": false, "l": [], "o": {}, "legacy": 4.0});
        check(&p, good.clone()).unwrap();
        let cases = [
            (
                "i",
                json!(1.5),
                "parameter \"i\" must be an integer (NUMBER_INTEGER), got number 1.5",
            ),
            (
                "i",
                json!("3"),
                "parameter \"i\" must be an integer (NUMBER_INTEGER), got string \"3\"",
            ),
            (
                "d",
                json!(true),
                "parameter \"d\" must be a number (NUMBER_DOUBLE), got boolean true",
            ),
            (
                "s",
                json!(5),
                "parameter \"s\" must be a string (STRING), got number 5",
            ),
            (
                "b",
                json!("true"),
                "parameter \"b\" must be a boolean (BOOLEAN), got string \"true\"",
            ),
            (
                "l",
                json!({}),
                "parameter \"l\" must be a list (LIST), got an object",
            ),
            (
                "o",
                json!([1]),
                "parameter \"o\" must be an object (STRUCT), got a list",
            ),
            (
                "legacy",
                json!("x"),
                "parameter \"legacy\" must be an integer (NUMBER_INTEGER), got string \"x\"",
            ),
            (
                "s",
                Value::Null,
                "parameter \"s\" must be a string (STRING), got null",
            ),
        ];
        for (name, value, message) in cases {
            let mut v = good.clone();
            v[name] = value;
            assert_eq!(check(&p, v).unwrap_err(), message);
        }
        let mut v = good.clone();
        v["i"] = json!(1u64 << 60);
        assert!(check(&p, v).unwrap_err().contains("too large"));
    }

    #[test]
    fn required_optional_and_unknown() {
        let p = package(json!({
            "need": {"parameterType": "STRING"},
            "opt": {"parameterType": "STRING", "isOptional": true},
            "def": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1}
        }));
        check(&p, json!({"need": "x"})).unwrap();
        check(&p, json!({"need": "x", "opt": null, "def": null})).unwrap();
        assert_eq!(
            check(&p, json!({})).unwrap_err(),
            "parameter \"need\" is required: it is not optional and has no default value"
        );
        assert_eq!(
            check(&p, json!({"ned": "x"})).unwrap_err(),
            "parameter \"ned\" is not an input of this pipeline; its inputs are: def, need, opt"
        );
        let none = package(json!({}));
        assert_eq!(
            check(&none, json!({"x": 1})).unwrap_err(),
            "parameter \"x\" is not an input of this pipeline; the pipeline takes no parameters"
        );
    }

    #[test]
    fn literals_and_backend_types() {
        let p = package(json!({
            "color": {"parameterType": "STRING", "literals": ["red", "blue"]},
            "n": {"parameterType": "NUMBER_INTEGER", "literals": [1, 2], "isOptional": true},
            "status": {"parameterType": "TASK_FINAL_STATUS", "isOptional": true}
        }));
        check(&p, json!({"color": "red", "n": 2.0})).unwrap();
        assert_eq!(
            check(&p, json!({"color": "green"})).unwrap_err(),
            "parameter \"color\": string \"green\" is not one of the allowed values: \"red\", \"blue\""
        );
        assert!(check(&p, json!({"color": "red", "status": {}}))
            .unwrap_err()
            .contains("TASK_FINAL_STATUS is filled in by the backend"));
    }

    #[test]
    fn generated_values_fit_and_repeat() {
        let p = package(json!({
            "i": {"parameterType": "NUMBER_INTEGER"},
            "d": {"parameterType": "NUMBER_DOUBLE"},
            "s": {"parameterType": "STRING"},
            "b": {"parameterType": "BOOLEAN"},
            "l": {"parameterType": "LIST"},
            "o": {"parameterType": "STRUCT"},
            "skip": {"parameterType": "STRING", "defaultValue": "x"}
        }));
        let values = generate_test_parameters(&p, 7);
        assert_eq!(values, generate_test_parameters(&p, 7));
        assert_ne!(values, generate_test_parameters(&p, 8));
        assert!(!values.contains_key("skip"));
        assert!(values["i"].as_u64().is_some_and(|i| i < 1000));
        assert!(values["d"]
            .as_f64()
            .is_some_and(|d| (0.0..1.0).contains(&d)));
        assert_eq!(values["s"].as_str().map(str::len), Some(20));
        assert_eq!(values["b"], json!(true));
        assert_eq!(values["l"].as_array().map(Vec::len), Some(1));
        let o = values["o"].as_object().unwrap();
        assert!(o["A"].as_str().unwrap().parse::<f64>().is_ok());
        assert!(o["B"].is_string());
        check_runtime_parameters(&p, &values).unwrap();
    }
}
