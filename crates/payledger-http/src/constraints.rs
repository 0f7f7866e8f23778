//! What the server enforces, written into the OpenAPI document, from the same constants the
//! validators use: id lengths and characters (`payledger_domain::ids`), the amount range
//! (`money::MAX_AMOUNT_MINOR`), the currencies (`Currency::ALL`) and text lengths (order names,
//! reasons, claim descriptions). A generated client or fuzzer can then produce valid requests.
//!
//! The document is post-processed as JSON: every property of a component schema and every
//! path or query parameter whose name is in the table gets its constraints (a schema-qualified
//! entry, `RefundBody.reason`, wins over a plain one).

use payledger_domain::id_limits::ID_LIMITS;
#[cfg(test)]
use payledger_domain::ids::ID_PATTERN;
use payledger_domain::money::{Currency, MAX_AMOUNT_MINOR};
use serde_json::{json, Map, Value};

/// The constraints of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    Id {
        min: usize,
        max: usize,
        pattern: &'static str,
    },
    Amount,
    Currency,
    Text {
        max: usize,
    },
}

impl Constraint {
    fn keywords(&self) -> Map<String, Value> {
        let value = match self {
            Constraint::Id { min, max, pattern } => {
                json!({"minLength": min, "maxLength": max, "pattern": pattern})
            }
            Constraint::Amount => json!({"minimum": 1, "maximum": MAX_AMOUNT_MINOR}),
            Constraint::Currency => {
                json!({"enum": Currency::ALL.iter().map(|c| c.code()).collect::<Vec<_>>()})
            }
            Constraint::Text { max } => json!({"minLength": 1, "maxLength": max}),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// The constraint of `field` in schema `schema` (a parameter has no schema), if the server
/// enforces one.
pub fn constraint_for(schema: Option<&str>, field: &str) -> Option<Constraint> {
    use payledger_domain::{claim, operations, order};
    let qualified = schema.map(|s| format!("{s}.{field}"));
    let text = |max| Some(Constraint::Text { max });
    match qualified.as_deref() {
        Some("RefundBody.reason") => return text(order::MAX_REASON_CHARS),
        Some("CancelEnrollmentBody.reason")
        | Some("SuspendBody.reason")
        | Some("ExternalPaymentBody.reason") => return text(operations::MAX_REASON_CHARS),
        Some("ResolveBody.reason") | Some("AppealBody.reason") => {
            return text(claim::MAX_REASON_CHARS)
        }
        Some("FileClaimBody.description") | Some("StatementBody.text") => {
            return text(claim::MAX_DESCRIPTION_CHARS)
        }
        Some("RefundDiscrepancyResolveBody.note") => {
            return text(order::MAX_DISCREPANCY_NOTE_CHARS)
        }
        _ => {}
    }
    if let Some(limits) = ID_LIMITS.iter().find(|limits| limits.kind == field) {
        return Some(Constraint::Id {
            min: limits.min_chars,
            max: limits.max_chars,
            pattern: limits.pattern,
        });
    }
    match field {
        "amount" => Some(Constraint::Amount),
        "currency" => Some(Constraint::Currency),
        "orderName" => text(order::MAX_ORDER_NAME_CHARS),
        _ => None,
    }
}

/// Adds the constraints to a serialised OpenAPI document.
pub fn annotate(document: &mut Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (schema_name, schema) in schemas.iter_mut() {
            let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (field, property) in properties.iter_mut() {
                if let Some(constraint) = constraint_for(Some(schema_name), field) {
                    add_keywords(property, &constraint);
                }
            }
        }
    }
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(operations) = item.as_object_mut() else {
                continue;
            };
            for operation in operations.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    let located = matches!(parameter["in"].as_str(), Some("path" | "query"));
                    // Path parameters are named as in the route pattern (`order_id`).
                    let name = camel_case(parameter["name"].as_str().unwrap_or_default());
                    if let (true, Some(constraint)) = (located, constraint_for(None, &name)) {
                        if let Some(schema) = parameter.get_mut("schema") {
                            add_keywords(schema, &constraint);
                        }
                    }
                }
            }
        }
    }
}

/// `order_id` → `orderId`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Adds the keywords to a property's schema; an optional property (`oneOf`/`anyOf` with null,
/// or a `$ref`) gets them on its non-null branch, or stays as it is.
fn add_keywords(schema: &mut Value, constraint: &Constraint) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("type") {
        for (key, value) in constraint.keywords() {
            object.insert(key, value);
        }
        return;
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(branches) = object.get_mut(combinator).and_then(Value::as_array_mut) {
            for branch in branches {
                if branch.get("type").is_some_and(|t| t != "null") {
                    add_keywords(branch, constraint);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::ids::OrderId;

    #[test]
    fn the_pattern_and_the_parsers_agree() {
        let pattern_allows = |c: char| c.is_ascii_alphanumeric() || "._=-".contains(c);
        for c in (0u8..128).map(char::from) {
            let id = format!("abcdef{c}");
            assert_eq!(
                OrderId::parse(id.clone()).is_ok(),
                pattern_allows(c),
                "{id:?}"
            );
        }
        assert_eq!(ID_PATTERN, "^[A-Za-z0-9._=-]+$");
    }

    #[test]
    fn fields_get_the_limits_their_validators_use() {
        assert_eq!(
            constraint_for(Some("PlaceOrderBody"), "orderId"),
            Some(Constraint::Id {
                min: OrderId::MIN_CHARS,
                max: OrderId::MAX_CHARS,
                pattern: ID_PATTERN,
            })
        );
        assert_eq!(
            constraint_for(Some("RefundBody"), "reason"),
            Some(Constraint::Text {
                max: payledger_domain::order::MAX_REASON_CHARS
            })
        );
        assert_eq!(constraint_for(None, "amount"), Some(Constraint::Amount));
        assert_eq!(constraint_for(None, "note"), None);
        let mut document = json!({
            "components": {"schemas": {"PlaceOrderBody": {"type": "object", "properties": {
                "amount": {"type": "integer"},
                "currency": {"type": "string"},
                "orderId": {"type": ["string", "null"]},
            }}}},
            "paths": {"/v1/orders": {"get": {"parameters": [
                {"in": "query", "name": "customerId", "schema": {"type": "string"}}
            ]}}}
        });
        annotate(&mut document);
        let body = &document["components"]["schemas"]["PlaceOrderBody"]["properties"];
        assert_eq!(body["amount"]["maximum"], MAX_AMOUNT_MINOR);
        assert_eq!(body["currency"]["enum"][0], "KRW");
        assert_eq!(body["orderId"]["maxLength"], 64);
        let parameter = &document["paths"]["/v1/orders"]["get"]["parameters"][0];
        assert_eq!(parameter["schema"]["pattern"], ID_PATTERN);
        assert_eq!(camel_case("order_id"), "orderId");
    }
}
