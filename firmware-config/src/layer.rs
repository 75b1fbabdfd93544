//! Layering: built-in defaults, then the station's file, then environment
//! variables, merged as TOML tables before anything is typed.
//!
//! Merging untyped tables first means an override can touch one key deep
//! inside a section without restating the section, and the typed pass that
//! follows reports every error against the merged key path.

use toml::{Table, Value};

/// Prefix of environment overrides: `APPLIANCE__MQTT__URL`.
pub const ENV_PREFIX: &str = "APPLIANCE__";

/// Merges `over` into `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Parses an environment value as a TOML value when it is one (numbers,
/// booleans, arrays, quoted strings), else takes it as a plain string.
fn env_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Builds the override table from `APPLIANCE__SECTION__KEY=value` pairs.
/// Keys are lower-cased; returns the variables that were used.
pub fn env_overrides<I>(vars: I) -> (Table, Vec<String>)
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = Table::new();
    let mut used = Vec::new();
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path
            .split("__")
            .filter(|k| !k.is_empty())
            .map(|k| k.to_ascii_lowercase())
            .collect();
        let Some((last, parents)) = keys.split_last() else {
            continue;
        };
        let mut at = &mut table;
        for k in parents {
            let entry = at
                .entry(k.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            at = entry.as_table_mut().expect("just made a table");
        }
        at.insert(last.clone(), env_value(&raw));
        used.push(name);
    }
    (table, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_reaches_nested_keys_and_types_values() {
        let (t, used) = env_overrides([
            ("APPLIANCE__MQTT__URL".into(), "mqtt://b:1883".into()),
            ("APPLIANCE__BATCHING__MAX_BATCH".into(), "8".into()),
            ("PATH".into(), "/bin".into()),
        ]);
        assert_eq!(used.len(), 2);
        assert_eq!(t["mqtt"]["url"].as_str(), Some("mqtt://b:1883"));
        assert_eq!(t["batching"]["max_batch"].as_integer(), Some(8));
    }

    #[test]
    fn merge_keeps_untouched_keys() {
        let mut base: Table = "[a]\nx = 1\ny = 2".parse().unwrap();
        merge(&mut base, "[a]\ny = 3".parse().unwrap());
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(3));
    }
}
