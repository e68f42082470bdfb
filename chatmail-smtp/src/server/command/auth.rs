//! `AUTH` (RFC 4954) with the SASL mechanisms PLAIN (RFC 4616) and LOGIN, each with or
//! without an initial response, `334` continuations and `*` to cancel.
//!
//! The check itself (and account creation on first login, spec 2.2) is the embedder's:
//! the session emits [`Request::Authenticate`]. Failures are slowed (n-th failure waits n
//! times [`ServerConfig::auth_failure_delay`], or until the embedder's
//! [`AuthAnswer::InvalidUntil`] if later) and bounded per connection. The SASL lines are
//! bounded by [`ServerConfig::max_line_length`] like commands, so no password longer
//! than about 1.5 KB ever reaches the embedder.
//!
//! [`ServerConfig::auth_failure_delay`]: crate::server::ServerConfig::auth_failure_delay
//! [`ServerConfig::max_line_length`]: crate::server::ServerConfig::max_line_length

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chatmail_core::engine::{AnswerError, RequestId};

use crate::reply::reply;
use crate::server::config::Role;
use crate::server::request::{AuthAnswer, Request};
use crate::server::session::{AuthStep, Awaited, Hello, Phase, ServerSession, Wait};

/// `334` prompts of the LOGIN mechanism: base64 of `Username:` and `Password:`.
const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

impl ServerSession {
    /// `AUTH mechanism [initial-response]`.
    pub(super) fn on_auth(&mut self, mechanism: u64, initial_response: &str) {
        if self.config.role != Role::Submission {
            return self.send_error(503, "5.5.1 Error: authentication not enabled");
        }
        if !self.tls {
            return self.send_error(530, "5.7.0 Must issue a STARTTLS command first");
        }
        if self.hello != Some(Hello::Ehlo) {
            return self.send_error(503, "5.5.1 Error: send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.send_error(503, "5.5.1 Error: already authenticated");
        }
        if self.txn.mail_from.is_some() {
            return self.send_error(503, "5.5.1 Error: MAIL transaction in progress");
        }
        let step = match mechanism {
            smtp_proto::AUTH_PLAIN => AuthStep::Plain,
            smtp_proto::AUTH_LOGIN => AuthStep::LoginUser,
            _ => return self.send_error(504, "5.5.4 Unrecognized authentication type"),
        };
        if initial_response.is_empty() {
            let prompt = match step {
                AuthStep::Plain => "",
                _ => LOGIN_USERNAME_PROMPT,
            };
            self.send_reply(334, prompt);
            self.phase = Phase::AuthResponse(step);
            return;
        }
        // RFC 4954 4: "=" is an initial response of zero length.
        let initial = if initial_response == "=" {
            ""
        } else {
            initial_response
        };
        self.on_auth_response(step, initial.as_bytes());
    }

    /// One client line of a SASL exchange (CRLF stripped, already checked for bare CR,
    /// LF and NUL).
    pub(in crate::server) fn on_auth_response(&mut self, step: AuthStep, line: &[u8]) {
        if line == b"*" {
            return self.send_reply(501, "5.7.0 Authentication aborted");
        }
        let Ok(decoded) = STANDARD.decode(line) else {
            return self.send_error(501, "5.5.2 Error: invalid base64 data in response");
        };
        match step {
            AuthStep::Plain => match parse_plain(&decoded) {
                Some((login, password)) => self.authenticate(login, password),
                None => self.send_error(501, "5.5.2 Error: malformed PLAIN response"),
            },
            AuthStep::LoginUser => match String::from_utf8(decoded) {
                Ok(user) if !user.is_empty() => {
                    self.send_reply(334, LOGIN_PASSWORD_PROMPT);
                    self.phase = Phase::AuthResponse(AuthStep::LoginPassword(user));
                }
                _ => self.send_error(501, "5.5.2 Error: malformed user name"),
            },
            AuthStep::LoginPassword(user) => match String::from_utf8(decoded) {
                Ok(password) => self.authenticate(user, password),
                Err(_) => self.send_error(501, "5.5.2 Error: malformed password"),
            },
        }
    }

    fn authenticate(&mut self, login: String, password: String) {
        self.request(Request::Authenticate { login, password }, Awaited::Auth);
    }

    /// The embedder's answer to [`Request::Authenticate`].
    pub(in crate::server) fn on_auth_answer(
        &mut self,
        id: RequestId,
        answer: AuthAnswer,
        now: Instant,
    ) -> Result<(), AnswerError> {
        self.take_awaited(id, |awaited| match awaited {
            Awaited::Auth => Ok(()),
            other => Err(other),
        })?;
        match answer {
            AuthAnswer::Success { user } => {
                self.auth_user = Some(user);
                self.send_reply(235, "2.7.0 Authentication successful");
            }
            AuthAnswer::TemporaryFailure => {
                self.send_reply(454, "4.7.0 Temporary authentication failure");
            }
            AuthAnswer::Invalid | AuthAnswer::InvalidUntil(_) => {
                self.auth_failures += 1;
                let delay = self.config.auth_failure_delay * self.auth_failures;
                let not_before = match answer {
                    AuthAnswer::InvalidUntil(at) => at,
                    _ => now,
                };
                self.wait = Wait::Delay {
                    until: (now + delay).max(not_before),
                    reply: reply(535, "5.7.8 Error: authentication failed"),
                    then_close: self.auth_failures >= self.config.max_auth_failures,
                };
            }
        }
        Ok(())
    }
}

/// Splits a PLAIN message into login and password. The authorization identity must be
/// empty or the login itself: nobody may act as another user.
fn parse_plain(message: &[u8]) -> Option<(String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    let login = std::str::from_utf8(authcid).ok()?;
    let authzid = std::str::from_utf8(authzid).ok()?;
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(login) {
        return None;
    }
    let password = std::str::from_utf8(password).ok()?;
    Some((login.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_plain;

    #[test]
    fn plain_message_forms() {
        assert_eq!(
            parse_plain(b"\0user@x\0secret"),
            Some(("user@x".into(), "secret".into()))
        );
        assert_eq!(
            parse_plain(b"USER@x\0user@x\0pw"),
            Some(("user@x".into(), "pw".into()))
        );
        assert_eq!(parse_plain(b"other@x\0user@x\0pw"), None);
        assert_eq!(parse_plain(b"\0user@x"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0u\0p\0extra"), None);
    }
}
