//! FETCH and UID FETCH: FLAGS, UID, RFC822.SIZE, INTERNALDATE, MODSEQ, ENVELOPE,
//! BODYSTRUCTURE, `BODY[section]<partial>`, BODY.PEEK, RFC822, RFC822.HEADER/TEXT, and
//! the CONDSTORE modifier CHANGEDSINCE.
//!
//! Metadata is asked for all messages at once; message bytes one message at a time,
//! and each message's response is sent as soon as its bytes arrive. Body sections go
//! out as slices of the stored [`Bytes`], so a 30 MB message is never copied.

use std::collections::VecDeque;

use bytes::Bytes;
use chatmail_core::{Flag, FlagOp, Flags, MessageMeta, Uid};
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Section,
};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::mime;
use crate::request::{Answer, Refusal, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// FETCH / UID FETCH.
    pub(super) fn handle_fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'_>,
        uid_command: bool,
        modifiers: &[FetchModifier],
    ) {
        let mut items = parse_items(names);
        if uid_command {
            items.uid = true;
        }
        let mut changed_since = None;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => {
                    changed_since = Some(n.get());
                    items.modseq = true;
                    self.condstore = true;
                }
                FetchModifier::Vanished => return self.bad(tag, "VANISHED needs QRESYNC."),
            }
        }
        if items.modseq {
            self.condstore = true;
        }
        if self.condstore && items.flags {
            items.modseq = true;
        }
        let uids = self.resolve(set, uid_command);
        if uids.is_empty() {
            return self.finish_ok_numbered(tag, "Fetch completed.", uid_command);
        }
        let Some((account, mailbox)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::Messages {
            account,
            mailbox,
            uids,
        };
        let task = FetchTask {
            items,
            uid_command,
            changed_since,
            stage: Stage::Metas,
            queue: VecDeque::new(),
        };
        self.request(tag, request, Box::new(task));
    }
}

/// What one requested body section selects.
#[derive(Debug, Clone)]
enum What {
    /// The whole entity (header and body).
    Full,
    /// The header block including the blank line.
    Header,
    /// Selected header lines (`exclude` for HEADER.FIELDS.NOT).
    Fields { names: Vec<Vec<u8>>, exclude: bool },
    /// The body after the header.
    Text,
    /// The MIME header of a part.
    Mime,
}

/// One BODY[...] / RFC822.* item.
#[derive(Debug, Clone)]
struct SectionItem {
    /// The item name as echoed in the response, without the partial origin.
    label: Vec<u8>,
    /// Part path (`[]` for the top level).
    path: Vec<u32>,
    what: What,
    /// `<origin.count>`.
    partial: Option<(u32, u32)>,
}

/// The parsed item list.
#[derive(Debug, Clone, Default)]
struct Items {
    uid: bool,
    flags: bool,
    internal_date: bool,
    size: bool,
    modseq: bool,
    envelope: bool,
    bodystructure: bool,
    body: bool,
    sections: Vec<SectionItem>,
    /// A non-PEEK body item sets `\Seen`.
    set_seen: bool,
}

impl Items {
    fn needs_message(&self) -> bool {
        self.envelope || self.bodystructure || self.body || !self.sections.is_empty()
    }
}

/// Where a FETCH is in its sequence of requests.
#[derive(Debug)]
enum Stage {
    Metas,
    Seen(Vec<MessageMeta>),
    Bodies(MessageMeta),
}

/// A FETCH in progress.
#[derive(Debug)]
struct FetchTask {
    items: Items,
    uid_command: bool,
    changed_since: Option<u64>,
    stage: Stage,
    queue: VecDeque<MessageMeta>,
}

impl Continuation for FetchTask {
    /// Continues the FETCH with the embedder's answer.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let mut task = self;
        match std::mem::replace(&mut task.stage, Stage::Metas) {
            Stage::Metas => {
                let Answer::Messages(mut metas) = answer else {
                    return s.refused(tag, answer);
                };
                if let Some(since) = task.changed_since {
                    metas.retain(|m| m.modseq.0 > since);
                }
                let read_only = s.selected.as_deref().is_none_or(|sel| sel.read_only);
                let unseen: Vec<Uid> = metas
                    .iter()
                    .filter(|m| !m.flags.contains(&Flag::Seen))
                    .map(|m| m.uid)
                    .collect();
                if task.items.set_seen && !read_only && !unseen.is_empty() {
                    let Some((account, mailbox)) = s.request_in_selected(tag) else {
                        return;
                    };
                    let request = Request::StoreFlags {
                        account,
                        mailbox,
                        uids: unseen,
                        op: FlagOp::Add,
                        flags: Flags::from([Flag::Seen]),
                        unchanged_since: None,
                    };
                    task.stage = Stage::Seen(metas);
                    return s.request(tag, request, task);
                }
                start_messages(s, tag, task, metas);
            }
            Stage::Seen(mut metas) => {
                if let Answer::FlagsStored { updated, .. } = answer {
                    for u in updated {
                        if let Some(m) = metas.iter_mut().find(|m| m.uid == u.uid) {
                            m.flags = u.flags;
                            m.modseq = u.modseq;
                        }
                    }
                    // Setting \Seen shows the flags even when FLAGS was not asked for.
                    task.items.flags = true;
                }
                start_messages(s, tag, task, metas);
            }
            Stage::Bodies(meta) => {
                match answer {
                    Answer::Message(bytes) => write_fetch(s, &task, &meta, Some(&bytes)),
                    // Expunged meanwhile: it is simply not part of the result.
                    Answer::Refused(Refusal::NonExistent) => {}
                    other => return s.refused(tag, other),
                }
                next_message(s, tag, task);
            }
        }
    }
}

fn parse_items(names: MacroOrMessageDataItemNames<'_>) -> Items {
    let names = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            let mut v = vec![
                MessageDataItemName::Flags,
                MessageDataItemName::InternalDate,
                MessageDataItemName::Rfc822Size,
            ];
            if matches!(m, Macro::All | Macro::Full) {
                v.push(MessageDataItemName::Envelope);
            }
            if matches!(m, Macro::Full) {
                v.push(MessageDataItemName::Body);
            }
            v
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    let mut items = Items::default();
    for name in names {
        match name {
            MessageDataItemName::Uid => items.uid = true,
            MessageDataItemName::Flags => items.flags = true,
            MessageDataItemName::InternalDate => items.internal_date = true,
            MessageDataItemName::Rfc822Size => items.size = true,
            MessageDataItemName::ModSeq => items.modseq = true,
            MessageDataItemName::Envelope => items.envelope = true,
            MessageDataItemName::BodyStructure => items.bodystructure = true,
            MessageDataItemName::Body => items.body = true,
            MessageDataItemName::Rfc822 => {
                items.set_seen = true;
                items.sections.push(simple_section(b"RFC822", What::Full));
            }
            MessageDataItemName::Rfc822Header => {
                items
                    .sections
                    .push(simple_section(b"RFC822.HEADER", What::Header));
            }
            MessageDataItemName::Rfc822Text => {
                items.set_seen = true;
                items
                    .sections
                    .push(simple_section(b"RFC822.TEXT", What::Text));
            }
            MessageDataItemName::BodyExt {
                section,
                partial,
                peek,
            } => {
                items.set_seen |= !peek;
                items.sections.push(section_item(section, partial));
            }
            // BINARY is not advertised; the full body stands in for it.
            MessageDataItemName::Binary { partial, peek, .. } => {
                items.set_seen |= !peek;
                let mut item = section_item(None, partial);
                item.label = b"BINARY[]".to_vec();
                items.sections.push(item);
            }
            MessageDataItemName::BinarySize { .. } => items.size = true,
        }
    }
    items
}

fn simple_section(label: &[u8], what: What) -> SectionItem {
    SectionItem {
        label: label.to_vec(),
        path: Vec::new(),
        what,
        partial: None,
    }
}

fn section_item(
    section: Option<Section<'_>>,
    partial: Option<(u32, std::num::NonZeroU32)>,
) -> SectionItem {
    let path_of = |p: &imap_codec::imap_types::fetch::Part| -> Vec<u32> {
        p.0.as_ref().iter().map(|n| n.get()).collect()
    };
    let dotted = |path: &[u32]| -> String {
        path.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".")
    };
    let with_prefix = |path: &[u32], what: &str| {
        if path.is_empty() {
            what.to_string()
        } else {
            format!("{}.{what}", dotted(path))
        }
    };
    let field_names = |names: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_ref().to_vec()).collect()
    };
    let (path, what, inner) = match section {
        None => (Vec::new(), What::Full, String::new()),
        Some(Section::Part(p)) => {
            let path = path_of(&p);
            let inner = dotted(&path);
            (path, What::Full, inner)
        }
        Some(Section::Header(p)) => {
            let path = p.as_ref().map(path_of).unwrap_or_default();
            let inner = with_prefix(&path, "HEADER");
            (path, What::Header, inner)
        }
        Some(Section::Text(p)) => {
            let path = p.as_ref().map(path_of).unwrap_or_default();
            let inner = with_prefix(&path, "TEXT");
            (path, What::Text, inner)
        }
        Some(Section::Mime(p)) => {
            let path = path_of(&p);
            let inner = with_prefix(&path, "MIME");
            (path, What::Mime, inner)
        }
        Some(Section::HeaderFields(p, names)) => {
            let path = p.as_ref().map(path_of).unwrap_or_default();
            let names = field_names(names.as_ref());
            let inner = with_prefix(&path, &fields_label("HEADER.FIELDS", &names));
            (
                path,
                What::Fields {
                    names,
                    exclude: false,
                },
                inner,
            )
        }
        Some(Section::HeaderFieldsNot(p, names)) => {
            let path = p.as_ref().map(path_of).unwrap_or_default();
            let names = field_names(names.as_ref());
            let inner = with_prefix(&path, &fields_label("HEADER.FIELDS.NOT", &names));
            (
                path,
                What::Fields {
                    names,
                    exclude: true,
                },
                inner,
            )
        }
    };
    SectionItem {
        label: format!("BODY[{inner}]").into_bytes(),
        path,
        what,
        partial: partial.map(|(o, n)| (o, n.get())),
    }
}

fn fields_label(kind: &str, names: &[Vec<u8>]) -> String {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let atom = !n.is_empty()
            && n.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
        if atom {
            out.extend_from_slice(n);
        } else {
            wire::string(&mut out, n);
        }
    }
    format!("{kind} ({})", String::from_utf8_lossy(&out))
}

/// Starts writing the responses for `metas`. Their flags and modseqs are what the
/// client will be told, so queued older flag changes of them are dropped first.
fn start_messages(s: &mut Session, tag: &str, mut task: Box<FetchTask>, metas: Vec<MessageMeta>) {
    if task.items.flags {
        if let Some(sel) = s.selected.as_deref_mut() {
            let told: Vec<_> = metas.iter().map(|m| (m.uid, m.modseq)).collect();
            sel.told_flags(&told);
        }
    }
    task.queue = metas.into();
    next_message(s, tag, task);
}

/// Writes responses until a message's bytes are needed, then asks for them.
fn next_message(s: &mut Session, tag: &str, mut task: Box<FetchTask>) {
    while let Some(meta) = task.queue.pop_front() {
        if task.items.needs_message() {
            let Some((account, mailbox)) = s.request_in_selected(tag) else {
                return;
            };
            let request = Request::FetchMessage {
                account,
                mailbox,
                uid: meta.uid,
            };
            task.stage = Stage::Bodies(meta);
            return s.request(tag, request, task);
        }
        write_fetch(s, &task, &meta, None);
    }
    s.finish_ok_numbered(tag, "Fetch completed.", task.uid_command);
}

/// Writes one `* n FETCH (...)` response.
fn write_fetch(s: &mut Session, task: &FetchTask, meta: &MessageMeta, message: Option<&Bytes>) {
    let Some(sel) = s.selected.as_deref_mut() else {
        return;
    };
    let Some(seq) = sel.uids.seq_of(meta.uid) else {
        return;
    };
    let recent = sel.is_recent(meta.uid);
    let items = &task.items;
    if items.flags {
        let mut announced = Vec::new();
        sel.announce_keywords(&meta.flags, &mut announced);
        s.raw(&announced);
    }
    // The part tree is only built when an item needs it: `BODY.PEEK[]` and the
    // top-level header fields, what clients fetch most (Delta Chat's prefetch), are
    // slices of the stored bytes found without parsing any part.
    let needs_tree = items.envelope
        || items.bodystructure
        || items.body
        || items.sections.iter().any(|item| !item.path.is_empty());
    let parsed = message.filter(|_| needs_tree).map(|m| mime::parse(m));
    let mut line = Vec::with_capacity(128);
    line.extend_from_slice(b"* ");
    wire::number(&mut line, seq.into());
    line.extend_from_slice(b" FETCH (");
    let sep = |line: &mut Vec<u8>| {
        if line.last() != Some(&b'(') {
            line.push(b' ');
        }
    };
    if items.uid {
        sep(&mut line);
        line.extend_from_slice(b"UID ");
        wire::number(&mut line, meta.uid.0.into());
    }
    if items.flags {
        sep(&mut line);
        line.extend_from_slice(b"FLAGS ");
        wire::flag_list(&mut line, &meta.flags, recent);
    }
    if items.internal_date {
        sep(&mut line);
        line.extend_from_slice(b"INTERNALDATE ");
        wire::internal_date(&mut line, meta.internal_date);
    }
    if items.size {
        sep(&mut line);
        line.extend_from_slice(b"RFC822.SIZE ");
        wire::number(&mut line, meta.size);
    }
    if items.modseq {
        sep(&mut line);
        line.extend_from_slice(b"MODSEQ (");
        wire::number(&mut line, meta.modseq.0);
        line.push(b')');
    }
    if let (Some(msg), Some(part)) = (message, parsed.as_ref()) {
        if items.envelope {
            sep(&mut line);
            line.extend_from_slice(b"ENVELOPE ");
            part.write_envelope(msg, &mut line);
        }
        if items.bodystructure {
            sep(&mut line);
            line.extend_from_slice(b"BODYSTRUCTURE ");
            part.write_structure(msg, &mut line, true);
        }
        if items.body {
            sep(&mut line);
            line.extend_from_slice(b"BODY ");
            part.write_structure(msg, &mut line, false);
        }
    }
    if let Some(msg) = message {
        for item in &items.sections {
            sep(&mut line);
            line.extend_from_slice(&item.label);
            let content = match parsed.as_ref() {
                Some(root) if !item.path.is_empty() => section_content(msg, root, item),
                _ => top_section(msg, item),
            };
            let content = match item.partial {
                Some((origin, count)) => {
                    line.push(b'<');
                    wire::number(&mut line, origin.into());
                    line.push(b'>');
                    let start = (origin as usize).min(content.len());
                    let end = start.saturating_add(count as usize).min(content.len());
                    content.slice(start..end)
                }
                None => content,
            };
            line.push(b' ');
            wire::literal_header(&mut line, content.len());
            s.raw(&line);
            line.clear();
            // The body goes out as a slice of the stored message: no copy.
            s.send_shared(content);
        }
    }
    line.extend_from_slice(b")\r\n");
    s.raw(&line);
}

/// The bytes a section selects, sharing the message's buffer where possible.
/// A section of the message itself (no part path): slices found from where its header
/// ends, without the part tree.
fn top_section(msg: &Bytes, item: &SectionItem) -> Bytes {
    let (header_end, body_start) = mime::top_header(msg);
    match &item.what {
        What::Full => msg.clone(),
        What::Header => msg.slice(..body_start),
        What::Text => msg.slice(body_start..),
        // RFC 3501 6.4.5: MIME names a part's own header; the message has none of its
        // own beyond HEADER.
        What::Mime => Bytes::new(),
        What::Fields { names, exclude } => {
            Bytes::from(mime::header_lines(&msg[..header_end], names, *exclude))
        }
    }
}

fn section_content(msg: &Bytes, root: &mime::Part, item: &SectionItem) -> Bytes {
    let Some(part) = root.find(&item.path) else {
        return Bytes::new();
    };
    // HEADER/TEXT/fields of a sub-part address its encapsulated message.
    let entity = if item.path.is_empty() {
        part
    } else {
        part.message.as_deref().unwrap_or(part)
    };
    match &item.what {
        What::Full if item.path.is_empty() => msg.clone(),
        What::Full => msg.slice(part.body_start..part.end),
        What::Header => msg.slice(entity.header_start..entity.body_start),
        What::Text => msg.slice(entity.body_start..entity.end),
        What::Mime => msg.slice(part.header_start..part.body_start),
        What::Fields { names, exclude } => {
            Bytes::from(mime::header_lines(entity.header(msg), names, *exclude))
        }
    }
}
