//! Editing JSON documents (OCI specs, image configs) whose fields may be missing, null or of
//! the wrong type: the field becomes what the edit needs instead of a panic.

use serde_json::{Map, Value};

/// `v` as a list, made one (empty) when it is anything else.
pub fn array(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("made a list above"),
    }
}

/// `v` as an object, made one (empty) when it is anything else.
pub fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("made an object above"),
    }
}
