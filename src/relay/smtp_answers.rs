//! How [`Relay`] answers the SMTP engine's requests: logins, recipients, deliveries.

use super::handler::RequestHandler;
use super::login::LoginVerdict;
use super::service::{unix_now, Relay};
use bytes::Bytes;
use chatmail_core::{Address, Flags, INBOX};
use chatmail_policy::Reply;
use chatmail_smtp::policy::Direction;
use chatmail_smtp::server::{
    Answer, AuthAnswer, Delivery, DeliveryAnswer, DeliveryFailure, RecipientAnswer, Request, Role,
    ServerEvent, ServerSession,
};
use std::net::IpAddr;
use std::time::Instant;

#[async_trait::async_trait]
impl RequestHandler<ServerSession> for Relay {
    async fn handle(&self, request: Request, peer: Option<IpAddr>) -> Answer {
        self.answer_smtp(request, peer).await
    }

    /// The policy's verdicts are counted here for SMTP (and in `answer_mxdeliv` for
    /// `/mxdeliv`), both through [`Metrics::verdict`](crate::metrics::Metrics).
    fn event(&self, event: ServerEvent) {
        match event {
            ServerEvent::Verdict { direction, outcome } => self.metrics.verdict(direction, outcome),
            other => tracing::debug!(?other, "SMTP event"),
        }
    }
}

impl Relay {
    /// Performs one request of an SMTP session and returns the answer to hand back with
    /// the session's `answer`. `peer` is the client's IP for the failed-login limits
    /// (`None` if unknown).
    pub async fn answer_smtp(&self, request: Request, peer: Option<IpAddr>) -> Answer {
        match request {
            Request::Authenticate { login, password } => Answer::Auth(
                self.answer_smtp_auth(peer, &login, &password, Instant::now())
                    .await,
            ),
            Request::Recipient { address } => {
                Answer::Recipient(self.answer_smtp_recipient(&address).await)
            }
            Request::Deliver(delivery) => {
                Answer::Delivery(self.answer_smtp_delivery(delivery).await)
            }
        }
    }

    /// Answers an SMTP AUTH from `peer` at `now`: check or create the account (spec 2.2)
    /// within the failed-login limits.
    pub async fn answer_smtp_auth(
        &self,
        peer: Option<IpAddr>,
        login: &str,
        password: &str,
        now: Instant,
    ) -> AuthAnswer {
        match self.authenticate(peer, login, password, false, now).await {
            Ok(LoginVerdict::LoggedIn(user)) => AuthAnswer::Success {
                user: user.as_str().to_string(),
            },
            Ok(LoginVerdict::Failed { not_before: None }) => AuthAnswer::Invalid,
            Ok(LoginVerdict::Failed {
                not_before: Some(until),
            }) => AuthAnswer::InvalidUntil(until),
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
            Ok(None) => RecipientAnswer::Refuse(DeliveryFailure::UnknownRecipient),
            Err(failure) => RecipientAnswer::Refuse(failure),
        }
    }

    /// Makes an accepted message durable for every recipient and answers the session.
    ///
    /// SMTP has one reply per message: when only some recipients fail, submission says
    /// `250` and the relay reports the failures to the authenticated sender with a
    /// delivery status notification in that account's INBOX, as the reference's bounce
    /// would arrive. Mail from other servers is never bounced (the envelope sender is the
    /// peer's choice): the MX session refuses what was not delivered in the dialogue.
    pub async fn answer_smtp_delivery(&self, mut delivery: Delivery) -> DeliveryAnswer {
        // Spec 3.3 step 6, after the policy's content checks: mail from other servers
        // must be signed by its From domain. LMTP comes from a local MTA that checked.
        if delivery.role == Role::Mx {
            if let Err(reply) = self
                .check_origin(&delivery.message, &delivery.from_domain)
                .await
            {
                return DeliveryAnswer::Failed(DeliveryFailure::Refused(reply));
            }
        }
        // A disabled sender's mail is accepted and dropped (the reference filter's
        // silent-drop semantics): the client sees no difference.
        if let Some(sender) = delivery
            .auth_user
            .as_deref()
            .and_then(|u| Address::parse(u).ok())
        {
            if self.is_disabled(&sender).await {
                tracing::info!("mail from a disabled address dropped");
                return DeliveryAnswer::Durable;
            }
        }
        // Only submission may report failures, quoting the message's header: incoming
        // mail is handed over whole, so its local copy can be cleaned up in place.
        let reports = delivery.direction == Direction::Outgoing;
        let message = if reports {
            delivery.message.clone()
        } else {
            std::mem::take(&mut delivery.message)
        };
        let outcomes = self
            .deliver(
                &delivery.mail_from,
                &delivery.recipients,
                &delivery.confirmed,
                message,
            )
            .await;
        let failed: Vec<(&String, Reply)> = delivery
            .recipients
            .iter()
            .zip(&outcomes)
            .filter_map(|(r, o)| o.as_ref().err().map(|e| (r, e.reply(r))))
            .collect();
        if failed.is_empty() {
            return DeliveryAnswer::Durable;
        }
        // LMTP is incoming: it never reports, it answers per recipient.
        if failed.len() < delivery.recipients.len() {
            match (delivery.direction, delivery.auth_user.as_deref()) {
                (Direction::Outgoing, Some(sender)) => {
                    self.report_failures(sender, &delivery.message, &failed)
                        .await;
                }
                _ => tracing::info!(
                    failed = failed.len(),
                    "partial delivery failure of incoming mail, refused in the dialogue"
                ),
            }
        }
        DeliveryAnswer::PerRecipient(outcomes)
    }

    /// Appends a delivery status notification (RFC 3464) about `failed` to the INBOX of
    /// the authenticated `sender`, if that account (still) exists: a report never
    /// creates an account.
    pub(super) async fn report_failures(
        &self,
        sender: &str,
        message: &[u8],
        failed: &[(&String, Reply)],
    ) {
        let Ok(sender) = Address::parse(sender) else {
            return;
        };
        match self.accounts.store().lookup(&sender).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!("no delivery status notification: the sender has no account");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "account store failed; delivery status notification not stored");
                return;
            }
        }
        let text = delivery_status_notification(
            &self.config.address_domain(),
            &sender,
            &random_boundary(),
            message,
            failed,
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

/// Most bytes of the original header section a delivery status notification quotes.
pub(crate) const MAX_QUOTED_HEADER: usize = 8 * 1024;

/// A MIME boundary nobody can predict, so that no quoted header line can close a part.
fn random_boundary() -> String {
    format!("dsn-{:032x}", rand::random::<u128>())
}

/// The text of a `multipart/report` DSN to `sender` about `failed`, quoting at most
/// [`MAX_QUOTED_HEADER`] bytes of `message`'s header section, cut at a line end.
fn delivery_status_notification(
    domain: &str,
    sender: &Address,
    boundary: &str,
    message: &[u8],
    failed: &[(&String, Reply)],
) -> String {
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
    let original_headers = String::from_utf8_lossy(quoted_header(message));
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\nTo: {sender}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message could not be delivered to some recipients:\r\n\r\n{human}\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {domain}\r\n\r\n{machine}--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{original_headers}\r\n--{boundary}--\r\n"
    )
}

/// The header section of `message` (through its last CRLF), or as many of its first
/// lines as fit [`MAX_QUOTED_HEADER`].
fn quoted_header(message: &[u8]) -> &[u8] {
    // Only the first bytes are looked at: the header section may be the whole message.
    let window = &message[..message.len().min(MAX_QUOTED_HEADER + 2)];
    if let Some(p) = window.windows(4).position(|w| w == b"\r\n\r\n") {
        if p + 2 <= MAX_QUOTED_HEADER {
            return &message[..p + 2];
        }
    }
    let window = &message[..message.len().min(MAX_QUOTED_HEADER)];
    match window.iter().rposition(|&b| b == b'\n') {
        Some(p) => &message[..p + 1],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_header_is_bounded_and_ends_at_a_line_end() {
        let short = b"From: a@b.org\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(quoted_header(short), b"From: a@b.org\r\nSubject: x\r\n");
        let mut long = Vec::new();
        for i in 0..2000 {
            long.extend_from_slice(format!("X-Filler-{i}: some value\r\n").as_bytes());
        }
        long.extend_from_slice(b"\r\nbody\r\n");
        let quoted = quoted_header(&long);
        assert!(quoted.len() <= MAX_QUOTED_HEADER && quoted.len() > MAX_QUOTED_HEADER - 40);
        assert!(quoted.ends_with(b"\r\n") && long.starts_with(quoted));
        // One endless line: nothing of it is quoted.
        assert_eq!(quoted_header(&[b'x'; 100_000]), b"");
        // A header of exactly the bound is quoted whole.
        let mut exact = vec![b'a'; MAX_QUOTED_HEADER - 2];
        exact.extend_from_slice(b"\r\n\r\nbody");
        assert_eq!(quoted_header(&exact).len(), MAX_QUOTED_HEADER);
    }

    #[test]
    fn boundaries_are_unpredictable() {
        let (a, b) = (random_boundary(), random_boundary());
        assert_ne!(a, b);
        assert_eq!(a.len(), "dsn-".len() + 32);
    }
}
