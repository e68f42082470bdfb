//! Byte-script tests of the server session: every command and reply, each script fed
//! whole, byte by byte and in random chunks with identical outputs (`run_all`).

mod common;

use chatmail_smtp::server::Engine as _;
use chatmail_smtp::server::{DeliveryAnswer, DeliveryFailure, Transport};
use common::*;

fn login() -> String {
    format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice())
}

fn submit(from: &str, to: &[&str], message: &[u8]) -> Vec<u8> {
    let mut script = login().into_bytes();
    script.extend_from_slice(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    for rcpt in to {
        script.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
    }
    script.extend_from_slice(b"DATA\r\n");
    script.extend_from_slice(&stuffed(message));
    script.extend_from_slice(b"QUIT\r\n");
    script
}

#[test]
fn greeting_and_ehlo_before_tls_offer_starttls_not_auth() {
    let t = run_all(&submission(), Transport::Cleartext, EHLO.as_bytes());
    let lines = t.lines();
    assert_eq!(lines[0], format!("220 {HOST} ESMTP chatmail"));
    assert_eq!(lines[1], format!("250-{HOST}"));
    for ext in [
        "PIPELINING",
        "SIZE 1048576",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(lines.iter().any(|l| l[4..] == *ext), "{ext} in {lines:?}");
    }
    assert!(lines.iter().any(|l| &l[4..] == "CHUNKING"));
    assert!(lines.iter().any(|l| &l[4..] == "STARTTLS"));
    assert!(!lines.iter().any(|l| l[4..].starts_with("AUTH")));
    assert!(lines.last().unwrap().starts_with("250 "));
}

#[test]
fn ehlo_over_tls_offers_auth_not_starttls() {
    let t = run_all(&submission(), Transport::Tls, EHLO.as_bytes());
    let lines = t.lines();
    assert!(lines.iter().any(|l| &l[4..] == "AUTH PLAIN LOGIN"));
    assert!(!lines.iter().any(|l| &l[4..] == "STARTTLS"));
}

#[test]
fn mx_never_offers_auth() {
    let t = run_all(
        &mx(),
        Transport::Tls,
        format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice()).as_bytes(),
    );
    assert!(!t.lines().iter().any(|l| l.contains("AUTH")));
    assert!(t.has_line("503 5.5.1 Error: authentication not enabled"));
}

#[test]
fn starttls_restarts_the_session_and_drops_injected_cleartext() {
    // The MAIL after STARTTLS arrives in the same packet: cleartext injection
    // (CVE-2011-0411 style). Also bytes fed after the StartTls output but before the
    // handshake completed are cleartext and dropped. (Not chunking-invariant by nature:
    // once `tls_started` is called, later bytes are legitimately from the TLS session.)
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Cleartext);
    d.auto_tls = false;
    d.feed(format!("{EHLO}STARTTLS\r\nMAIL FROM:<evil@x.org>\r\n").as_bytes());
    d.feed(b"RCPT TO:<victim@example.org>\r\n");
    assert!(!d.session.wants_input());
    assert_eq!(d.transcript.codes(), [220, 250, 220]);
    assert_eq!(d.transcript.events, ["starttls"]);
    d.session.tls_started(d.now);
    d.feed(b"MAIL FROM:<a@b.org>\r\n");
    assert_eq!(d.transcript.codes(), [220, 250, 220, 503]);
}

#[test]
fn starttls_then_ehlo_over_tls() {
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Cleartext);
    d.feed(format!("{EHLO}STARTTLS\r\n").as_bytes());
    assert!(d.session.is_tls());
    d.feed(b"MAIL FROM:<a@b.org>\r\n");
    assert!(d
        .transcript
        .has_line("503 5.5.1 Error: send HELO/EHLO first"));
    d.feed(format!("{EHLO}STARTTLS\r\nMAIL FROM:<a@b.org>\r\n").as_bytes());
    assert!(d.transcript.has_line("554 5.5.1 Error: TLS already active"));
    assert!(d.transcript.has_line("250 2.1.0 Ok"));
    // Offered once, before TLS; not in the EHLO replies over TLS.
    let offers = d
        .transcript
        .lines()
        .iter()
        .filter(|l| l.ends_with("-STARTTLS"))
        .count();
    assert_eq!(offers, 1);
}

#[test]
fn auth_before_tls_gets_the_reference_reply() {
    let script = format!(
        "{EHLO}AUTH PLAIN {}\r\nMAIL FROM:<alice@{DOMAIN}>\r\n",
        plain_alice()
    );
    let t = run_all(&submission(), Transport::Cleartext, script.as_bytes());
    assert_eq!(
        t.lines()[t.lines().len() - 2],
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        t.lines().last().unwrap(),
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert!(
        t.events.is_empty(),
        "no credentials leave the engine before TLS"
    );
}

#[test]
fn mail_on_port_25_before_tls() {
    let t = run_all(
        &mx(),
        Transport::Cleartext,
        format!("{EHLO}MAIL FROM:<a@b.org>\r\n").as_bytes(),
    );
    assert!(t.has_line("530 5.7.0 Must issue a STARTTLS command first"));
}

#[test]
fn auth_plain_with_initial_response() {
    let t = run_all(&submission(), Transport::Tls, login().as_bytes());
    assert!(t.has_line("235 2.7.0 Authentication successful"));
    assert_eq!(t.events, [format!("auth alice@{DOMAIN}")]);
}

#[test]
fn auth_plain_with_continuation() {
    let script = format!("{EHLO}AUTH PLAIN\r\n{}\r\n", plain_alice());
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    let lines = t.lines();
    assert!(lines.contains(&"334 ".to_string()));
    assert!(t.has_line("235 2.7.0"));
}

#[test]
fn auth_login_without_and_with_initial_response() {
    let user = b64(&format!("alice@{DOMAIN}"));
    let pass = b64(PASSWORD);
    let script = format!("{EHLO}AUTH LOGIN\r\n{user}\r\n{pass}\r\n");
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("334 VXNlcm5hbWU6"));
    assert!(t.has_line("334 UGFzc3dvcmQ6"));
    assert!(t.has_line("235 2.7.0"));

    let script = format!("{EHLO}AUTH LOGIN {user}\r\n{pass}\r\n");
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    assert!(!t.has_line("334 VXNlcm5hbWU6"));
    assert!(t.has_line("334 UGFzc3dvcmQ6"));
    assert!(t.has_line("235 2.7.0"));
}

#[test]
fn auth_cancel_with_star() {
    let script = format!("{EHLO}AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\n{}", login());
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    assert_eq!(
        t.lines()
            .iter()
            .filter(|l| *l == "501 5.7.0 Authentication aborted")
            .count(),
        2
    );
    assert!(t.has_line("235 2.7.0"));
}

#[test]
fn auth_broken_base64_and_unknown_mechanism() {
    let script =
        format!("{EHLO}AUTH PLAIN !!!notbase64\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n%%%\r\nAUTH\r\n");
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    assert_eq!(
        t.lines()
            .iter()
            .filter(|l| l.starts_with("501 5.5.2 Error: invalid base64"))
            .count(),
        2
    );
    assert!(t.has_line("504 5.5.4 Unrecognized authentication type"));
    assert!(t.has_line("501 5.5.4 Syntax: AUTH"));
    assert!(t.events.is_empty());
}

#[test]
fn auth_plain_cannot_act_for_another_user() {
    let token = b64(&format!("bob@{DOMAIN}\0alice@{DOMAIN}\0{PASSWORD}"));
    let t = run_all(
        &submission(),
        Transport::Tls,
        format!("{EHLO}AUTH PLAIN {token}\r\n").as_bytes(),
    );
    assert!(t.has_line("501 5.5.2 Error: malformed PLAIN response"));
}

#[test]
fn failed_auth_is_slowed_and_bounded() {
    let bad = b64(&format!("\0alice@{DOMAIN}\0wrong"));
    let script =
        format!("{EHLO}AUTH PLAIN {bad}\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN {bad}\r\nNOOP\r\n");
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    let lines = t.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("535 5.7.8")).count(),
        3
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("421 4.7.0 {HOST} Error: too many failed authentication attempts")
    );
    assert!(t.closed);

    // The replies are held back: 1 s, then 2 s.
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    let start = d.now;
    d.session.feed(
        format!("{EHLO}AUTH PLAIN {bad}\r\nNOOP\r\n").as_bytes(),
        d.now,
    );
    while let Some(out) = d.session.poll() {
        if let chatmail_smtp::server::Output::Request(
            id,
            chatmail_smtp::server::Request::Authenticate { .. },
        ) = out
        {
            d.session
                .answer(
                    id,
                    chatmail_smtp::server::Answer::Auth(chatmail_smtp::server::AuthAnswer::Invalid),
                    d.now,
                )
                .unwrap();
        }
    }
    assert!(!d.session.wants_input());
    assert_eq!(
        d.session.poll_timeout(),
        Some(start + std::time::Duration::from_secs(1))
    );
    d.session
        .handle_timeout(start + std::time::Duration::from_millis(999));
    assert!(d.session.poll().is_none(), "nothing before the delay");
    d.session
        .handle_timeout(start + std::time::Duration::from_secs(1));
    let mut wire = Vec::new();
    while let Some(chatmail_smtp::server::Output::Send(bytes)) = d.session.poll() {
        wire.extend_from_slice(&bytes);
    }
    assert_eq!(
        wire,
        b"535 5.7.8 Error: authentication failed\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn auth_temporary_failure_and_sequence_errors() {
    let tmp = b64(&format!("\0tempfail@{DOMAIN}\0x"));
    let script = format!(
        "AUTH PLAIN {tmp}\r\n{EHLO}AUTH PLAIN {tmp}\r\n{}AUTH PLAIN {}\r\n",
        login(),
        plain_alice()
    );
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("503 5.5.1 Error: send EHLO first"));
    assert!(t.has_line("454 4.7.0 Temporary authentication failure"));
    assert!(t.has_line("503 5.5.1 Error: already authenticated"));
}

#[test]
fn submission_requires_auth_for_mail() {
    let t = run_all(
        &submission(),
        Transport::Tls,
        format!("{EHLO}MAIL FROM:<alice@{DOMAIN}>\r\n").as_bytes(),
    );
    assert!(t.has_line("530 5.7.0 Authentication required"));
}

#[test]
fn full_submission_delivers_after_durable_answer() {
    let message = encrypted_message(&format!("alice@{DOMAIN}"), "bob@elsewhere.net");
    let script = submit(
        &format!("alice@{DOMAIN}"),
        &["bob@elsewhere.net", &format!("carol@{DOMAIN}")],
        &message,
    );
    let t = run_all(&submission(), Transport::Tls, &script);
    assert_eq!(t.codes(), [220, 250, 235, 250, 250, 250, 354, 250, 221]);
    assert!(t.has_line("250 2.0.0 Ok: message accepted for delivery"));
    assert_eq!(t.deliveries.len(), 1);
    let delivery = &t.deliveries[0];
    assert_eq!(delivery.mail_from, format!("alice@{DOMAIN}"));
    assert_eq!(
        delivery.recipients,
        ["bob@elsewhere.net".to_string(), format!("carol@{DOMAIN}")]
    );
    assert_eq!(
        delivery.auth_user.as_deref(),
        Some(&*format!("alice@{DOMAIN}"))
    );
    assert!(t.closed);
}

#[test]
fn submission_sender_mismatch_is_refused_at_rcpt() {
    let script = format!(
        "{}MAIL FROM:<mallory@{DOMAIN}>\r\nRCPT TO:<bob@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n",
        login()
    );
    let t = run_all(&submission(), Transport::Tls, script.as_bytes());
    let codes = t.codes();
    assert_eq!(codes, [220, 250, 235, 250, 553, 553, 554]);
    assert!(t.has_line("553 5.7.1"));
}

#[test]
fn policy_rejection_after_data_is_the_reply() {
    let plain = fixture("plain.eml", &format!("alice@{DOMAIN}"), "bob@x.org");
    let t = run_all(
        &submission(),
        Transport::Tls,
        &submit(&format!("alice@{DOMAIN}"), &["bob@x.org"], &plain),
    );
    assert!(
        t.has_line("523 Encryption Needed: Invalid Unencrypted Mail"),
        "{:?}",
        t.lines()
    );
    assert!(t.deliveries.is_empty());
}

#[test]
fn embedder_failure_is_the_reply() {
    let message = encrypted_message(&format!("alice@{DOMAIN}"), "bob@x.org");
    let embedder = Embedder {
        delivery: DeliveryAnswer::Failed(DeliveryFailure::LocalError),
    };
    let script = submit(&format!("alice@{DOMAIN}"), &["bob@x.org"], &message);
    let t = run_all_with(
        &submission(),
        Transport::Tls,
        &policy(1 << 20),
        &embedder,
        &script,
    );
    assert!(t.has_line("451 4.3.0 Local error"));
    assert!(!t.has_line("250 2.0.0 Ok: message"));
}

#[test]
fn mx_recipient_checks() {
    let script = format!(
        "{EHLO}MAIL FROM:<sender@other.net>\r\nRCPT TO:<bob@other.net>\r\nRCPT TO:<unknown@{DOMAIN}>\r\n\
         RCPT TO:<bob@{DOMAIN}>\r\nRCPT TO:<BOB@EXAMPLE.ORG>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<>\r\n"
    );
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("554 5.7.1 <bob@other.net>: Relay access denied"));
    assert!(t.has_line(&format!(
        "550 5.1.1 <unknown@{DOMAIN}>: Recipient address rejected: User unknown"
    )));
    assert!(t.has_line("501 5.1.3 Bad recipient address syntax"));
    assert_eq!(
        t.events,
        [
            format!("rcpt unknown@{DOMAIN}"),
            format!("rcpt bob@{DOMAIN}"),
            // `BOB@EXAMPLE.ORG` is bob again: acknowledged, not asked about twice.
            format!("rcpt postmaster@{DOMAIN}"),
        ]
    );
}

#[test]
fn duplicate_recipients_are_acknowledged_and_kept_once() {
    let alice = format!("alice@{DOMAIN}");
    let message = encrypted_message(&alice, &format!("bob@{DOMAIN}"));
    let bob = format!("bob@{DOMAIN}");
    let script = submit(
        &alice,
        &[
            &bob,
            "dave@elsewhere.net",
            &bob,
            "BOB@Example.Org",
            "dave@ELSEWHERE.net",
            // Another server's local part is its own business: a different mailbox.
            "Dave@elsewhere.net",
        ],
        &message,
    );
    let t = run_all(&submission(), Transport::Tls, &script);
    // Every RCPT is acknowledged (Postfix does the same) ...
    assert_eq!(
        t.codes(),
        [220, 250, 235, 250, 250, 250, 250, 250, 250, 250, 354, 250, 221]
    );
    // ... and each mailbox is delivered to once.
    assert_eq!(
        t.deliveries[0].recipients,
        [
            bob.clone(),
            "dave@elsewhere.net".into(),
            "Dave@elsewhere.net".into()
        ]
    );

    let from = "sender@other.net";
    let message = encrypted_message(from, &bob);
    let mut script = format!(
        "{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{bob}>\r\nRCPT TO:<Bob@{DOMAIN}>\r\nRCPT TO:<{bob}>\r\nDATA\r\n"
    )
    .into_bytes();
    script.extend_from_slice(&stuffed(&message));
    let t = run_all(&mx(), Transport::Tls, &script);
    assert_eq!(t.codes(), [220, 250, 250, 250, 250, 250, 354, 250]);
    assert_eq!(t.events.iter().filter(|e| e.starts_with("rcpt")).count(), 1);
    assert_eq!(t.deliveries[0].recipients, std::slice::from_ref(&bob));
    // A new transaction starts afresh.
    let mut twice = script.clone();
    twice.extend_from_slice(&script[EHLO.len()..]);
    let t = run_all(&mx(), Transport::Tls, &twice);
    assert_eq!(t.deliveries.len(), 2);
    assert_eq!(t.deliveries[1].recipients, std::slice::from_ref(&bob));

    // LMTP owes one reply per accepted RCPT: duplicates stay (the embedder stores once).
    let mut script = format!(
        "LHLO client\r\nMAIL FROM:<{from}>\r\nRCPT TO:<{bob}>\r\nRCPT TO:<{bob}>\r\nDATA\r\n"
    )
    .into_bytes();
    script.extend_from_slice(&stuffed(&message));
    let t = run_all(&lmtp(), Transport::Cleartext, &script);
    assert_eq!(t.deliveries[0].recipients, [bob.clone(), bob.clone()]);
    assert_eq!(
        t.lines()
            .iter()
            .filter(|l| l.starts_with("250 2.0.0 <"))
            .count(),
        2
    );
}

#[test]
fn mx_partial_failure_is_refused_in_the_dialogue() {
    let from = "sender@other.net";
    let message = encrypted_message(from, &format!("a@{DOMAIN}"));
    let mut script = format!(
        "{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<a@{DOMAIN}>\r\nRCPT TO:<b@{DOMAIN}>\r\nRCPT TO:<c@{DOMAIN}>\r\nDATA\r\n"
    )
    .into_bytes();
    script.extend_from_slice(&stuffed(&message));
    let quota = DeliveryFailure::QuotaExceeded;
    let local = DeliveryFailure::LocalError;
    let run = |config: &chatmail_smtp::server::ServerConfig, outcomes| {
        let embedder = Embedder {
            delivery: DeliveryAnswer::PerRecipient(outcomes),
        };
        run_all_with(config, Transport::Tls, &policy(1 << 20), &embedder, &script)
    };
    // One mailbox full: the sending server hears it (and reports to its sender).
    let t = run(&mx(), vec![Ok(()), Err(quota.clone()), Ok(())]);
    assert!(
        t.has_line("552 5.2.2 <b@example.org>: Quota exceeded"),
        "{:?}",
        t.lines()
    );
    assert!(!t.has_line("250 2.0.0 Ok: message"));
    // A temporary failure among them wins: the sender retries.
    let t = run(&mx(), vec![Err(quota.clone()), Ok(()), Err(local.clone())]);
    assert!(t.has_line("451 4.3.0 Local error in processing"));
    // Submission keeps its 250: the relay reports to its authenticated sender.
    let alice = format!("alice@{DOMAIN}");
    let message = encrypted_message(&alice, "x@y.org");
    let embedder = Embedder {
        delivery: DeliveryAnswer::PerRecipient(vec![Ok(()), Err(quota)]),
    };
    let t = run_all_with(
        &submission(),
        Transport::Tls,
        &policy(1 << 20),
        &embedder,
        &submit(&alice, &["x@y.org", &format!("b@{DOMAIN}")], &message),
    );
    t.assert_accepted();
}

#[test]
fn mx_incoming_cleartext_depends_on_the_recipient() {
    let from = "sender@other.net";
    let plain_to = |to: &str| data_script(from, to, &fixture("plain.eml", from, to));
    let t = run_all(
        &mx(),
        Transport::Tls,
        &plain_to(&format!("cleartext1@{DOMAIN}")),
    );
    t.assert_accepted();
    let t = run_all(&mx(), Transport::Tls, &plain_to(&format!("bob@{DOMAIN}")));
    assert!(t.has_line("523 Encryption Needed"), "{:?}", t.lines());
}

#[test]
fn lmtp_replies_per_recipient() {
    let from = "sender@other.net";
    let message = encrypted_message(from, &format!("a@{DOMAIN}"));
    let mut script = format!(
        "EHLO x\r\nLHLO client\r\nMAIL FROM:<{from}>\r\nRCPT TO:<a@{DOMAIN}>\r\nRCPT TO:<unknown@{DOMAIN}>\r\nRCPT TO:<b@{DOMAIN}>\r\nDATA\r\n"
    )
    .into_bytes();
    script.extend_from_slice(&stuffed(&message));
    let t = run_all(&lmtp(), Transport::Cleartext, &script);
    assert!(t.lines()[0].contains("LMTP"));
    assert!(t.has_line("500 5.5.1 Error: this is LMTP, use LHLO"));
    assert!(t.has_line(&format!("250 2.0.0 <a@{DOMAIN}> Ok")));
    assert!(t.has_line(&format!("250 2.0.0 <b@{DOMAIN}> Ok")));
    assert!(!t.lines().iter().any(|l| l.contains("STARTTLS")));

    let embedder = Embedder {
        delivery: DeliveryAnswer::PerRecipient(vec![Ok(()), Err(DeliveryFailure::QuotaExceeded)]),
    };
    let t = run_all_with(
        &lmtp(),
        Transport::Cleartext,
        &policy(1 << 20),
        &embedder,
        &script,
    );
    let end: Vec<u16> = t.codes().into_iter().rev().take(2).collect();
    assert_eq!(end, [552, 250]);
}

#[test]
fn data_sequence_errors() {
    let script = format!("DATA\r\n{EHLO}DATA\r\nRCPT TO:<a@b.org>\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("503 5.5.1 Error: send HELO/EHLO first"));
    assert!(t.has_line("503 5.5.1 Error: need MAIL command"));
    let script = format!("{EHLO}MAIL FROM:<a@b.org>\r\nRCPT TO:<unknown@{DOMAIN}>\r\nDATA\r\nMAIL FROM:<c@d.org>\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("554 5.5.1 Error: no valid recipients"));
    assert!(t.has_line("503 5.5.1 Error: nested MAIL command"));
}

#[test]
fn bdat_message_in_chunks() {
    let from = "sender@other.net";
    let message = encrypted_message(from, &format!("a@{DOMAIN}"));
    let (first, second) = message.split_at(1000);
    let mut script = format!(
        "{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<a@{DOMAIN}>\r\nBDAT {}\r\n",
        first.len()
    )
    .into_bytes();
    script.extend_from_slice(first);
    script.extend_from_slice(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    script.extend_from_slice(second);
    script.extend_from_slice(b"QUIT\r\n");
    let t = run_all(&mx(), Transport::Tls, &script);
    assert!(t.has_line("250 2.0.0 1000 octets received"));
    t.assert_accepted();
    assert_eq!(t.deliveries[0].message, message);
}

#[test]
fn bdat_refused_chunks_are_still_consumed() {
    // No MAIL: the 21 octets (which look like commands) must not be executed.
    let script = format!("{EHLO}BDAT 21\r\nMAIL FROM:<x@y.org>\r\nNOOP\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 250, 503, 250]);
    assert!(!t.has_line("250 2.1.0"));
}

#[test]
fn bdat_zero_last_and_data_after_bdat() {
    let from = "sender@other.net";
    let script = format!(
        "{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<a@{DOMAIN}>\r\nBDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\n"
    );
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("503 5.5.1 Error: BDAT transaction in progress"));
    // "abc" is not an acceptable message: the policy refuses it after LAST.
    let codes = t.codes();
    assert_eq!(codes[..6], [220, 250, 250, 250, 250, 503]);
    assert_eq!(codes.len(), 7);
    assert_eq!(codes[6] / 100, 5);
    assert!(t.deliveries.is_empty());
}

#[test]
fn size_bound_while_reading_data_and_bdat() {
    let small = policy(2000);
    let from = "sender@other.net";
    let message = encrypted_message(from, &format!("a@{DOMAIN}"));
    assert!(message.len() > 2000);
    let mut script = data_script(from, &format!("a@{DOMAIN}"), &message);
    script.extend_from_slice(format!("MAIL FROM:<{from}> SIZE=5000\r\nMAIL FROM:<{from}>\r\nRCPT TO:<a@{DOMAIN}>\r\nBDAT 3000 LAST\r\n").as_bytes());
    script.extend_from_slice(&message[..3000]);
    script.extend_from_slice(b"NOOP\r\n");
    let t = run_all_with(&mx(), Transport::Tls, &small, &Embedder::default(), &script);
    let lines = t.lines();
    assert!(lines
        .iter()
        .any(|l| l == "552 Message exceeds maximum size"));
    assert!(t.has_line("552 5.3.4 Message size exceeds fixed maximum"));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("552 Message exceeds"))
            .count(),
        2
    );
    assert!(lines.last().unwrap().starts_with("250 2.0.0 Ok"));
    assert!(t.deliveries.is_empty());
}

#[test]
fn vrfy_expn_help_noop_rset_quit() {
    let script = format!(
        "VRFY alice@{DOMAIN}\r\nVRFY nobody\r\nEXPN staff\r\nHELP\r\nNOOP\r\nRSET\r\nETRN x\r\nQUIT\r\nNOOP\r\n"
    );
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 252, 252, 502, 214, 250, 250, 502, 221]);
    assert!(t.has_line("252 2.0.0"));
    assert!(t.closed);
}

#[test]
fn vrfy_before_starttls_needs_tls_where_tls_is_required() {
    let script = format!("EHLO mx.example.org\r\nVRFY alice@{DOMAIN}\r\n");
    let t = run_all(&mx(), Transport::Cleartext, script.as_bytes());
    assert!(t.has_line("530 5.7.0 Must issue a STARTTLS command first"));
    assert!(!t.has_line("252 2.0.0"));
}

#[test]
fn helo_gives_no_extensions() {
    let t = run_all(
        &mx(),
        Transport::Tls,
        b"HELO client\r\nMAIL FROM:<a@b.org>\r\n",
    );
    assert_eq!(t.lines()[1], format!("250 {HOST}"));
    assert!(t.has_line("250 2.1.0 Ok"));
}

#[test]
fn unknown_commands_and_error_budget() {
    let t = run_all(&mx(), Transport::Tls, b"FOO\r\n");
    assert!(t.has_line("500 5.5.2 Error: command not recognized"));
    let mut config = mx();
    config.max_errors = 5;
    let t = run_all(&config, Transport::Tls, "FOO\r\n".repeat(10).as_bytes());
    assert_eq!(t.codes(), [220, 500, 500, 500, 500, 500, 421]);
    assert!(t.closed);
}

#[test]
fn long_line_keeps_the_session_usable() {
    let mut config = mx();
    config.max_line_length = 100;
    let script = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(500));
    let t = run_all(&config, Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 500, 250]);
    assert!(t.has_line("500 5.5.6 Error: line too long"));
}

#[test]
fn mail_parameters_are_parsed() {
    let script = format!(
        "{EHLO}MAIL FROM:<a@b.org> BODY=8BITMIME SIZE=100 SMTPUTF8\r\nRCPT TO:<x@{DOMAIN}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@{DOMAIN}\r\n\
         RSET\r\nMAIL FROM:<a@b.org> BODY=BINARYMIME\r\nMAIL FROM:<a@b.org> FOO=BAR\r\nMAIL FROM:<>\r\n"
    );
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 250, 250, 250, 250, 555, 555, 250]);
}

#[test]
fn too_many_recipients() {
    let mut config = mx();
    config.max_recipients = 3;
    let mut script = format!("{EHLO}MAIL FROM:<a@b.org>\r\n");
    for i in 0..5 {
        script.push_str(&format!("RCPT TO:<u{i}@{DOMAIN}>\r\n"));
    }
    let t = run_all(&config, Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 250, 250, 250, 250, 250, 452, 452]);
}
