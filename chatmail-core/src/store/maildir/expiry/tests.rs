//! Every expiry rule of spec 6.1/6.2 with an injected clock, mirroring the reference's
//! `test_expire.py` and `test_delete_inactive_users.py`: the plan the maildir backend
//! makes on files, and the store carrying it out.

use std::fs;
use std::path::{Path, PathBuf};

use futures::executor::block_on;

use super::*;
use crate::config::Config;
use crate::expiry::{quota_expire_log_line, ExpiryReport, RemovalKind};
use crate::store::{MailStore, MaildirStore};
use crate::tests::support::set_mtime;
use crate::{Address, Uid, INBOX};

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

/// Writes `size` bytes at `path` with mtime `mtime`.
fn put(path: &Path, size: usize, mtime: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![b'x'; size]).unwrap();
    set_mtime(path, mtime);
}

/// An account directory with a password file whose mtime is `last_login`.
fn account(root: &Path, name: &str, last_login: u64) -> PathBuf {
    let dir = root.join(name);
    put(&dir.join("password"), 20, last_login);
    dir
}

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::from_config(&Config::with_domain("chat.example.org"))
}

/// The plan for the tree under `root` (a dry run), then the store's expiry run.
fn run(root: &Path, policy: &ExpiryPolicy) -> (ExpiryPlan, ExpiryReport) {
    // Opened after the files were written, the store sweeps `tmp/` (by the real clock).
    run_with(&MaildirStore::open(root).unwrap(), root, policy)
}

fn run_with(
    store: &MaildirStore,
    root: &Path,
    policy: &ExpiryPolicy,
) -> (ExpiryPlan, ExpiryReport) {
    let scan = scan_mailboxes(root, None);
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let plan = plan_expiry(policy, &scan, NOW);
    let report = block_on(store.expire(policy, NOW)).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.accounts_total, plan.accounts_total);
    assert_eq!(report.messages_total, plan.messages_total);
    (plan, report)
}

#[test]
fn scan_is_recursive_and_separates_messages_from_extra_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW - DAY);
    put(&dir.join("cur/1.M1,S=10:2,S"), 10, NOW);
    put(&dir.join("new/2.M2,S=20"), 20, NOW);
    put(&dir.join("tmp/3.M3"), 30, NOW);
    put(&dir.join(".DeltaChat/cur/4.M4,S=40:2,"), 40, NOW);
    put(&dir.join("dovecot.index.cache"), 100, NOW);
    put(&dir.join(".DeltaChat/dovecot-uidlist"), 7, NOW);
    fs::create_dir_all(tmp.path().join("not-an-account")).unwrap();
    put(&tmp.path().join("file@not-a-dir"), 1, NOW);

    let scan = scan_mailboxes(tmp.path(), None);
    assert_eq!(scan.accounts.len(), 1);
    let a = &scan.accounts[0];
    assert_eq!(a.name, "user1@chat.example.org");
    assert_eq!(a.last_login, Some(NOW - DAY));
    let mut msgs: Vec<_> = a
        .messages
        .iter()
        .map(|m| (m.path.to_str().unwrap(), m.size, m.subdir, m.top_level))
        .collect();
    msgs.sort();
    assert_eq!(
        msgs,
        vec![
            (".DeltaChat/cur/4.M4,S=40:2,", 40, MaildirSubdir::Cur, false),
            ("cur/1.M1,S=10:2,S", 10, MaildirSubdir::Cur, true),
            ("new/2.M2,S=20", 20, MaildirSubdir::New, true),
            ("tmp/3.M3", 30, MaildirSubdir::Tmp, true),
        ]
    );
    let mut extra: Vec<_> = a
        .extra_files
        .iter()
        .map(|f| (f.path.to_str().unwrap(), f.size))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        vec![
            (".DeltaChat/dovecot-uidlist", 7),
            ("dovecot.index.cache", 100),
            ("password", 20)
        ]
    );
    assert!(!a.is_empty);
    assert_eq!(scan_mailboxes(tmp.path(), Some(0)).accounts.len(), 0);
    assert!(scan_mailboxes(&tmp.path().join("missing"), None)
        .accounts
        .is_empty());
}

#[test]
fn old_messages_are_removed_in_every_folder_and_subdir() {
    let tmp = tempfile::tempdir().unwrap();
    // Open before the files exist: its sweep of `tmp/` at open is not what is tested.
    let store = MaildirStore::open(tmp.path()).unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    let old = NOW - 21 * DAY;
    let kept = NOW - 19 * DAY;
    for p in ["cur/old1", "new/old2", "tmp/old3", ".DeltaChat/cur/old4"] {
        put(&dir.join(p), 100, old);
    }
    for p in ["cur/young1", "new/young2", ".DeltaChat/new/young3"] {
        put(&dir.join(p), 100, kept);
    }
    // Exactly at the cut-off is not older than it.
    put(&dir.join("cur/edge"), 100, NOW - 20 * DAY);
    put(&dir.join("maildirsize"), 10, NOW);

    let (plan, report) = run_with(&store, tmp.path(), &policy());
    // Four messages; and the stale quota cache `maildirsize` (below).
    assert_eq!(report.messages_removed, 4, "{plan:?}");
    for p in [
        "cur/old1",
        "new/old2",
        "tmp/old3",
        ".DeltaChat/cur/old4",
        "maildirsize",
    ] {
        assert!(!dir.join(p).exists(), "{p}");
    }
    for p in [
        "cur/young1",
        "new/young2",
        ".DeltaChat/new/young3",
        "cur/edge",
        "password",
    ] {
        assert!(dir.join(p).exists(), "{p}");
    }
    assert!(plan.deletions.iter().any(|d| matches!(
        d,
        PlannedDeletion::File {
            reason: DeletionReason::OldMessage,
            ..
        }
    )));
}

#[test]
fn large_messages_in_cur_go_after_seven_days_large_unseen_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    put(&dir.join("cur/large-old"), 300_000, NOW - 8 * DAY);
    put(
        &dir.join(".DeltaChat/cur/large-old-sub"),
        300_000,
        NOW - 8 * DAY,
    );
    put(&dir.join("new/large-old-unseen"), 300_000, NOW - 8 * DAY);
    put(&dir.join("cur/large-young"), 300_000, NOW - DAY);
    put(&dir.join("cur/small-old"), 200_000, NOW - 8 * DAY);
    put(&dir.join("maildirsize"), 10, NOW);

    let (plan, _) = run(tmp.path(), &policy());
    let mut removed: Vec<_> = plan
        .deletions
        .iter()
        .map(|d| match d {
            PlannedDeletion::File { path, reason } => {
                (path.strip_prefix(&dir).unwrap().to_path_buf(), *reason)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        removed,
        vec![
            (
                PathBuf::from(".DeltaChat/cur/large-old-sub"),
                DeletionReason::LargeOldMessage
            ),
            (
                PathBuf::from("cur/large-old"),
                DeletionReason::LargeOldMessage
            ),
            (PathBuf::from("maildirsize"), DeletionReason::QuotaCache),
        ]
    );
    assert!(dir.join("new/large-old-unseen").exists());
    assert!(dir.join("cur/large-young").exists());
    assert!(dir.join("cur/small-old").exists());
    assert!(!dir.join("maildirsize").exists());
}

#[test]
fn maildirsize_stays_when_nothing_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    put(&dir.join("cur/fresh"), 10, NOW);
    put(&dir.join("maildirsize"), 10, NOW);
    let (plan, _) = run(tmp.path(), &policy());
    assert!(plan.deletions.is_empty());
    assert!(dir.join("maildirsize").exists());
}

#[test]
fn inactive_accounts_are_removed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = account(tmp.path(), "gone0001@chat.example.org", NOW - 90 * DAY - 1);
    put(&gone.join("cur/m"), 10, NOW);
    put(&gone.join("metadata.json"), 10, NOW);
    let edge = account(tmp.path(), "edge0001@chat.example.org", NOW - 90 * DAY);
    let (plan, report) = run(tmp.path(), &policy());
    assert_eq!(plan.accounts_removed(), 1);
    assert_eq!(report.accounts_removed, 1);
    assert!(!gone.exists());
    assert!(edge.join("password").exists());
}

/// `test_delete_inactive_users.py`: 150 stale users go, 5 fresh ones stay.
#[test]
fn delete_inactive_users_150_old_5_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..150 {
        let d = account(
            tmp.path(),
            &format!("old{i:05}@chat.example.org"),
            NOW - 90 * DAY - 1,
        );
        put(&d.join("cur/msg"), 10, NOW - DAY);
    }
    for i in 0..5 {
        account(tmp.path(), &format!("new{i:05}@chat.example.org"), NOW);
    }
    let (plan, report) = run(tmp.path(), &policy());
    assert_eq!(plan.accounts_total, 155);
    assert_eq!(report.accounts_removed, 150);
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 5);
    for name in left {
        assert!(name.starts_with("new"));
        assert!(tmp.path().join(name).join("password").exists());
    }
}

#[test]
fn accounts_without_password_are_removed_only_when_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty001@chat.example.org");
    fs::create_dir_all(&empty).unwrap();
    let full = tmp.path().join("full0001@chat.example.org");
    put(&full.join("cur/old"), 10, NOW - 100 * DAY);
    let (plan, report) = run(tmp.path(), &policy());
    assert_eq!(report.directories_removed, 1);
    assert!(!empty.exists());
    // Not touched at all, even the old message: no password means no expiry decisions.
    assert!(full.join("cur/old").exists());
    assert_eq!(plan.kept_without_password, vec![full]);
}

/// Was the module's doc example: an account directory with no password file whose only
/// entry is an empty `cur/` is not empty, so the reference keeps it.
#[test]
fn account_without_password_holding_an_empty_cur_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("abcdefghi@chat.example.org/cur")).unwrap();
    let plan = plan_expiry(&policy(), &scan_mailboxes(tmp.path(), None), NOW);
    assert!(plan.deletions.is_empty());
}

#[test]
fn dovecot_file_names() {
    assert_eq!(
        parse_dovecot_name("1700000000.M512P123.host,S=4567,W=4600:2,S"),
        Some((1_700_000_000, 4567))
    );
    assert_eq!(
        parse_dovecot_name("1700000000.M1.h,S=0"),
        Some((1_700_000_000, 0))
    );
    assert_eq!(parse_dovecot_name("1700000000.M1.h:2,S"), None);
    assert_eq!(parse_dovecot_name("x1700000000.M1,S=5"), None);
    assert_eq!(parse_dovecot_name("1700000000.M1,S=5x"), None);
    assert_eq!(parse_dovecot_name("1700000000.M1,S=:2,"), None);
    assert_eq!(parse_dovecot_name("maildirsize"), None);
    assert_eq!(parse_dovecot_name(""), None);
    assert_eq!(
        parse_dovecot_name("99999999999999999999999.M1,S=5"),
        None,
        "overflow is no match, not a panic"
    );
}

fn msg(name: &str) -> ScannedMessage {
    ScannedMessage {
        path: PathBuf::from("cur").join(name),
        mtime: 0,
        size: 1,
        subdir: MaildirSubdir::Cur,
        top_level: true,
    }
}

#[test]
fn trimming_is_oldest_first_by_name_time_and_size_and_spares_the_last_day() {
    let t = NOW - 10 * DAY;
    let ms = [
        msg(&format!("{}.b,S=600", t + 1)),
        msg(&format!("{}.a,S=600", t + 1)),
        msg(&format!("{t}.z,S=700")),
        msg(&format!("{t}.y,S=500")),
        msg(&format!("{}.young,S=5000", NOW - 3600)),
        msg("not-dovecot-named"),
    ];
    let refs: Vec<&ScannedMessage> = ms.iter().collect();
    // Total 7400; target 5500 -> remove (t,500), (t,700), (t+1,600,"a") = 1800 -> 5600, then
    // (t+1,600,"b") -> 5000 <= 5500 stop.
    let out: Vec<_> = plan_quota_trim(&refs, 5500, NOW)
        .iter()
        .map(|m| m.file_name().to_string())
        .collect();
    assert_eq!(
        out,
        vec![
            format!("{t}.y,S=500"),
            format!("{t}.z,S=700"),
            format!("{}.a,S=600", t + 1),
            format!("{}.b,S=600", t + 1),
        ]
    );
    // Target 0: everything old goes, the message younger than 24 h stays.
    assert_eq!(plan_quota_trim(&refs, 0, NOW).len(), 4);
    // Under target: nothing.
    assert!(plan_quota_trim(&refs, 7400, NOW).is_empty());
}

#[test]
fn daily_expiry_trims_to_seventy_percent_using_s_sizes() {
    let mut config = Config::with_domain("chat.example.org");
    config.max_mailbox_size_mb = 1;
    let policy = ExpiryPolicy::from_config(&config);
    assert_eq!(policy.quota_target_bytes, 734_003);
    let tmp = tempfile::tempdir().unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    // Small on disk (compressed), large logically: S= decides.
    let names = [
        (NOW - 5 * DAY, "new"),
        (NOW - 4 * DAY, "cur"),
        (NOW - 3 * DAY, "cur"),
        (NOW - 3600, "new"),
    ];
    for (t, sub) in names {
        put(
            &dir.join(format!("{sub}/{t}.M1P1.host,S=300000:2,")),
            100,
            t,
        );
    }
    put(
        &dir.join(format!(".DeltaChat/cur/{}.M1,S=900000", NOW - 6 * DAY)),
        100,
        NOW,
    );
    put(&dir.join("maildirsize"), 10, NOW);
    let (plan, _) = run(tmp.path(), &policy);
    let trimmed: Vec<_> = plan
        .deletions
        .iter()
        .filter_map(|d| match d {
            PlannedDeletion::File {
                path,
                reason: DeletionReason::QuotaTrim,
            } => Some(path.file_name().unwrap().to_str().unwrap().to_string()),
            _ => None,
        })
        .collect();
    // 1,200,000 -> remove two oldest top-level -> 600,000 <= 734,003; subfolders are not
    // trimmed.
    assert_eq!(
        trimmed,
        vec![
            format!("{}.M1P1.host,S=300000:2,", NOW - 5 * DAY),
            format!("{}.M1P1.host,S=300000:2,", NOW - 4 * DAY),
        ]
    );
    assert!(!dir.join("maildirsize").exists());
    assert_eq!(fs::read_dir(dir.join("cur")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 1);
}

#[test]
fn quota_expire_trims_the_inbox_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    put(
        &dir.join(format!("cur/{}.M1,S=1000", NOW - 2 * DAY)),
        5,
        NOW,
    );
    put(&dir.join(format!("new/{}.M2,S=1000", NOW - 60)), 5, NOW);
    put(&dir.join("maildirsize"), 10, NOW);
    let store = MaildirStore::open(tmp.path()).unwrap();
    let user = Address::parse("user1@chat.example.org").unwrap();
    // Down to 500 bytes: the older goes, the one younger than a day stays.
    let trimmed = block_on(store.trim_to_quota(&user, 500, NOW)).unwrap();
    assert_eq!(trimmed.len(), 1, "{trimmed:?}");
    let left = block_on(store.list_messages(&user, INBOX, None)).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].uid != trimmed[0]);
    assert!(!dir
        .join(format!("cur/{}.M1,S=1000", NOW - 2 * DAY))
        .exists());
    assert!(dir.join(format!("new/{}.M2,S=1000", NOW - 60)).exists());
    assert!(!dir.join("maildirsize").exists());
    // Nothing left to trim: nothing removed, nothing published.
    assert_eq!(
        block_on(store.trim_to_quota(&user, 500, NOW)).unwrap(),
        Vec::<Uid>::new()
    );
    assert_eq!(
        quota_expire_log_line(1, "user1@chat.example.org"),
        "quota-expire: removed 1 message(s) from user1@chat.example.org"
    );
}

#[test]
fn a_dry_run_lists_what_the_real_run_removes_and_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(tmp.path()).unwrap();
    let dir = account(tmp.path(), "user1@chat.example.org", NOW);
    put(&dir.join("cur/1.M1,S=10:2,S"), 10, NOW - 21 * DAY);
    put(&dir.join("new/2.M2,S=10"), 10, NOW - 19 * DAY);
    put(&dir.join("cur/3.M3,S=300000:2,S"), 300_000, NOW - 8 * DAY);
    let gone = account(tmp.path(), "gone0001@chat.example.org", NOW - 91 * DAY);
    let mut dry = policy();
    dry.dry_run = true;
    let listed = block_on(store.expire(&dry, NOW)).unwrap();
    let mut paths: Vec<(RemovalKind, PathBuf)> = listed
        .removals
        .iter()
        .map(|r| (r.kind, r.path.clone()))
        .collect();
    paths.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        paths,
        vec![
            (RemovalKind::InactiveAccount, gone.clone()),
            (RemovalKind::OldMessage, dir.join("cur/1.M1,S=10:2,S")),
            (
                RemovalKind::LargeOldMessage,
                dir.join("cur/3.M3,S=300000:2,S")
            ),
        ]
    );
    assert_eq!((listed.messages_removed, listed.accounts_removed), (2, 1));
    assert!(
        gone.exists() && dir.join("cur/1.M1,S=10:2,S").exists(),
        "dry run removed"
    );
    let real = block_on(store.expire(&policy(), NOW)).unwrap();
    assert_eq!(real.removals, listed.removals, "the same decisions");
    assert_eq!((real.messages_removed, real.accounts_removed), (2, 1));
    assert!(!gone.exists() && !dir.join("cur/1.M1,S=10:2,S").exists());
    assert!(dir.join("new/2.M2,S=10").exists());
}
