//! Event patterns: which activity is worth a notification.
//!
//! Webhook endpoints and broker destinations may carry an [Amazon EventBridge event
//! pattern](https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html);
//! a notification is sent only for activity that matches it. Patterns are evaluated against the
//! event detail of seed 003, `{"detail": {"account": .., "subscription": .., "activity": {"v1":
//! .., "v2": ..}}}`, so `{"detail": {"activity": {"v1": {"type": ["add"]}}}}` keeps only adds.
//!
//! # Semantics (those of EventBridge and its engine, Event Ruler)
//! - An object matches when every key it names matches; other keys are ignored. The empty
//!   pattern `{}` matches everything. `"$or": [{..}, {..}]` inside an object matches when any of
//!   its (two or more) alternatives does.
//! - A leaf is a non-empty array of matchers and matches when any matcher matches any value at
//!   its path. Event arrays are flattened: `"tags": ["a", "b"]` holds two values, and an object
//!   pattern applied to an array of objects must match within a single element.
//! - Only scalars (strings, numbers, booleans, `null`) are values. A path ending on an object, an
//!   empty array or nothing has none: `{"exists": false}` matches exactly those paths, and every
//!   other matcher needs a value (so `anything-but` never matches a missing field).
//! - Literals never cross types (`"300"` is not `300`, `""` is not `null`), but numbers compare
//!   by value (`300` matches `300.0`). `numeric` operands, and the event numbers they are
//!   compared with, are limited to ±5e9 as in EventBridge.
//! - Operators: `prefix` and `suffix` (a string or `{"equals-ignore-case": string}`),
//!   `equals-ignore-case`, `wildcard` (`*` is any run, `\*` a star, `\\` a backslash),
//!   `anything-but` (a string, a number, a list of strings or of numbers, or one of `prefix`,
//!   `suffix`, `equals-ignore-case`, `wildcard`), `numeric` and `exists`. Others, such as
//!   `cidr`, are rejected by [`EventPattern::parse`].

use serde_json::{Map, Number, Value};

/// How many keys deep a pattern may nest (a `$or` counts as a level).
const MAX_DEPTH: usize = 10;
/// How many matchers a pattern may hold, counting each entry of an `anything-but` list.
const MAX_MATCHERS: usize = 2048;
/// EventBridge's numeric matching range, inclusive.
const NUMERIC_LIMIT: f64 = 5.0e9;

/// A compiled event pattern.
///
/// [`EventPattern::parse`] rejects malformed patterns, so [`EventPattern::matches`] cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPattern {
    json: Value,
    root: ObjectPattern,
}

/// Why a client's event pattern was rejected; each message names the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is not a JSON object.
    #[error("pattern must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type given instead.
        found: &'static str,
    },
    /// A key holds neither a nested object nor an array of matchers.
    #[error("pattern at `{path}`: leaf values must be arrays, found {found}")]
    LeafNotArray {
        /// Dotted path of the key.
        path: String,
        /// The JSON type given instead.
        found: &'static str,
    },
    /// A nested object has no keys (only the whole pattern may be `{}`).
    #[error("pattern at `{path}`: empty objects are not allowed")]
    EmptyObject {
        /// Dotted path of the object.
        path: String,
    },
    /// A leaf is an empty array, which could never match.
    #[error("pattern at `{path}`: matcher arrays must not be empty")]
    EmptyMatchers {
        /// Dotted path of the leaf.
        path: String,
    },
    /// A matcher is malformed or uses an unknown operator; the reason says which.
    #[error("pattern at `{path}`: {reason}")]
    InvalidMatcher {
        /// Path of the matcher, ending with its index in the leaf array (`$or` alternatives too).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pattern nests deeper than 10 keys.
    #[error("pattern at `{path}`: nested deeper than {max} levels")]
    TooDeep {
        /// Dotted path of the first key past the limit.
        path: String,
        /// The limit.
        max: usize,
    },
    /// The pattern holds more than 2048 matchers (each entry of an `anything-but` list counts).
    #[error("pattern has more than {max} matchers")]
    TooManyMatchers {
        /// The limit.
        max: usize,
    },
}

impl EventPattern {
    /// Validates and compiles a pattern (from a client: reject anything malformed with a precise message; never panic).
    ///
    /// # Errors
    /// A [`PatternError`] naming the first problem found and its JSON path.
    pub fn parse(pattern: &Value) -> Result<Self, PatternError> {
        let Value::Object(object) = pattern else {
            return Err(PatternError::NotAnObject {
                found: json_kind(pattern),
            });
        };
        let root = Compiler::default().object(object, "", 0)?;
        Ok(Self {
            json: pattern.clone(),
            root,
        })
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(Some(event))
    }

    /// The pattern as JSON (as given).
    pub fn as_json(&self) -> &Value {
        &self.json
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    /// Alternatives from `$or`; empty when the object has none.
    any_of: Vec<ObjectPattern>,
}

#[derive(Debug, Clone, PartialEq)]
enum FieldPattern {
    Nested(ObjectPattern),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// A string, number, boolean or null.
    Literal(Value),
    Prefix(Affix),
    Suffix(Affix),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(Excluded),
    Numeric(NumericRange),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
struct Affix {
    /// Lowercased when `ignore_case`.
    text: String,
    ignore_case: bool,
}

/// What an `anything-but` excludes.
#[derive(Debug, Clone, PartialEq)]
enum Excluded {
    Literals(Vec<Value>),
    Prefix(String),
    Suffix(String),
    /// Lowercased.
    EqualsIgnoreCase(Vec<String>),
    Wildcards(Vec<Wildcard>),
}

/// A wildcard split at its unescaped stars: `a*b` is `["a", "b"]`, `*a` is `["", "a"]`.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    segments: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct NumericRange {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    value: f64,
    inclusive: bool,
}

/// Walks a pattern once, checking its shape and counting matchers.
#[derive(Default)]
struct Compiler {
    matchers: usize,
}

impl Compiler {
    /// Compiles an object whose keys sit at `depth + 1`.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<ObjectPattern, PatternError> {
        if depth > 0 && object.is_empty() {
            return Err(PatternError::EmptyObject {
                path: path.to_owned(),
            });
        }
        let mut pattern = ObjectPattern::default();
        for (key, value) in object {
            let key_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if depth >= MAX_DEPTH {
                return Err(PatternError::TooDeep {
                    path: key_path,
                    max: MAX_DEPTH,
                });
            }
            let field = match value {
                _ if key == "$or" => {
                    pattern.any_of = self.any_of(value, &key_path, depth + 1)?;
                    continue;
                }
                Value::Object(nested) => {
                    FieldPattern::Nested(self.object(nested, &key_path, depth + 1)?)
                }
                Value::Array(items) => FieldPattern::Leaf(self.leaf(items, &key_path)?),
                other => {
                    let found = json_kind(other);
                    return Err(PatternError::LeafNotArray {
                        path: key_path,
                        found,
                    });
                }
            };
            pattern.fields.push((key.clone(), field));
        }
        Ok(pattern)
    }

    fn any_of(
        &mut self,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Vec<ObjectPattern>, PatternError> {
        let alternatives = match value {
            Value::Array(alternatives) if alternatives.len() >= 2 => alternatives,
            other => {
                let reason = expected("`$or` must be an array of two or more objects", other);
                return Err(invalid(path, reason));
            }
        };
        let compile = |(index, alternative): (usize, &Value)| {
            let alternative_path = format!("{path}[{index}]");
            match alternative {
                Value::Object(object) => self.object(object, &alternative_path, depth),
                other => {
                    let reason = expected("`$or` alternatives must be objects", other);
                    Err(invalid(&alternative_path, reason))
                }
            }
        };
        alternatives.iter().enumerate().map(compile).collect()
    }

    fn leaf(&mut self, items: &[Value], path: &str) -> Result<Vec<Matcher>, PatternError> {
        if items.is_empty() {
            return Err(PatternError::EmptyMatchers {
                path: path.to_owned(),
            });
        }
        let mut matchers = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let matcher =
                matcher(item).map_err(|reason| invalid(&format!("{path}[{index}]"), reason))?;
            self.matchers += matcher.weight();
            if self.matchers > MAX_MATCHERS {
                return Err(PatternError::TooManyMatchers { max: MAX_MATCHERS });
            }
            matchers.push(matcher);
        }
        Ok(matchers)
    }
}

fn invalid(path: &str, reason: String) -> PatternError {
    PatternError::InvalidMatcher {
        path: path.to_owned(),
        reason,
    }
}

/// `"{what}, found {kind of found}"`.
fn expected(what: &str, found: &Value) -> String {
    match found {
        Value::Array(items) => format!("{what}, found an array of length {}", items.len()),
        other => format!("{what}, found {}", json_kind(other)),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The operator name and operand of a one-key object such as `{"prefix": "a"}`.
fn operator_of(object: &Map<String, Value>) -> Result<(&str, &Value), String> {
    let mut entries = object.iter();
    match (entries.next(), entries.next()) {
        (Some((name, operand)), None) => Ok((name.as_str(), operand)),
        _ => Err(format!(
            "operator objects must have exactly one key, found {}",
            object.len()
        )),
    }
}

fn matcher(item: &Value) -> Result<Matcher, String> {
    let operator_object = match item {
        Value::Object(object) => object,
        Value::Array(_) => return Err(expected("matchers must be literals or objects", item)),
        literal => return Ok(Matcher::Literal(literal.clone())),
    };
    let (name, operand) = operator_of(operator_object)?;
    Ok(match name {
        "prefix" => Matcher::Prefix(affix(name, operand)?),
        "suffix" => Matcher::Suffix(affix(name, operand)?),
        "equals-ignore-case" => Matcher::EqualsIgnoreCase(string(name, operand)?.to_lowercase()),
        "wildcard" => Matcher::Wildcard(Wildcard::parse(string(name, operand)?)?),
        "anything-but" => Matcher::AnythingBut(anything_but(operand)?),
        "numeric" => Matcher::Numeric(numeric_range(operand)?),
        "exists" => Matcher::Exists(
            operand
                .as_bool()
                .ok_or_else(|| expected("`exists` must be true or false", operand))?,
        ),
        _ => {
            return Err(format!(
                "unknown operator `{name}` (supported: prefix, suffix, equals-ignore-case, \
                 wildcard, anything-but, numeric, exists)"
            ))
        }
    })
}

fn string<'a>(operator: &str, operand: &'a Value) -> Result<&'a str, String> {
    operand
        .as_str()
        .ok_or_else(|| expected(&format!("`{operator}` must be a string"), operand))
}

fn strings<'a>(operator: &str, operand: &'a Value) -> Result<Vec<&'a str>, String> {
    match operand {
        Value::Array(items) if !items.is_empty() => {
            let entry = |item: &'a Value| {
                let what = format!("`{operator}` entries must be strings");
                item.as_str().ok_or_else(|| expected(&what, item))
            };
            items.iter().map(entry).collect()
        }
        Value::String(text) => Ok(vec![text.as_str()]),
        other => Err(expected(
            &format!("`{operator}` must be a string or list of strings"),
            other,
        )),
    }
}

fn affix(operator: &str, operand: &Value) -> Result<Affix, String> {
    if let Value::String(text) = operand {
        return Ok(Affix {
            text: text.clone(),
            ignore_case: false,
        });
    }
    match operand.as_object().map(operator_of) {
        Some(Ok(("equals-ignore-case", Value::String(text)))) => Ok(Affix {
            text: text.to_lowercase(),
            ignore_case: true,
        }),
        _ => {
            let what =
                format!("`{operator}` must be a string or {{\"equals-ignore-case\": string}}");
            Err(expected(&what, operand))
        }
    }
}

fn anything_but(operand: &Value) -> Result<Excluded, String> {
    let literals = match operand {
        Value::String(_) | Value::Number(_) => vec![operand.clone()],
        Value::Array(items)
            if !items.is_empty()
                && (items.iter().all(Value::is_string) || items.iter().all(Value::is_number)) =>
        {
            items.clone()
        }
        Value::Object(inner) => return anything_but_operator(inner),
        other => {
            let what = "`anything-but` must be a string, a number, a list of only strings or only \
                        numbers, or an operator object";
            return Err(expected(what, other));
        }
    };
    for number in literals.iter().filter_map(Value::as_f64) {
        within_numeric_limit("anything-but", number)?;
    }
    Ok(Excluded::Literals(literals))
}

fn anything_but_operator(inner: &Map<String, Value>) -> Result<Excluded, String> {
    let (name, operand) = operator_of(inner)?;
    let operator = format!("anything-but/{name}");
    match name {
        "prefix" | "suffix" => {
            let text = string(&operator, operand)?.to_owned();
            if text.is_empty() {
                return Err(format!("`{operator}` must not be empty"));
            }
            Ok(if name == "prefix" {
                Excluded::Prefix(text)
            } else {
                Excluded::Suffix(text)
            })
        }
        "equals-ignore-case" => Ok(Excluded::EqualsIgnoreCase(
            strings(&operator, operand)?
                .iter()
                .map(|text| text.to_lowercase())
                .collect(),
        )),
        "wildcard" => Ok(Excluded::Wildcards(
            strings(&operator, operand)?
                .into_iter()
                .map(Wildcard::parse)
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(format!(
            "`anything-but` takes prefix, suffix, equals-ignore-case or wildcard, found `{name}`"
        )),
    }
}

fn within_numeric_limit(operator: &str, number: f64) -> Result<f64, String> {
    if number.abs() <= NUMERIC_LIMIT {
        return Ok(number);
    }
    Err(format!(
        "`{operator}` numbers must lie between -5e9 and 5e9, found {number}"
    ))
}

fn numeric_range(operand: &Value) -> Result<NumericRange, String> {
    let terms = match operand {
        Value::Array(terms) if !terms.is_empty() && terms.len() % 2 == 0 => terms,
        other => {
            let what =
                "`numeric` must alternate operators and numbers, as in [\">\", 0, \"<=\", 5]";
            return Err(expected(what, other));
        }
    };
    if terms.len() > 4 {
        let found = terms.len() / 2;
        return Err(format!(
            "`numeric` allows at most two comparisons, found {found}"
        ));
    }
    let single = terms.len() == 2;
    let mut range = NumericRange {
        lower: None,
        upper: None,
    };
    let pairs = terms.iter().step_by(2).zip(terms.iter().skip(1).step_by(2));
    for (index, (operator_term, number)) in pairs.enumerate() {
        let operator = match operator_term.as_str() {
            Some(known @ ("=" | "<" | "<=" | ">" | ">=")) => known,
            Some(other) => return Err(format!("unknown `numeric` operator `{other}`")),
            None => {
                return Err(expected(
                    "`numeric` operators must be strings",
                    operator_term,
                ))
            }
        };
        let what = format!("`numeric` operand of `{operator}` must be a number");
        let given = number.as_f64().ok_or_else(|| expected(&what, number))?;
        let value = within_numeric_limit("numeric", given)?;
        let bound = Some(Bound {
            value,
            inclusive: operator.ends_with('='),
        });
        match (index, operator) {
            (0, "=") if single => (range.lower, range.upper) = (bound, bound),
            (0, ">" | ">=") => range.lower = bound,
            (0, "<" | "<=") if single => range.upper = bound,
            (1, "<" | "<=") => range.upper = bound,
            _ => {
                return Err(
                    "`numeric` takes one comparison, or a lower bound (`>` or `>=`) \
                            followed by an upper bound (`<` or `<=`)"
                        .to_owned(),
                )
            }
        }
    }
    if let (Some(lower), Some(upper)) = (range.lower, range.upper) {
        let (low, high) = (lower.value, upper.value);
        if !single && low >= high {
            return Err(format!(
                "`numeric` lower bound {low} must be below upper bound {high}"
            ));
        }
    }
    Ok(range)
}

impl Wildcard {
    fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut previous_was_star = false;
        let mut chars = text.chars();
        while let Some(character) = chars.next() {
            match character {
                '*' if previous_was_star => {
                    return Err(format!("`wildcard` `{text}` has consecutive `*`"))
                }
                '*' => segments.push(std::mem::take(&mut current)),
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => current.push(escaped),
                    _ => return Err(format!("`wildcard` `{text}` may escape only `*` and `\\`")),
                },
                other => current.push(other),
            }
            previous_was_star = character == '*';
        }
        segments.push(current);
        Ok(Self { segments })
    }

    fn matches(&self, text: &str) -> bool {
        let Some((first, rest)) = self.segments.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        for segment in middle {
            let Some(start) = remaining.find(segment.as_str()) else {
                return false;
            };
            remaining = &remaining[start + segment.len()..];
        }
        remaining.ends_with(last.as_str())
    }
}

impl ObjectPattern {
    fn matches(&self, value: Option<&Value>) -> bool {
        let Some(Value::Array(items)) = value else {
            return self.matches_element(value);
        };
        let elements = flatten(items);
        if elements.is_empty() {
            return self.matches_element(None);
        }
        elements
            .into_iter()
            .any(|element| self.matches_element(Some(element)))
    }

    /// Matches one non-array value (or nothing); keys are found only if it is an object.
    fn matches_element(&self, value: Option<&Value>) -> bool {
        let object = value.and_then(Value::as_object);
        let field_matches = |(key, field): &(String, FieldPattern)| {
            field.matches(object.and_then(|object| object.get(key)))
        };
        self.fields.iter().all(field_matches)
            && (self.any_of.is_empty() || self.any_of.iter().any(|or| or.matches_element(value)))
    }
}

impl FieldPattern {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            FieldPattern::Nested(nested) => nested.matches(value),
            FieldPattern::Leaf(matchers) => {
                let values: Vec<&Value> = match value {
                    None | Some(Value::Object(_)) => Vec::new(),
                    Some(Value::Array(items)) => flatten(items)
                        .into_iter()
                        .filter(|item| !item.is_object())
                        .collect(),
                    Some(scalar) => vec![scalar],
                };
                matchers.iter().any(|matcher| matcher.matches(&values))
            }
        }
    }
}

/// The non-array elements of a possibly nested array, found without recursion.
fn flatten(items: &[Value]) -> Vec<&Value> {
    let mut elements = Vec::new();
    let mut stack = vec![items.iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(Value::Array(inner)) => stack.push(inner.iter()),
            Some(element) => elements.push(element),
            None => {
                stack.pop();
            }
        }
    }
    elements
}

impl Matcher {
    /// How much of [`MAX_MATCHERS`] this matcher uses.
    fn weight(&self) -> usize {
        match self {
            Matcher::AnythingBut(Excluded::Literals(literals)) => literals.len(),
            Matcher::AnythingBut(Excluded::EqualsIgnoreCase(texts)) => texts.len(),
            Matcher::AnythingBut(Excluded::Wildcards(wildcards)) => wildcards.len(),
            _ => 1,
        }
    }

    /// Whether the matcher accepts the scalar values found at its path (none if absent).
    fn matches(&self, values: &[&Value]) -> bool {
        if let Matcher::Exists(false) = self {
            return values.is_empty();
        }
        values.iter().any(|value| self.matches_value(value))
    }

    fn matches_value(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Matcher::Literal(literal) => literal_equals(literal, value),
            Matcher::Prefix(affix) => {
                text.is_some_and(|text| affix.fold(text).starts_with(&affix.text))
            }
            Matcher::Suffix(affix) => {
                text.is_some_and(|text| affix.fold(text).ends_with(&affix.text))
            }
            Matcher::EqualsIgnoreCase(lower) => {
                text.is_some_and(|text| text.to_lowercase() == *lower)
            }
            Matcher::Wildcard(wildcard) => text.is_some_and(|text| wildcard.matches(text)),
            Matcher::AnythingBut(excluded) => !excluded.contains(value),
            Matcher::Numeric(range) => value
                .as_number()
                .and_then(comparable)
                .is_some_and(|number| range.contains(number)),
            Matcher::Exists(_) => true,
        }
    }
}

impl Affix {
    fn fold<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.ignore_case {
            text.to_lowercase().into()
        } else {
            text.into()
        }
    }
}

impl Excluded {
    fn contains(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Excluded::Literals(literals) => literals
                .iter()
                .any(|literal| literal_equals(literal, value)),
            Excluded::Prefix(prefix) => text.is_some_and(|text| text.starts_with(prefix.as_str())),
            Excluded::Suffix(suffix) => text.is_some_and(|text| text.ends_with(suffix.as_str())),
            Excluded::EqualsIgnoreCase(lower) => {
                text.is_some_and(|text| lower.contains(&text.to_lowercase()))
            }
            Excluded::Wildcards(wildcards) => {
                text.is_some_and(|text| wildcards.iter().any(|wildcard| wildcard.matches(text)))
            }
        }
    }
}

impl NumericRange {
    fn contains(&self, number: f64) -> bool {
        let above =
            |bound: Bound| number > bound.value || (bound.inclusive && number == bound.value);
        let below =
            |bound: Bound| number < bound.value || (bound.inclusive && number == bound.value);
        self.lower.is_none_or(above) && self.upper.is_none_or(below)
    }
}

/// A number EventBridge compares by value (within ±5e9).
fn comparable(number: &Number) -> Option<f64> {
    number.as_f64().filter(|value| value.abs() <= NUMERIC_LIMIT)
}

/// Same type and value; numbers beyond ±5e9 (ids) must be written alike, never rounded equal.
fn literal_equals(literal: &Value, value: &Value) -> bool {
    match (literal, value) {
        (Value::Number(expected), Value::Number(actual)) => {
            match (comparable(expected), comparable(actual)) {
                (Some(expected_value), Some(actual_value)) => expected_value == actual_value,
                _ => expected == actual,
            }
        }
        _ => literal == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pattern(pattern: Value) -> EventPattern {
        EventPattern::parse(&pattern).expect("valid pattern")
    }

    fn v1_event(v1: Value) -> Value {
        json!({"detail": {"account": 123, "subscription": 321, "activity": {"v1": v1, "v2": {}}}})
    }

    /// For each case, compiles the leaf `leaf` at `detail.x` and checks that it accepts every
    /// value of `match`, refuses every value of `reject`, and, if `absent` is given, gives that
    /// answer for an event without `x`.
    fn check(cases: Value) {
        for case in cases.as_array().into_iter().flatten() {
            let compiled = pattern(json!({"detail": {"x": case["leaf"].clone()}}));
            for (key, expected) in [("match", true), ("reject", false)] {
                for value in case[key].as_array().into_iter().flatten() {
                    let event = json!({"detail": {"x": value}});
                    assert_eq!(compiled.matches(&event), expected, "{case} on {event}");
                }
            }
            if let Some(expected) = case["absent"].as_bool() {
                let event = json!({"detail": {"y": 1}});
                assert_eq!(compiled.matches(&event), expected, "{case} without x");
            }
        }
    }

    #[test]
    fn test_seed_pattern_matches_adds_and_not_deletes() {
        let seed = pattern(json!({"detail": {"activity": {"v1": {"type": ["add"]}}}}));
        assert!(seed.matches(&v1_event(json!({"id": "e1", "type": "add"}))));
        assert!(!seed.matches(&v1_event(json!({"id": "e2", "type": "delete"}))));
        assert!(!seed.matches(&v1_event(Value::Null)), "null v1");
        assert!(!seed.matches(&json!({})), "no detail");
    }

    #[test]
    fn test_empty_pattern_matches_every_event() {
        let everything = pattern(json!({}));
        for event in [json!({}), v1_event(Value::Null), json!([1]), json!("s")] {
            assert!(everything.matches(&event), "{event}");
        }
    }

    #[test]
    fn test_as_json_returns_the_pattern_as_given() {
        let given = json!({"detail": {"account": [123, {"numeric": [">", 0]}]}});
        assert_eq!(pattern(given.clone()).as_json(), &given);
    }

    #[test]
    fn test_literals_compare_numbers_by_value_and_never_cross_types() {
        check(json!([
            {"leaf": [300], "match": [300, 300.0, 3.0e2], "reject": ["300", 301], "absent": false},
            {"leaf": [3.018e2], "match": [301.8], "reject": [301]},
            {"leaf": ["300"], "match": ["300"], "reject": [300]},
            {"leaf": [null], "match": [null], "reject": ["", 0], "absent": false},
            {"leaf": [""], "match": [""], "reject": [null]},
            {"leaf": [true], "match": [true], "reject": ["true", false]},
            // Beyond ±5e9 (ids) numbers compare exactly, never rounded through f64.
            {"leaf": [9007199254740993_u64], "match": [9007199254740993_u64],
             "reject": [9007199254740992_u64]}
        ]));
    }

    #[test]
    fn test_leaf_matches_when_any_element_of_an_event_array_matches() {
        check(json!([
            {"leaf": ["b"], "match": [["a", "b"], [["c"], ["b"]]], "reject": [["a", "c"], []]},
            {"leaf": [{"prefix": "ad"}], "match": [["delete", "add"]], "reject": [["delete"]]},
            {"leaf": [{"anything-but": "a"}], "match": [["a", "b"]], "reject": [["a"], []]}
        ]));
    }

    #[test]
    fn test_object_pattern_inside_event_array_must_match_within_one_element() {
        let people = json!([{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}]);
        let event = json!({"detail": {"people": people}});
        let anna = json!({"detail": {"people": {"first": ["Anna"]}}});
        let anna_smith = json!({"detail": {"people": {"first": ["Anna"], "last": ["Smith"]}}});
        let anna_doe = json!({"detail": {"people": {"first": ["Anna"], "last": ["Doe"]}}});
        assert!(pattern(anna).matches(&event));
        assert!(pattern(anna_smith).matches(&event));
        assert!(!pattern(anna_doe).matches(&event));
    }

    #[test]
    fn test_prefix_and_suffix_match_strings_only_and_can_ignore_case() {
        check(json!([
            {"leaf": [{"prefix": "f."}], "match": ["f.txt"], "reject": ["a/f.txt", 5], "absent": false},
            {"leaf": [{"suffix": ".png"}], "match": ["cat.png"], "reject": ["cat.PNG", "cat.jpg"]},
            {"leaf": [{"prefix": {"equals-ignore-case": "EventB"}}], "match": ["eventbus"],
             "reject": ["EVENTS"]},
            {"leaf": [{"suffix": {"equals-ignore-case": ".png"}}], "match": ["A.PNG"],
             "reject": ["a.gif"]}
        ]));
    }

    #[test]
    fn test_equals_ignore_case_matches_any_casing_of_strings() {
        check(json!([
            {"leaf": [{"equals-ignore-case": "Add"}], "match": ["ADD", "add"], "reject": ["adds", 1]}
        ]));
    }

    #[test]
    fn test_wildcard_matches_runs_of_characters_and_escaped_stars() {
        check(json!([
            {"leaf": [{"wildcard": "a*b*c"}], "match": ["abc", "a-b-b-c"], "reject": ["abcx", "ac", 1]},
            {"leaf": [{"wildcard": "*/lib/*"}], "match": ["/usr/lib/x"], "reject": ["/usr/bin/x"]},
            {"leaf": [{"wildcard": "a\\*b"}], "match": ["a*b"], "reject": ["axb"]},
            {"leaf": [{"wildcard": "ab*ba"}], "match": ["abba", "ab-ba"], "reject": ["aba"]},
            {"leaf": [{"wildcard": "exact"}], "match": ["exact"], "reject": ["exactly"]}
        ]));
    }

    #[test]
    fn test_anything_but_excludes_literals_lists_and_operator_forms() {
        check(json!([
            {"leaf": [{"anything-but": "init"}], "match": ["running", 5, null], "reject": ["init"],
             "absent": false},
            {"leaf": [{"anything-but": ["stopped", "overloaded"]}], "match": ["running"],
             "reject": ["stopped", "overloaded"]},
            {"leaf": [{"anything-but": [100, 200]}], "match": [150, "100"], "reject": [200.0, 100]},
            {"leaf": [{"anything-but": {"prefix": "init"}}], "match": ["running", 5],
             "reject": ["initializing"], "absent": false},
            {"leaf": [{"anything-but": {"suffix": ".png"}}], "match": ["a.jpg"], "reject": ["a.png"]},
            {"leaf": [{"anything-but": {"equals-ignore-case": ["Stopped", "X"]}}],
             "match": ["running"], "reject": ["STOPPED", "x"]},
            {"leaf": [{"anything-but": {"wildcard": "*/lib/*"}}], "match": ["/usr/bin/x"],
             "reject": ["/usr/lib/x"]}
        ]));
    }

    #[test]
    fn test_numeric_ranges_respect_open_and_closed_bounds() {
        check(json!([
            {"leaf": [{"numeric": [">", 0, "<=", 5]}], "match": [0.5, 5],
             "reject": [0, 5.000001, "3", null], "absent": false},
            {"leaf": [{"numeric": [">=", 0, "<", 5]}], "match": [0, 4.9], "reject": [5, -0.1]},
            {"leaf": [{"numeric": ["=", 300]}], "match": [300.0, 3e2], "reject": [300.5]},
            {"leaf": [{"numeric": ["<", 10]}], "match": [-4, [20, 3]], "reject": [10, [20]]},
            {"leaf": [{"numeric": [">", 0]}], "match": [5e9], "reject": [6.0e9]}
        ]));
    }

    #[test]
    fn test_exists_separates_present_values_from_absent_paths() {
        check(json!([
            {"leaf": [{"exists": true}], "match": [null, "", 0, [1]], "reject": [[], {"n": 1}],
             "absent": false},
            {"leaf": [{"exists": false}], "match": [[], {"n": 1}], "reject": [null, "", 0, [1]],
             "absent": true}
        ]));
        let no_type = json!({"detail": {"activity": {"v1": {"type": [{"exists": false}]}}}});
        assert!(pattern(no_type.clone()).matches(&v1_event(Value::Null)));
        assert!(!pattern(no_type).matches(&v1_event(json!({"type": "add"}))));
    }

    #[test]
    fn test_nested_multi_key_pattern_requires_every_key_to_match() {
        let both = pattern(json!({"detail": {"account": [123], "activity": {"v1": {
            "type": ["add", "update"], "path": [{"prefix": "/docs/"}]}}}}));
        let event = |account: u64, kind: &str, path: &str| json!({"detail": {"account": account, "activity": {"v1": {"type": kind, "path": path}}}});
        assert!(both.matches(&event(123, "update", "/docs/a.txt")));
        assert!(!both.matches(&event(124, "update", "/docs/a.txt")));
        assert!(!both.matches(&event(123, "delete", "/docs/a.txt")));
        assert!(!both.matches(&event(123, "add", "/tmp/a.txt")));
    }

    #[test]
    fn test_or_matches_when_any_alternative_matches_alongside_other_keys() {
        let either = pattern(json!({"detail": {"account": [1], "$or": [
            {"subscription": [2]}, {"activity": {"v1": {"type": ["add"]}}}]}}));
        let added = json!({"detail": {"account": 1, "activity": {"v1": {"type": "add"}}}});
        assert!(either.matches(&json!({"detail": {"account": 1, "subscription": 2}})));
        assert!(either.matches(&added));
        assert!(!either.matches(&json!({"detail": {"account": 1, "subscription": 3}})));
        assert!(!either.matches(&json!({"detail": {"account": 9, "subscription": 2}})));
    }

    #[test]
    fn test_malformed_patterns_are_rejected_with_messages_naming_path_and_problem() {
        // Each key is (a fragment of) the message expected for the pattern it maps to.
        let cases = json!({
            "pattern must be a JSON object, found an array": [1],
            "pattern at `detail.activity.v1.type`: leaf values must be arrays, found a string":
                {"detail": {"activity": {"v1": {"type": "add"}}}},
            "pattern at `detail`: empty objects are not allowed": {"detail": {}},
            "pattern at `detail.x`: matcher arrays must not be empty": {"detail": {"x": []}},
            "pattern at `detail.x[1]`: unknown operator `regex` (supported: prefix,":
                {"detail": {"x": ["a", {"regex": "a.*"}]}},
            "pattern at `x[0]`: operator objects must have exactly one key, found 2":
                {"x": [{"prefix": "a", "suffix": "b"}]},
            "pattern at `x[0]`: matchers must be literals or objects, found an array of length 1":
                {"x": [["nested"]]},
            "`numeric` must alternate operators and numbers, as in [\">\", 0, \"<=\", 5], found \
                an array of length 3": {"x": [{"numeric": [">", 0, "<"]}]},
            "`numeric` must alternate operators and numbers, as in [\">\", 0, \"<=\", 5], found \
                a number": {"x": [{"numeric": 5}]},
            "unknown `numeric` operator `~`": {"x": [{"numeric": ["~", 0]}]},
            "`numeric` operators must be strings, found a number": {"x": [{"numeric": [0, 0]}]},
            "`numeric` operand of `>` must be a number, found a string":
                {"x": [{"numeric": [">", "0"]}]},
            "`numeric` allows at most two comparisons, found 3":
                {"x": [{"numeric": [">", 0, "<", 5, "<", 6]}]},
            "followed by an upper bound (`<` or `<=`)": {"x": [{"numeric": ["<", 5, ">", 0]}]},
            "`numeric` takes one comparison": {"x": [{"numeric": ["=", 5, "<", 6]}]},
            "`numeric` lower bound 5 must be below upper bound 1":
                {"x": [{"numeric": [">", 5, "<", 1]}]},
            "`numeric` numbers must lie between -5e9 and 5e9, found 6000000000":
                {"x": [{"numeric": [">", 6.0e9]}]},
            "pattern at `x[0]`: `exists` must be true or false, found a string":
                {"x": [{"exists": "yes"}]},
            "`prefix` must be a string or {\"equals-ignore-case\": string}, found a number":
                {"x": [{"prefix": 5}]},
            "`suffix` must be a string or {\"equals-ignore-case\": string}, found an array":
                {"x": [{"suffix": ["a"]}]},
            "`equals-ignore-case` must be a string, found null":
                {"x": [{"equals-ignore-case": null}]},
            "`wildcard` `a**b` has consecutive `*`": {"x": [{"wildcard": "a**b"}]},
            "`wildcard` `a\\b` may escape only `*` and `\\`": {"x": [{"wildcard": "a\\b"}]},
            "`anything-but` must be a string, a number, a list of only strings or only numbers":
                {"x": [{"anything-but": ["a", 1]}]},
            "or an operator object, found a boolean": {"x": [{"anything-but": true}]},
            "`anything-but/prefix` must not be empty": {"x": [{"anything-but": {"prefix": ""}}]},
            "`anything-but/wildcard` entries must be strings, found a number":
                {"x": [{"anything-but": {"wildcard": ["a*", 1]}}]},
            "`anything-but` takes prefix, suffix, equals-ignore-case or wildcard, found `regex`":
                {"x": [{"anything-but": {"regex": "x"}}]},
            "`anything-but` numbers must lie between -5e9 and 5e9":
                {"x": [{"anything-but": [1e10]}]},
            "pattern at `$or`: `$or` must be an array of two or more objects, found an array of \
                length 1": {"$or": [{"a": [1]}]},
            "pattern at `d.$or[1]`: `$or` alternatives must be objects, found a string":
                {"d": {"$or": [{"a": [1]}, "b"]}},
            "pattern at `d.$or[0].a`: matcher arrays must not be empty":
                {"d": {"$or": [{"a": []}, {"b": [1]}]}}
        });
        for (expected, malformed) in cases.as_object().into_iter().flatten() {
            let error = EventPattern::parse(malformed).expect_err("must be rejected");
            assert!(
                error.to_string().contains(expected.as_str()),
                "{malformed}: got `{error}`"
            );
        }
    }

    #[test]
    fn test_nesting_deeper_than_ten_levels_is_rejected() {
        let nest =
            |levels: usize| (0..levels).fold(json!(["leaf"]), |inner, _| json!({"k": inner}));
        assert!(EventPattern::parse(&nest(10)).is_ok());
        let too_deep = PatternError::TooDeep {
            path: ["k"; 11].join("."),
            max: 10,
        };
        assert_eq!(EventPattern::parse(&nest(11)), Err(too_deep));
    }

    #[test]
    fn test_more_than_2048_matchers_is_rejected() {
        let numbers = |count: usize| (0..count).map(|number| json!(number)).collect::<Vec<_>>();
        let too_many = Err(PatternError::TooManyMatchers { max: 2048 });
        assert!(EventPattern::parse(&json!({"x": numbers(2048)})).is_ok());
        assert_eq!(EventPattern::parse(&json!({"x": numbers(2049)})), too_many);
        assert_eq!(
            EventPattern::parse(&json!({"x": [{"anything-but": numbers(2049)}]})),
            too_many
        );
        assert_eq!(
            EventPattern::parse(&json!({"x": numbers(1024), "y": numbers(1025)})),
            too_many
        );
    }
}
