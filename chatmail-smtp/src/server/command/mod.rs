//! Dispatch: from a command line to its handler, one file per command.
//!
//! Each file below holds an `impl ServerSession` block with the command's `on_*`
//! handler and, where the command asks the embedder, the continuation that takes the
//! answer (`on_auth_answer`, `on_recipient_answer`, `on_delivery_answer`; the engine's
//! `answer` calls them). HELO and LHLO are in `ehlo.rs`. `deliver.rs` is no command: it
//! is the end of a message, shared by DATA and BDAT (size, line endings, the policy
//! verdict, the `Deliver` request and its answer). The files use the session
//! (`session.rs`) and one another only where BDAT ends a message (`deliver.rs`).

use std::time::Instant;

use super::session::{printable, ServerSession};

mod auth;
mod bdat;
mod data;
mod deliver;
mod ehlo;
mod expn;
mod help;
mod mail;
mod noop;
mod quit;
mod rcpt;
mod rset;
mod starttls;
mod vrfy;

impl ServerSession {
    /// Dispatches one command line (`line`, CRLF included; `text`, the same without
    /// CRLF and known to be UTF-8) to the file that handles it.
    pub(super) fn on_command(&mut self, text: &str, line: &[u8], now: Instant) {
        use smtp_proto::{Error as ParseError, Request as Command};
        let parsed = Command::parse(&mut line.iter());
        match parsed {
            Ok(Command::Ehlo { host }) => self.on_ehlo(&host),
            Ok(Command::Helo { host }) => self.on_helo(&host),
            Ok(Command::Lhlo { host }) => self.on_lhlo(&host),
            Ok(Command::StartTls) => self.on_starttls(),
            Ok(Command::Auth {
                mechanism,
                initial_response,
            }) => self.on_auth(mechanism, &initial_response),
            Ok(Command::Mail { from }) => self.on_mail(from, now),
            Ok(Command::Rcpt { to }) => self.on_rcpt(to, text),
            Ok(Command::Data) => self.on_data(),
            Ok(Command::Bdat { .. }) if !bdat::valid_syntax(text) => {
                // The grammar saturates or ignores what it does not expect; a size
                // that is not exactly a number, or anything after LAST, is refused
                // before any octet is taken as chunk data.
                self.send_error(501, "5.5.4 Syntax: BDAT chunk-size [LAST]")
            }
            Ok(Command::Bdat {
                chunk_size,
                is_last,
            }) => self.on_bdat(chunk_size as u64, is_last),
            Ok(Command::Rset) => self.on_rset(),
            Ok(Command::Noop { .. }) => self.on_noop(),
            Ok(Command::Vrfy { .. }) => self.on_vrfy(),
            Ok(Command::Expn { .. }) => self.on_expn(),
            Ok(Command::Help { .. }) => self.on_help(),
            Ok(Command::Quit) => self.on_quit(),
            Ok(Command::Etrn { .. } | Command::Atrn { .. } | Command::Burl { .. }) => {
                self.send_error(502, "5.5.1 Error: command not implemented")
            }
            Err(ParseError::UnknownCommand) => {
                self.send_error(500, "5.5.2 Error: command not recognized")
            }
            Err(ParseError::InvalidSenderAddress) => {
                self.send_error(501, "5.1.7 Bad sender address syntax")
            }
            Err(ParseError::InvalidRecipientAddress) => {
                self.send_error(501, "5.1.3 Bad recipient address syntax")
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                let text = format!("5.5.4 Unsupported parameter {}", printable(&param));
                self.send_error(555, &text)
            }
            Err(ParseError::InvalidParameter { param }) => {
                let text = format!("5.5.4 Invalid parameter {param}");
                self.send_error(501, &text)
            }
            Err(ParseError::SyntaxError { syntax }) => {
                if syntax.starts_with("AUTH") && text.trim_end().contains(' ') {
                    // The grammar knows the mechanism names; one we do not offer.
                    self.send_error(504, "5.5.4 Unrecognized authentication type")
                } else {
                    self.send_error(501, &format!("5.5.4 Syntax: {syntax}"))
                }
            }
            Err(_) => self.send_error(500, "5.5.2 Error: syntax error"),
        }
    }
}
