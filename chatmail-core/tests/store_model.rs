//! Model test: random sequences of storage operations give the same observable results
//! on the `memory` and the `maildir` backend (and, with the feature `postgres`, the
//! `postgres` one), and the other backend's UIDs strictly increase and never repeat
//! within a UIDVALIDITY, also across a reopen of the store.

use std::collections::HashMap;

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore, MemoryStore, StoreError};
use chatmail_core::{Address, Flag, FlagOp, Flags, ModSeq, Uid, UidValidity};
use futures::executor::block_on;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod support;

/// Names the operations pick from: INBOX in two spellings, folders with an inferior,
/// and an invalid one.
const NAMES: &[&str] = &[
    "INBOX",
    "inbox",
    "DeltaChat",
    "A",
    "A.B",
    "Sent",
    "bad/name",
];

fn flags_from_bits(bits: u8) -> Flags {
    let all = [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
        Flag::Keyword("$MDNSent".into()),
        Flag::Keyword("$Forwarded".into()),
    ];
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, f)| f)
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Delete(usize),
    Rename(usize, usize),
    Subscribe(usize, bool),
    Append(usize, Vec<u8>, u8, i64),
    Store(usize, Vec<u32>, u8, u8, Option<u64>),
    Expunge(usize, Vec<u32>),
    Copy(usize, Vec<u32>, usize),
    Move(usize, Vec<u32>, usize),
    List(usize, Option<u64>),
    Status(usize),
    Read(usize, u32),
    Quota,
    Mailboxes,
    Reopen,
}

fn name() -> impl Strategy<Value = usize> {
    0..NAMES.len()
}

fn uids() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..8, 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => name().prop_map(Op::Create),
        1 => name().prop_map(Op::Delete),
        1 => (name(), name()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (name(), any::<bool>()).prop_map(|(a, s)| Op::Subscribe(a, s)),
        6 => (name(), prop::collection::vec(any::<u8>(), 0..64), any::<u8>(), 1_600_000_000i64..1_800_000_000)
            .prop_map(|(n, m, f, d)| Op::Append(n, m, f, d)),
        3 => (name(), uids(), 0u8..3, any::<u8>(), prop::option::of(0u64..12))
            .prop_map(|(n, u, o, f, s)| Op::Store(n, u, o, f, s)),
        2 => (name(), uids()).prop_map(|(n, u)| Op::Expunge(n, u)),
        1 => (name(), uids(), name()).prop_map(|(a, u, b)| Op::Copy(a, u, b)),
        1 => (name(), uids(), name()).prop_map(|(a, u, b)| Op::Move(a, u, b)),
        2 => (name(), prop::option::of(0u64..12)).prop_map(|(n, s)| Op::List(n, s)),
        2 => name().prop_map(Op::Status),
        2 => (name(), 1u32..8).prop_map(|(n, u)| Op::Read(n, u)),
        1 => Just(Op::Quota),
        1 => Just(Op::Mailboxes),
        1 => Just(Op::Reopen),
    ]
}

/// UIDVALIDITY values a backend reported, for the invariants checked on the maildir
/// backend (the memory backend numbers them differently, so they are not compared).
#[derive(Default)]
struct UidTracker {
    /// Current UIDVALIDITY per mailbox name; forgotten when the name is deleted/renamed.
    current: HashMap<String, UidValidity>,
    /// Highest UID handed out per (mailbox, UIDVALIDITY), over the whole run.
    highest: HashMap<(String, UidValidity), Uid>,
}

impl UidTracker {
    fn saw_validity(&mut self, mailbox: &str, uv: UidValidity) {
        let previous = *self.current.entry(mailbox.to_string()).or_insert(uv);
        assert_eq!(
            previous, uv,
            "UIDVALIDITY of {mailbox} changed without a reset"
        );
    }

    fn saw_new_uid(&mut self, mailbox: &str, uv: UidValidity, uid: Uid) {
        self.saw_validity(mailbox, uv);
        let highest = self
            .highest
            .entry((mailbox.to_string(), uv))
            .or_insert(Uid(0));
        assert!(
            uid > *highest,
            "{mailbox}: UID {uid:?} after {highest:?} in {uv:?}"
        );
        *highest = uid;
    }

    fn forget(&mut self, prefix: &str) {
        self.current
            .retain(|name, _| name != prefix && !name.starts_with(&format!("{prefix}.")));
    }
}

fn canonical(index: usize) -> String {
    chatmail_core::store::validate_mailbox_name(NAMES[index]).unwrap_or_default()
}

/// Runs one operation; returns what a client could observe, with UIDVALIDITY values
/// blanked (checked separately by `tracker`).
fn run(store: &dyn MailStore, who: &Address, op: &Op, tracker: &mut UidTracker) -> String {
    let err = |e: StoreError| format!("error {e:?}");
    let to_uids = |v: &Vec<u32>| v.iter().map(|u| Uid(*u)).collect::<Vec<_>>();
    block_on(async {
        match op {
            Op::Create(n) => format!(
                "{:?}",
                store.create_mailbox(who, NAMES[*n]).await.map_err(err)
            ),
            Op::Delete(n) => {
                let r = store.delete_mailbox(who, NAMES[*n]).await.map_err(err);
                if r.is_ok() {
                    tracker.forget(&canonical(*n));
                }
                format!("{r:?}")
            }
            Op::Rename(a, b) => {
                let r = store
                    .rename_mailbox(who, NAMES[*a], NAMES[*b])
                    .await
                    .map_err(err);
                if r.is_ok() {
                    tracker.forget(&canonical(*a));
                    tracker.forget(&canonical(*b));
                }
                format!("{r:?}")
            }
            Op::Subscribe(n, s) => {
                format!(
                    "{:?}",
                    store.set_subscribed(who, NAMES[*n], *s).await.map_err(err)
                )
            }
            Op::Append(n, body, f, date) => {
                let r = store
                    .append(
                        who,
                        NAMES[*n],
                        Bytes::from(body.clone()),
                        &flags_from_bits(*f),
                        *date,
                    )
                    .await;
                match r {
                    Ok(mut a) => {
                        tracker.saw_new_uid(&canonical(*n), a.uid_validity, a.uid);
                        a.uid_validity = UidValidity(0);
                        format!("{a:?}")
                    }
                    Err(e) => err(e),
                }
            }
            Op::Store(n, u, o, f, since) => {
                let op = [FlagOp::Replace, FlagOp::Add, FlagOp::Remove][*o as usize];
                let r = store
                    .store_flags(
                        who,
                        NAMES[*n],
                        &to_uids(u),
                        op,
                        &flags_from_bits(*f),
                        since.map(ModSeq),
                    )
                    .await;
                format!("{:?}", r.map_err(err))
            }
            Op::Expunge(n, u) => format!(
                "{:?}",
                store
                    .expunge(who, NAMES[*n], &to_uids(u))
                    .await
                    .map_err(err)
            ),
            Op::Copy(a, u, b) | Op::Move(a, u, b) => {
                let r = if matches!(op, Op::Copy(..)) {
                    store.copy(who, NAMES[*a], &to_uids(u), NAMES[*b]).await
                } else {
                    store
                        .move_messages(who, NAMES[*a], &to_uids(u), NAMES[*b])
                        .await
                };
                match r {
                    Ok(mut c) => {
                        for (_, new) in &c.mapping {
                            tracker.saw_new_uid(&canonical(*b), c.uid_validity, *new);
                        }
                        c.uid_validity = UidValidity(0);
                        format!("{c:?}")
                    }
                    Err(e) => err(e),
                }
            }
            Op::List(n, since) => {
                format!(
                    "{:?}",
                    store
                        .list_messages(who, NAMES[*n], since.map(ModSeq))
                        .await
                        .map_err(err)
                )
            }
            Op::Status(n) => match store.status(who, NAMES[*n]).await {
                Ok(mut s) => {
                    tracker.saw_validity(&canonical(*n), s.uid_validity);
                    s.uid_validity = UidValidity(0);
                    // The maildir backend does not persist the \Recent boundary (every
                    // message is recent again after a reopen): compared in
                    // `recent_messages_are_claimed_once` instead.
                    s.recent = 0;
                    format!("{s:?}")
                }
                Err(e) => err(e),
            },
            Op::Read(n, u) => format!(
                "{:?}",
                store
                    .read_message(who, NAMES[*n], Uid(*u))
                    .await
                    .map_err(err)
            ),
            Op::Quota => format!("{:?}", store.quota_usage(who).await.map_err(err)),
            Op::Mailboxes => format!("{:?}", store.list_mailboxes(who).await.map_err(err)),
            Op::Reopen => "reopened".to_string(),
        }
    })
}

/// Runs `ops` on a memory store and on the store `open` gives (reopened at every
/// `Reopen` and once more at the end): every step gives the same observable result, and
/// the other store's UIDs strictly increase within a UIDVALIDITY.
fn agree<S: MailStore>(
    ops: &[Op],
    who: &Address,
    mut open: impl FnMut() -> S,
) -> Result<(), TestCaseError> {
    let memory = MemoryStore::new();
    let mut other = open();
    let mut memory_uids = UidTracker::default();
    let mut other_uids = UidTracker::default();
    for (step, op) in ops.iter().enumerate() {
        if matches!(op, Op::Reopen) {
            drop(other);
            other = open();
        }
        let expected = run(&memory, who, op, &mut memory_uids);
        let got = run(&other, who, op, &mut other_uids);
        prop_assert_eq!(&expected, &got, "step {} {:?}", step, op);
    }
    // A final reopen shows the same state as the live store had.
    drop(other);
    let other = open();
    for n in 0..NAMES.len() {
        for op in [Op::Status(n), Op::List(n, None)] {
            let expected = run(&memory, who, &op, &mut memory_uids);
            let got = run(&other, who, &op, &mut other_uids);
            prop_assert_eq!(&expected, &got, "after reopen {:?}", op);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_maildir_agree(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let who = Address::parse("model@chat.example.org").unwrap();
        agree(&ops, &who, || MaildirStore::open(dir.path()).unwrap())?;
    }
}

/// The same against the postgres store, on a throwaway cluster (`support/postgres.rs`):
/// one database, a fresh account per case; `Reopen` opens a new store on it.
#[cfg(feature = "postgres")]
#[test]
fn memory_and_postgres_agree() {
    use proptest::test_runner::{Config, TestRunner};

    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let who = Address::parse(&format!("model{case}@chat.example.org")).unwrap();
        agree(&ops, &who, || cluster.open_store(&rt, "model"))
    });
    if let Err(failure) = result {
        panic!("{failure}\npostgres log:\n{}", cluster.log());
    }
}

/// `\Recent` (RFC 3501 2.3.2) on both backends: STATUS counts the unclaimed messages,
/// the first claim gets them, a second claim gets nothing, and only messages appended
/// after a claim go to the next one.
#[test]
fn recent_messages_are_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = MaildirStore::open(dir.path()).unwrap();
    let memory = MemoryStore::new();
    let who = Address::parse("recent001@example.org").unwrap();
    for store in [&memory as &dyn MailStore, &maildir] {
        block_on(async {
            let none = Flags::new();
            let append = |n: usize| {
                store.append(
                    &who,
                    "INBOX",
                    Bytes::from(vec![b'x'; 10 + n]),
                    &none,
                    1_700_000_000,
                )
            };
            append(1).await.unwrap();
            append(2).await.unwrap();
            assert_eq!(store.status(&who, "INBOX").await.unwrap().recent, 2);
            assert_eq!(
                store.claim_recent(&who, "INBOX").await.unwrap(),
                Uid(1)..Uid(3)
            );
            assert_eq!(store.status(&who, "INBOX").await.unwrap().recent, 0);
            assert!(store.claim_recent(&who, "INBOX").await.unwrap().is_empty());
            append(3).await.unwrap();
            assert_eq!(store.status(&who, "INBOX").await.unwrap().recent, 1);
            assert_eq!(
                store.claim_recent(&who, "INBOX").await.unwrap(),
                Uid(3)..Uid(4)
            );
            assert!(store.claim_recent(&who, "INBOX").await.unwrap().is_empty());
        });
    }
}
