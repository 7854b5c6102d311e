//! The JSON-logic subset `@auditLog`'s `advanced` filter takes: `var`, `and`, `or`, `>`, `>=`,
//! `<`, `<=`, `==`, `in`.
//!
//! A filter is compiled first, so an unknown operator or a wrong number of arguments is refused
//! even when no record would have been looked at. Comparisons follow JSON-logic (JavaScript)
//! loosely: numbers compare numerically, strings lexicographically, a number and a numeric
//! string as numbers; anything else does not compare. `<` and `<=` also take three arguments
//! (`a < b < c`). `in` is membership in a list, or substring of a string.

use std::cmp::Ordering;

use serde_json::Value;

/// A compiled filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    List(Vec<Expr>),
    Var {
        path: String,
        default: Option<Box<Expr>>,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(CompareOp, Vec<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
}

/// The ordering operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl CompareOp {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::GreaterOrEqual => ordering != Ordering::Less,
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::LessOrEqual => ordering != Ordering::Greater,
        }
    }
}

/// Compiles a JSON-logic rule.
///
/// # Errors
/// A message naming what is wrong: an unknown operator, an object with other than one key, a
/// wrong number of arguments, a `var` whose path is not a string.
pub fn compile(rule: &Value) -> Result<Expr, String> {
    match rule {
        Value::Array(items) => Ok(Expr::List(
            items.iter().map(compile).collect::<Result<_, _>>()?,
        )),
        Value::Object(fields) => {
            let mut entries = fields.iter();
            let (Some((operator, args)), None) = (entries.next(), entries.next()) else {
                return Err(format!(
                    "a JSON-logic operation must be an object with exactly one operator, got {} keys",
                    fields.len()
                ));
            };
            compile_operation(operator, args)
        }
        literal => Ok(Expr::Literal(literal.clone())),
    }
}

fn compile_operation(operator: &str, args: &Value) -> Result<Expr, String> {
    // JSON-logic lets a single argument stand without its array.
    let args: Vec<&Value> = match args {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let arity = |allowed: &[usize]| -> Result<(), String> {
        if allowed.contains(&args.len()) {
            Ok(())
        } else {
            let expected: Vec<String> = allowed.iter().map(usize::to_string).collect();
            Err(format!(
                "operator '{operator}' takes {} arguments, got {}",
                expected.join(" or "),
                args.len()
            ))
        }
    };
    let compiled = |args: &[&Value]| -> Result<Vec<Expr>, String> {
        args.iter().map(|arg| compile(arg)).collect()
    };
    match operator {
        "var" => {
            arity(&[1, 2])?;
            let path = match args[0] {
                Value::String(path) => path.clone(),
                Value::Number(number) => number.to_string(),
                other => return Err(format!("'var' takes a path string, got {other}")),
            };
            let default = match args.get(1) {
                Some(default) => Some(Box::new(compile(default)?)),
                None => None,
            };
            Ok(Expr::Var { path, default })
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!("operator '{operator}' takes at least 1 argument"));
            }
            let operands = compiled(&args)?;
            Ok(if operator == "and" {
                Expr::And(operands)
            } else {
                Expr::Or(operands)
            })
        }
        ">" | ">=" => {
            arity(&[2])?;
            let op = if operator == ">" {
                CompareOp::Greater
            } else {
                CompareOp::GreaterOrEqual
            };
            Ok(Expr::Compare(op, compiled(&args)?))
        }
        "<" | "<=" => {
            arity(&[2, 3])?;
            let op = if operator == "<" {
                CompareOp::Less
            } else {
                CompareOp::LessOrEqual
            };
            Ok(Expr::Compare(op, compiled(&args)?))
        }
        "==" | "in" => {
            arity(&[2])?;
            let mut operands = compiled(&args)?.into_iter();
            let (Some(left), Some(right)) = (operands.next(), operands.next()) else {
                return Err(format!("operator '{operator}' takes 2 arguments"));
            };
            Ok(if operator == "==" {
                Expr::Equal(Box::new(left), Box::new(right))
            } else {
                Expr::In(Box::new(left), Box::new(right))
            })
        }
        unknown => Err(format!(
            "unknown operator '{unknown}' (supported: var, and, or, >, >=, <, <=, ==, in)"
        )),
    }
}

/// Evaluates `expr`; `resolve` answers a `var` path (`Value::Null` when absent).
pub fn evaluate(expr: &Expr, resolve: &dyn Fn(&str) -> Value) -> Value {
    match expr {
        Expr::Literal(value) => value.clone(),
        Expr::List(items) => Value::Array(items.iter().map(|i| evaluate(i, resolve)).collect()),
        Expr::Var { path, default } => match resolve(path) {
            Value::Null => default
                .as_ref()
                .map_or(Value::Null, |default| evaluate(default, resolve)),
            found => found,
        },
        Expr::And(operands) => {
            let mut last = Value::Bool(true);
            for operand in operands {
                last = evaluate(operand, resolve);
                if !truthy(&last) {
                    return last;
                }
            }
            last
        }
        Expr::Or(operands) => {
            let mut last = Value::Bool(false);
            for operand in operands {
                last = evaluate(operand, resolve);
                if truthy(&last) {
                    return last;
                }
            }
            last
        }
        Expr::Compare(op, operands) => {
            let values: Vec<Value> = operands.iter().map(|o| evaluate(o, resolve)).collect();
            let holds = values
                .windows(2)
                .all(|pair| compare(&pair[0], &pair[1]).is_some_and(|ord| op.holds(ord)));
            Value::Bool(holds)
        }
        Expr::Equal(left, right) => Value::Bool(loose_equal(
            &evaluate(left, resolve),
            &evaluate(right, resolve),
        )),
        Expr::In(needle, haystack) => {
            let needle = evaluate(needle, resolve);
            let found = match evaluate(haystack, resolve) {
                Value::Array(items) => items.iter().any(|item| loose_equal(&needle, item)),
                Value::String(text) => match &needle {
                    Value::String(part) => text.contains(part.as_str()),
                    Value::Number(number) => text.contains(&number.to_string()),
                    _ => false,
                },
                _ => false,
            };
            Value::Bool(found)
        }
    }
}

/// JSON-logic truthiness: false, null, 0, "" and [] are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// How two values order, if they do.
pub fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            as_number(left)?.partial_cmp(&as_number(right)?)
        }
        _ => None,
    }
}

fn loose_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            compare(left, right) == Some(Ordering::Equal)
        }
        (Value::Number(_), Value::Number(_)) => compare(left, right) == Some(Ordering::Equal),
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rule: Value, data: &Value) -> bool {
        let expr = compile(&rule).expect("rule compiles");
        let resolve = |path: &str| {
            path.split('.')
                .try_fold(data, |value, key| value.get(key))
                .cloned()
                .unwrap_or(Value::Null)
        };
        truthy(&evaluate(&expr, &resolve))
    }

    #[test]
    fn test_operators() {
        let data =
            json!({"ts": 1000, "payload": {"ip": "10.9.4.29", "message": "Added Slack source"}});
        assert!(run(json!({">": [{"var": "ts"}, 999]}), &data));
        assert!(!run(json!({">": [{"var": "ts"}, 1000]}), &data));
        assert!(run(json!({">=": [{"var": "ts"}, 1000]}), &data));
        assert!(run(json!({"<": [{"var": "ts"}, 1001]}), &data));
        assert!(run(json!({"<=": [999, {"var": "ts"}, 1000]}), &data));
        assert!(!run(json!({"<": [1000, {"var": "ts"}, 2000]}), &data));
        assert!(run(json!({"==": [{"var": "ts"}, "1000"]}), &data));
        assert!(run(
            json!({"in": [{"var": "payload.ip"}, ["10.9.4.29", "1.1.1.1"]]}),
            &data
        ));
        assert!(run(
            json!({"in": ["Slack", {"var": "payload.message"}]}),
            &data
        ));
        assert!(!run(
            json!({"in": ["Dropbox", {"var": "payload.message"}]}),
            &data
        ));
        assert!(run(
            json!({"or": [{"==": [{"var": "missing"}, 1]}, {"and": [true, {">": [{"var": "ts"}, 1]}]}]}),
            &data
        ));
        assert!(!run(json!({">": [{"var": "missing"}, 1]}), &data));
        assert!(run(json!({"==": [{"var": ["missing", 7]}, 7]}), &data));
    }

    #[test]
    fn test_bad_rules_are_refused() {
        for (rule, named) in [
            (json!({"like": [1, 2]}), "like"),
            (json!({">": [1]}), "takes 2"),
            (json!({"<": [1, 2, 3, 4]}), "takes 2 or 3"),
            (json!({">": [1, 2], "<": [1, 2]}), "exactly one"),
            (json!({"and": []}), "at least 1"),
            (json!({"var": {"a": 1}}), "path"),
            (json!({"and": [{"nope": 1}]}), "nope"),
        ] {
            let error = compile(&rule).expect_err("bad rule");
            assert!(error.contains(named), "{rule}: {error}");
        }
    }
}
