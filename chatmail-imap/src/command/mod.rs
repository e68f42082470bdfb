//! One file per command group, so that the handling of a command is easy to find.
//!
//! Each file has the entry points `dispatch` calls with the decoded command and, where
//! the command needs storage, the `*_answered` continuation that gets the embedder's
//! answer.

pub(crate) mod append;
pub(crate) mod copy;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod idle;
pub(crate) mod login;
pub(crate) mod mailbox;
pub(crate) mod metadata;
pub(crate) mod quota;
pub(crate) mod search;
pub(crate) mod select;
pub(crate) mod store;

use chatmail_core::Address;

use crate::session::Session;

/// The logged-in account, or a tagged NO if there is none (cannot happen after the
/// state check, but a peer must never be able to cause a panic).
pub(crate) fn account(s: &mut Session, tag: &str) -> Option<Address> {
    let account = s.account_for_request();
    if account.is_none() {
        s.no(tag, "[SERVERBUG] No account.");
    }
    account
}
