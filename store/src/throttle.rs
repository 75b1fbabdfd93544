//! Failed sign-ins, kept in the database so a restart forgets nothing, and
//! the back-off they earn.
//!
//! Three kinds of key, each with its own allowance before it must wait:
//! the pair (address and account: a person mistyping, or one guesser at one
//! account), the account from anywhere (guessing spread over addresses),
//! and the address over every name (one guesser spraying names). Past its
//! allowance a key waits 30 s, then 1, 2, 4 … minutes after each further
//! failure, up to 15; a success clears the pair and the account. Nobody is locked out
//! for good, and one address failing (a reverse proxy carrying everyone)
//! does not lock anyone else out of their own account until it has failed
//! far more often than a person would.
//!
//! The table stays small: unknown names earn only an address key, keys
//! quiet for a day are forgotten, and at most [`MAX_KEYS`] are kept.

use std::time::Duration;

use sqlx::Row;

use crate::{Store, StoreError};

/// What a failure counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// One account from one address.
    Pair { address: &'a str, account: &'a str },
    /// One account from anywhere.
    Account(&'a str),
    /// One address, whatever the name.
    Address(&'a str),
}

impl Key<'_> {
    fn text(&self) -> String {
        match self {
            Key::Pair { address, account } => format!("pair:{address}:{account}"),
            Key::Account(a) => format!("account:{a}"),
            Key::Address(a) => format!("address:{a}"),
        }
    }

    /// Failures taken before the first wait.
    fn allowance(&self) -> u32 {
        match self {
            Key::Pair { .. } => 5,
            Key::Account(_) => 20,
            Key::Address(_) => 50,
        }
    }
}

/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Keys quiet this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Keys kept at most (the oldest go first).
pub const MAX_KEYS: i64 = 10_000;

/// The wait after `failures` failures of a key allowed `allowance`.
pub fn wait_after(failures: u32, allowance: u32) -> Duration {
    if failures < allowance {
        return Duration::ZERO;
    }
    let doublings = (failures - allowance).min(20);
    Duration::from_secs(30u64 << doublings).min(MAX_WAIT)
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    record::time::format(t)
}

fn later(t: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    t + chrono::Duration::from_std(d).expect("a short duration")
}

fn earlier(t: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    t - chrono::Duration::from_std(d).expect("a short duration")
}

/// Seconds until the first of `keys` that must wait may try again.
pub async fn waiting(store: &Store, keys: &[Key<'_>]) -> Result<Option<u64>, StoreError> {
    let now = chrono::Utc::now();
    let mut longest: Option<u64> = None;
    for key in keys {
        let row = sqlx::query("SELECT wait_until FROM sign_in_failures WHERE key = $1")
            .bind(key.text())
            .fetch_optional(store.pool())
            .await?;
        let Some(row) = row else { continue };
        let until: String = row.get(0);
        if let Ok(until) = chrono::DateTime::parse_from_rfc3339(&until) {
            let left = until.with_timezone(&chrono::Utc) - now;
            if left > chrono::Duration::zero() {
                let secs = left.num_seconds() as u64 + 1;
                longest = Some(longest.map_or(secs, |l| l.max(secs)));
            }
        }
    }
    Ok(longest)
}

/// Counts a failure against each of `keys`, then forgets old keys.
pub async fn failed(store: &Store, keys: &[Key<'_>]) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    let forget_before = stamp(earlier(now, FORGET_AFTER));
    for key in keys {
        let text = key.text();
        let before = sqlx::query("SELECT failures, last_at FROM sign_in_failures WHERE key = $1")
            .bind(&text)
            .fetch_optional(store.pool())
            .await?;
        // A key quiet for a day starts again.
        let failures = match before {
            Some(r) if r.get::<String, _>(1) >= forget_before => r.get::<i64, _>(0) as u32 + 1,
            _ => 1,
        };
        let until = later(now, wait_after(failures, key.allowance()));
        sqlx::query(
            "INSERT INTO sign_in_failures (key, failures, last_at, wait_until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
               last_at = excluded.last_at, wait_until = excluded.wait_until",
        )
        .bind(&text)
        .bind(failures as i64)
        .bind(stamp(now))
        .bind(stamp(until))
        .execute(store.pool())
        .await?;
    }
    sqlx::query("DELETE FROM sign_in_failures WHERE last_at < $1")
        .bind(&forget_before)
        .execute(store.pool())
        .await?;
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_failures")
        .fetch_one(store.pool())
        .await?;
    if kept > MAX_KEYS {
        sqlx::query(
            "DELETE FROM sign_in_failures WHERE key IN
               (SELECT key FROM sign_in_failures ORDER BY last_at LIMIT $1)",
        )
        .bind(kept - MAX_KEYS)
        .execute(store.pool())
        .await?;
    }
    Ok(())
}

/// Forgets the failures of `keys` (a successful sign-in).
pub async fn cleared(store: &Store, keys: &[Key<'_>]) -> Result<(), StoreError> {
    for key in keys {
        sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key.text())
            .execute(store.pool())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_past_the_allowance_up_to_its_cap() {
        assert_eq!(wait_after(4, 5), Duration::ZERO);
        assert_eq!(wait_after(5, 5), Duration::from_secs(30));
        assert_eq!(wait_after(6, 5), Duration::from_secs(60));
        assert_eq!(wait_after(9, 5), Duration::from_secs(480));
        assert_eq!(wait_after(60, 5), MAX_WAIT);
    }
}
