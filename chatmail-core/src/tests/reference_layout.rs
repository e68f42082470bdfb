//! A mailboxes directory exactly as the reference relay leaves it on disk (spec 2.1):
//! `password` with a `{SHA512-CRYPT}` hash made by an independent implementation
//! (Python's crypt(3) binding), Dovecot-named messages in `cur` and `new`, a
//! `metadata.json` written the way Python's `json.dump` writes it, Dovecot's
//! `dovecot-uidlist`. This relay must log in,
//! read the tokens, scan it for expiry, and list and read the messages through the
//! `maildir` [`MailStore`] without converting any file (messages are served as Dovecot
//! served them: with CRLF line ends).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::executor::block_on;

use super::support::set_mtime;
use crate::account::*;
use crate::config::Config;
use crate::expiry::ExpiryPolicy;
use crate::store::maildir::expiry::{plan_expiry, scan_mailboxes, MaildirSubdir};
use crate::store::{MailStore, MaildirStore};
use crate::{Address, Flag, InlineExecutor, INBOX};

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 86_400;
const USER: &str = "refuser01@chat.example.org";
const PASSWORD: &str = "Ref-Layout-pw1";
const DOVECOT_UID_VALIDITY: u32 = 1_690_000_000;

/// Made once with Python 3.11 `crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA512))`;
/// used when `python3` with the `crypt` module is not available at test time.
const PYTHON_HASH_FALLBACK: &str = "$6$vzr.OY014nhKFnhA$F406UtPc0shuO74hrZdzeB22X7gSGT0BFH7SkFOzCFj9BgsNN7WMqYp85w2hTrVxFRZl1ES3SshGf3jwI9f.7.";

/// A fresh SHA-512 crypt hash from Python, or the committed one.
fn independent_hash() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))",
            PASSWORD,
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let h = String::from_utf8(o.stdout).unwrap().trim().to_string();
            assert!(h.starts_with("$6$"), "{h}");
            h
        }
        _ => {
            eprintln!("python3 crypt unavailable: using the committed Python-made hash");
            PYTHON_HASH_FALLBACK.to_string()
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A fixture as Dovecot stores it (LF line ends) and as Dovecot serves that (CRLF, the
/// size in `,W=`).
fn dovecot_forms(name: &str) -> (Vec<u8>, Vec<u8>) {
    let stored = String::from_utf8(fixture(name))
        .unwrap()
        .replace("\r\n", "\n");
    let served = stored.replace('\n', "\r\n");
    (stored.into_bytes(), served.into_bytes())
}

/// Lays out one account as the reference relay would have left it; returns its dir.
fn build_reference_dir(root: &Path) -> PathBuf {
    let dir = root.join(USER);
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let hash = format!("{{SHA512-CRYPT}}{}", independent_hash());
    fs::write(dir.join("password"), hash.as_bytes()).unwrap();
    set_mtime(&dir.join("password"), NOW - 3 * DAY);
    fs::write(dir.join("enforceE2EEincoming"), b"").unwrap();

    let (seen, seen_served) = dovecot_forms("encrypted.eml");
    let (unseen, _) = dovecot_forms("securejoin-vc.eml");
    let t1 = NOW - 2 * DAY;
    let t2 = NOW - 3600;
    let cur = dir.join(format!(
        "cur/{t1}.M123456P789.relay,S={},W={}:2,S",
        seen.len(),
        seen_served.len()
    ));
    let new = dir.join(format!("new/{t2}.M654321P987.relay,S={}", unseen.len()));
    // Dovecot's `zlib_save = gz`: stored compressed, S= is the delivered size.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &seen).unwrap();
    fs::write(&cur, gz.finish().unwrap()).unwrap();
    fs::write(&new, &unseen).unwrap();
    set_mtime(&cur, t1);
    set_mtime(&new, t2);
    // Dovecot's UID list (format 3, with the extension fields Dovecot 2.3 writes).
    fs::write(
        dir.join("dovecot-uidlist"),
        format!(
            "3 V{DOVECOT_UID_VALIDITY} N7 G3085f01b7f11094c501100008c4a11c1\n\
             4 G1a2b3c4d5e6f708192a3b4c5d6e7f809 W{} :{t1}.M123456P789.relay,S={},W={}\n\
             6 :{t2}.M654321P987.relay,S={}\n",
            seen_served.len(),
            seen.len(),
            seen_served.len(),
            unseen.len()
        ),
    )
    .unwrap();

    // Python: json.dump({"devicetoken": {...}}, f) -- ", " and ": " separators.
    fs::write(
        dir.join("metadata.json"),
        format!(
            r#"{{"devicetoken": {{"openpgp:live-token": {}, "openpgp:stale-token": {}}}}}"#,
            NOW - 10 * DAY,
            NOW - 100 * DAY
        ),
    )
    .unwrap();
    dir
}

#[test]
fn an_existing_reference_account_logs_in_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mailboxes");
    let dir = build_reference_dir(&root);
    let password_before = fs::read(dir.join("password")).unwrap();

    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = root.clone();
    let store = Arc::new(MaildirAccountStore::new(&root, Arc::new(InlineExecutor)));
    let accounts = Accounts::new(
        config,
        store.clone(),
        Arc::new(FixedSystemLimits::plenty()),
        Arc::new(InlineExecutor),
    )
    .with_nocreate_path(tmp.path().join("nocreate"));

    let ok = block_on(accounts.login(USER, PASSWORD, NOW)).unwrap();
    assert_eq!(
        ok,
        LoginOutcome::LoggedIn {
            address: Address::parse(USER).unwrap(),
            created: false
        }
    );
    let wrong = block_on(accounts.login(USER, "Ref-Layout-pw2", NOW)).unwrap();
    assert_eq!(wrong, LoginOutcome::Refused(LoginRefusal::WrongPassword));
    assert_eq!(
        fs::read(dir.join("password")).unwrap(),
        password_before,
        "nothing overwritten"
    );

    let a = Address::parse(USER).unwrap();
    assert!(!block_on(store.accepts_cleartext(&a)).unwrap());
    assert_eq!(block_on(store.last_login(&a)).unwrap(), Some(NOW - 3 * DAY));
    assert_eq!(block_on(store.list()).unwrap(), vec![a.clone()]);
    assert_eq!(
        block_on(accounts.record_imap_login(&a, NOW)).unwrap(),
        LastLoginUpdate::Updated(last_login_day(NOW))
    );
    assert_eq!(
        fs::read(dir.join("password")).unwrap(),
        password_before,
        "only the mtime changes"
    );

    let tokens = MaildirDeviceTokens::new(&root, Arc::new(InlineExecutor));
    assert_eq!(
        block_on(tokens.tokens(&a, NOW)).unwrap(),
        ["openpgp:live-token"]
    );
}

#[test]
fn the_maildir_store_lists_and_reads_the_reference_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mailboxes");
    build_reference_dir(&root);
    let store = MaildirStore::open(&root).unwrap();
    let a = Address::parse(USER).unwrap();
    let listed = block_on(store.list_messages(&a, INBOX, None)).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Delivery order: the older, seen, gzip-stored message first. Served as Dovecot
    // served them: with CRLF line ends (Dovecot stores LF), sized as served.
    let (_, seen) = dovecot_forms("encrypted.eml");
    let (_, unseen) = dovecot_forms("securejoin-vc.eml");
    // Dovecot's UIDVALIDITY and UIDs carry over: clients keep their caches.
    assert_eq!(listed.iter().map(|m| m.uid.0).collect::<Vec<_>>(), [4, 6]);
    let status = block_on(store.status(&a, INBOX)).unwrap();
    assert_eq!(status.uid_validity.0, DOVECOT_UID_VALIDITY);
    assert_eq!(listed[0].size, seen.len() as u64);
    assert_eq!(listed[1].size, unseen.len() as u64);
    assert!(listed[0].flags.contains(&Flag::Seen));
    assert!(!listed[1].flags.contains(&Flag::Seen));
    assert_eq!(
        block_on(store.read_message(&a, INBOX, listed[0].uid)).unwrap(),
        seen
    );
    assert_eq!(
        block_on(store.read_message(&a, INBOX, listed[1].uid)).unwrap(),
        unseen
    );
    // The account files belong to the account service and stay as they were.
    let dir = root.join(USER);
    assert!(dir.join("enforceE2EEincoming").exists());
    let tokens = MaildirDeviceTokens::new(&root, Arc::new(InlineExecutor));
    assert_eq!(
        block_on(tokens.tokens(&a, NOW)).unwrap(),
        ["openpgp:live-token"]
    );
}

#[test]
fn expiry_reads_the_reference_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mailboxes");
    build_reference_dir(&root);
    let scan = scan_mailboxes(&root, None);
    assert!(scan.errors.is_empty());
    let account = &scan.accounts[0];
    assert_eq!(account.last_login, Some(NOW - 3 * DAY));
    let mut subdirs: Vec<_> = account.messages.iter().map(|m| m.subdir).collect();
    subdirs.sort();
    assert_eq!(subdirs, [MaildirSubdir::Cur, MaildirSubdir::New]);
    let policy = ExpiryPolicy::from_config(&Config::with_domain("chat.example.org"));
    assert!(plan_expiry(&policy, &scan, NOW).deletions.is_empty());
    assert_eq!(
        plan_expiry(&policy, &scan, NOW + 88 * DAY).deletions.len(),
        1,
        "after 90 days without login the account goes whole"
    );
}

/// The committed fallback hash really is Python's hash of the password.
#[test]
fn committed_python_hash_verifies() {
    let h = PasswordHash::from_stored(&format!("{{SHA512-CRYPT}}{PYTHON_HASH_FALLBACK}"));
    assert_eq!(h.verify(PASSWORD), Ok(true));
    assert_eq!(h.verify("Ref-Layout-pw2"), Ok(false));
}
