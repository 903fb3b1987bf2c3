//! Resident memory of a process, for benchmarks (Linux `/proc`).

use std::fmt;

/// `VmRSS` (now) and `VmHWM` (peak) of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: Option<u64>,
    pub peak_kib: Option<u64>,
}

impl Memory {
    /// Of this process.
    pub fn of_self() -> Self {
        Self::read("/proc/self/status")
    }

    /// Of process `pid`.
    pub fn of(pid: u32) -> Self {
        Self::read(&format!("/proc/{pid}/status"))
    }

    fn read(path: &str) -> Self {
        let status = std::fs::read_to_string(path).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    pub fn peak_mib(&self) -> Option<f64> {
        self.peak_kib.map(|k| k as f64 / 1024.0)
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib =
            |k: Option<u64>| k.map_or("n/a".to_owned(), |k| format!("{:.0} MB", k as f64 / 1024.0));
        write!(
            f,
            "VmRSS {}, VmHWM {}",
            mib(self.rss_kib),
            mib(self.peak_kib)
        )
    }
}
