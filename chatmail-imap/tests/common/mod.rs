//! Test support: a small in-memory mailbox model that answers the session's requests,
//! and a harness that drives a session with arbitrary chunking.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chatmail_core::{
    Address, Change, Flag, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta, ModSeq,
    SpecialUse, Uid, UidValidity, INBOX,
};
use chatmail_imap::{Answer, Output, Refusal, Request, Session, SessionConfig};
// The session's inputs and outputs are the engine contract's methods.
pub use chatmail_imap::Engine;
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};

pub const USER: &str = "abcdefghi@example.org";
pub const PASSWORD: &str = "correct-horse";

/// One mailbox of the model.
#[derive(Debug, Clone)]
pub struct Mbox {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub subscribed: bool,
    pub messages: BTreeMap<u32, (MessageMeta, Bytes)>,
}

impl Mbox {
    fn new(uid_validity: u32) -> Mbox {
        Mbox {
            uid_validity,
            uid_next: 1,
            subscribed: true,
            messages: BTreeMap::new(),
        }
    }
}

/// The in-memory account store: one account, its mailboxes, tokens and a change log.
#[derive(Debug, Clone)]
pub struct Fake {
    pub mailboxes: BTreeMap<String, Mbox>,
    pub modseq: u64,
    pub tokens: Vec<String>,
    pub quota_used: u64,
    pub quota_limit: u64,
    /// Changes published since the last `take_changes`.
    pub changes: Vec<Change>,
    pub requests: usize,
    /// Messages checked for a SEARCH on their content.
    pub content_searched: usize,
}

impl Default for Fake {
    fn default() -> Self {
        let mut mailboxes = BTreeMap::new();
        mailboxes.insert(INBOX.to_string(), Mbox::new(1000));
        Fake {
            mailboxes,
            modseq: 1,
            tokens: Vec::new(),
            quota_used: 0,
            quota_limit: u64::MAX,
            changes: Vec::new(),
            requests: 0,
            content_searched: 0,
        }
    }
}

impl Fake {
    /// Delivers a message to `mailbox` (as SMTP would) and returns the change.
    pub fn deliver(&mut self, mailbox: &str, message: &[u8]) -> Change {
        let (_, uid) = self.append(mailbox, Flags::new(), None, Bytes::copy_from_slice(message));
        let meta = self.mailboxes[mailbox].messages[&uid.0].0.clone();
        Change::Appended {
            mailbox: mailbox.to_string(),
            meta,
        }
    }

    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    fn next_modseq(&mut self) -> ModSeq {
        self.modseq += 1;
        ModSeq(self.modseq)
    }

    fn append(
        &mut self,
        mailbox: &str,
        flags: Flags,
        date: Option<i64>,
        message: Bytes,
    ) -> (UidValidity, Uid) {
        let modseq = self.next_modseq();
        let mb = self.mailboxes.get_mut(mailbox).expect("mailbox");
        let uid = mb.uid_next;
        mb.uid_next += 1;
        let meta = MessageMeta {
            uid: Uid(uid),
            size: message.len() as u64,
            internal_date: date.unwrap_or(1_700_000_000 + i64::from(uid)),
            flags,
            modseq,
        };
        mb.messages.insert(uid, (meta.clone(), message));
        self.quota_used += meta.size;
        self.changes.push(Change::Appended {
            mailbox: mailbox.to_string(),
            meta,
        });
        (UidValidity(mb.uid_validity), Uid(uid))
    }

    fn status(&self, name: &str) -> Option<MailboxStatus> {
        let mb = self.mailboxes.get(name)?;
        Some(MailboxStatus {
            uid_validity: UidValidity(mb.uid_validity),
            uid_next: Uid(mb.uid_next),
            highest_modseq: ModSeq(self.modseq),
            exists: mb.messages.len() as u32,
            unseen: mb
                .messages
                .values()
                .filter(|(m, _)| !m.flags.contains(&Flag::Seen))
                .count() as u32,
            recent: 0,
            size: mb.messages.values().map(|(m, _)| m.size).sum(),
        })
    }

    /// Answers one request the way a real store would.
    pub fn handle(&mut self, request: Request) -> Answer {
        self.requests += 1;
        let missing = Answer::Refused(Refusal::NonExistent);
        match request {
            Request::Authenticate { login, password } => {
                if login.eq_ignore_ascii_case(USER) && password == PASSWORD {
                    Answer::Authenticated(Address::parse(&login).unwrap())
                } else {
                    Answer::Refused(Refusal::AuthenticationFailed)
                }
            }
            Request::ListMailboxes { .. } => Answer::Mailboxes(
                self.mailboxes
                    .iter()
                    .map(|(name, mb)| MailboxInfo {
                        name: name.clone(),
                        special_use: SpecialUse::for_name(name),
                        subscribed: mb.subscribed,
                    })
                    .collect(),
            ),
            Request::CreateMailbox { mailbox, .. } => {
                if self.mailboxes.contains_key(&mailbox) {
                    return Answer::Refused(Refusal::AlreadyExists);
                }
                let validity = 2000 + self.mailboxes.len() as u32;
                self.mailboxes.insert(mailbox, Mbox::new(validity));
                Answer::Done
            }
            Request::DeleteMailbox { mailbox, .. } => match self.mailboxes.remove(&mailbox) {
                Some(_) => Answer::Done,
                None => missing,
            },
            Request::RenameMailbox { from, to, .. } => {
                if self.mailboxes.contains_key(&to) {
                    return Answer::Refused(Refusal::AlreadyExists);
                }
                match self.mailboxes.remove(&from) {
                    Some(mb) => {
                        self.mailboxes.insert(to, mb);
                        Answer::Done
                    }
                    None => missing,
                }
            }
            Request::Subscribe {
                mailbox,
                subscribed,
                ..
            } => match self.mailboxes.get_mut(&mailbox) {
                Some(mb) => {
                    mb.subscribed = subscribed;
                    Answer::Done
                }
                None => missing,
            },
            Request::MailboxStatus { mailbox, .. } => match self.status(&mailbox) {
                Some(st) => Answer::Status(st),
                None => missing,
            },
            Request::Select { mailbox, .. } => match self.status(&mailbox) {
                Some(status) => Answer::Selected {
                    recent: status.uid_next..status.uid_next,
                    status,
                    messages: self.mailboxes[&mailbox]
                        .messages
                        .values()
                        .map(|(m, _)| m.clone())
                        .collect(),
                },
                None => missing,
            },
            // This test store tracks no \Recent (chatmail-core's stores do).
            Request::ClaimRecent { mailbox, .. } => match self.status(&mailbox) {
                Some(st) => Answer::RecentClaimed(st.uid_next..st.uid_next),
                None => missing,
            },
            Request::Messages { mailbox, uids, .. } => {
                let Some(mb) = self.mailboxes.get(&mailbox) else {
                    return missing;
                };
                Answer::Messages(
                    uids.iter()
                        .filter_map(|u| mb.messages.get(&u.0).map(|(m, _)| m.clone()))
                        .collect(),
                )
            }
            Request::SearchContent {
                mailbox,
                candidates,
                search,
                ..
            } => {
                let Some(mb) = self.mailboxes.get(&mailbox) else {
                    return missing;
                };
                self.content_searched += candidates.len();
                Answer::Matched(
                    candidates
                        .iter()
                        .filter(|m| {
                            mb.messages
                                .get(&m.uid.0)
                                .is_some_and(|(meta, bytes)| search.matches(meta, bytes))
                        })
                        .map(|m| m.uid)
                        .collect(),
                )
            }
            Request::FetchMessage { mailbox, uid, .. } => {
                match self
                    .mailboxes
                    .get(&mailbox)
                    .and_then(|mb| mb.messages.get(&uid.0))
                {
                    Some((_, bytes)) => Answer::Message(bytes.clone()),
                    None => missing,
                }
            }
            Request::StoreFlags {
                mailbox,
                uids,
                op,
                flags,
                unchanged_since,
                ..
            } => {
                let mut updated = Vec::new();
                let mut modified = Vec::new();
                for uid in uids {
                    let modseq = ModSeq(self.modseq + 1);
                    let Some(mb) = self.mailboxes.get_mut(&mailbox) else {
                        return missing;
                    };
                    let Some((meta, _)) = mb.messages.get_mut(&uid.0) else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|u| meta.modseq > u) {
                        modified.push(uid);
                        continue;
                    }
                    let new: Flags = match op {
                        FlagOp::Replace => flags.clone(),
                        FlagOp::Add => meta.flags.union(&flags).cloned().collect(),
                        FlagOp::Remove => meta.flags.difference(&flags).cloned().collect(),
                    };
                    if new != meta.flags {
                        meta.flags = new;
                        meta.modseq = modseq;
                        self.modseq += 1;
                        updated.push(meta.clone());
                    }
                }
                for m in &updated {
                    self.changes.push(Change::FlagsChanged {
                        mailbox: mailbox.clone(),
                        uid: m.uid,
                        flags: m.flags.clone(),
                        modseq: m.modseq,
                    });
                }
                Answer::FlagsStored { updated, modified }
            }
            Request::Expunge { mailbox, uids, .. } => {
                let Some(mb) = self.mailboxes.get_mut(&mailbox) else {
                    return missing;
                };
                let gone: Vec<u32> = mb
                    .messages
                    .iter()
                    .filter(|(uid, (m, _))| {
                        m.flags.contains(&Flag::Deleted)
                            && uids.as_ref().is_none_or(|u| u.contains(&Uid(**uid)))
                    })
                    .map(|(uid, _)| *uid)
                    .collect();
                for uid in &gone {
                    mb.messages.remove(uid);
                }
                for uid in &gone {
                    let modseq = self.next_modseq();
                    self.changes.push(Change::Expunged {
                        mailbox: mailbox.clone(),
                        uid: Uid(*uid),
                        modseq,
                    });
                }
                Answer::Expunged(gone.into_iter().map(Uid).collect())
            }
            Request::CopyMessages {
                from,
                uids,
                to,
                remove_originals,
                ..
            } => {
                if !self.mailboxes.contains_key(&to) {
                    return missing;
                }
                let mut mapping = Vec::new();
                let mut validity = UidValidity(0);
                for uid in uids {
                    let Some((meta, bytes)) = self.mailboxes[&from].messages.get(&uid.0).cloned()
                    else {
                        continue;
                    };
                    let (v, new) = self.append(&to, meta.flags, Some(meta.internal_date), bytes);
                    validity = v;
                    mapping.push((uid, new));
                    if remove_originals {
                        self.mailboxes
                            .get_mut(&from)
                            .unwrap()
                            .messages
                            .remove(&uid.0);
                        let modseq = self.next_modseq();
                        self.changes.push(Change::Expunged {
                            mailbox: from.clone(),
                            uid,
                            modseq,
                        });
                    }
                }
                Answer::Copied {
                    uid_validity: validity,
                    mapping,
                }
            }
            Request::Append {
                mailbox,
                flags,
                internal_date,
                message,
                ..
            } => {
                if !self.mailboxes.contains_key(&mailbox) {
                    return missing;
                }
                if self.quota_used + message.len() as u64 > self.quota_limit {
                    return Answer::Refused(Refusal::OverQuota);
                }
                let (uid_validity, uid) = self.append(&mailbox, flags, internal_date, message);
                Answer::Appended { uid_validity, uid }
            }
            Request::QuotaUsage { .. } => Answer::QuotaUsage(self.quota_used),
            Request::GetMetadata { entries, .. } => Answer::Metadata(
                entries
                    .into_iter()
                    .filter_map(|e| {
                        let value = match e.to_ascii_lowercase().as_str() {
                            "/private/devicetoken" if !self.tokens.is_empty() => {
                                self.tokens.join(" ")
                            }
                            "/shared/vendor/deltachat/irohrelay" => {
                                "https://example.org".to_string()
                            }
                            "/shared/vendor/deltachat/maxsmtprecipients" => "1000".to_string(),
                            "/shared/admin" => "mailto:admin@example.org".to_string(),
                            _ => return None,
                        };
                        Some((e, Bytes::from(value)))
                    })
                    .collect(),
            ),
            Request::AddDeviceToken { token, .. } => {
                self.tokens.retain(|t| *t != token);
                self.tokens.push(token);
                Answer::Done
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
}

/// How `Client::send` splits its input.
#[derive(Debug, Clone, Copy)]
pub enum Chunks {
    Whole,
    /// Pseudo-random chunk sizes from this seed (1..=17 bytes).
    Random(u64),
}

/// A session plus the fake store, pumped until it waits for input.
pub struct Client {
    pub session: Session,
    pub fake: Fake,
    pub received: Vec<u8>,
    pub closed: bool,
    pub starttls: bool,
    /// The session asked for COMPRESS=DEFLATE ([`Output::StartDeflate`]).
    pub deflate: bool,
    /// Whether to answer requests at once (false lets a test hold a request).
    pub answering: bool,
    pub held: Vec<(chatmail_imap::RequestId, Request)>,
    /// The accounts whose change feed the session asked for, in order.
    pub subscribed: Vec<Address>,
    /// The virtual clock: the time of every `feed`.
    pub now: Instant,
    rng: u64,
}

pub fn config() -> SessionConfig {
    let mut c = SessionConfig::from_config(
        &chatmail_core::config::Config::with_domain("example.org"),
        true,
    );
    c.max_message_size = 1024 * 1024;
    c
}

impl Client {
    pub fn new() -> Client {
        Client::with_config(config())
    }

    pub fn with_config(config: SessionConfig) -> Client {
        let now = Instant::now();
        let mut c = Client {
            session: Session::new(Arc::new(config), now),
            now,
            fake: Fake::default(),
            received: Vec::new(),
            closed: false,
            starttls: false,
            deflate: false,
            answering: true,
            held: Vec::new(),
            subscribed: Vec::new(),
            rng: 1,
        };
        c.pump();
        c
    }

    /// Drains outputs, answering requests from the fake store.
    pub fn pump(&mut self) {
        while let Some(out) = self.session.poll() {
            match out {
                Output::Send(b) => self.received.extend_from_slice(&b),
                Output::Request(id, req) if self.answering => {
                    let answer = self.fake.handle(req);
                    self.session
                        .answer(id, answer, self.now)
                        .expect("known request");
                }
                Output::Request(id, req) => self.held.push((id, req)),
                Output::StartTls => self.starttls = true,
                Output::StartDeflate => self.deflate = true,
                Output::Subscribe(account) => self.subscribed.push(account),
                Output::Event(never) => match never {},
                Output::Close => self.closed = true,
            }
        }
    }

    /// Feeds `input` in the given chunking and returns everything received meanwhile.
    pub fn send_chunked(&mut self, input: &[u8], chunks: Chunks) -> String {
        let start = self.received.len();
        match chunks {
            Chunks::Whole => {
                self.session.feed(input, self.now);
                self.pump();
            }
            Chunks::Random(seed) => {
                self.rng = seed.max(1);
                let mut rest = input;
                while !rest.is_empty() {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let n = ((self.rng % 17) as usize + 1).min(rest.len());
                    self.session.feed(&rest[..n], self.now);
                    self.pump();
                    rest = &rest[n..];
                }
            }
        }
        String::from_utf8_lossy(&self.received[start..]).into_owned()
    }

    pub fn send(&mut self, input: &str) -> String {
        self.send_chunked(input.as_bytes(), Chunks::Whole)
    }

    pub fn login(&mut self) -> String {
        self.send(&format!("L1 LOGIN {USER} {PASSWORD}\r\n"))
    }

    /// Passes the fake's published changes to the session (as the embedder's feed does).
    pub fn publish_changes(&mut self) -> String {
        let start = self.received.len();
        for change in self.fake.take_changes() {
            self.session.handle_change(Ok(change), self.now);
        }
        self.pump();
        String::from_utf8_lossy(&self.received[start..]).into_owned()
    }
}

/// Asserts that `bytes` is a greeting followed by well-formed responses (imap-codec).
pub fn assert_valid_responses(bytes: &[u8]) {
    let (mut rest, _) = match GreetingCodec::default().decode(bytes) {
        Ok(v) => v,
        Err(GreetingDecodeError::Incomplete) => return,
        Err(e) => panic!("bad greeting {e:?}: {:?}", String::from_utf8_lossy(bytes)),
    };
    while !rest.is_empty() {
        match ResponseCodec::default().decode(rest) {
            Ok((r, _)) => rest = r,
            Err(ResponseDecodeError::Incomplete) => return,
            Err(e) => panic!(
                "imap-codec rejects response {e:?}: {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(300)])
            ),
        }
    }
}

pub const SIMPLE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: abcdefghi@example.org\r\nSubject: hello\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <m1@example.org>\r\nChat-Version: 1.0\r\n\r\nHi there\r\n";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("fixture")
}
