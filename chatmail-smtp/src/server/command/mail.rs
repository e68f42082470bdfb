//! `MAIL FROM:<reverse-path> [parameters]` (RFC 5321 4.1.1.2): starts a transaction.
//!
//! On submission the sender checks of chatmail-policy (identity binding, spec 2.3, and
//! the rate limit, spec 3.2) run here, where the reference runs them, but like the
//! reference (whose restrictions Postfix evaluates at RCPT) the client sees a failure
//! as the reply to each RCPT; MAIL itself gets `250`.

use std::borrow::Cow;
use std::time::Instant;

use smtp_proto::MailFrom;

use crate::server::config::Role;
use crate::server::session::ServerSession;

impl ServerSession {
    /// `MAIL FROM`: checks order, TLS, login and declared size, then opens the
    /// transaction. Parameters (`BODY=7BIT/8BITMIME`, `SIZE`, `SMTPUTF8`, DSN's `RET`,
    /// `ENVID`) are parsed by the grammar and only `SIZE` and `BODY=BINARYMIME` matter.
    pub(super) fn on_mail(&mut self, from: MailFrom<Cow<'_, str>>, now: Instant) {
        if self.hello.is_none() {
            return self.send_error(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.config.role != Role::Lmtp && self.config.require_tls && !self.tls {
            return self.send_error(530, "5.7.0 Must issue a STARTTLS command first");
        }
        if self.config.role == Role::Submission && self.auth_user.is_none() {
            return self.send_error(530, "5.7.0 Authentication required");
        }
        if self.txn.mail_from.is_some() {
            return self.send_error(503, "5.5.1 Error: nested MAIL command");
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            return self.send_error(555, "5.5.4 Error: BODY=BINARYMIME is not supported");
        }
        if from.size as u64 > self.max_message_size() {
            return self.send_reply(552, "5.3.4 Message size exceeds fixed maximum message size");
        }
        let address = from.address.into_owned();
        if let (Role::Submission, Some(user)) = (self.config.role, self.auth_user.as_deref()) {
            // Consumes a rate unit like the reference; the reply waits for RCPT.
            self.txn.sender_failure = self.policy.check_sender(user, &address, now).err();
        }
        self.txn.mail_from = Some(address);
        self.txn.declared_size = from.size as u64;
        self.send_reply(250, "2.1.0 Ok");
    }
}
