//! One JSON object per line, written by hand: the CLI's output needs only flat objects of
//! strings, numbers, booleans, nulls and string lists, and a dependency would buy nothing.
//!
//! 128-bit ids (resources, pools, holders, leases, operation ids) are written as decimal
//! *strings*: many JSON readers hold numbers as doubles and would silently round them.

use std::fmt::Write;

/// A JSON object being built, field by field, in insertion order.
#[derive(Debug, Default)]
#[must_use = "a JsonLine does nothing until finished and printed"]
pub struct JsonLine {
    text: String,
}

impl JsonLine {
    /// An empty object.
    pub fn new() -> JsonLine {
        JsonLine::default()
    }

    fn key(&mut self, key: &str) -> &mut String {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        write_string(&mut self.text, key);
        self.text.push(':');
        &mut self.text
    }

    /// A string field.
    pub fn str(mut self, key: &str, value: &str) -> JsonLine {
        write_string(self.key(key), value);
        self
    }

    /// A number field.
    pub fn u64(mut self, key: &str, value: u64) -> JsonLine {
        write!(self.key(key), "{value}").expect("writing to a String cannot fail");
        self
    }

    /// A 128-bit id, as a decimal string.
    pub fn id(self, key: &str, value: u128) -> JsonLine {
        self.str(key, &value.to_string())
    }

    /// An id or `null`.
    pub fn id_or_null(mut self, key: &str, value: Option<u128>) -> JsonLine {
        if let Some(value) = value {
            return self.id(key, value);
        }
        self.key(key).push_str("null");
        self
    }

    /// A number or `null`.
    pub fn u64_or_null(mut self, key: &str, value: Option<u64>) -> JsonLine {
        if let Some(value) = value {
            return self.u64(key, value);
        }
        self.key(key).push_str("null");
        self
    }

    /// A boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> JsonLine {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// A list of ids, as strings.
    pub fn ids(mut self, key: &str, values: &[u128]) -> JsonLine {
        let text = self.key(key);
        text.push('[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            write_string(text, &value.to_string());
        }
        text.push(']');
        self
    }

    /// The finished object, without a newline.
    pub fn finish(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        self.text
    }
}

/// Appends `value` as a JSON string literal (escaping shared with `allocdb status`).
fn write_string(out: &mut String, value: &str) {
    out.push_str(&crate::status::json_string(value));
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
    }
}
