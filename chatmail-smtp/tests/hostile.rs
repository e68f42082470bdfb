//! Hostile inputs: each gets the right reply, and the session's memory stays bounded.

mod common;

use std::time::Duration;

use chatmail_smtp::server::{AnswerError, AuthAnswer, Output, Request, Transport};
use common::*;

#[test]
fn ten_megabyte_line_without_crlf() {
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Tls);
    let chunk = vec![b'A'; 64 * 1024];
    for _ in 0..160 {
        d.feed(&chunk);
        assert!(
            d.session.buffered_len() <= 2048,
            "buffered {}",
            d.session.buffered_len()
        );
    }
    // Answered once, as soon as the bound was crossed; the session is still usable.
    assert_eq!(d.transcript.codes(), [220, 500]);
    assert!(d.transcript.has_line("500 5.5.6 Error: line too long"));
    d.feed(b"\r\nNOOP\r\n");
    assert_eq!(d.transcript.codes(), [220, 500, 250]);
    assert!(!d.transcript.closed);
}

#[test]
fn ten_thousand_pipelined_commands_in_one_packet() {
    let t = run_chunked(
        &mx(),
        Transport::Tls,
        &policy(1 << 20),
        &Embedder::default(),
        "NOOP\r\n".repeat(10_000).as_bytes(),
        Chunking::Whole,
    );
    assert_eq!(t.codes().len(), 10_001);
    assert!(t.codes()[1..].iter().all(|&c| c == 250));

    // Recipients pause for the embedder one by one; the rest waits in the buffer.
    let mut script = format!("{EHLO}MAIL FROM:<a@b.org>\r\n");
    for i in 0..10_000 {
        script.push_str(&format!("RCPT TO:<user{i}@{DOMAIN}>\r\n"));
    }
    script.push_str("QUIT\r\n");
    let t = run_chunked(
        &mx(),
        Transport::Tls,
        &policy(1 << 20),
        &Embedder::default(),
        script.as_bytes(),
        Chunking::Whole,
    );
    let codes = t.codes();
    assert_eq!(codes.iter().filter(|&&c| c == 452).count(), 9_000);
    assert_eq!(
        t.events.iter().filter(|e| e.starts_with("rcpt")).count(),
        1_000
    );
    assert_eq!(*codes.last().unwrap(), 221);

    // Garbage: the error budget ends it after 20 replies, whatever follows.
    let t = run_chunked(
        &mx(),
        Transport::Tls,
        &policy(1 << 20),
        &Embedder::default(),
        "BOGUS\r\n".repeat(10_000).as_bytes(),
        Chunking::Whole,
    );
    assert_eq!(t.codes().len(), 1 + 20 + 1);
    assert!(t.closed);
}

#[test]
fn empty_recipient_and_unparsable_addresses_get_a_reply() {
    let script = format!("{EHLO}MAIL FROM:<a@b.org>\r\nRCPT TO:<>\r\nRCPT TO:<no-at-sign>\r\nRCPT TO:bob\r\nRCPT TO:<a@@b>\r\nMAIL FROM:<a b>\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    // Every command has its reply: nobody hangs.
    assert_eq!(t.codes().len(), 1 + 2 + 5);
    assert!(
        t.codes()[3..].iter().all(|&c| c == 501 || c == 503),
        "{:?}",
        t.lines()
    );
}

#[test]
fn nul_bytes_and_non_utf8_in_commands() {
    let t = run_all(
        &mx(),
        Transport::Tls,
        b"NOOP\0x\r\nEHLO \xff\xfe\r\nMAIL FROM:<\xe9@b.org>\r\nNOOP\r\n",
    );
    assert_eq!(t.codes(), [220, 500, 500, 500, 250]);
    assert!(t.has_line("500 5.5.2 Error: NUL byte in command"));
    assert!(t.has_line("500 5.5.2 Error: command is not valid UTF-8"));
}

#[test]
fn non_utf8_in_data_is_carried_unchanged_and_nul_is_refused() {
    let from = "sender@other.net";
    let to = format!("cleartext2@{DOMAIN}");
    let mut message = fixture("plain.eml", from, &to);
    message.extend_from_slice(b"caf\xe9 \xff\xfe bytes\r\n");
    let t = run_all(&mx(), Transport::Tls, &data_script(from, &to, &message));
    t.assert_accepted();
    assert_eq!(t.deliveries[0].message, message);
    // A NUL is read differently by different readers (C strings end there): refused.
    message.extend_from_slice(b"\x00\r\n");
    let t = run_all(&mx(), Transport::Tls, &data_script(from, &to, &message));
    assert!(t.has_line("500 Failed to parse message: a NUL byte"));
    assert!(t.deliveries.is_empty());
}

#[test]
fn bare_lf_in_commands_is_refused_whole() {
    // A bare LF never splits a line in two: the smuggled RCPT is not executed.
    let script = format!("{EHLO}MAIL FROM:<a@b.org>\nRCPT TO:<x@{DOMAIN}>\r\nNOOP\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert!(t.has_line("500 5.5.2 Error: bare <LF> received"));
    assert!(t.events.is_empty());
    let t = run_all(&mx(), Transport::Tls, b"NOOP\rQUIT\r\n");
    assert!(t.has_line("500 5.5.2 Error: bare <CR> received"));
    assert!(!t.closed);
}

#[test]
fn smuggling_attempts_in_data_are_refused_not_split() {
    let from = "sender@other.net";
    let to = format!("cleartext3@{DOMAIN}");
    let message = fixture("plain.eml", from, &to);
    for terminator in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
    ] {
        let mut script =
            format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").into_bytes();
        script.extend_from_slice(&message);
        script.extend_from_slice(terminator);
        script.extend_from_slice(
            format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes(),
        );
        script.extend_from_slice(b"smuggled\r\n.\r\n");
        let t = run_all(&mx(), Transport::Tls, &script);
        assert!(t.deliveries.is_empty(), "{terminator:?}");
        // One message (everything up to the real CRLF.CRLF), refused.
        assert_eq!(t.codes(), [220, 250, 250, 250, 354, 550], "{terminator:?}");
        assert!(t.has_line("550 5.6.0 Message contains bare CR or LF"));
    }
}

#[test]
fn bdat_with_a_wrong_size() {
    let from = "sender@other.net";
    let to = format!("a@{DOMAIN}");
    // Announces more than it sends: the session waits for the octets, then times out.
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Tls);
    d.feed(
        format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nBDAT 100 LAST\r\nshort\r\nQUIT\r\n")
            .as_bytes(),
    );
    assert_eq!(d.transcript.codes(), [220, 250, 250, 250]);
    // The command timeout plus the 13 octets that came, at the minimum rate (500
    // bytes/s): 26 ms.
    d.advance(Duration::from_secs(5 * 60) + Duration::from_millis(25));
    assert!(!d.transcript.closed);
    d.advance(Duration::from_millis(1));
    assert!(d
        .transcript
        .has_line(&format!("421 4.4.2 {HOST} Error: timeout exceeded")));
    assert!(d.transcript.closed);

    // Announces fewer: the rest is read as commands and refused as such.
    let script =
        format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nBDAT 2\r\nabcdef\r\nNOOP\r\n");
    let t = run_all(&mx(), Transport::Tls, script.as_bytes());
    assert_eq!(t.codes(), [220, 250, 250, 250, 250, 500, 250]);

    // A size beyond any bound: consumed without buffering, then 552.
    let mut d = Driver::new(mx(), policy(10_000), Transport::Tls);
    d.feed(
        format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nBDAT 1000000 LAST\r\n").as_bytes(),
    );
    for _ in 0..100 {
        d.feed(&[b'x'; 10_000]);
        assert!(d.session.buffered_len() == 0);
    }
    assert!(d.transcript.has_line("552 Message exceeds maximum size"));
    d.feed(b"NOOP\r\n");
    assert_eq!(*d.transcript.codes().last().unwrap(), 250);
}

#[test]
fn data_without_mail_and_auth_hostilities() {
    let t = run_all(
        &submission(),
        Transport::Tls,
        format!("{EHLO}DATA\r\nhello\r\n.\r\n").as_bytes(),
    );
    assert!(t.has_line("503 5.5.1 Error: need MAIL command"));
    let t = run_all(
        &submission(),
        Transport::Cleartext,
        format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice()).as_bytes(),
    );
    assert!(t.has_line("530 5.7.0 Must issue a STARTTLS command first"));
    let t = run_all(
        &submission(),
        Transport::Tls,
        format!("{EHLO}AUTH PLAIN ====\r\nAUTH PLAIN a\r\n").as_bytes(),
    );
    assert_eq!(t.codes()[2..], [501, 501]);
}

#[test]
fn slow_sender_stopping_mid_line() {
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Tls);
    d.feed(b"EHLO cli");
    d.advance(Duration::from_secs(4 * 60));
    assert_eq!(d.transcript.codes(), [220]);
    d.feed(b"ent");
    // A byte buys no time: the line had to be complete 5 minutes after the greeting.
    d.advance(Duration::from_secs(59));
    assert!(!d.transcript.closed);
    d.advance(Duration::from_secs(1));
    assert!(d
        .transcript
        .has_line(&format!("421 4.4.2 {HOST} Error: timeout exceeded")));
    assert!(d.transcript.closed);
    assert_eq!(d.session.poll_timeout(), None);
    d.feed(b"\r\nNOOP\r\n");
    assert_eq!(d.transcript.codes(), [220, 421]);
}

#[test]
fn pending_input_is_bounded_while_waiting() {
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    d.session.feed(
        format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice()).as_bytes(),
        d.now,
    );
    // The embedder does not answer yet; the peer keeps sending.
    let mut request = None;
    while let Some(output) = d.session.poll() {
        if let Output::Request(Request::Authenticate { id, .. }) = output {
            request = Some(id);
        }
    }
    let id = request.expect("auth request");
    assert!(!d.session.wants_input());
    assert_eq!(
        d.session.poll_timeout(),
        None,
        "the embedder's time is not the peer's"
    );
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        d.session.feed(&chunk, d.now);
    }
    assert!(d.session.is_closed());
    assert!(d.session.buffered_len() == 0);
    // A late answer is a misuse, reported to the embedder, not a panic.
    assert_eq!(
        d.session.answer_auth(id, AuthAnswer::Invalid, d.now),
        Err(AnswerError::NotWaiting)
    );
}
