//! The operator's metrics: a dependency-free registry of atomics, owned by the
//! [`Relay`](crate::Relay) ([`Relay::metrics`](crate::Relay::metrics)), and its
//! Prometheus text exposition (format 0.0.4), which the tokio driver serves on
//! `metrics_listen`.
//!
//! The counters of the reference relay's mtail program keep their names, so existing
//! Grafana dashboards keep working (reference: chatmail/relay,
//! `cmdeploy/src/cmdeploy/mtail/delivered_mail.mtail`, which counts log lines of
//! Dovecot, OpenDKIM, doveauth, filtermail and chatmail-quota-expire). Each kind is
//! counted in one method here, called where the logged event happens:
//!
//! * `delivered_mail`: a message appended to a local INBOX, per recipient (Dovecot's
//!   `saved mail to INBOX`); `quota_exceeded`: a local recipient refused because the
//!   mailbox is full (`Quota exceeded (mailbox for user is full)`).
//! * `dkim_signed`: a message signed for other domains (OpenDKIM's `DKIM-Signature
//!   field added`: "essentially the number of outgoing messages").
//! * `created_accounts`, `created_ci_accounts`, `created_nonci_accounts`: an account
//!   created at its first login (`Created address: `). CI accounts are those whose local
//!   part starts with `ci-` (the fsreport's definition, spec 6.3; the mtail regex matches
//!   `ci-` anywhere in the address, which a domain such as `ci-relay.example` would
//!   turn into "every account").
//! * `rejected_registrations`: a creation refused for a system limit (load, memory,
//!   disk; doveauth's `registration rejected: `).
//! * `{outgoing,incoming}_{encrypted,unencrypted}_mail_count` and
//!   `filtered_{outgoing,incoming}_mail_count`: filtermail's `Filtering encrypted mail.`
//!   (encrypted or Secure-Join) and `Filtering unencrypted mail.` (everything else that
//!   reached the encryption check: accepted exceptions and the `523` refusals alike);
//!   refusals before that check (size, From mismatch, malformed headers) count nowhere,
//!   as in the reference. `incoming_mailer_daemon_mail_count`: a cleartext bounce
//!   accepted (also counted as incoming unencrypted; each message counts once in
//!   `filtered_*`). `rejected_unencrypted_mail_count`: the `523` refusals, both
//!   directions.
//! * `quota_expire_runs`, `quota_expire_removed_files`: a quota trim that removed
//!   messages, and how many (`quota-expire: removed <n> message(s)`).
//!
//! One counter is this relay's own: `duplicate_deliveries_dropped`, a local
//! recipient's second copy of a recent delivery that was not stored again
//! (`src/relay/duplicates.rs`).

use chatmail_core::Address;
use chatmail_policy::{Direction, MessageClass};
use chatmail_smtp::server::VerdictOutcome;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The counters, in exposition order: (name, help); the reference's mtail counters,
/// then this relay's own.
const COUNTERS: [(&str, &str); COUNTER_COUNT] = [
    (
        "delivered_mail",
        "Messages appended to a local INBOX, per recipient.",
    ),
    (
        "quota_exceeded",
        "Local recipients refused because their mailbox is full.",
    ),
    ("dkim_signed", "Messages DKIM-signed for other domains."),
    ("created_accounts", "Accounts created at their first login."),
    (
        "created_ci_accounts",
        "Accounts created whose local part starts with ci-.",
    ),
    (
        "created_nonci_accounts",
        "Accounts created whose local part does not start with ci-.",
    ),
    (
        "rejected_registrations",
        "Account creations refused for a system limit (load, memory, disk).",
    ),
    (
        "filtered_outgoing_mail_count",
        "Submitted messages that reached the encryption check.",
    ),
    (
        "outgoing_encrypted_mail_count",
        "Submitted messages that were encrypted or Secure-Join.",
    ),
    (
        "outgoing_unencrypted_mail_count",
        "Submitted messages that were not encrypted (accepted exceptions and refusals).",
    ),
    (
        "filtered_incoming_mail_count",
        "Messages from other servers that reached the encryption check.",
    ),
    (
        "incoming_encrypted_mail_count",
        "Messages from other servers that were encrypted or Secure-Join.",
    ),
    (
        "incoming_unencrypted_mail_count",
        "Messages from other servers that were not encrypted (accepted exceptions and refusals).",
    ),
    (
        "incoming_mailer_daemon_mail_count",
        "Cleartext delivery reports from mailer daemons accepted from other servers.",
    ),
    (
        "rejected_unencrypted_mail_count",
        "Messages refused with 523 Encryption Needed, both directions.",
    ),
    ("quota_expire_runs", "Quota trims that removed messages."),
    (
        "quota_expire_removed_files",
        "Messages removed by quota trims.",
    ),
    (
        "duplicate_deliveries_dropped",
        "Second copies of a recent local delivery, answered as delivered and not stored.",
    ),
];

const COUNTER_COUNT: usize = 18;

/// A counter of the reference's mtail program (spec 6.4), under its mtail name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter {
    /// `delivered_mail`.
    DeliveredMail,
    /// `quota_exceeded`.
    QuotaExceeded,
    /// `dkim_signed`.
    DkimSigned,
    /// `created_accounts`.
    CreatedAccounts,
    /// `created_ci_accounts`.
    CreatedCiAccounts,
    /// `created_nonci_accounts`.
    CreatedNonciAccounts,
    /// `rejected_registrations`.
    RejectedRegistrations,
    /// `filtered_outgoing_mail_count`.
    FilteredOutgoingMail,
    /// `outgoing_encrypted_mail_count`.
    OutgoingEncryptedMail,
    /// `outgoing_unencrypted_mail_count`.
    OutgoingUnencryptedMail,
    /// `filtered_incoming_mail_count`.
    FilteredIncomingMail,
    /// `incoming_encrypted_mail_count`.
    IncomingEncryptedMail,
    /// `incoming_unencrypted_mail_count`.
    IncomingUnencryptedMail,
    /// `incoming_mailer_daemon_mail_count`.
    IncomingMailerDaemonMail,
    /// `rejected_unencrypted_mail_count`.
    RejectedUnencryptedMail,
    /// `quota_expire_runs`.
    QuotaExpireRuns,
    /// `quota_expire_removed_files`.
    QuotaExpireRemovedFiles,
    /// `duplicate_deliveries_dropped` (this relay's own: the reference stores every
    /// copy).
    DuplicateDeliveriesDropped,
}

impl Counter {
    /// The metric's name, as the reference's mtail program exports it.
    pub fn name(self) -> &'static str {
        COUNTERS[self as usize].0
    }
}

/// The listeners whose open connections are a gauge (label `port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// MX (25).
    Smtp,
    /// Submission with STARTTLS (587).
    Submission,
    /// Submission with implicit TLS (465).
    Submissions,
    /// IMAP with STARTTLS (143).
    Imap,
    /// IMAP with implicit TLS (993).
    Imaps,
    /// HTTPS (443).
    Https,
}

const LISTENERS: [(Listener, &str); 6] = [
    (Listener::Smtp, "smtp"),
    (Listener::Submission, "submission"),
    (Listener::Submissions, "submissions"),
    (Listener::Imap, "imap"),
    (Listener::Imaps, "imaps"),
    (Listener::Https, "https"),
];

/// Upper bounds (seconds) of the latency histograms' buckets: a local delivery takes
/// milliseconds (one fsync), an attempt to another server up to minutes.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A Prometheus histogram of durations: cumulative counts per bucket at exposition.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative), the last one for `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of observations in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Readings taken at scrape time by whoever serves the exposition (the delivery queue,
/// the disk): nothing the registry has to keep up to date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readings {
    /// Messages in the delivery queue (`None`: the relay has no queue).
    pub queue_messages: Option<u64>,
    /// Bytes of the messages in the delivery queue.
    pub queue_bytes: Option<u64>,
    /// Free bytes on the file system of the mailboxes (`None`: unknown).
    pub free_disk_bytes: Option<u64>,
}

/// The relay's metrics. Every method is a few relaxed atomic operations: counting
/// never waits and never allocates.
#[derive(Default)]
pub struct Metrics {
    counters: [AtomicU64; COUNTER_COUNT],
    connections: [AtomicU64; LISTENERS.len()],
    idle_sessions: AtomicU64,
    /// IMAP sessions that started COMPRESS=DEFLATE.
    imap_compress: AtomicU64,
    /// The push queue as its driver last reported it: pending notifications, and
    /// notifications sent, gone (410), failed attempts, dropped.
    push: [AtomicU64; 5],
    local_delivery: Histogram,
    outbound_attempt: Histogram,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The value of one of the reference's counters.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A message was appended to a local INBOX for one recipient; making it durable
    /// there took `took` (the delivery starts as soon as the policy accepted it).
    pub(crate) fn delivered_locally(&self, took: Duration) {
        self.add(Counter::DeliveredMail, 1);
        self.local_delivery.observe(took);
    }

    /// A local recipient was refused: mailbox full.
    pub(crate) fn quota_exceeded(&self) {
        self.add(Counter::QuotaExceeded, 1);
    }

    /// A local recipient's second copy of a recent delivery was dropped
    /// (`src/relay/duplicates.rs`).
    pub(crate) fn duplicate_dropped(&self) {
        self.add(Counter::DuplicateDeliveriesDropped, 1);
    }

    /// A message was DKIM-signed for other domains.
    pub(crate) fn dkim_signed(&self) {
        self.add(Counter::DkimSigned, 1);
    }

    /// `address` was created at its first login.
    pub(crate) fn account_created(&self, address: &Address) {
        self.add(Counter::CreatedAccounts, 1);
        let local = address.as_str().split('@').next().unwrap_or("");
        if local.starts_with("ci-") {
            self.add(Counter::CreatedCiAccounts, 1);
        } else {
            self.add(Counter::CreatedNonciAccounts, 1);
        }
    }

    /// An account creation was refused for a system limit.
    pub(crate) fn registration_rejected(&self) {
        self.add(Counter::RejectedRegistrations, 1);
    }

    /// The policy decided on a message (SMTP's [`ServerEvent::Verdict`](chatmail_smtp::server::ServerEvent::Verdict), `/mxdeliv`'s check).
    pub(crate) fn verdict(&self, direction: Direction, outcome: VerdictOutcome) {
        let encrypted = match outcome {
            VerdictOutcome::Accepted(MessageClass::Encrypted | MessageClass::SecureJoin) => true,
            VerdictOutcome::Accepted(_) => false,
            VerdictOutcome::Refused(523) => {
                self.add(Counter::RejectedUnencryptedMail, 1);
                false
            }
            // Refused before the encryption check: the reference counts nothing.
            VerdictOutcome::Refused(_) => return,
        };
        let (filtered, enc, unenc) = match direction {
            Direction::Outgoing => (
                Counter::FilteredOutgoingMail,
                Counter::OutgoingEncryptedMail,
                Counter::OutgoingUnencryptedMail,
            ),
            Direction::Incoming => (
                Counter::FilteredIncomingMail,
                Counter::IncomingEncryptedMail,
                Counter::IncomingUnencryptedMail,
            ),
        };
        self.add(filtered, 1);
        self.add(if encrypted { enc } else { unenc }, 1);
        if direction == Direction::Incoming
            && outcome == VerdictOutcome::Accepted(MessageClass::Bounce)
        {
            self.add(Counter::IncomingMailerDaemonMail, 1);
        }
    }

    /// A quota trim removed `removed` messages (none: not counted, as the reference
    /// logs nothing then).
    pub(crate) fn quota_trimmed(&self, removed: usize) {
        if removed > 0 {
            self.add(Counter::QuotaExpireRuns, 1);
            self.add(Counter::QuotaExpireRemovedFiles, removed as u64);
        }
    }

    /// One attempt of the delivery queue to another server took `took`.
    pub(crate) fn outbound_attempt(&self, took: Duration) {
        self.outbound_attempt.observe(took);
    }

    /// A connection to `listener` opened; the gauge goes down when the guard drops.
    pub fn connection_opened(self: &std::sync::Arc<Self>, listener: Listener) -> GaugeGuard {
        let index = listener_index(listener);
        self.connections[index].fetch_add(1, Ordering::Relaxed);
        GaugeGuard {
            metrics: self.clone(),
            gauge: Gauge::Connections(index),
        }
    }

    /// The push queue's state (spec 5.4), as its driver sees it after each step:
    /// notifications `pending`, and in all `sent`, `gone` (410), `failed` attempts and
    /// `dropped` ones.
    pub fn push_state(&self, pending: u64, sent: u64, gone: u64, failed: u64, dropped: u64) {
        for (gauge, value) in self.push.iter().zip([pending, sent, gone, failed, dropped]) {
            gauge.store(value, Ordering::Relaxed);
        }
    }

    /// An IMAP session entered IDLE; the gauge goes down when the guard drops.
    pub fn idle_started(self: &std::sync::Arc<Self>) -> GaugeGuard {
        self.idle_sessions.fetch_add(1, Ordering::Relaxed);
        GaugeGuard {
            metrics: self.clone(),
            gauge: Gauge::Idle,
        }
    }

    /// An IMAP session started COMPRESS=DEFLATE: a driver calls it on
    /// [`Output::StartDeflate`](chatmail_core::engine::Output::StartDeflate).
    pub fn imap_compress_started(&self) {
        self.imap_compress.fetch_add(1, Ordering::Relaxed);
    }

    /// IMAP sessions that started COMPRESS=DEFLATE since start.
    pub fn imap_compress_sessions(&self) -> u64 {
        self.imap_compress.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4) of everything, with `readings`
    /// taken by the caller at scrape time.
    pub fn render(&self, readings: &Readings) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for (i, (name, help)) in COUNTERS.iter().enumerate() {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", self.counters[i].load(Ordering::Relaxed));
        }
        let name = "chatmail_open_connections";
        header(&mut out, name, "Connections open, per listener.", "gauge");
        for (i, (_, port)) in LISTENERS.iter().enumerate() {
            let n = self.connections[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{port=\"{port}\"}} {n}");
        }
        let name = "chatmail_imap_compress_sessions";
        header(
            &mut out,
            name,
            "IMAP sessions that started COMPRESS=DEFLATE since start.",
            "counter",
        );
        let _ = writeln!(out, "{name} {}", self.imap_compress.load(Ordering::Relaxed));
        let name = "chatmail_imap_idle_sessions";
        header(&mut out, name, "IMAP sessions in IDLE.", "gauge");
        let _ = writeln!(out, "{name} {}", self.idle_sessions.load(Ordering::Relaxed));
        let name = "chatmail_push_pending";
        header(
            &mut out,
            name,
            "Push notifications waiting to be sent or retried.",
            "gauge",
        );
        let _ = writeln!(out, "{name} {}", self.push[0].load(Ordering::Relaxed));
        let name = "chatmail_push_notifications";
        header(
            &mut out,
            name,
            "Push notification outcomes since start: sent (200), gone (410, token removed), failed attempts, dropped (deadline or full queue).",
            "counter",
        );
        for (i, outcome) in ["sent", "gone", "failed", "dropped"].iter().enumerate() {
            let n = self.push[i + 1].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        let gauges = [
            (
                "chatmail_delivery_queue_messages",
                "Messages waiting in the delivery queue.",
                readings.queue_messages,
            ),
            (
                "chatmail_delivery_queue_bytes",
                "Bytes of the messages waiting in the delivery queue.",
                readings.queue_bytes,
            ),
            (
                "chatmail_free_disk_bytes",
                "Free bytes on the file system of the mailboxes.",
                readings.free_disk_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                header(&mut out, name, help, "gauge");
                let _ = writeln!(out, "{name} {value}");
            }
        }
        self.local_delivery.write(
            &mut out,
            "chatmail_local_delivery_seconds",
            "Time to make a message durable in one local INBOX (lookup, quota check, append with fsync).",
        );
        self.outbound_attempt.write(
            &mut out,
            "chatmail_outbound_attempt_seconds",
            "Duration of one delivery attempt to another server.",
        );
        out
    }
}

fn listener_index(listener: Listener) -> usize {
    LISTENERS
        .iter()
        .position(|(l, _)| *l == listener)
        .unwrap_or(0)
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

enum Gauge {
    Connections(usize),
    Idle,
}

/// Keeps a gauge up while it lives (an open connection, a session in IDLE).
pub struct GaugeGuard {
    metrics: std::sync::Arc<Metrics>,
    gauge: Gauge,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        let gauge = match self.gauge {
            Gauge::Connections(i) => &self.metrics.connections[i],
            Gauge::Idle => &self.metrics.idle_sessions,
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// The sample lines as (name with labels, value).
    fn samples(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("name value");
                (name.to_string(), value.to_string())
            })
            .collect()
    }

    #[test]
    fn exposition_has_help_and_type_before_every_family_and_valid_names() {
        let metrics = Arc::new(Metrics::new());
        let _conn = metrics.connection_opened(Listener::Imaps);
        let text = metrics.render(&Readings {
            queue_messages: Some(3),
            queue_bytes: Some(4096),
            free_disk_bytes: None,
        });
        assert!(text.ends_with('\n'));
        let mut families = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("help text");
                assert!(valid_name(name), "{name}");
                assert!(!help.is_empty() && !help.contains('\n'));
                let kind = lines[i + 1]
                    .strip_prefix(&format!("# TYPE {name} "))
                    .expect("TYPE after HELP");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{kind}");
                families.push((name.to_string(), kind.to_string()));
            }
        }
        for (name, _) in COUNTERS {
            assert!(
                families.contains(&(name.to_string(), "counter".to_string())),
                "{name}"
            );
        }
        // Every sample belongs to the family declared last, and its value is a number.
        let mut current: Option<(String, String)> = None;
        for line in &lines {
            if line.starts_with("# TYPE ") {
                let mut parts = line.split(' ').skip(2);
                current = Some((parts.next().unwrap().into(), parts.next().unwrap().into()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (family, kind) = current.clone().expect("sample after TYPE");
            let (sample, value) = line.rsplit_once(' ').unwrap();
            let name = sample.split('{').next().unwrap();
            assert!(valid_name(name), "{name}");
            let allowed = match kind.as_str() {
                "histogram" => vec![
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ],
                _ => vec![family.clone()],
            };
            assert!(allowed.contains(&name.to_string()), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let samples = samples(&text);
        let value = |n: &str| samples.iter().find(|(s, _)| s == n).map(|(_, v)| v.clone());
        assert_eq!(
            value("chatmail_open_connections{port=\"imaps\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            value("chatmail_delivery_queue_bytes").as_deref(),
            Some("4096")
        );
        assert_eq!(value("chatmail_free_disk_bytes"), None, "unknown: left out");
    }

    #[test]
    fn verdicts_count_as_the_reference_logs_them() {
        let m = Metrics::new();
        m.verdict(
            Direction::Outgoing,
            VerdictOutcome::Accepted(MessageClass::Encrypted),
        );
        m.verdict(
            Direction::Outgoing,
            VerdictOutcome::Accepted(MessageClass::SecureJoin),
        );
        m.verdict(Direction::Outgoing, VerdictOutcome::Refused(523));
        m.verdict(Direction::Outgoing, VerdictOutcome::Refused(500));
        m.verdict(
            Direction::Incoming,
            VerdictOutcome::Accepted(MessageClass::Bounce),
        );
        m.verdict(
            Direction::Incoming,
            VerdictOutcome::Accepted(MessageClass::Cleartext),
        );
        m.verdict(Direction::Incoming, VerdictOutcome::Refused(523));
        let got: Vec<u64> = [
            Counter::FilteredOutgoingMail,
            Counter::OutgoingEncryptedMail,
            Counter::OutgoingUnencryptedMail,
            Counter::FilteredIncomingMail,
            Counter::IncomingEncryptedMail,
            Counter::IncomingUnencryptedMail,
            Counter::IncomingMailerDaemonMail,
            Counter::RejectedUnencryptedMail,
        ]
        .iter()
        .map(|&c| m.get(c))
        .collect();
        assert_eq!(got, [3, 2, 1, 3, 0, 3, 1, 2]);
    }

    #[test]
    fn ci_accounts_are_those_whose_local_part_starts_with_ci() {
        let m = Metrics::new();
        for a in [
            "ci-abc@ci-relay.example",
            "xci-1@x.example",
            "abc@ci-x.example",
        ] {
            m.account_created(&Address::parse(a).unwrap());
        }
        assert_eq!(m.get(Counter::CreatedAccounts), 3);
        assert_eq!(m.get(Counter::CreatedCiAccounts), 1);
        assert_eq!(m.get(Counter::CreatedNonciAccounts), 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_gauges_fall_with_their_guards() {
        let m = Arc::new(Metrics::new());
        m.outbound_attempt(Duration::from_millis(2));
        m.outbound_attempt(Duration::from_secs(100));
        let text = m.render(&Readings::default());
        let samples = samples(&text);
        let value = |n: &str| {
            samples
                .iter()
                .find(|(s, _)| s == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            value("chatmail_outbound_attempt_seconds_bucket{le=\"0.001\"}"),
            Some("0")
        );
        assert_eq!(
            value("chatmail_outbound_attempt_seconds_bucket{le=\"0.0025\"}"),
            Some("1")
        );
        assert_eq!(
            value("chatmail_outbound_attempt_seconds_bucket{le=\"30\"}"),
            Some("1")
        );
        assert_eq!(
            value("chatmail_outbound_attempt_seconds_bucket{le=\"+Inf\"}"),
            Some("2")
        );
        assert_eq!(value("chatmail_outbound_attempt_seconds_count"), Some("2"));
        assert_eq!(
            value("chatmail_outbound_attempt_seconds_sum"),
            Some("100.002")
        );
        let idle = m.idle_started();
        assert_eq!(m.idle_sessions.load(Ordering::Relaxed), 1);
        drop(idle);
        assert_eq!(m.idle_sessions.load(Ordering::Relaxed), 0);
    }
}
