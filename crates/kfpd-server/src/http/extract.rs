//! Request decoding shared by the REST handlers: strict JSON bodies, query
//! parameters under their proto or lowerCamel names, `{id}:verb` path segments.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use prost_types::field_descriptor_proto::Type;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::openapi::schema::query_fields;
use crate::error::{Code, Error, Result};

/// Query parameters; each is looked up by its proto name and its lowerCamel name.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        Params(pairs)
    }

    /// The value under `name` (snake_case) or its lowerCamel form.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }

    /// The value under `name` or its lowerCamel form, if given at all.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .or_else(|| self.0.get(&lower_camel(name)))
            .map(String::as_str)
    }

    pub fn int32(&self, name: &str) -> Result<i32> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(0);
        }
        text.trim().parse::<i32>().map_err(|_| {
            Error::invalid(format!(
                "query parameter {name} must be an integer, got {text:?}"
            ))
        })
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        let text = self.text(name);
        match text.trim() {
            "" | "false" | "0" => Ok(false),
            "true" | "1" => Ok(true),
            other => Err(Error::invalid(format!(
                "query parameter {name} must be true or false, got {other:?}"
            ))),
        }
    }
}

fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for ch in name.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// Decodes a JSON request body; unknown fields, bad enum names and wrong types are
/// rejected with a message that names them.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T> {
    check_json_content_type(headers)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| Error::invalid(format!("invalid JSON body: {error}")))
}

/// A body must be JSON when a content type is given at all.
fn check_json_content_type(headers: &HeaderMap) -> Result<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let mime = text.split(';').next().unwrap_or_default().trim();
    if mime == "application/json" || mime.ends_with("+json") {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "unsupported content type {mime:?}: send application/json"
    )))
}

/// A JSON request body decoded into `T` (strictly, see [`json_body`]), with the
/// bytes it came from for handlers that need to see which fields were sent.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let headers = request.headers().clone();
        let raw = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Code::ResourceExhausted
                } else {
                    Code::InvalidArgument
                };
                Error::new(
                    code,
                    format!("cannot read the request body: {}", rejection.body_text()),
                )
            })?;
        let value = json_body(&headers, &raw)?;
        Ok(JsonBody { value, raw })
    }
}

/// One query parameter a [`QueryShape`] reads.
pub struct QueryField {
    pub name: String,
    pub schema: Value,
    kind: Type,
}

/// Something decoded from the query string, naming the parameters it reads.
pub trait QueryShape: Sized {
    fn fields() -> Vec<QueryField>;
    fn decode(object: Map<String, Value>) -> Result<Self>;
}

/// Request messages: their scalar fields are the query parameters (as upstream's
/// gateway reads them), under their proto or lowerCamel names.
impl<T: prost::Name + DeserializeOwned> QueryShape for T {
    fn fields() -> Vec<QueryField> {
        query_fields(&T::full_name())
            .into_iter()
            .map(|(name, schema, kind)| QueryField { name, schema, kind })
            .collect()
    }

    fn decode(object: Map<String, Value>) -> Result<Self> {
        serde_json::from_value(Value::Object(object))
            .map_err(|error| Error::invalid(format!("invalid query parameter: {error}")))
    }
}

/// Query parameters of kfpd's own routes, by name; strings unless `flags` says
/// they are true or false.
pub fn named_fields(strings: &[&str], flags: &[&str]) -> Vec<QueryField> {
    let string = strings.iter().map(|name| QueryField {
        name: name.to_string(),
        schema: serde_json::json!({ "type": "string" }),
        kind: Type::String,
    });
    let flag = flags.iter().map(|name| QueryField {
        name: name.to_string(),
        schema: serde_json::json!({ "type": "boolean" }),
        kind: Type::Bool,
    });
    string.chain(flag).collect()
}

/// The query string decoded into `T`: only the parameters `T` names are read.
pub struct Query<T>(pub T);

impl<T: QueryShape, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let params = Params::parse(parts.uri.query());
        let mut object = Map::new();
        for field in T::fields() {
            let name = field.name.as_str();
            let Some(text) = params.get(name) else {
                continue;
            };
            let value = match field.kind {
                Type::Bool => Value::Bool(params.bool(name)?),
                Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Uint32 | Type::Fixed32 => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    Value::from(params.int32(name)?)
                }
                Type::Double | Type::Float => {
                    let number = text.trim().parse::<f64>().map_err(|_| {
                        Error::invalid(format!(
                            "query parameter {name} must be a number, got {text:?}"
                        ))
                    })?;
                    Value::from(number)
                }
                Type::Enum if text.is_empty() => continue,
                _ => Value::String(text.to_string()),
            };
            object.insert(name.to_string(), value);
        }
        Ok(Query(T::decode(object)?))
    }
}

/// Whether a PATCH body sets `tags` to exactly `{}` (meaning: remove all tags),
/// which the decoded message cannot show.
pub fn clears_tags(body: &Bytes) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    value
        .get("tags")
        .and_then(|tags| tags.as_object())
        .is_some_and(|tags| tags.is_empty())
}

/// Splits `{id}:verb` from a path segment and checks the verb.
pub fn id_and_verb<'a>(segment: &'a str, verbs: &[&str]) -> Result<(&'a str, &'a str)> {
    let not_found = || Error::new(Code::NotFound, "Not Found");
    let (id, verb) = segment.rsplit_once(':').ok_or_else(not_found)?;
    if !verbs.contains(&verb) {
        return Err(not_found());
    }
    Ok((id, verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_accept_both_spellings() {
        let params = Params::parse(Some("pageSize=5&sort_by=name%20desc&experimentId=e"));
        assert_eq!(params.int32("page_size").unwrap(), 5);
        assert_eq!(params.text("sort_by"), "name desc");
        assert_eq!(params.text("experiment_id"), "e");
        assert!(Params::parse(Some("page_size=x"))
            .int32("page_size")
            .is_err());
    }

    #[test]
    fn tags_clearing_is_detected() {
        assert!(clears_tags(&Bytes::from_static(b"{\"tags\":{}}")));
        assert!(!clears_tags(&Bytes::from_static(
            b"{\"display_name\":\"x\"}"
        )));
        assert!(!clears_tags(&Bytes::from_static(
            b"{\"tags\":{\"a\":\"b\"}}"
        )));
    }

    #[test]
    fn verbs() {
        assert_eq!(
            id_and_verb("abc:archive", &["archive"]).unwrap(),
            ("abc", "archive")
        );
        assert!(id_and_verb("abc", &["archive"]).is_err());
        assert!(id_and_verb("abc:explode", &["archive"]).is_err());
    }
}
