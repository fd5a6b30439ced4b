//! CEL as upstream's driver evaluates it: trigger conditions over a task's resolved
//! inputs, and `parameter_expression_selector`s over one input value, both with the
//! extra function `parseJson(string)`.
//!
//! Values cross into CEL the way protobuf `Value`s do in cel-go: every number is a
//! double (the SDK wraps integers in `int(...)` for that reason), lists and structs
//! become lists and maps.

use crate::error::Error;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::objects::Key;
use cel::{Context, ExecutionError, Program, ResolveResult, Value as CelValue};
use serde_json::{Map, Number, Value};

use crate::values::normalize_number;

/// An input artifact as a condition sees it (`inputs.artifacts['x'].artifacts[0]`).
#[derive(Clone, Debug, Default)]
pub struct ConditionArtifact {
    pub name: String,
    pub uri: String,
    pub schema_title: String,
    pub metadata: Map<String, Value>,
}

/// Evaluates a `trigger_policy.condition` against the task's inputs, bound as
/// ExecutorInput's `inputs.parameter_values` and `inputs.artifacts`.
pub fn condition(
    expression: &str,
    parameters: &Map<String, Value>,
    artifacts: &BTreeMap<String, Vec<ConditionArtifact>>,
) -> Result<bool, String> {
    stacker::grow(EXPRESSION_STACK, || {
        evaluate_condition(expression, parameters, artifacts)
    })
}

fn evaluate_condition(
    expression: &str,
    parameters: &Map<String, Value>,
    artifacts: &BTreeMap<String, Vec<ConditionArtifact>>,
) -> Result<bool, String> {
    let program = compile(expression)?;
    let mut inputs: HashMap<String, CelValue> = HashMap::new();
    inputs.insert(
        "parameter_values".into(),
        to_cel(&Value::Object(parameters.clone())),
    );
    let lists: HashMap<String, CelValue> = artifacts
        .iter()
        .map(|(name, list)| {
            let items: Vec<CelValue> = list.iter().map(artifact_to_cel).collect();
            let mut wrapper = HashMap::new();
            wrapper.insert("artifacts".to_string(), CelValue::List(Arc::new(items)));
            (name.clone(), CelValue::from(wrapper))
        })
        .collect();
    inputs.insert("artifacts".into(), CelValue::from(lists));
    let mut context = context();
    context.add_variable_from_value("inputs", CelValue::from(inputs));
    context.add_variable_from_value(
        "outputs",
        CelValue::from(HashMap::<String, CelValue>::new()),
    );
    match program.execute(&context) {
        Ok(CelValue::Bool(result)) => Ok(result),
        Ok(other) => Err(format!(
            "condition {expression:?} gave {} instead of a boolean",
            describe(&other)
        )),
        Err(error) => Err(format!("cannot evaluate condition {expression:?}: {error}")),
    }
}

/// Applies a `parameter_expression_selector` to a resolved value. As upstream, the
/// variables are the fields of `google.protobuf.Value`, and `string_value` is bound
/// for every value: to a string's own text, or to the JSON text of anything else,
/// so `parseJson(string_value)["key"]` reads a field of a struct (or of a string
/// holding JSON, which is how loop items over a producer's output arrive).
pub fn select(expression: &str, value: &Value) -> Result<Value, Error> {
    stacker::grow(EXPRESSION_STACK, || evaluate_select(expression, value))
}

fn evaluate_select(expression: &str, value: &Value) -> Result<Value, Error> {
    (|| -> Result<Value, String> {
        let program = compile(expression)?;
        let mut context = context();
        let string_value = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        context.add_variable_from_value("string_value", CelValue::String(Arc::new(string_value)));
        match value {
            Value::Null => context.add_variable_from_value("null_value", CelValue::Null),
            Value::Bool(flag) => {
                context.add_variable_from_value("bool_value", CelValue::Bool(*flag))
            }
            Value::Number(_) => context.add_variable_from_value("number_value", to_cel(value)),
            Value::Array(_) => context.add_variable_from_value("list_value", to_cel(value)),
            Value::Object(_) => context.add_variable_from_value("struct_value", to_cel(value)),
            Value::String(_) => {}
        }
        let result = program
            .execute(&context)
            .map_err(|error| format!("cannot evaluate selector {expression:?}: {error}"))?;
        from_cel(&result).map_err(|error| format!("selector {expression:?}: {error}"))
    })()
    .map_err(Error::Condition)
}

/// Bounds on an expression's shape. The CEL parser and evaluator recurse once per
/// level of nesting and per operator in a chain, so without them a pipeline with a
/// deeply nested condition would overflow the stack and take the server down.
/// Conditions and selectors the SDK compiles are far below these.
const MAX_EXPRESSION_BYTES: usize = 16 * 1024;
const MAX_NESTING: usize = 32;
const MAX_OPERATORS: usize = 256;

/// The stack an expression is parsed and evaluated on: enough for the bounds above
/// with room to spare, whatever thread the caller runs on.
const EXPRESSION_STACK: usize = 16 << 20;

/// Refuses an expression deeper or longer than the bounds, naming which.
fn check_shape(expression: &str) -> Result<(), String> {
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "CEL expression of {} bytes is longer than the limit of {MAX_EXPRESSION_BYTES}",
            expression.len()
        ));
    }
    // Brackets count inside string literals too: a lexer that ends an unclosed
    // literal early would otherwise see nesting the scan did not.
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut operators = 0usize;
    for ch in expression.chars() {
        match ch {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '!' | '&' | '|' | '=' | '<' | '>' | '?' | ':' | '.'
            | ',' => operators += 1,
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(format!(
            "CEL expression nests {deepest} levels deep; the limit is {MAX_NESTING}"
        ));
    }
    if operators > MAX_OPERATORS {
        return Err(format!(
            "CEL expression has {operators} operators; the limit is {MAX_OPERATORS}"
        ));
    }
    Ok(())
}

fn compile(expression: &str) -> Result<Program, String> {
    check_shape(expression)?;
    Program::compile(expression)
        .map_err(|error| format!("invalid CEL expression {expression:?}: {error}"))
}

/// The standard functions plus upstream's `parseJson`.
fn context() -> Context<'static> {
    let mut context = Context::default();
    context.add_function("parseJson", parse_json);
    context
}

fn parse_json(text: Arc<String>) -> ResolveResult {
    serde_json::from_str::<Value>(&text)
        .map(|value| to_cel(&value))
        .map_err(|error| ExecutionError::function_error("parseJson", error))
}

fn artifact_to_cel(artifact: &ConditionArtifact) -> CelValue {
    let mut fields: HashMap<String, CelValue> = HashMap::new();
    fields.insert(
        "name".into(),
        CelValue::String(Arc::new(artifact.name.clone())),
    );
    fields.insert(
        "uri".into(),
        CelValue::String(Arc::new(artifact.uri.clone())),
    );
    fields.insert(
        "metadata".into(),
        to_cel(&Value::Object(artifact.metadata.clone())),
    );
    let mut kind = HashMap::new();
    kind.insert(
        "schema_title".to_string(),
        CelValue::String(Arc::new(artifact.schema_title.clone())),
    );
    fields.insert("type".into(), CelValue::from(kind));
    CelValue::from(fields)
}

/// JSON into CEL, numbers as doubles (protobuf `Value` has no integers).
fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Number(number) => CelValue::Float(number.as_f64().unwrap_or_default()),
        Value::String(text) => CelValue::String(Arc::new(text.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let fields: HashMap<String, CelValue> = map
                .iter()
                .map(|(key, item)| (key.clone(), to_cel(item)))
                .collect();
            CelValue::from(fields)
        }
    }
}

/// A selector's result back into JSON.
fn from_cel(value: &CelValue) -> Result<Value, String> {
    Ok(match value {
        CelValue::Null => Value::Null,
        CelValue::Bool(flag) => Value::Bool(*flag),
        CelValue::Int(number) => Value::from(*number),
        CelValue::UInt(number) => Value::from(*number),
        CelValue::Float(number) => {
            let number = Number::from_f64(*number)
                .ok_or_else(|| format!("{number} is not a finite number"))?;
            normalize_number(Value::Number(number))
        }
        CelValue::String(text) => Value::String(text.to_string()),
        CelValue::List(items) => {
            Value::Array(items.iter().map(from_cel).collect::<Result<_, _>>()?)
        }
        CelValue::Map(map) => {
            let mut object = Map::new();
            for (key, item) in map.map.iter() {
                let key = match key {
                    Key::String(text) => text.to_string(),
                    Key::Int(number) => number.to_string(),
                    Key::Uint(number) => number.to_string(),
                    Key::Bool(flag) => flag.to_string(),
                };
                object.insert(key, from_cel(item)?);
            }
            Value::Object(object)
        }
        other => {
            return Err(format!(
                "gave {}, which is not a JSON value",
                describe(other)
            ))
        }
    })
}

fn describe(value: &CelValue) -> String {
    format!("a {}", value.type_of())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parameters(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn deep_or_long_expressions_are_refused_not_overflowed() {
        let none = Map::new();
        let artifacts = BTreeMap::new();
        let deep = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
        let error = condition(&deep, &none, &artifacts).unwrap_err();
        assert!(error.contains("nests 5000 levels deep"), "{error}");
        let chain = vec!["1"; 3000].join(" + ");
        let error = select(&chain, &json!(1)).unwrap_err().to_string();
        assert!(error.contains("operators"), "{error}");
        let long = format!("'{}' == ''", "x".repeat(20_000));
        let error = condition(&long, &none, &artifacts).unwrap_err();
        assert!(error.contains("longer than the limit"), "{error}");
        // An unclosed literal does not hide the nesting after it.
        let unclosed = format!("'x\n{}", "{".repeat(138));
        let error = condition(&unclosed, &none, &artifacts).unwrap_err();
        assert!(error.contains("nests 138 levels deep"), "{error}");
        // At the bounds, the expression is evaluated.
        let nested = format!("{}true{}", "(".repeat(32), ")".repeat(32));
        assert_eq!(condition(&nested, &none, &artifacts), Ok(true));
        for open in ["{", "[", "(", "{1: ", "[1, ", "size("] {
            let unclosed = open.repeat(32);
            assert!(condition(&unclosed, &none, &artifacts).is_err());
        }
        let sum = vec!["1"; 200].join(" + ");
        assert_eq!(select(&sum, &json!(1)).unwrap(), json!(200));
    }

    #[test]
    fn sdk_conditions() {
        let inputs = parameters(json!({
            "pipelinechannel--flip-coin-Output": "heads",
            "pipelinechannel--random-num-Output": 7,
            "pipelinechannel--loop-item-param-3": "3",
        }));
        let artifacts = BTreeMap::new();
        let eval = |text: &str| condition(text, &inputs, &artifacts).unwrap();
        assert!(eval(
            "inputs.parameter_values['pipelinechannel--flip-coin-Output'] == 'heads'"
        ));
        assert!(eval(
            "!(inputs.parameter_values['pipelinechannel--flip-coin-Output'] == 'tails') && \
             int(inputs.parameter_values['pipelinechannel--random-num-Output']) > 5"
        ));
        assert!(!eval(
            "int(inputs.parameter_values['pipelinechannel--random-num-Output']) < 5"
        ));
        assert!(eval(
            "int(inputs.parameter_values['pipelinechannel--loop-item-param-3']) == 3"
        ));
        // Numbers are doubles, and compare with integer literals.
        assert!(eval(
            "inputs.parameter_values['pipelinechannel--random-num-Output'] == 7"
        ));
        assert!(eval(
            "inputs.parameter_values['pipelinechannel--random-num-Output'] > 6.5"
        ));
    }

    #[test]
    fn condition_errors_name_the_expression() {
        let inputs = parameters(json!({"x": "a"}));
        let artifacts = BTreeMap::new();
        let missing =
            condition("inputs.parameter_values['y'] == 'a'", &inputs, &artifacts).unwrap_err();
        assert!(missing.contains("parameter_values['y']"), "{missing}");
        let not_bool = condition("inputs.parameter_values['x']", &inputs, &artifacts).unwrap_err();
        assert!(not_bool.contains("instead of a boolean"), "{not_bool}");
        let syntax = condition("inputs.parameter_values[", &inputs, &artifacts).unwrap_err();
        assert!(syntax.contains("invalid CEL expression"), "{syntax}");
    }

    #[test]
    fn conditions_see_artifacts() {
        let artifacts = BTreeMap::from([(
            "model".to_string(),
            vec![ConditionArtifact {
                name: "model".into(),
                uri: "file:///m".into(),
                schema_title: "system.Model".into(),
                metadata: parameters(json!({"accuracy": 0.9})),
            }],
        )]);
        let inputs = Map::new();
        assert!(condition(
            "inputs.artifacts['model'].artifacts[0].metadata['accuracy'] > 0.5",
            &inputs,
            &artifacts
        )
        .unwrap());
    }

    #[test]
    fn selectors_project_loop_items() {
        let item = json!({"A_a": "1", "B_b": 2});
        assert_eq!(
            select("parseJson(string_value)[\"A_a\"]", &item).unwrap(),
            json!("1")
        );
        assert_eq!(
            select("parseJson(string_value)[\"B_b\"]", &item).unwrap(),
            json!(2)
        );
        // A string holding JSON, as items of a STRING-typed producer arrive.
        let text = json!("{\"a\": [1, 2]}");
        assert_eq!(
            select("parseJson(string_value)[\"a\"]", &text).unwrap(),
            json!([1, 2])
        );
        assert_eq!(select("struct_value.B_b", &item).unwrap(), json!(2));
        let error = select("parseJson(string_value)[\"missing\"]", &item).unwrap_err();
        assert!(matches!(error, Error::Condition(_)), "{error:?}");
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
