//! `RCPT TO:<forward-path> [parameters]` (RFC 5321 4.1.1.3): adds a recipient.
//!
//! Submission takes local and remote recipients from an authenticated sender. MX and
//! LMTP take only the relay's own domain (else `554 5.7.1 ... Relay access denied`, spec
//! 4.1) and ask the embedder about each recipient ([`Request::Recipient`]): whether it
//! exists for delivery and whether it accepts cleartext.
//!
//! A recipient given twice is acknowledged twice (`250`, as Postfix does) but kept once,
//! so the message is stored once per mailbox. LMTP keeps every RCPT: it owes one reply
//! per accepted RCPT after the message, and the embedder delivers once per mailbox.

use std::borrow::Cow;

use chatmail_core::engine::{AnswerError, RequestId};
use smtp_proto::RcptTo;

use crate::server::config::Role;
use crate::server::request::{RecipientAnswer, Request};
use crate::server::session::{domain_of, printable, Awaited, Recipient, ServerSession};

impl ServerSession {
    /// `RCPT TO`. `ORCPT` and `NOTIFY` parameters are parsed and ignored (spec 3.2).
    pub(super) fn on_rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &str) {
        if self.txn.mail_from.is_none() {
            return self.send_error(503, "5.5.1 Error: need MAIL command");
        }
        let address = if to.address.is_empty() {
            // The grammar reads `<Postmaster>` (RFC 5321 4.5.1: no domain needed) and
            // `<>` both as "": only the first is a recipient.
            if line.to_ascii_lowercase().contains("<postmaster>") {
                format!("postmaster@{}", self.policy.config().mail_domain)
            } else {
                return self.send_error(501, "5.1.3 Bad recipient address syntax");
            }
        } else {
            to.address.into_owned()
        };
        if self.config.role != Role::Lmtp
            && self
                .txn
                .recipient_keys
                .contains(&self.recipient_key(&address))
        {
            return self.send_reply(250, "2.1.5 Ok");
        }
        if self.txn.recipients.len() >= self.config.max_recipients {
            return self.send_reply(452, "4.5.3 Error: too many recipients");
        }
        if let Some(failure) = &self.txn.sender_failure {
            let failure = failure.clone();
            return self.send(&failure);
        }
        match self.config.role {
            Role::Submission => {
                self.add_recipient(address, false, false);
                self.send_reply(250, "2.1.5 Ok");
            }
            Role::Mx | Role::Lmtp => {
                if !self.is_local_domain(domain_of(&address).unwrap_or("")) {
                    let text = format!("5.7.1 <{}>: Relay access denied", printable(&address));
                    return self.send_error(554, &text);
                }
                // The address names a mailbox directory (spec 2.1): no path separators.
                if address.contains('/') || address.contains('\\') {
                    return self.send_error(550, "5.1.3 Bad recipient address syntax");
                }
                self.request(
                    Request::Recipient {
                        address: address.clone(),
                    },
                    Awaited::Recipient(address),
                );
            }
        }
    }

    /// `confirmed`: the embedder confirmed the mailbox (MX, LMTP).
    fn add_recipient(&mut self, address: String, accepts_cleartext: bool, confirmed: bool) {
        let key = self.recipient_key(&address);
        self.txn.recipient_keys.insert(key);
        self.txn.recipients.push(Recipient {
            address,
            accepts_cleartext,
            confirmed,
        });
    }

    /// What makes two recipients the same mailbox: domains compare case-insensitively,
    /// and so do local parts in the relay's own domain (account names are lower-case,
    /// and the account of `Bob@` is `bob@`). Other servers' local parts are theirs to
    /// interpret (RFC 5321 2.4) and compare exactly.
    fn recipient_key(&self, address: &str) -> String {
        match address.rsplit_once('@') {
            Some((_, domain)) if self.is_local_domain(domain) => address.to_ascii_lowercase(),
            Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
            None => address.to_string(),
        }
    }

    /// Whether `domain` is the relay's mail domain (or its address literal on an IPv4
    /// relay).
    fn is_local_domain(&self, domain: &str) -> bool {
        let ours = self.policy.config().mail_domain.as_str();
        if domain.eq_ignore_ascii_case(ours) {
            return true;
        }
        domain
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .is_some_and(|literal| literal == ours)
    }

    /// The embedder's answer to [`Request::Recipient`].
    pub(in crate::server) fn on_recipient_answer(
        &mut self,
        id: RequestId,
        answer: RecipientAnswer,
    ) -> Result<(), AnswerError> {
        let address = self.take_awaited(id, |awaited| match awaited {
            Awaited::Recipient(address) => Ok(address),
            other => Err(other),
        })?;
        match answer {
            RecipientAnswer::Accept { accepts_cleartext } => {
                self.add_recipient(address, accepts_cleartext, true);
                self.send_reply(250, "2.1.5 Ok");
            }
            RecipientAnswer::Refuse(failure) => self.send(&failure.reply(&address)),
        }
        Ok(())
    }
}
