//! The queue on a virtual clock: `Instant` arithmetic, no sleeping.

use super::*;
use chatmail_core::Address;
use std::time::{Duration, Instant};

const UNIX0: u64 = 1_700_000_000;

fn bob() -> Address {
    Address::parse("bob123456@chat.example.org").unwrap()
}

fn queue(settings: PushSettings, t0: Instant) -> PushQueue {
    PushQueue::new(settings, 0x5eed << 64, t0, UNIX0)
}

fn drain(q: &mut PushQueue) -> Vec<PushOutput> {
    std::iter::from_fn(|| q.poll()).collect()
}

fn posts(outputs: &[PushOutput]) -> Vec<ItemId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            PushOutput::Post { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn persisted(outputs: &[PushOutput]) -> Vec<ItemId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            PushOutput::Persist(p) => Some(p.id),
            _ => None,
        })
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn new_message_persists_then_posts_each_token() {
    let t0 = Instant::now();
    let mut q = queue(PushSettings::default(), t0);
    q.new_message(&bob(), vec!["tok-a".into(), "tok-b".into()], t0);
    let out = drain(&mut q);
    assert_eq!(out.len(), 4, "{out:?}");
    let PushOutput::Persist(a) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (a.account.clone(), a.start_ts, a.token.as_str()),
        (bob(), UNIX0, "tok-a")
    );
    // Each item's file is asked for before its POST.
    let persisted = persisted(&out);
    assert_eq!(persisted, posts(&out));
    assert!(matches!(&out[2], PushOutput::Post { token, .. } if token == "tok-a"));
    assert_ne!(persisted[0], persisted[1]);
    assert_eq!((q.len(), q.in_flight()), (2, 2));
}

#[test]
fn the_whole_schedule_then_drop() {
    let t0 = Instant::now();
    let mut q = queue(PushSettings::default(), t0);
    q.new_message(&bob(), vec!["tok".into()], t0);
    let mut now = t0;
    let mut id = posts(&drain(&mut q))[0];
    // Levels 1..=4 wait 8, 64, 512, 4096 s after the failure.
    for (level, wait) in [(1u32, 8u64), (2, 64), (3, 512), (4, 4096)] {
        now += secs(3); // the failing POST took a while
        q.on_response(id, HttpOutcome::Status(500), now);
        assert!(drain(&mut q).is_empty(), "level {level}");
        assert_eq!(q.poll_timeout(), Some(now + secs(wait)), "level {level}");
        q.handle_timeout(now + secs(wait) - Duration::from_millis(1));
        assert!(drain(&mut q).is_empty(), "early at level {level}");
        now += secs(wait);
        q.handle_timeout(now);
        let out = drain(&mut q);
        assert_eq!(posts(&out).len(), 1, "level {level}: {out:?}");
        id = posts(&out)[0];
    }
    // The failure at level 4 is the last.
    now += secs(1);
    q.on_response(id, HttpOutcome::NetworkError, now);
    assert_eq!(drain(&mut q), vec![PushOutput::Forget(id)]);
    assert!(q.is_empty());
    assert_eq!(q.poll_timeout(), None);
    let stats = q.stats();
    assert_eq!((stats.failed_attempts, stats.dropped_deadline), (5, 1));
}

#[test]
fn ok_is_done_and_gone_removes_the_token() {
    let t0 = Instant::now();
    let mut q = queue(PushSettings::default(), t0);
    q.new_message(&bob(), vec!["ok".into(), "gone".into()], t0);
    let ids = posts(&drain(&mut q));
    q.on_response(ids[0], HttpOutcome::Status(200), t0);
    assert_eq!(drain(&mut q), vec![PushOutput::Forget(ids[0])]);
    q.on_response(ids[1], HttpOutcome::Status(410), t0);
    assert_eq!(
        drain(&mut q),
        vec![
            PushOutput::Forget(ids[1]),
            PushOutput::RemoveToken {
                account: bob(),
                token: "gone".into()
            }
        ]
    );
    assert!(q.is_empty());
    // A second answer for a finished item changes nothing.
    q.on_response(ids[0], HttpOutcome::Status(500), t0);
    assert!(drain(&mut q).is_empty());
    let stats = q.stats();
    assert_eq!((stats.sent, stats.gone, stats.failed_attempts), (1, 1, 0));
}

#[test]
fn other_success_statuses_are_retried_as_the_reference_does() {
    let t0 = Instant::now();
    let mut q = queue(PushSettings::default(), t0);
    q.new_message(&bob(), vec!["tok".into()], t0);
    let id = posts(&drain(&mut q))[0];
    q.on_response(id, HttpOutcome::Status(204), t0);
    assert_eq!(q.poll_timeout(), Some(t0 + secs(8)));
}

#[test]
fn restored_items_keep_their_start_and_the_five_hour_deadline() {
    let t0 = Instant::now() + secs(6 * 3600);
    let mut q = queue(PushSettings::default(), t0);
    let item = |n: u128, age: u64| PendingItem {
        id: ItemId(n),
        account: bob(),
        start_ts: UNIX0 - age,
        token: format!("tok{n}"),
    };
    // Older than 5 hours: given up at once, never posted.
    q.restore(item(1, 5 * 3600 + 1), t0);
    assert_eq!(drain(&mut q), vec![PushOutput::Forget(ItemId(1))]);
    // 4h59m old: posted at once (no Persist: its file exists), one retry fits (8 s),
    // the next (64 s later) would pass the deadline.
    q.restore(item(2, 5 * 3600 - 60), t0);
    assert_eq!(
        drain(&mut q),
        vec![PushOutput::Post {
            id: ItemId(2),
            token: "tok2".into()
        }]
    );
    q.on_response(ItemId(2), HttpOutcome::Status(502), t0);
    assert_eq!(q.poll_timeout(), Some(t0 + secs(8)));
    q.handle_timeout(t0 + secs(8));
    assert_eq!(posts(&drain(&mut q)), vec![ItemId(2)]);
    q.on_response(ItemId(2), HttpOutcome::Status(502), t0 + secs(9));
    assert_eq!(drain(&mut q), vec![PushOutput::Forget(ItemId(2))]);
    assert_eq!(q.stats().dropped_deadline, 2);
    // A restored id is never reused for a new item.
    q.restore(item(3, 0), t0);
    q.new_message(&bob(), vec!["new".into()], t0);
    let out = drain(&mut q);
    let ids = posts(&out);
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn in_flight_is_bounded() {
    let t0 = Instant::now();
    let settings = PushSettings {
        max_in_flight: 2,
        ..PushSettings::default()
    };
    let mut q = queue(settings, t0);
    let tokens = (0..5).map(|n| format!("tok{n}")).collect();
    q.new_message(&bob(), tokens, t0);
    let first = posts(&drain(&mut q));
    assert_eq!(first.len(), 2);
    // Slots full: nothing to wake up for, only answers.
    assert_eq!(q.poll_timeout(), None);
    q.on_response(first[0], HttpOutcome::Status(200), t0 + secs(1));
    let out = drain(&mut q);
    assert_eq!(posts(&out).len(), 1, "{out:?}");
    assert_eq!(q.in_flight(), 2);
    assert_eq!(q.len(), 4);
}

#[test]
fn pending_is_bounded_by_dropping_the_oldest_waiting_item() {
    let t0 = Instant::now();
    let settings = PushSettings {
        max_pending: 3,
        max_in_flight: 1,
        ..PushSettings::default()
    };
    let mut q = queue(settings, t0);
    q.new_message(&bob(), vec!["a".into()], t0);
    q.new_message(&bob(), vec!["b".into()], t0 + secs(1));
    q.new_message(&bob(), vec!["c".into()], t0 + secs(2));
    let out = drain(&mut q);
    let persisted = persisted(&out);
    assert_eq!(posts(&out), vec![persisted[0]]);
    // Full: "a" is in flight, so "b" (the oldest waiting) goes.
    q.new_message(&bob(), vec!["d".into()], t0 + secs(3));
    let out = drain(&mut q);
    assert!(out.contains(&PushOutput::Forget(persisted[1])), "{out:?}");
    assert_eq!(q.len(), 3);
    assert_eq!(q.stats().dropped_full, 1);
    // The in-flight item still gets its answer.
    q.on_response(persisted[0], HttpOutcome::Status(200), t0 + secs(4));
    let out = drain(&mut q);
    assert_eq!(out[0], PushOutput::Forget(persisted[0]));
    assert!(matches!(&out[1], PushOutput::Post { token, .. } if token == "c"));
}

#[test]
fn item_ids_are_uuid_hex() {
    let id = ItemId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    let text = id.to_string();
    assert_eq!(text, "0123456789abcdef0011223344556677");
    assert_eq!(ItemId::parse(&text), Some(id));
    assert_eq!(ItemId::parse(&text.to_uppercase()), Some(id));
    assert_eq!(ItemId::parse("0123"), None);
    assert_eq!(ItemId::parse("+123456789abcdef0011223344556677"), None);
    assert_eq!(ItemId(1).to_string().len(), 32);
}
