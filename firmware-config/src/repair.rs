//! Setting aside a key that does not type, so loading can go on and report
//! the problems after it too: an integrator fixes a file in one pass, not
//! one error per run.
//!
//! The bad value is replaced by the built-in default at the same place (for a
//! list element, the default list's first element's) or, where there is no
//! default, removed. The result is only ever used to find more problems:
//! a configuration with a set-aside key is refused.

use toml::{Table, Value};

/// One step of a key path.
#[derive(Debug, Clone)]
pub enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    /// The step a serde path segment names; `None` for enum variants and
    /// unknown segments, which have no place of their own in the table.
    pub fn from_segment(s: &serde_path_to_error::Segment) -> Option<Self> {
        match s {
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        }
    }
}

fn child<'a>(v: &'a Value, step: &Step) -> Option<&'a Value> {
    match (v, step) {
        (Value::Table(t), Step::Key(k)) => t.get(k),
        (Value::Array(a), Step::Index(i)) => a.get(*i).or_else(|| a.first()),
        _ => None,
    }
}

fn child_mut<'a>(v: &'a mut Value, step: &Step) -> Option<&'a mut Value> {
    match (v, step) {
        (Value::Table(t), Step::Key(k)) => t.get_mut(k),
        (Value::Array(a), Step::Index(i)) => a.get_mut(*i),
        _ => None,
    }
}

/// Replaces (or removes) the value at `path`. Returns `false` when nothing
/// could be changed, so the caller stops instead of finding the same
/// problem again.
pub fn set_aside(table: &mut Table, defaults: &Table, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let default = {
        let mut at = Some(Value::Table(defaults.clone()));
        for step in path {
            at = at.as_ref().and_then(|v| child(v, step)).cloned();
        }
        at
    };
    let mut root = Value::Table(std::mem::take(table));
    let mut at = Some(&mut root);
    for step in parents {
        at = at.and_then(|v| child_mut(v, step));
    }
    let changed = match (at, last) {
        (Some(Value::Table(t)), Step::Key(k)) => match (t.get(k), default) {
            (Some(old), Some(d)) if *old != d => {
                t.insert(k.clone(), d);
                true
            }
            (Some(_), _) => t.remove(k).is_some(),
            // A required key that is missing: the default fills it.
            (None, Some(d)) => {
                t.insert(k.clone(), d);
                true
            }
            (None, None) => false,
        },
        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => match default {
            Some(d) if a[*i] != d => {
                a[*i] = d;
                true
            }
            _ => false,
        },
        _ => false,
    };
    if let Value::Table(t) = root {
        *table = t;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_gives_way_to_the_default_and_an_unknown_key_goes() {
        let defaults: Table = "[a]\nx = 1\n[[c]]\nid = \"d\"\nn = 2\n".parse().unwrap();
        let mut t: Table = "[a]\nx = \"one\"\ntypo = 3\n[[c]]\nid = \"e\"\nn = \"two\"\n"
            .parse()
            .unwrap();
        let key = |k: &str| Step::Key(k.into());
        assert!(set_aside(&mut t, &defaults, &[key("a"), key("x")]));
        assert_eq!(t["a"]["x"].as_integer(), Some(1));
        assert!(set_aside(&mut t, &defaults, &[key("a"), key("typo")]));
        assert!(t["a"].get("typo").is_none());
        assert!(set_aside(
            &mut t,
            &defaults,
            &[key("c"), Step::Index(0), key("n")]
        ));
        assert_eq!(t["c"][0]["n"].as_integer(), Some(2));
        assert_eq!(t["c"][0]["id"].as_str(), Some("e"));
        assert!(!set_aside(&mut t, &defaults, &[key("zz"), key("q")]));
    }
}
