//! Byte scripts per command group, each fed whole and in random chunks: the replies
//! must be identical for every chunking, contain what the protocol requires, and parse
//! with imap-codec's response decoder.

mod common;

use common::*;

/// Runs `script` after `setup` whole and in several random chunkings; returns the reply.
fn run(setup: impl Fn(&mut Client), script: &str) -> String {
    let mut whole = Client::new();
    setup(&mut whole);
    let reply = whole.send_chunked(script.as_bytes(), Chunks::Whole);
    assert_valid_responses(&whole.received);
    for seed in [3, 17, 99, 12345] {
        let mut chunked = Client::new();
        setup(&mut chunked);
        let again = chunked.send_chunked(script.as_bytes(), Chunks::Random(seed));
        assert_eq!(reply, again, "chunking {seed} changed the reply");
    }
    reply
}

fn logged_in(c: &mut Client) {
    assert!(c.login().contains("L1 OK"));
}

fn with_mail(c: &mut Client) {
    logged_in(c);
    c.fake.deliver("INBOX", SIMPLE);
    c.fake.deliver("INBOX", &fixture("encrypted.eml"));
    c.fake.deliver("INBOX", &fixture("mdn.eml"));
    c.fake.take_changes();
}

fn selected(c: &mut Client) {
    with_mail(c);
    assert!(c.send("S1 SELECT INBOX\r\n").contains("S1 OK [READ-WRITE]"));
}

#[test]
fn greeting_and_capability_before_login() {
    let reply = run(|_| {}, "c1 CAPABILITY\r\nc2 NOOP\r\nc3 LOGOUT\r\n");
    assert!(reply.contains("* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN XCHATMAIL XDELTAPUSH\r\n"), "{reply}");
    assert!(reply.contains("c2 OK"));
    assert!(reply.contains("* BYE Logging out\r\nc3 OK Logout completed.\r\n"));
    let c = Client::new();
    let greeting = String::from_utf8_lossy(&c.received).into_owned();
    assert!(greeting.starts_with("* OK [CAPABILITY IMAP4rev1"));
    assert!(greeting.contains("XCHATMAIL XDELTAPUSH]"));
    assert!(!greeting.contains("COMPRESS"));
}

#[test]
fn port_143_requires_starttls() {
    let mut cfg = config();
    cfg.tls_active = false;
    cfg.starttls = true;
    let mut c = Client::with_config(cfg);
    let greeting = String::from_utf8_lossy(&c.received).into_owned();
    assert!(
        greeting.contains("STARTTLS LOGINDISABLED XCHATMAIL XDELTAPUSH"),
        "{greeting}"
    );
    let reply = c.login();
    assert!(reply.contains("L1 NO [PRIVACYREQUIRED]"), "{reply}");
    let reply = c.send("a AUTHENTICATE PLAIN AGFiY2RlZmdoaUBleGFtcGxlLm9yZwBjb3JyZWN0LWhvcnNl\r\n");
    assert!(reply.contains("a NO [PRIVACYREQUIRED]"), "{reply}");
    // Pipelined plaintext after STARTTLS must be dropped, not executed after the upgrade.
    let reply = c.send("t STARTTLS\r\nx LOGIN a b\r\n");
    assert_eq!(reply, "t OK Begin TLS negotiation now.\r\n");
    assert!(c.starttls);
    c.session.tls_started(c.now);
    let reply = c.send("c CAPABILITY\r\n");
    assert!(
        reply.contains("AUTH=PLAIN") && !reply.contains("STARTTLS"),
        "{reply}"
    );
    assert!(c.login().contains("L1 OK [CAPABILITY"));
}

#[test]
fn login_forms() {
    // Quoted with escapes, literal, and the lower-cased login.
    let reply = run(
        |_| {},
        "a LOGIN \"ABCDEFGHI@example.org\" {13}\r\ncorrect-horse\r\n",
    );
    assert!(
        reply.contains("+ Ready for literal data\r\na OK [CAPABILITY IMAP4rev1"),
        "{reply}"
    );
    assert!(reply.contains("QUOTA") && reply.contains("METADATA") && reply.contains("XDELTAPUSH"));
    let reply = run(
        |_| {},
        "a LOGIN \"abcdefghi@example.org\" \"wrong\\\"pw\"\r\n",
    );
    assert!(reply.contains("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    let reply = run(
        |_| {},
        "a LOGIN abcdefghi@example.org {13+}\ncorrect-horse\n",
    );
    assert!(reply.starts_with("a OK"), "{reply}");
}

#[test]
fn authenticate_plain() {
    // base64("\0abcdefghi@example.org\0correct-horse")
    let ir = "AGFiY2RlZmdoaUBleGFtcGxlLm9yZwBjb3JyZWN0LWhvcnNl";
    let reply = run(|_| {}, &format!("a AUTHENTICATE PLAIN {ir}\r\n"));
    assert!(reply.starts_with("a OK [CAPABILITY"), "{reply}");
    let reply = run(|_| {}, &format!("a AUTHENTICATE PLAIN\r\n{ir}\r\n"));
    assert!(reply.starts_with("+ \r\na OK [CAPABILITY"), "{reply}");
    let reply = run(|_| {}, "a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n");
    assert!(reply.contains("a BAD") && reply.contains("b OK"), "{reply}");
    let reply = run(|_| {}, "a AUTHENTICATE CRAM-MD5\r\n");
    assert!(reply.contains("a NO"), "{reply}");
}

#[test]
fn mailbox_management() {
    let reply = run(
        logged_in,
        "a CREATE DeltaChat\r\nb CREATE Sent\r\nc LIST \"\" \"*\"\r\nd CREATE DeltaChat\r\n\
         e RENAME DeltaChat Chats\r\nf STATUS Chats (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)\r\n\
         g DELETE Chats\r\nh STATUS Chats (MESSAGES)\r\ni LIST \"\" \"\"\r\nj UNSUBSCRIBE Sent\r\n\
         k LSUB \"\" \"*\"\r\nl DELETE INBOX\r\nm LIST \"\" %\r\n",
    );
    assert!(reply.contains("a OK Create completed."));
    assert!(
        reply.contains("* LIST (\\HasNoChildren) \".\" DeltaChat\r\n"),
        "{reply}"
    );
    assert!(reply.contains("* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n"));
    assert!(reply.contains("* LIST (\\HasNoChildren) \".\" INBOX\r\n"));
    assert!(reply.contains("d NO [ALREADYEXISTS]"));
    assert!(
        reply.contains("* STATUS Chats (MESSAGES 0 UIDNEXT 1 UIDVALIDITY "),
        "{reply}"
    );
    assert!(reply.contains("UNSEEN 0 HIGHESTMODSEQ"));
    assert!(reply.contains("h NO [NONEXISTENT]"));
    assert!(reply.contains("* LIST (\\Noselect) \".\" \"\"\r\n"));
    let lsub: Vec<&str> = reply.lines().filter(|l| l.starts_with("* LSUB")).collect();
    assert_eq!(lsub, ["* LSUB (\\HasNoChildren) \".\" INBOX"]);
    assert!(reply.contains("l NO [CANNOT]"));
}

#[test]
fn select_and_fetch() {
    let reply = run(
        with_mail,
        "s SELECT INBOX\r\nf1 FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n\
         f2 UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] ENVELOPE)\r\n\
         f3 FETCH 1 BODYSTRUCTURE\r\nf4 UID FETCH 1 (BODY.PEEK[]<0.4> BODY.PEEK[TEXT])\r\n\
         f5 FETCH 1 (FLAGS)\r\nf6 UID FETCH 1 BODY[]\r\nf7 FETCH 1 FLAGS\r\n",
    );
    assert!(
        reply.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"),
        "{reply}"
    );
    assert!(reply.contains("* 3 EXISTS\r\n"));
    assert!(reply.contains("* OK [UIDVALIDITY 1000]"));
    assert!(reply.contains("* OK [UIDNEXT 4]"));
    assert!(reply.contains("* OK [HIGHESTMODSEQ"));
    assert!(reply.contains("* OK [UNSEEN 1]"));
    assert!(reply.contains("s OK [READ-WRITE] Select completed"));
    assert!(
        reply.contains(&format!(
            "* 1 FETCH (UID 1 FLAGS () INTERNALDATE \"14-Nov-2023 22:13:21 +0000\" RFC822.SIZE {})",
            SIMPLE.len()
        )),
        "{reply}"
    );
    assert!(reply.contains("BODY[HEADER.FIELDS (FROM SUBJECT)] {51}\r\nFrom: Alice <alice@example.org>\r\nSubject: hello\r\n\r\n"), "{reply}");
    assert!(reply.contains("ENVELOPE (\"Tue, 14 Nov 2023 22:13:20 +0000\" \"hello\" ((\"Alice\" NIL \"alice\" \"example.org\"))"));
    assert!(reply.contains("BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL))"), "{reply}");
    assert!(
        reply.contains("BODY[]<0> {4}\r\nFrom BODY[TEXT] {10}\r\nHi there\r\n)"),
        "{reply}"
    );
    assert!(reply.contains("* 1 FETCH (FLAGS ())\r\nf5 OK"));
    // A non-PEEK body fetch sets \Seen and reports it.
    assert!(
        reply.contains("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {"),
        "{reply}"
    );
    assert!(reply.contains("* 1 FETCH (FLAGS (\\Seen))\r\nf7 OK"));
}

#[test]
fn fetch_multipart_sections() {
    let reply = run(
        selected,
        "a FETCH 2 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2.MIME])\r\nb FETCH 3 (BODY)\r\n",
    );
    assert!(
        reply.contains("BODYSTRUCTURE ((\"application\" \"pgp-encrypted\""),
        "{reply}"
    );
    assert!(
        reply.contains("\"encrypted\" (\"protocol\" \"application/pgp-encrypted\""),
        "{reply}"
    );
    assert!(
        reply.contains("BODY[1] {14}\r\nVersion: 1\r\n\r\n"),
        "{reply}"
    );
    assert!(reply.contains("BODY[2.MIME] {"), "{reply}");
    assert!(reply.contains("* 3 FETCH (BODY ("));
}

#[test]
fn store_search_expunge() {
    let reply = run(
        selected,
        "a STORE 1 +FLAGS (\\Seen $MDNSent)\r\nb UID STORE 2 FLAGS.SILENT (\\Flagged)\r\n\
         c SEARCH UNSEEN\r\nd UID SEARCH FLAGGED\r\ne SEARCH HEADER Message-ID m1@example.org\r\n\
         f SEARCH OR SEEN FLAGGED\r\ng SEARCH NOT SEEN LARGER 100\r\nh SEARCH SUBJECT HELLO\r\n\
         i SEARCH SINCE 1-Jan-2020 BEFORE 1-Jan-2030\r\nj UID SEARCH UID 2:*\r\n\
         k STORE 1:2 +FLAGS (\\Deleted)\r\nl EXPUNGE\r\nm SEARCH ALL\r\n",
    );
    assert!(
        reply.contains("* 1 FETCH (UID 1 FLAGS (\\Seen $MDNSent))\r\na OK Store completed."),
        "{reply}"
    );
    assert!(reply.contains("b OK Store completed."));
    assert!(!reply.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\nb OK"));
    assert!(reply.contains("* SEARCH 2 3\r\nc OK"), "{reply}");
    assert!(reply.contains("* SEARCH 2\r\nd OK"));
    assert!(reply.contains("* SEARCH 1\r\ne OK"), "{reply}");
    assert!(reply.contains("* SEARCH 1 2\r\nf OK"));
    assert!(reply.contains("* SEARCH 2 3\r\ng OK"), "{reply}");
    assert!(reply.contains("* SEARCH 1\r\nh OK"));
    assert!(reply.contains("* SEARCH 1 2 3\r\ni OK"));
    assert!(reply.contains("* SEARCH 2 3\r\nj OK"));
    assert!(
        reply.contains("* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nl OK Expunge completed."),
        "{reply}"
    );
    assert!(reply.contains("* SEARCH 1\r\nm OK"));
}

#[test]
fn condstore() {
    let reply = run(
        selected,
        "e ENABLE CONDSTORE\r\na UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)\r\n\
         b FETCH 1:* (UID FLAGS) (CHANGEDSINCE 4)\r\nc SEARCH MODSEQ 5\r\n",
    );
    assert!(reply.contains("* ENABLED CONDSTORE"));
    assert!(
        reply.contains("a OK [MODIFIED 1] Conditional STORE failed."),
        "{reply}"
    );
    assert!(
        !reply.contains("* 1 FETCH (UID 1 FLAGS () MODSEQ"),
        "{reply}"
    );
    let reply = run(
        selected,
        "a UID STORE 1 (UNCHANGEDSINCE 100) +FLAGS (\\Seen)\r\nb FETCH 1:* (FLAGS) (CHANGEDSINCE 4)\r\n",
    );
    assert!(
        reply.contains("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (5))\r\na OK Store completed."),
        "{reply}"
    );
    assert!(
        reply.contains("* 1 FETCH (FLAGS (\\Seen) MODSEQ (5))\r\nb OK"),
        "{reply}"
    );
}

#[test]
fn copy_move_append() {
    let reply = run(
        selected,
        "a CREATE DeltaChat\r\nb COPY 1 DeltaChat\r\nc UID MOVE 2 DeltaChat\r\n\
         d MOVE 1 Nowhere\r\ne APPEND DeltaChat (\\Seen) {10}\r\nHi there\r\n\r\n\
         f STATUS DeltaChat (MESSAGES)\r\ng APPEND Nowhere {2+}\r\nhi\r\n",
    );
    assert!(
        reply.contains("b OK [COPYUID 2001 1 1] Copy completed."),
        "{reply}"
    );
    assert!(
        reply
            .contains("* OK [COPYUID 2001 2 2] Moved UIDs.\r\n* 2 EXPUNGE\r\nc OK Move completed."),
        "{reply}"
    );
    assert!(reply.contains("d NO [TRYCREATE]"));
    assert!(
        reply.contains("+ Ready for literal data\r\ne OK [APPENDUID 2001 3] Append completed."),
        "{reply}"
    );
    assert!(reply.contains("* STATUS DeltaChat (MESSAGES 3)"));
    assert!(reply.contains("g NO [TRYCREATE]"));
}

#[test]
fn append_large_message_is_not_copied_and_bounded() {
    let mut c = Client::new();
    logged_in(&mut c);
    let body = vec![b'x'; 200_000];
    let mut cmd = format!("a APPEND INBOX {{{}}}\r\n", body.len()).into_bytes();
    cmd.extend_from_slice(&body);
    cmd.extend_from_slice(b"\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert!(reply.contains("a OK [APPENDUID 1000 1]"), "{reply}");
    assert_eq!(c.fake.mailboxes["INBOX"].messages[&1].1.len(), 200_000);
    // Over max_message_size (1 MiB in the test config): refused before any byte is read.
    let reply = c.send("b APPEND INBOX {2000000}\r\n");
    assert_eq!(reply, "b NO [TOOBIG] Message too large.\r\n");
    // Over quota.
    c.fake.quota_limit = 10;
    let reply = c.send("c APPEND INBOX {5}\r\nhello\r\n");
    assert!(reply.contains("c NO [OVERQUOTA]"), "{reply}");
}

#[test]
fn metadata_and_quota() {
    let reply = run(
        logged_in,
        "a SETMETADATA INBOX (/private/devicetoken \"1111\")\nb SETMETADATA INBOX (/private/devicetoken \"2222\")\n\
         c GETMETADATA INBOX /private/devicetoken\n\
         d GETMETADATA \"\" (/shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/admin)\n\
         e SETMETADATA INBOX (/private/other \"x\")\nf SETMETADATA INBOX (/private/devicetoken NIL)\n\
         g GETQUOTAROOT INBOX\nh GETQUOTA \"\"\n",
    );
    assert!(reply.contains("a OK Setmetadata completed."), "{reply}");
    assert!(reply.contains("* METADATA \"INBOX\" (\"/private/devicetoken\" {9}\r\n1111 2222)\r\nc OK Getmetadata completed."), "{reply}");
    assert!(reply.contains("* METADATA \"\" (\"/shared/vendor/deltachat/irohrelay\" {19}\r\nhttps://example.org \"/shared/vendor/deltachat/turn\" NIL \"/shared/admin\" {24}\r\nmailto:admin@example.org)"), "{reply}");
    assert!(reply.contains("e NO"));
    assert!(reply.contains("f OK Setmetadata completed."));
    assert!(
        reply.contains("* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 0 512000)\r\ng OK"),
        "{reply}"
    );
    assert!(reply.contains("h OK Getquota completed."));
}

#[test]
fn idle_and_done() {
    let reply = run(selected, "i IDLE\r\nDONE\r\nj IDLE\r\nnope\r\nk NOOP\r\n");
    assert!(
        reply.contains("+ idling\r\ni OK Idle completed.\r\n"),
        "{reply}"
    );
    assert!(reply.contains("j BAD Expected DONE."));
    assert!(reply.contains("k OK"));
}

#[test]
fn close_unselect_examine() {
    let reply = run(
        selected,
        "a STORE 1 +FLAGS.SILENT (\\Deleted)\r\nb CLOSE\r\nc FETCH 1 FLAGS\r\nd EXAMINE INBOX\r\n\
         e STORE 1 +FLAGS (\\Seen)\r\nf UNSELECT\r\ng SELECT Nope\r\n",
    );
    assert!(reply.contains("b OK Close completed."));
    assert!(
        !reply.contains("EXPUNGE"),
        "CLOSE expunges silently: {reply}"
    );
    assert!(reply.contains("c BAD No mailbox selected."), "{reply}");
    assert!(reply.contains("* 2 EXISTS"));
    assert!(reply.contains("d OK [READ-ONLY]"));
    assert!(reply.contains("e NO [READ-ONLY]"));
    assert!(reply.contains("f OK"));
    assert!(reply.contains("g NO [NONEXISTENT]"));
}

#[test]
fn misc_commands() {
    let reply = run(
        logged_in,
        "a ID (\"name\" \"Delta Chat\")\r\nb NAMESPACE\r\nc ENABLE QRESYNC\r\nd CHECK\r\ne COMPRESS DEFLATE\r\n",
    );
    assert!(reply.contains("* ID (\"name\" \"chatmail\")\r\na OK"));
    assert!(reply.contains("* NAMESPACE ((\"\" \".\")) NIL NIL\r\nb OK"));
    assert!(reply.contains("* ENABLED\r\nc OK"));
    assert!(reply.contains("d BAD No mailbox selected."), "{reply}");
    assert!(reply.contains("e BAD"));
}

/// The driver hands the session the changes a request published before its answer (so
/// that an APPEND's EXISTS comes with its OK). When that change resets the selected
/// mailbox (its own RENAME), the BYE waits for the command's tagged reply.
#[test]
fn a_reset_published_by_the_sessions_own_request_waits_for_its_reply() {
    let mut c = Client::new();
    c.login();
    assert!(c.send("a CREATE Box\r\n").contains("a OK"));
    assert!(c.send("b SELECT Box\r\n").contains("b OK"));
    c.answering = false;
    let start = c.received.len();
    c.send("c RENAME Box Other\r\n");
    let (id, request) = c.held.pop().expect("the RENAME's request");
    let answer = c.fake.handle(request);
    c.session.handle_change(
        Ok(chatmail_core::Change::MailboxReset {
            mailbox: "Box".into(),
        }),
        c.now,
    );
    c.session.answer(id, answer, c.now).expect("still waiting");
    c.pump();
    let out = String::from_utf8_lossy(&c.received[start..]).into_owned();
    let ok = out.find("c OK").expect(&out);
    let bye = out.find("* BYE").expect(&out);
    assert!(ok < bye, "{out}");
    assert!(c.closed);
}
