//! The conversation Delta Chat 2.65 holds with its server, and instant IDLE.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn delta_chat_conversation() {
    let mut c = Client::new();
    // LOGIN without a prior CAPABILITY; the capabilities come from the OK response code.
    let reply = c.send(&format!("1 LOGIN \"{USER}\" \"{PASSWORD}\"\r\n"));
    assert!(reply.starts_with("1 OK [CAPABILITY IMAP4rev1 "), "{reply}");
    for cap in [
        "IDLE",
        "CONDSTORE",
        "METADATA",
        "XDELTAPUSH",
        "XCHATMAIL",
        "MOVE",
        "UIDPLUS",
    ] {
        assert!(reply.contains(cap), "{cap} missing: {reply}");
    }
    assert!(!reply.contains("COMPRESS"));
    let reply = c.send("2 ID (\"name\" \"Delta Chat\" \"version\" \"2.65.0\")\r\n");
    assert!(reply.ends_with("2 OK ID completed.\r\n"));
    let reply = c.send("3 GETMETADATA \"\" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn)\r\n");
    assert!(reply.contains("\"/shared/comment\" NIL"), "{reply}");
    assert!(reply.ends_with("3 OK Getmetadata completed.\r\n"));
    let reply = c.send("4 SETMETADATA \"INBOX\" (/private/devicetoken \"fcm-token-1\")\r\n");
    assert_eq!(reply, "4 OK Setmetadata completed.\r\n");
    let reply = c.send("5 LIST \"\" \"*\"\r\n");
    assert!(reply.contains("* LIST (\\HasNoChildren) \".\" INBOX"));
    c.send("6 ENABLE CONDSTORE\r\n");

    // New mail arrives before SELECT.
    c.fake.deliver("INBOX", SIMPLE);
    c.fake.take_changes();
    let reply = c.send("7 SELECT \"INBOX\"\r\n");
    assert!(
        reply.contains("* 1 EXISTS") && reply.contains("[UIDVALIDITY 1000]"),
        "{reply}"
    );
    assert!(reply.contains("7 OK [READ-WRITE]"));
    // Prefetch of headers of new mail, then the full message.
    let reply = c.send("8 UID FETCH 1:* (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-MICROSOFT-ORIGINAL-MESSAGE-ID FROM IN-REPLY-TO REFERENCES CHAT-VERSION AUTO-SUBMITTED AUTOCRYPT-SETUP-MESSAGE)])\r\n");
    assert!(
        reply.contains("Message-ID: <m1@example.org>\r\nChat-Version: 1.0\r\n\r\n)"),
        "{reply}"
    );
    let reply = c.send("9 UID FETCH 1 (UID FLAGS BODY.PEEK[])\r\n");
    assert!(
        reply.contains(&format!("BODY[] {{{}}}\r\n", SIMPLE.len())),
        "{reply}"
    );
    assert!(reply.ends_with("9 OK Fetch completed.\r\n"));
    // Delete after download, then CLOSE expunges silently.
    let reply = c.send("10 UID STORE 1 +FLAGS (\\Deleted)\r\n");
    assert!(
        reply.contains("* 1 FETCH (UID 1 FLAGS (\\Deleted) MODSEQ ("),
        "{reply}"
    );
    assert_eq!(c.send("11 CLOSE\r\n"), "11 OK Close completed.\r\n");
    assert!(c.fake.mailboxes["INBOX"].messages.is_empty());
    c.fake.take_changes();

    // IDLE/DONE cycles.
    c.send("12 SELECT INBOX\r\n");
    for round in 0..3 {
        let reply = c.send(&format!("i{round} IDLE\r\n"));
        assert_eq!(reply, "+ idling\r\n");
        assert!(c.session.is_idle());
        c.fake.deliver("INBOX", SIMPLE);
        let pushed = c.publish_changes();
        assert_eq!(pushed, format!("* {} EXISTS\r\n", round + 1));
        let reply = c.send("DONE\r\n");
        assert_eq!(reply, format!("i{round} OK Idle completed.\r\n"));
    }
    let reply = c.send("13 GETMETADATA INBOX (/private/devicetoken)\r\n");
    assert!(reply.contains("{11}\r\nfcm-token-1)"), "{reply}");
    assert_valid_responses(&c.received);
}

#[test]
fn idle_sees_delivery_in_the_same_poll_round() {
    // Two sessions of one account over one store: session B delivers via APPEND,
    // session A idles and gets the change as soon as the feed hands it over.
    let mut a = Client::new();
    a.login();
    a.send("s SELECT INBOX\r\n");
    assert_eq!(a.send("i IDLE\r\n"), "+ idling\r\n");

    let mut b = Client::new();
    b.login();
    b.fake = a.fake.clone();
    b.send("x APPEND INBOX {10}\r\nHi there\r\n\r\n");
    let changes = b.fake.take_changes();
    assert_eq!(changes.len(), 1);

    let start = Instant::now();
    let before = a.received.len();
    a.session.handle_change(Ok(changes[0].clone()), a.now);
    // The very next poll carries the EXISTS: no timer, no second round.
    let out = a.session.poll();
    let elapsed = start.elapsed();
    match out {
        Some(chatmail_imap::Output::Send(bytes)) => assert_eq!(&bytes[..], b"* 1 EXISTS\r\n"),
        other => panic!("expected EXISTS, got {other:?}"),
    }
    assert_eq!(a.received.len(), before);
    assert!(elapsed < Duration::from_millis(50), "{elapsed:?}");

    // Flag changes and expunges from elsewhere arrive the same way.
    a.fake = b.fake.clone();
    a.send("DONE\r\n");
    a.send("j IDLE\r\n");
    let flags = chatmail_core::Change::FlagsChanged {
        mailbox: "INBOX".into(),
        uid: chatmail_core::Uid(1),
        flags: [chatmail_core::Flag::Seen].into(),
        modseq: chatmail_core::ModSeq(50),
    };
    a.session.handle_change(Ok(flags.clone()), a.now);
    a.pump();
    let expunge = chatmail_core::Change::Expunged {
        mailbox: "INBOX".into(),
        uid: chatmail_core::Uid(1),
        modseq: chatmail_core::ModSeq(51),
    };
    a.session.handle_change(Ok(expunge.clone()), a.now);
    a.pump();
    let text = String::from_utf8_lossy(&a.received).into_owned();
    assert!(
        text.ends_with("+ idling\r\n* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 1 EXPUNGE\r\n"),
        "{text}"
    );
    // Changes to other mailboxes are not announced.
    let other = chatmail_core::Change::Expunged {
        mailbox: "Trash".into(),
        uid: chatmail_core::Uid(9),
        modseq: chatmail_core::ModSeq(52),
    };
    a.session.handle_change(Ok(other.clone()), a.now);
    assert!(a.session.poll().is_none());
}

#[test]
fn changes_wait_for_the_end_of_a_command_outside_idle() {
    let mut c = Client::new();
    c.login();
    c.fake.deliver("INBOX", SIMPLE);
    c.fake.deliver("INBOX", SIMPLE);
    c.fake.take_changes();
    c.send("s SELECT INBOX\r\n");
    c.fake.deliver("INBOX", SIMPLE);
    let exp = chatmail_core::Change::Expunged {
        mailbox: "INBOX".into(),
        uid: chatmail_core::Uid(1),
        modseq: chatmail_core::ModSeq(99),
    };
    assert_eq!(c.publish_changes(), "");
    c.session.handle_change(Ok(exp.clone()), c.now);
    assert!(c.session.poll().is_none());
    // FETCH announces EXISTS but keeps the EXPUNGE back (RFC 3501 7.4.1).
    let reply = c.send("f FETCH 1 (UID)\r\n");
    assert_eq!(
        reply,
        "* 1 FETCH (UID 1)\r\n* 3 EXISTS\r\nf OK Fetch completed.\r\n"
    );
    let reply = c.send("n NOOP\r\n");
    assert_eq!(reply, "* 1 EXPUNGE\r\nn OK NOOP completed.\r\n");
}
