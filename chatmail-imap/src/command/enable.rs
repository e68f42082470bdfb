//! ENABLE (RFC 5161): CONDSTORE is the one extension that changes behaviour.

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use crate::session::Session;

impl Session {
    /// ENABLE capability...
    pub(super) fn handle_enable(&mut self, tag: &str, capabilities: Vec1<CapabilityEnable<'_>>) {
        let mut enabled = Vec::new();
        for cap in capabilities.as_ref() {
            if matches!(cap, CapabilityEnable::CondStore) {
                self.condstore = true;
                enabled.push("CONDSTORE");
            }
        }
        if enabled.is_empty() {
            self.line("* ENABLED");
        } else {
            self.line(&format!("* ENABLED {}", enabled.join(" ")));
        }
        self.finish_ok(tag, "Enabled.");
    }
}
