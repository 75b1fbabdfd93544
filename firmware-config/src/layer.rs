//! Layering: built-in defaults, then the station's file, then environment
//! variables, merged as TOML tables before anything is typed.
//!
//! Merging untyped tables first means an override can touch one key deep
//! inside a section without restating the section, and the typed pass that
//! follows reports every error against the merged key path.

use toml::{Table, Value};

/// Prefix of environment overrides: `APPLIANCE__MQTT__URL`.
pub const ENV_PREFIX: &str = "APPLIANCE__";

/// Merges `over` into `base`: tables merge key by key, anything else
/// replaces. A table whose keys are all numbers merges into an array element
/// by element (`APPLIANCE__CAMERAS__0__MM_PER_PX` sets the first camera's
/// calibration); index `len` appends. Returns the dotted keys of indexes
/// beyond that, which were not applied.
pub fn merge(base: &mut Table, over: Table) -> Vec<String> {
    let mut refused = Vec::new();
    merge_at(base, over, "", &mut refused);
    refused
}

fn merge_at(base: &mut Table, over: Table, at: &str, refused: &mut Vec<String>) {
    for (key, value) in over {
        let here = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_at(b, o, &here, refused),
            (Some(Value::Array(b)), Value::Table(o)) if is_index_table(&o) => {
                merge_indexed(b, o, &here, refused)
            }
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn is_index_table(t: &Table) -> bool {
    !t.is_empty() && t.keys().all(|k| k.parse::<usize>().is_ok())
}

fn merge_indexed(base: &mut Vec<Value>, over: Table, at: &str, refused: &mut Vec<String>) {
    let mut items: Vec<(usize, Value)> = over
        .into_iter()
        .map(|(k, v)| (k.parse().expect("checked numeric"), v))
        .collect();
    items.sort_by_key(|(i, _)| *i);
    for (i, value) in items {
        let here = format!("{at}[{i}]");
        let len = base.len();
        match (base.get_mut(i), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_at(b, o, &here, refused),
            (Some(slot), v) => *slot = v,
            (None, v) if i == len => base.push(v),
            (None, _) => refused.push(here),
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

/// One environment variable that overrides a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// The variable, e.g. `APPLIANCE__BATCHING__MAX_BATCH`.
    pub var: String,
    /// The key it sets as problems name it, e.g. `batching.max_batch` or
    /// `cameras[0].mm_per_px`.
    pub key: String,
}

/// Builds the override table from `APPLIANCE__SECTION__KEY=value` pairs.
/// Keys are lower-cased; a numeric part indexes an array
/// (`APPLIANCE__CAMERAS__0__ID`). Returns the variables that were used.
pub fn env_overrides<I>(vars: I) -> (Table, Vec<EnvOverride>)
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
        let mut key = String::new();
        for k in &keys {
            if k.parse::<usize>().is_ok() {
                key.push_str(&format!("[{k}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
        }
        used.push(EnvOverride { var: name, key });
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
        assert_eq!(used[1].key, "batching.max_batch");
        assert_eq!(t["mqtt"]["url"].as_str(), Some("mqtt://b:1883"));
        assert_eq!(t["batching"]["max_batch"].as_integer(), Some(8));
    }

    #[test]
    fn merge_keeps_untouched_keys() {
        let mut base: Table = "[a]\nx = 1\ny = 2".parse().unwrap();
        assert!(merge(&mut base, "[a]\ny = 3".parse().unwrap()).is_empty());
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(3));
    }
}

#[cfg(test)]
mod array_tests {
    use super::*;

    #[test]
    fn numeric_keys_reach_array_elements() {
        let mut base: Table = "[[cameras]]\nid = \"a\"\nmm_per_px = 0.1\n[[cameras]]\nid = \"b\"\n"
            .parse()
            .unwrap();
        let (over, used) = env_overrides([
            ("APPLIANCE__CAMERAS__1__MM_PER_PX".into(), "0.05".into()),
            ("APPLIANCE__CAMERAS__2__ID".into(), "c".into()),
            ("APPLIANCE__CAMERAS__7__ID".into(), "z".into()),
        ]);
        assert_eq!(used[0].key, "cameras[1].mm_per_px");
        let refused = merge(&mut base, over);
        assert_eq!(refused, ["cameras[7]"]);
        let cams = base["cameras"].as_array().unwrap();
        assert_eq!(cams.len(), 3);
        assert_eq!(cams[0]["mm_per_px"].as_float(), Some(0.1));
        assert_eq!(cams[1]["id"].as_str(), Some("b"));
        assert_eq!(cams[1]["mm_per_px"].as_float(), Some(0.05));
        assert_eq!(cams[2]["id"].as_str(), Some("c"));
    }
}
