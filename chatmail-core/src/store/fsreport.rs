//! The operator's storage report (spec 6.3, the reference's `chatmail-fsreport`): how
//! much the mailboxes hold, how many messages of which size, how many accounts and how
//! many of them were active lately. Read-only: it scans `mailboxes_dir` as the expiry
//! does and changes nothing.
//!
//! [`FsReport::prometheus`] writes the reference's `fsreport.prom` metric names and
//! labels, so that node_exporter's textfile collector and existing dashboards keep
//! working.

use std::fmt::Write as _;
use std::path::Path;

use super::maildir::expiry::{account_dirs, scan_account, MaildirSubdir};

const DAY: u64 = 86_400;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The message size thresholds of the report (bytes): messages at least this large.
pub const SIZE_THRESHOLDS: [u64; 7] = [0, 100 * KIB, MIB / 2, MIB, 2 * MIB, 5 * MIB, 10 * MIB];

/// The activity windows of the report (days): non-CI accounts logged in within them.
pub const ACTIVITY_DAYS: [u64; 7] = [1, 10, 30, 40, 80, 100, 150];

/// What to look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsReportOptions {
    /// Count messages by size only for accounts whose last login is at least this many
    /// days old (`--min-login-age`, 0: all).
    pub min_login_age_days: u64,
    /// Count by size only the messages in this maildir subdirectory (`cur`, `new` or
    /// `tmp`; `--mdir`).
    pub subdir: Option<String>,
    /// Look at no more than this many accounts (`--maxnum`).
    pub max_accounts: Option<usize>,
}

/// The report of one scan; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsReport {
    /// The reference time (unix seconds) the activity windows count back from.
    pub now: u64,
    /// Bytes of every message file.
    pub message_bytes: u64,
    /// Bytes of every other file (passwords, indexes, metadata).
    pub extra_bytes: u64,
    /// Per [`SIZE_THRESHOLDS`] entry: bytes and count of messages at least that large
    /// (within the options' filters).
    pub by_size: Vec<(u64, u64, u64)>,
    /// Accounts with a password file (logged in at least once).
    pub accounts: u64,
    /// Of those, CI accounts (local part starting with `ci-`).
    pub ci_accounts: u64,
    /// Per [`ACTIVITY_DAYS`] entry: non-CI accounts logged in within that many days.
    pub active: Vec<(u64, u64)>,
    /// Paths that could not be read (the scan goes on without them).
    pub unreadable: Vec<String>,
}

impl FsReport {
    /// Scans `mailboxes_dir` at `now` (unix seconds).
    pub fn scan(mailboxes_dir: &Path, now: u64, options: &FsReportOptions) -> FsReport {
        let mut report = FsReport {
            now,
            by_size: SIZE_THRESHOLDS.iter().map(|&t| (t, 0, 0)).collect(),
            active: ACTIVITY_DAYS.iter().map(|&d| (d, 0)).collect(),
            ..FsReport::default()
        };
        let subdir = options.subdir.as_deref().and_then(|s| match s {
            "cur" => Some(MaildirSubdir::Cur),
            "new" => Some(MaildirSubdir::New),
            "tmp" => Some(MaildirSubdir::Tmp),
            _ => None,
        });
        let mut errors = Vec::new();
        let login_cutoff = now.saturating_sub(options.min_login_age_days.saturating_mul(DAY));
        for (name, dir) in account_dirs(mailboxes_dir, options.max_accounts, &mut errors) {
            let scan = scan_account(&dir, name, &mut errors);
            if let Some(last_login) = scan.last_login {
                report.accounts += 1;
                if scan.name.starts_with("ci-") {
                    report.ci_accounts += 1;
                } else {
                    for (days, active) in &mut report.active {
                        if last_login >= now.saturating_sub(*days * DAY) {
                            *active += 1;
                        }
                    }
                }
                if last_login <= login_cutoff {
                    for message in &scan.messages {
                        if subdir.is_some_and(|s| s != message.subdir) {
                            continue;
                        }
                        for (threshold, bytes, count) in &mut report.by_size {
                            if message.size >= *threshold {
                                *bytes += message.size;
                                *count += 1;
                            }
                        }
                    }
                }
            }
            report.message_bytes += scan.messages.iter().map(|m| m.size).sum::<u64>();
            report.extra_bytes += scan.extra_files.iter().map(|f| f.size).sum::<u64>();
        }
        report.unreadable = errors
            .into_iter()
            .map(|e| format!("{}: {}", e.path.display(), e.error))
            .collect();
        report
    }

    /// Non-CI accounts.
    pub fn user_accounts(&self) -> u64 {
        self.accounts - self.ci_accounts
    }

    /// The report for a reader.
    pub fn text(&self) -> String {
        let total = self.message_bytes + self.extra_bytes;
        let percent = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let mut out = String::new();
        let _ = writeln!(out, "## Mailbox storage");
        let _ = writeln!(out, "all files:   {}", human(total));
        let _ = writeln!(out, "messages:    {}", human(self.message_bytes));
        let _ = writeln!(
            out,
            "extra files: {} ({:.2}%)",
            human(self.extra_bytes),
            percent(self.extra_bytes, total)
        );
        let _ = writeln!(out, "\n## Messages by size");
        for (threshold, bytes, count) in &self.by_size {
            let _ = writeln!(
                out,
                "at least {:>6}: {} ({:.2}%), {count} messages",
                human(*threshold),
                human(*bytes),
                percent(*bytes, self.message_bytes)
            );
        }
        let _ = writeln!(out, "\n## Accounts");
        let _ = writeln!(out, "all:    {}", self.accounts);
        let _ = writeln!(out, "non-ci: {}", self.user_accounts());
        let _ = writeln!(out, "ci:     {}", self.ci_accounts);
        for (days, active) in &self.active {
            let _ = writeln!(
                out,
                "active in the last {days:>3} days: {active} ({:.2}%)",
                percent(*active, self.user_accounts())
            );
        }
        out
    }

    /// The reference's `fsreport.prom` (Prometheus text format, the same names and
    /// labels).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        gauge(
            "chatmail_storage_bytes",
            "Mailbox storage in bytes.",
            &[
                ("kind=\"messages\"".into(), self.message_bytes),
                ("kind=\"extra\"".into(), self.extra_bytes),
                (
                    "kind=\"total\"".into(),
                    self.message_bytes + self.extra_bytes,
                ),
            ],
        );
        let by = |pick: fn(&(u64, u64, u64)) -> u64| -> Vec<(String, u64)> {
            self.by_size
                .iter()
                .map(|e| (format!("min_size=\"{}\"", e.0), pick(e)))
                .collect()
        };
        gauge(
            "chatmail_messages_bytes",
            "Sum of msg bytes >= threshold.",
            &by(|e| e.1),
        );
        gauge(
            "chatmail_messages_count",
            "Number of msgs >= size threshold.",
            &by(|e| e.2),
        );
        gauge(
            "chatmail_accounts",
            "Number of accounts.",
            &[
                ("kind=\"all\"".into(), self.accounts),
                ("kind=\"ci\"".into(), self.ci_accounts),
                ("kind=\"user\"".into(), self.user_accounts()),
            ],
        );
        let active: Vec<(String, u64)> = self
            .active
            .iter()
            .map(|(d, n)| (format!("days=\"{d}\""), *n))
            .collect();
        gauge(
            "chatmail_accounts_active",
            "Non-CI accounts active within N days.",
            &active,
        );
        out
    }
}

/// Bytes for a reader: `999`, `12.50K`, `340M`, `1.25G` (decimal units, as the
/// reference prints them).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 10_000 {
        format!("{:.2}K", b / 1e3)
    } else if bytes < 1_000_000 {
        format!("{:.0}K", b / 1e3)
    } else if bytes < 1_000_000_000 {
        format!("{}M", bytes / 1_000_000)
    } else {
        format!("{:.2}G", b / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::support::set_mtime;

    const NOW: u64 = 1_700_000_000;

    fn put(path: &Path, size: usize, mtime: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; size]).unwrap();
        set_mtime(path, mtime);
    }

    #[test]
    fn the_figures_of_spec_6_3() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let a = root.join("alice@x.org");
        put(&a.join("password"), 10, NOW - 5 * DAY);
        put(&a.join("cur/1.M1,S=200000:2,S"), 200_000, NOW);
        put(&a.join("new/2.M2,S=50"), 50, NOW);
        let ci = root.join("ci-abc@x.org");
        put(&ci.join("password"), 10, NOW);
        put(&ci.join("cur/3.M3,S=3000000:2,S"), 3_000_000, NOW);
        let old = root.join("bob@x.org");
        put(&old.join("password"), 10, NOW - 120 * DAY);
        // Never logged in: counted for bytes, not as an account.
        put(&root.join("nopass@x.org").join("new/4.M4,S=7"), 7, NOW);

        let r = FsReport::scan(root, NOW, &FsReportOptions::default());
        assert_eq!(r.message_bytes, 200_000 + 50 + 3_000_000 + 7);
        assert_eq!(r.extra_bytes, 30);
        assert_eq!((r.accounts, r.ci_accounts, r.user_accounts()), (3, 1, 2));
        assert_eq!(
            r.active,
            vec![
                (1, 0),
                (10, 1),
                (30, 1),
                (40, 1),
                (80, 1),
                (100, 1),
                (150, 2)
            ]
        );
        let at = |t: u64| {
            r.by_size
                .iter()
                .find(|e| e.0 == t)
                .map(|e| (e.1, e.2))
                .unwrap()
        };
        assert_eq!(at(0), (3_200_050, 3), "only accounts that logged in");
        assert_eq!(at(100 * KIB), (3_200_000, 2));
        assert_eq!(at(2 * MIB), (3_000_000, 1));
        assert_eq!(at(5 * MIB), (0, 0));

        let cur_only = FsReport::scan(
            root,
            NOW,
            &FsReportOptions {
                subdir: Some("cur".into()),
                min_login_age_days: 1,
                ..Default::default()
            },
        );
        assert_eq!(
            cur_only.by_size[0],
            (0, 200_000, 1),
            "alice's cur only (ci logged in today)"
        );

        let prom = r.prometheus();
        assert!(
            prom.contains("chatmail_storage_bytes{kind=\"total\"} 3200087\n"),
            "{prom}"
        );
        assert!(prom.contains("chatmail_messages_count{min_size=\"2097152\"} 1\n"));
        assert!(prom.contains("chatmail_accounts{kind=\"user\"} 2\n"));
        assert!(prom.contains("chatmail_accounts_active{days=\"150\"} 2\n"));
        assert!(prom.contains("# TYPE chatmail_accounts_active gauge\n"));
        assert!(
            r.text().contains("active in the last  10 days: 1 (50.00%)"),
            "{}",
            r.text()
        );
        assert_eq!(human(999), "1.00K");
        assert_eq!(human(340_000_000), "340M");
    }
}
