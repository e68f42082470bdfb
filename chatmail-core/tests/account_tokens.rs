//! Device tokens (spec 5.1/5.2) on every store (postgres with its feature): insertion
//! order, refresh, the 90-day window, removal, persistence, and the reference's
//! `metadata.json` forms.

use std::sync::Arc;

use chatmail_core::account::*;
use chatmail_core::{Address, InlineExecutor};
use futures::executor::block_on;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod support;

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

fn addr() -> Address {
    Address::parse("tokenuser@chat.example.org").unwrap()
}

/// Both stores; the maildir one gets an existing account directory.
fn stores(root: &std::path::Path) -> Vec<(&'static str, Arc<dyn DeviceTokenStore>)> {
    std::fs::create_dir_all(root.join(addr().as_str())).unwrap();
    vec![
        ("memory", Arc::new(MemoryDeviceTokens::new())),
        (
            "maildir",
            Arc::new(MaildirDeviceTokens::new(root, Arc::new(InlineExecutor))),
        ),
    ]
}

#[test]
fn tokens_keep_insertion_order_and_refresh_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, s) in stores(tmp.path()) {
        order_and_refresh(name, &*s, &addr());
    }
}

/// Insertion order, refresh in place, the 90-day window.
fn order_and_refresh(name: &str, s: &dyn DeviceTokenStore, a: &Address) {
    assert!(block_on(s.tokens(a, NOW)).unwrap().is_empty());
    block_on(s.add_token(a, "1111", NOW)).unwrap();
    block_on(s.add_token(a, "2222", NOW)).unwrap();
    assert_eq!(
        block_on(s.tokens(a, NOW)).unwrap().join(" "),
        "1111 2222",
        "{name}"
    );
    // Refreshing 1111 late keeps it alive past 2222's expiry, in its old place.
    block_on(s.add_token(a, "1111", NOW + 50 * DAY)).unwrap();
    block_on(s.add_token(a, "3333", NOW + 50 * DAY)).unwrap();
    assert_eq!(
        block_on(s.tokens(a, NOW + 50 * DAY)).unwrap(),
        ["1111", "2222", "3333"],
        "{name}"
    );
    assert_eq!(
        block_on(s.tokens(a, NOW + 91 * DAY)).unwrap(),
        ["1111", "3333"],
        "{name}: 2222 expired after 90 days"
    );
    assert!(
        block_on(s.tokens(a, NOW + 50 * DAY + 90 * DAY))
            .unwrap()
            .is_empty(),
        "{name}"
    );
}

#[test]
fn future_timestamps_are_invalid_and_removal_reports_hits() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, s) in stores(tmp.path()) {
        future_and_removal(name, &*s, &addr());
    }
}

/// Tokens from the future are invalid, removal reports hits, bad tokens are refused.
fn future_and_removal(name: &str, s: &dyn DeviceTokenStore, a: &Address) {
    block_on(s.add_token(a, "later", NOW + 120)).unwrap();
    assert!(block_on(s.tokens(a, NOW)).unwrap().is_empty(), "{name}");
    block_on(s.add_token(a, "t1", NOW)).unwrap();
    block_on(s.add_token(a, "t2", NOW)).unwrap();
    assert!(block_on(s.remove_token(a, "t1", NOW)).unwrap(), "{name}");
    assert!(!block_on(s.remove_token(a, "t1", NOW)).unwrap(), "{name}");
    assert!(
        !block_on(s.remove_token(a, "never", NOW)).unwrap(),
        "{name}"
    );
    assert_eq!(block_on(s.tokens(a, NOW)).unwrap(), ["t2"]);
    for bad in ["", "has space", "new\nline", &"x".repeat(MAX_TOKEN_LEN + 1)] {
        assert!(matches!(
            block_on(s.add_token(a, bad, NOW)),
            Err(TokenError::InvalidToken(_))
        ));
    }
}

/// The postgres store on a throwaway cluster, two instances as two relay nodes: the same
/// rules, tokens only for accounts, concurrent adds on both nodes lose nothing, at most
/// [`MAX_TOKENS_PER_ACCOUNT`] kept as the memory store keeps them.
#[cfg(feature = "postgres")]
#[test]
fn postgres_tokens_keep_the_rules_across_nodes() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let a = Arc::new(cluster.open_store(&rt, "a"));
    let b = Arc::new(cluster.open_store(&rt, "b"));
    let who = |n: u32| Address::parse(&format!("tokenuser{n}@chat.example.org")).unwrap();
    assert!(matches!(
        block_on(a.add_token(&who(1), "x", NOW)),
        Err(TokenError::Store(AccountError::NoAccount(_)))
    ));
    assert!(block_on(a.tokens(&who(1), NOW)).unwrap().is_empty());
    for n in 1..=4 {
        let hash = PasswordHash::from_stored("{SHA512-CRYPT}$6$salt$hash");
        block_on(a.create_if_absent(&who(n), hash, NOW)).unwrap();
    }
    order_and_refresh("postgres", &*a, &who(1));
    future_and_removal("postgres", &*b, &who(2));

    let handles: Vec<_> = (0..16)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            let user = who(3);
            std::thread::spawn(move || {
                block_on(node.add_token(&user, &format!("dev{i}"), NOW)).unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(block_on(b.tokens(&who(3), NOW)).unwrap().len(), 16);

    // Over the bound, in pairs of equal timestamps: the same survivors as in memory.
    let memory = MemoryDeviceTokens::new();
    for i in 0..(MAX_TOKENS_PER_ACCOUNT as u64 + 7) {
        let (token, ts) = (format!("many{i}"), NOW + i / 2);
        block_on(memory.add_token(&who(4), &token, ts)).unwrap();
        block_on(a.add_token(&who(4), &token, ts)).unwrap();
    }
    let expected = block_on(memory.tokens(&who(4), NOW + 40)).unwrap();
    assert_eq!(expected.len(), MAX_TOKENS_PER_ACCOUNT);
    assert_eq!(block_on(b.tokens(&who(4), NOW + 40)).unwrap(), expected);

    // An account's removal takes its tokens.
    assert!(block_on(a.delete(&who(4))).unwrap());
    assert!(block_on(b.tokens(&who(4), NOW + 40)).unwrap().is_empty());
}

#[test]
fn maildir_tokens_persist_in_the_reference_format() {
    let tmp = tempfile::tempdir().unwrap();
    let a = addr();
    let dir = tmp.path().join(a.as_str());
    std::fs::create_dir_all(&dir).unwrap();
    let s1 = MaildirDeviceTokens::new(tmp.path(), Arc::new(InlineExecutor));
    block_on(s1.add_token(&a, "tok-b", NOW)).unwrap();
    block_on(s1.add_token(&a, "tok-a", NOW + 1)).unwrap();
    let json = std::fs::read_to_string(dir.join("metadata.json")).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"devicetoken": {{"tok-b": {NOW}, "tok-a": {}}}}}"#,
            NOW + 1
        )
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["devicetoken"]["tok-a"], NOW + 1);
    // A second instance (a restart) sees the same tokens.
    let s2 = MaildirDeviceTokens::new(tmp.path(), Arc::new(InlineExecutor));
    assert_eq!(
        block_on(s2.tokens(&a, NOW + 2)).unwrap(),
        ["tok-b", "tok-a"]
    );
    // No temp files left behind.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["metadata.json", "metadata.json.lock"]);
}

#[test]
fn legacy_and_corrupt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = addr();
    let dir = tmp.path().join(a.as_str());
    std::fs::create_dir_all(&dir).unwrap();
    let s = MaildirDeviceTokens::new(tmp.path(), Arc::new(InlineExecutor));

    std::fs::write(
        dir.join("metadata.json"),
        r#"{"devicetoken": ["old1", "old2"]}"#,
    )
    .unwrap();
    assert_eq!(block_on(s.tokens(&a, NOW)).unwrap(), ["old1", "old2"]);
    // Converted to the dict form with ts = now on that read.
    assert_eq!(
        std::fs::read_to_string(dir.join("metadata.json")).unwrap(),
        format!(r#"{{"devicetoken": {{"old1": {NOW}, "old2": {NOW}}}}}"#)
    );

    std::fs::write(dir.join("metadata.json"), b"{\"devicetoken\": {\"x\": 1").unwrap();
    assert!(block_on(s.tokens(&a, NOW)).unwrap().is_empty());
    block_on(s.add_token(&a, "fresh", NOW)).unwrap();
    assert_eq!(block_on(s.tokens(&a, NOW)).unwrap(), ["fresh"]);

    // Expired entries are dropped from the file on read.
    std::fs::write(
        dir.join("metadata.json"),
        format!(
            r#"{{"devicetoken": {{"stale": {}, "live": {NOW}}}}}"#,
            NOW - 91 * DAY
        ),
    )
    .unwrap();
    assert_eq!(block_on(s.tokens(&a, NOW)).unwrap(), ["live"]);
    assert!(!std::fs::read_to_string(dir.join("metadata.json"))
        .unwrap()
        .contains("stale"));
}

#[test]
fn maildir_tokens_need_an_account_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MaildirDeviceTokens::new(tmp.path(), Arc::new(InlineExecutor));
    let a = addr();
    assert!(block_on(s.tokens(&a, NOW)).unwrap().is_empty());
    assert!(!block_on(s.remove_token(&a, "x", NOW)).unwrap());
    assert!(matches!(
        block_on(s.add_token(&a, "x", NOW)),
        Err(TokenError::Store(AccountError::NoAccount(_)))
    ));
    assert!(!tmp.path().join(a.as_str()).exists());
}

#[test]
fn concurrent_adds_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = addr();
    std::fs::create_dir_all(tmp.path().join(a.as_str())).unwrap();
    let s = Arc::new(MaildirDeviceTokens::new(
        tmp.path(),
        Arc::new(InlineExecutor),
    ));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            let a = a.clone();
            std::thread::spawn(move || block_on(s.add_token(&a, &format!("dev{i}"), NOW)).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(block_on(s.tokens(&a, NOW)).unwrap().len(), 16);
}
