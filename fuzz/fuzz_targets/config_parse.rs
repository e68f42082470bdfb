//! Any bytes as a chatmail.ini: an error or a config, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = chatmail_core::config::Config::parse(&text) {
        let _ = c.tls_cert_mode();
        let _ = c.address_domain();
        // The storage URL is cut up to hide its password in Debug and in logs.
        let _ = c.storage.redacted();
        let _ = format!("{c:?}");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = chatmail_core::Address::parse(s);
    }
});
