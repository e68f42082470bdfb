//! LOGIN (spec 2.2 and 4.1), and what AUTHENTICATE shares with it: the refusal of
//! plaintext logins without TLS, the credentials check and the embedder's verdict.

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session, State};

impl Session {
    /// LOGIN user password (quoted strings with escapes or literals, decoded by imap-codec).
    pub(super) fn handle_login(&mut self, tag: &str, user: &[u8], password: &[u8]) {
        if self.plaintext_refused(tag) {
            return;
        }
        self.check_credentials(tag, user, password);
    }

    /// Refuses plaintext logins on a non-TLS transport (LOGINDISABLED).
    pub(super) fn plaintext_refused(&mut self, tag: &str) -> bool {
        if self.login_allowed() {
            return false;
        }
        self.no(
            tag,
            "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
        );
        true
    }

    /// Asks the embedder whether `user` and `password` are an account's.
    pub(super) fn check_credentials(&mut self, tag: &str, user: &[u8], password: &[u8]) {
        let (Ok(login), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return self.no(tag, "[AUTHENTICATIONFAILED] Authentication failed.");
        };
        let request = Request::Authenticate {
            login: login.to_string(),
            password: password.to_string(),
        };
        self.request(tag, request, Box::new(LoginVerdict));
    }
}

/// A LOGIN or AUTHENTICATE waiting for the embedder's verdict on the credentials.
#[derive(Debug)]
struct LoginVerdict;

impl Continuation for LoginVerdict {
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        match answer {
            Answer::Authenticated(address) => {
                // The feed is listened to before any SELECT lists a mailbox, so that no
                // delivery falls between listing and listening.
                s.listen_to(address.clone());
                s.account = Some(address);
                s.state = State::Authenticated;
                s.command_bound_after_login();
                // Delta Chat reads the capabilities from this response (no CAPABILITY after).
                let caps = s.capabilities();
                s.ok(tag, &format!("[CAPABILITY {caps}] Logged in"));
            }
            other => s.refused(tag, other),
        }
    }
}
