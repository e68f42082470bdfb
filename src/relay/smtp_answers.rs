//! How [`Relay`] answers the SMTP engine's requests: logins, recipients, deliveries.

use super::{unix_now, Relay};
use bytes::Bytes;
use chatmail_core::{Address, Flags, INBOX};
use chatmail_policy::Reply;
use chatmail_smtp::server::{
    AnswerError, AuthAnswer, Delivery, DeliveryAnswer, RecipientAnswer, Request, ServerSession,
};
use std::time::Instant;

impl Relay {
    /// Performs one request of an SMTP session and hands the answer back to it. `lmtp`
    /// says whether the session speaks LMTP (one reply per recipient).
    ///
    /// An `Err` means the session was not waiting for this answer: a bug in the driver,
    /// never the peer's doing.
    pub async fn answer_smtp(
        &self,
        session: &mut ServerSession,
        request: Request,
        lmtp: bool,
    ) -> Result<(), AnswerError> {
        match request {
            Request::Authenticate {
                id,
                login,
                password,
            } => {
                let answer = self.answer_smtp_auth(&login, &password).await;
                session.answer_auth(id, answer, Instant::now())
            }
            Request::Recipient { id, address } => {
                let answer = self.answer_smtp_recipient(&address).await;
                session.answer_recipient(id, answer, Instant::now())
            }
            Request::Deliver { id, delivery } => {
                let answer = self.answer_smtp_delivery(delivery, lmtp).await;
                session.answer_delivery(id, answer, Instant::now())
            }
        }
    }

    /// Answers an SMTP AUTH: check or create the account (spec 2.2).
    pub async fn answer_smtp_auth(&self, login: &str, password: &str) -> AuthAnswer {
        match self.login(login, password, false).await {
            Ok(Some(user)) => AuthAnswer::Success {
                user: user.as_str().to_string(),
            },
            Ok(None) => AuthAnswer::Invalid,
            Err(e) => {
                tracing::error!(error = %e, "account store failed during SMTP AUTH");
                AuthAnswer::TemporaryFailure
            }
        }
    }

    /// Answers an MX/LMTP recipient: unknown accounts are refused at RCPT (a clear reply
    /// instead of a later bounce), known ones say whether they take cleartext.
    pub async fn answer_smtp_recipient(&self, address: &str) -> RecipientAnswer {
        match self.local_recipient(address).await {
            Ok(Some(accepts_cleartext)) => RecipientAnswer::Accept { accepts_cleartext },
            Ok(None) => RecipientAnswer::Refuse(Reply {
                code: 550,
                text: format!("5.1.1 <{address}>: Recipient address rejected: User unknown"),
            }),
            Err(reply) => RecipientAnswer::Refuse(reply),
        }
    }

    /// Makes an accepted message durable for every recipient and answers the session.
    ///
    /// SMTP has one reply per message: when only some recipients fail, the session says
    /// `250` and the relay owns the failure report. For a local sender it appends a
    /// delivery status notification to the sender's INBOX, as the reference's bounce
    /// would arrive; for a remote sender the failure is logged (reporting to another
    /// server needs the outbound queue).
    pub async fn answer_smtp_delivery(&self, mut delivery: Delivery, lmtp: bool) -> DeliveryAnswer {
        // Moved, not copied: the queue and the local copies share this buffer.
        let message = Bytes::from(std::mem::take(&mut delivery.message));
        let outcomes = self
            .deliver(&delivery.mail_from, &delivery.recipients, message.clone())
            .await;
        let failed: Vec<(&String, &Reply)> = delivery
            .recipients
            .iter()
            .zip(&outcomes)
            .filter_map(|(r, o)| o.as_ref().err().map(|e| (r, e)))
            .collect();
        if failed.is_empty() {
            return DeliveryAnswer::Durable;
        }
        if !lmtp && failed.len() < delivery.recipients.len() {
            if self.is_local(&delivery.mail_from) {
                self.report_failures(&delivery, &message, &failed).await;
            } else {
                tracing::error!(
                    failed = failed.len(),
                    "partial delivery failure for a remote sender"
                );
            }
        }
        DeliveryAnswer::PerRecipient(outcomes)
    }

    /// Appends a delivery status notification (RFC 3464) about `failed` to the local
    /// sender's INBOX.
    async fn report_failures(
        &self,
        delivery: &Delivery,
        message: &[u8],
        failed: &[(&String, &Reply)],
    ) {
        let Ok(sender) = Address::parse(&delivery.mail_from) else {
            return;
        };
        let domain = self.config.address_domain();
        let boundary = format!("dsn-{:x}", unix_now());
        let mut human = String::new();
        let mut machine = String::new();
        for (rcpt, reply) in failed {
            human.push_str(&format!("<{rcpt}>: {reply}\r\n"));
            let status = reply
                .enhanced_status()
                .map(|(a, b, c)| format!("{a}.{b}.{c}"));
            machine.push_str(&format!(
                "Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {reply}\r\n\r\n",
                status.unwrap_or_else(|| "5.0.0".into())
            ));
        }
        let headers_end = find_header_end(message);
        let original_headers = String::from_utf8_lossy(&message[..headers_end]);
        let text = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\nTo: {sender}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message could not be delivered to some recipients:\r\n\r\n{human}\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {domain}\r\n\r\n{machine}--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{original_headers}\r\n--{boundary}--\r\n"
        );
        if let Err(e) = self
            .store
            .append(
                &sender,
                INBOX,
                Bytes::from(text),
                &Flags::new(),
                unix_now() as i64,
            )
            .await
        {
            tracing::error!(error = %e, "could not store a delivery status notification");
        }
    }
}

/// Offset just past the header section (or the whole message if it has no body).
fn find_header_end(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len())
}
