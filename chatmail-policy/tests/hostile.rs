//! Hostile messages against the policy, each with its expected answer in both
//! directions (issue 9): the encryption bypasses found by review byte for byte, header
//! and MIME tricks that two readers could take differently, and oversized input.
//!
//! Every message is built from the real encrypted fixture, so a case that expects a
//! refusal differs from an accepted message only by the trick it names.

use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
use std::io::Write;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const B: &str = "YFrteb74qSXmggbOxZL9dRnhymywAi";

/// The expected answer: accepted, or refused with this reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accept,
    Code(u16),
}
use Expect::{Accept, Code};

const PARSE: Expect = Code(500);
const E2EE: Expect = Code(523);

fn fixture(name: &str) -> String {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .replace("{from_addr}", ALICE)
        .replace("{to_addr}", BOB)
        .replace("{subject}", "[...]")
}

/// The armored payload of the encrypted fixture, BEGIN to END line, CRLF included.
fn armor() -> String {
    let f = fixture("encrypted.eml");
    let start = f.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = f.find("-----END PGP MESSAGE-----\r\n").unwrap() + 27;
    f[start..end].to_string()
}

fn headers_with(content_type: &str) -> String {
    format!(
        "From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: [...]\r\nMIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
}

fn top() -> String {
    headers_with(&format!(
        "multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{B}\""
    ))
}

fn version_part() -> String {
    "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n".to_string()
}

fn payload_part() -> String {
    format!(
        "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n{}",
        armor()
    )
}

/// A multipart body with `parts`, closed, followed by `epilogue`.
fn body(boundary: &str, parts: &[String], epilogue: &str) -> String {
    let mut out = String::new();
    for part in parts {
        out.push_str(&format!("--{boundary}\r\n{part}\r\n"));
    }
    out.push_str(&format!("--{boundary}--\r\n{epilogue}"));
    out
}

fn pgp_body() -> String {
    body(B, &[version_part(), payload_part()], "")
}

/// The valid encrypted message every case starts from.
fn valid() -> String {
    top() + &pgp_body()
}

fn with(from: &str, to: &str) -> Vec<u8> {
    let v = valid();
    assert!(v.contains(from), "{from:?} not in the valid message");
    v.replacen(from, to, 1).into_bytes()
}

fn gzip_with_comment(comment: &[u8], data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new()
        .comment(comment)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

const CLEARTEXT: &str =
    "From: CEO <ceo@bank.example>\r\nSubject: urgent\r\n\r\nWire the money now.\r\n";

struct Case {
    name: &'static str,
    message: Vec<u8>,
    outgoing: Expect,
    incoming: Expect,
}

fn case(name: &'static str, message: impl Into<Vec<u8>>, both: Expect) -> Case {
    Case {
        name,
        message: message.into(),
        outgoing: both,
        incoming: both,
    }
}

fn cases() -> Vec<Case> {
    let armor = armor();
    let b64 = |s: &str| {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(s);
        encoded
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap() + "\r\n")
            .collect::<String>()
    };
    let payload_with = |headers: &str, content: &str| format!("{headers}\r\n\r\n{content}");
    let pgp_with = |version: String, payload: String| top() + &body(B, &[version, payload], "");
    let octet = "Content-Type: application/octet-stream";
    let mut v = vec![
        case("the valid message", valid(), Accept),
        // Issue 9, hole 1: a gzip member, PGP/MIME in its comment, cleartext inside.
        case(
            "gzip member with PGP/MIME in FCOMMENT",
            gzip_with_comment(format!("\r\n{}", valid()).as_bytes(), CLEARTEXT.as_bytes()),
            PARSE,
        ),
        case(
            "gzip magic then a header-looking line",
            [&b"\x1f\x8b\x08\x10: x\r\n"[..], valid().as_bytes()].concat(),
            PARSE,
        ),
        // Issue 9, hole 3: two boundary parameters, a cleartext part under the second.
        case(
            "duplicate boundary parameter",
            headers_with(&format!(
                "multipart/encrypted; boundary=\"{B}\"; boundary=\"B\""
            )) + "--B\r\nContent-Type: text/plain\r\n\r\nWire the money now.\r\n"
                + &pgp_body(),
            PARSE,
        ),
        case(
            "duplicate boundary, other case",
            with("boundary=", "BOUNDARY=\"X\"; boundary="),
            PARSE,
        ),
        case(
            "boundary in RFC 2231 form",
            with(&format!("boundary=\"{B}\""), &format!("boundary*=''{B}")),
            PARSE,
        ),
        case(
            "boundary in RFC 2231 continuations",
            with(
                &format!("boundary=\"{B}\""),
                &format!("boundary*0=\"{}\"; boundary*1=\"{}\"", &B[..5], &B[5..]),
            ),
            PARSE,
        ),
        case(
            "boundary next to an RFC 2231 continuation",
            with("boundary=", "boundary*1=\"X\"; boundary="),
            PARSE,
        ),
        case(
            "escaped quote in the boundary",
            with(&format!("\"{B}\""), &format!("\"{B}\\\"x\"")),
            PARSE,
        ),
        case(
            "semicolon in a quoted boundary",
            with(&format!("\"{B}\""), &format!("\"{B};x\"")),
            PARSE,
        ),
        case(
            "unterminated quoted boundary",
            with(&format!("\"{B}\""), &format!("\"{B}")),
            PARSE,
        ),
        case(
            "text after the quoted boundary",
            with(&format!("\"{B}\""), &format!("\"{B}\"x")),
            PARSE,
        ),
        case(
            "comment in Content-Type",
            with("multipart/encrypted;", "multipart/encrypted (x; boundary=\"B\");"),
            PARSE,
        ),
        case(
            "encoded word in Content-Type",
            with("multipart/encrypted", "=?utf-8?q?multipart/encrypted?="),
            PARSE,
        ),
        case(
            "non-ASCII in Content-Type",
            with("protocol=", "x=\"\u{a0}\"; protocol="),
            PARSE,
        ),
        case(
            "media type followed by a word",
            with("multipart/encrypted;", "multipart/encrypted x;"),
            PARSE,
        ),
        case(
            "parameter without a value",
            with("protocol=", "junk; protocol="),
            PARSE,
        ),
        case(
            "seventeen parameters",
            with(
                "protocol=",
                &(0..15).map(|i| format!("p{i}=v; ")).collect::<String>(),
            ),
            PARSE,
        ),
        case(
            "folded line break inside the quoted boundary",
            with(&format!("\"{B}\""), &format!("\"{}\r\n {}\"", &B[..4], &B[4..])),
            PARSE,
        ),
        case(
            "two Content-Type fields, same value",
            with("MIME-Version", &format!("Content-Type: multipart/encrypted; boundary=\"{B}\"\r\nMIME-Version")),
            PARSE,
        ),
        case(
            "two Content-Type fields, second text/plain",
            with("\r\n\r\n--", "\r\nContent-Type: text/plain\r\n\r\n--"),
            PARSE,
        ),
        case(
            "base64 transfer encoding on the multipart",
            with("MIME-Version", "Content-Transfer-Encoding: base64\r\nMIME-Version"),
            PARSE,
        ),
        case(
            "quoted-printable transfer encoding on the multipart",
            with("MIME-Version", "Content-Transfer-Encoding: quoted-printable\r\nMIME-Version"),
            PARSE,
        ),
        case(
            "7bit transfer encoding on the multipart",
            with("MIME-Version", "Content-Transfer-Encoding: 7bit\r\nMIME-Version"),
            Accept,
        ),
        case(
            "two transfer encodings on the multipart",
            with(
                "MIME-Version",
                "Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version",
            ),
            PARSE,
        ),
        case(
            "tab before the multipart's transfer encoding",
            with("MIME-Version", "Content-Transfer-Encoding:\t7bit\r\nMIME-Version"),
            PARSE,
        ),
        case("whitespace before a colon", with("To:", "To :"), PARSE),
        case("tab before a colon", with("To:", "To\t:"), PARSE),
        case("CR before a colon", with("To:", "To\r:"), PARSE),
        case("first line folded", with("From:", " From:"), PARSE),
        case("first line starts with a tab", with("From:", "\tFrom:"), PARSE),
        case("header line without a colon", with("MIME-Version", "Garbage line\r\nMIME-Version"), PARSE),
        case("header name with a space", with("MIME-Version", "X Y: z\r\nMIME-Version"), PARSE),
        case("control character in a header", with("[...]", "[\x01]"), PARSE),
        case("DEL in a header", with("[...]", "[\x7f]"), PARSE),
        case("escape sequence in a header", with("[...]", "\x1b[31m"), PARSE),
        case("NUL in a header", with("[...]", "[\0]"), PARSE),
        case("NUL in the preamble", top() + "\0\r\n" + &pgp_body(), PARSE),
        case("NUL after the close delimiter", valid() + "\0", PARSE),
        case("NUL in the version part", with("Version: 1", "Version: 1\0"), PARSE),
        case("bare CR in a header", with("[...]", "[.\r.]"), PARSE),
        case("bare CR in the body", top() + "x\ry\r\n" + &pgp_body(), PARSE),
        case("CR CR LF", with("MIME-Version: 1.0\r\n", "MIME-Version: 1.0\r\r\n"), PARSE),
        case("bare CR before the header end", with("\r\n\r\n--", "\r\n\r\r\n--"), PARSE),
        case("two From fields", with("To:", &format!("From: <{ALICE}>\r\nTo:")), PARSE),
        // Found by fuzz/policy_differential: mailparse keeps the space.
        case(
            "space inside the From angle brackets",
            with(&format!("From: <{ALICE}>"), &format!("From:< {ALICE}>")),
            PARSE,
        ),
        case(
            "comment inside a bare From address",
            with(&format!("From: <{ALICE}>"), "From: alice(x)@example.org"),
            PARSE,
        ),
        case(
            "obsolete route in From",
            with(&format!("From: <{ALICE}>"), &format!("From: <@r.example:{ALICE}>")),
            PARSE,
        ),
        // Found by fuzz/policy_differential in CI: a group around the address, 8-bit
        // bytes and a malformed encoded word made mailparse read another address.
        case(
            "group syntax around the From address",
            with(&format!("From: <{ALICE}>"), &format!("From: x: <{ALICE}>;")),
            PARSE,
        ),
        case(
            "two From mailboxes",
            with(&format!("From: <{ALICE}>"), &format!("From: <{ALICE}>, <{BOB}>")),
            PARSE,
        ),
        case(
            "comment after the From address",
            with(&format!("From: <{ALICE}>"), &format!("From: <{ALICE}> (x)")),
            PARSE,
        ),
        // Found by fuzz/policy_differential: mailparse pairs runs of quotes otherwise.
        case(
            "two quoted strings in the From display name",
            with(&format!("From: <{ALICE}>"), &format!("From: \"a\" \"<b\" <{ALICE}>")),
            PARSE,
        ),
        case(
            "quoted From display name",
            with(&format!("From: <{ALICE}>"), &format!("From: \"Alice, A.\" <{ALICE}>")),
            Accept,
        ),
        case(
            "display name with an encoded word",
            with(&format!("From: <{ALICE}>"), &format!("From: =?utf-8?q?A=C3=A4?= <{ALICE}>")),
            Accept,
        ),
        case("no From field", with(&format!("From: <{ALICE}>\r\n"), ""), PARSE),
        case("empty message", "", PARSE),
        case("body only", format!("\r\n{}", pgp_body()), PARSE),
        case("8-bit UTF-8 subject", with("[...]", "[\u{e4}\u{f6}\u{fc}]"), Accept),
        case("folded subject", with("[...]", "[...]\r\n [...]"), Accept),
        case("1000 header fields", with("MIME-Version", &("X-Filler: x\r\n".repeat(1000) + "MIME-Version")), Accept),
        case("100 KB subject", with("[...]", &"x".repeat(100_000)), Accept),
        case("upper-case media type", with("multipart/encrypted", "MULTIPART/ENCRYPTED"), Accept),
        case("unquoted boundary", with(&format!("\"{B}\""), B), Accept),
        case("trailing semicolon", with(&format!("\"{B}\""), &format!("\"{B}\";")), Accept),
        case("header only, no body", headers_with("text/plain"), E2EE),
        case("text/plain", headers_with("text/plain") + "hello\r\n", E2EE),
        case("multipart/mixed with the same parts", with("multipart/encrypted", "multipart/mixed"), E2EE),
        // Delimiters that another reader splits differently.
        case("delimiter prefix inside the payload", pgp_with(version_part(), payload_part().replacen("\r\n\r\n-----BEGIN", &format!("\r\n\r\n--{B}X\r\n-----BEGIN"), 1)), E2EE),
        case("line with the delimiter as prefix in the preamble", top() + &format!("--{B}X\r\n") + &pgp_body(), E2EE),
        case("close delimiter with trailing text", with(&format!("--{B}--"), &format!("--{B}--X")), E2EE),
        case("delimiter with trailing text", with(&format!("--{B}\r\nContent-Type: application/octet"), &format!("--{B}X\r\nContent-Type: application/octet")), E2EE),
        case("cleartext after the close delimiter", valid() + CLEARTEXT, E2EE),
        case("a cleartext part after the close delimiter", valid() + &format!("--{B}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{B}--\r\n"), E2EE),
        case("blank lines after the close delimiter", valid() + "\r\n \r\n\t\r\n", Accept),
        case("close delimiter without a line ending", valid().trim_end().to_string(), Accept),
        case("transport padding on delimiters", valid().replace(&format!("--{B}\r\n"), &format!("--{B} \t\r\n")), Accept),
        case("preamble text", top() + "This is an OpenPGP/MIME encrypted message.\r\n" + &pgp_body(), Accept),
        case("boundary that makes the armor line a delimiter",
            headers_with("multipart/encrypted; boundary=\"---BEGIN\"") + &body("---BEGIN", &[version_part(), payload_part()], ""), E2EE),
        case("boundary with a space", headers_with("multipart/encrypted; boundary=\"a b\"") + &body("a b", &[version_part(), payload_part()], ""), E2EE),
        case("empty boundary", headers_with("multipart/encrypted; boundary=\"\"") + &body("", &[version_part(), payload_part()], ""), E2EE),
        case("201-character boundary", headers_with(&format!("multipart/encrypted; boundary=\"{}\"", "a".repeat(201))) + &body(&"a".repeat(201), &[version_part(), payload_part()], ""), E2EE),
        case("200-character boundary", headers_with(&format!("multipart/encrypted; boundary=\"{}\"", "a".repeat(200))) + &body(&"a".repeat(200), &[version_part(), payload_part()], ""), Accept),
        case("no boundary parameter", with(&format!("; boundary=\"{B}\""), ""), E2EE),
        case("no close delimiter", with(&format!("--{B}--\r\n"), ""), E2EE),
        // Part structure.
        case("a third part", top() + &body(B, &[version_part(), payload_part(), "Content-Type: text/plain\r\n\r\nhi\r\n".into()], ""), E2EE),
        case("only the version part", top() + &body(B, &[version_part()], ""), E2EE),
        case("parts swapped", top() + &body(B, &[payload_part(), version_part()], ""), E2EE),
        case(
            "Version: 2",
            with("\r\n\r\nVersion: 1", "\r\n\r\nVersion: 2"),
            E2EE,
        ),
        case("version part base64", pgp_with(payload_with("Content-Type: application/pgp-encrypted\r\nContent-Transfer-Encoding: base64", &b64("Version: 1")).replacen("\r\n\r\n\r\n", "\r\n\r\n", 1), payload_part()), Accept),
        case("version part quoted-printable", pgp_with("Content-Type: application/pgp-encrypted\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nVersion:=201\r\n".into(), payload_part()), Accept),
        case("payload base64", pgp_with(version_part(), format!("{octet}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}", b64(&armor))), Accept),
        case("payload quoted-printable", pgp_with(version_part(), format!("{octet}\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{armor}")), E2EE),
        case("payload unknown encoding", pgp_with(version_part(), format!("{octet}\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n{armor}")), E2EE),
        case("payload encoding with trailing space", pgp_with(version_part(), format!("{octet}\r\nContent-Transfer-Encoding: 7bit \r\n\r\n{armor}")), E2EE),
        case("payload encoding given twice", pgp_with(version_part(), format!("{octet}\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\n{armor}")), E2EE),
        case("payload Content-Type given twice", pgp_with(version_part(), format!("{octet}\r\nContent-Type: text/plain\r\n\r\n{armor}")), E2EE),
        case("payload Content-Type with two names", pgp_with(version_part(), format!("{octet}; name=a; name=b\r\n\r\n{armor}")), E2EE),
        case("payload Content-Type with a comment", pgp_with(version_part(), format!("{octet} (x)\r\n\r\n{armor}")), E2EE),
        case("payload text/plain", pgp_with(version_part(), format!("Content-Type: text/plain\r\n\r\n{armor}")), E2EE),
        case("payload multipart", pgp_with(version_part(), format!("Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n{}\r\n--c--\r\n", payload_part())), E2EE),
        case("payload without Content-Type", pgp_with(version_part(), format!("\r\n{armor}")), E2EE),
        case("payload header line without colon", pgp_with(version_part(), format!("{octet}\r\ngarbage\r\n\r\n{armor}")), E2EE),
        case("payload header with space before colon", pgp_with(version_part(), format!("Content-Type : application/octet-stream\r\n\r\n{armor}")), E2EE),
        case("payload without a blank line", pgp_with(version_part(), format!("{octet}\r\n{armor}")), E2EE),
        case("text after the END line", pgp_with(version_part(), payload_part() + "cleartext\r\n"), E2EE),
        case("two armor blocks", pgp_with(version_part(), payload_part() + &armor), E2EE),
        case("armor with LF line endings", pgp_with(version_part(), payload_part().replace("\r\n", "\n")), Accept),
        Case {
            name: "armor with a Comment header",
            message: pgp_with(version_part(), payload_part().replacen("-----\r\n\r\n", "-----\r\nComment: x\r\n\r\n", 1))
                .into(),
            outgoing: E2EE,
            incoming: Accept,
        },
        case("version part duplicate Content-Type", pgp_with("Content-Type: application/pgp-encrypted\r\nContent-Type: text/plain\r\n\r\nVersion: 1\r\n".into(), payload_part()), E2EE),
        case("version part text/plain", pgp_with("Content-Type: text/plain\r\n\r\nVersion: 1\r\n".into(), payload_part()), E2EE),
        case("version part 5 KB", pgp_with(format!("Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1{}\r\n", " ".repeat(5000)), payload_part()), E2EE),
        Case {
            name: "armor Version header",
            message: pgp_with(version_part(), payload_part().replacen("-----\r\n\r\n", "-----\r\nVersion: X\r\n\r\n", 1)).into(),
            outgoing: E2EE,
            incoming: Accept,
        },
        case("over the size limit", with("[...]", &"x".repeat(31 * 1024 * 1024)), Code(552)),
    ];
    // Secure-Join: the one cleartext exception.
    let sj = |extra: &str, parts: &[String]| {
        format!(
            "From: <{ALICE}>\r\nTo: <{BOB}>\r\nSecure-Join: vc-request\r\n{extra}\
             Content-Type: multipart/mixed; boundary=\"sj\"\r\n\r\n"
        ) + &body("sj", parts, "")
    };
    let sj_part = || "Content-Type: text/plain\r\n\r\nsecure-join: vc-request\r\n".to_string();
    v.extend([
        case("secure-join request", sj("", &[sj_part()]), Accept),
        case(
            "secure-join header twice",
            sj("Secure-Join: vc-request\r\n", &[sj_part()]),
            E2EE,
        ),
        case(
            "secure-join with a second part",
            sj("", &[sj_part(), sj_part()]),
            E2EE,
        ),
        case(
            "secure-join part base64",
            sj(
                "",
                &[format!(
                    "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    b64("secure-join: vc-request")
                )],
            ),
            Accept,
        ),
        case(
            "secure-join part with other text",
            sj("", &[sj_part() + "hello\r\n"]),
            E2EE,
        ),
        case(
            "secure-join with text after the close",
            sj("", &[sj_part()]) + "hidden\r\n",
            E2EE,
        ),
        case(
            "secure-join part header without colon",
            sj("", &["garbage\r\n".to_string() + &sj_part()]),
            E2EE,
        ),
    ]);
    v
}

fn verdict(direction: Direction, message: &[u8]) -> Expect {
    let policy = Policy::new(PolicyConfig::from(
        &chatmail_core::config::Config::with_domain("example.org"),
    ));
    let recipients = vec![BOB.to_string()];
    let env = Envelope {
        auth_user: (direction == Direction::Outgoing).then_some(ALICE),
        mail_from: ALICE,
        recipients: &recipients,
    };
    match policy.check_message(direction, &env, message, &|_| false) {
        Verdict::Accept(_) => Accept,
        Verdict::Reject(reply) => Code(reply.code),
    }
}

#[test]
fn every_hostile_message_gets_its_answer() {
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        for (direction, expected) in [
            (Direction::Outgoing, c.outgoing),
            (Direction::Incoming, c.incoming),
        ] {
            let got = verdict(direction, &c.message);
            if got != expected {
                wrong.push(format!(
                    "{} ({direction:?}): {got:?}, expected {expected:?}",
                    c.name
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With `CHATMAIL_POLICY_SEEDS=<dir>`, writes every case as a seed for the fuzz
/// targets (first byte: 0 outgoing, 1 incoming, as `fuzz/fuzz_targets/policy_*.rs`
/// read it): `CHATMAIL_POLICY_SEEDS=fuzz/corpus/policy_differential cargo test -p
/// chatmail-policy --test hostile`.
#[test]
fn write_fuzz_seeds_when_asked() {
    let Some(dir) = std::env::var_os("CHATMAIL_POLICY_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = ["encrypted.eml", "securejoin-vc.eml", "plain.eml", "asm.eml"]
        .map(|name| fixture(name).into_bytes());
    let messages = cases()
        .into_iter()
        .map(|c| c.message)
        .filter(|m| m.len() < 1 << 20)
        .chain(fixtures);
    for (i, message) in messages.enumerate() {
        for selector in [0u8, 1] {
            let seed = [&[selector][..], &message].concat();
            std::fs::write(dir.join(format!("seed-{i:03}-{selector}")), seed).unwrap();
        }
    }
}
