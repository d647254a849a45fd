//! Reading a config file: YAML syntax → `${VAR}` expansion → typed structs
//! (the first structural error, with its path) → semantic checks (all of them).

use std::path::Path;

use serde_yaml::Value;

use super::env::expand_value;
use super::validate::validate;
use super::{Config, ConfigError, ConfigErrors};

pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

pub fn load_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut value: Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigErrors(vec![ConfigError::new("", format!("YAML syntax: {e}"))]))?;
    if value.is_null() {
        return Err(ConfigErrors(vec![ConfigError::new(
            "",
            "the file is empty",
        )]));
    }
    let mut errors = Vec::new();
    expand_value(&mut value, "", lookup, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigErrors(vec![ConfigError::new(path, e.into_inner().to_string())])
    })?;
    let errors = validate(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const MINIMAL: &str = "listeners:\n  public: {address: '127.0.0.1:0'}\n";

    #[test]
    fn minimal_file_loads_with_defaults() {
        let c = load_str(MINIMAL, &no_env).unwrap();
        assert_eq!(c.server.threads, 2);
        assert!(c.routes.is_empty());
    }

    #[test]
    fn unknown_field_names_its_path() {
        let text = format!("{MINIMAL}routes:\n  - name: r\n    match: {{path_prefix: /}}\n    handler: {{type: not_implemented, message: m}}\n    colour: blue\n");
        let e = load_str(&text, &no_env).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.0[0].path.starts_with("routes[0]"), "{e}");
        assert!(e.0[0].message.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn nested_filter_errors_carry_the_design_path() {
        let text = format!(
            "{MINIMAL}routes:\n  - {{name: a, match: {{path_prefix: /a}}, handler: {{type: not_implemented, message: m}}}}\n  - {{name: b, match: {{path_prefix: /b}}, handler: {{type: not_implemented, message: m}}}}\n  - name: c\n    match: {{path_prefix: /c}}\n    handler: {{type: not_implemented, message: m}}\n    filters:\n      - key_auth: {{}}\n      - rate_limit: {{per_minute: 0}}\n"
        );
        let e = load_str(&text, &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "routes[2].filters[1].rate_limit.per_minute: must be > 0"
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let text = format!("{MINIMAL}server: {{threads: many}}\n");
        let e = load_str(&text, &no_env).unwrap_err();
        assert_eq!(e.0[0].path, "server.threads");
    }

    #[test]
    fn bad_yaml_and_empty_files_are_errors() {
        assert!(load_str("listeners: [", &no_env)
            .unwrap_err()
            .to_string()
            .contains("YAML syntax"));
        assert!(load_str("", &no_env)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
