//! Concurrent first logins (reference `test_doveauth.py`): ten threads logging in to one
//! new address create exactly one account and all succeed; 50 threads x 5 creations.

use std::sync::{Arc, Barrier};

use chatmail_core::account::*;
use chatmail_core::config::Config;
use chatmail_core::Address;
use chatmail_core::{BlockingExecutor, InlineExecutor, ThreadExecutor};
use futures::executor::block_on;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod support;

const NOW: u64 = 1_700_000_000;

fn accounts(store: Arc<dyn AccountStore>, root: &std::path::Path) -> Arc<Accounts> {
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = root.to_path_buf();
    Arc::new(
        Accounts::new(
            config,
            store,
            Arc::new(FixedSystemLimits::plenty()),
            Arc::new(InlineExecutor),
        )
        .with_nocreate_path(root.join("nocreate")),
    )
}

fn stores(root: &std::path::Path) -> Vec<(&'static str, Arc<dyn AccountStore>)> {
    vec![
        ("memory", Arc::new(MemoryAccountStore::new())),
        (
            "maildir",
            Arc::new(MaildirAccountStore::new(root, Arc::new(InlineExecutor))),
        ),
    ]
}

/// Ten threads log in to one new address at once, thread `i` through `nodes[i % n]`:
/// exactly one account is created (as `store` shows), and every login succeeds.
fn ten_first_logins(name: &str, nodes: &[Arc<Accounts>], store: &dyn AccountStore) {
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let accounts = nodes[i % nodes.len()].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                block_on(accounts.login("concurren@chat.example.org", "password123", NOW)).unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, LoginOutcome::LoggedIn { created: true, .. }))
        .count();
    let logged_in = outcomes
        .iter()
        .filter(|o| matches!(o, LoginOutcome::LoggedIn { .. }))
        .count();
    assert_eq!((created, logged_in), (1, 10), "{name}: {outcomes:?}");
    let addr = Address::parse("concurren@chat.example.org").unwrap();
    let hash = block_on(store.lookup(&addr)).unwrap().unwrap().password;
    assert_eq!(hash.verify("password123"), Ok(true));
    assert_eq!(block_on(store.list()).unwrap(), vec![addr]);
}

#[test]
fn ten_concurrent_first_logins_create_one_account() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, store) in stores(tmp.path()) {
        let accounts = accounts(store.clone(), tmp.path());
        ten_first_logins(name, &[accounts], &*store);
    }
}

/// Ten first logins of one address at once, spread over two postgres store instances
/// (two relay nodes sharing one database): one account, ten logins.
#[cfg(feature = "postgres")]
#[test]
fn ten_concurrent_first_logins_on_two_postgres_nodes_create_one_account() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let tmp = tempfile::tempdir().unwrap();
    let a = Arc::new(cluster.open_store(&rt, "a"));
    let b = Arc::new(cluster.open_store(&rt, "b"));
    let nodes = [accounts(a.clone(), tmp.path()), accounts(b, tmp.path())];
    ten_first_logins("postgres", &nodes, &*a);
}

#[test]
fn fifty_threads_five_creations_each() {
    let tmp = tempfile::tempdir().unwrap();
    // The maildir store is the one with real locking; hashing dominates the run time, so
    // the memory store is covered by the ten-logins test only.
    for (name, store) in stores(tmp.path())
        .into_iter()
        .filter(|(n, _)| *n == "maildir")
    {
        let accounts = accounts(store.clone(), tmp.path());
        let handles: Vec<_> = (0..50)
            .map(|t| {
                let accounts = accounts.clone();
                std::thread::spawn(move || {
                    for i in 0..5 {
                        let user = format!("t{t:02}u{i}{}@chat.example.org", "xxxx");
                        let out = block_on(accounts.login(&user, "password123", NOW)).unwrap();
                        assert!(
                            matches!(out, LoginOutcome::LoggedIn { created: true, .. }),
                            "{user}: {out:?}"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let listed = block_on(store.list()).unwrap();
        assert_eq!(listed.len(), 250, "{name}");
        if name == "maildir" {
            let dirs = std::fs::read_dir(tmp.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .contains('@')
                })
                .count();
            assert_eq!(dirs, 250);
        }
    }
}

#[test]
fn thread_executor_runs_jobs_off_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = tmp.path().to_path_buf();
    let accounts = Accounts::new(
        config,
        Arc::new(MaildirAccountStore::new(
            tmp.path(),
            Arc::new(ThreadExecutor),
        )),
        Arc::new(FixedSystemLimits::plenty()),
        Arc::new(ThreadExecutor),
    )
    .with_nocreate_path(tmp.path().join("nocreate"));
    let out = block_on(accounts.login("threadexe@chat.example.org", "password123", NOW)).unwrap();
    assert!(matches!(out, LoginOutcome::LoggedIn { created: true, .. }));
}

/// An executor that drops every job: the login reports an infrastructure error, not a
/// refused login, and does not hang.
#[test]
fn dropped_jobs_are_errors() {
    struct Dropping;
    impl BlockingExecutor for Dropping {
        fn spawn_blocking(&self, _job: Box<dyn FnOnce() + Send + 'static>) {}
    }
    let accounts = Accounts::new(
        Config::with_domain("chat.example.org"),
        Arc::new(MemoryAccountStore::new()),
        Arc::new(FixedSystemLimits::plenty()),
        Arc::new(Dropping),
    )
    .with_nocreate_path("/nonexistent/nocreate");
    let err = block_on(accounts.login("dropjobs1@chat.example.org", "password123", NOW));
    assert!(matches!(err, Err(AccountError::ExecutorGone)), "{err:?}");
}
