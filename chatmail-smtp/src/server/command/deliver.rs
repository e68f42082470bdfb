//! The end of a message (after `<CRLF>.<CRLF>` or `BDAT ... LAST`): line endings, size,
//! the chatmail-policy verdict, and the [`Request::Deliver`] whose answer decides the
//! reply — `250` only once the embedder says the message is durable.
//!
//! SMTP gets one reply per message; LMTP (RFC 2033 4.2) one per accepted recipient, in
//! RCPT order.

use bytes::Bytes;
use chatmail_core::engine::{AnswerError, RequestId};
use chatmail_policy::{Envelope, Reply, Verdict};

use crate::reply::reply;
use crate::server::config::Role;
use crate::server::request::{
    Delivery, DeliveryAnswer, DeliveryFailure, Output, Request, ServerEvent, VerdictOutcome,
};
use crate::server::session::{Awaited, ServerSession, Wait};

impl ServerSession {
    /// The message is complete: check it and ask for delivery, or refuse it.
    pub(in crate::server) fn end_of_message(&mut self) {
        let txn = std::mem::take(&mut self.txn);
        self.reset_transaction();
        let recipients: Vec<String> = txn.recipients.iter().map(|r| r.address.clone()).collect();
        let mut sink = txn.message;
        let policy = &self.policy;
        if let Some(refusal) = sink.refusal(|| policy.size_exceeded_reply()) {
            return self.reply_per_recipient(&recipients, &refusal);
        }
        if sink.bare_line_ending {
            let refusal = reply(
                550,
                "5.6.0 Message contains bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)",
            );
            return self.reply_per_recipient(&recipients, &refusal);
        }
        let direction = self.config.role.direction();
        let mail_from = txn.mail_from.unwrap_or_default();
        let envelope = Envelope {
            auth_user: self.auth_user.as_deref(),
            mail_from: &mail_from,
            recipients: &recipients,
        };
        let accepts_cleartext = |address: &str| {
            txn.recipients
                .iter()
                .any(|r| r.accepts_cleartext && r.address == address)
        };
        let verdict =
            self.policy
                .check_message(direction, &envelope, &sink.bytes, &accepts_cleartext);
        // The embedder counts verdicts (metrics); the engine only reports them.
        self.push_output(Output::Event(ServerEvent::Verdict {
            direction,
            outcome: VerdictOutcome::of(&verdict),
        }));
        match verdict {
            Verdict::Reject(refusal) => self.reply_per_recipient(&recipients, &refusal),
            Verdict::Accept(accepted) => {
                let edit = accepted.header_edit(&sink.bytes);
                let mut bytes = std::mem::take(&mut sink.bytes);
                // The rewrite touches header fields only: done inside the received
                // buffer, the body is never copied (when the new fields are longer,
                // rare, the message is written out once).
                let message = match edit {
                    None => Bytes::from(bytes),
                    Some(edit) => match edit.apply_in_place(&mut bytes) {
                        Some(start) => Bytes::from(bytes).slice(start..),
                        None => {
                            let mut out = Vec::with_capacity(bytes.len() + edit.fields.len());
                            edit.write(&bytes, &mut out);
                            Bytes::from(out)
                        }
                    },
                };
                let mail_from = if accepted.reset_envelope_sender() {
                    String::new()
                } else {
                    mail_from
                };
                // The message's share of the budget stays taken until the embedder
                // answers.
                self.held = std::mem::take(&mut sink.reservation);
                let confirmed = txn.recipients.iter().map(|r| r.confirmed).collect();
                let delivery = Delivery {
                    direction,
                    role: self.config.role,
                    from_domain: accepted.from_domain().to_string(),
                    auth_user: self.auth_user.clone(),
                    mail_from,
                    recipients: recipients.clone(),
                    confirmed,
                    message,
                };
                self.request(Request::Deliver(delivery), Awaited::Delivery(recipients));
            }
        }
    }

    /// The end-of-message reply: once on SMTP, once per recipient on LMTP.
    fn reply_per_recipient(&mut self, recipients: &[String], end_reply: &Reply) {
        if self.config.role == Role::Lmtp {
            for _ in recipients {
                self.send(end_reply);
            }
        } else {
            self.send(end_reply);
        }
    }

    /// The embedder's answer to [`Request::Deliver`]: sends the `250` (or the failures)
    /// and resumes reading pipelined commands.
    pub(in crate::server) fn on_delivery_answer(
        &mut self,
        id: RequestId,
        answer: DeliveryAnswer,
    ) -> Result<(), AnswerError> {
        let recipients = self.take_awaited(id, |awaited| match awaited {
            Awaited::Delivery(recipients) => Ok(recipients),
            other => Err(other),
        })?;
        if let DeliveryAnswer::PerRecipient(outcomes) = &answer {
            if outcomes.len() != recipients.len() {
                let reason = format!(
                    "expected {} per-recipient outcomes, got {}",
                    recipients.len(),
                    outcomes.len()
                );
                self.wait = Wait::Answer(id, Awaited::Delivery(recipients));
                return Err(AnswerError::Malformed { id, reason });
            }
        }
        self.held.release();
        let lmtp = self.config.role == Role::Lmtp;
        match answer {
            DeliveryAnswer::Durable => {
                if lmtp {
                    for recipient in &recipients {
                        self.send_reply(250, &format!("2.0.0 <{recipient}> Ok"));
                    }
                } else {
                    self.send_reply(250, "2.0.0 Ok: message accepted for delivery");
                }
            }
            DeliveryAnswer::Failed(failure) => {
                if lmtp {
                    for recipient in &recipients {
                        self.send(&failure.reply(recipient));
                    }
                } else {
                    let first = recipients.first().map_or("", String::as_str);
                    self.send(&failure.reply(first));
                }
            }
            DeliveryAnswer::PerRecipient(outcomes) => {
                if lmtp {
                    for (recipient, outcome) in recipients.iter().zip(outcomes) {
                        match outcome {
                            Ok(()) => self.send_reply(250, &format!("2.0.0 <{recipient}> Ok")),
                            Err(failure) => self.send(&failure.reply(recipient)),
                        }
                    }
                } else if let Some(first) = first_failure(&recipients, &outcomes) {
                    if outcomes.iter().all(Result::is_err) {
                        self.send(&first);
                    } else if self.config.role == Role::Mx {
                        // Nobody bounces mail from other servers (it would go to a sender
                        // the peer chose): what was not delivered is refused here, a
                        // temporary failure first so that the sender retries. The
                        // recipients served may see the message twice; RFC 5321 6.1
                        // prefers that to a loss, and Delta Chat drops it by Message-ID.
                        let temporary = recipients.iter().zip(&outcomes).find_map(|(r, o)| {
                            let reply = o.as_ref().err()?.reply(r);
                            (reply.code < 500).then_some(reply)
                        });
                        self.send(&temporary.unwrap_or(first));
                    } else {
                        self.send_reply(250, "2.0.0 Ok: message accepted for delivery");
                    }
                } else {
                    self.send_reply(250, "2.0.0 Ok: message accepted for delivery");
                }
            }
        }
        Ok(())
    }
}

/// The reply of the first failed recipient, if any failed.
fn first_failure(recipients: &[String], outcomes: &[Result<(), DeliveryFailure>]) -> Option<Reply> {
    recipients
        .iter()
        .zip(outcomes)
        .find_map(|(r, o)| o.as_ref().err().map(|failure| failure.reply(r)))
}
