//! A strict validator for Kubernetes structural schemas (the OpenAPI v3 subset a
//! CRD uses), with the CRD's `x-kubernetes-validations` CEL rules.
//!
//! Strict as the tests want it: an object whose schema lists `properties` and
//! does not set `x-kubernetes-preserve-unknown-fields` refuses any other key, and
//! an `x-kubernetes-int-or-string` field takes an integer or a string.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Program, Value as CelValue};
use serde_json::Value;

/// The Workflow schema of one CRD file.
pub struct Crd {
    pub version: String,
    schema: Value,
    programs: std::cell::RefCell<HashMap<String, Arc<Program>>>,
}

impl Crd {
    /// Reads `crd-workflows-full-<version>.yaml`.
    pub fn load(path: &std::path::Path, version: &str) -> Crd {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let crd = super::yaml_to_json(&text);
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        assert!(schema.is_object(), "{}: no openAPIV3Schema", path.display());
        Crd {
            version: version.to_string(),
            schema,
            programs: Default::default(),
        }
    }

    /// How many CEL rules the schema has.
    pub fn rule_count(&self) -> usize {
        fn count(node: &Value) -> usize {
            match node {
                Value::Object(map) => {
                    map.get("x-kubernetes-validations")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        + map.values().map(count).sum::<usize>()
                }
                Value::Array(items) => items.iter().map(count).sum(),
                _ => 0,
            }
        }
        count(&self.schema)
    }

    /// Every violation, each with its JSON path.
    pub fn validate(&self, document: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.node(&self.schema, document, "$", &mut errors);
        errors
    }

    fn node(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if value.is_null() {
            if schema["nullable"].as_bool() != Some(true) {
                errors.push(format!("{path}: null is not allowed"));
            }
            return;
        }
        if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                errors.push(format!(
                    "{path}: expected an integer or a string, found {value}"
                ));
            }
            self.rules(schema, value, path, errors);
            return;
        }
        let kind = schema["type"].as_str();
        let type_ok = match kind {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !type_ok {
            errors.push(format!(
                "{path}: expected {}, found {value}",
                kind.unwrap_or("?")
            ));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                errors.push(format!("{path}: {value} is not one of {allowed:?}"));
            }
        }
        match value {
            Value::String(text) => {
                if let Some(max) = schema["maxLength"].as_u64() {
                    if text.chars().count() as u64 > max {
                        errors.push(format!("{path}: longer than {max}"));
                    }
                }
                if let Some(min) = schema["minLength"].as_u64() {
                    if (text.chars().count() as u64) < min {
                        errors.push(format!("{path}: shorter than {min}"));
                    }
                }
                if let Some(pattern) = schema["pattern"].as_str() {
                    match regex::Regex::new(pattern) {
                        Ok(re) if !re.is_match(text) => {
                            errors.push(format!("{path}: {text:?} does not match {pattern}"))
                        }
                        _ => {}
                    }
                }
            }
            Value::Number(number) => {
                let n = number.as_f64().unwrap_or_default();
                if schema["minimum"].as_f64().is_some_and(|min| n < min) {
                    errors.push(format!("{path}: {n} is below the minimum"));
                }
                if schema["maximum"].as_f64().is_some_and(|max| n > max) {
                    errors.push(format!("{path}: {n} is above the maximum"));
                }
                if schema["format"].as_str() == Some("int32")
                    && number.as_i64().is_some_and(|i| i32::try_from(i).is_err())
                {
                    errors.push(format!("{path}: {n} is not an int32"));
                }
            }
            Value::Array(items) => {
                if let Some(max) = schema["maxItems"].as_u64() {
                    if items.len() as u64 > max {
                        errors.push(format!("{path}: more than {max} items"));
                    }
                }
                if let Some(min) = schema["minItems"].as_u64() {
                    if (items.len() as u64) < min {
                        errors.push(format!("{path}: fewer than {min} items"));
                    }
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.node(item_schema, item, &format!("{path}[{i}]"), errors);
                    }
                }
                match schema["x-kubernetes-list-type"].as_str() {
                    Some("map") => {
                        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                            .as_array()
                            .map(|k| k.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        let mut seen = BTreeSet::new();
                        for item in items {
                            let key: Vec<String> =
                                keys.iter().map(|k| item[*k].to_string()).collect();
                            if !seen.insert(key.clone()) {
                                errors.push(format!("{path}: duplicate list-map key {key:?}"));
                            }
                        }
                    }
                    Some("set") => {
                        let mut seen = BTreeSet::new();
                        for item in items {
                            if !seen.insert(item.to_string()) {
                                errors.push(format!("{path}: duplicate set item {item}"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Value::Object(map) => {
                let properties = schema["properties"].as_object();
                let preserve =
                    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
                if let Some(required) = schema["required"].as_array() {
                    for key in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(key) {
                            errors.push(format!("{path}: {key:?} is required"));
                        }
                    }
                }
                for (key, item) in map {
                    let child = format!("{path}.{key}");
                    if let Some(property) = properties.and_then(|p| p.get(key)) {
                        self.node(property, item, &child, errors);
                    } else if let Some(additional) = schema.get("additionalProperties") {
                        match additional {
                            Value::Bool(false) => errors.push(format!("{child}: unknown field")),
                            Value::Bool(true) => {}
                            other => self.node(other, item, &child, errors),
                        }
                    } else if properties.is_some() && !preserve {
                        errors.push(format!("{child}: unknown field"));
                    }
                }
            }
            _ => {}
        }
        self.rules(schema, value, path, errors);
    }

    fn rules(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
            return;
        };
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or("true");
            let message = rule["message"].as_str().unwrap_or(text);
            let program = self.program(text);
            let mut context = Context::default();
            context.add_variable_from_value("self", to_cel(value));
            match program.execute(&context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => errors.push(format!("{path}: {message}")),
                Ok(other) => errors.push(format!("{path}: rule {text:?} gave {other:?}")),
                Err(error) => errors.push(format!("{path}: rule {text:?} failed: {error}")),
            }
        }
    }

    fn program(&self, rule: &str) -> Arc<Program> {
        let mut programs = self.programs.borrow_mut();
        programs
            .entry(rule.to_string())
            .or_insert_with(|| {
                Arc::new(
                    Program::compile(rule)
                        .unwrap_or_else(|e| panic!("CEL rule {rule:?} does not compile: {e}")),
                )
            })
            .clone()
    }
}

fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(i) => CelValue::Int(i),
            None => CelValue::Float(number.as_f64().unwrap_or_default()),
        },
        Value::String(text) => CelValue::String(Arc::new(text.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let fields: HashMap<Key, CelValue> = map
                .iter()
                .map(|(key, item)| (Key::String(Arc::new(key.clone())), to_cel(item)))
                .collect();
            CelValue::Map(CelMap {
                map: Arc::new(fields),
            })
        }
    }
}
