//! SETMETADATA (RFC 5464): [`DEVICE_TOKEN_ENTRY`] (`/private/devicetoken`) is the one
//! settable entry. Setting adds (or refreshes) a push token, setting NIL is silently
//! ignored, other entries are refused; the tagged replies use Dovecot's wording.

use chatmail_core::account::DEVICE_TOKEN_ENTRY;
use imap_codec::imap_types::core::NString8;
use imap_codec::imap_types::extensions::metadata::EntryValue;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::Request;
use crate::session::{Completes, Session};
use crate::wire;

impl Session {
    /// SETMETADATA mailbox (entry value ...).
    pub(super) fn handle_setmetadata(
        &mut self,
        tag: &str,
        _mailbox: &Mailbox<'_>,
        values: &[EntryValue<'_>],
    ) {
        let mut token = None;
        for ev in values {
            let name = wire::metadata_entry(&ev.entry);
            if !name.eq_ignore_ascii_case(DEVICE_TOKEN_ENTRY) {
                let text = format!("[NOPERM] Only {DEVICE_TOKEN_ENTRY} can be set.");
                return self.no(tag, &text);
            }
            let value: Option<&[u8]> = match &ev.value {
                NString8::NString(n) => n.0.as_ref().map(|v| v.as_ref()),
                NString8::Literal8(l) => Some(&l.data),
            };
            // Deleting a token is silently ignored (spec 5.1): it expires by itself.
            let Some(value) = value else { continue };
            let valid = std::str::from_utf8(value).ok().filter(|t| {
                !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            match (valid, &token) {
                (Some(t), None) => token = Some(t.to_string()),
                (Some(_), Some(_)) => {
                    return self.no(tag, "[CANNOT] One device token per command.")
                }
                (None, _) => return self.no(tag, "[CANNOT] Invalid device token."),
            }
        }
        let Some(token) = token else {
            return self.finish_ok(tag, "Setmetadata completed.");
        };
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::AddDeviceToken { account, token };
        self.request(tag, request, Box::new(Completes("Setmetadata completed.")));
    }
}
