//! A static zone: the resolver of tests and closed networks (config `resolver =
//! static:PATH`), read from a subset of the RFC 1035 master file format.
//!
//! One record per line: `NAME [TTL] [IN] TYPE RDATA` (TTL and class in either order).
//! Names ending in `.` are absolute, others are relative to `$ORIGIN`; `@` is the origin;
//! a line starting with a blank repeats the previous owner. `$ORIGIN` and `$TTL`
//! directives; `;` starts a comment outside quotes. Types: A, AAAA, MX, TXT (one or more
//! quoted strings, concatenated; `\"`, `\\` and `\DDD` escapes), CNAME, SRV
//! (`priority weight port target`). Multi-line
//! records in parentheses are not part of the subset and are refused. A name absent from
//! the zone is NXDOMAIN; a name without the asked type has no data; CNAMEs are followed
//! (at most [`MAX_CNAME_CHAIN`] of them).
//!
//! The file is a peer's input as much as any (an operator's typo, a generated file): it
//! is bounded in size, line length and records, and every error names its line.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::resolver::{absolute, Answer, Record, RecordType, Resolver, TemporaryFailure};

/// Largest zone file read.
pub const MAX_ZONE_BYTES: usize = 16 * 1024 * 1024;
/// Longest line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most records in one zone.
pub const MAX_RECORDS: usize = 1_000_000;
/// CNAMEs followed in one lookup before it counts as a loop (a temporary failure, as a
/// real resolver reports SERVFAIL).
pub const MAX_CNAME_CHAIN: usize = 8;
/// Longest domain name (RFC 1035 2.3.4, in presentation form with the trailing dot).
const MAX_NAME_BYTES: usize = 254;

/// A line of the zone file that is not in the subset, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone line {line}: {reason}")]
pub struct ZoneError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The records of a zone file, answering lookups from memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticZone {
    /// Absolute lower-case owner name → its records, in file order.
    names: HashMap<String, Vec<Record>>,
    records: usize,
}

impl StaticZone {
    /// Reads and parses the zone file at `path`.
    pub fn load(path: &Path) -> Result<StaticZone, ZoneError> {
        let whole = |reason: String| ZoneError { line: 0, reason };
        let meta =
            std::fs::metadata(path).map_err(|e| whole(format!("{}: {e}", path.display())))?;
        if meta.len() > MAX_ZONE_BYTES as u64 {
            return Err(whole(format!("larger than {MAX_ZONE_BYTES} bytes")));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| whole(format!("{}: {e}", path.display())))?;
        StaticZone::parse(&text)
    }

    /// Parses zone file text.
    pub fn parse(text: &str) -> Result<StaticZone, ZoneError> {
        if text.len() > MAX_ZONE_BYTES {
            return Err(ZoneError {
                line: 0,
                reason: format!("larger than {MAX_ZONE_BYTES} bytes"),
            });
        }
        let mut zone = StaticZone::default();
        let mut origin: Option<String> = None;
        let mut owner: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |reason: String| ZoneError { line, reason };
            if raw.len() > MAX_LINE_BYTES {
                return Err(fail(format!("longer than {MAX_LINE_BYTES} bytes")));
            }
            let tokens = tokenize(raw).map_err(fail)?;
            let Some(first) = tokens.first() else {
                continue;
            };
            let inherits_owner = raw.starts_with([' ', '\t']);
            match first {
                Token::Word(w) if !inherits_owner && w.eq_ignore_ascii_case("$ORIGIN") => {
                    let [_, Token::Word(name)] = tokens.as_slice() else {
                        return Err(fail("$ORIGIN takes one name".into()));
                    };
                    let name = resolve_name(name, origin.as_deref()).map_err(fail)?;
                    origin = Some(name);
                    continue;
                }
                Token::Word(w) if !inherits_owner && w.eq_ignore_ascii_case("$TTL") => {
                    match tokens.as_slice() {
                        [_, Token::Word(ttl)] if ttl.parse::<u32>().is_ok() => continue,
                        _ => return Err(fail("$TTL takes one number of seconds".into())),
                    }
                }
                Token::Word(w) if !inherits_owner && w.starts_with('$') => {
                    return Err(fail(format!("directive {w} is not supported")));
                }
                _ => {}
            }
            let mut rest = tokens.as_slice();
            let name = if inherits_owner {
                owner
                    .clone()
                    .ok_or_else(|| fail("no previous owner name".into()))?
            } else {
                let Some((Token::Word(name), tail)) = rest.split_first() else {
                    return Err(fail("the owner name must not be quoted".into()));
                };
                rest = tail;
                resolve_name(name, origin.as_deref()).map_err(fail)?
            };
            // [TTL] [IN] in either order.
            for _ in 0..2 {
                match rest.first() {
                    Some(Token::Word(w))
                        if w.eq_ignore_ascii_case("IN") || w.parse::<u32>().is_ok() =>
                    {
                        rest = &rest[1..];
                    }
                    _ => break,
                }
            }
            let Some((Token::Word(kind), rdata)) = rest.split_first() else {
                return Err(fail("a record type is missing".into()));
            };
            let record = parse_rdata(kind, rdata, origin.as_deref()).map_err(fail)?;
            if zone.records >= MAX_RECORDS {
                return Err(fail(format!("more than {MAX_RECORDS} records")));
            }
            zone.records += 1;
            zone.names.entry(name.clone()).or_default().push(record);
            owner = Some(name);
        }
        Ok(zone)
    }

    /// How many records the zone holds.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the zone holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The answer from memory, following CNAMEs.
    pub fn answer(&self, name: &str, kind: RecordType) -> Result<Answer, TemporaryFailure> {
        let mut name = absolute(name);
        for _ in 0..=MAX_CNAME_CHAIN {
            let Some(records) = self.names.get(&name) else {
                return Ok(Answer::NxDomain);
            };
            let found: Vec<Record> = records
                .iter()
                .filter(|r| r.record_type() == kind)
                .cloned()
                .collect();
            if !found.is_empty() {
                return Ok(Answer::Records(found));
            }
            match records.iter().find_map(|r| match r {
                Record::Cname(target) => Some(target.clone()),
                _ => None,
            }) {
                Some(target) => name = target,
                None => return Ok(Answer::NoData),
            }
        }
        Err(TemporaryFailure(format!(
            "more than {MAX_CNAME_CHAIN} CNAMEs from {name}"
        )))
    }
}

#[async_trait::async_trait]
impl Resolver for StaticZone {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Answer, TemporaryFailure> {
        self.answer(name, kind)
    }
}

/// A word of a zone line, or a quoted string with its escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
}

/// Splits a line into words and quoted strings, up to a `;` comment.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ';' => break,
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => return Err("parentheses (multi-line records) are not supported".into()),
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err("a quoted string is not closed".into()),
                        Some('"') => break,
                        Some('\\') => text.push(escape(&mut chars)?),
                        Some(c) => text.push(c),
                    }
                }
                tokens.push(Token::Quoted(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '"' | '(' | ')') {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        word.push(escape(&mut chars)?);
                    } else {
                        word.push(c);
                    }
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// The character after a backslash: `\DDD` (a decimal byte value, ASCII here) or the
/// character itself.
fn escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    let first = chars.next().ok_or("a backslash ends the line")?;
    if !first.is_ascii_digit() {
        return Ok(first);
    }
    let mut value = first.to_digit(10).unwrap_or(0);
    for _ in 0..2 {
        let digit = chars
            .next()
            .and_then(|c| c.to_digit(10))
            .ok_or("\\DDD needs three digits")?;
        value = value * 10 + digit;
    }
    match u8::try_from(value) {
        Ok(byte) if byte.is_ascii() => Ok(char::from(byte)),
        _ => Err(format!("\\{value:03} is not an ASCII character")),
    }
}

/// `name` as an absolute lower-case name: `@` is the origin, a name without the trailing
/// dot is relative to it.
fn resolve_name(name: &str, origin: Option<&str>) -> Result<String, String> {
    let full = if name == "@" {
        origin.ok_or("@ without $ORIGIN")?.to_string()
    } else if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        let origin = origin.ok_or_else(|| format!("relative name {name} without $ORIGIN"))?;
        if origin == "." {
            format!("{}.", name.to_ascii_lowercase())
        } else {
            format!("{}.{origin}", name.to_ascii_lowercase())
        }
    };
    let valid = full == "."
        || (full.len() <= MAX_NAME_BYTES
            && full[..full.len() - 1].split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
            }));
    if valid {
        Ok(full)
    } else {
        Err(format!("{name} is not a domain name"))
    }
}

/// The data of one record of type `kind`.
fn parse_rdata(kind: &str, rdata: &[Token], origin: Option<&str>) -> Result<Record, String> {
    let words = || -> Result<Vec<&str>, String> {
        rdata
            .iter()
            .map(|t| match t {
                Token::Word(w) => Ok(w.as_str()),
                Token::Quoted(_) => Err(format!("{kind} data is not quoted")),
            })
            .collect()
    };
    match kind.to_ascii_uppercase().as_str() {
        "A" => match words()?.as_slice() {
            [ip] => ip
                .parse::<Ipv4Addr>()
                .map(Record::A)
                .map_err(|_| format!("{ip} is not an IPv4 address")),
            _ => Err("A takes one address".into()),
        },
        "AAAA" => match words()?.as_slice() {
            [ip] => ip
                .parse::<Ipv6Addr>()
                .map(Record::Aaaa)
                .map_err(|_| format!("{ip} is not an IPv6 address")),
            _ => Err("AAAA takes one address".into()),
        },
        "MX" => match words()?.as_slice() {
            [preference, exchange] => Ok(Record::Mx {
                preference: preference
                    .parse()
                    .map_err(|_| format!("{preference} is not an MX preference"))?,
                exchange: resolve_name(exchange, origin)?,
            }),
            _ => Err("MX takes a preference and a host".into()),
        },
        "CNAME" => match words()?.as_slice() {
            [target] => Ok(Record::Cname(resolve_name(target, origin)?)),
            _ => Err("CNAME takes one name".into()),
        },
        "SRV" => match words()?.as_slice() {
            [priority, weight, port, target] => {
                let number = |what: &str, value: &str| {
                    value
                        .parse::<u16>()
                        .map_err(|_| format!("{value} is not an SRV {what}"))
                };
                Ok(Record::Srv {
                    priority: number("priority", priority)?,
                    weight: number("weight", weight)?,
                    port: number("port", port)?,
                    target: resolve_name(target, origin)?,
                })
            }
            _ => Err("SRV takes a priority, a weight, a port and a host".into()),
        },
        "TXT" => {
            if rdata.is_empty() {
                return Err("TXT takes one or more strings".into());
            }
            let mut text = String::new();
            for token in rdata {
                match token {
                    Token::Quoted(s) | Token::Word(s) => text.push_str(s),
                }
            }
            Ok(Record::Txt(text))
        }
        other => Err(format!("record type {other} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"
$ORIGIN _alpha.localhost.
$TTL 3600
@                IN MX 10 mail            ; a comment
mail        300  IN A 127.0.0.2
                    AAAA ::1
@                TXT "v=spf1 a:mail._alpha.localhost. " "-all"
opendkim._domainkey TXT ( "x" )
"#;

    #[test]
    fn parentheses_are_refused_with_their_line() {
        let error = StaticZone::parse(ZONE).unwrap_err();
        assert_eq!(error.line, 8);
        assert!(error.reason.contains("parentheses"), "{error}");
    }

    #[test]
    fn the_subset_parses_and_answers() {
        let text = ZONE.replace("( \"x\" )", "\"v=DKIM1; k=rsa; p=\\\"AB\\099\"");
        let zone = StaticZone::parse(&text).expect("zone");
        assert_eq!(zone.len(), 5);
        assert_eq!(
            zone.answer("_ALPHA.localhost", RecordType::Mx),
            Ok(Answer::Records(vec![Record::Mx {
                preference: 10,
                exchange: "mail._alpha.localhost.".into()
            }]))
        );
        assert_eq!(
            zone.answer("mail._alpha.localhost.", RecordType::Aaaa),
            Ok(Answer::Records(vec![Record::Aaaa(Ipv6Addr::LOCALHOST)]))
        );
        assert_eq!(
            zone.answer("_alpha.localhost", RecordType::Txt),
            Ok(Answer::Records(vec![Record::Txt(
                "v=spf1 a:mail._alpha.localhost. -all".into()
            )]))
        );
        assert_eq!(
            zone.answer("opendkim._domainkey._alpha.localhost", RecordType::Txt),
            Ok(Answer::Records(vec![Record::Txt(
                "v=DKIM1; k=rsa; p=\"ABc".into()
            )]))
        );
        assert_eq!(
            zone.answer("mail._alpha.localhost", RecordType::Mx),
            Ok(Answer::NoData)
        );
        assert_eq!(
            zone.answer("nope._alpha.localhost", RecordType::A),
            Ok(Answer::NxDomain)
        );
    }

    #[test]
    fn cnames_are_followed_and_loops_are_temporary_failures() {
        let zone = StaticZone::parse(
            "a.example. CNAME b.example.\nb.example. A 192.0.2.1\nx.example. CNAME y.example.\ny.example. CNAME x.example.\n",
        )
        .expect("zone");
        assert_eq!(
            zone.answer("a.example", RecordType::A),
            Ok(Answer::Records(vec![Record::A(Ipv4Addr::new(
                192, 0, 2, 1
            ))]))
        );
        assert_eq!(
            zone.answer("a.example", RecordType::Cname),
            Ok(Answer::Records(vec![Record::Cname("b.example.".into())]))
        );
        assert!(zone.answer("x.example", RecordType::A).is_err());
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, reason) in [
            ("a.example. A 300.1.1.1", "not an IPv4 address"),
            (
                "a.example. CAA 0 issue \"ca.example\"",
                "CAA is not supported",
            ),
            ("_imap._tcp.a.example. SRV 0 1 143", "SRV takes"),
            (
                "_imap._tcp.a.example. SRV 0 1 70000 a.example.",
                "not an SRV port",
            ),
            ("relative A 192.0.2.1", "without $ORIGIN"),
            ("a.example. TXT \"open", "not closed"),
            ("a..example. A 192.0.2.1", "not a domain name"),
            ("  A 192.0.2.1", "no previous owner"),
            ("$INCLUDE other.zone", "not supported"),
            ("a.example. MX 70000 b.", "not an MX preference"),
            ("a.example. TXT \"\\300\"", "not an ASCII character"),
        ] {
            let error = StaticZone::parse(text).unwrap_err();
            assert_eq!(error.line, 1, "{text}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn srv_records() {
        let zone = StaticZone::parse(
            "$ORIGIN a.example.\n_imaps._tcp 3600 IN SRV 0 1 993 a.example.\n_submission._tcp SRV 10 5 587 mail\n",
        )
        .expect("zone");
        assert_eq!(
            zone.answer("_imaps._tcp.a.example", RecordType::Srv),
            Ok(Answer::Records(vec![Record::Srv {
                priority: 0,
                weight: 1,
                port: 993,
                target: "a.example.".into()
            }]))
        );
        assert_eq!(
            zone.answer("_submission._tcp.a.example.", RecordType::Srv),
            Ok(Answer::Records(vec![Record::Srv {
                priority: 10,
                weight: 5,
                port: 587,
                target: "mail.a.example.".into()
            }]))
        );
        assert_eq!(
            zone.answer("_imaps._tcp.a.example", RecordType::Txt),
            Ok(Answer::NoData)
        );
    }

    #[test]
    fn null_mx_and_implicit_mx() {
        let zone =
            StaticZone::parse("nomail.example. MX 0 .\nhost.example. A 192.0.2.7\n").expect("zone");
        let mx = |d: &str| futures::executor::block_on(zone.mail_exchangers(d));
        use super::super::resolver::MailExchangers;
        assert_eq!(mx("nomail.example"), Ok(MailExchangers::NullMx));
        assert_eq!(
            mx("host.example"),
            Ok(MailExchangers::Implicit("host.example.".into()))
        );
        assert_eq!(mx("absent.example"), Ok(MailExchangers::NxDomain));
    }
}
