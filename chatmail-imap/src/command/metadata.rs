//! GETMETADATA and SETMETADATA (RFC 5464) with the chatmail keys of spec 5.1.
//!
//! `/private/devicetoken` is the one settable entry: setting adds (or refreshes) a push
//! token, setting NIL is silently ignored, other entries are refused. GET values are
//! sent as literals as the reference does (its online test reads the value at the
//! start of the next line), and the tagged replies use Dovecot's wording.

use imap_codec::imap_types::core::NString8;
use imap_codec::imap_types::extensions::metadata::{Entry, EntryValue, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{mailbox_name, Session, Task};
use crate::wire;

/// The entry push-enabled clients set.
pub const DEVICE_TOKEN_ENTRY: &str = "/private/devicetoken";

/// Most entries one GETMETADATA may ask for.
const MAX_ENTRIES: usize = 64;

/// A GETMETADATA waiting for the values.
#[derive(Debug)]
pub(crate) struct GetMetadataTask {
    mailbox: String,
    entries: Vec<String>,
    max_size: Option<u32>,
}

fn entry_name(entry: &Entry<'_>) -> String {
    String::from_utf8_lossy(entry.inner().as_ref()).into_owned()
}

/// GETMETADATA [(options)] mailbox (entries).
pub(crate) fn get(
    s: &mut Session,
    tag: &str,
    options: &[GetMetadataOption],
    mailbox: &Mailbox<'_>,
    entries: &[Entry<'_>],
) {
    if entries.len() > MAX_ENTRIES {
        return s.bad(tag, "Too many metadata entries.");
    }
    let max_size = options.iter().find_map(|o| match o {
        GetMetadataOption::MaxSize(n) => Some(*n),
        _ => None,
    });
    let Some(account) = account(s, tag) else {
        return;
    };
    let mailbox = match mailbox {
        Mailbox::Other(o) if o.as_ref().is_empty() => String::new(),
        m => mailbox_name(m),
    };
    let entries: Vec<String> = entries.iter().map(entry_name).collect();
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
    s.request(tag, request, Task::GetMetadata(task));
}

/// Writes `* METADATA mailbox (entry value ...)` with literal values (NIL when absent).
pub(crate) fn get_answered(s: &mut Session, tag: &str, task: GetMetadataTask, answer: Answer) {
    let Answer::Metadata(values) = answer else {
        return s.refused(tag, answer);
    };
    let mut line = b"* METADATA ".to_vec();
    wire::string(&mut line, task.mailbox.as_bytes());
    line.extend_from_slice(b" (");
    let mut longest_skipped = None;
    for (i, entry) in task.entries.iter().enumerate() {
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
            Some(v) if task.max_size.is_some_and(|max| v.len() > max as usize) => {
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

/// SETMETADATA mailbox (entry value ...).
pub(crate) fn set(s: &mut Session, tag: &str, _mailbox: &Mailbox<'_>, values: &[EntryValue<'_>]) {
    let mut token = None;
    for ev in values {
        let name = entry_name(&ev.entry);
        if !name.eq_ignore_ascii_case(DEVICE_TOKEN_ENTRY) {
            return s.no(tag, "[NOPERM] Only /private/devicetoken can be set.");
        }
        let value: Option<&[u8]> = match &ev.value {
            NString8::NString(n) => n.0.as_ref().map(|v| v.as_ref()),
            NString8::Literal8(l) => Some(&l.data),
        };
        // Deleting a token is silently ignored (spec 5.1): it expires by itself.
        let Some(value) = value else { continue };
        let valid = std::str::from_utf8(value)
            .ok()
            .filter(|t| !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control()));
        match (valid, &token) {
            (Some(t), None) => token = Some(t.to_string()),
            (Some(_), Some(_)) => return s.no(tag, "[CANNOT] One device token per command."),
            (None, _) => return s.no(tag, "[CANNOT] Invalid device token."),
        }
    }
    let Some(token) = token else {
        return s.finish_ok(tag, "Setmetadata completed.");
    };
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::AddDeviceToken { account, token };
    s.request(tag, request, Task::Simple("Setmetadata completed."));
}
