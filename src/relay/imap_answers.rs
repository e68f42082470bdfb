//! How [`Relay`] answers the IMAP engine's requests: one storage or account call each.

use super::handler::RequestHandler;
use super::login::LoginVerdict;
use super::service::{unix_now, Relay};
use bytes::Bytes;
use chatmail_core::account::DEVICE_TOKEN_ENTRY;
use chatmail_core::run_blocking;
use chatmail_core::store::StoreError;
use chatmail_imap::{Answer, Refusal, Request, Session};
use std::net::IpAddr;
use std::time::Instant;

/// Message bytes a SEARCH reads before scanning them in one blocking job: fewer jobs,
/// bounded memory.
const SEARCH_BATCH_BYTES: usize = 16 * 1024 * 1024;

#[async_trait::async_trait]
impl RequestHandler<Session> for Relay {
    async fn handle(&self, request: Request, peer: Option<IpAddr>) -> Answer {
        self.answer_imap(request, peer).await
    }
}

impl Relay {
    /// Performs one request of an IMAP session and returns the answer to hand back with
    /// [`chatmail_imap::Engine::answer`]. `peer` is the client's IP for the failed-login
    /// limits (`None` if unknown).
    pub async fn answer_imap(&self, request: Request, peer: Option<IpAddr>) -> Answer {
        match self.imap_request(request, peer).await {
            Ok(answer) => answer,
            Err(e) => Answer::Refused(refusal(e)),
        }
    }

    async fn imap_request(
        &self,
        request: Request,
        peer: Option<IpAddr>,
    ) -> Result<Answer, StoreError> {
        let store = &self.store;
        Ok(match request {
            Request::Authenticate { login, password } => {
                match self
                    .authenticate(peer, &login, &password, true, Instant::now())
                    .await
                {
                    Ok(LoginVerdict::LoggedIn(address)) => Answer::Authenticated(address),
                    Ok(LoginVerdict::Failed { not_before: None }) => {
                        Answer::Refused(Refusal::AuthenticationFailed)
                    }
                    Ok(LoginVerdict::Failed {
                        not_before: Some(until),
                    }) => Answer::RefusedUntil {
                        refusal: Refusal::AuthenticationFailed,
                        until,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "account store failed during IMAP login");
                        Answer::Refused(Refusal::Unavailable)
                    }
                }
            }
            Request::ListMailboxes { account } => {
                Answer::Mailboxes(store.list_mailboxes(&account).await?)
            }
            Request::CreateMailbox { account, mailbox } => {
                store.create_mailbox(&account, &mailbox).await?;
                Answer::Done
            }
            Request::DeleteMailbox { account, mailbox } => {
                store.delete_mailbox(&account, &mailbox).await?;
                Answer::Done
            }
            Request::RenameMailbox { account, from, to } => {
                store.rename_mailbox(&account, &from, &to).await?;
                Answer::Done
            }
            Request::Subscribe {
                account,
                mailbox,
                subscribed,
            } => {
                store.set_subscribed(&account, &mailbox, subscribed).await?;
                Answer::Done
            }
            Request::MailboxStatus { account, mailbox } => {
                Answer::Status(store.status(&account, &mailbox).await?)
            }
            Request::Select {
                account,
                mailbox,
                claim_recent,
            } => {
                // Claimed before the listing: every claimed UID is in it or was expunged.
                let claimed = if claim_recent {
                    Some(store.claim_recent(&account, &mailbox).await?)
                } else {
                    None
                };
                let status = store.status(&account, &mailbox).await?;
                let messages = store.list_messages(&account, &mailbox, None).await?;
                // EXAMINE shows the unclaimed recent messages without claiming them:
                // they are the highest UIDs (the store's boundary only moves up).
                let recent = claimed.unwrap_or_else(|| {
                    let first = messages
                        .len()
                        .checked_sub(status.recent as usize)
                        .and_then(|i| messages.get(i))
                        .map_or(status.uid_next, |m| m.uid);
                    first..status.uid_next
                });
                Answer::Selected {
                    status,
                    messages,
                    recent,
                }
            }
            Request::ClaimRecent { account, mailbox } => {
                Answer::RecentClaimed(store.claim_recent(&account, &mailbox).await?)
            }
            Request::Messages {
                account,
                mailbox,
                uids,
            } => {
                let mut all = store.list_messages(&account, &mailbox, None).await?;
                all.retain(|m| uids.binary_search(&m.uid).is_ok());
                Answer::Messages(all)
            }
            Request::FetchMessage {
                account,
                mailbox,
                uid,
            } => Answer::Message(store.read_message(&account, &mailbox, uid).await?),
            Request::SearchContent {
                account,
                mailbox,
                candidates,
                search,
            } => {
                let mut matched = Vec::new();
                let mut batch = Vec::new();
                let mut batch_bytes = 0;
                let last = candidates.last().map(|m| m.uid);
                for meta in candidates {
                    let uid = meta.uid;
                    match store.read_message(&account, &mailbox, uid).await {
                        Ok(bytes) => {
                            batch_bytes += bytes.len();
                            batch.push((meta, bytes));
                        }
                        // Expunged meanwhile: not a match.
                        Err(StoreError::NoSuchMessage(_)) => {}
                        Err(e) => return Err(e),
                    }
                    if batch_bytes >= SEARCH_BATCH_BYTES || Some(uid) == last {
                        let job = std::mem::take(&mut batch);
                        batch_bytes = 0;
                        let search = search.clone();
                        let scan = move || {
                            job.into_iter()
                                .filter(|(meta, bytes)| search.matches(meta, bytes))
                                .map(|(meta, _)| meta.uid)
                                .collect::<Vec<_>>()
                        };
                        match run_blocking(&*self.executor, scan).await {
                            Ok(uids) => matched.extend(uids),
                            Err(e) => {
                                tracing::error!(error = %e, "search scan did not run");
                                return Ok(Answer::Refused(Refusal::Unavailable));
                            }
                        }
                    }
                }
                Answer::Matched(matched)
            }
            Request::StoreFlags {
                account,
                mailbox,
                uids,
                op,
                flags,
                unchanged_since,
            } => {
                let outcome = store
                    .store_flags(&account, &mailbox, &uids, op, &flags, unchanged_since)
                    .await?;
                let mut updated = outcome.modified;
                updated.extend(outcome.unchanged);
                updated.sort_by_key(|m| m.uid);
                Answer::FlagsStored {
                    updated,
                    modified: outcome.failed,
                }
            }
            Request::Expunge {
                account,
                mailbox,
                uids,
            } => {
                let deleted: Vec<_> = store
                    .list_messages(&account, &mailbox, None)
                    .await?
                    .into_iter()
                    .filter(|m| m.flags.contains(&chatmail_core::Flag::Deleted))
                    .filter(|m| {
                        uids.as_ref()
                            .is_none_or(|u| u.binary_search(&m.uid).is_ok())
                    })
                    .map(|m| m.uid)
                    .collect();
                Answer::Expunged(store.expunge(&account, &mailbox, &deleted).await?)
            }
            Request::CopyMessages {
                account,
                from,
                uids,
                to,
                remove_originals,
            } => {
                if !remove_originals {
                    let size = self.selected_size(&account, &from, &uids).await?;
                    if self.over_quota(&account, size).await? {
                        return Ok(Answer::Refused(Refusal::OverQuota));
                    }
                }
                let outcome = if remove_originals {
                    store.move_messages(&account, &from, &uids, &to).await?
                } else {
                    store.copy(&account, &from, &uids, &to).await?
                };
                Answer::Copied {
                    uid_validity: outcome.uid_validity,
                    mapping: outcome.mapping,
                }
            }
            Request::Append {
                account,
                mailbox,
                flags,
                internal_date,
                message,
            } => {
                if message.len() as u64 > self.config.max_message_size {
                    return Ok(Answer::Refused(Refusal::TooBig));
                }
                if self.over_quota(&account, message.len() as u64).await? {
                    return Ok(Answer::Refused(Refusal::OverQuota));
                }
                let date = internal_date.unwrap_or(unix_now() as i64);
                let outcome = store
                    .append(&account, &mailbox, message, &flags, date)
                    .await?;
                Answer::Appended {
                    uid_validity: outcome.uid_validity,
                    uid: outcome.uid,
                }
            }
            Request::QuotaUsage { account } => {
                Answer::QuotaUsage(store.quota_usage(&account).await?)
            }
            Request::GetMetadata {
                account,
                mailbox: _,
                entries,
            } => {
                let mut values = Vec::new();
                for entry in entries {
                    let value = if entry.eq_ignore_ascii_case(DEVICE_TOKEN_ENTRY) {
                        match self.tokens.tokens(&account, unix_now()).await {
                            Ok(tokens) if !tokens.is_empty() => Some(tokens.join(" ")),
                            Ok(_) => None,
                            Err(e) => {
                                tracing::warn!(error = %e, "reading device tokens failed");
                                return Ok(Answer::Refused(Refusal::Unavailable));
                            }
                        }
                    } else {
                        self.server_metadata(&entry)
                    };
                    if let Some(v) = value {
                        values.push((entry, Bytes::from(v)));
                    }
                }
                Answer::Metadata(values)
            }
            Request::AddDeviceToken { account, token } => {
                match self.tokens.add_token(&account, &token, unix_now()).await {
                    Ok(()) => Answer::Done,
                    Err(e) => Answer::Refused(Refusal::Cannot(e.to_string())),
                }
            }
            other => {
                tracing::warn!(request = ?std::mem::discriminant(&other), "unsupported IMAP request");
                Answer::Refused(Refusal::Cannot("not supported by this relay".into()))
            }
        })
    }

    async fn selected_size(
        &self,
        account: &chatmail_core::Address,
        mailbox: &str,
        uids: &[chatmail_core::Uid],
    ) -> Result<u64, StoreError> {
        Ok(self
            .store
            .list_messages(account, mailbox, None)
            .await?
            .iter()
            .filter(|m| uids.binary_search(&m.uid).is_ok())
            .map(|m| m.size)
            .sum())
    }

    async fn over_quota(
        &self,
        account: &chatmail_core::Address,
        adding: u64,
    ) -> Result<bool, StoreError> {
        let used = self.store.quota_usage(account).await?;
        Ok(used.saturating_add(adding) > self.config.max_mailbox_bytes())
    }
}

fn refusal(e: StoreError) -> Refusal {
    match e {
        StoreError::NoSuchMailbox(_) | StoreError::NoSuchMessage(_) => Refusal::NonExistent,
        StoreError::MailboxExists(_) => Refusal::AlreadyExists,
        StoreError::MessageTooLarge { .. } => Refusal::TooBig,
        StoreError::InvalidMailboxName { reason, .. } => Refusal::Cannot(reason.to_string()),
        StoreError::TooManyMailboxes(_) => Refusal::Cannot("too many mailboxes".into()),
        StoreError::InboxImmutable => Refusal::Cannot("INBOX cannot be deleted or renamed".into()),
        StoreError::TooManyKeywords(n) => Refusal::Cannot(format!("at most {n} keywords")),
        other => {
            tracing::error!(error = %other, "mail store failed");
            Refusal::Unavailable
        }
    }
}
