//! Stripe's request encoding: `application/x-www-form-urlencoded` with bracket notation
//! (`metadata[order_id]=o-1`, `expand[]=latest_charge`, `expand[0]=latest_charge`,
//! `payment_method_options[card][request_three_d_secure]=any`), read into a JSON tree whose leaves
//! are strings, as Stripe's own parser sees them. Query strings of `GET`s use the same notation.

use serde_json::{Map, Value};

/// Most parameters one request may carry; Stripe's own objects have far fewer.
const MAX_PARAMS: usize = 256;
/// Deepest bracket nesting accepted (`a[b][c][d]`).
const MAX_DEPTH: usize = 5;

/// Why a body could not be read as Stripe parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormError(pub String);

/// Parses `raw` (a body or a query string) into an object tree.
pub(crate) fn parse(raw: &[u8]) -> Result<Map<String, Value>, FormError> {
    let mut root = Map::new();
    for (count, (key, value)) in form_urlencoded::parse(raw).enumerate() {
        if count >= MAX_PARAMS {
            return Err(FormError(format!("more than {MAX_PARAMS} parameters")));
        }
        let path = split_key(&key)?;
        insert(&mut root, &path, value.into_owned())?;
    }
    Ok(root)
}

/// One step of a bracketed key: a name, or an array position (`[]` appends, `[3]` is index 3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name(String),
    Append,
    Index(usize),
}

fn split_key(key: &str) -> Result<Vec<Step>, FormError> {
    let invalid = || FormError(format!("Invalid parameter name: {key}"));
    let (head, mut rest) = match key.find('[') {
        Some(at) => (&key[..at], &key[at..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return Err(invalid());
    }
    let mut steps = vec![Step::Name(head.to_owned())];
    while !rest.is_empty() {
        let inner_end = rest.find(']').ok_or_else(invalid)?;
        if !rest.starts_with('[') {
            return Err(invalid());
        }
        let inner = &rest[1..inner_end];
        rest = &rest[inner_end + 1..];
        let step = if inner.is_empty() {
            Step::Append
        } else if inner.bytes().all(|b| b.is_ascii_digit()) && inner.len() <= 3 {
            Step::Index(inner.parse().map_err(|_| invalid())?)
        } else {
            Step::Name(inner.to_owned())
        };
        steps.push(step);
        if steps.len() > MAX_DEPTH {
            return Err(FormError(format!("{key} is nested too deeply")));
        }
    }
    Ok(steps)
}

fn insert(root: &mut Map<String, Value>, path: &[Step], value: String) -> Result<(), FormError> {
    let conflict = || FormError("Invalid array or hash parameter".to_owned());
    let Some((Step::Name(first), rest)) = path.split_first() else {
        return Err(conflict());
    };
    let mut slot = root.entry(first.clone()).or_insert(Value::Null);
    for step in rest {
        slot = match step {
            Step::Name(name) => {
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(map) = slot else {
                    return Err(conflict());
                };
                map.entry(name.clone()).or_insert(Value::Null)
            }
            Step::Append | Step::Index(_) => {
                if slot.is_null() {
                    *slot = Value::Array(Vec::new());
                }
                let Value::Array(items) = slot else {
                    return Err(conflict());
                };
                let index = match step {
                    Step::Index(index) => *index,
                    _ => items.len(),
                };
                // Indices arrive in order from every official library; a gap is refused
                // rather than padded, so no parameter is invented.
                if index > items.len() {
                    return Err(conflict());
                }
                if index == items.len() {
                    items.push(Value::Null);
                }
                &mut items[index]
            }
        };
    }
    if !slot.is_null() {
        return Err(FormError(format!(
            "the parameter {} was given twice",
            render_path(path)
        )));
    }
    *slot = Value::String(value);
    Ok(())
}

fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for (i, step) in path.iter().enumerate() {
        match step {
            Step::Name(name) if i == 0 => out.push_str(name),
            Step::Name(name) => out.push_str(&format!("[{name}]")),
            Step::Append => out.push_str("[]"),
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brackets_become_objects_and_arrays() {
        let parsed = parse(
            b"amount=2000&currency=usd&metadata[order_id]=o-1&expand[]=latest_charge&expand[]=x\
              &payment_method_types[0]=card&payment_method_options[card][request_three_d_secure]=any",
        )
        .unwrap();
        assert_eq!(
            Value::Object(parsed),
            json!({
                "amount": "2000",
                "currency": "usd",
                "metadata": {"order_id": "o-1"},
                "expand": ["latest_charge", "x"],
                "payment_method_types": ["card"],
                "payment_method_options": {"card": {"request_three_d_secure": "any"}},
            })
        );
    }

    #[test]
    fn percent_encoding_and_plus_are_decoded() {
        let parsed = parse(b"description=a+b%26c&metadata%5Bk%5D=v").unwrap();
        assert_eq!(parsed["description"], json!("a b&c"));
        assert_eq!(parsed["metadata"], json!({"k": "v"}));
    }

    #[test]
    fn malformed_or_conflicting_keys_are_refused() {
        for raw in [
            "[x]=1",
            "a[b=1",
            "a=1&a[b]=2",
            "a[b]=1&a[]=2",
            "a=1&a=2",
            "e[2]=x",
            "a[b][c][d][e][f]=1",
        ] {
            assert!(parse(raw.as_bytes()).is_err(), "{raw}");
        }
    }
}
