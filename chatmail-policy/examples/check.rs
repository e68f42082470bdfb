//! Prints the SMTP reply the relay's policy gives to one message, for scripts and for
//! running the reference fixtures as they are.
//!
//! ```text
//! cargo run --release -p chatmail-policy --example check -- \
//!     --direction outgoing|incoming --mail-from ADDR --rcpt ADDR [--rcpt ADDR ...] \
//!     [--auth USER] [--allow-cleartext] FILE
//! ```
//!
//! Placeholders `{from_addr}`, `{to_addr}` and `{subject}` in FILE become the MAIL FROM,
//! the first RCPT and `[...]`. Incoming recipients count as having `enforceE2EEincoming`
//! unless `--allow-cleartext` is given; no DKIM origin check is made. Exit status: 0 on
//! accept, 1 on reject, 2 on a usage or I/O error.

use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: check --direction outgoing|incoming --mail-from ADDR --rcpt ADDR \
[--rcpt ADDR ...] [--auth USER] [--allow-cleartext] FILE";

struct Args {
    direction: Direction,
    mail_from: String,
    recipients: Vec<String>,
    auth: Option<String>,
    allow_cleartext: bool,
    file: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut direction, mut mail_from, mut auth, mut file) = (None, None, None, None);
    let mut recipients = Vec::new();
    let mut allow_cleartext = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--direction" => {
                direction = Some(match value("--direction")?.as_str() {
                    "outgoing" => Direction::Outgoing,
                    "incoming" => Direction::Incoming,
                    other => return Err(format!("unknown direction {other:?}")),
                })
            }
            "--mail-from" => mail_from = Some(value("--mail-from")?),
            "--rcpt" => recipients.push(value("--rcpt")?),
            "--auth" => auth = Some(value("--auth")?),
            "--allow-cleartext" => allow_cleartext = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if file.is_none() => file = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if recipients.is_empty() {
        return Err("at least one --rcpt is needed".into());
    }
    Ok(Args {
        direction: direction.ok_or("--direction is required")?,
        mail_from: mail_from.ok_or("--mail-from is required")?,
        recipients,
        auth,
        allow_cleartext,
        file: file.ok_or("FILE is required")?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("check: cannot read {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };
    let message = substitute(&text, &args.mail_from, &args.recipients[0]);
    let domain = args.mail_from.rsplit('@').next().unwrap_or("localhost");
    let config = chatmail_core::config::Config::with_domain(domain);
    let policy = Policy::new(PolicyConfig::from(&config));

    if let (Direction::Outgoing, Some(login)) = (args.direction, &args.auth) {
        if let Err(reply) = policy.check_sender(login, &args.mail_from, Instant::now()) {
            println!("{reply}");
            return ExitCode::from(1);
        }
    }
    let envelope = Envelope {
        auth_user: args.auth.as_deref(),
        mail_from: &args.mail_from,
        recipients: &args.recipients,
    };
    let allow = args.allow_cleartext;
    match policy.check_message(args.direction, &envelope, &message, &|_| allow) {
        Verdict::Accept(accepted) if accepted.reset_envelope_sender() => {
            println!("250 OK (envelope sender reset to <>)");
            ExitCode::SUCCESS
        }
        Verdict::Accept(_) => {
            println!("250 OK");
            ExitCode::SUCCESS
        }
        Verdict::Reject(reply) => {
            println!("{reply}");
            ExitCode::from(1)
        }
    }
}

/// Replaces the fixture placeholders byte-wise (fixtures need not be UTF-8).
fn substitute(text: &[u8], from: &str, to: &str) -> Vec<u8> {
    let pairs: [(&[u8], &[u8]); 3] = [
        (b"{from_addr}", from.as_bytes()),
        (b"{to_addr}", to.as_bytes()),
        (b"{subject}", b"[...]"),
    ];
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        for (placeholder, value) in pairs {
            if text[i..].starts_with(placeholder) {
                out.extend_from_slice(value);
                i += placeholder.len();
                continue 'outer;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}
