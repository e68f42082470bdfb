//! The domain's secrets in the database: what every node of the domain must hold the
//! same copy of, above all the DKIM private key (any node signs what leaves, and the
//! DNS publishes one key). Only the first node that needs one makes it; the rest read it.

use super::postgres_store::PostgresStore;
use super::sql::{column, execute, get, query, query_opt, to_i64};
use crate::store::error::StoreError;

/// Longest secret name: names are chosen by the relay (`dkim:<selector>`), not by peers.
const MAX_NAME_LEN: usize = 256;

/// Largest secret value (a 4096-bit RSA key in PEM is about 3.3 KB).
pub const MAX_DOMAIN_SECRET_LEN: usize = 64 * 1024;

impl PostgresStore {
    /// The domain-wide secret `name` (for example `dkim:<selector>`), if a node stored one.
    pub async fn domain_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        check(name, "")?;
        let name = name.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let row = query_opt(
                &client,
                "SELECT value FROM domain_secrets WHERE name = $1",
                &[&name],
                "read domain secret",
            )
            .await?;
            row.map(|row| column::<String>(&row, 0)).transpose()
        })
        .await
    }

    /// The names of the domain-wide secrets stored (at most 1,000: names are chosen by
    /// the relay, a handful per domain).
    pub async fn domain_secret_names(&self) -> Result<Vec<String>, StoreError> {
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let rows = query(
                &client,
                "SELECT name FROM domain_secrets ORDER BY name LIMIT 1000",
                &[],
                "list domain secrets",
            )
            .await?;
            rows.iter().map(|row| column::<String>(row, 0)).collect()
        })
        .await
    }

    /// Stores `value` as the secret `name` unless a node stored one first, and returns
    /// the one that is stored: nodes that start together and each made a key all end up
    /// using the same one.
    pub async fn offer_domain_secret(&self, name: &str, value: &str) -> Result<String, StoreError> {
        check(name, value)?;
        let (name, value) = (name.to_string(), value.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "INSERT INTO domain_secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
                "store domain secret",
            )
            .await?;
            let row = query_opt(
                &client,
                "SELECT value FROM domain_secrets WHERE name = $1",
                &[&name],
                "read domain secret",
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("domain secret {name} vanished")))?;
            column::<String>(&row, 0)
        })
        .await
    }
}

impl PostgresStore {
    /// Sets the secret `name` to `value`, replacing what it was (a renewed certificate).
    pub async fn set_domain_secret(&self, name: &str, value: &str) -> Result<(), StoreError> {
        check(name, value)?;
        let (name, value) = (name.to_string(), value.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "INSERT INTO domain_secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, created_at = now()",
                &[&name, &value],
                "set domain secret",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// Removes the secret `name` (nothing if there is none).
    pub async fn remove_domain_secret(&self, name: &str) -> Result<(), StoreError> {
        check(name, "")?;
        let name = name.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "DELETE FROM domain_secrets WHERE name = $1",
                &[&name],
                "remove domain secret",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// The secrets whose names start with `prefix`, at most 1,000, by name.
    pub async fn domain_secrets_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        check(prefix, "")?;
        let prefix = prefix.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let rows = query(
                &client,
                "SELECT name, value FROM domain_secrets \
                 WHERE left(name, length($1)) = $1 ORDER BY name LIMIT 1000",
                &[&prefix],
                "domain secrets by prefix",
            )
            .await?;
            rows.iter()
                .map(|row| Ok((column::<String>(row, 0)?, column::<String>(row, 1)?)))
                .collect()
        })
        .await
    }

    /// Takes or keeps the lease `name` for `holder` until `until_ms` (unix ms), if no
    /// other holder has it past `now_ms`: the domain-wide work one node at a time does
    /// (an ACME order). True when `holder` has it.
    pub async fn take_domain_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<bool, StoreError> {
        check(name, holder)?;
        if holder.contains(' ') {
            return Err(StoreError::io(
                "postgres: lease",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a holder without spaces"),
            ));
        }
        let (name, value) = (name.to_string(), format!("{holder} {until_ms}"));
        let (holder, now) = (format!("{holder} "), to_i64(now_ms));
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let rows = query(
                &client,
                "INSERT INTO domain_secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value \
                 WHERE left(domain_secrets.value, length($3)) = $3 \
                    OR COALESCE(NULLIF(split_part(domain_secrets.value, ' ', 2), ''), '0')::bigint < $4 \
                 RETURNING 1",
                &[&name, &value, &holder, &now],
                "take lease",
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }
}

fn check(name: &str, value: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || value.len() > MAX_DOMAIN_SECRET_LEN {
        return Err(StoreError::io(
            "postgres: domain secret",
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "name of 1 to {MAX_NAME_LEN} bytes and value up to {MAX_DOMAIN_SECRET_LEN} bytes"
                ),
            ),
        ));
    }
    Ok(())
}
