//! DKIM signing and the strict origin check (spec 3.3 step 6, 4.5): a round trip through
//! a static zone, and every way a message must fail it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chatmail::core::dns::{Answer, RecordType, Resolver, StaticZone, TemporaryFailure};
use chatmail::core::executor::InlineExecutor;
use chatmail::dkim::{DkimSigner, DkimVerdict, DkimVerifier, MAX_SIGNATURES};
use futures::executor::block_on;

const DOMAIN: &str = "a.example";

const MESSAGE: &str = "From: <alice@a.example>\r\n\
To: <bob@b.example>\r\n\
Subject: [...]\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@a.example>\r\n\
Autocrypt: addr=alice@a.example; keydata=AAAA\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hello Bob.\r\n";

/// One key for the whole file: generating RSA keys is the slow part.
fn signer() -> &'static (tempfile::TempDir, DkimSigner) {
    static SIGNER: OnceLock<(tempfile::TempDir, DkimSigner)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = DkimSigner::load_or_create(dir.path(), "opendkim", DOMAIN).expect("key");
        (dir, signer)
    })
}

fn signed(message: &str) -> Vec<u8> {
    let mut out = signer().1.sign(message.as_bytes()).expect("sign");
    out.extend_from_slice(message.as_bytes());
    out
}

fn zone_with_key(txt: &str) -> StaticZone {
    StaticZone::parse(&format!("opendkim._domainkey.{DOMAIN}. TXT \"{txt}\"\n")).expect("zone")
}

/// A resolver that counts its lookups, answering from a zone.
struct Counting {
    zone: StaticZone,
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl Resolver for Counting {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Answer, TemporaryFailure> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.zone.answer(name, kind)
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        zone: zone_with_key(&signer().1.dns_txt_value()),
        lookups: AtomicUsize::new(0),
    })
}

fn verifier(resolver: Arc<dyn Resolver>) -> DkimVerifier {
    DkimVerifier::new(resolver, Arc::new(InlineExecutor))
}

fn verify(resolver: Arc<dyn Resolver>, message: &[u8], from_domain: &str) -> DkimVerdict {
    block_on(verifier(resolver).verify(Bytes::copy_from_slice(message), from_domain))
}

fn standard_zone() -> Arc<dyn Resolver> {
    Arc::new(zone_with_key(&signer().1.dns_txt_value()))
}

#[test]
fn a_signed_message_passes() {
    let message = signed(MESSAGE);
    assert_eq!(verify(standard_zone(), &message, DOMAIN), DkimVerdict::Pass);
    // The From domain is compared without regard to case.
    assert_eq!(
        verify(standard_zone(), &message, "A.Example"),
        DkimVerdict::Pass
    );
    assert_eq!(DkimVerdict::Pass.reply(), None);
}

#[test]
fn the_signature_has_the_reference_tags_and_header_list() {
    let header = String::from_utf8(signer().1.sign(MESSAGE.as_bytes()).expect("sign")).unwrap();
    assert!(header.starts_with("DKIM-Signature: "), "{header}");
    assert!(header.ends_with("\r\n"), "{header}");
    let unfolded: String = header.split_whitespace().collect();
    assert!(unfolded.contains("a=rsa-sha256;"), "{header}");
    assert!(unfolded.contains("c=relaxed/simple;"), "{header}");
    assert!(unfolded.contains("d=a.example;"), "{header}");
    assert!(unfolded.contains("s=opendkim;"), "{header}");
    assert!(!unfolded.contains(";l="), "{header}");
    let h = unfolded
        .split(';')
        .find_map(|tag| tag.strip_prefix("h="))
        .expect("h= tag")
        .to_ascii_lowercase();
    let names: Vec<&str> = h.split(':').collect();
    let count = |n: &str| names.iter().filter(|x| **x == n).count();
    // Present and over-signed: the instance plus one.
    for name in ["from", "to", "subject", "date", "autocrypt"] {
        assert_eq!(count(name), 2, "{name} in {h}");
    }
    // Absent and over-signed: once, so it cannot be added.
    for name in [
        "reply-to",
        "cc",
        "in-reply-to",
        "references",
        "list-id",
        "resent-from",
    ] {
        assert_eq!(count(name), 1, "{name} in {h}");
    }
    // Signed, not over-signed.
    assert_eq!(count("content-type"), 1, "{h}");
    // Not in the set.
    assert_eq!(count("message-id"), 0, "{h}");

    // Content-Type absent: not listed at all.
    let without = MESSAGE.replace("Content-Type: text/plain\r\n", "");
    let header = String::from_utf8(signer().1.sign(without.as_bytes()).unwrap()).unwrap();
    assert!(
        !header.to_ascii_lowercase().contains("content-type"),
        "{header}"
    );
}

#[test]
fn a_modified_body_fails() {
    let message = String::from_utf8(signed(MESSAGE)).unwrap();
    let tampered = message.replace("Hello Bob.", "Hello Eve.");
    assert_ne!(message, tampered);
    let verdict = verify(standard_zone(), tampered.as_bytes(), DOMAIN);
    assert_eq!(verdict, DkimVerdict::NoValidSignature);
    let reply = verdict.reply().expect("a refusal");
    assert_eq!(
        (reply.code, reply.text.as_str()),
        (554, "5.7.1 No valid DKIM signature found")
    );
}

#[test]
fn an_added_over_signed_header_fails() {
    let message = String::from_utf8(signed(MESSAGE)).unwrap();
    for added in [
        "Subject: a second subject\r\n",
        "From: <mallory@a.example>\r\n",
        "Reply-To: <mallory@evil.example>\r\n",
        "Autocrypt: addr=alice@a.example; keydata=BBBB\r\n",
    ] {
        // Added at the top, where a header added in transit goes, and at the end of the
        // header section, where a verifier picking the first instance would look.
        let top = format!("{added}{message}");
        assert_eq!(
            verify(standard_zone(), top.as_bytes(), DOMAIN),
            DkimVerdict::NoValidSignature,
            "{added}"
        );
        let bottom = message.replacen("\r\n\r\n", &format!("\r\n{}\r\n", added.trim_end()), 1);
        assert_eq!(
            verify(standard_zone(), bottom.as_bytes(), DOMAIN),
            DkimVerdict::NoValidSignature,
            "{added}"
        );
    }
    // A header outside the signed set may be added (Received, in transit).
    let received = format!("Received: from somewhere\r\n{message}");
    assert_eq!(
        verify(standard_zone(), received.as_bytes(), DOMAIN),
        DkimVerdict::Pass
    );
}

#[test]
fn a_signature_of_another_domain_does_not_count() {
    let message = signed(MESSAGE);
    // Signed by a.example, claimed From b.example: the key exists and verifies, but
    // d= is not the From domain (strict alignment, no parent-domain relaxation).
    assert_eq!(
        verify(standard_zone(), &message, "b.example"),
        DkimVerdict::NoValidSignature
    );
    assert_eq!(
        verify(standard_zone(), &message, "sub.a.example"),
        DkimVerdict::NoValidSignature
    );
    assert_eq!(
        verify(standard_zone(), &message, "example"),
        DkimVerdict::NoValidSignature
    );
}

#[test]
fn no_signature() {
    let verdict = verify(standard_zone(), MESSAGE.as_bytes(), DOMAIN);
    assert_eq!(verdict, DkimVerdict::NoSignature);
    let reply = verdict.reply().expect("a refusal");
    assert_eq!(
        (reply.code, reply.text.as_str()),
        (554, "5.7.1 No DKIM signature found")
    );
}

#[test]
fn a_broken_signature_is_present_but_not_valid() {
    for broken in [
        "DKIM-Signature: v=1; a=rsa-sha256; garbage\r\n",
        "DKIM-Signature: \r\n",
        // l= is refused (spec 4.5: a body-length tag lets anyone append).
        "DKIM-Signature: v=1; a=rsa-sha256; d=a.example; s=opendkim; c=relaxed/simple; h=from; l=3; bh=AAAA; b=AAAA\r\n",
    ] {
        let message = format!("{broken}{MESSAGE}");
        assert_eq!(verify(standard_zone(), message.as_bytes(), DOMAIN), DkimVerdict::NoValidSignature, "{broken}");
    }
}

#[test]
fn an_absent_key_fails_permanently() {
    let message = signed(MESSAGE);
    let empty: Arc<dyn Resolver> =
        Arc::new(StaticZone::parse("other.example. A 192.0.2.1\n").unwrap());
    assert_eq!(
        verify(empty, &message, DOMAIN),
        DkimVerdict::NoValidSignature
    );
    // A revoked key (empty p=) and a record that is not a key.
    for txt in ["v=DKIM1; p=", "v=spf1 -all"] {
        assert_eq!(
            verify(Arc::new(zone_with_key(txt)), &message, DOMAIN),
            DkimVerdict::NoValidSignature,
            "{txt}"
        );
    }
}

/// Every lookup fails for now.
struct Failing;

#[async_trait::async_trait]
impl Resolver for Failing {
    async fn lookup(&self, _: &str, _: RecordType) -> Result<Answer, TemporaryFailure> {
        Err(TemporaryFailure("SERVFAIL".into()))
    }
}

#[test]
fn a_failed_key_lookup_is_temporary() {
    let message = signed(MESSAGE);
    let verdict = verify(Arc::new(Failing), &message, DOMAIN);
    assert_eq!(verdict, DkimVerdict::TemporaryFailure);
    let reply = verdict.reply().expect("a refusal");
    assert_eq!(reply.code, 451);
    assert!(reply.text.starts_with("4.7.5 "), "{}", reply.text);
    // No signature needs no lookup: still a permanent answer.
    assert_eq!(
        verify(Arc::new(Failing), MESSAGE.as_bytes(), DOMAIN),
        DkimVerdict::NoSignature
    );
    // A signature of another domain needs no lookup either.
    assert_eq!(
        verify(Arc::new(Failing), &message, "b.example"),
        DkimVerdict::NoValidSignature
    );
}

#[test]
fn key_records_with_whitespace_or_without_version_are_accepted() {
    let message = signed(MESSAGE);
    let txt = signer().1.dns_txt_value();
    let p = txt.split(";p=").nth(1).unwrap().split(';').next().unwrap();
    let (head, tail) = p.split_at(p.len() / 2);
    for record in [
        format!("k=rsa; p={p}"),
        format!("v=DKIM1; k=rsa; p={head} {tail}"),
        format!(" v=DKIM1 ;  k=rsa ; p= {head}  {tail} ; s=email ; t=s "),
    ] {
        assert_eq!(
            verify(Arc::new(zone_with_key(&record)), &message, DOMAIN),
            DkimVerdict::Pass,
            "{record}"
        );
    }
}

#[test]
fn address_literals_are_not_checked() {
    assert_eq!(
        verify(Arc::new(Failing), MESSAGE.as_bytes(), "[192.0.2.1]"),
        DkimVerdict::Pass
    );
}

#[test]
fn unparsable_headers() {
    for message in [&b""[..], b"\r\n\r\nno header at all\r\n"] {
        let verdict = verify(standard_zone(), message, DOMAIN);
        assert_eq!(verdict, DkimVerdict::Unparsable, "{message:?}");
        let reply = verdict.reply().expect("a refusal");
        assert_eq!(
            (reply.code, reply.text.as_str()),
            (500, "Failed to parse message headers")
        );
    }
}

#[test]
fn keys_are_cached_and_evicted_when_a_signature_fails_with_them() {
    let resolver = counting();
    let verifier = verifier(resolver.clone());
    let message = Bytes::from(signed(MESSAGE));
    let run = |m: &Bytes| block_on(verifier.verify(m.clone(), DOMAIN));
    assert_eq!(run(&message), DkimVerdict::Pass);
    assert_eq!(run(&message), DkimVerdict::Pass);
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        1,
        "the second check used the cache"
    );
    // A header changed: the body hash matches, the RSA signature does not.
    let forged = Bytes::from(
        String::from_utf8(message.to_vec())
            .unwrap()
            .replace("Subject: [...]", "Subject: [..!]"),
    );
    assert_eq!(run(&forged), DkimVerdict::NoValidSignature);
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(run(&message), DkimVerdict::Pass);
    assert_eq!(
        resolver.lookups.load(Ordering::SeqCst),
        2,
        "the failed key was evicted"
    );
}

#[test]
fn at_most_ten_signatures_are_looked_at() {
    let resolver = counting();
    let valid = String::from_utf8(signed(MESSAGE)).unwrap();
    let signature_end = valid.find("\r\nFrom:").unwrap() + 2;
    let (signature, _) = valid.split_at(signature_end);
    // Broken copies with other selectors: each costs a lookup if looked at.
    let mut bogus = String::new();
    for i in 0..MAX_SIGNATURES + 5 {
        bogus.push_str(&signature.replace("s=opendkim", &format!("s=bogus{i}")));
    }
    let valid_last = format!("{bogus}{valid}");
    assert_eq!(
        verify(resolver.clone(), valid_last.as_bytes(), DOMAIN),
        DkimVerdict::NoValidSignature
    );
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), MAX_SIGNATURES);
    let valid_first = format!("{signature}{bogus}{}", &valid[signature_end..]);
    assert_eq!(
        verify(counting(), valid_first.as_bytes(), DOMAIN),
        DkimVerdict::Pass
    );
}

#[test]
fn the_key_is_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = DkimSigner::load_or_create(dir.path(), "sel", "c.example").unwrap();
    let path = dir.path().join("dkim").join("sel.private");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = DkimSigner::load_or_create(dir.path(), "sel", "c.example").unwrap();
    assert_eq!(first.dns_txt_value(), again.dns_txt_value());
    assert!(
        first
            .dns_txt_value()
            .starts_with("v=DKIM1;k=rsa;p=MIIBIjANBg"),
        "{}",
        first.dns_txt_value()
    );
    assert!(first.dns_txt_value().ends_with(";s=email;t=s"));
    assert_eq!(first.dns_name(), "sel._domainkey.c.example.");
    // No temporary file left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("dkim")).unwrap().count(),
        1
    );

    // A damaged key file is an error naming the file, never a silent new key.
    std::fs::write(&path, "not a key").unwrap();
    let error = DkimSigner::load_or_create(dir.path(), "sel", "c.example").unwrap_err();
    assert!(error.to_string().contains("sel.private"), "{error}");
    // A selector that is no DNS label (and would escape the directory).
    let error = DkimSigner::load_or_create(dir.path(), "../x", "c.example").unwrap_err();
    assert!(error.to_string().contains("selector"), "{error}");
}

#[test]
fn the_published_records_load_as_a_zone_and_verify_a_signature() {
    use chatmail::core::dns::Record;
    let config = chatmail::core::config::Config::with_domain(DOMAIN);
    // 2024-03-05 06:07 UTC.
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_618_820);
    let lines = chatmail::dkim::published_records(&config, &signer().1, now);
    let text = lines.join("\n");
    let zone = StaticZone::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let answer = |name: &str, kind| zone.answer(name, kind).expect("answer");
    assert_eq!(
        answer("a.example", RecordType::Mx),
        Answer::Records(vec![Record::Mx {
            preference: 10,
            exchange: "a.example.".into()
        }])
    );
    assert_eq!(
        answer("_mta-sts.a.example", RecordType::Txt),
        Answer::Records(vec![Record::Txt("v=STSv1; id=202403050607".into())])
    );
    for (name, value) in [
        ("a.example", "v=spf1 a ~all"),
        ("_dmarc.a.example", "v=DMARC1;p=reject;adkim=s;aspf=s"),
        ("_adsp._domainkey.a.example", "dkim=discardable"),
    ] {
        assert_eq!(
            answer(name, RecordType::Txt),
            Answer::Records(vec![Record::Txt(value.into())])
        );
    }
    for name in ["mta-sts.a.example", "www.a.example"] {
        assert_eq!(
            answer(name, RecordType::Cname),
            Answer::Records(vec![Record::Cname("a.example.".into())])
        );
    }
    for (service, port) in [
        ("_submission", 587),
        ("_submissions", 465),
        ("_imap", 143),
        ("_imaps", 993),
    ] {
        assert_eq!(
            answer(&format!("{service}._tcp.a.example"), RecordType::Srv),
            Answer::Records(vec![Record::Srv {
                priority: 0,
                weight: 1,
                port,
                target: "a.example.".into()
            }])
        );
    }
    // Addresses are the operator's to add: comments only.
    assert_eq!(answer("a.example", RecordType::A), Answer::NoData);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(';') && l.contains(" A ")),
        "{text}"
    );
    // The key record is longer than one TXT string: split, and joined again on lookup.
    let dkim_line = lines
        .iter()
        .find(|l| l.contains("_domainkey.a.example. ") && l.contains("DKIM1"))
        .unwrap();
    assert!(dkim_line.matches('"').count() >= 4, "{dkim_line}");
    assert!(dkim_line.split('"').all(|s| s.len() <= 255), "{dkim_line}");
    assert_eq!(
        answer("opendkim._domainkey.a.example", RecordType::Txt),
        Answer::Records(vec![Record::Txt(signer().1.dns_txt_value())])
    );
    assert_eq!(
        verify(Arc::new(zone), &signed(MESSAGE), DOMAIN),
        DkimVerdict::Pass
    );

    // Test domains starting with `_` publish no MTA-STS.
    let underscore = chatmail::core::config::Config::with_domain("_test.example");
    let text = chatmail::dkim::published_records(&underscore, &signer().1, now).join("\n");
    assert!(
        !text.contains("mta-sts") && text.contains("www._test.example."),
        "{text}"
    );
    // An IPv4-only relay publishes nothing.
    let ip = chatmail::core::config::Config::with_domain("192.0.2.1");
    assert!(chatmail::dkim::published_records(&ip, &signer().1, now).is_empty());
}

#[test]
fn a_key_from_pem_signs_as_the_same_key_from_its_file() {
    // The shared store of several nodes holds the key as PEM: a signer made from the
    // file's PEM publishes the same record and its signatures pass against it.
    let (dir, from_file) = signer();
    let pem = std::fs::read_to_string(dir.path().join("dkim/opendkim.private")).expect("pem");
    let from_pem = DkimSigner::from_pem(&pem, "test", "opendkim", DOMAIN).expect("from pem");
    assert_eq!(from_pem.dns_txt_value(), from_file.dns_txt_value());
    let mut message = from_pem.sign(MESSAGE.as_bytes()).expect("sign");
    message.extend_from_slice(MESSAGE.as_bytes());
    assert_eq!(verify(standard_zone(), &message, DOMAIN), DkimVerdict::Pass);

    let err = DkimSigner::from_pem("not a key", "postgres:dkim:x", "opendkim", DOMAIN)
        .expect_err("not a key");
    assert!(err.to_string().contains("postgres:dkim:x"), "{err}");
    assert!(DkimSigner::from_pem(&pem, "test", "bad selector", DOMAIN).is_err());
    let made = DkimSigner::generate_pem().expect("generate");
    assert!(
        made.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{made}"
    );
    assert!(DkimSigner::from_pem(&made, "new", "opendkim", DOMAIN).is_ok());
}
