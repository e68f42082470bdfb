//! Dispatch: from a complete command line to its handler, one file per command.
//!
//! Each file below holds an `impl Session` block with the command's `handle_*` entry
//! point and, where the command needs storage, the [`Continuation`] that takes the
//! embedder's answer. A command whose name is not a file here is in the file of its
//! sibling: CHECK in `noop.rs`, EXAMINE in `select.rs`, LSUB in `list.rs`, UNSUBSCRIBE in
//! `subscribe.rs`, the UID forms with their commands. The files use the session and the
//! wire helpers; only this dispatch uses them, but for two shared pieces: AUTHENTICATE
//! checks credentials as LOGIN does (`login.rs`), GETQUOTAROOT answers as GETQUOTA does
//! (`getquota.rs`).
//!
//! [`Continuation`]: crate::session::Continuation

mod append;
mod authenticate;
mod capability;
mod close;
mod compress;
mod copy_move;
mod create;
mod delete;
mod enable;
mod expunge;
mod fetch;
mod getmetadata;
mod getquota;
mod getquotaroot;
mod id;
mod idle;
mod list;
mod login;
mod logout;
mod namespace;
mod noop;
mod rename;
mod search;
mod select;
mod setmetadata;
mod setquota;
mod starttls;
mod status;
mod store;
mod subscribe;
mod unselect;

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::CommandCodec;

use crate::session::{Mode, Session, State};
use crate::wire;

impl Session {
    /// A whole command (or an IDLE/SASL continuation line) arrived: decodes it and
    /// hands it to its handler.
    pub(crate) fn command_complete(&mut self) {
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::Idle(tag) => {
                let line = self.framer.command().to_vec();
                return self.handle_idle_done(&tag, &line);
            }
            Mode::SaslResponse(tag) => {
                let line = self.framer.command().to_vec();
                return self.handle_sasl_response(&tag, &line);
            }
            Mode::AwaitingTls | Mode::Commands => {}
        }
        if self.framer.over_budget() {
            let tag = wire::tag_of(self.framer.tag_and_verb().0);
            return self.no(
                &tag,
                "[LIMIT] Too many messages in transfer on this server, try again later.",
            );
        }
        let large = self.framer.take_large();
        let held = self.framer.take_reservation();
        let buf = self.framer.command().to_vec();
        let decoded = CommandCodec::default().decode(&buf);
        match decoded {
            Ok((&[], cmd)) => {
                self.bad_commands = 0;
                let large = large.map(|(at, data)| (buf.as_ptr() as usize + at, data));
                self.dispatch(cmd, large);
                if self.pending.is_some() {
                    // The message is with the embedder: its share stays taken until the
                    // answer (dropped here otherwise, with the refused message).
                    self.held = held;
                }
            }
            Ok(_) | Err(CommandDecodeError::Failed) | Err(CommandDecodeError::Incomplete) => {
                let tag = wire::tag_of(self.framer.tag_and_verb().0);
                self.bad(&tag, "Error in IMAP command: invalid syntax.");
            }
            Err(CommandDecodeError::LiteralFound { .. }) => {
                let tag = wire::tag_of(self.framer.tag_and_verb().0);
                self.bad(&tag, "Error in IMAP command: unexpected literal.");
            }
        }
    }

    /// Routes a decoded command to its handler after the state check.
    fn dispatch(&mut self, cmd: Command<'_>, large: Option<(usize, Vec<u8>)>) {
        let tag = cmd.tag.inner().to_string();
        let state = self.state;
        let authed = matches!(state, State::Authenticated | State::Selected);
        let selected = state == State::Selected;
        use CommandBody as C;
        let refusal = match &cmd.body {
            C::Capability | C::Noop | C::Logout | C::Id { .. } => None,
            C::StartTLS | C::Login { .. } | C::Authenticate { .. } => {
                (state != State::NotAuthenticated).then_some("Command not allowed in this state.")
            }
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::ExpungeUid { .. }
            | C::Search { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
                if !selected =>
            {
                Some(if authed {
                    "No mailbox selected."
                } else {
                    "Not logged in."
                })
            }
            _ => (!authed).then_some("Not logged in."),
        };
        if let Some(text) = refusal {
            return self.bad(&tag, text);
        }
        match cmd.body {
            C::Capability => self.handle_capability(&tag),
            C::Noop | C::Check => self.handle_noop(&tag),
            C::Logout => self.handle_logout(&tag),
            C::Id { .. } => self.handle_id(&tag),
            C::StartTLS => self.handle_starttls(&tag),
            C::Login { username, password } => {
                self.handle_login(&tag, username.as_ref(), password.declassify().as_ref())
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => self.handle_authenticate(
                &tag,
                &mechanism,
                initial_response.as_ref().map(|r| r.declassify().as_ref()),
            ),
            C::Enable { capabilities } => self.handle_enable(&tag, capabilities),
            C::Namespace => self.handle_namespace(&tag),
            C::Select {
                mailbox,
                parameters,
            } => self.handle_select(&tag, &mailbox, false, &parameters),
            C::Examine {
                mailbox,
                parameters,
            } => self.handle_select(&tag, &mailbox, true, &parameters),
            C::Unselect => self.handle_unselect(&tag),
            C::Close => self.handle_close(&tag),
            C::Expunge => self.handle_expunge(&tag, None),
            C::ExpungeUid { sequence_set } => self.handle_expunge(&tag, Some(&sequence_set)),
            C::Create { mailbox } => self.handle_create(&tag, &mailbox),
            C::Delete { mailbox } => self.handle_delete(&tag, &mailbox),
            C::Rename { from, to } => self.handle_rename(&tag, &from, &to),
            C::Subscribe { mailbox } => self.handle_subscribe(&tag, &mailbox, true),
            C::Unsubscribe { mailbox } => self.handle_subscribe(&tag, &mailbox, false),
            C::List {
                reference,
                mailbox_wildcard,
            } => self.handle_list(&tag, &reference, &mailbox_wildcard, false),
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => self.handle_list(&tag, &reference, &mailbox_wildcard, true),
            C::Status {
                mailbox,
                item_names,
            } => self.handle_status(&tag, &mailbox, &item_names),
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.handle_append(&tag, &mailbox, &flags, date, &message, large),
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => self.handle_fetch(&tag, &sequence_set, macro_or_item_names, uid, &modifiers),
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => self.handle_store(&tag, &sequence_set, kind, response, &flags, uid, &modifiers),
            C::Search {
                charset,
                criteria,
                uid,
            } => {
                let charset = charset.as_ref().map(|c| c.as_ref());
                self.handle_search(&tag, charset, criteria.as_ref(), uid)
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.handle_copy_move(&tag, &sequence_set, &mailbox, uid, false),
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.handle_copy_move(&tag, &sequence_set, &mailbox, uid, true),
            C::Idle => self.handle_idle(&tag),
            C::GetQuota { root } => self.handle_getquota(&tag, root.as_ref()),
            C::GetQuotaRoot { mailbox } => self.handle_getquotaroot(&tag, &mailbox),
            C::SetQuota { .. } => self.handle_setquota(&tag),
            C::GetMetadata {
                options,
                mailbox,
                entries,
            } => self.handle_getmetadata(&tag, &options, &mailbox, entries.as_ref()),
            C::SetMetadata {
                mailbox,
                entry_values,
            } => self.handle_setmetadata(&tag, &mailbox, entry_values.as_ref()),
            C::Compress { .. } => self.handle_compress(&tag),
            C::Sort { .. } | C::Thread { .. } => self.bad(&tag, "Unknown command."),
        }
    }
}
