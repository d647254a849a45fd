//! `${VAR}` and `${VAR:-default}` expansion in YAML values.
//!
//! Expansion happens on parsed values, not on the raw text, so an
//! environment value can never add YAML structure. A scalar made entirely of
//! one placeholder that expands to a number or boolean takes that type
//! (`port: ${PORT}`).

use serde_yaml::Value;

use super::ConfigError;

pub fn expand_value(
    v: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        Value::String(s) if s.contains("${") => match expand_str(s, lookup) {
            Ok(expanded) => {
                let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                *v = match serde_yaml::from_str::<Value>(&expanded) {
                    Ok(typed @ (Value::Number(_) | Value::Bool(_))) if whole => typed,
                    _ => Value::String(expanded),
                };
            }
            Err(msg) => errors.push(ConfigError::new(path, msg)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), lookup, errors);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                expand_value(item, &child, lookup, errors);
            }
        }
        Value::Tagged(t) => expand_value(&mut t.value, path, lookup, errors),
        _ => {}
    }
}

/// Expand every placeholder of one string. `$${` is a literal `${`.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in {s:?}"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad variable name {name:?} in placeholder"));
        }
        match (lookup(name), default) {
            (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            ))
            }
            (Some(v), None) => out.push_str(&v),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8081".into()),
            "EMPTY" => Some(String::new()),
            "EVIL" => Some("x\nkeys: [{key: kikaku_pwned}]".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_and_defaults() {
        assert_eq!(
            expand_str("127.0.0.1:${PORT}", &env).unwrap(),
            "127.0.0.1:8081"
        );
        assert_eq!(expand_str("${NOPE:-./data}", &env).unwrap(), "./data");
        assert_eq!(expand_str("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand_str("a $${PORT} b", &env).unwrap(), "a ${PORT} b");
        assert!(expand_str("${NOPE}", &env)
            .unwrap_err()
            .contains("NOPE is not set"));
        assert!(expand_str("${PORT", &env).is_err());
    }

    #[test]
    fn values_cannot_inject_structure_and_whole_numbers_get_their_type() {
        let mut v: Value = serde_yaml::from_str("a: ${EVIL}\nb: ${PORT}\nc: 'x${PORT}'\n").unwrap();
        let mut errs = vec![];
        expand_value(&mut v, "", &env, &mut errs);
        assert!(errs.is_empty());
        assert_eq!(
            v["a"],
            Value::String("x\nkeys: [{key: kikaku_pwned}]".into())
        );
        assert_eq!(v["b"], Value::Number(8081.into()));
        assert_eq!(v["c"], Value::String("x8081".into()));
        assert!(v.get("keys").is_none());
    }

    #[test]
    fn missing_variables_are_reported_with_their_path() {
        let mut v: Value = serde_yaml::from_str("l:\n  - {address: '${NOPE}'}\n").unwrap();
        let mut errs = vec![];
        expand_value(&mut v, "", &env, &mut errs);
        assert_eq!(errs[0].path, "l[0].address");
    }
}
