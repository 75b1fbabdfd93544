//! Who may see and correct verdicts: users with roles (viewer, operator,
//! admin) and argon2id password hashes, browser sessions with their CSRF
//! token, API tokens for the MES, and a limit on failed logins.
//!
//! Only sha256 hashes of session and API tokens are stored, so a copy of the
//! database does not let anyone in. The first admin is made with
//! `appliance user add`; there is no default password.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Store, StoreError};

/// What a person (or a token) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Sees verdicts, images and charts.
    Viewer,
    /// Also reviews verdicts.
    Operator,
    /// Also manages users and exports.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, AccountError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::Invalid(format!(
                "unknown role `{other}`; allowed: viewer, operator, admin"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A signed-in person or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// A browser session: the cookie value and the token forms must echo.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    /// Deliberately the same for an unknown name and a wrong password.
    #[error("wrong user name or password")]
    WrongCredentials,
    #[error("too many failed logins; try again in {0} s")]
    TooManyAttempts(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
}

/// How long a browser session lasts: one shift and a half.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per user name and per client within [`WINDOW`].
const MAX_FAILURES: usize = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    record::time::format(t)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// 244 random bits from the operating system, as hex.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn valid_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "`{name}` is not a user name: 1 to 64 letters, digits, `.`, `_` or `-`"
        )))
    }
}

/// Creates a user (or replaces the password and role of an existing one).
pub async fn add_user(
    store: &Store,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), AccountError> {
    valid_name(name)?;
    if password.chars().count() < 10 {
        return Err(AccountError::Invalid(
            "the password must have at least 10 characters".into(),
        ));
    }
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .expect("hashing does not panic")
    .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))?;
    sqlx::query(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(stamp(now()))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Creates an API token; returns it (shown once, stored only as a hash).
pub async fn add_token(store: &Store, name: &str, role: Role) -> Result<String, AccountError> {
    valid_name(name)?;
    let token = random_token();
    sqlx::query(
        "INSERT INTO api_tokens (token_sha256, name, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(&token))
    .bind(name)
    .bind(role.as_str())
    .bind(stamp(now()))
    .execute(store.pool())
    .await?;
    Ok(token)
}

/// Sign-in, sessions and tokens over one store.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    /// Failed logins by user name and by client address.
    failures: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl Accounts {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            failures: Default::default(),
        }
    }

    /// Seconds until `key` may try again, if it is locked out.
    fn locked(&self, key: &str) -> Option<u64> {
        let mut f = self.failures.lock().expect("failures lock");
        let q = f.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| t.elapsed() > WINDOW) {
            q.pop_front();
        }
        (q.len() >= MAX_FAILURES).then(|| {
            WINDOW
                .saturating_sub(q.front().expect("non-empty").elapsed())
                .as_secs()
                + 1
        })
    }

    fn failed(&self, keys: &[&str]) {
        let mut f = self.failures.lock().expect("failures lock");
        for k in keys {
            f.entry(k.to_string())
                .or_default()
                .push_back(Instant::now());
        }
    }

    /// Checks the password and opens a session. `client` is the caller's
    /// address, for the limit on failed attempts.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client: &str,
    ) -> Result<Session, AccountError> {
        let (by_name, by_client) = (format!("user:{name}"), format!("client:{client}"));
        if let Some(wait) = self.locked(&by_name).or_else(|| self.locked(&by_client)) {
            return Err(AccountError::TooManyAttempts(wait));
        }
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1 AND disabled = 0")
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        // An unknown name costs the same time as a wrong password.
        let stored = match &row {
            Some(r) => r.get::<String, _>(0),
            None => DUMMY_HASH.to_string(),
        };
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .expect("verifying does not panic");
        if !ok || row.is_none() {
            self.failed(&[&by_name, &by_client]);
            return Err(AccountError::WrongCredentials);
        }
        let session = Session {
            token: random_token(),
            csrf: random_token(),
        };
        let t = now();
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_name, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sha256_hex(&session.token))
        .bind(name)
        .bind(&session.csrf)
        .bind(stamp(t))
        .bind(stamp(
            t + chrono::Duration::from_std(SESSION_LIFETIME).expect("fits"),
        ))
        .execute(self.store.pool())
        .await?;
        Ok(session)
    }

    /// The user and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(User, String)>, AccountError> {
        let row = sqlx::query(
            "SELECT u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name
              WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(sha256_hex(token))
        .bind(stamp(now()))
        .fetch_optional(self.store.pool())
        .await?;
        Ok(match row {
            Some(r) => Some((
                User {
                    name: r.get(0),
                    role: Role::parse(&r.get::<String, _>(1))?,
                },
                r.get(2),
            )),
            None => None,
        })
    }

    pub async fn logout(&self, token: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(sha256_hex(token))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// The identity behind an API token.
    pub async fn token(&self, token: &str) -> Result<Option<User>, AccountError> {
        let row = sqlx::query("SELECT name, role FROM api_tokens WHERE token_sha256 = $1")
            .bind(sha256_hex(token))
            .fetch_optional(self.store.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(User {
                name: format!("token:{}", r.get::<String, _>(0)),
                role: Role::parse(&r.get::<String, _>(1))?,
            }),
            None => None,
        })
    }
}

/// A valid argon2id hash of a random password nobody knows, verified when
/// the user name is unknown so both failures take as long.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0pSbvOdeW8HUMy2p1VpCoqLd9yJ6zNrJoWB6m9v3kM0";

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let s = Store::open(&url, &dir.path().join("data")).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn a_password_opens_a_session_and_a_wrong_one_does_not() {
        let (_d, s) = store().await;
        add_user(&s, "ana", Role::Operator, "correct horse battery")
            .await
            .unwrap();
        let acc = Accounts::new(s.clone());
        let session = acc
            .login("ana", "correct horse battery", "1.2.3.4")
            .await
            .unwrap();
        let (user, csrf) = acc.session(&session.token).await.unwrap().unwrap();
        assert_eq!(
            user,
            User {
                name: "ana".into(),
                role: Role::Operator
            }
        );
        assert_eq!(csrf, session.csrf);
        assert!(matches!(
            acc.login("ana", "wrong password!", "1.2.3.4").await,
            Err(AccountError::WrongCredentials)
        ));
        assert!(matches!(
            acc.login("nobody", "whatever-long", "1.2.3.4").await,
            Err(AccountError::WrongCredentials)
        ));
        acc.logout(&session.token).await.unwrap();
        assert!(acc.session(&session.token).await.unwrap().is_none());
        // The hash, not the password, is stored.
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("horse"));
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_name_even_for_the_right_password() {
        let (_d, s) = store().await;
        add_user(&s, "bo", Role::Viewer, "a long enough secret")
            .await
            .unwrap();
        let acc = Accounts::new(s);
        for i in 0..MAX_FAILURES {
            let client = format!("10.0.0.{i}");
            assert!(acc.login("bo", "guess guess guess", &client).await.is_err());
        }
        assert!(matches!(
            acc.login("bo", "a long enough secret", "10.9.9.9").await,
            Err(AccountError::TooManyAttempts(_))
        ));
    }

    #[tokio::test]
    async fn bad_names_roles_and_short_passwords_are_refused_by_name() {
        let (_d, s) = store().await;
        let e = add_user(&s, "../root", Role::Admin, "long enough pw")
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("`../root` is not a user name"),
            "{e}"
        );
        let e = add_user(&s, "cy", Role::Admin, "short").await.unwrap_err();
        assert!(e.to_string().contains("at least 10"), "{e}");
        let e = Role::parse("root").unwrap_err();
        assert!(e.to_string().contains("viewer, operator, admin"), "{e}");
        let token = add_token(&s, "mes", Role::Viewer).await.unwrap();
        let acc = Accounts::new(s);
        assert_eq!(acc.token(&token).await.unwrap().unwrap().role, Role::Viewer);
        assert!(acc.token("not-a-token").await.unwrap().is_none());
    }
}
