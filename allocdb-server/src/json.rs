//! One JSON object per line, built with `serde_json` in the documented field order.
//!
//! 128-bit ids (resources, pools, holders, leases, operation ids) are written as decimal
//! *strings*: many JSON readers hold numbers as doubles and would silently round them.

use serde_json::{Map, Value};

/// A JSON object being built, field by field, in insertion order.
#[derive(Debug, Default)]
#[must_use = "a JsonLine does nothing until finished and printed"]
pub struct JsonLine {
    fields: Map<String, Value>,
}

impl JsonLine {
    /// An empty object.
    pub fn new() -> JsonLine {
        JsonLine::default()
    }

    /// Any JSON value (a later field of the same name replaces the earlier one's value).
    pub fn value(mut self, key: &str, value: Value) -> JsonLine {
        self.fields.insert(key.to_string(), value);
        self
    }

    /// A string field.
    pub fn str(self, key: &str, value: &str) -> JsonLine {
        self.value(key, Value::from(value))
    }

    /// A number field.
    pub fn u64(self, key: &str, value: u64) -> JsonLine {
        self.value(key, Value::from(value))
    }

    /// A 128-bit id, as a decimal string.
    pub fn id(self, key: &str, value: u128) -> JsonLine {
        self.str(key, &value.to_string())
    }

    /// An id or `null`.
    pub fn id_or_null(self, key: &str, value: Option<u128>) -> JsonLine {
        self.value(
            key,
            value.map_or(Value::Null, |id| Value::from(id.to_string())),
        )
    }

    /// A number or `null`.
    pub fn u64_or_null(self, key: &str, value: Option<u64>) -> JsonLine {
        self.value(key, value.map_or(Value::Null, Value::from))
    }

    /// A boolean field.
    pub fn bool(self, key: &str, value: bool) -> JsonLine {
        self.value(key, Value::from(value))
    }

    /// A list of ids, as strings.
    pub fn ids(self, key: &str, values: &[u128]) -> JsonLine {
        let list = values
            .iter()
            .map(|id| Value::from(id.to_string()))
            .collect();
        self.value(key, Value::Array(list))
    }

    /// The finished object, without a newline.
    pub fn finish(self) -> String {
        Value::Object(self.fields).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::JsonLine;

    #[test]
    fn writes_flat_objects_and_escapes_strings() {
        assert_eq!(JsonLine::new().finish(), "{}");
        let line = JsonLine::new()
            .str("result", "ok")
            .u64("op", 7)
            .id("lease_id", u128::MAX)
            .id_or_null("pool", None)
            .u64_or_null("deadline", None)
            .bool("retry", false)
            .ids("resources", &[1, 2])
            .str("error", "a \"quoted\"\\ line\nnext\u{1}")
            .finish();
        assert_eq!(
            line,
            "{\"result\":\"ok\",\"op\":7,\"lease_id\":\"340282366920938463463374607431768211455\",\
             \"pool\":null,\"deadline\":null,\"retry\":false,\"resources\":[\"1\",\"2\"],\
             \"error\":\"a \\\"quoted\\\"\\\\ line\\nnext\\u0001\"}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["error"], "a \"quoted\"\\ line\nnext\u{1}");
    }
}
