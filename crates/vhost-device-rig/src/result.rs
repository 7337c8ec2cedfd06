// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a scenario run produced: its verdict and the logs behind it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::text::tail_lines;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest script exited 0.
    Passed,
    /// The guest script exited non-zero (125: a module of
    /// [`crate::Scenario::modules`] did not load).
    GuestFailed {
        /// The script's exit code.
        exit_code: i32,
    },
    /// The scenario did not end within its timeout; everything was killed.
    Timeout {
        /// The timeout that expired.
        after: Duration,
        /// Whether the guest had started the script (else: stuck booting,
        /// often QEMU waiting for a backend that never answers).
        script_started: bool,
    },
    /// A backend exited early or never created its socket.
    BackendFailed {
        /// The backend's program name.
        backend: String,
        /// What happened.
        reason: String,
    },
    /// QEMU exited (or failed to start) before the guest script ended.
    QemuFailed {
        /// What happened.
        reason: String,
    },
}

impl Outcome {
    /// Which part failed: `guest`, `timeout`, `backend`, `qemu`; `ok` when passed.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Passed => "ok",
            Self::GuestFailed { .. } => "guest",
            Self::Timeout { .. } => "timeout",
            Self::BackendFailed { .. } => "backend",
            Self::QemuFailed { .. } => "qemu",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed => write!(f, "ok"),
            Self::GuestFailed { exit_code: 125 } => {
                write!(
                    f,
                    "guest: a requested kernel module did not load (exit 125)"
                )
            }
            Self::GuestFailed { exit_code } => {
                write!(f, "guest: script exited with {exit_code}")
            }
            Self::Timeout {
                after,
                script_started,
            } => write!(
                f,
                "timeout: nothing ended within {}s, {}",
                after.as_secs(),
                if *script_started {
                    "guest script still running"
                } else {
                    "guest never reached the script (QEMU waiting on a backend, or boot hung)"
                }
            ),
            Self::BackendFailed { backend, reason } => write!(f, "backend: {backend} {reason}"),
            Self::QemuFailed { reason } => write!(f, "qemu: {reason}"),
        }
    }
}

/// What a scenario run produced.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub name: String,
    /// The verdict.
    pub outcome: Outcome,
    /// The guest script's exit code, if it ended.
    pub exit_code: Option<i32>,
    /// The whole serial console (kernel messages and script output).
    pub serial_log: String,
    /// What was printed between the start of the guest script and its end.
    pub guest_output: String,
    /// Screendumps the guest asked for (`rig-screendump NAME`), in order.
    pub screendumps: Vec<PathBuf>,
    /// The directory with every log: `serial.log`, `qemu.log`,
    /// `qemu.cmdline`, `backend-N-NAME.log`, `control.log`, `result.txt`.
    pub dir: PathBuf,
    /// Wall time of the whole run.
    pub duration: Duration,
    /// Wall time from QEMU's start to the guest script's start.
    pub boot_to_script: Option<Duration>,
    /// How many times the rig reset the machine for the guest
    /// ([`crate::Scenario::resets`]).
    pub resets: u32,
}

impl ScenarioResult {
    /// Whether the guest script ran and exited 0.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// The screendump the guest saved as `name`.
    pub fn screendump(&self, name: &str) -> Option<&Path> {
        let file = format!("{name}.png");
        self.screendumps
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == file))
            .map(PathBuf::as_path)
    }

    /// A human report: the verdict, where the logs are, and the tails of the
    /// logs that matter for this verdict.
    pub fn report(&self) -> String {
        let mut r = format!(
            "rig: scenario {} {} in {:.1}s\n  logs kept in {}\n",
            self.name,
            if self.passed() {
                "passed".to_owned()
            } else {
                format!("FAILED ({})", self.outcome)
            },
            self.duration.as_secs_f64(),
            self.dir.display()
        );
        let section = |r: &mut String, title: &str, file: &str, n: usize| {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            if !text.trim().is_empty() {
                r.push_str(&format!("  --- {title}: last {n} lines of {file} ---\n"));
                r.push_str(&tail_lines(&text, n));
                r.push('\n');
            }
        };
        if !self.passed() {
            if let Ok(entries) = std::fs::read_dir(&self.dir) {
                let mut logs: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("backend-"))
                    .collect();
                logs.sort();
                for l in logs {
                    section(&mut r, "backend", &l, 15);
                }
            }
            section(&mut r, "qemu", "qemu.log", 15);
            section(&mut r, "guest", "serial.log", 40);
        }
        r
    }

    /// Panics with [`Self::report`] unless the scenario passed.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(self.passed(), "{}", self.report());
    }
}

/// Writes the one result line, bypassing the test harness's output capture so
/// it shows even for passing tests.
pub(crate) fn print_line(name: &str, verdict: &str, elapsed: Duration, extra: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "rig: {name} ... {verdict} in {:.1}s{extra}",
        elapsed.as_secs_f64()
    );
}
