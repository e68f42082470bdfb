//! `STARTTLS` (RFC 3207): hand the connection to the driver for the TLS handshake.

use crate::server::config::Role;
use crate::server::request::Output;
use crate::server::session::{ServerSession, Wait};

impl ServerSession {
    /// `STARTTLS`: `220`, then [`Output::StartTls`]; the session resumes in
    /// [`Engine::tls_started`] and drops any cleartext pipelined after the command.
    ///
    /// [`Engine::tls_started`]: crate::server::Engine::tls_started
    pub(super) fn on_starttls(&mut self) {
        if self.config.role == Role::Lmtp {
            return self.send_error(502, "5.5.1 Error: command not implemented");
        }
        if self.tls {
            return self.send_error(554, "5.5.1 Error: TLS already active");
        }
        if !self.config.starttls_available {
            return self.send_reply(454, "4.7.0 TLS not available");
        }
        self.send_reply(220, "2.0.0 Ready to start TLS");
        self.push_output(Output::StartTls);
        self.wait = Wait::Tls;
    }
}
