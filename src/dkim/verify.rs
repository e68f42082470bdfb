//! The origin check of incoming mail (spec 3.3 step 6): strict DKIM. A message passes
//! only if one of its signatures verifies cryptographically AND its `d=` is the From
//! domain itself (no organisational-domain relaxation: DMARC `adkim=s`).
//!
//! mail-auth parses the signatures, hashes the body and checks RSA; the keys come from
//! the relay's [`Resolver`], fetched before mail-auth runs and handed to it as its TXT
//! cache. mail-auth's own resolver is never asked: the cache answers every name, the
//! ones not fetched with an error (and the lookups mail-auth could add on its own, for
//! `r=` reports and `atps=`, are switched off on each signature first).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chatmail_core::dns::{Answer, Record, RecordType, Resolver};
use chatmail_core::executor::{run_blocking, BlockingExecutor};
use chatmail_policy::Reply;
use futures::FutureExt as _;
use lru::LruCache;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::resolver::ToFqdn;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, Txt};

/// Key records kept between messages (spec 3.3 step 6: an LRU of 1000, as filtermail).
pub const MAX_KEY_RECORDS: usize = 1000;

/// Signatures looked at per message; more are ignored. Each costs a DNS lookup and an
/// RSA operation, and a hostile sender chooses how many a message carries.
pub const MAX_SIGNATURES: usize = 10;

/// The answer of the origin check for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimVerdict {
    /// A signature by the From domain verifies (or the From domain is an address
    /// literal, which no DKIM key can be published for: spec 3.3 step 6, 1.3).
    Pass,
    /// The message carries no DKIM-Signature at all.
    NoSignature,
    /// Signatures are present, but none both verifies and has `d=` equal to the From
    /// domain (a key absent from DNS included).
    NoValidSignature,
    /// The header section could not be parsed.
    Unparsable,
    /// No signature passed and a key lookup of the From domain's signature failed for
    /// now (timeout, SERVFAIL). A temporary refusal makes the sender retry instead of
    /// losing (or bouncing) mail because our resolver hiccuped.
    TemporaryFailure,
}

impl DkimVerdict {
    /// The SMTP reply refusing the message, `None` for [`DkimVerdict::Pass`]
    /// (spec 3.3 step 6; the temporary one is this relay's own).
    pub fn reply(&self) -> Option<Reply> {
        match self {
            DkimVerdict::Pass => None,
            DkimVerdict::NoSignature => Some(Reply::new(554, "5.7.1 No DKIM signature found")),
            DkimVerdict::NoValidSignature => {
                Some(Reply::new(554, "5.7.1 No valid DKIM signature found"))
            }
            DkimVerdict::Unparsable => Some(Reply::new(500, "Failed to parse message headers")),
            DkimVerdict::TemporaryFailure => Some(Reply::new(
                451,
                "4.7.5 DKIM key lookup failed, try again later",
            )),
        }
    }
}

/// Checks the DKIM signatures of incoming mail against keys from the relay's resolver.
/// One per relay: it keeps the LRU of key records. The CPU work (body hash, RSA) runs on
/// the blocking executor, never on the caller's task: messages are up to 30 MB.
pub struct DkimVerifier {
    resolver: Arc<dyn Resolver>,
    executor: Arc<dyn BlockingExecutor>,
    /// Absolute lower-case `<s>._domainkey.<d>.` -> its parsed key. Only keys that
    /// parsed are kept; a key is dropped when a signature fails with it (the domain may
    /// have rotated it).
    keys: Arc<Mutex<LruCache<String, Txt>>>,
}

impl std::fmt::Debug for DkimVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimVerifier").finish_non_exhaustive()
    }
}

/// What the first pass over the header section found.
struct Survey {
    /// Key names (as mail-auth will ask for them) of the signatures to check.
    key_names: Vec<String>,
}

/// The result of the second pass, on the blocking thread.
struct Checked {
    verdict: DkimVerdict,
    /// Cached keys a signature failed with.
    evict: Vec<String>,
}

impl DkimVerifier {
    /// A verifier asking `resolver` for keys and running the CPU work on `executor`.
    pub fn new(resolver: Arc<dyn Resolver>, executor: Arc<dyn BlockingExecutor>) -> DkimVerifier {
        let capacity = NonZeroUsize::new(MAX_KEY_RECORDS).unwrap_or(NonZeroUsize::MIN);
        DkimVerifier {
            resolver,
            executor,
            keys: Arc::new(Mutex::new(LruCache::new(capacity))),
        }
    }

    /// The origin check of `message` whose first From address is in `from_domain`
    /// (spec 3.3 step 6). An address literal (`[192.0.2.1]`) passes unchecked: an
    /// IP-only relay cannot publish a key (spec 1.3), and the reference does the same.
    pub async fn verify(&self, message: Bytes, from_domain: &str) -> DkimVerdict {
        let from_domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
        if from_domain.starts_with('[') {
            return DkimVerdict::Pass;
        }

        // 1. Which keys are needed: the header section only, on the blocking thread
        //    (a hostile header section may be megabytes).
        let survey = {
            let message = message.clone();
            let from_domain = from_domain.clone();
            run_blocking(&*self.executor, move || survey(&message, &from_domain)).await
        };
        let Ok(survey) = survey else {
            return DkimVerdict::TemporaryFailure;
        };

        // 2. The keys, from the cache or the resolver.
        let mut fetched: Vec<(String, Txt)> = Vec::with_capacity(survey.key_names.len());
        let mut from_cache = Vec::new();
        let mut temporary = false;
        for name in survey.key_names {
            let cached = self.lock_keys().get(&name).cloned();
            let txt = match cached {
                Some(txt) => {
                    from_cache.push(name.clone());
                    txt
                }
                None => match self.resolver.lookup(&name, RecordType::Txt).await {
                    Ok(answer) => {
                        let txt = key_from_answer(answer);
                        if matches!(txt, Txt::DomainKey(_)) {
                            self.lock_keys().put(name.clone(), txt.clone());
                        }
                        txt
                    }
                    Err(failure) => {
                        temporary = true;
                        tracing::debug!(%name, %failure, "DKIM key lookup failed for now");
                        Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                            failure.to_string(),
                        )))
                    }
                },
            };
            fetched.push((name, txt));
        }

        // 3. Body hashes and RSA, on the blocking thread.
        let checked = run_blocking(&*self.executor, move || {
            check(&message, &from_domain, fetched, &from_cache)
        })
        .await;
        let Ok(checked) = checked else {
            return DkimVerdict::TemporaryFailure;
        };
        if !checked.evict.is_empty() {
            let mut keys = self.lock_keys();
            for name in &checked.evict {
                keys.pop(name);
            }
        }
        match checked.verdict {
            DkimVerdict::NoValidSignature if temporary => DkimVerdict::TemporaryFailure,
            verdict => verdict,
        }
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, LruCache<String, Txt>> {
        // A panic elsewhere while holding the lock leaves a cache that is still a cache.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The key names of the signatures worth checking: those whose `d=` is the From domain
/// (no other can make the message pass), at most [`MAX_SIGNATURES`].
fn survey(message: &[u8], from_domain: &str) -> Survey {
    let key_names = aligned_signatures(message, from_domain)
        .into_iter()
        .map(|s| key_name(&s))
        .collect();
    Survey { key_names }
}

/// The key name of `signature` as mail-auth asks its cache for it: absolute, lower-case.
fn key_name(signature: &mail_auth::dkim::Signature) -> String {
    signature.domain_key().to_fqdn().into_owned()
}

/// The first [`MAX_SIGNATURES`] well-formed DKIM-Signature fields signed by
/// `from_domain`, in message order.
fn aligned_signatures(message: &[u8], from_domain: &str) -> Vec<mail_auth::dkim::Signature> {
    // The header section alone: a parse of the whole message would hash the body.
    let header_end = memchr_header_end(message);
    let Some(parsed) = AuthenticatedMessage::parse(&message[..header_end]) else {
        return Vec::new();
    };
    parsed
        .dkim_headers
        .into_iter()
        .map(|h| h.header)
        .filter(|s| s.d.trim_end_matches('.').eq_ignore_ascii_case(from_domain))
        .take(MAX_SIGNATURES)
        .collect()
}

/// Where the header section ends (after its blank line), or the whole message.
fn memchr_header_end(message: &[u8]) -> usize {
    let crlf = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    let lf = message.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => message.len(),
    }
}

/// A key record from a TXT answer: the first record that parses as a DKIM key (records
/// without `v=` are accepted, spaces inside `p=` tolerated: mail-auth's parser), else
/// the first parse error, else "not found".
fn key_from_answer(answer: Answer) -> Txt {
    let not_found = || {
        Txt::Error(mail_auth::Error::Dns(
            mail_auth::DnsError::InvalidRecordType,
        ))
    };
    let Answer::Records(records) = answer else {
        return not_found();
    };
    let mut first_error = None;
    for record in records {
        let Record::Txt(text) = record else { continue };
        match DomainKey::parse(text.as_bytes()) {
            Ok(key) => return Txt::DomainKey(Arc::new(key)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map(Txt::Error).unwrap_or_else(not_found)
}

/// The verdict of mail-auth on `message`, with every key it may ask for in `fetched`.
fn check(
    message: &[u8],
    from_domain: &str,
    fetched: Vec<(String, Txt)>,
    from_cache: &[String],
) -> Checked {
    let Some(mut parsed) = AuthenticatedMessage::parse(message) else {
        return Checked {
            verdict: DkimVerdict::Unparsable,
            evict: Vec::new(),
        };
    };
    if parsed.dkim_headers.is_empty() && !parsed.has_dkim_errors {
        return Checked {
            verdict: DkimVerdict::NoSignature,
            evict: Vec::new(),
        };
    }
    // Only what the survey fetched keys for, and nothing that makes mail-auth look up
    // more names (failure reports, third-party signatures).
    parsed.dkim_headers.retain(|h| {
        h.header
            .d
            .trim_end_matches('.')
            .eq_ignore_ascii_case(from_domain)
    });
    parsed.dkim_headers.truncate(MAX_SIGNATURES);
    for header in &mut parsed.dkim_headers {
        header.header.r = false;
        header.header.atps = None;
        header.header.atpsh = None;
    }
    // Malformed signatures are not ours to report on, and need no key.
    parsed.errors.clear();
    if parsed.dkim_headers.is_empty() {
        return Checked {
            verdict: DkimVerdict::NoValidSignature,
            evict: Vec::new(),
        };
    }

    let Some(authenticator) = authenticator() else {
        return Checked {
            verdict: DkimVerdict::TemporaryFailure,
            evict: Vec::new(),
        };
    };
    let cache = Prefetched(
        fetched
            .into_iter()
            .map(|(name, txt)| (name.into_boxed_str(), txt))
            .collect(),
    );
    // Every lookup is answered by the cache, so the future completes on its first poll
    // (no `block_on`: with an inline executor this already runs inside one).
    let Some(outputs) = authenticator
        .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
        .now_or_never()
    else {
        tracing::warn!("mail-auth waited for something other than the prefetched keys");
        return Checked {
            verdict: DkimVerdict::TemporaryFailure,
            evict: Vec::new(),
        };
    };
    let mut verdict = DkimVerdict::NoValidSignature;
    let mut evict = Vec::new();
    for output in &outputs {
        let Some(signature) = output.signature() else {
            continue;
        };
        let aligned = signature
            .d
            .trim_end_matches('.')
            .eq_ignore_ascii_case(from_domain);
        match output.result() {
            DkimResult::Pass if aligned => verdict = DkimVerdict::Pass,
            DkimResult::Fail(mail_auth::Error::Crypto(_)) => {
                let name = key_name(signature);
                if from_cache.contains(&name) {
                    evict.push(name);
                }
            }
            _ => {}
        }
    }
    Checked { verdict, evict }
}

/// mail-auth's entry point needs a resolver value of its own; it is never asked (see the
/// module docs). Built once: building reads no file and opens no socket.
fn authenticator() -> Option<&'static MessageAuthenticator> {
    static AUTHENTICATOR: std::sync::OnceLock<Option<MessageAuthenticator>> =
        std::sync::OnceLock::new();
    AUTHENTICATOR
        .get_or_init(|| MessageAuthenticator::new_cloudflare().ok())
        .as_ref()
}

/// The keys of one message, as mail-auth's TXT cache. A name not fetched (mail-auth
/// asking for something unforeseen) gets an error rather than a miss, so mail-auth never
/// falls back to DNS of its own.
struct Prefetched(HashMap<Box<str>, Txt>);

impl mail_auth::ResolverCache<Box<str>, Txt> for Prefetched {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(
            self.0
                .get(name)
                .cloned()
                .unwrap_or(Txt::Error(mail_auth::Error::Dns(
                    mail_auth::DnsError::Resolver("key not fetched".into()),
                ))),
        )
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: std::time::Instant) {}
}
