//! Local delivery rate as one `maildir` INBOX grows: `Relay::deliver` of a 4 KB message
//! to one recipient while the INBOX holds 0, 2,500, 5,000 and 10,000 messages. The
//! delivery path (quota check, append with its fsyncs, the trim decision) should cost
//! the same at every size: a figure that falls as the mailbox grows means some step
//! reads the whole mailbox per delivery.
//!
//! Between the levels the INBOX is filled the quick way, with files written into `new/`
//! as Dovecot names them (no fsync), which the store then indexes once like mail taken
//! over from Dovecot. Each criterion iteration is one delivery, so `thrpt` is deliveries
//! per second; the deliveries measured add to the mailbox (a few hundred per level).
//! A delivery includes three fsyncs, so the figures follow the disk's fsync latency,
//! which other load on the machine moves: compare the levels within one run.
//!
//! Run: `cargo bench --bench mailbox_growth` (under a minute).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::InlineExecutor;
use chatmail::core::INBOX;
use chatmail::Relay;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;

const MESSAGE_SIZE: usize = 4096;
const USER: &str = "growth001@chat.example.org";
const LEVELS: [usize; 4] = [0, 2_500, 5_000, 10_000];

fn message() -> Bytes {
    let mut m =
        b"From: a@example.org\r\nTo: growth001@chat.example.org\r\nSubject: [...]\r\n\r\n".to_vec();
    m.resize(MESSAGE_SIZE - 2, b'x');
    m.extend_from_slice(b"\r\n");
    Bytes::from(m)
}

/// Writes messages `from..to` into `new/` under Dovecot-style names.
fn fill(inbox: &Path, from: usize, to: usize, message: &[u8]) {
    for i in from..to {
        let name = format!("1700000000.M{i}P1.fill,S={}", message.len());
        std::fs::write(inbox.join("new").join(name), message).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let root = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = root.path().to_path_buf();
    let relay = Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .unwrap();
    let account = block_on(relay.login(USER, "password123", false))
        .unwrap()
        .expect("first login creates the account");
    let inbox = root.path().join(account.as_str());
    let data = message();
    let recipients = [USER.to_string()];

    let mut group = c.benchmark_group("mailbox_growth");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    let mut filled = 0;
    for level in LEVELS {
        std::fs::create_dir_all(inbox.join("new")).unwrap();
        fill(&inbox, filled, level, &data);
        filled = level;
        // The store indexes the files once, outside the measurement.
        let held = block_on(relay.store().list_messages(&account, INBOX, None))
            .unwrap()
            .len();
        assert!(held >= level, "{held} < {level}");
        group.bench_function(format!("deliver_4k/holding_{level}"), |b| {
            b.iter(|| {
                let outcome =
                    block_on(relay.deliver("a@example.org", &recipients, &[], data.clone()));
                assert!(outcome.iter().all(|o| o.is_ok()), "{outcome:?}");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
