//! Hostile inputs: each gets the right reply, and the session's memory stays bounded.

mod common;

use chatmail_smtp::server::Engine as _;
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
    assert!(t.has_line(&format!("521 5.5.2 {HOST} Error: bare <LF> received")));
    assert_eq!(t.events, ["close"], "nothing after a bare LF runs");
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
        if let Output::Request(id, Request::Authenticate { .. }) = output {
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
        d.session.answer(
            id,
            chatmail_smtp::server::Answer::Auth(AuthAnswer::Invalid),
            d.now
        ),
        Err(AnswerError::NotWaiting(id))
    );
}

/// Where a hostile input of the table is sent: the listener, and the commands that
/// bring the session into the state under attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum At {
    /// Port 25 over TLS, nothing said yet.
    MxFresh,
    /// Port 25 before STARTTLS, after EHLO.
    MxCleartext,
    /// Port 25 over TLS after EHLO.
    MxEhlo,
    /// Port 25 over TLS in a transaction: MAIL and one accepted RCPT.
    MxTxn,
    /// Submission over TLS after EHLO, not authenticated.
    SubEhlo,
    /// Submission over TLS, authenticated as alice.
    SubAuth,
    /// LMTP, nothing said yet.
    LmtpFresh,
    /// LMTP after LHLO and MAIL.
    LmtpMail,
}

impl At {
    fn listener(self) -> (chatmail_smtp::server::ServerConfig, Transport) {
        match self {
            At::MxFresh | At::MxEhlo | At::MxTxn => (mx(), Transport::Tls),
            At::MxCleartext => (mx(), Transport::Cleartext),
            At::SubEhlo | At::SubAuth => (submission(), Transport::Tls),
            At::LmtpFresh | At::LmtpMail => (lmtp(), Transport::Cleartext),
        }
    }

    fn prefix(self) -> String {
        match self {
            At::MxFresh | At::LmtpFresh => String::new(),
            At::MxCleartext | At::MxEhlo | At::SubEhlo => EHLO.to_string(),
            At::MxTxn => {
                format!("{EHLO}MAIL FROM:<sender@other.net>\r\nRCPT TO:<bob@{DOMAIN}>\r\n")
            }
            At::SubAuth => format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice()),
            At::LmtpMail => "LHLO client\r\nMAIL FROM:<sender@other.net>\r\n".to_string(),
        }
    }
}

/// One hostile input and the answer it must get: the last reply line it causes starts
/// with `expect`, and the session is closed afterwards or not.
struct Case {
    name: &'static str,
    at: At,
    input: Vec<u8>,
    expect: String,
    closed: bool,
    /// Fed in one piece only: what arrives after a STARTTLS in the same packet is
    /// injected cleartext, but in a later packet it is legitimate TLS data.
    one_packet: bool,
}

fn case(name: &'static str, at: At, input: impl Into<Vec<u8>>, expect: &str) -> Case {
    Case {
        name,
        at,
        input: input.into(),
        expect: expect.to_string(),
        closed: false,
        one_packet: false,
    }
}

fn closing(name: &'static str, at: At, input: impl Into<Vec<u8>>, expect: &str) -> Case {
    Case {
        closed: true,
        ..case(name, at, input, expect)
    }
}

/// `DATA` and `message`, dot-stuffed and terminated.
fn data(message: &[u8]) -> Vec<u8> {
    [b"DATA\r\n".as_slice(), &stuffed(message)].concat()
}

fn rcpts(n: usize) -> String {
    (0..n)
        .map(|i| format!("RCPT TO:<user{i}@{DOMAIN}>\r\n"))
        .collect()
}

/// The hostile SMTP inputs (see [`Case`]); their count is the table's length.
fn smtp_cases() -> Vec<Case> {
    use At::*;
    let to = format!("bob@{DOMAIN}");
    let from = "sender@other.net";
    let encrypted = encrypted_message(from, &to);
    let plain = fixture("plain.eml", from, &to);
    let with_bare_lf = [&plain[..40], b"\nbare LF line\r\n", &plain[40..]].concat();
    let with_nul = [&encrypted[..], b"\0\r\n"].concat();
    let not_a_header = [b"this is no header field\r\n".as_slice(), &encrypted].concat();
    let encrypted_text = String::from_utf8_lossy(&encrypted).into_owned();
    let two_boundaries = encrypted_text
        .replacen("boundary=", "boundary=\"other\"; boundary=", 1)
        .into_bytes();
    let eight_bit_header = encrypted_text
        .replacen("Subject: ...", "Subject: caf\u{e9} \u{2603}", 1)
        .into_bytes();
    let too_big = [&encrypted[..], &vec![b'x'; 1 << 20], b"\r\n"].concat();
    let mut smuggled = b"DATA\r\n".to_vec();
    smuggled.extend_from_slice(&encrypted);
    smuggled.extend_from_slice(b"\n.\nMAIL FROM:<evil@other.net>\r\n.\r\n");
    let login = |user: &str, password: &str| b64(&format!("\0{user}\0{password}"));
    let alice = format!("alice@{DOMAIN}");
    vec![
        // Sequence and state.
        case(
            "MAIL before EHLO",
            MxFresh,
            "MAIL FROM:<a@other.net>\r\n",
            "503 5.5.1 Error: send HELO/EHLO first",
        ),
        case(
            "RCPT before EHLO",
            MxFresh,
            format!("RCPT TO:<{to}>\r\n"),
            "503 5.5.1 Error: need MAIL command",
        ),
        case(
            "DATA before EHLO",
            MxFresh,
            "DATA\r\n",
            "503 5.5.1 Error: send HELO/EHLO first",
        ),
        case(
            "BDAT before EHLO, octets consumed",
            MxFresh,
            "BDAT 10 LAST\r\nQUIT\r\nQUIT",
            "503 5.5.1 Error: send HELO/EHLO first",
        ),
        case(
            "EHLO without a domain",
            MxFresh,
            "EHLO\r\n",
            "501 5.5.4 Syntax: EHLO",
        ),
        case(
            "HELO without a domain",
            MxFresh,
            "HELO\r\n",
            "501 5.5.4 Syntax: HELO",
        ),
        case(
            "RCPT without MAIL",
            MxEhlo,
            format!("RCPT TO:<{to}>\r\n"),
            "503 5.5.1 Error: need MAIL command",
        ),
        case(
            "DATA without MAIL",
            MxEhlo,
            "DATA\r\n",
            "503 5.5.1 Error: need MAIL command",
        ),
        case(
            "BDAT without MAIL, octets consumed",
            MxEhlo,
            "BDAT 6\r\nQUIT\r\n",
            "503 5.5.1 Error: need MAIL command",
        ),
        case(
            "nested MAIL",
            MxTxn,
            "MAIL FROM:<b@other.net>\r\n",
            "503 5.5.1 Error: nested MAIL command",
        ),
        case(
            "DATA without a valid recipient",
            MxEhlo,
            "MAIL FROM:<a@other.net>\r\nRCPT TO:<unknown@example.org>\r\nDATA\r\n",
            "554 5.5.1 Error: no valid recipients",
        ),
        case(
            "STARTTLS inside TLS",
            MxEhlo,
            "STARTTLS\r\n",
            "554 5.5.1 Error: TLS already active",
        ),
        // Lines: length, line ends, bytes.
        case(
            "overlong EHLO",
            MxFresh,
            format!("EHLO {}\r\n", "a".repeat(5000)),
            "500 5.5.6 Error: line too long",
        ),
        case(
            "overlong line without end",
            MxEhlo,
            "X".repeat(100_000),
            "500 5.5.6 Error: line too long",
        ),
        case(
            "empty line",
            MxEhlo,
            "\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        case(
            "blank line",
            MxEhlo,
            "   \r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        closing(
            "bare LF ends the session",
            MxEhlo,
            "NOOP\nQUIT\r\n",
            "521 5.5.2 mail.example.org Error: bare <LF> received",
        ),
        case(
            "bare CR does not split a line",
            MxEhlo,
            "NOOP\rQUIT\r\n",
            "500 5.5.2 Error: bare <CR> received",
        ),
        closing(
            "bare LF smuggling a RCPT",
            MxTxn,
            format!("RSET\nRCPT TO:<x@{DOMAIN}>\r\n"),
            "521 5.5.2 mail.example.org Error: bare <LF> received",
        ),
        case(
            "NUL in a command",
            MxEhlo,
            "NOOP\0\r\n",
            "500 5.5.2 Error: NUL byte in command",
        ),
        case(
            "NUL in an address",
            MxEhlo,
            "MAIL FROM:<a\0@other.net>\r\n",
            "500 5.5.2 Error: NUL byte in command",
        ),
        case(
            "Latin-1 in EHLO",
            MxFresh,
            b"EHLO h\xe9llo\r\n".to_vec(),
            "500 5.5.2 Error: command is not valid UTF-8",
        ),
        case(
            "invalid UTF-8 in MAIL",
            MxEhlo,
            b"MAIL FROM:<\xff\xfe@other.net>\r\n".to_vec(),
            "500 5.5.2 Error: command is not valid UTF-8",
        ),
        case(
            "UTF-8 local part in RCPT",
            MxTxn,
            format!("RCPT TO:<j\u{f6}rg@{DOMAIN}>\r\n"),
            "250 2.1.5 Ok",
        ),
        case(
            "TLS ClientHello on a plaintext port",
            MxCleartext,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n".to_vec(),
            "500 5.5.2 Error: NUL byte in command",
        ),
        case(
            "HTTP request on SMTP",
            MxFresh,
            "GET / HTTP/1.1\r\nHost: relay\r\n\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        // Unknown, unsupported and dangerous commands.
        case(
            "unknown command",
            MxEhlo,
            "XYZZY\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        case(
            "sendmail DEBUG",
            MxEhlo,
            "DEBUG\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        case(
            "sendmail WIZ",
            MxEhlo,
            "WIZ\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        case(
            "TURN",
            MxEhlo,
            "TURN\r\n",
            "500 5.5.2 Error: command not recognized",
        ),
        case(
            "ETRN",
            MxEhlo,
            "ETRN example.org\r\n",
            "502 5.5.1 Error: command not implemented",
        ),
        case(
            "ATRN",
            MxEhlo,
            "ATRN example.org\r\n",
            "502 5.5.1 Error: command not implemented",
        ),
        case(
            "EXPN",
            MxEhlo,
            "EXPN staff\r\n",
            "502 5.5.1 Error: EXPN is not supported",
        ),
        case(
            "VRFY does not reveal users",
            MxEhlo,
            format!("VRFY {to}\r\n"),
            "252 2.0.0",
        ),
        case(
            "VRFY before STARTTLS",
            MxCleartext,
            format!("VRFY {to}\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first",
        ),
        case(
            "AUTH on port 25",
            MxEhlo,
            format!("AUTH PLAIN {}\r\n", plain_alice()),
            "503 5.5.1 Error: authentication not enabled",
        ),
        closing(
            "garbage until the error budget ends it",
            MxEhlo,
            "BOGUS\r\n".repeat(25),
            "421 4.7.0",
        ),
        // STARTTLS.
        case(
            "MAIL before STARTTLS",
            MxCleartext,
            "MAIL FROM:<a@other.net>\r\n",
            "530 5.7.0 Must issue a STARTTLS command first",
        ),
        Case {
            one_packet: true,
            ..case(
                "cleartext injected after STARTTLS",
                MxCleartext,
                "STARTTLS\r\nMAIL FROM:<evil@other.net>\r\n",
                "220 2.0.0 Ready to start TLS",
            )
        },
        case(
            "STARTTLS with an argument (ignored)",
            MxCleartext,
            "STARTTLS now\r\n",
            "220 2.0.0 Ready to start TLS",
        ),
        // MAIL parameters and addresses.
        case(
            "MAIL SIZE over the limit",
            MxEhlo,
            "MAIL FROM:<a@other.net> SIZE=99999999999\r\n",
            "552 5.3.4 Message size exceeds fixed maximum message size",
        ),
        case(
            "MAIL SIZE not a number",
            MxEhlo,
            "MAIL FROM:<a@other.net> SIZE=abc\r\n",
            "501 5.5.4 Invalid parameter",
        ),
        case(
            "MAIL unknown parameter",
            MxEhlo,
            "MAIL FROM:<a@other.net> FOO=BAR\r\n",
            "555 5.5.4 Unsupported parameter",
        ),
        case(
            "MAIL BODY=BINARYMIME",
            MxEhlo,
            "MAIL FROM:<a@other.net> BODY=BINARYMIME\r\n",
            "555 5.5.4 Error: BODY=BINARYMIME is not supported",
        ),
        case(
            "MAIL space in address",
            MxEhlo,
            "MAIL FROM:<a b@other.net>\r\n",
            "501 5.1.7 Bad sender address syntax",
        ),
        case(
            "MAIL without brackets",
            MxEhlo,
            "MAIL FROM:a@other.net\r\n",
            "501 5.5.4 Syntax: MAIL FROM:<reverse-path>",
        ),
        case(
            "MAIL 300-byte address",
            MxEhlo,
            format!("MAIL FROM:<{}@other.net>\r\n", "a".repeat(300)),
            "501 5.1.7 Bad sender address syntax",
        ),
        // RCPT.
        case(
            "RCPT to another server on port 25",
            MxTxn,
            "RCPT TO:<x@other.net>\r\n",
            "554 5.7.1 <x@other.net>: Relay access denied",
        ),
        case(
            "RCPT with a path separator",
            MxTxn,
            format!("RCPT TO:<../x@{DOMAIN}>\r\n"),
            "501 5.1.3 Bad recipient address syntax",
        ),
        case(
            "RCPT with a slash in the local part",
            MxTxn,
            format!("RCPT TO:<a/b@{DOMAIN}>\r\n"),
            "550 5.1.3 Bad recipient address syntax",
        ),
        case(
            "RCPT with a backslash",
            MxTxn,
            format!("RCPT TO:<\"a\\\\b\"@{DOMAIN}>\r\n"),
            "550 5.1.3 Bad recipient address syntax",
        ),
        case(
            "RCPT empty",
            MxTxn,
            "RCPT TO:<>\r\n",
            "501 5.1.3 Bad recipient address syntax",
        ),
        case(
            "RCPT no at sign",
            MxTxn,
            "RCPT TO:<postmasterx>\r\n",
            "501 5.1.3 Bad recipient address syntax",
        ),
        case(
            "RCPT unknown local user",
            MxTxn,
            format!("RCPT TO:<unknown@{DOMAIN}>\r\n"),
            "550 5.1.1",
        ),
        case(
            "RCPT repeated",
            MxTxn,
            format!("RCPT TO:<{to}>\r\nRCPT TO:<BOB@{DOMAIN}>\r\n"),
            "250 2.1.5 Ok",
        ),
        case(
            "1001 recipients",
            MxTxn,
            rcpts(1000),
            "452 4.5.3 Error: too many recipients",
        ),
        // Message contents.
        case(
            "cleartext to a recipient that refuses it",
            MxTxn,
            data(&plain),
            "523 Encryption Needed",
        ),
        case("bare LF in DATA", MxTxn, data(&with_bare_lf), "550 5.6.0"),
        case("end-of-data smuggling", MxTxn, smuggled, "550 5.6.0"),
        case(
            "NUL in DATA",
            MxTxn,
            data(&with_nul),
            "500 Failed to parse message: a NUL byte",
        ),
        case(
            "first line not a header field",
            MxTxn,
            data(&not_a_header),
            "500 Failed to parse message",
        ),
        case(
            "boundary given twice",
            MxTxn,
            data(&two_boundaries),
            "500 Failed to parse message",
        ),
        case(
            "8-bit header",
            MxTxn,
            data(&eight_bit_header),
            "250 2.0.0 Ok: message accepted for delivery",
        ),
        case(
            "message over the size limit",
            MxTxn,
            data(&too_big),
            "552 Message exceeds maximum size",
        ),
        case(
            "empty DATA",
            MxTxn,
            "DATA\r\n.\r\n",
            "500 Failed to parse message",
        ),
        // BDAT.
        case(
            "BDAT 0 LAST, empty message",
            MxTxn,
            "BDAT 0 LAST\r\n",
            "500 Failed to parse message",
        ),
        case(
            "BDAT not a number",
            MxTxn,
            "BDAT abc\r\n",
            "501 5.5.4 Syntax: BDAT",
        ),
        case(
            "BDAT negative",
            MxTxn,
            "BDAT -1 LAST\r\n",
            "501 5.5.4 Syntax: BDAT",
        ),
        case(
            "BDAT size beyond u64",
            MxTxn,
            "BDAT 99999999999999999999999 LAST\r\n",
            "501 5.5.4 Syntax: BDAT",
        ),
        case(
            "BDAT extra argument",
            MxTxn,
            "BDAT 5 LAST EXTRA\r\n",
            "501 5.5.4 Syntax: BDAT",
        ),
        case(
            "DATA after BDAT",
            MxTxn,
            "BDAT 5\r\nabcdeDATA\r\n",
            "503 5.5.1 Error: BDAT transaction in progress",
        ),
        case(
            "bare LF inside a chunk",
            MxTxn,
            "BDAT 3 LAST\r\na\nb",
            "550 5.6.0",
        ),
        case(
            "CR ending one chunk, LF-less start of the next",
            MxTxn,
            "BDAT 2\r\nx\rBDAT 2 LAST\r\nyz",
            "550 5.6.0",
        ),
        case(
            "BDAT after the last chunk",
            MxTxn,
            [b"BDAT 0 LAST\r\n".as_slice(), b"BDAT 5 LAST\r\nabcde"].concat(),
            "503 5.5.1 Error: need MAIL command",
        ),
        case(
            "BDAT huge, consumed without buffering",
            MxTxn,
            [b"BDAT 1100000 LAST\r\n".as_slice(), &vec![b'x'; 1_100_000]].concat(),
            "552 Message exceeds maximum size",
        ),
        // Submission and AUTH.
        case(
            "MAIL without AUTH",
            SubEhlo,
            format!("MAIL FROM:<{alice}>\r\n"),
            "530 5.7.0 Authentication required",
        ),
        case(
            "AUTH broken base64",
            SubEhlo,
            "AUTH PLAIN ====\r\n",
            "501 5.5.2 Error: invalid base64 data in response",
        ),
        case(
            "AUTH wrong password",
            SubEhlo,
            format!("AUTH PLAIN {}\r\n", login(&alice, "wrong")),
            "535 5.7.8 Error: authentication failed",
        ),
        case(
            "AUTH acting for another user",
            SubEhlo,
            format!(
                "AUTH PLAIN {}\r\n",
                b64(&format!("bob@{DOMAIN}\0{alice}\0{PASSWORD}"))
            ),
            "501 5.5.2 Error: malformed PLAIN response",
        ),
        case(
            "AUTH PLAIN without NULs",
            SubEhlo,
            format!("AUTH PLAIN {}\r\n", b64("alice")),
            "501 5.5.2 Error: malformed PLAIN response",
        ),
        case(
            "AUTH unknown mechanism",
            SubEhlo,
            "AUTH CRAM-MD5\r\n",
            "504 5.5.4 Unrecognized authentication type",
        ),
        case(
            "AUTH XOAUTH2",
            SubEhlo,
            "AUTH XOAUTH2 dG9rZW4=\r\n",
            "504 5.5.4 Unrecognized authentication type",
        ),
        case(
            "AUTH cancelled",
            SubEhlo,
            "AUTH PLAIN\r\n*\r\n",
            "501 5.7.0 Authentication aborted",
        ),
        case(
            "AUTH continuation too long",
            SubEhlo,
            format!("AUTH LOGIN\r\n{}\r\n", b64(&"a".repeat(3000))),
            "500 5.5.6 Error: line too long",
        ),
        case(
            "AUTH continuation not base64",
            SubEhlo,
            b"AUTH LOGIN\r\n\xff\xfe\r\n".to_vec(),
            "501 5.5.2 Error: invalid base64 data in response",
        ),
        case(
            "AUTH before EHLO",
            At::LmtpFresh,
            "LHLO x\r\nAUTH PLAIN\r\n",
            "503 5.5.1 Error: authentication not enabled",
        ),
        case(
            "AUTH store unavailable",
            SubEhlo,
            format!(
                "AUTH PLAIN {}\r\n",
                login(&format!("tempfail@{DOMAIN}"), "x")
            ),
            "454 4.7.0 Temporary authentication failure",
        ),
        closing(
            "AUTH guessing",
            SubEhlo,
            format!("AUTH PLAIN {}\r\n", login(&alice, "wrong")).repeat(3),
            "421 4.7.0",
        ),
        case(
            "AUTH twice",
            SubAuth,
            format!("AUTH PLAIN {}\r\n", plain_alice()),
            "503 5.5.1 Error: already authenticated",
        ),
        case(
            "sending as someone else",
            SubAuth,
            format!("MAIL FROM:<mallory@{DOMAIN}>\r\nRCPT TO:<bob@x.org>\r\n"),
            "553 5.7.1",
        ),
        case(
            "cleartext submission",
            SubAuth,
            [
                format!("MAIL FROM:<{alice}>\r\nRCPT TO:<bob@x.org>\r\n").into_bytes(),
                data(&fixture("plain.eml", &alice, "bob@x.org")),
            ]
            .concat(),
            "523 Encryption Needed",
        ),
        case(
            "1001 submission recipients",
            SubAuth,
            format!("MAIL FROM:<{alice}>\r\n{}", rcpts(1001)),
            "452 4.5.3 Error: too many recipients",
        ),
        // LMTP.
        case(
            "EHLO on LMTP",
            LmtpFresh,
            "EHLO x\r\n",
            "500 5.5.1 Error: this is LMTP, use LHLO",
        ),
        case(
            "HELO on LMTP",
            LmtpFresh,
            "HELO x\r\n",
            "500 5.5.1 Error: this is LMTP, use LHLO",
        ),
        case(
            "LMTP RCPT to another server",
            LmtpMail,
            "RCPT TO:<x@other.net>\r\n",
            "554 5.7.1 <x@other.net>: Relay access denied",
        ),
        // Pipelining.
        case(
            "a whole transaction in one packet before the greeting is read",
            MxFresh,
            [
                format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\n").into_bytes(),
                data(&encrypted),
            ]
            .concat(),
            "250 2.0.0 Ok: message accepted for delivery",
        ),
        closing(
            "commands after QUIT are not read",
            MxEhlo,
            "QUIT\r\nMAIL FROM:<a@other.net>\r\n",
            "221 2.0.0 Bye",
        ),
    ]
}

#[test]
fn table_of_hostile_inputs() {
    let cases = smtp_cases();
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in &cases {
        assert!(
            seen.insert((c.at, c.input.clone())),
            "duplicate input: {}",
            c.name
        );
        let (config, transport) = c.at.listener();
        let prefix = c.at.prefix();
        let before = run_all(&config, transport, prefix.as_bytes()).lines().len();
        let script = [prefix.as_bytes(), &c.input].concat();
        // Whole, byte by byte and in random chunks, with identical answers.
        let t = if c.one_packet {
            let (policy, embedder) = (policy(1 << 20), Embedder::default());
            run_chunked(
                &config,
                transport,
                &policy,
                &embedder,
                &script,
                Chunking::Whole,
            )
        } else {
            run_all(&config, transport, &script)
        };
        let lines = t.lines();
        let last = lines[before.min(lines.len())..].last().cloned();
        let answered = last.as_deref().is_some_and(|l| l.starts_with(&c.expect));
        if !answered || t.closed != c.closed {
            failures.push(format!(
                "{} ({:?}): expected {:?} (closed: {}), got {last:?} (closed: {})",
                c.name, c.at, c.expect, c.closed, t.closed
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 90, "{}", cases.len());
}
