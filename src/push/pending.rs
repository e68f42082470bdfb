//! The pending notifications on disk, in the reference's layout (spec 5.4): one file per
//! item, `<mailboxes_dir>/pending_notifications/<uuid hex>`, three lines `addr`,
//! `start_ts`, `token`, written via `.tmp` + rename, deleted when done or given up.
//!
//! Blocking functions: a driver runs them on its
//! [`BlockingExecutor`](chatmail_core::BlockingExecutor), one batch at a time and in
//! the order the [`PushQueue`](super::PushQueue) asked, so that an item's deletion never
//! overtakes its write.

use super::engine::{ItemId, PendingItem};
use chatmail_core::account::MAX_TOKEN_LEN;
use chatmail_core::durable::{create_dir_all_durable, sync_dir};
use chatmail_core::Address;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The directory's name under `mailboxes_dir`, as the reference names it.
pub const PENDING_DIR: &str = "pending_notifications";

/// Largest pending file read: an address, a timestamp and a token of at most
/// [`MAX_TOKEN_LEN`] bytes, with room to spare; anything longer is malformed.
const MAX_FILE_LEN: u64 = MAX_TOKEN_LEN as u64 + 1024;

/// One change to the pending files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Write this item's file ([`PushOutput::Persist`](super::PushOutput::Persist)).
    Write(PendingItem),
    /// Delete this item's file ([`PushOutput::Forget`](super::PushOutput::Forget)).
    Remove(ItemId),
}

/// `<mailboxes_dir>/pending_notifications`.
pub fn pending_dir(mailboxes_dir: &Path) -> PathBuf {
    mailboxes_dir.join(PENDING_DIR)
}

/// Reads every pending item of `dir` (created if missing) for
/// [`PushQueue::restore`](super::PushQueue::restore). `*.tmp` files (a write cut short)
/// and malformed files are deleted with a warning.
pub fn load(dir: &Path) -> io::Result<Vec<PendingItem>> {
    create_dir_all_durable(dir, None)?;
    let mut items = Vec::new();
    let mut removed = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.ends_with(".tmp") {
            tracing::warn!(file = %name, "removing a partly written pending notification");
        } else {
            match ItemId::parse(&name).and_then(|id| read_item(&path, id)) {
                Some(item) => {
                    items.push(item);
                    continue;
                }
                None => tracing::warn!(file = %name, "removing a malformed pending notification"),
            }
        }
        if path.is_dir() {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(items)
}

/// One file, or `None` when it is malformed (too long, not three fields, a bad address,
/// timestamp or token).
fn read_item(path: &Path, id: ItemId) -> Option<PendingItem> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return None;
    }
    parse_item(&bytes, id)
}

/// Parses `addr\nstart_ts\ntoken`; the reference writes `start_ts` as a Python float.
fn parse_item(bytes: &[u8], id: ItemId) -> Option<PendingItem> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.splitn(3, '\n');
    let account = Address::parse(fields.next()?.trim()).ok()?;
    let start: f64 = fields.next()?.trim().parse().ok()?;
    if !start.is_finite() || start < 0.0 {
        return None;
    }
    let token = fields.next()?.trim_end_matches(['\r', '\n']);
    let valid_token = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    if !valid_token {
        return None;
    }
    Some(PendingItem {
        id,
        account,
        // Whole seconds are all the 5-hour deadline needs.
        start_ts: start as u64,
        token: token.to_string(),
    })
}

/// The file's contents, as the reference writes them (no trailing newline).
fn contents(item: &PendingItem) -> String {
    format!(
        "{}\n{}\n{}",
        item.account.as_str(),
        item.start_ts,
        item.token
    )
}

/// Applies `ops` in order, then fsyncs the directory once. An item written and removed
/// within the same batch never touches the disk (the common case: the POST answered 200
/// before the write came round). Stops at the first error; the ops before it are done.
pub fn apply(dir: &Path, ops: Vec<FileOp>) -> io::Result<()> {
    let mut writes: HashMap<ItemId, PendingItem> = HashMap::new();
    let mut order = Vec::new();
    let mut changed = false;
    for op in ops {
        match op {
            FileOp::Write(item) => {
                order.push(item.id);
                writes.insert(item.id, item);
            }
            FileOp::Remove(id) => {
                if writes.remove(&id).is_some() {
                    continue;
                }
                match std::fs::remove_file(dir.join(id.to_string())) {
                    Ok(()) => changed = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for id in order {
        if let Some(item) = writes.remove(&id) {
            write_file(dir, &item)?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `<id>.tmp`, written and fsynced, renamed to `<id>` (the directory is synced by the
/// caller, once per batch).
fn write_file(dir: &Path, item: &PendingItem) -> io::Result<()> {
    let name = item.id.to_string();
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents(item).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u128, token: &str) -> PendingItem {
        PendingItem {
            id: ItemId(n),
            account: Address::parse("bob123456@chat.example.org").unwrap(),
            start_ts: 1_700_000_000,
            token: token.to_string(),
        }
    }

    #[test]
    fn written_items_load_again_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let dir = pending_dir(dir.path());
        assert!(load(&dir).unwrap().is_empty());
        apply(
            &dir,
            vec![
                FileOp::Write(item(1, "tok-a")),
                FileOp::Write(item(2, "tok-b")),
                FileOp::Write(item(3, "tok-c")),
                FileOp::Remove(ItemId(2)),
            ],
        )
        .unwrap();
        apply(&dir, vec![FileOp::Remove(ItemId(3))]).unwrap();
        let text = std::fs::read_to_string(dir.join(ItemId(1).to_string())).unwrap();
        assert_eq!(text, "bob123456@chat.example.org\n1700000000\ntok-a");
        assert_eq!(load(&dir).unwrap(), vec![item(1, "tok-a")]);
    }

    #[test]
    fn tmp_and_malformed_files_are_deleted_reference_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let good = "0123456789abcdef0123456789abcdef";
        // As the reference's Python writes it: a float timestamp.
        std::fs::write(
            dir.join(good),
            "bob123456@chat.example.org\n1700000000.123456\ntok",
        )
        .unwrap();
        let bad = [
            ("0123456789abcdef0123456789abcde0.tmp", "x"),
            ("0123456789abcdef0123456789abcde1", "only one line"),
            (
                "0123456789abcdef0123456789abcde2",
                "bob@x\nnot a number\ntok",
            ),
            ("0123456789abcdef0123456789abcde3", "not an address\n1\ntok"),
            (
                "0123456789abcdef0123456789abcde4",
                "bob@x.org\n1\ntwo words",
            ),
            ("0123456789abcdef0123456789abcde5", "bob@x.org\n1\n"),
            ("not-a-uuid", "bob@x.org\n1\ntok"),
        ];
        for (name, text) in bad {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let long = format!("bob@x.org\n1\n{}", "t".repeat(MAX_TOKEN_LEN + 1));
        std::fs::write(dir.join("0123456789abcdef0123456789abcde6"), long).unwrap();
        let items = load(dir).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].start_ts, 1_700_000_000);
        assert_eq!(items[0].token, "tok");
        assert_eq!(items[0].id.to_string(), good);
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![good.to_string()]);
    }
}
