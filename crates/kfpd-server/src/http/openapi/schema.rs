//! JSON schemas of the API's messages, read from the same descriptors the message
//! types are generated from, following the protobuf JSON mapping kfpd speaks:
//! proto field names, 64-bit integers as strings, enums as names, well-known types
//! in their JSON forms, zero values left out (so nothing is required).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto};
use serde_json::{json, Map, Value};

/// Every message and enum of the API's descriptor set, by full name (`pkg.Name`).
struct Index {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        // The set is produced by the build from the API's own protos; a set that
        // does not decode leaves the index empty and the schemas open.
        let set = prost_types::FileDescriptorSet::decode(kfpd_api::FILE_DESCRIPTOR_SET)
            .unwrap_or_default();
        for file in set.file {
            let package = file.package().to_string();
            for message in file.message_type {
                index.add_message(&package, message);
            }
            for enumeration in file.enum_type {
                let name = format!("{package}.{}", enumeration.name());
                index.enums.insert(name, enumeration);
            }
        }
        index
    })
}

impl Index {
    fn add_message(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested.clone());
        }
        for enumeration in &message.enum_type {
            let enum_name = format!("{name}.{}", enumeration.name());
            self.enums.insert(enum_name, enumeration.clone());
        }
        self.messages.insert(name, message);
    }
}

/// The name a schema is listed under in `components/schemas`.
fn component_name(full_name: &str) -> String {
    full_name
        .strip_prefix("kubeflow.pipelines.backend.api.v2beta1.")
        .map(|short| format!("v2beta1.{short}"))
        .unwrap_or_else(|| full_name.to_string())
}

/// A `$ref` to the schema of `full_name`.
pub fn reference(full_name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component_name(full_name)) })
}

/// Collects the schemas a document refers to.
#[derive(Default)]
pub struct Components {
    schemas: BTreeMap<String, Value>,
}

impl Components {
    /// A reference to message `full_name`, adding its schema and those it uses.
    pub fn message(&mut self, full_name: &str) -> Value {
        if let Some(schema) = well_known(full_name) {
            return schema;
        }
        let name = component_name(full_name);
        if !self.schemas.contains_key(&name) {
            // Placeholder first: messages may refer to themselves (Filter, Struct).
            self.schemas.insert(name.clone(), json!({}));
            let schema = self.message_schema(full_name);
            self.schemas.insert(name, schema);
        }
        reference(full_name)
    }

    /// Adds a named schema that is not a proto message (kfpd's own shapes).
    pub fn named(&mut self, name: &str, schema: impl FnOnce(&mut Components) -> Value) -> Value {
        if !self.schemas.contains_key(name) {
            self.schemas.insert(name.to_string(), json!({}));
            let schema = schema(self);
            self.schemas.insert(name.to_string(), schema);
        }
        reference(name)
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.schemas.into_iter().collect()
    }

    fn message_schema(&mut self, full_name: &str) -> Value {
        let Some(message) = index().messages.get(full_name) else {
            return json!({ "type": "object" });
        };
        let mut properties = Map::new();
        for field in &message.field {
            properties.insert(field.name().to_string(), self.field_schema(field));
        }
        json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        })
    }

    fn field_schema(&mut self, field: &FieldDescriptorProto) -> Value {
        let repeated = field.label() == Label::Repeated;
        if repeated && field.r#type() == Type::Message {
            if let Some(entry) = map_entry(field.type_name()) {
                let value = entry.field.iter().find(|field| field.number() == 2);
                let values = value.map_or_else(|| json!({}), |value| self.single(value));
                return json!({ "type": "object", "additionalProperties": values });
            }
        }
        let single = self.single(field);
        if repeated {
            return json!({ "type": "array", "items": single });
        }
        single
    }

    /// The schema of one value of the field (an element when it is repeated).
    fn single(&mut self, field: &FieldDescriptorProto) -> Value {
        match field.r#type() {
            Type::String => json!({ "type": "string" }),
            Type::Bool => json!({ "type": "boolean" }),
            Type::Bytes => json!({ "type": "string", "format": "byte" }),
            Type::Double | Type::Float => json!({ "type": "number" }),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Type::Uint32 | Type::Fixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": 0 })
            }
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$" })
            }
            Type::Uint64 | Type::Fixed64 => {
                json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$" })
            }
            Type::Enum => enum_schema(trim_dot(field.type_name())),
            Type::Message | Type::Group => self.message(trim_dot(field.type_name())),
        }
    }
}

fn trim_dot(name: &str) -> &str {
    name.strip_prefix('.').unwrap_or(name)
}

fn map_entry(type_name: &str) -> Option<&'static DescriptorProto> {
    let message = index().messages.get(trim_dot(type_name))?;
    message
        .options
        .as_ref()
        .is_some_and(|options| options.map_entry())
        .then_some(message)
}

/// Enums are written as their value names.
fn enum_schema(full_name: &str) -> Value {
    if full_name == "google.protobuf.NullValue" {
        return json!({ "nullable": true, "enum": [null] });
    }
    let Some(enumeration) = index().enums.get(full_name) else {
        return json!({ "type": "string" });
    };
    let names: Vec<&str> = enumeration.value.iter().map(|value| value.name()).collect();
    json!({ "type": "string", "enum": names })
}

/// The JSON forms of the well-known types, which are not objects of their fields.
fn well_known(full_name: &str) -> Option<Value> {
    let schema = match full_name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$" })
        }
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": {} }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Empty" => json!({ "type": "object", "additionalProperties": false }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "additionalProperties": {},
        }),
        _ => return None,
    };
    Some(schema)
}

/// A message's fields that can be given as query parameters (scalars, enums and
/// repeated scalars), with their schemas.
pub fn query_fields(full_name: &str) -> Vec<(String, Value, Type)> {
    let Some(message) = index().messages.get(full_name) else {
        return Vec::new();
    };
    let mut components = Components::default();
    message
        .field
        .iter()
        .filter(|field| !matches!(field.r#type(), Type::Message | Type::Group))
        .filter(|field| field.label() != Label::Repeated)
        .map(|field| {
            let schema = components.single(field);
            (field.name().to_string(), schema, field.r#type())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_json_mapping() {
        let mut components = Components::default();
        let reference = components.message("kubeflow.pipelines.backend.api.v2beta1.Run");
        assert_eq!(reference["$ref"], "#/components/schemas/v2beta1.Run");
        let schemas = components.into_map();
        let run = &schemas["v2beta1.Run"];
        assert_eq!(run["properties"]["created_at"]["format"], "date-time");
        assert_eq!(run["properties"]["state"]["type"], "string");
        assert!(run["properties"]["state"]["enum"]
            .as_array()
            .is_some_and(|names| names.iter().any(|name| name == "SUCCEEDED")));
        assert_eq!(run["properties"]["pipeline_spec"]["type"], "object");
        let config = &schemas["v2beta1.RuntimeConfig"];
        assert_eq!(config["properties"]["parameters"]["type"], "object");
    }

    #[test]
    fn query_fields_are_the_scalars() {
        let fields = query_fields("kubeflow.pipelines.backend.api.v2beta1.ListRunsRequest");
        let names: Vec<&str> = fields.iter().map(|(name, _, _)| name.as_str()).collect();
        assert!(names.contains(&"page_size") && names.contains(&"filter"));
    }
}
