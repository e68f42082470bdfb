//! System limits that refuse *new* accounts: the readings ([`SystemLimits`]) and the
//! check against the configured minimums.

use std::path::Path;

use crate::config::Config;

/// Readings of the machine's resources. `None` means "could not be read".
///
/// They refuse *new* accounts when the machine is short of CPU, memory, disk space or
/// inodes (spec 1.2, added in reference 1.12.0; the inode check is this relay's: every
/// message is a file, so a file system can run out of inodes with bytes to spare).
/// Existing accounts keep working.
///
/// A reading that cannot be taken (a container without `/proc`, a missing directory) is
/// ignored with a warning, and the other checks still apply, as in the reference.
pub trait SystemLimits: Send + Sync {
    /// The 1-minute load average.
    fn load_1m(&self) -> Option<f64>;
    /// Memory available for new work, in bytes (Linux `MemAvailable`).
    fn available_memory_bytes(&self) -> Option<u64>;
    /// Bytes an unprivileged writer can still use on the file system holding `path`.
    fn free_disk_bytes(&self, path: &Path) -> Option<u64>;
    /// Inodes (files) an unprivileged writer can still create on the file system holding
    /// `path`; `u64::MAX` for file systems without a fixed inode table. The default
    /// implementation cannot tell (`None`).
    fn free_inodes(&self, path: &Path) -> Option<u64> {
        let _ = path;
        None
    }
}

/// Which resource is short: the `<reason>` of the `registration rejected: <reason>` log
/// line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitRefusal {
    /// Load above `max_load_1m`.
    #[error("load average {load:.2} exceeds max_load_1m {max}")]
    Load {
        /// Measured 1-minute load.
        load: f64,
        /// `max_load_1m`.
        max: f64,
    },
    /// Available memory below `min_available_memory`.
    #[error("available memory {available_mb} MB is below min_available_memory {min_mb} MB")]
    Memory {
        /// Measured, in MB.
        available_mb: u64,
        /// `min_available_memory`, in MB.
        min_mb: u64,
    },
    /// Free disk below `min_free_disk_space`.
    #[error("free disk space {free_mb} MB is below min_free_disk_space {min_mb} MB")]
    Disk {
        /// Measured, in MB.
        free_mb: u64,
        /// `min_free_disk_space`, in MB.
        min_mb: u64,
    },
    /// Free inodes below `min_free_inodes`.
    #[error("free inodes {free} are below min_free_inodes {min}")]
    Inodes {
        /// Measured.
        free: u64,
        /// `min_free_inodes`.
        min: u64,
    },
}

const MB: u64 = 1024 * 1024;

/// Checks every configured limit against `limits`; the disk check looks at
/// `mailboxes_dir`. Unreadable values are skipped with a warning.
pub(crate) fn check_limits(
    config: &Config,
    limits: &dyn SystemLimits,
    mailboxes_dir: &Path,
) -> Result<(), LimitRefusal> {
    match limits.load_1m() {
        Some(load) if load > config.max_load_1m => {
            return Err(LimitRefusal::Load {
                load,
                max: config.max_load_1m,
            })
        }
        Some(_) => {}
        None => tracing::warn!("cannot read the load average; load limit not checked"),
    }
    match limits.available_memory_bytes() {
        Some(avail) if avail < config.min_available_memory_mb.saturating_mul(MB) => {
            return Err(LimitRefusal::Memory {
                available_mb: avail / MB,
                min_mb: config.min_available_memory_mb,
            })
        }
        Some(_) => {}
        None => tracing::warn!("cannot read available memory; memory limit not checked"),
    }
    match limits.free_disk_bytes(mailboxes_dir) {
        Some(free) if free < config.min_free_disk_space_mb.saturating_mul(MB) => {
            return Err(LimitRefusal::Disk {
                free_mb: free / MB,
                min_mb: config.min_free_disk_space_mb,
            })
        }
        Some(_) => {}
        None => tracing::warn!(
            "cannot read free disk space of {}; disk limit not checked",
            mailboxes_dir.display()
        ),
    }
    match limits.free_inodes(mailboxes_dir) {
        Some(free) if free < config.min_free_inodes => {
            return Err(LimitRefusal::Inodes {
                free,
                min: config.min_free_inodes,
            })
        }
        Some(_) => {}
        None => tracing::warn!(
            "cannot read free inodes of {}; inode limit not checked",
            mailboxes_dir.display()
        ),
    }
    Ok(())
}

/// Readings from Linux: `/proc/loadavg`, `MemAvailable` in `/proc/meminfo`, and
/// `statvfs` of the mailboxes directory (or its nearest existing ancestor): free blocks
/// and free inodes (`f_favail`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSystemLimits;

impl SystemLimits for LinuxSystemLimits {
    fn load_1m(&self) -> Option<f64> {
        parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
    }

    fn available_memory_bytes(&self) -> Option<u64> {
        parse_meminfo_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    fn free_disk_bytes(&self, path: &Path) -> Option<u64> {
        // Before the first account the directory may not exist; its file system is the
        // one of the nearest existing ancestor.
        let st = statvfs_nearest(path)?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn free_inodes(&self, path: &Path) -> Option<u64> {
        let st = statvfs_nearest(path)?;
        Some(inodes_available(st.f_files, st.f_favail))
    }
}

/// `statvfs` of `path`, or of its nearest existing ancestor: before the first account
/// the directory may not exist, and its file system is the ancestor's.
fn statvfs_nearest(path: &Path) -> Option<rustix::fs::StatVfs> {
    let existing = path.ancestors().find(|p| p.exists())?;
    rustix::fs::statvfs(existing).ok()
}

/// Free inodes from `statvfs`: file systems that allocate inodes on demand (btrfs) report
/// a total of 0, which means "no inode limit", not "none left".
fn inodes_available(total: u64, available: u64) -> u64 {
    if total == 0 {
        u64::MAX
    } else {
        available
    }
}

/// The first field of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|l: &f64| l.is_finite())
}

/// `MemAvailable:  123456 kB` in `/proc/meminfo`, in bytes.
fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => value.checked_mul(1024),
        _ => None,
    }
}

/// Fixed readings, for tests and for embedders that measure resources themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedSystemLimits {
    /// What [`SystemLimits::load_1m`] returns.
    pub load_1m: Option<f64>,
    /// What [`SystemLimits::available_memory_bytes`] returns.
    pub available_memory_bytes: Option<u64>,
    /// What [`SystemLimits::free_disk_bytes`] returns for any path.
    pub free_disk_bytes: Option<u64>,
    /// What [`SystemLimits::free_inodes`] returns for any path.
    pub free_inodes: Option<u64>,
}

impl FixedSystemLimits {
    /// An idle machine with plenty of memory and disk.
    pub fn plenty() -> Self {
        FixedSystemLimits {
            load_1m: Some(0.0),
            available_memory_bytes: Some(u64::MAX),
            free_disk_bytes: Some(u64::MAX),
            free_inodes: Some(u64::MAX),
        }
    }
}

impl SystemLimits for FixedSystemLimits {
    fn load_1m(&self) -> Option<f64> {
        self.load_1m
    }
    fn available_memory_bytes(&self) -> Option<u64> {
        self.available_memory_bytes
    }
    fn free_disk_bytes(&self, _path: &Path) -> Option<u64> {
        self.free_disk_bytes
    }
    fn free_inodes(&self, _path: &Path) -> Option<u64> {
        self.free_inodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::with_domain("chat.example.org")
    }

    #[test]
    fn each_limit_refuses() {
        let c = cfg();
        let p = Path::new("/");
        let ok = FixedSystemLimits::plenty();
        assert_eq!(check_limits(&c, &ok, p), Ok(()));
        let load = FixedSystemLimits {
            load_1m: Some(5.01),
            ..ok
        };
        assert!(matches!(
            check_limits(&c, &load, p),
            Err(LimitRefusal::Load { .. })
        ));
        let at_limit = FixedSystemLimits {
            load_1m: Some(5.0),
            ..ok
        };
        assert_eq!(check_limits(&c, &at_limit, p), Ok(()));
        let mem = FixedSystemLimits {
            available_memory_bytes: Some(199 * MB),
            ..ok
        };
        let err = check_limits(&c, &mem, p).unwrap_err();
        assert!(err.to_string().contains("min_available_memory"), "{err}");
        let disk = FixedSystemLimits {
            free_disk_bytes: Some(1023 * MB),
            ..ok
        };
        assert!(matches!(
            check_limits(&c, &disk, p),
            Err(LimitRefusal::Disk {
                free_mb: 1023,
                min_mb: 1024
            })
        ));
        let inodes = FixedSystemLimits {
            free_inodes: Some(c.min_free_inodes - 1),
            ..ok
        };
        assert!(matches!(
            check_limits(&c, &inodes, p),
            Err(LimitRefusal::Inodes { free, min }) if free + 1 == min
        ));
        let inodes_at_limit = FixedSystemLimits {
            free_inodes: Some(c.min_free_inodes),
            ..ok
        };
        assert_eq!(check_limits(&c, &inodes_at_limit, p), Ok(()));
    }

    #[test]
    fn file_systems_without_an_inode_table_are_not_short_of_inodes() {
        assert_eq!(inodes_available(0, 0), u64::MAX);
        assert_eq!(inodes_available(1000, 7), 7);
    }

    #[test]
    fn unreadable_values_are_ignored_but_others_still_apply() {
        let c = cfg();
        let p = Path::new("/");
        let unknown = FixedSystemLimits {
            load_1m: None,
            available_memory_bytes: None,
            free_disk_bytes: None,
            free_inodes: None,
        };
        assert_eq!(check_limits(&c, &unknown, p), Ok(()));
        let inodes_short = FixedSystemLimits {
            free_inodes: Some(0),
            ..unknown
        };
        assert!(matches!(
            check_limits(&c, &inodes_short, p),
            Err(LimitRefusal::Inodes { .. })
        ));
        let disk_short = FixedSystemLimits {
            free_disk_bytes: Some(0),
            ..unknown
        };
        assert!(matches!(
            check_limits(&c, &disk_short, p),
            Err(LimitRefusal::Disk { .. })
        ));
    }

    #[test]
    fn proc_parsing() {
        assert_eq!(parse_loadavg("0.97 0.54 0.22 1/89 11255\n"), Some(0.97));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("nan 1 1"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable:   24258572 kB\n";
        assert_eq!(parse_meminfo_available(meminfo), Some(24_258_572 * 1024));
        assert_eq!(parse_meminfo_available("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_meminfo_available("MemAvailable: x kB\n"), None);
    }

    #[test]
    fn linux_readings_are_plausible_here() {
        // On Linux these files exist; elsewhere the readings are simply absent.
        let l = LinuxSystemLimits;
        if Path::new("/proc/loadavg").exists() {
            assert!(l.load_1m().is_some_and(|v| v >= 0.0));
            assert!(l.available_memory_bytes().is_some_and(|v| v > 0));
        }
        assert!(l
            .free_disk_bytes(Path::new("/nonexistent/dir/below/root"))
            .is_some());
        assert!(l
            .free_inodes(Path::new("/nonexistent/dir/below/root"))
            .is_some_and(|n| n > 0));
    }
}
