//! Any bytes as a zone file (`resolver = static:PATH`): an error naming a line, or a
//! zone whose lookups answer without a panic or an endless CNAME walk.
#![no_main]
use chatmail_core::dns::{Answer, RecordType, StaticZone};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match StaticZone::parse(&text) {
        Err(error) => assert!(error.line <= text.lines().count()),
        Ok(zone) => {
            // Ask for every name the text mentions, and a few it does not.
            let names = text
                .split(|c: char| c.is_whitespace() || c == '"')
                .filter(|w| w.contains('.'))
                .take(32)
                .chain(["@", ".", "example.org."]);
            for name in names {
                for kind in [
                    RecordType::A,
                    RecordType::Aaaa,
                    RecordType::Mx,
                    RecordType::Txt,
                    RecordType::Cname,
                    RecordType::Srv,
                ] {
                    if let Ok(Answer::Records(records)) = zone.answer(name, kind) {
                        assert!(records.iter().all(|r| r.record_type() == kind));
                    }
                }
            }
        }
    }
});
