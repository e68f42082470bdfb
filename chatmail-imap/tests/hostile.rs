//! Hostile input: each gets a protocol answer, and the session's memory stays bounded.

mod common;

use std::time::Duration;

use common::*;

/// Upper bound for a session's memory under attack (64 KiB command bound plus slack).
const BOUND: usize = 300 * 1024;

#[test]
fn literal_bomb_is_refused_before_it_is_read() {
    let mut c = Client::new();
    let reply = c.send("a LOGIN {4294967295}\r\n");
    assert_eq!(reply, "a BAD [TOOBIG] Literal too large.\r\n");
    let mut c = Client::new();
    c.login();
    let reply = c.send("b APPEND INBOX {4294967295}\r\n");
    assert_eq!(reply, "b NO [TOOBIG] Message too large.\r\n");
    assert!(c.send("c NOOP\r\n").contains("c OK"));
    // A non-synchronizing bomb is on its way already: BYE instead of reading 4 GB.
    let reply = c.send("d APPEND INBOX {4294967295+}\r\n");
    assert_eq!(reply, "* BYE [TOOBIG] Literal too large.\r\n");
    assert!(c.closed);
    assert!(c.session.memory_footprint() < BOUND);
}

#[test]
fn unterminated_quoted_string_and_long_lines() {
    let mut c = Client::new();
    c.login();
    let mut line = b"a LOGIN \"".to_vec();
    line.extend(std::iter::repeat_n(b'x', 1_000_000));
    let reply = c.send_chunked(&line, Chunks::Whole);
    assert_eq!(reply, "");
    assert!(
        c.session.memory_footprint() < BOUND,
        "{}",
        c.session.memory_footprint()
    );
    let reply = c.send("\r\nb NOOP\r\n");
    assert_eq!(
        reply,
        "a BAD [TOOBIG] Command line too long.\r\nb OK NOOP completed.\r\n"
    );
    // An unterminated quoted string inside a complete line is a syntax error.
    let reply = c.send("c SELECT \"INBOX\r\n");
    assert!(reply.starts_with("c BAD"), "{reply}");
}

#[test]
fn deeply_nested_parentheses() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\n");
    let mut cmd = b"a SEARCH ".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 100_000));
    cmd.extend(std::iter::repeat_n(b')', 100_000));
    cmd.extend_from_slice(b"\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply, "a BAD [TOOBIG] Command line too long.\r\n");
    // Within the line bound, recursion is limited by the decoder and the search program.
    let mut cmd = b"b SEARCH ".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 30_000));
    cmd.extend_from_slice(b"ALL");
    cmd.extend(std::iter::repeat_n(b')', 30_000));
    cmd.extend_from_slice(b"\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert!(reply.starts_with("b BAD"), "{reply}");
    let mut cmd = b"c FETCH 1 BODY[HEADER.FIELDS (".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 30_000));
    cmd.extend_from_slice(b"\r\n");
    assert!(c.send_chunked(&cmd, Chunks::Whole).starts_with("c BAD"));
}

#[test]
fn idle_without_done_times_out() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\ni IDLE\r\n");
    // RFC 9051 5.4: at least 30 minutes, counted from the IDLE command.
    let deadline = c.session.poll_timeout().unwrap();
    assert_eq!(deadline, c.now + Duration::from_secs(30 * 60));
    c.session.handle_timeout(deadline - Duration::from_secs(1));
    c.pump();
    assert!(!c.closed);
    c.session
        .handle_timeout(deadline + Duration::from_secs(3 * 3600));
    c.pump();
    assert!(c.closed);
    assert!(
        String::from_utf8_lossy(&c.received).ends_with("* BYE Disconnected for inactivity.\r\n")
    );
    assert_eq!(c.session.poll_timeout(), None);
}

#[test]
fn login_timeout() {
    let mut c = Client::new();
    let deadline = c.session.poll_timeout().unwrap();
    c.session.handle_timeout(deadline);
    c.pump();
    assert!(c.closed);
}

#[test]
fn commands_in_the_wrong_state() {
    let mut c = Client::new();
    let reply = c.send(
        "a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc IDLE\r\nd GETMETADATA \"\" /shared/admin\r\n",
    );
    assert_eq!(reply.matches("BAD Not logged in.").count(), 4, "{reply}");
    c.login();
    let reply = c.send("e FETCH 1 FLAGS\r\nf EXPUNGE\r\ng LOGIN a b\r\nh STARTTLS\r\n");
    assert!(reply.contains("e BAD No mailbox selected."));
    assert!(reply.contains("f BAD No mailbox selected."));
    assert!(reply.contains("g BAD Command not allowed"));
    assert!(reply.contains("h BAD Command not allowed"));
}

#[test]
fn flood_of_bad_commands_ends_with_bye() {
    let mut c = Client::new();
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!("x{i} BOGUS\r\n"));
    }
    let reply = c.send(&input);
    assert_eq!(reply.matches(" BAD ").count(), 10);
    assert!(reply.ends_with("* BYE Too many invalid IMAP commands.\r\n"));
    assert!(c.closed);
    // Nothing more is processed after BYE.
    assert_eq!(c.send("y NOOP\r\n"), "");
}

#[test]
fn a_million_ranges() {
    let mut c = Client::new();
    c.login();
    for _ in 0..5 {
        c.fake.deliver("INBOX", SIMPLE);
    }
    c.fake.take_changes();
    c.send("s SELECT INBOX\r\n");
    // A million ranges do not fit the command bound: refused, memory bounded.
    let mut cmd = b"a UID FETCH ".to_vec();
    for i in 0..1_000_000u32 {
        if i > 0 {
            cmd.push(b',');
        }
        cmd.extend_from_slice(format!("{}:{}", i * 3 + 1, i * 3 + 2).as_bytes());
    }
    cmd.extend_from_slice(b" FLAGS\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply, "a BAD [TOOBIG] Command line too long.\r\n");
    assert!(c.session.memory_footprint() < BOUND);
    // As many ranges as fit, and huge numbers, resolve against the mailbox, not the set.
    let mut cmd = b"b UID FETCH ".to_vec();
    for i in 0..5000u32 {
        cmd.extend_from_slice(format!("{}:{},", i * 3 + 1, i * 3 + 2).as_bytes());
    }
    cmd.extend_from_slice(b"1:4294967295 (UID)\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply.matches("FETCH (UID").count(), 5, "{reply}");
    assert!(reply.ends_with("b OK Fetch completed.\r\n"));
    let reply = c.send("c FETCH 4294967295:1 (UID)\r\nd UID SEARCH UID 4000000000:*\r\n");
    assert!(
        reply.contains("c OK") && reply.contains("* SEARCH 5\r\n"),
        "{reply}"
    );
}

#[test]
fn pipelined_input_while_a_request_is_outstanding() {
    let mut c = Client::new();
    c.answering = false;
    c.send(&format!("a LOGIN {USER} {PASSWORD}\r\n"));
    assert_eq!(c.held.len(), 1);
    // The driver is told to stop reading; a driver that ignores it is cut off.
    let chunk = vec![b'x'; 64 * 1024];
    let mut fed = 0;
    while c.session.wants_input() {
        c.session.feed(&chunk, c.now);
        fed += chunk.len();
    }
    assert!(fed <= 512 * 1024);
    while !c.closed {
        c.session.feed(&chunk, c.now);
        c.pump();
    }
    assert!(String::from_utf8_lossy(&c.received).contains("* BYE Too much pipelined input."));
    assert!(c.session.memory_footprint() < 2 * 1024 * 1024);
}

#[test]
fn answers_to_unknown_requests_are_rejected() {
    let mut c = Client::new();
    let r = c.session.answer(
        chatmail_imap::RequestId(77),
        chatmail_imap::Answer::Done,
        c.now,
    );
    assert!(r.is_err());
}

/// Where a hostile input of the table is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum At {
    /// Not logged in.
    Fresh,
    /// Logged in, nothing selected.
    Authed,
    /// INBOX selected, three messages.
    Selected,
    /// In IDLE on the selected INBOX.
    Idle,
}

impl At {
    fn client(self) -> Client {
        let mut c = Client::new();
        if self == At::Fresh {
            return c;
        }
        c.login();
        if self == At::Authed {
            return c;
        }
        for _ in 0..3 {
            c.fake.deliver("INBOX", SIMPLE);
        }
        c.fake.take_changes();
        c.send("s SELECT INBOX\r\n");
        if self == At::Idle {
            c.send("i IDLE\r\n");
        }
        c
    }
}

/// One hostile input and its answer: the last line the session sends in reply starts
/// with `expect`, and the session is closed afterwards or not.
struct Case {
    name: &'static str,
    at: At,
    input: Vec<u8>,
    expect: &'static str,
    closed: bool,
}

fn case(name: &'static str, at: At, input: impl Into<Vec<u8>>, expect: &'static str) -> Case {
    Case {
        name,
        at,
        input: input.into(),
        expect,
        closed: false,
    }
}

fn closing(name: &'static str, at: At, input: impl Into<Vec<u8>>, expect: &'static str) -> Case {
    Case {
        closed: true,
        ..case(name, at, input, expect)
    }
}

/// A command with one literal argument of `n` bytes of `fill`.
fn with_literal(before: &str, n: usize, fill: char, after: &str) -> Vec<u8> {
    format!(
        "{before}{{{n}}}\r\n{}{after}\r\n",
        fill.to_string().repeat(n)
    )
    .into_bytes()
}

/// The hostile IMAP inputs (see [`Case`]); their count is the table's length.
fn imap_cases() -> Vec<Case> {
    use At::*;
    let b64 = |s: &str| {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let wrong = b64(&format!("\0{USER}\0wrong-password"));
    vec![
        // Commands in the wrong state.
        case(
            "SELECT before login",
            Fresh,
            "a SELECT INBOX\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "FETCH before login",
            Fresh,
            "a FETCH 1 FLAGS\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "IDLE before login",
            Fresh,
            "a IDLE\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "GETMETADATA before login",
            Fresh,
            "a GETMETADATA \"\" /shared/admin\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "APPEND before login",
            Fresh,
            "a APPEND INBOX {5}\r\nhello\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "ENABLE before login",
            Fresh,
            "a ENABLE CONDSTORE\r\n",
            "a BAD Not logged in.",
        ),
        case(
            "LOGIN twice",
            Authed,
            "a LOGIN x y\r\n",
            "a BAD Command not allowed",
        ),
        case(
            "AUTHENTICATE after login",
            Authed,
            "a AUTHENTICATE PLAIN\r\n",
            "a BAD Command not allowed",
        ),
        case(
            "STARTTLS after login",
            Authed,
            "a STARTTLS\r\n",
            "a BAD Command not allowed",
        ),
        case(
            "STARTTLS inside TLS",
            Fresh,
            "a STARTTLS\r\n",
            "a BAD TLS is already active or not offered.",
        ),
        case(
            "FETCH without SELECT",
            Authed,
            "a FETCH 1 FLAGS\r\n",
            "a BAD No mailbox selected.",
        ),
        case(
            "EXPUNGE without SELECT",
            Authed,
            "a EXPUNGE\r\n",
            "a BAD No mailbox selected.",
        ),
        case(
            "SEARCH without SELECT",
            Authed,
            "a SEARCH ALL\r\n",
            "a BAD No mailbox selected.",
        ),
        case("DONE without IDLE", Selected, "DONE\r\n", "DONE BAD"),
        // Lines, tags and bytes.
        case("empty line", Fresh, "\r\n", "* BAD"),
        case("tag only", Fresh, "a\r\n", "a BAD"),
        case("star as tag", Fresh, "* NOOP\r\n", "* BAD"),
        case("plus as tag", Fresh, "+ NOOP\r\n", "* BAD"),
        case(
            "bare LF ends a line (clients rely on it)",
            Fresh,
            "a NOOP\n",
            "a OK NOOP completed.",
        ),
        case(
            "bare CR inside a line",
            Fresh,
            "a NOOP\rb NOOP\r\n",
            "a BAD",
        ),
        case("NUL in a command", Fresh, "a NOOP\0\r\n", "a BAD"),
        case(
            "invalid UTF-8 in a command",
            Fresh,
            b"a NO\xffOP\r\n".to_vec(),
            "a BAD",
        ),
        case(
            "8-bit mailbox name",
            Authed,
            b"a SELECT \xe9t\xe9\r\n".to_vec(),
            "a BAD",
        ),
        case(
            "overlong line",
            Fresh,
            format!("a NOOP {}\r\n", "x".repeat(100_000)),
            "a BAD [TOOBIG] Command line too long.",
        ),
        case(
            "arguments to CAPABILITY",
            Fresh,
            "a CAPABILITY now\r\n",
            "a BAD",
        ),
        case("unknown command", Fresh, "a XYZZY\r\n", "a BAD"),
        case(
            "HTTP request on IMAP",
            Fresh,
            "GET / HTTP/1.1\r\n",
            "GET BAD",
        ),
        case(
            "TLS ClientHello on a plaintext port",
            Fresh,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n".to_vec(),
            "* BAD",
        ),
        closing(
            "garbage until BYE",
            Fresh,
            "x BOGUS\r\n".repeat(11),
            "* BYE Too many invalid IMAP commands.",
        ),
        closing(
            "commands after LOGOUT are not read",
            Authed,
            "a LOGOUT\r\nb NOOP\r\n",
            "a OK",
        ),
        // LOGIN and AUTHENTICATE.
        case("LOGIN without arguments", Fresh, "a LOGIN\r\n", "a BAD"),
        case(
            "LOGIN wrong password",
            Fresh,
            format!("a LOGIN {USER} wrong-password\r\n"),
            "a NO [AUTHENTICATIONFAILED]",
        ),
        case(
            "LOGIN unknown user",
            Fresh,
            "a LOGIN nobody@example.org secret-password\r\n",
            "a NO [AUTHENTICATIONFAILED]",
        ),
        case(
            "LOGIN 4 GB literal",
            Fresh,
            "a LOGIN {4294967295}\r\n",
            "a BAD [TOOBIG] Literal too large.",
        ),
        case(
            "LOGIN literal over the line bound",
            Fresh,
            "a LOGIN {100000}\r\n",
            "a BAD [TOOBIG] Literal too large.",
        ),
        case(
            "LOGIN literal size overflowing",
            Fresh,
            "a LOGIN {99999999999999999999}\r\n",
            "a BAD",
        ),
        case("LOGIN negative literal", Fresh, "a LOGIN {-1}\r\n", "a BAD"),
        case(
            "LOGIN NUL in a quoted password",
            Fresh,
            format!("a LOGIN {USER} \"pass\0word\"\r\n"),
            "a BAD",
        ),
        case(
            "LOGIN unterminated quote",
            Fresh,
            "a LOGIN \"user pass\r\n",
            "a BAD",
        ),
        case(
            "AUTHENTICATE broken base64",
            Fresh,
            "a AUTHENTICATE PLAIN\r\n====\r\n",
            "a BAD Invalid base64 data in AUTHENTICATE response.",
        ),
        case(
            "AUTHENTICATE unknown mechanism",
            Fresh,
            "a AUTHENTICATE CRAM-MD5\r\n",
            "a NO [CANNOT] Unsupported authentication mechanism.",
        ),
        case(
            "AUTHENTICATE cancelled",
            Fresh,
            "a AUTHENTICATE PLAIN\r\n*\r\n",
            "a BAD Authentication aborted by client.",
        ),
        case(
            "AUTHENTICATE wrong password",
            Fresh,
            format!("a AUTHENTICATE PLAIN {wrong}\r\n"),
            "a NO [AUTHENTICATIONFAILED]",
        ),
        case(
            "AUTHENTICATE without NULs",
            Fresh,
            format!("a AUTHENTICATE PLAIN {}\r\n", b64("user")),
            "a BAD Invalid PLAIN response.",
        ),
        // Mailboxes.
        case(
            "SELECT missing",
            Authed,
            "a SELECT Nosuch\r\n",
            "a NO [NONEXISTENT]",
        ),
        case(
            "SELECT path traversal",
            Authed,
            "a SELECT \"../../etc\"\r\n",
            "a NO",
        ),
        case(
            "CREATE with a slash",
            Authed,
            "a CREATE \"a/b\"\r\n",
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "CREATE with dots",
            Authed,
            "a CREATE a..b\r\n",
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "CREATE 300 bytes",
            Authed,
            format!("a CREATE {}\r\n", "m".repeat(300)),
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "CREATE a wildcard",
            Authed,
            "a CREATE \"a*\"\r\n",
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "CREATE a control character",
            Authed,
            "a CREATE {3}\r\na\tb\r\n",
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "CREATE INBOX",
            Authed,
            "a CREATE INBOX\r\n",
            "a NO [ALREADYEXISTS]",
        ),
        case(
            "DELETE INBOX",
            Authed,
            "a DELETE INBOX\r\n",
            "a NO [CANNOT] INBOX can't be deleted.",
        ),
        case(
            "RENAME INBOX",
            Authed,
            "a RENAME INBOX Other\r\n",
            "a NO [CANNOT] Renaming INBOX is not supported.",
        ),
        case(
            "RENAME to a bad name",
            Authed,
            "a RENAME Nosuch \"x/y\"\r\n",
            "a NO [CANNOT] Invalid mailbox name.",
        ),
        case(
            "DELETE the selected mailbox",
            Selected,
            "a CREATE Other\r\nb SELECT Other\r\nc DELETE Other\r\n",
            "c NO [CANNOT] Can't delete the selected mailbox.",
        ),
        case(
            "LIST pattern too long",
            Authed,
            with_literal("a LIST \"\" ", 2000, '*', ""),
            "a NO [LIMIT] Mailbox pattern too long.",
        ),
        case(
            "LIST reference too long",
            Authed,
            with_literal("a LIST ", 1100, 'r', " *"),
            "a NO [LIMIT] Mailbox pattern too long.",
        ),
        case(
            "LIST wildcard storm",
            Authed,
            format!("a LIST \"\" \"{}\"\r\n", "*%".repeat(400)),
            "a OK",
        ),
        case(
            "LIST NUL in the pattern",
            Authed,
            "a LIST \"\" \"a\0\"\r\n",
            "a BAD",
        ),
        case(
            "STATUS of a missing mailbox",
            Authed,
            "a STATUS Nosuch (MESSAGES)\r\n",
            "a NO [NONEXISTENT]",
        ),
        // APPEND.
        case(
            "APPEND 4 GB",
            Authed,
            "a APPEND INBOX {4294967295}\r\n",
            "a NO [TOOBIG] Message too large.",
        ),
        closing(
            "APPEND 4 GB non-synchronizing",
            Authed,
            "a APPEND INBOX {4294967295+}\r\n",
            "* BYE [TOOBIG] Literal too large.",
        ),
        case(
            "APPEND to a missing mailbox",
            Authed,
            "a APPEND Nosuch {5}\r\nhello\r\n",
            "a NO [TRYCREATE]",
        ),
        case(
            "APPEND with a bad date",
            Authed,
            "a APPEND INBOX \"31-Foo-2020 00:00:00 +0000\" {5}\r\nhello\r\n",
            "a BAD",
        ),
        case(
            "APPEND with an unknown system flag",
            Authed,
            "a APPEND INBOX (\\Bogus) {5}\r\nhello\r\n",
            "a OK [APPENDUID",
        ),
        // METADATA.
        case(
            "SETMETADATA of a server entry",
            Authed,
            "a SETMETADATA \"\" (/shared/admin \"x\")\r\n",
            "a NO [NOPERM]",
        ),
        case(
            "GETMETADATA of a thousand entries",
            Authed,
            format!(
                "a GETMETADATA \"\" ({})\r\n",
                (0..1000)
                    .map(|i| format!("/private/e{i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            "a BAD Too many metadata entries.",
        ),
        case(
            "COMPRESS not offered",
            Authed,
            "a COMPRESS DEFLATE\r\n",
            "a BAD Unknown command.",
        ),
        // FETCH, STORE, COPY.
        case(
            "FETCH sequence number 0",
            Selected,
            "a FETCH 0 FLAGS\r\n",
            "a BAD",
        ),
        case(
            "FETCH a number past 32 bits",
            Selected,
            "a UID FETCH 4294967296 FLAGS\r\n",
            "a BAD",
        ),
        case(
            "FETCH a section number past 32 bits",
            Selected,
            "a FETCH 1 BODY[99999999999]\r\n",
            "a BAD",
        ),
        case(
            "FETCH a deep section path",
            Selected,
            "a FETCH 1 BODY.PEEK[1.2.3.4.5.6.7.8.9.10]\r\n",
            "a OK",
        ),
        case(
            "FETCH empty HEADER.FIELDS",
            Selected,
            "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
            "a BAD",
        ),
        case(
            "FETCH a thousand items",
            Selected,
            format!("a FETCH 1:* ({})\r\n", ["FLAGS"; 1000].join(" ")),
            "a OK",
        ),
        case(
            "FETCH unclosed parenthesis",
            Selected,
            "a FETCH 1 (FLAGS\r\n",
            "a BAD",
        ),
        case(
            "STORE \\Recent",
            Selected,
            "a STORE 1 +FLAGS (\\Recent)\r\n",
            "a OK Store completed.",
        ),
        case(
            "STORE a thousand keywords (the store caps keywords)",
            Selected,
            format!(
                "a STORE 1 +FLAGS ({})\r\n",
                (0..1000)
                    .map(|i| format!("k{i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            "a OK Store completed.",
        ),
        case(
            "COPY to a missing mailbox",
            Selected,
            "a COPY 1 Nosuch\r\n",
            "a NO [TRYCREATE]",
        ),
        case(
            "MOVE to a missing mailbox",
            Selected,
            "a MOVE 1:* Nosuch\r\n",
            "a NO [TRYCREATE]",
        ),
        case("UID EXPUNGE 0", Selected, "a UID EXPUNGE 0\r\n", "a BAD"),
        // SEARCH.
        case(
            "SEARCH key over 1 KB",
            Selected,
            with_literal("a SEARCH BODY ", 1025, 'x', ""),
            "a NO [LIMIT] Search key longer than 1024 bytes.",
        ),
        case(
            "SEARCH 64 KB key",
            Selected,
            with_literal("a SEARCH TEXT ", 60_000, 'x', ""),
            "a NO [LIMIT] Search key longer than 1024 bytes.",
        ),
        case(
            "SEARCH header name over 1 KB",
            Selected,
            with_literal("a SEARCH HEADER ", 1025, 'x', " y"),
            "a NO [LIMIT] Search key longer than 1024 bytes.",
        ),
        case(
            "SEARCH 17 content keys",
            Selected,
            format!("a SEARCH {}\r\n", ["BODY x"; 17].join(" ")),
            "a NO [LIMIT] More than 16 keys need message contents.",
        ),
        case(
            "SEARCH 300 nodes",
            Selected,
            format!("a SEARCH {}\r\n", ["ALL"; 300].join(" ")),
            "a BAD Search program too complex.",
        ),
        case(
            "SEARCH nested parentheses",
            Selected,
            format!(
                "a SEARCH {}ALL{}\r\n",
                "(".repeat(30_000),
                ")".repeat(30_000)
            ),
            "a BAD",
        ),
        case(
            "SEARCH OR chain",
            Selected,
            format!("a SEARCH {}ALL\r\n", "OR ALL ".repeat(200)),
            "a BAD",
        ),
        case("SEARCH unknown key", Selected, "a SEARCH FOO\r\n", "a BAD"),
        case(
            "SEARCH bad date",
            Selected,
            "a SEARCH BEFORE 31-Feb-2024\r\n",
            "a BAD",
        ),
        case(
            "SEARCH UID past 32 bits",
            Selected,
            "a SEARCH UID 1:4294967296\r\n",
            "a BAD",
        ),
        case(
            "SEARCH unknown charset",
            Selected,
            "a SEARCH CHARSET X-UNKNOWN BODY x\r\n",
            "a NO [BADCHARSET (US-ASCII UTF-8)]",
        ),
        case(
            "SEARCH in UTF-8",
            Selected,
            "a SEARCH CHARSET UTF-8 BODY x\r\n",
            "a OK Search completed.",
        ),
        // IDLE.
        case(
            "a command instead of DONE",
            Idle,
            "a NOOP\r\n",
            "i BAD Expected DONE.",
        ),
        case(
            "garbage instead of DONE",
            Idle,
            "garbage\r\n",
            "i BAD Expected DONE.",
        ),
        case(
            "overlong line in IDLE",
            Idle,
            format!("{}\r\n", "x".repeat(100_000)),
            "* BAD [TOOBIG] Command line too long.",
        ),
        case(
            "DONE with an argument",
            Idle,
            "DONE now\r\n",
            "i BAD Expected DONE.",
        ),
    ]
}

#[test]
fn table_of_hostile_inputs() {
    let cases = imap_cases();
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in &cases {
        assert!(
            seen.insert((c.at, c.input.clone())),
            "duplicate input: {}",
            c.name
        );
        let mut whole = c.at.client();
        let reply = whole.send_chunked(&c.input, Chunks::Whole);
        let mut chunked = c.at.client();
        let chunked_reply = chunked.send_chunked(&c.input, Chunks::Random(7));
        let last = reply.lines().last().map(str::to_owned);
        let answered = last.as_deref().is_some_and(|l| l.starts_with(c.expect));
        if !answered || whole.closed != c.closed || reply != chunked_reply {
            failures.push(format!(
                "{} ({:?}): expected {:?} (closed: {}), got {last:?} (closed: {}){}",
                c.name,
                c.at,
                c.expect,
                c.closed,
                whole.closed,
                if reply == chunked_reply {
                    ""
                } else {
                    ", chunking changes the answer"
                }
            ));
        }
        assert!(
            whole.session.memory_footprint() < BOUND,
            "{}: {}",
            c.name,
            whole.session.memory_footprint()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 90, "{}", cases.len());
}
