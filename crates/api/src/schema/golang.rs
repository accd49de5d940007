//! How Go prints the values upstream's messages carry: `%q` strings, `%v` and `strconv` floats,
//! `encoding/json` documents, and the int64/float64 split of unstructured numbers.

use serde_json::{Number, Value};

/// A JSON number as upstream's unstructured objects hold it: int64 when it fits, else float64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum GoNumber {
    Int(i64),
    Float(f64),
}

impl GoNumber {
    pub(super) fn of(n: &Number) -> GoNumber {
        match n.as_i64() {
            Some(i) => GoNumber::Int(i),
            None => GoNumber::Float(n.as_f64().unwrap_or_default()),
        }
    }

    pub(super) fn as_f64(self) -> f64 {
        match self {
            GoNumber::Int(i) => i as f64,
            GoNumber::Float(f) => f,
        }
    }
}

/// Go's `int64(f)`: truncation (saturating here where Go's result is unspecified).
pub(super) fn to_i64(f: f64) -> i64 {
    f as i64
}

/// Go's `%q`.
pub(super) fn quote(s: &str) -> String {
    crate::labels::go_quote(s)
}

/// go-openapi's `IsFloat64AJSONInteger`: an integer within ±(2^53-1), or within a relative
/// 1e-9 of one.
pub(super) fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let rounded = f.round();
    if f == rounded {
        return true;
    }
    if rounded == 0.0 {
        return false;
    }
    (f - rounded).abs() < 1e-9 * rounded.abs()
}

/// The shortest decimal digits of `|f|` that read back as `f`, and where the point goes
/// (`dp` digits before it), as Go's strconv holds them. Zero has no digits.
struct Digits {
    negative: bool,
    digits: Vec<u8>,
    point: i32,
}

impl Digits {
    fn of(f: f64) -> Digits {
        let negative = f.is_sign_negative();
        let text = format!("{:e}", f.abs());
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text.as_str(), "0"));
        let exponent: i32 = exponent.parse().unwrap_or_default();
        let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        if digits.iter().all(|&d| d == b'0') {
            return Digits { negative, digits: Vec::new(), point: 0 };
        }
        Digits { negative, digits, point: exponent + 1 }
    }

    fn count(&self) -> i32 {
        i32::try_from(self.digits.len()).unwrap_or(i32::MAX)
    }

    fn digit(&self, i: i32) -> char {
        usize::try_from(i).ok().and_then(|i| self.digits.get(i)).map_or('0', |&d| char::from(d))
    }

    /// `%e` with `precision` digits after the point: `-d.ddde±dd`.
    fn exponent_form(&self, precision: i32) -> String {
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        out.push(self.digit(0));
        if precision > 0 {
            out.push('.');
            for i in 1..=precision {
                out.push(self.digit(i));
            }
        }
        let exponent = if self.digits.is_empty() { 0 } else { self.point - 1 };
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
        out
    }

    /// `%f` with `precision` digits after the point.
    fn fixed_form(&self, precision: i32) -> String {
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        if self.point > 0 {
            for i in 0..self.point {
                out.push(self.digit(i));
            }
        } else {
            out.push('0');
        }
        if precision > 0 {
            out.push('.');
            for i in 1..=precision {
                out.push(self.digit(self.point + i - 1));
            }
        }
        out
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): `1.5`, `100000`, `1e+06`.
pub(super) fn float_v(f: f64) -> String {
    if !f.is_finite() {
        return non_finite(f);
    }
    let d = Digits::of(f);
    let exponent = d.point - 1;
    if !(-4..6).contains(&exponent) {
        d.exponent_form(d.count() - 1)
    } else {
        d.fixed_form((d.count() - d.point).max(0))
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`, which go-openapi's range checks parse back.
pub(super) fn float_f(f: f64) -> String {
    if !f.is_finite() {
        return non_finite(f);
    }
    let d = Digits::of(f);
    d.fixed_form((d.count() - d.point).max(0))
}

fn non_finite(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f > 0.0 {
        "+Inf".to_owned()
    } else {
        "-Inf".to_owned()
    }
}

/// How `encoding/json` writes a float64.
fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    let d = Digits::of(f);
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let mut text = d.exponent_form(d.count() - 1);
        // Go writes e-07 as e-7.
        let bytes = text.as_bytes();
        let n = bytes.len();
        if n >= 4 && bytes[n - 4] == b'e' && bytes[n - 3] == b'-' && bytes[n - 2] == b'0' {
            text.remove(n - 2);
        }
        text
    } else {
        d.fixed_form((d.count() - d.point).max(0))
    }
}

/// `json.Marshal` of an unstructured value: sorted keys, HTML-safe strings.
pub(super) fn json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    // An explicit stack: values reach here from requests, however deep.
    enum Step<'a> {
        Value(&'a Value),
        Text(&'static str),
        Key(&'a str),
    }
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => out.push_str(t),
            Step::Key(k) => {
                write_json_string(k, out);
                out.push(':');
            }
            Step::Value(Value::Null) => out.push_str("null"),
            Step::Value(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            Step::Value(Value::Number(n)) => match GoNumber::of(n) {
                GoNumber::Int(i) => out.push_str(&i.to_string()),
                GoNumber::Float(f) => out.push_str(&json_float(f)),
            },
            Step::Value(Value::String(s)) => write_json_string(s, out),
            Step::Value(Value::Array(items)) => {
                out.push('[');
                stack.push(Step::Text("]"));
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
            Step::Value(Value::Object(map)) => {
                out.push('{');
                stack.push(Step::Text("}"));
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (i, (key, item)) in entries.into_iter().enumerate().rev() {
                    stack.push(Step::Value(item));
                    stack.push(Step::Key(key));
                    if i > 0 {
                        stack.push(Step::Text(","));
                    }
                }
            }
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[(b >> 4) & 0xf]));
                out.push(char::from(HEX[b & 0xf]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value as `field.Error` prints it after `Invalid value: `: strings quoted, numbers and
/// booleans bare, anything else as JSON.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Number(n) => match GoNumber::of(n) {
            GoNumber::Int(i) => i.to_string(),
            GoNumber::Float(f) => float_v(f),
        },
        Value::Bool(b) => b.to_string(),
        other => json(other),
    }
}
