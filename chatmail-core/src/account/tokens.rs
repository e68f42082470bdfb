//! Push-notification device tokens per account ([`DeviceTokenStore`]) and their two
//! backends.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::types::Address;

use super::fsutil::{self, lock_file, write_atomic, LockError};
use super::store::AccountError;
use crate::executor::{run_blocking, BlockingExecutor};

/// The IMAP METADATA entry (RFC 5464) through which a client sets its push device token
/// (SETMETADATA) and reads the valid ones (GETMETADATA), spec 5.1. The one definition:
/// the IMAP engine and the relay both use it.
pub const DEVICE_TOKEN_ENTRY: &str = "/private/devicetoken";
/// How long a token stays valid after it was last set: 90 days.
pub const TOKEN_LIFETIME_SECS: u64 = 90 * 86_400;
/// How far in the future a token's timestamp may lie (clock skew): 60 s.
pub const TOKEN_FUTURE_SLACK_SECS: u64 = 60;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Most tokens kept per account.
pub const MAX_TOKENS_PER_ACCOUNT: usize = 64;
/// Largest `metadata.json` read; a bigger one is treated as corrupt.
const MAX_FILE_LEN: u64 = 1024 * 1024;
const FILE_NAME: &str = "metadata.json";
const LOCK_NAME: &str = "metadata.json.lock";
/// The key of the tokens in `metadata.json` (the reference relay's file format, not the
/// IMAP entry name).
const KEY: &str = "devicetoken";

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty, too long, or contains spaces or control characters.
    #[error("invalid device token: {0}")]
    InvalidToken(&'static str),
    /// Storage failure or missing account.
    #[error(transparent)]
    Store(#[from] AccountError),
}

/// Device-token storage per account (spec 5.1, 5.2). Times are unix seconds passed in
/// by the caller.
///
/// A client sets [`DEVICE_TOKEN_ENTRY`] with IMAP SETMETADATA; each delivery then
/// notifies every valid token of the recipient. A token is valid while its timestamp
/// `ts` satisfies `now - 90 days < ts < now + 60 s` ([`TOKEN_LIFETIME_SECS`],
/// [`TOKEN_FUTURE_SLACK_SECS`]); setting it again refreshes `ts` (keeping its place in
/// the insertion order), expired tokens are dropped on every read and change, and a token
/// the notification service answers with HTTP 410 is removed.
///
/// Bounds this relay adds: a token is at most [`MAX_TOKEN_LEN`] bytes of printable,
/// non-space ASCII (GETMETADATA joins tokens with spaces), and an account keeps at most
/// [`MAX_TOKENS_PER_ACCOUNT`] tokens (the least recently set one goes first). Every
/// implementation keeps these rules: [`MemoryDeviceTokens`], [`MaildirDeviceTokens`].
#[async_trait]
pub trait DeviceTokenStore: Send + Sync {
    /// Adds `token`, or refreshes its timestamp to `now` if present.
    async fn add_token(&self, address: &Address, token: &str, now: u64) -> Result<(), TokenError>;
    /// The valid tokens at `now`, in the order they were first added.
    async fn tokens(&self, address: &Address, now: u64) -> Result<Vec<String>, TokenError>;
    /// Removes `token` (e.g. after HTTP 410); false if it was not there.
    async fn remove_token(
        &self,
        address: &Address,
        token: &str,
        now: u64,
    ) -> Result<bool, TokenError>;
}

/// Checks a token against the bounds above.
pub(crate) fn check_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::InvalidToken("empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::InvalidToken("longer than 4096 bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::InvalidToken(
            "only printable ASCII without spaces is allowed",
        ));
    }
    Ok(())
}

/// Whether a token set at `ts` is still valid at `now`.
fn is_valid(ts: u64, now: u64) -> bool {
    ts > now.saturating_sub(TOKEN_LIFETIME_SECS) && ts < now.saturating_add(TOKEN_FUTURE_SLACK_SECS)
}

/// The tokens of one account with their timestamps, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TokenSet(Vec<(String, u64)>);

impl TokenSet {
    /// Drops expired tokens; true if any was dropped.
    fn prune(&mut self, now: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|(_, ts)| is_valid(*ts, now));
        self.0.len() != before
    }

    fn add(&mut self, token: &str, now: u64) {
        self.prune(now);
        match self.0.iter_mut().find(|(t, _)| t == token) {
            Some(entry) => entry.1 = now,
            None => self.0.push((token.to_string(), now)),
        }
        self.trim();
    }

    /// Keeps the most recently set [`MAX_TOKENS_PER_ACCOUNT`] tokens, order unchanged.
    fn trim(&mut self) {
        while self.0.len() > MAX_TOKENS_PER_ACCOUNT {
            let oldest = self
                .0
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, ts))| *ts)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.0.remove(i);
            }
        }
    }

    fn remove(&mut self, token: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(t, _)| t != token);
        self.0.len() != before
    }

    fn tokens(&self) -> Vec<String> {
        self.0.iter().map(|(t, _)| t.clone()).collect()
    }
}

/// A parsed `metadata.json`: the tokens plus any other top-level keys, kept verbatim.
#[derive(Debug, Default)]
struct MetadataFile {
    tokens: TokenSet,
    other: Vec<(String, Value)>,
}

/// The `devicetoken` value as found on disk.
enum RawTokens {
    /// `{token: ts}`; entries whose ts is not a number are dropped.
    Map(Vec<(String, Option<u64>)>),
    /// Legacy `[token, ...]`.
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of token timestamps or a list of tokens")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawTokens, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    let ts = v
                        .as_u64()
                        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64));
                    out.push((k, ts));
                }
                Ok(RawTokens::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<RawTokens, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Value>()? {
                    if let Value::String(t) = v {
                        out.push(t);
                    }
                }
                Ok(RawTokens::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file, keeping the order of the `devicetoken` entries.
struct RawFile {
    tokens: Option<RawTokens>,
    other: Vec<(String, Value)>,
}

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawFile, A::Error> {
                let mut file = RawFile {
                    tokens: None,
                    other: Vec::new(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    if k == KEY {
                        file.tokens = Some(m.next_value()?);
                    } else {
                        let v: Value = m.next_value()?;
                        file.other.push((k, v));
                    }
                }
                Ok(file)
            }
        }
        d.deserialize_map(V)
    }
}

impl MetadataFile {
    /// Parses file content; anything unreadable yields an empty set and a warning.
    fn parse(bytes: &[u8], now: u64, what: &dyn fmt::Display) -> MetadataFile {
        let raw: RawFile = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{what}: corrupt metadata file treated as empty: {e}");
                return MetadataFile::default();
            }
        };
        let mut tokens = TokenSet::default();
        let mut push = |t: String, ts: u64| {
            if check_token(&t).is_ok() && !tokens.0.iter().any(|(x, _)| *x == t) {
                tokens.0.push((t, ts));
            }
        };
        match raw.tokens {
            Some(RawTokens::Map(entries)) => {
                for (t, ts) in entries {
                    if let Some(ts) = ts {
                        push(t, ts);
                    }
                }
            }
            Some(RawTokens::List(list)) => {
                for t in list {
                    push(t, now);
                }
            }
            None => {}
        }
        tokens.prune(now);
        tokens.trim();
        MetadataFile {
            tokens,
            other: raw.other,
        }
    }

    fn to_json(&self) -> Vec<u8> {
        // Built by hand to keep the token order without a global serde_json feature.
        let mut out = String::from("{\"devicetoken\": {");
        for (i, (t, ts)) in self.tokens.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&Value::String(t.clone()).to_string());
            out.push_str(": ");
            out.push_str(&ts.to_string());
        }
        out.push('}');
        for (k, v) in &self.other {
            out.push_str(", ");
            out.push_str(&Value::String(k.clone()).to_string());
            out.push_str(": ");
            out.push_str(&v.to_string());
        }
        out.push('}');
        out.into_bytes()
    }
}

/// Device tokens in memory: for tests and embedders without persistence. Does not check
/// that the account exists.
#[derive(Debug, Default)]
pub struct MemoryDeviceTokens {
    sets: Mutex<HashMap<Address, TokenSet>>,
}

impl MemoryDeviceTokens {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, address: &Address, f: impl FnOnce(&mut TokenSet) -> T) -> T {
        // Every mutation is complete before any code that could panic, so a poisoned
        // map is still consistent.
        let mut map = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let set = map.entry(address.clone()).or_default();
        let out = f(set);
        if set.0.is_empty() {
            map.remove(address);
        }
        out
    }
}

#[async_trait]
impl DeviceTokenStore for MemoryDeviceTokens {
    async fn add_token(&self, address: &Address, token: &str, now: u64) -> Result<(), TokenError> {
        check_token(token)?;
        self.with(address, |s| s.add(token, now));
        Ok(())
    }

    async fn tokens(&self, address: &Address, now: u64) -> Result<Vec<String>, TokenError> {
        Ok(self.with(address, |s| {
            s.prune(now);
            s.tokens()
        }))
    }

    async fn remove_token(
        &self,
        address: &Address,
        token: &str,
        now: u64,
    ) -> Result<bool, TokenError> {
        Ok(self.with(address, |s| {
            s.prune(now);
            s.remove(token)
        }))
    }
}

/// Device tokens in `<mailboxes_dir>/<addr>/metadata.json`, the reference relay's
/// layout: `{"devicetoken": {"<token>": <unix-ts>, ...}}`, replaced atomically under
/// `metadata.json.lock`. The legacy list form `{"devicetoken": ["t1", "t2"]}` is read as
/// tokens set `now`; a corrupt file is treated as empty (with a warning) and rewritten on
/// the next change. Other top-level keys are kept as they are. File access runs on the
/// [`BlockingExecutor`].
#[derive(Clone)]
pub struct MaildirDeviceTokens {
    root: Arc<PathBuf>,
    executor: Arc<dyn BlockingExecutor>,
}

impl fmt::Debug for MaildirDeviceTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaildirDeviceTokens")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What to do with the token set under the lock.
enum Op {
    Add(String),
    Read,
    Remove(String),
}

impl MaildirDeviceTokens {
    /// Tokens of the accounts under `mailboxes_dir`.
    pub fn new(mailboxes_dir: impl Into<PathBuf>, executor: Arc<dyn BlockingExecutor>) -> Self {
        MaildirDeviceTokens {
            root: Arc::new(mailboxes_dir.into()),
            executor,
        }
    }

    async fn run(
        &self,
        address: &Address,
        op: Op,
        now: u64,
    ) -> Result<(bool, Vec<String>), TokenError> {
        let dir = self.root.join(address.as_str());
        let address = address.clone();
        run_blocking(&*self.executor, move || update(&dir, &address, op, now))
            .await
            .map_err(|gone| TokenError::Store(gone.into()))?
    }
}

/// Reads, changes and (if changed) rewrites one account's token file under its lock.
/// Returns whether a removal hit, and the valid tokens afterwards.
fn update(
    dir: &std::path::Path,
    address: &Address,
    op: Op,
    now: u64,
) -> Result<(bool, Vec<String>), TokenError> {
    if !dir.is_dir() {
        return match op {
            Op::Add(_) => Err(AccountError::NoAccount(address.clone()).into()),
            Op::Read | Op::Remove(_) => Ok((false, Vec::new())),
        };
    }
    let lock_path = dir.join(LOCK_NAME);
    let _lock = lock_file(&lock_path, fsutil::LOCK_TIMEOUT).map_err(|e| match e {
        LockError::Timeout => AccountError::LockTimeout(address.clone()),
        LockError::Io(e) => AccountError::io("lock", &lock_path, e),
    })?;
    let path = dir.join(FILE_NAME);
    let original: Option<Vec<u8>> = match fs::metadata(&path) {
        Ok(m) if m.len() > MAX_FILE_LEN => {
            tracing::warn!("{}: {} bytes, treated as empty", path.display(), m.len());
            Some(Vec::new())
        }
        Ok(_) => Some(fs::read(&path).map_err(|e| AccountError::io("read", &path, e))?),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(AccountError::io("stat", &path, e).into()),
    };
    let mut file = match &original {
        Some(bytes) => MetadataFile::parse(bytes, now, &path.display()),
        None => MetadataFile::default(),
    };
    let hit = match op {
        Op::Add(token) => {
            file.tokens.add(&token, now);
            false
        }
        Op::Read => false,
        Op::Remove(token) => file.tokens.remove(&token),
    };
    // Rewrite when the content differs: a change, expired tokens dropped, or a corrupt or
    // legacy file replaced. No file is created just to hold nothing.
    let new_json = file.to_json();
    let rewrite = match &original {
        Some(bytes) => *bytes != new_json,
        None => !file.tokens.0.is_empty(),
    };
    if rewrite {
        write_atomic(dir, FILE_NAME, &new_json).map_err(|e| AccountError::io("write", &path, e))?;
    }
    Ok((hit, file.tokens.tokens()))
}

/// The valid tokens at `now` of the account directory `dir`, with the times they were
/// last set, in insertion order (empty without a file): for a migration, which must keep
/// the times the [`DeviceTokenStore`] methods do not show.
#[cfg(feature = "postgres")]
pub(crate) fn read_token_times(
    dir: &std::path::Path,
    now: u64,
) -> Result<Vec<(String, u64)>, AccountError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::metadata(&path) {
        Ok(m) if m.len() > MAX_FILE_LEN => {
            tracing::warn!("{}: {} bytes, treated as empty", path.display(), m.len());
            return Ok(Vec::new());
        }
        Ok(_) => fs::read(&path).map_err(|e| AccountError::io("read", &path, e))?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AccountError::io("stat", &path, e)),
    };
    Ok(MetadataFile::parse(&bytes, now, &path.display()).tokens.0)
}

/// Writes the account directory `dir`'s `metadata.json` with exactly `tokens` (token,
/// time last set), in that order, durably: for a migration into an empty directory.
/// Tokens that are not acceptable are left out, and no file is written for none.
#[cfg(feature = "postgres")]
pub(crate) fn write_token_times(
    dir: &std::path::Path,
    tokens: &[(String, u64)],
) -> Result<(), AccountError> {
    let mut file = MetadataFile::default();
    for (token, ts) in tokens {
        if check_token(token).is_ok() && !file.tokens.0.iter().any(|(t, _)| t == token) {
            file.tokens.0.push((token.clone(), *ts));
        }
    }
    file.tokens.trim();
    if file.tokens.0.is_empty() {
        return Ok(());
    }
    write_atomic(dir, FILE_NAME, &file.to_json())
        .map_err(|e| AccountError::io("write", dir.join(FILE_NAME), e))
}

#[async_trait]
impl DeviceTokenStore for MaildirDeviceTokens {
    async fn add_token(&self, address: &Address, token: &str, now: u64) -> Result<(), TokenError> {
        check_token(token)?;
        self.run(address, Op::Add(token.to_string()), now)
            .await
            .map(drop)
    }

    async fn tokens(&self, address: &Address, now: u64) -> Result<Vec<String>, TokenError> {
        Ok(self.run(address, Op::Read, now).await?.1)
    }

    async fn remove_token(
        &self,
        address: &Address,
        token: &str,
        now: u64,
    ) -> Result<bool, TokenError> {
        Ok(self
            .run(address, Op::Remove(token.to_string()), now)
            .await?
            .0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn validity_window() {
        assert!(is_valid(NOW, NOW));
        assert!(is_valid(NOW - TOKEN_LIFETIME_SECS + 1, NOW));
        assert!(!is_valid(NOW - TOKEN_LIFETIME_SECS, NOW));
        assert!(is_valid(NOW + 59, NOW));
        assert!(!is_valid(NOW + 60, NOW));
        assert!(!is_valid(0, 5));
    }

    #[test]
    fn parse_keeps_file_order_and_drops_expired() {
        let json = format!(
            r#"{{"devicetoken": {{"zzz": {NOW}, "aaa": {}, "old": {}, "future": {}, "bad": "x"}}, "other": [1]}}"#,
            NOW - 10,
            NOW - TOKEN_LIFETIME_SECS - 1,
            NOW + 3600
        );
        let f = MetadataFile::parse(json.as_bytes(), NOW, &"t");
        assert_eq!(f.tokens.tokens(), vec!["zzz", "aaa"]);
        let out = String::from_utf8(f.to_json()).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"devicetoken": {{"zzz": {NOW}, "aaa": {}}}, "other": [1]}}"#,
                NOW - 10
            )
        );
        let reparsed = MetadataFile::parse(out.as_bytes(), NOW, &"t");
        assert_eq!(reparsed.tokens, f.tokens);
    }

    #[test]
    fn legacy_list_and_corrupt_files() {
        let f = MetadataFile::parse(br#"{"devicetoken": ["t1", "t2", 3]}"#, NOW, &"t");
        assert_eq!(f.tokens.0, vec![("t1".into(), NOW), ("t2".into(), NOW)]);
        for corrupt in [
            &b""[..],
            b"{",
            b"[1,2]",
            b"null",
            b"{\"devicetoken\": 5}",
            b"\xff\xfe",
        ] {
            let f = MetadataFile::parse(corrupt, NOW, &"t");
            assert!(f.tokens.0.is_empty());
        }
        let f = MetadataFile::parse(br#"{"devicetoken": {"1.5": 1699999999.7}}"#, NOW, &"t");
        assert_eq!(f.tokens.0, vec![("1.5".into(), 1_699_999_999)]);
    }

    #[test]
    fn refresh_keeps_position_and_count_is_bounded() {
        let mut s = TokenSet::default();
        s.add("a", NOW);
        s.add("b", NOW + 1);
        s.add("a", NOW + 2);
        assert_eq!(s.0, vec![("a".into(), NOW + 2), ("b".into(), NOW + 1)]);
        for i in 0..(MAX_TOKENS_PER_ACCOUNT as u64 + 5) {
            s.add(&format!("t{i}"), NOW + 10 + i);
        }
        assert_eq!(s.0.len(), MAX_TOKENS_PER_ACCOUNT);
        assert!(!s.tokens().contains(&"b".to_string()));
        assert_eq!(
            s.tokens().last().unwrap(),
            &format!("t{}", MAX_TOKENS_PER_ACCOUNT + 4)
        );
    }

    #[test]
    fn token_bounds() {
        assert!(check_token("").is_err());
        assert!(check_token("a b").is_err());
        assert!(check_token("a\nb").is_err());
        assert!(check_token(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
        assert!(check_token("openpgp:ABC+/=").is_ok());
    }
}
