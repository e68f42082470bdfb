//! SEARCH and LIST under hostile programs: linear scans, one content request per
//! command, bounded keys, a work budget, bounded LIST patterns.

mod common;

use std::time::{Duration, Instant};

use chatmail_core::{MessageMeta, ModSeq, Uid};
use chatmail_imap::Request;
use common::*;

fn selected_with(messages: &[&[u8]]) -> Client {
    selected_with_config(config(), messages)
}

fn selected_with_config(config: chatmail_imap::SessionConfig, messages: &[&[u8]]) -> Client {
    let mut c = Client::with_config(config);
    c.login();
    for m in messages {
        c.fake.deliver("INBOX", m);
    }
    c.fake.take_changes();
    assert!(c.send("s SELECT INBOX\r\n").contains("s OK"));
    c
}

const M1: &[u8] =
    b"From: Alice <alice@example.org>\r\nSubject: Lunch\r\n\r\nShall we meet at NOON?\r\n";
const M2: &[u8] = b"From: Bob <bob@example.org>\r\nSubject: noon\r\n\r\nNothing here.\r\n";
const M3: &[u8] = b"From: Carol <carol@example.org>\r\nSubject: re\r\n\r\nnoon it is\r\n";

#[test]
fn content_keys_are_decided_by_one_embedder_request_per_command() {
    let mut c = selected_with(&[M1, M2, M3]);
    let before = c.fake.requests;
    let reply = c.send("a SEARCH BODY noon FROM example SUBJECT Lunch\r\n");
    assert!(reply.contains("* SEARCH 1\r\na OK"), "{reply}");
    // Metadata, then one content request for all three: no per-message fetches.
    assert_eq!(c.fake.requests - before, 2);
    assert_eq!(c.fake.content_searched, 3);
    // Keys decided by metadata alone send nothing to scan.
    let reply = c.send("b SEARCH BODY noon NOT ALL\r\nc UID SEARCH TEXT NOON\r\n");
    assert!(reply.contains("* SEARCH\r\nb OK"), "{reply}");
    assert!(reply.contains("* SEARCH 1 2 3\r\nc OK"), "{reply}");
    assert_eq!(c.fake.content_searched, 6);
}

#[test]
fn oversized_and_too_many_keys_are_refused_before_any_work() {
    let mut c = selected_with(&[M1]);
    let before = c.fake.requests;
    let long = "x".repeat(1025);
    let reply = c.send(&format!(
        "a SEARCH BODY {{1025}}\r\n{long}\r\nb SEARCH HEADER {{1025}}\r\n{long} x\r\n"
    ));
    assert!(
        reply.contains("a NO [LIMIT] Search key longer than 1024 bytes."),
        "{reply}"
    );
    assert!(reply.contains("b NO [LIMIT] Search key longer than 1024 bytes."));
    let many = "BODY x ".repeat(17);
    let many = many.trim_end();
    let reply = c.send(&format!("c SEARCH {many}\r\n"));
    assert!(
        reply.contains("c NO [LIMIT] More than 16 keys need message contents."),
        "{reply}"
    );
    assert_eq!(c.fake.requests, before, "nothing was asked of the store");
    // At the bounds it works.
    let key = "x".repeat(1024);
    let reply = c.send(&format!("d SEARCH TEXT {{1024}}\r\n{key}\r\n"));
    assert!(reply.contains("d OK"), "{reply}");
    let reply = c.send(&format!(
        "e SEARCH {}\r\n",
        "SUBJECT lunch ".repeat(16).trim_end()
    ));
    assert!(reply.contains("* SEARCH 1\r\ne OK"), "{reply}");
}

#[test]
fn sequence_sets_resolving_to_too_many_messages_are_refused() {
    let messages = vec![M1; 4000];
    let mut c = selected_with(&messages);
    // 255 copies of 1:* over 4000 messages: over a million message numbers to hold.
    let reply = c.send(&format!("a SEARCH {}\r\n", "1:* ".repeat(255).trim_end()));
    assert!(
        reply.contains("a NO [LIMIT] Search program names too many messages."),
        "{reply}"
    );
    let reply = c.send(&format!("b SEARCH {}\r\n", "1:* ".repeat(200).trim_end()));
    assert!(reply.contains("b OK"), "{}", &reply[reply.len() - 40..]);
}

#[test]
fn a_search_over_the_budget_gets_no_limit() {
    let mut config = config();
    config.max_search_bytes = 1000;
    let big = [M1, &[b'x'; 400][..]].concat();
    let mut c = selected_with_config(config, &[&big, &big]);
    // 2 messages x ~470 bytes x (1 read + 1 BODY scan) > 1000.
    let reply = c.send("a SEARCH BODY noon\r\n");
    assert!(
        reply.contains("a NO [LIMIT] Search would scan too much message data"),
        "{reply}"
    );
    assert_eq!(c.fake.content_searched, 0);
    // Narrowed by metadata first, it fits.
    let reply = c.send("b SEARCH 1 BODY noon\r\nc SEARCH SUBJECT lunch\r\n");
    assert!(reply.contains("* SEARCH 1\r\nb OK"), "{reply}");
    assert!(reply.contains("* SEARCH 1 2\r\nc OK"), "{reply}");
    // The session goes on.
    assert!(c.send("d NOOP\r\n").contains("d OK"));
}

#[test]
fn scanning_is_linear_in_the_message_size() {
    // The naive scan compared the needle at every offset: 1 KB x 8 MB here, over 8 G
    // byte comparisons. Linear, it is a few passes over 8 MB.
    let mut c = selected_with(&[M1]);
    let needle = format!("{}b", "a".repeat(1023));
    c.answering = false;
    c.send(&format!("a SEARCH BODY {{1024}}\r\n{needle}\r\n"));
    let (id, request) = c.held.pop().expect("metadata request");
    let answer = c.fake.handle(request);
    c.session.answer(id, answer, c.now).unwrap();
    c.pump();
    let (_, request) = c.held.pop().expect("content request");
    let Request::SearchContent { search, .. } = request else {
        panic!("{request:?}")
    };
    let mut message = b"Subject: x\r\n\r\n".to_vec();
    message.extend(std::iter::repeat_n(b'A', 8 * 1024 * 1024));
    let meta = MessageMeta {
        uid: Uid(1),
        size: message.len() as u64,
        internal_date: 0,
        flags: Default::default(),
        modseq: ModSeq(1),
    };
    let start = Instant::now();
    assert!(!search.matches(&meta, &message));
    message.extend_from_slice(needle.to_uppercase().as_bytes());
    assert!(search.matches(&meta, &message));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn list_patterns_are_bounded() {
    let mut c = Client::new();
    c.login();
    let reply = c.send("a CREATE Archive\r\nb CREATE Archive.2024\r\n");
    assert!(reply.contains("b OK"), "{reply}");
    let before = c.fake.requests;
    let long = "*a".repeat(513);
    let reply = c.send(&format!("c LIST \"\" {long}\r\n"));
    assert_eq!(reply, "c NO [LIMIT] Mailbox pattern too long.\r\n");
    let reply = c.send(&format!("d LIST {} *\r\n", "r".repeat(1024)));
    assert_eq!(reply, "d NO [LIMIT] Mailbox pattern too long.\r\n");
    assert_eq!(c.fake.requests, before);
    // Within the bound, a wildcard-heavy pattern is cheap and still right.
    let pattern = "*%".repeat(200);
    let reply = c.send(&format!("e LIST \"\" \"{pattern}A*{pattern}4\"\r\n"));
    assert!(
        reply.contains("* LIST (\\HasNoChildren) \".\" Archive.2024\r\ne OK"),
        "{reply}"
    );
    assert!(!reply.contains("INBOX"), "{reply}");
    let reply = c.send("f LIST \"\" %\r\n");
    assert!(
        reply.contains("* LIST (\\HasChildren) \".\" Archive\r\n"),
        "{reply}"
    );
}
