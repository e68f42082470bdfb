//! Accounts: validation, password hashes, creation on first login, last login, device tokens.
//!
//! A chatmail relay has no sign-up step: the first login with an unknown address of this
//! relay creates the account, if the address and password pass the reference relay's
//! rules (spec 2.2) and the machine has room for it (spec 1.2, system limits). The pieces:
//!
//! * [`parse_login`] and [`check_new_account`]: which login names are looked up and
//!   which new accounts are acceptable (see "Login names" below).
//! * [`PasswordHash`]: Dovecot-compatible password hashes (`{SHA512-CRYPT}` by
//!   default), verified in constant time.
//! * [`AccountStore`]: where accounts live, with [`MemoryAccountStore`] and
//!   [`MaildirAccountStore`] (the reference relay's `<mailboxes_dir>/<addr>/password`
//!   layout, so an existing relay's accounts keep working).
//! * [`SystemLimits`]: load, memory and disk readings that refuse *new* accounts when the
//!   machine is short ([`LinuxSystemLimits`], [`FixedSystemLimits`] for tests).
//! * [`Accounts`]: the login algorithm of spec 2.2 on top of the three. Passwords longer
//!   than [`MAX_PASSWORD_LEN`] fail before any lookup or hash.
//! * [`HashingPool`]: bounded threads of their own for password hashes.
//! * [`LoginThrottle`]: failed-login limits per client IP and per account.
//! * [`DeviceTokenStore`]: push-notification device tokens per account (spec 5.1/5.2), with
//!   [`MemoryDeviceTokens`] and [`MaildirDeviceTokens`] (`metadata.json`).
//!
//! # Login names
//!
//! Two steps, as in the reference relay (spec 2.2):
//!
//! 1. [`parse_login`] turns the login name into the account's [`Address`](crate::Address). Like Dovecot
//!    (`auth_username_format=%Lu`), the name is lower-cased first, so `Abc@D` logs into an
//!    existing `abc@D`. Addresses of other domains are never looked up.
//! 2. [`check_new_account`] decides whether an unknown address may be created. Here this
//!    relay is stricter than the letter of the reference in one point: a login name that
//!    contains an upper-case letter *as given* never creates an account. (The reference
//!    lower-cases first, so `ABC…@D` would create `abc…@D`; the recommended acceptance
//!    suite, spec 7.4 item 4, expects upper-case local parts to fail.) Existing accounts
//!    remain reachable with any capitalisation.
//!
//! # Blocking work and async runtimes
//!
//! A password hash costs a few milliseconds of CPU (5000 rounds of SHA-512), and the
//! `maildir` stores do small file-system calls (and may wait up to 5 s for another
//! process's creation lock). None of that runs on the async task that awaits it: every such
//! piece of work is handed to the [`BlockingExecutor`](crate::BlockingExecutor) given at
//! construction, and the async method awaits its completion (see [`crate::executor`]).
//!
//! Password hashes can go to a [`HashingPool`] of their own instead
//! ([`Accounts::with_hashing_pool`]; the relay always does this), so that a flood of
//! logins neither waits ahead of nor slows the file-system work on the executor.
//!
//! # Example: first login creates the account
//!
//! ```
//! use std::sync::Arc;
//! use chatmail_core::account::*;
//! use chatmail_core::InlineExecutor;
//! use chatmail_core::config::Config;
//!
//! let config = Config::with_domain("chat.example.org");
//! let accounts = Accounts::new(
//!     config,
//!     Arc::new(MemoryAccountStore::new()),
//!     Arc::new(FixedSystemLimits::plenty()),
//!     Arc::new(InlineExecutor),
//! )
//! .with_nocreate_path("/nonexistent/chatmail-nocreate");
//! let now = 1_700_000_000;
//! let first = futures::executor::block_on(accounts.login("abcdefghi@chat.example.org", "secret-pw", now));
//! assert!(matches!(first, Ok(LoginOutcome::LoggedIn { created: true, .. })));
//! let wrong = futures::executor::block_on(accounts.login("abcdefghi@chat.example.org", "other-pw1", now));
//! assert!(matches!(wrong, Ok(LoginOutcome::Refused(LoginRefusal::WrongPassword))));
//! ```

pub(crate) mod fsutil;
mod hashing;
mod limits;
mod maildir;
mod memory;
mod password;
mod service;
mod store;
mod throttle;
mod tokens;
mod validate;

pub use hashing::{HashingPool, PoolBusy};
pub use limits::{FixedSystemLimits, LimitRefusal, LinuxSystemLimits, SystemLimits};
pub use maildir::MaildirAccountStore;
#[cfg(feature = "postgres")]
pub(crate) use maildir::{DISABLED_FILE, ENFORCE_E2EE_FILE, PASSWORD_FILE};
pub use memory::MemoryAccountStore;
pub use password::{PasswordError, PasswordHash, PasswordScheme, MAX_VERIFY_ROUNDS};
pub use service::{Accounts, LoginOutcome, LoginRefusal, DEFAULT_NOCREATE_PATH};
pub use store::{
    last_login_day, AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate,
};
pub use throttle::{Admission, LoginThrottle, ThrottleSettings};
#[cfg(feature = "postgres")]
pub(crate) use tokens::{check_token, read_token_times, write_token_times};
pub use tokens::{
    DeviceTokenStore, MaildirDeviceTokens, MemoryDeviceTokens, TokenError, DEVICE_TOKEN_ENTRY,
    MAX_TOKENS_PER_ACCOUNT, MAX_TOKEN_LEN, TOKEN_FUTURE_SLACK_SECS, TOKEN_LIFETIME_SECS,
};
pub use validate::{
    check_new_account, parse_login, CreationRefusal, LoginNameError, MAX_PASSWORD_LEN,
};
