//! Accounts in the database ([`AccountStore`] for [`PostgresStore`]): password hash,
//! last login day and the two markers, one row each. Creation is one
//! `INSERT ... ON CONFLICT`, so concurrent first logins on any number of nodes create
//! an account once.

use async_trait::async_trait;

use super::inner::Inner;
use super::mailboxes;
use super::postgres_store::PostgresStore;
use super::sql::{column, execute, get, query, query_opt, to_i64, to_u64};
use crate::account::{
    last_login_day, AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate,
    PasswordHash,
};
use crate::store::error::StoreError;
use crate::types::Address;

/// Retries of a creation whose conflicting row vanished before it could be read (an
/// account deleted at that very moment).
const CREATE_TRIES: usize = 3;

fn record(address: &Address, password: String) -> AccountRecord {
    AccountRecord {
        address: address.clone(),
        password: PasswordHash::from_stored(&password),
    }
}

/// One boolean column of the account's row; `None` without an account.
async fn flag(inner: &Inner, address: &Address, sql: &str) -> Result<Option<bool>, StoreError> {
    let client = get(&inner.pool).await?;
    match query_opt(&client, sql, &[&address.as_str()], "account").await? {
        Some(row) => Ok(Some(column(&row, 0)?)),
        None => Ok(None),
    }
}

async fn create(
    inner: &Inner,
    address: &Address,
    password: &PasswordHash,
    now: u64,
) -> Result<Creation, StoreError> {
    let client = get(&inner.pool).await?;
    let day = to_i64(last_login_day(now));
    for _ in 0..CREATE_TRIES {
        // A row with an empty hash is no account (as the other stores have it): taken over.
        let created = query_opt(
            &client,
            "INSERT INTO accounts (address, password, last_login) VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO UPDATE \
                 SET password = EXCLUDED.password, last_login = EXCLUDED.last_login, \
                     enforce_e2ee = true, disabled = false \
                 WHERE accounts.password = '' \
             RETURNING password",
            &[&address.as_str(), &password.as_str(), &day],
            "create account",
        )
        .await?;
        if let Some(row) = created {
            return Ok(Creation::Created(record(address, column(&row, 0)?)));
        }
        // The conflicting insert has committed (ON CONFLICT waited for it).
        let existing = query_opt(
            &client,
            "SELECT password FROM accounts WHERE address = $1",
            &[&address.as_str()],
            "create account",
        )
        .await?;
        if let Some(row) = existing {
            return Ok(Creation::Existed(record(address, column(&row, 0)?)));
        }
    }
    Err(StoreError::Corrupt(format!(
        "account {address} vanished during {CREATE_TRIES} creation attempts"
    )))
}

async fn record_login(
    inner: &Inner,
    address: &Address,
    now: u64,
) -> Result<LastLoginUpdate, StoreError> {
    let day = last_login_day(now);
    let client = get(&inner.pool).await?;
    let updated = execute(
        &client,
        "UPDATE accounts SET last_login = $2 WHERE address = $1 AND last_login <> $2",
        &[&address.as_str(), &to_i64(day)],
        "record login",
    )
    .await?;
    if updated > 0 {
        return Ok(LastLoginUpdate::Updated(day));
    }
    let exists = query_opt(
        &client,
        "SELECT 1 FROM accounts WHERE address = $1",
        &[&address.as_str()],
        "record login",
    )
    .await?;
    Ok(match exists {
        Some(_) => LastLoginUpdate::Unchanged(day),
        None => LastLoginUpdate::NoAccount,
    })
}

impl PostgresStore {
    /// Sets one boolean column (`$2`) of an existing account's row (`$1` its address).
    async fn set_marker(
        &self,
        address: &Address,
        sql: &'static str,
        value: bool,
    ) -> Result<(), AccountError> {
        let owned = address.clone();
        let updated = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                execute(&client, sql, &[&owned.as_str(), &value], "account marker").await
            })
            .await?;
        if updated == 0 {
            return Err(AccountError::NoAccount(address.clone()));
        }
        Ok(())
    }

    /// Disables or enables an existing account (as the maildir store's `DISABLED`
    /// file): mail from and to it is accepted and dropped.
    pub async fn set_disabled(
        &self,
        address: &Address,
        disabled: bool,
    ) -> Result<(), AccountError> {
        let sql = "UPDATE accounts SET disabled = $2 WHERE address = $1";
        self.set_marker(address, sql, disabled).await
    }
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn lookup(&self, address: &Address) -> Result<Option<AccountRecord>, AccountError> {
        let address = address.clone();
        let found = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                let row = query_opt(
                    &client,
                    "SELECT password FROM accounts WHERE address = $1 AND password <> ''",
                    &[&address.as_str()],
                    "lookup account",
                )
                .await?;
                match row {
                    Some(row) => Ok(Some(record(&address, column(&row, 0)?))),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(found)
    }

    async fn create_if_absent(
        &self,
        address: &Address,
        password: PasswordHash,
        now: u64,
    ) -> Result<Creation, AccountError> {
        let address = address.clone();
        let created = self
            .run(|inner| async move { create(&inner, &address, &password, now).await })
            .await?;
        Ok(created)
    }

    async fn record_login(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<LastLoginUpdate, AccountError> {
        let address = address.clone();
        let update = self
            .run(|inner| async move { record_login(&inner, &address, now).await })
            .await?;
        Ok(update)
    }

    async fn last_login(&self, address: &Address) -> Result<Option<u64>, AccountError> {
        let address = address.clone();
        let day = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                let row = query_opt(
                    &client,
                    "SELECT last_login FROM accounts WHERE address = $1",
                    &[&address.as_str()],
                    "last login",
                )
                .await?;
                match row {
                    Some(row) => Ok(Some(to_u64(column(&row, 0)?, "last login")?)),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(day)
    }

    async fn accepts_cleartext(&self, address: &Address) -> Result<bool, AccountError> {
        let address = address.clone();
        let sql = "SELECT NOT enforce_e2ee FROM accounts WHERE address = $1";
        let accepts = self
            .run(|inner| async move { flag(&inner, &address, sql).await })
            .await?;
        Ok(accepts.unwrap_or(false))
    }

    async fn is_disabled(&self, address: &Address) -> Result<bool, AccountError> {
        let address = address.clone();
        let sql = "SELECT disabled FROM accounts WHERE address = $1";
        let disabled = self
            .run(|inner| async move { flag(&inner, &address, sql).await })
            .await?;
        Ok(disabled.unwrap_or(false))
    }

    async fn set_enforce_e2ee(&self, address: &Address, enforce: bool) -> Result<(), AccountError> {
        let sql = "UPDATE accounts SET enforce_e2ee = $2 WHERE address = $1";
        self.set_marker(address, sql, enforce).await
    }

    async fn list(&self) -> Result<Vec<Address>, AccountError> {
        let addresses = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                let rows = query(
                    &client,
                    "SELECT address FROM accounts ORDER BY address",
                    &[],
                    "list accounts",
                )
                .await?;
                rows.iter()
                    .map(|row| {
                        let text: &str = column(row, 0)?;
                        Address::parse(text)
                            .map_err(|_| StoreError::Corrupt(format!("account {text:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(addresses)
    }

    async fn delete(&self, address: &Address) -> Result<bool, AccountError> {
        let address = address.clone();
        let existed = self
            .run(|inner| async move { mailboxes::remove_account(&inner, &address).await })
            .await?;
        Ok(existed)
    }
}
