//! How [`Relay`] answers `POST /mxdeliv` (spec 3.5): mail from another chatmail relay
//! over HTTPS, checked exactly as mail on port 25 is (the incoming policy, then the
//! DKIM origin check) and delivered to local recipients.

use super::service::Relay;
use bytes::Bytes;
use chatmail_policy::{Envelope, Reply, Verdict};
use chatmail_smtp::policy::Direction;
use chatmail_smtp::server::{DeliveryFailure, VerdictOutcome};

/// Most `X-MAIL-TO` recipients of one request, as the SMTP engine's `max_recipients`.
pub const MAX_MXDELIV_RECIPIENTS: usize = 1000;

/// Longest address taken from an `X-MAIL-FROM` or `X-MAIL-TO` header (RFC 5321's
/// path limit).
const MAX_ADDRESS_LEN: usize = 256;

/// The answer to one `/mxdeliv` request: the HTTP status and the SMTP reply that is
/// its body (spec 3.5: 200 with `250 ...`, 400 with the refusal, 413 when too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxDelivAnswer {
    /// 200, 400 or 413.
    pub status: u16,
    /// The SMTP reply, sent as the body.
    pub reply: Reply,
}

impl MxDelivAnswer {
    fn refused(reply: Reply) -> MxDelivAnswer {
        MxDelivAnswer { status: 400, reply }
    }
}

impl Relay {
    /// `552 Message exceeds maximum size` with status 413: for a driver that sees the
    /// body (or its `Content-Length`) pass `max_message_size` before it has all of it.
    pub fn mxdeliv_too_large(&self) -> MxDelivAnswer {
        MxDelivAnswer {
            status: 413,
            reply: self.policy.size_exceeded_reply(),
        }
    }

    /// Answers one `POST /mxdeliv` whose `X-MAIL-FROM` header (absent: `""`) is
    /// `mail_from`, whose `X-MAIL-TO` headers are `recipients`, and whose body is
    /// `message`. Every recipient must be a local account; the message passes the
    /// incoming policy and the DKIM origin check of port 25; then it is delivered (a
    /// local recipient failing for the moment goes to the delivery queue). `200` means
    /// durable for every recipient.
    pub async fn answer_mxdeliv(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: Bytes,
    ) -> MxDelivAnswer {
        if message.len() as u64 > self.policy.config().max_message_size {
            return self.mxdeliv_too_large();
        }
        let mail_from = strip_brackets(mail_from);
        if mail_from.len() > MAX_ADDRESS_LEN || mail_from.bytes().any(|b| b.is_ascii_control()) {
            return MxDelivAnswer::refused(Reply::new(501, "5.1.7 Bad sender address syntax"));
        }
        if recipients.is_empty() {
            return MxDelivAnswer::refused(Reply::new(554, "5.5.1 Error: no valid recipients"));
        }
        if recipients.len() > MAX_MXDELIV_RECIPIENTS {
            return MxDelivAnswer::refused(Reply::new(452, "4.5.3 Error: too many recipients"));
        }
        let mut rcpts = Vec::with_capacity(recipients.len());
        let mut cleartext = Vec::with_capacity(recipients.len());
        for rcpt in recipients {
            let rcpt = strip_brackets(rcpt);
            if rcpt.len() > MAX_ADDRESS_LEN || !self.is_local(rcpt) {
                let shown: String = rcpt
                    .chars()
                    .take(MAX_ADDRESS_LEN)
                    .filter(|c| !c.is_control())
                    .collect();
                return MxDelivAnswer::refused(Reply::new(
                    554,
                    format!("5.7.1 <{shown}>: Relay access denied"),
                ));
            }
            match self.local_recipient(rcpt).await {
                Ok(Some(accepts)) => cleartext.push(accepts),
                Ok(None) => {
                    return MxDelivAnswer::refused(DeliveryFailure::UnknownRecipient.reply(rcpt))
                }
                Err(failure) => return MxDelivAnswer::refused(failure.reply(rcpt)),
            }
            rcpts.push(rcpt.to_string());
        }
        let envelope = Envelope {
            auth_user: None,
            mail_from,
            recipients: &rcpts,
        };
        let accepts_cleartext = |address: &str| {
            rcpts
                .iter()
                .zip(&cleartext)
                .any(|(r, &c)| c && r == address)
        };
        let verdict =
            self.policy
                .check_message(Direction::Incoming, &envelope, &message, &accepts_cleartext);
        self.metrics
            .verdict(Direction::Incoming, VerdictOutcome::of(&verdict));
        let accepted = match verdict {
            Verdict::Reject(reply) => return MxDelivAnswer::refused(reply),
            Verdict::Accept(accepted) => accepted,
        };
        if let Err(reply) = self.check_origin(&message, accepted.from_domain()).await {
            return MxDelivAnswer::refused(reply);
        }
        let mail_from = if accepted.reset_envelope_sender() {
            ""
        } else {
            mail_from
        };
        let confirmed = vec![true; rcpts.len()];
        let outcomes = self.deliver(mail_from, &rcpts, &confirmed, message).await;
        match rcpts
            .iter()
            .zip(&outcomes)
            .find_map(|(r, o)| o.as_ref().err().map(|e| e.reply(r)))
        {
            None => MxDelivAnswer {
                status: 200,
                reply: Reply::new(250, "OK"),
            },
            Some(reply) => MxDelivAnswer::refused(reply),
        }
    }
}

/// `<a@b>` as `a@b`; anything else as given, trimmed.
fn strip_brackets(address: &str) -> &str {
    let a = address.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
}
