//! The DNS records a relay needs published (spec 4.7, what the reference's `cmdeploy dns`
//! asks for), in the zone-file form [`chatmail_core::dns::StaticZone`] reads, so the
//! output of `relay dns` can also serve as a test network's zone.

use std::time::{SystemTime, UNIX_EPOCH};

use chatmail_core::config::Config;

use super::sign::DkimSigner;

/// TTL of every record (spec 4.7).
const TTL: u32 = 3600;

/// Longest character-string in a TXT record (RFC 1035 3.3): longer values are split
/// into several, which resolvers concatenate.
const MAX_TXT_STRING: usize = 255;

/// The records to publish for `config.mail_domain`, one zone-file line each
/// (`NAME TTL IN TYPE RDATA`, absolute names), the address records as `;` comments
/// saying what to add (the relay does not know its public address). `now` dates the
/// MTA-STS policy id. Empty for an IPv4-only relay: nothing is published (spec 1.3).
pub fn published_records(config: &Config, signer: &DkimSigner, now: SystemTime) -> Vec<String> {
    if config.is_ipv4_relay() {
        return Vec::new();
    }
    let d = format!("{}.", config.mail_domain.trim_end_matches('.'));
    let record = |name: &str, kind: &str, rdata: &str| format!("{name} {TTL} IN {kind} {rdata}");
    let txt = |name: &str, value: &str| record(name, "TXT", &quoted(value));
    let mut lines = vec![
        "; Required: the relay's public addresses (at least one of the two).".to_string(),
        format!("; {d} {TTL} IN A <public IPv4 address>"),
        format!("; {d} {TTL} IN AAAA <public IPv6 address>"),
        record(&d, "MX", &format!("10 {d}")),
    ];
    // Domains starting with `_` are test domains no MTA-STS client sees (spec 4.7).
    if !d.starts_with('_') {
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0);
        let id = chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(0), 0)
            .unwrap_or_default()
            .format("%Y%m%d%H%M");
        lines.push(txt(&format!("_mta-sts.{d}"), &format!("v=STSv1; id={id}")));
        lines.push(record(&format!("mta-sts.{d}"), "CNAME", &d));
    }
    lines.push(record(&format!("www.{d}"), "CNAME", &d));
    lines.push(txt(&signer.dns_name(), &signer.dns_txt_value()));
    lines.push("; Recommended.".to_string());
    lines.push(txt(&d, "v=spf1 a ~all"));
    lines.push(txt(
        &format!("_dmarc.{d}"),
        "v=DMARC1;p=reject;adkim=s;aspf=s",
    ));
    lines.push(txt(&format!("_adsp._domainkey.{d}"), "dkim=discardable"));
    for (service, port) in [
        ("_submission._tcp", 587),
        ("_submissions._tcp", 465),
        ("_imap._tcp", 143),
        ("_imaps._tcp", 993),
    ] {
        lines.push(record(
            &format!("{service}.{d}"),
            "SRV",
            &format!("0 1 {port} {d}"),
        ));
    }
    lines
}

/// `value` as one or more quoted character-strings of at most 255 bytes. Values here
/// are ASCII without quotes or backslashes (base64 keys, tags), so nothing needs
/// escaping and a split never cuts a character.
fn quoted(value: &str) -> String {
    value
        .as_bytes()
        .chunks(MAX_TXT_STRING)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect::<Vec<_>>()
        .join(" ")
}
