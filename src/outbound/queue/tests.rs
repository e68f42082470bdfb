use super::*;
use chatmail_core::InlineExecutor;
use futures::executor::block_on;

fn settings() -> QueueSettings {
    QueueSettings {
        retry_min: Duration::from_secs(60),
        retry_max: Duration::from_secs(4000),
        lifetime: Duration::from_secs(2 * 86_400),
        max_messages: 100,
        max_bytes: 1 << 20,
        max_destinations: 500,
    }
}

fn open(dir: &Path, settings: QueueSettings) -> DeliveryQueue {
    DeliveryQueue::open(dir, settings, Arc::new(InlineExecutor)).unwrap()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn delivered() -> RecipientOutcome {
    RecipientOutcome::Delivered(Reply::new(250, "OK"))
}

fn deferred() -> RecipientOutcome {
    RecipientOutcome::Deferred(Reply::new(421, "4.4.2 try later"))
}

#[test]
fn backoff_doubles_from_the_minimum_to_the_cap() {
    let s = settings();
    let secs: Vec<u64> = (1..=9).map(|a| s.backoff(a).as_secs()).collect();
    assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3840, 4000, 4000]);
    assert_eq!(s.backoff(u32::MAX).as_secs(), 4000);
}

#[test]
fn recipients_are_grouped_per_destination_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), settings());
    let to = rcpts(&["a@x.org", "b@y.org", "c@X.org"]);
    block_on(q.enqueue("me@here", &to, Bytes::from_static(b"msg"), 1000, 1000)).unwrap();
    assert_eq!(q.take_due(999, 10), vec![], "nothing due before its time");
    // Reopened before any attempt: everything is still there.
    drop(q);
    let q = open(dir.path(), settings());
    assert_eq!((q.len(), q.bytes()), (1, 3));
    let mut due = q.take_due(1000, 10);
    due.sort_by(|a, b| a.domain.cmp(&b.domain));
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].domain, "x.org");
    assert_eq!(due[0].recipients, ["a@x.org", "c@X.org"]);
    assert_eq!(due[1].recipients, ["b@y.org"]);
    assert_eq!(block_on(q.message(&due[0].id)).unwrap(), &b"msg"[..]);
    assert_eq!(q.take_due(5000, 10), vec![], "in flight: not taken twice");
    let r = block_on(q.record(&due[0], &[delivered(), delivered()], 1001)).unwrap();
    assert_eq!(r, Recorded::default());
    let r = block_on(q.record(&due[1], &[delivered()], 1002)).unwrap();
    assert!(r.finished && r.failed.is_empty());
    assert!(q.is_empty() && q.bytes() == 0);
    drop(q);
    assert!(open(dir.path(), settings()).is_empty(), "removed from disk");
}

#[test]
fn deferred_recipients_wait_their_backoff_and_fail_after_the_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), settings());
    let to = rcpts(&["a@x.org", "b@x.org"]);
    block_on(q.enqueue("me@here", &to, Bytes::from_static(b"m"), 0, 0)).unwrap();
    let a = q.take_due(0, 10).remove(0);
    let refused = RecipientOutcome::Failed(Reply::new(550, "5.1.1 no such user"));
    let r = block_on(q.record(&a, &[deferred(), refused.clone()], 10)).unwrap();
    assert_eq!(r.failed, vec![("b@x.org".into(), refused.reply().clone())]);
    assert!(!r.finished);
    assert_eq!(q.next_due(), Some(60_010));
    assert!(q.take_due(60_009, 10).is_empty());
    // The second retry waits twice as long, and it is remembered across a reopen.
    let a = q.take_due(60_010, 10).remove(0);
    assert_eq!(a.recipients, ["a@x.org"]);
    block_on(q.record(&a, &[deferred()], 60_010)).unwrap();
    drop(q);
    let q = open(dir.path(), settings());
    assert_eq!(q.next_due(), Some(60_010 + 120_000));
    // Past the lifetime, a deferral is the end: the sender hears of it.
    let late = 2 * 86_400 * 1000;
    let a = q.take_due(late, 10).remove(0);
    let r = block_on(q.record(&a, &[deferred()], late)).unwrap();
    assert!(r.finished);
    assert_eq!(r.failed.len(), 1);
    assert_eq!(r.failed[0].1.code, 554);
    assert!(r.failed[0]
        .1
        .text
        .starts_with("5.4.7 Delivery time expired; last attempt: 421"));
}

#[test]
fn the_queue_is_bounded_in_messages_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.max_messages = 2;
    s.max_bytes = 10;
    let q = open(dir.path(), s);
    let to = rcpts(&["a@x.org"]);
    block_on(q.enqueue("", &to, Bytes::from_static(b"12345"), 0, 0)).unwrap();
    let full = block_on(q.enqueue("", &to, Bytes::from_static(b"123456"), 0, 0)).unwrap_err();
    assert!(matches!(full, QueueError::Full));
    assert_eq!(full.reply().code, 452);
    assert!(full.reply().text.starts_with("4.3.1 "));
    block_on(q.enqueue("", &to, Bytes::from_static(b"12345"), 0, 0)).unwrap();
    let full = block_on(q.enqueue("", &to, Bytes::from_static(b""), 0, 0)).unwrap_err();
    assert!(matches!(full, QueueError::Full), "message count bound");
}

#[test]
fn attempts_in_flight_are_bounded_per_destination_and_in_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.max_destinations = 2;
    let q = open(dir.path(), s);
    for i in 0..6 {
        let to = rcpts(&[&format!("u{i}@one.org")]);
        block_on(q.enqueue("", &to, Bytes::from_static(b"m"), 0, 0)).unwrap();
    }
    for d in ["two.org", "three.org"] {
        let to = rcpts(&[&format!("u@{d}")]);
        block_on(q.enqueue("", &to, Bytes::from_static(b"m"), 0, 0)).unwrap();
    }
    let taken = q.take_due(0, 100);
    let one = taken.iter().filter(|a| a.domain == "one.org").count();
    assert_eq!(one, PER_DESTINATION);
    assert_eq!(taken.len(), PER_DESTINATION + 1, "two destinations at most");
    // Finishing the other destination frees a place for the third.
    let other = taken.iter().find(|a| a.domain != "one.org").unwrap();
    block_on(q.record(other, &[delivered()], 1)).unwrap();
    let next = q.take_due(1, 100);
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].domain, "one.org");
}

#[test]
fn a_record_wakes_the_runner_and_a_missing_outcome_defers() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), settings());
    block_on(q.enqueue(
        "",
        &rcpts(&["a@x.org", "b@x.org"]),
        Bytes::from_static(b"m"),
        0,
        0,
    ))
    .unwrap();
    assert!(q.changed().now_or_never().is_some(), "enqueue wakes");
    let a = q.take_due(0, 1).remove(0);
    let r = block_on(q.record(&a, &[delivered()], 5)).unwrap();
    assert!(!r.finished && r.failed.is_empty());
    assert!(q.changed().now_or_never().is_some(), "record wakes");
    assert_eq!(q.next_due(), Some(60_005));
}
