//! Work done once per recipe version.
//!
//! Everything that depends only on the recipe's standard (its token
//! embeddings, how much of it fits the model's window, which clauses each
//! defect may cite) is computed on the first frame judged under that standard
//! and reused for every frame after. Entries are keyed by recipe name and
//! remember the standard's sha256: a recipe whose text changed replaces
//! exactly its own entry, other recipes keep theirs. The least recently used
//! recipe is dropped when the cache is full.

use std::collections::HashMap;

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Entries computed (first use of a recipe version).
    pub misses: u64,
    /// Entries replaced because their recipe's standard changed.
    pub invalidated: u64,
    /// Entries dropped to make room.
    pub evicted: u64,
}

struct Entry<T> {
    version: String,
    last_used: u64,
    value: T,
}

/// Per-recipe cache of values derived from a standard.
pub struct RecipeCache<T> {
    capacity: usize,
    clock: u64,
    entries: HashMap<String, Entry<T>>,
    stats: CacheStats,
}

impl<T> RecipeCache<T> {
    /// A cache holding at most `capacity` recipes (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            stats: CacheStats::default(),
        }
    }

    /// The value for `recipe` at `version`, computing it with `compute` when
    /// the recipe is new or its version changed. A failed computation leaves
    /// the cache as it was.
    pub fn get_or_try_insert<E>(
        &mut self,
        recipe: &str,
        version: &str,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<&T, E> {
        self.clock += 1;
        let clock = self.clock;
        let fresh = matches!(self.entries.get(recipe), Some(e) if e.version == version);
        if fresh {
            self.stats.hits += 1;
        } else {
            let value = compute()?;
            self.stats.misses += 1;
            if self.entries.remove(recipe).is_some() {
                self.stats.invalidated += 1;
            } else if self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
            self.entries.insert(
                recipe.to_string(),
                Entry {
                    version: version.to_string(),
                    last_used: clock,
                    value,
                },
            );
        }
        let entry = self.entries.get_mut(recipe).expect("entry just ensured");
        entry.last_used = clock;
        Ok(&entry.value)
    }

    /// The cached value for `recipe` if it is at `version`.
    pub fn get(&self, recipe: &str, version: &str) -> Option<&T> {
        self.entries
            .get(recipe)
            .filter(|e| e.version == version)
            .map(|e| &e.value)
    }

    /// The version cached for `recipe`, if any.
    pub fn version_of(&self, recipe: &str) -> Option<&str> {
        self.entries.get(recipe).map(|e| e.version.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn get(cache: &mut RecipeCache<String>, recipe: &str, version: &str, runs: &Cell<u32>) {
        let v = cache
            .get_or_try_insert(recipe, version, || {
                runs.set(runs.get() + 1);
                Ok::<_, ()>(format!("{recipe}@{version}"))
            })
            .unwrap();
        assert_eq!(v, &format!("{recipe}@{version}"));
    }

    #[test]
    fn a_recipe_change_invalidates_exactly_that_recipe() {
        let runs = Cell::new(0);
        let mut cache = RecipeCache::new(8);
        get(&mut cache, "housing", "v1", &runs);
        get(&mut cache, "bracket", "v1", &runs);
        get(&mut cache, "housing", "v1", &runs);
        assert_eq!(runs.get(), 2, "second use of housing@v1 is a hit");

        get(&mut cache, "housing", "v2", &runs);
        assert_eq!(runs.get(), 3, "the changed standard is recomputed");
        assert_eq!(cache.version_of("housing"), Some("v2"));
        assert!(cache.get("housing", "v1").is_none(), "old version is gone");
        assert_eq!(cache.len(), 2, "the old version was replaced, not kept");

        get(&mut cache, "bracket", "v1", &runs);
        assert_eq!(runs.get(), 3, "the other recipe kept its entry");
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 3,
                invalidated: 1,
                evicted: 0
            }
        );
    }

    #[test]
    fn the_least_recently_used_recipe_makes_room() {
        let runs = Cell::new(0);
        let mut cache = RecipeCache::new(2);
        get(&mut cache, "a", "1", &runs);
        get(&mut cache, "b", "1", &runs);
        get(&mut cache, "a", "1", &runs);
        get(&mut cache, "c", "1", &runs);
        assert!(cache.get("b", "1").is_none(), "b was least recently used");
        assert!(cache.get("a", "1").is_some());
        assert!(cache.get("c", "1").is_some());
        assert_eq!(cache.stats().evicted, 1);
    }

    #[test]
    fn a_failed_computation_changes_nothing() {
        let mut cache: RecipeCache<u32> = RecipeCache::new(4);
        cache
            .get_or_try_insert("a", "1", || Ok::<_, String>(7))
            .unwrap();
        let err = cache
            .get_or_try_insert("a", "2", || Err::<u32, _>("tokenizer failed".to_string()))
            .unwrap_err();
        assert_eq!(err, "tokenizer failed");
        assert_eq!(cache.get("a", "1"), Some(&7), "running version kept");
        assert_eq!(cache.stats().misses, 1);
    }
}
