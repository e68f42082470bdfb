//! `EHLO`, `HELO` and `LHLO`: the greeting that opens (or restarts) a session.

use crate::reply::write_line;
use crate::server::config::Role;
use crate::server::session::{Hello, ServerSession};

impl ServerSession {
    /// `EHLO`: resets the transaction and lists the extensions of this role and state.
    pub(super) fn on_ehlo(&mut self, _client_host: &str) {
        if self.config.role == Role::Lmtp {
            // RFC 2033 4.1: an LMTP server must not accept EHLO or HELO.
            return self.send_error(500, "5.5.1 Error: this is LMTP, use LHLO");
        }
        self.greet(Hello::Ehlo);
    }

    /// `HELO`: plain SMTP without extensions.
    pub(super) fn on_helo(&mut self, _client_host: &str) {
        if self.config.role == Role::Lmtp {
            return self.send_error(500, "5.5.1 Error: this is LMTP, use LHLO");
        }
        self.reset_transaction();
        self.hello = Some(Hello::Helo);
        let host = self.config.hostname.clone();
        self.send_reply(250, &host);
    }

    /// `LHLO`: the LMTP greeting, answered like EHLO.
    pub(super) fn on_lhlo(&mut self, _client_host: &str) {
        if self.config.role != Role::Lmtp {
            return self.send_error(500, "5.5.2 Error: command not recognized");
        }
        self.greet(Hello::Lhlo);
    }

    fn greet(&mut self, hello: Hello) {
        self.reset_transaction();
        self.hello = Some(hello);
        let mut lines: Vec<String> = vec![
            self.config.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.max_message_size()),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if !self.tls && self.config.starttls_available && self.config.role != Role::Lmtp {
            lines.push("STARTTLS".into());
        }
        // AUTH is offered, like it is accepted, only inside TLS (spec 4.1).
        if self.tls && self.config.role == Role::Submission {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        let mut out = Vec::with_capacity(160);
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            write_line(&mut out, 250, i < last, line);
        }
        self.out.extend_from_slice(&out);
    }
}
