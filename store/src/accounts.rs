//! Who may see and correct verdicts: users with roles (viewer, operator,
//! admin) and argon2id password hashes, browser sessions with their CSRF
//! token, API tokens for the MES (expiring, revocable), and the back-off on
//! failed sign-ins ([`crate::throttle`]).
//!
//! Everything given can be taken back: a token revoked or expired stops
//! working at once, a user disabled or removed loses every session, and a
//! new password ends the sessions opened with the old one.
//!
//! Only sha256 hashes of session and API tokens are stored, so a copy of the
//! database does not let anyone in. The first admin is made with
//! `appliance user add`; there is no default password.

use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::throttle::{self, Key};
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
    /// The language the person chose for the pages (`en`, `zh`); `None`
    /// follows the browser. API tokens have none.
    pub language: Option<String>,
}

/// The languages the pages are written in.
pub const LANGUAGES: [&str; 2] = ["en", "zh"];

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
/// How long an API token lasts unless told otherwise.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

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

/// Creates a user (or replaces the password and role of an existing one,
/// which ends every session it had).
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
    end_sessions(store, name).await
}

async fn end_sessions(store: &Store, name: &str) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(name)
        .execute(store.pool())
        .await?;
    Ok(())
}

fn no_user(name: &str) -> AccountError {
    AccountError::Invalid(format!("there is no user `{name}`"))
}

/// Disables (or enables again) a user; disabling ends every session.
pub async fn set_disabled(store: &Store, name: &str, disabled: bool) -> Result<(), AccountError> {
    let done = sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
        .bind(disabled as i64)
        .bind(name)
        .execute(store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(no_user(name));
    }
    if disabled {
        end_sessions(store, name).await?;
    }
    Ok(())
}

/// Removes a user and its sessions (its reviews keep its name).
pub async fn remove_user(store: &Store, name: &str) -> Result<(), AccountError> {
    end_sessions(store, name).await?;
    let done = sqlx::query("DELETE FROM users WHERE name = $1")
        .bind(name)
        .execute(store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(no_user(name));
    }
    Ok(())
}

/// A user as `appliance user list` shows it.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub disabled: bool,
}

pub async fn list_users(store: &Store) -> Result<Vec<UserInfo>, AccountError> {
    let rows = sqlx::query("SELECT name, role, created_at, disabled FROM users ORDER BY name")
        .fetch_all(store.pool())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| UserInfo {
            name: r.get(0),
            role: r.get(1),
            created_at: r.get(2),
            disabled: r.get::<i64, _>(3) != 0,
        })
        .collect())
}

/// Creates an API token that works for `lifetime` (`None`: until revoked);
/// returns it (shown once, stored only as a hash). Names are never reused,
/// so the audit trail of a revoked token stays unambiguous.
pub async fn add_token(
    store: &Store,
    name: &str,
    role: Role,
    lifetime: Option<Duration>,
) -> Result<String, AccountError> {
    valid_name(name)?;
    let taken: Option<String> =
        sqlx::query_scalar("SELECT created_at FROM api_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(store.pool())
            .await?;
    if let Some(created) = taken {
        return Err(AccountError::Invalid(format!(
            "an API token named `{name}` already exists (created {created}); pick another name"
        )));
    }
    let token = random_token();
    let t = now();
    let expires = lifetime
        .map(|l| chrono::Duration::from_std(l).map(|l| stamp(t + l)))
        .transpose()
        .map_err(|_| AccountError::Invalid("the token lifetime is too long".into()))?;
    sqlx::query(
        "INSERT INTO api_tokens (token_sha256, name, role, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(sha256_hex(&token))
    .bind(name)
    .bind(role.as_str())
    .bind(stamp(t))
    .bind(expires)
    .execute(store.pool())
    .await?;
    Ok(token)
}

/// Revokes the API token `name`: it stops working at once.
pub async fn revoke_token(store: &Store, name: &str) -> Result<(), AccountError> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(stamp(now()))
            .bind(name)
            .execute(store.pool())
            .await?;
    if done.rows_affected() == 0 {
        return Err(AccountError::Invalid(format!(
            "there is no live API token `{name}`"
        )));
    }
    Ok(())
}

/// An API token as `appliance token list` shows it (never the token).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

pub async fn list_tokens(store: &Store) -> Result<Vec<TokenInfo>, AccountError> {
    let rows = sqlx::query(
        "SELECT name, role, created_at, expires_at, revoked_at FROM api_tokens ORDER BY name",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            name: r.get(0),
            role: r.get(1),
            created_at: r.get(2),
            expires_at: r.get(3),
            revoked_at: r.get(4),
        })
        .collect())
}

/// Sign-in, sessions and tokens over one store.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
}

impl Accounts {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Checks the password and opens a session. `client` is the caller's
    /// address, for the back-off on failed attempts ([`throttle`]).
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client: &str,
    ) -> Result<Session, AccountError> {
        let address = Key::Address(client);
        if valid_name(name).is_err() {
            // Not a name anyone can have: counted against the address only,
            // and never stored.
            throttle::failed(&self.store, &[address]).await?;
            return Err(AccountError::WrongCredentials);
        }
        let keys = [
            Key::Pair {
                address: client,
                account: name,
            },
            Key::Account(name),
            address,
        ];
        if let Some(wait) = throttle::waiting(&self.store, &keys).await? {
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
            // An unknown name earns no key of its own.
            let counted = if row.is_some() { &keys[..] } else { &keys[2..] };
            throttle::failed(&self.store, counted).await?;
            return Err(AccountError::WrongCredentials);
        }
        throttle::cleared(&self.store, &keys[..2]).await?;
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
            "SELECT u.name, u.role, s.csrf, u.language FROM sessions s JOIN users u ON u.name = s.user_name
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
                    language: r.get(3),
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

    /// The language `user` reads the pages in: `Some("en")`, `Some("zh")`,
    /// or `None` to follow the browser.
    pub async fn set_language(
        &self,
        user: &str,
        language: Option<&str>,
    ) -> Result<(), AccountError> {
        if let Some(l) = language {
            if !LANGUAGES.contains(&l) {
                return Err(AccountError::Invalid(format!(
                    "language `{l}`; the pages speak: {}",
                    LANGUAGES.join(", ")
                )));
            }
        }
        sqlx::query("UPDATE users SET language = $1 WHERE name = $2")
            .bind(language)
            .bind(user)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// The identity behind a live API token (not revoked, not expired).
    pub async fn token(&self, token: &str) -> Result<Option<User>, AccountError> {
        let row = sqlx::query(
            "SELECT name, role FROM api_tokens WHERE token_sha256 = $1
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(sha256_hex(token))
        .bind(stamp(now()))
        .fetch_optional(self.store.pool())
        .await?;
        Ok(match row {
            Some(r) => Some(User {
                name: format!("token:{}", r.get::<String, _>(0)),
                role: Role::parse(&r.get::<String, _>(1))?,
                language: None,
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
                role: Role::Operator,
                language: None,
            }
        );
        assert_eq!(csrf, session.csrf);
        // The language a person picks is theirs in every session.
        acc.set_language("ana", Some("zh")).await.unwrap();
        let (user, _) = acc.session(&session.token).await.unwrap().unwrap();
        assert_eq!(user.language.as_deref(), Some("zh"));
        assert!(matches!(
            acc.set_language("ana", Some("fr")).await,
            Err(AccountError::Invalid(_))
        ));
        acc.set_language("ana", None).await.unwrap();
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
    async fn failures_from_one_address_make_it_wait_not_everyone_and_survive_a_restart() {
        let (_d, s) = store().await;
        add_user(&s, "bo", Role::Viewer, "a long enough secret")
            .await
            .unwrap();
        add_user(&s, "cy", Role::Viewer, "another long secret")
            .await
            .unwrap();
        let acc = Accounts::new(s.clone());
        for _ in 0..5 {
            assert!(matches!(
                acc.login("bo", "guess guess guess", "10.0.0.1").await,
                Err(AccountError::WrongCredentials)
            ));
        }
        // That address waits for that account, even with the right password,
        // and still after a restart (a new Accounts on the same database).
        let restarted = Accounts::new(s.clone());
        assert!(matches!(
            restarted
                .login("bo", "a long enough secret", "10.0.0.1")
                .await,
            Err(AccountError::TooManyAttempts(29..=31))
        ));
        // Nobody else is locked out: the owner elsewhere, another account
        // from the same address (a reverse proxy carries everyone).
        restarted
            .login("bo", "a long enough secret", "10.0.0.2")
            .await
            .unwrap();
        restarted
            .login("cy", "another long secret", "10.0.0.1")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn guessing_one_account_from_many_addresses_backs_off() {
        let (_d, s) = store().await;
        add_user(&s, "bo", Role::Viewer, "a long enough secret")
            .await
            .unwrap();
        let acc = Accounts::new(s);
        for i in 0..20 {
            let address = format!("10.1.0.{i}");
            assert!(acc
                .login("bo", "guess guess guess", &address)
                .await
                .is_err());
        }
        assert!(matches!(
            acc.login("bo", "a long enough secret", "10.9.9.9").await,
            Err(AccountError::TooManyAttempts(_))
        ));
    }

    #[tokio::test]
    async fn names_tried_are_bounded_and_never_stored() {
        let (_d, s) = store().await;
        let acc = Accounts::new(s.clone());
        let long = "n".repeat(100_000);
        for i in 0..60 {
            let name = if i % 2 == 0 {
                format!("{long}{i}")
            } else {
                format!("nobody-{i}")
            };
            let r = acc.login(&name, "whatever-long", "10.2.0.1").await;
            assert!(r.is_err());
        }
        // One address key: no row per name, whatever its length.
        let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM sign_in_failures")
            .fetch_all(s.pool())
            .await
            .unwrap();
        assert_eq!(keys, ["address:10.2.0.1"]);
        // And past its allowance that address waits.
        assert!(matches!(
            acc.login("nobody", "whatever-long", "10.2.0.1").await,
            Err(AccountError::TooManyAttempts(_))
        ));
    }

    #[tokio::test]
    async fn tokens_expire_and_are_revoked_and_names_are_not_reused() {
        let (_d, s) = store().await;
        let acc = Accounts::new(s.clone());
        let mes = add_token(&s, "mes", Role::Viewer, Some(TOKEN_LIFETIME))
            .await
            .unwrap();
        assert!(acc.token(&mes).await.unwrap().is_some());
        let e = add_token(&s, "mes", Role::Admin, None).await.unwrap_err();
        assert!(e.to_string().contains("`mes` already exists"), "{e}");
        revoke_token(&s, "mes").await.unwrap();
        assert!(acc.token(&mes).await.unwrap().is_none());
        let e = revoke_token(&s, "mes").await.unwrap_err();
        assert!(e.to_string().contains("no live API token `mes`"), "{e}");
        let brief = add_token(&s, "brief", Role::Viewer, Some(Duration::ZERO))
            .await
            .unwrap();
        assert!(acc.token(&brief).await.unwrap().is_none(), "expired");
        let listed = list_tokens(&s).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].revoked_at.is_some() && listed[0].expires_at.is_some());
    }

    #[tokio::test]
    async fn a_new_password_or_disabling_ends_sessions() {
        let (_d, s) = store().await;
        add_user(&s, "di", Role::Operator, "first long password")
            .await
            .unwrap();
        let acc = Accounts::new(s.clone());
        let old = acc
            .login("di", "first long password", "10.3.0.1")
            .await
            .unwrap();
        add_user(&s, "di", Role::Operator, "second long password")
            .await
            .unwrap();
        assert!(acc.session(&old.token).await.unwrap().is_none());
        let new = acc
            .login("di", "second long password", "10.3.0.1")
            .await
            .unwrap();
        set_disabled(&s, "di", true).await.unwrap();
        assert!(acc.session(&new.token).await.unwrap().is_none());
        assert!(acc
            .login("di", "second long password", "10.3.0.1")
            .await
            .is_err());
        set_disabled(&s, "di", false).await.unwrap();
        acc.login("di", "second long password", "10.3.0.1")
            .await
            .unwrap();
        remove_user(&s, "di").await.unwrap();
        assert!(list_users(&s).await.unwrap().is_empty());
        let e = set_disabled(&s, "di", true).await.unwrap_err();
        assert!(e.to_string().contains("no user `di`"), "{e}");
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
        let token = add_token(&s, "mes", Role::Viewer, None).await.unwrap();
        let acc = Accounts::new(s);
        assert_eq!(acc.token(&token).await.unwrap().unwrap().role, Role::Viewer);
        assert!(acc.token("not-a-token").await.unwrap().is_none());
    }
}
