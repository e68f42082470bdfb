//! The relay runs the reference's expiry on its maildir: old messages go, recent stay.

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::InlineExecutor;
use chatmail::Relay;
use futures::executor::block_on;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[test]
fn daily_expiry_removes_messages_older_than_delete_mails_after() {
    let dir = std::env::temp_dir().join(format!("chatmail-relay-expiry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = dir.clone();
    let relay = Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .unwrap();
    let account = block_on(relay.login("abcdefghi@chat.example.org", "password123", true))
        .unwrap()
        .expect("first login creates the account");
    let message = bytes::Bytes::from_static(b"From: a@b.org\r\nSubject: [...]\r\n\r\nbody\r\n");
    for _ in 0..2 {
        let outcome =
            block_on(relay.deliver("a@b.org", &[account.to_string()], &[], message.clone()));
        assert!(outcome.iter().all(|o| o.is_ok()), "{outcome:?}");
    }
    // Age one of the two messages past delete_mails_after (20 days).
    let new = dir.join(account.as_str()).join("new");
    let mut files: Vec<_> = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let old = SystemTime::now() - Duration::from_secs(21 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_modified(old)
        .unwrap();

    let report = block_on(relay.run_expiry()).expect("maildir relays expire");
    assert_eq!(report.messages_removed, 1);
    assert!(!files[0].exists() && files[1].exists());
    let _ = std::fs::remove_dir_all(&dir);
}
