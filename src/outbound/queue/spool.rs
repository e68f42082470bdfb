//! The queue on disk: one message file and one envelope file per queued message.
//!
//! `<id>.msg` holds the message bytes, `<id>.json` the envelope and what became of each
//! recipient. Both are written to temp files and fsynced, the message renamed first and
//! the envelope last, then the directory fsynced: the envelope's presence is the commit
//! point. An envelope without its message cannot be acknowledged (the directory fsync
//! comes after both renames) and a message without an envelope was never acknowledged,
//! so both are removed when the queue is opened. Every function here blocks; the queue
//! runs them on its [`BlockingExecutor`](chatmail_core::BlockingExecutor).

use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Most bytes of one envelope file read back: recipients are bounded by SMTP
/// (`max_recipients`); a larger file is not ours.
const MAX_ENVELOPE_FILE: u64 = 4 * 1024 * 1024;

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Not delivered yet; attempted at `next_attempt_ms`.
    Pending,
    /// Handed over.
    Delivered,
    /// Given up (refused, or the queue lifetime passed); the sender was told.
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueuedRecipient {
    pub(crate) address: String,
    pub(crate) status: Status,
    /// Attempts that ended deferred.
    pub(crate) attempts: u32,
    /// Unix milliseconds of the next attempt (pending recipients).
    pub(crate) next_attempt_ms: u64,
    /// The last reply about this recipient, `(code, text)`.
    pub(crate) last_reply: Option<(u16, String)>,
}

impl QueuedRecipient {
    /// The destination domain, lower-cased: what follows the last `@`.
    pub(crate) fn domain(&self) -> String {
        domain_of(&self.address)
    }
}

/// The destination domain of `address`, lower-cased.
pub(crate) fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The envelope file of one queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The format; 1.
    pub(crate) version: u32,
    /// The envelope sender, `""` for `<>`.
    pub(crate) mail_from: String,
    /// Unix milliseconds when the message was queued (the lifetime counts from here).
    pub(crate) created_ms: u64,
    /// The message file's length.
    pub(crate) size: u64,
    pub(crate) recipients: Vec<QueuedRecipient>,
}

/// The directory of the queue.
pub(crate) struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating it durably if missing) the queue directory.
    pub(crate) fn open(dir: &Path) -> io::Result<Spool> {
        chatmail_core::durable::create_dir_all_durable(dir, Some(0o700))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a new message and its envelope durably (see the module docs for the order).
    pub(crate) fn create(&self, id: &str, message: &[u8], envelope: &Envelope) -> io::Result<()> {
        let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        let msg_tmp = self.dir.join(format!(".{id}.msg.tmp"));
        let env_tmp = self.dir.join(format!(".{id}.json.tmp"));
        let result = (|| {
            write_synced(&msg_tmp, message)?;
            write_synced(&env_tmp, &json)?;
            fs::rename(&msg_tmp, self.message_path(id))?;
            fs::rename(&env_tmp, self.envelope_path(id))?;
            chatmail_core::durable::sync_dir(&self.dir)
        })();
        if result.is_err() {
            // Nothing was acknowledged: leave no half of it behind.
            for p in [
                msg_tmp,
                env_tmp,
                self.message_path(id),
                self.envelope_path(id),
            ] {
                let _ = fs::remove_file(p);
            }
        }
        result
    }

    /// Replaces the envelope of `id` atomically.
    pub(crate) fn update(&self, id: &str, envelope: &Envelope) -> io::Result<()> {
        let json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        chatmail_core::durable::write_atomic(&self.dir, &format!("{id}.json"), &json)
    }

    /// Removes a message whose recipients are all done: the envelope first (once it is
    /// gone nothing is attempted again), then the message.
    pub(crate) fn remove(&self, id: &str) -> io::Result<()> {
        remove_if_present(&self.envelope_path(id))?;
        chatmail_core::durable::sync_dir(&self.dir)?;
        remove_if_present(&self.message_path(id))
    }

    /// The message bytes of `id`.
    pub(crate) fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        fs::read(self.message_path(id))
    }

    /// Every queued message: its id and envelope, in id order (oldest first). Leftovers
    /// of interrupted writes are removed; unreadable envelopes are renamed to
    /// `<id>.corrupt` and reported, never attempted.
    pub(crate) fn load(&self) -> io::Result<Vec<(String, Envelope)>> {
        let mut envelopes = Vec::new();
        let mut messages = std::collections::HashSet::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            } else if let Some(id) = name.strip_suffix(".msg") {
                messages.insert(id.to_string());
            } else if let Some(id) = name.strip_suffix(".json") {
                envelopes.push(id.to_string());
            }
        }
        envelopes.sort();
        let mut loaded = Vec::new();
        for id in envelopes {
            if !messages.remove(&id) {
                tracing::error!(id, "queued envelope without its message; removed");
                remove_if_present(&self.envelope_path(&id))?;
                continue;
            }
            match self.read_envelope(&id) {
                Ok(envelope) => loaded.push((id, envelope)),
                Err(e) => {
                    tracing::error!(id, error = %e, "unreadable queue envelope; set aside as .corrupt");
                    let _ = fs::rename(
                        self.envelope_path(&id),
                        self.dir.join(format!("{id}.corrupt")),
                    );
                }
            }
        }
        // Messages whose envelope never landed were never acknowledged.
        for id in messages {
            remove_if_present(&self.message_path(&id))?;
        }
        chatmail_core::durable::sync_dir(&self.dir)?;
        Ok(loaded)
    }

    fn read_envelope(&self, id: &str) -> io::Result<Envelope> {
        let path = self.envelope_path(id);
        if fs::metadata(&path)?.len() > MAX_ENVELOPE_FILE {
            return Err(io::Error::other("envelope file too large"));
        }
        let envelope: Envelope =
            serde_json::from_slice(&fs::read(&path)?).map_err(io::Error::other)?;
        if envelope.version != 1 {
            return Err(io::Error::other(format!(
                "unknown envelope version {}",
                envelope.version
            )));
        }
        Ok(envelope)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            version: 1,
            mail_from: "a@x.org".into(),
            created_ms: 1,
            size: 5,
            recipients: vec![QueuedRecipient {
                address: "b@Y.org".into(),
                status: Status::Pending,
                attempts: 0,
                next_attempt_ms: 1,
                last_reply: None,
            }],
        }
    }

    #[test]
    fn written_messages_load_back_and_leftovers_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("queue")).unwrap();
        spool.create("0001", b"hello", &envelope()).unwrap();
        // An interrupted create: the message renamed, the envelope not.
        fs::write(dir.path().join("queue/0002.msg"), b"half").unwrap();
        fs::write(dir.path().join("queue/.0003.msg.tmp"), b"tmp").unwrap();
        // An envelope without its message.
        fs::write(dir.path().join("queue/0004.json"), b"{}").unwrap();
        // A corrupt envelope.
        fs::write(dir.path().join("queue/0005.msg"), b"x").unwrap();
        fs::write(dir.path().join("queue/0005.json"), b"not json").unwrap();
        let loaded = spool.load().unwrap();
        assert_eq!(loaded, vec![("0001".to_string(), envelope())]);
        assert_eq!(spool.message("0001").unwrap(), b"hello");
        let mut left: Vec<String> = fs::read_dir(dir.path().join("queue"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["0001.json", "0001.msg", "0005.corrupt", "0005.msg"]);
        assert_eq!(envelope().recipients[0].domain(), "y.org");
    }

    #[test]
    fn updates_replace_and_removal_removes_both() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.create("a", b"m", &envelope()).unwrap();
        let mut e = envelope();
        e.recipients[0].status = Status::Delivered;
        spool.update("a", &e).unwrap();
        assert_eq!(spool.load().unwrap(), vec![("a".to_string(), e)]);
        spool.remove("a").unwrap();
        assert!(spool.load().unwrap().is_empty());
        assert!(spool.message("a").is_err());
    }
}
