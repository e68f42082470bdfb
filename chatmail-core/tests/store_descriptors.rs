//! The maildir store holds no file descriptor per loaded mailbox: a relay with thousands
//! of idle sessions, each with its INBOX loaded, must not run out of descriptors
//! (issue 14; `BENCHMARKS.md`, idle connections). Its own test binary, so that no other
//! test opens files in the same process while the descriptors are counted.
#![cfg(target_os = "linux")]

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flags, INBOX};
use futures::executor::block_on;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("procfs is mounted")
        .count()
}

fn deliver(store: &MaildirStore, account: &Address) {
    let message = Bytes::from_static(b"Subject: hi\r\n\r\nbody\r\n");
    block_on(store.append(account, INBOX, message, &Flags::new(), 1_700_000_000)).unwrap();
}

#[test]
fn loaded_mailboxes_hold_no_descriptors() {
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let accounts: Vec<Address> = (0..300)
        .map(|i| Address::parse(&format!("user{i:05}@chat.example.org")).unwrap())
        .collect();
    let before = open_descriptors();
    // A first delivery loads each INBOX and creates its directory and index on disk.
    for account in &accounts {
        deliver(&store, account);
    }
    for account in &accounts {
        // What a session does on SELECT and while it idles: the state stays loaded.
        block_on(store.status(account, INBOX)).unwrap();
        block_on(store.list_messages(account, INBOX, None)).unwrap();
        deliver(&store, account);
    }
    let after = open_descriptors();
    // A few descriptors may come and go (the test harness); one per mailbox would be 300.
    assert!(
        after <= before + 16,
        "300 loaded mailboxes hold descriptors: {before} before, {after} after"
    );
}
