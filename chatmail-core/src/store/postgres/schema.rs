//! The schema and its migrations, applied at open under an advisory lock.

use super::sql::db;
use crate::store::error::StoreError;

/// The advisory lock key migrations run under ("chatmail" in ASCII, truncated), so that
/// nodes starting at once apply each migration once.
const MIGRATION_LOCK: i64 = 0x6368_6174_6d61_696c;

/// The schema version this build brings a database to (the `schema_version` table holds
/// one row per migration applied, 1 to this).
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The migrations, in order: migration `i` brings the schema to version `i + 1`. Never
/// edit one that has shipped; add another.
const MIGRATIONS: &[&str] = &[
    // 1: mailboxes with their IMAP counters, messages, expunge tombstones.
    r#"
    CREATE SEQUENCE uid_validity_seq AS bigint MINVALUE 1 MAXVALUE 4294967295;
    CREATE TABLE mailboxes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        uid_validity bigint NOT NULL,
        uid_next bigint NOT NULL DEFAULT 1,
        highest_modseq bigint NOT NULL DEFAULT 1,
        first_recent bigint NOT NULL DEFAULT 1,
        size bigint NOT NULL DEFAULT 0,
        subscribed boolean NOT NULL DEFAULT false,
        -- the highest modseq of a pruned tombstone: a node whose cursor is below it
        -- cannot know every expunge and resets the mailbox instead
        expunged_floor bigint NOT NULL DEFAULT 0,
        UNIQUE (account, name)
    );
    CREATE TABLE messages (
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        modseq bigint NOT NULL,
        internal_date bigint NOT NULL,
        size bigint NOT NULL,
        flags smallint NOT NULL,
        keywords text NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
    CREATE TABLE expunged (
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        modseq bigint NOT NULL,
        expunged_at bigint NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE INDEX expunged_by_modseq ON expunged (mailbox_id, modseq);
    CREATE INDEX expunged_by_time ON expunged (expunged_at);
    "#,
    // 2: accounts (password hash, last login day, markers) and their device tokens.
    r#"
    CREATE TABLE accounts (
        address text COLLATE "C" PRIMARY KEY,
        password text NOT NULL,
        last_login bigint NOT NULL,
        enforce_e2ee boolean NOT NULL DEFAULT true,
        disabled boolean NOT NULL DEFAULT false
    );
    CREATE TABLE device_tokens (
        address text COLLATE "C" NOT NULL REFERENCES accounts (address) ON DELETE CASCADE,
        token text COLLATE "C" NOT NULL,
        -- insertion order, kept when a token is set again
        added bigint GENERATED ALWAYS AS IDENTITY,
        set_at bigint NOT NULL,
        PRIMARY KEY (address, token)
    );
    "#,
    // 3: the domain's secrets every node needs (the DKIM key), set once by the first
    // node that needs one.
    r#"
    CREATE TABLE domain_secrets (
        name text COLLATE "C" PRIMARY KEY,
        value text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    "#,
    // 4: the delivery queue the nodes share: each message is held by one node (`owner`)
    // at a time; a node that stops telling `nodes` it is alive leaves its messages to
    // be taken over by the others.
    r#"
    CREATE TABLE nodes (
        name text COLLATE "C" PRIMARY KEY,
        seen_ms bigint NOT NULL
    );
    CREATE TABLE outbound_queue (
        id text COLLATE "C" PRIMARY KEY,
        owner text COLLATE "C" NOT NULL,
        envelope text NOT NULL,
        message bytea NOT NULL
    );
    CREATE INDEX outbound_queue_by_owner ON outbound_queue (owner, id);
    "#,
    // 5: the push notifications waiting for a retry, held per node as the delivery
    // queue's messages are (the reference keeps them as files, spec 5.4).
    r#"
    CREATE TABLE push_pending (
        id text COLLATE "C" PRIMARY KEY,
        owner text COLLATE "C" NOT NULL,
        address text COLLATE "C" NOT NULL,
        start_ts bigint NOT NULL,
        token text NOT NULL
    );
    CREATE INDEX push_pending_by_owner ON push_pending (owner, id);
    "#,
];

/// Brings the database's schema to this build's version. Idempotent; concurrent callers
/// wait for each other on an advisory lock. A database migrated by a newer build is
/// refused rather than guessed at.
pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("migration lock"))?;
    let result = apply(client).await;
    // On a broken connection the lock went with it.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("migration unlock"));
    result.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await
        .map_err(db("schema_version"))?;
    let row = client
        .query_one("SELECT COALESCE(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(db("schema_version"))?;
    let current: i32 = row.try_get(0).map_err(db("schema_version"))?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(current)
        .map_err(|_| StoreError::Corrupt(format!("schema version {current}")))?;
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "the database schema is version {current}, newer than this build's {known}"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(db("migration"))?;
        tx.batch_execute(migration).await.map_err(db("migration"))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db("migration"))?;
        tx.commit().await.map_err(db("migration"))?;
        tracing::info!(version, "postgres schema migrated");
    }
    Ok(())
}
