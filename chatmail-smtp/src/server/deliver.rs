//! The end of a message (after `<CRLF>.<CRLF>` or `BDAT ... LAST`): line endings, size,
//! the chatmail-policy verdict, and the [`Request::Deliver`] whose answer decides the
//! reply — `250` only once the embedder says the message is durable.
//!
//! SMTP gets one reply per message; LMTP (RFC 2033 4.2) one per accepted recipient, in
//! RCPT order.

use std::time::Instant;

use super::{AnswerError, Awaited, Request, RequestId, Role, ServerSession, Wait};
use crate::policy::{Direction, Envelope, Reply, Verdict};
use crate::reply::reply;

/// An accepted message and its envelope, handed to the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Outgoing (submission) or incoming (MX, LMTP).
    pub direction: Direction,
    /// The authenticated user (submission).
    pub auth_user: Option<String>,
    /// The envelope sender; `""` for `<>`, and also when the policy resets it (incoming
    /// mail whose From differs from MAIL FROM, spec 3.3 rule 4).
    pub mail_from: String,
    /// The recipients in RCPT order.
    pub recipients: Vec<String>,
    /// The message after the policy's rewrite (spec 4.4 on submission).
    pub message: Vec<u8>,
}

/// The embedder's answer to [`Request::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryAnswer {
    /// Durable for every recipient: `250`.
    Durable,
    /// Not stored at all: this reply (e.g. `451 4.3.0`), for every recipient on LMTP.
    Failed(Reply),
    /// One outcome per recipient, in [`Delivery::recipients`] order. LMTP replies each;
    /// SMTP has one reply per message: the first failure when all failed. When some
    /// failed, submission says `250` (the embedder then owns the report to its
    /// authenticated sender) and MX says the failure (a temporary one if any): mail from
    /// other servers is refused in the dialogue, never bounced.
    PerRecipient(Vec<Result<(), Reply>>),
}

impl ServerSession {
    /// The message is complete: check it and ask for delivery, or refuse it.
    pub(super) fn end_of_message(&mut self) {
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
        match verdict {
            Verdict::Reject(refusal) => self.reply_per_recipient(&recipients, &refusal),
            Verdict::Accept(accepted) => {
                let mut message = Vec::with_capacity(sink.bytes.len() + 64);
                accepted.write_rewritten(&sink.bytes, &mut message);
                let mail_from = if accepted.reset_envelope_sender() {
                    String::new()
                } else {
                    mail_from
                };
                // The received bytes go now; their share of the budget stays taken
                // by the rewritten copy until the embedder answers.
                self.held = std::mem::take(&mut sink.reservation);
                let id = self.new_request_id();
                let delivery = Delivery {
                    direction,
                    auth_user: self.auth_user.clone(),
                    mail_from,
                    recipients: recipients.clone(),
                    message,
                };
                self.request(
                    Request::Deliver { id, delivery },
                    Awaited::Delivery(recipients),
                );
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

    /// Input: the embedder's answer to [`Request::Deliver`]. Sends the `250` (or the
    /// failures) and resumes reading pipelined commands.
    pub fn answer_delivery(
        &mut self,
        id: RequestId,
        answer: DeliveryAnswer,
        now: Instant,
    ) -> Result<(), AnswerError> {
        let recipients = self.take_awaited(id, |awaited| match awaited {
            Awaited::Delivery(recipients) => Ok(recipients),
            other => Err(other),
        })?;
        if let DeliveryAnswer::PerRecipient(outcomes) = &answer {
            if outcomes.len() != recipients.len() {
                let expected = recipients.len();
                self.wait = Wait::Answer(id, Awaited::Delivery(recipients));
                return Err(AnswerError::RecipientCount {
                    expected,
                    got: outcomes.len(),
                });
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
            DeliveryAnswer::Failed(failure) => self.reply_per_recipient(&recipients, &failure),
            DeliveryAnswer::PerRecipient(outcomes) => {
                if lmtp {
                    for (recipient, outcome) in recipients.iter().zip(outcomes) {
                        match outcome {
                            Ok(()) => self.send_reply(250, &format!("2.0.0 <{recipient}> Ok")),
                            Err(failure) => self.send(&failure),
                        }
                    }
                } else if let Some(Err(first)) = outcomes.iter().find(|o| o.is_err()).cloned() {
                    if outcomes.iter().all(Result::is_err) {
                        self.send(&first);
                    } else if self.config.role == Role::Mx {
                        // Nobody bounces mail from other servers (it would go to a sender
                        // the peer chose): what was not delivered is refused here, a
                        // temporary failure first so that the sender retries. The
                        // recipients served may see the message twice; RFC 5321 6.1
                        // prefers that to a loss, and Delta Chat drops it by Message-ID.
                        let temporary = outcomes.iter().find_map(|o| match o {
                            Err(r) if r.code < 500 => Some(r.clone()),
                            _ => None,
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
        self.process(now);
        Ok(())
    }
}
