//! GETMETADATA (RFC 5464) with the chatmail keys of spec 5.1. Values are sent as
//! literals as the reference does (its online test reads the value at the start of the
//! next line), and the tagged reply uses Dovecot's wording.

use imap_codec::imap_types::extensions::metadata::{Entry, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};
use crate::wire;

/// Most entries one GETMETADATA may ask for.
const MAX_ENTRIES: usize = 64;

impl Session {
    /// GETMETADATA [(options)] mailbox (entries).
    pub(super) fn handle_getmetadata(
        &mut self,
        tag: &str,
        options: &[GetMetadataOption],
        mailbox: &Mailbox<'_>,
        entries: &[Entry<'_>],
    ) {
        if entries.len() > MAX_ENTRIES {
            return self.bad(tag, "Too many metadata entries.");
        }
        let max_size = options.iter().find_map(|o| match o {
            GetMetadataOption::MaxSize(n) => Some(*n),
            _ => None,
        });
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let mailbox = match mailbox {
            Mailbox::Other(o) if o.as_ref().is_empty() => String::new(),
            m => wire::mailbox_name(m),
        };
        let entries: Vec<String> = entries.iter().map(wire::metadata_entry).collect();
        let task = GetMetadataTask {
            mailbox: mailbox.clone(),
            entries: entries.clone(),
            max_size,
        };
        let request = Request::GetMetadata {
            account,
            mailbox,
            entries,
        };
        self.request(tag, request, Box::new(task));
    }
}

/// A GETMETADATA waiting for the values.
#[derive(Debug)]
struct GetMetadataTask {
    mailbox: String,
    entries: Vec<String>,
    max_size: Option<u32>,
}

impl Continuation for GetMetadataTask {
    /// Writes `* METADATA mailbox (entry value ...)` with literal values (NIL when absent).
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::Metadata(values) = answer else {
            return s.refused(tag, answer);
        };
        let mut line = b"* METADATA ".to_vec();
        wire::string(&mut line, self.mailbox.as_bytes());
        line.extend_from_slice(b" (");
        let mut longest_skipped = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            wire::string(&mut line, entry.as_bytes());
            line.push(b' ');
            let value = values
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(entry))
                .map(|(_, v)| v);
            match value {
                Some(v) if self.max_size.is_some_and(|max| v.len() > max as usize) => {
                    longest_skipped = longest_skipped.max(Some(v.len()));
                    line.extend_from_slice(b"NIL");
                }
                Some(v) => wire::literal(&mut line, v),
                None => line.extend_from_slice(b"NIL"),
            }
        }
        line.extend_from_slice(b")\r\n");
        s.raw(&line);
        match longest_skipped {
            Some(n) => s.finish_ok(
                tag,
                &format!("[METADATA LONGENTRIES {n}] Getmetadata completed."),
            ),
            None => s.finish_ok(tag, "Getmetadata completed."),
        }
    }
}
