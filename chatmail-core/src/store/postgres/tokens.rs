//! Device tokens in the database ([`DeviceTokenStore`] for [`PostgresStore`]): one row
//! per token with the time it was last set and its insertion order, under the rules the
//! other token stores keep (90-day window, at most 64 per account, the least recently
//! set going first). Adding needs the account; its row is locked while the tokens change,
//! so concurrent adds on any nodes lose nothing.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::postgres_store::PostgresStore;
use super::sql::{column, db, execute, get, query, query_opt, to_i64};
use crate::account::{
    AccountError, DeviceTokenStore, TokenError, MAX_TOKENS_PER_ACCOUNT, TOKEN_FUTURE_SLACK_SECS,
    TOKEN_LIFETIME_SECS,
};
use crate::store::error::StoreError;
use crate::types::Address;

/// Drops the account's tokens that are not valid at `now`.
async fn prune<C: GenericClient>(
    client: &C,
    address: &Address,
    now: u64,
) -> Result<(), StoreError> {
    let oldest = to_i64(now.saturating_sub(TOKEN_LIFETIME_SECS));
    let newest = to_i64(now.saturating_add(TOKEN_FUTURE_SLACK_SECS));
    execute(
        client,
        "DELETE FROM device_tokens WHERE address = $1 AND NOT (set_at > $2 AND set_at < $3)",
        &[&address.as_str(), &oldest, &newest],
        "prune tokens",
    )
    .await?;
    Ok(())
}

/// Adds or refreshes a token; `false` when the account does not exist.
async fn add(
    pool: &deadpool_postgres::Pool,
    address: &Address,
    token: &str,
    now: u64,
) -> Result<bool, StoreError> {
    let mut client = get(pool).await?;
    let tx = client.transaction().await.map_err(db("add token"))?;
    let account = query_opt(
        &tx,
        "SELECT 1 FROM accounts WHERE address = $1 FOR UPDATE",
        &[&address.as_str()],
        "add token",
    )
    .await?;
    if account.is_none() {
        return Ok(false);
    }
    prune(&tx, address, now).await?;
    execute(
        &tx,
        "INSERT INTO device_tokens (address, token, set_at) VALUES ($1, $2, $3) \
         ON CONFLICT (address, token) DO UPDATE SET set_at = EXCLUDED.set_at",
        &[&address.as_str(), &token, &to_i64(now)],
        "add token",
    )
    .await?;
    let keep = i64::try_from(MAX_TOKENS_PER_ACCOUNT).unwrap_or(i64::MAX);
    execute(
        &tx,
        "DELETE FROM device_tokens WHERE address = $1 AND token IN ( \
             SELECT token FROM device_tokens WHERE address = $1 ORDER BY set_at, added \
             LIMIT GREATEST((SELECT count(*) FROM device_tokens WHERE address = $1) - $2, 0))",
        &[&address.as_str(), &keep],
        "add token",
    )
    .await?;
    tx.commit().await.map_err(db("add token"))?;
    Ok(true)
}

#[async_trait]
impl DeviceTokenStore for PostgresStore {
    async fn add_token(&self, address: &Address, token: &str, now: u64) -> Result<(), TokenError> {
        crate::account::check_token(token)?;
        let (owned, token) = (address.clone(), token.to_string());
        let added = self
            .run(|inner| async move { add(&inner.pool, &owned, &token, now).await })
            .await
            .map_err(AccountError::from)?;
        if !added {
            return Err(AccountError::NoAccount(address.clone()).into());
        }
        Ok(())
    }

    async fn tokens(&self, address: &Address, now: u64) -> Result<Vec<String>, TokenError> {
        let address = address.clone();
        let tokens = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                // Every delivery reads the tokens: one statement that prunes and reads
                // (the read sees the rows as before the delete, so it applies the same
                // window itself).
                let oldest = to_i64(now.saturating_sub(TOKEN_LIFETIME_SECS));
                let newest = to_i64(now.saturating_add(TOKEN_FUTURE_SLACK_SECS));
                query(
                    &client,
                    "WITH pruned AS (DELETE FROM device_tokens WHERE address = $1 \
                         AND NOT (set_at > $2 AND set_at < $3) RETURNING 1) \
                     SELECT token FROM device_tokens WHERE address = $1 \
                         AND set_at > $2 AND set_at < $3 ORDER BY added",
                    &[&address.as_str(), &oldest, &newest],
                    "tokens",
                )
                .await?
                .iter()
                .map(|row| column(row, 0))
                .collect::<Result<Vec<String>, _>>()
            })
            .await
            .map_err(AccountError::from)?;
        Ok(tokens)
    }

    async fn remove_token(
        &self,
        address: &Address,
        token: &str,
        now: u64,
    ) -> Result<bool, TokenError> {
        let (address, token) = (address.clone(), token.to_string());
        let removed = self
            .run(|inner| async move {
                let client = get(&inner.pool).await?;
                prune(&client, &address, now).await?;
                execute(
                    &client,
                    "DELETE FROM device_tokens WHERE address = $1 AND token = $2",
                    &[&address.as_str(), &token],
                    "remove token",
                )
                .await
            })
            .await
            .map_err(AccountError::from)?;
        Ok(removed > 0)
    }
}
