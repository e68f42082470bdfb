//! COMPRESS (RFC 4978): raw DEFLATE on the transport, asked for once after login, only
//! when the listener offers it (`imap_compress`). The tagged OK goes out uncompressed;
//! everything after it, both ways, is compressed by the driver.

use crate::session::Session;

impl Session {
    /// COMPRESS DEFLATE (the only mechanism there is; any other fails to parse: BAD).
    pub(super) fn handle_compress(&mut self, tag: &str) {
        if !self.config.compress {
            // Not offered: as if the command did not exist.
            return self.bad(tag, "Unknown command.");
        }
        if self.deflate {
            return self.no(tag, "[COMPRESSIONACTIVE] DEFLATE is already active.");
        }
        self.ok(tag, "DEFLATE active.");
        self.start_deflate();
    }
}
