//! AUTHENTICATE PLAIN, with SASL-IR (an initial response on the command line) or
//! without (the response on the next line, after `+ `).

use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::AuthenticateDataCodec;

use crate::session::{Mode, Session};

impl Session {
    /// AUTHENTICATE PLAIN [initial-response].
    pub(super) fn handle_authenticate(
        &mut self,
        tag: &str,
        mechanism: &AuthMechanism<'_>,
        initial: Option<&[u8]>,
    ) {
        if *mechanism != AuthMechanism::Plain {
            return self.no(tag, "[CANNOT] Unsupported authentication mechanism.");
        }
        if self.plaintext_refused(tag) {
            return;
        }
        match initial {
            Some(response) => self.sasl_plain(tag, response),
            None => {
                self.raw(b"+ \r\n");
                self.mode = Mode::SaslResponse(tag.to_string());
            }
        }
    }

    /// The client's base64 line after `+ ` (or `*` to cancel).
    pub(super) fn handle_sasl_response(&mut self, tag: &str, line: &[u8]) {
        match AuthenticateDataCodec::default().decode(line) {
            Ok((&[], AuthenticateData::Continue(data))) => self.sasl_plain(tag, data.declassify()),
            Ok((_, AuthenticateData::Cancel)) => self.bad(tag, "Authentication aborted by client."),
            _ => self.bad(tag, "Invalid base64 data in AUTHENTICATE response."),
        }
    }

    /// Decodes `authzid NUL authcid NUL password` and checks it.
    fn sasl_plain(&mut self, tag: &str, response: &[u8]) {
        let mut parts = response.split(|&b| b == 0);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authz), Some(user), Some(password), None) => {
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
                    return self.no(tag, "[AUTHORIZATIONFAILED] Authorization identity differs.");
                }
                self.check_credentials(tag, user, password);
            }
            _ => self.bad(tag, "Invalid PLAIN response."),
        }
    }
}
