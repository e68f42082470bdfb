//! chatmail-core's parsers of untrusted text: login names, new-account checks, stored
//! password hashes (from a password file someone else may have written), Dovecot maildir
//! file names (expiry), IMAP flags. Any input: a value or an error, never a panic.
#![no_main]
use chatmail_core::account::{check_new_account, parse_login, PasswordHash};
use chatmail_core::config::Config;
use chatmail_core::fuzzing::parse_dovecot_name;
use chatmail_core::Flag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config = Config::with_domain("chat.example.org");
    let (login, password) = text.split_once('\n').unwrap_or((&text, "password123"));
    if let Ok(address) = parse_login(&config, login) {
        let _ = check_new_account(&config, login, &address, password);
    }
    // A stored `rounds=` up to the parser's cap (1,000,000) is legal but takes a second
    // to verify; such inputs only get their scheme parsed, to keep each run fast.
    let stored = PasswordHash::from_stored(&text);
    if text.contains("rounds=") {
        let _ = stored.scheme();
    } else if text.len() < 512 {
        let _ = stored.verify("password123");
    }
    let _ = parse_dovecot_name(&text);
    let _ = Flag::from_imap(&text);
});
