// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Finding a real chip again after it went away, inside the sandbox.
//!
//! A chip is known by its label and its number of lines, as read when it
//! was opened ([`ChipIdentity`]): another chip at its old node is not it,
//! so the guest's lines are never claimed there. A chip the user named by
//! label is followed to whatever node it comes back at.
//!
//! The search cannot list `/dev` as `gpiocdev::chip::chips` does: the
//! daemon's Landlock rule on `/dev` grants opening nodes read-only and
//! their ioctls, not reading the directory, and its seccomp filter has no
//! `getdents64`. So it opens `/dev/gpiochip0` to `/dev/gpiochip63` in
//! turn ([`PROBED_CHIPS`]) and reads each chip's info, the calls the
//! daemon makes anyway, and it runs at most once per [`SCAN_INTERVAL`]
//! while the chip stays away ([`ScanGate`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gpiocdev::Chip;

use crate::error::{Error, Result};

/// Where a search probes the chips' nodes (`gpiocdev` finds chips there).
pub const CHIP_DIR: &str = "/dev";

/// How many nodes a search probes: `gpiochip0` to `gpiochip63`. The kernel
/// numbers a new chip with the lowest free number, so a chip comes back
/// beyond that only on a machine with more than 64 chips at once.
pub const PROBED_CHIPS: u32 = 64;

/// The least time between two searches while a chip is away: each one
/// costs up to [`PROBED_CHIPS`] failed opens, and the guest's requests are
/// what bring the daemon to search.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What tells the guest's chip from another at the same node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipIdentity {
    /// The chip's label.
    pub label: String,
    /// Its number of lines.
    pub num_lines: u32,
}

impl ChipIdentity {
    /// The identity of an open chip.
    pub fn of(chip: &Chip) -> gpiocdev::Result<Self> {
        let info = chip.info()?;
        Ok(ChipIdentity {
            label: info.label,
            num_lines: info.num_lines,
        })
    }

    /// Opens the chip at `path` if it is this one.
    pub fn open_at(&self, path: &Path) -> Result<Chip> {
        let err = |what: &str| {
            let chip = path.display().to_string();
            let what = what.to_owned();
            move |source| Error::Chip { chip, what, source }
        };
        let chip = Chip::from_path(path).map_err(err("open"))?;
        let found = Self::of(&chip).map_err(err("read chip info"))?;
        if found != *self {
            return Err(Error::ChipMissing {
                chip: path.display().to_string(),
                reason: format!(
                    "another chip is there now ('{}', {} lines), not '{}' ({} lines)",
                    found.label, found.num_lines, self.label, self.num_lines
                ),
            });
        }
        Ok(chip)
    }
}

/// The nodes a search probes, in order.
pub fn probed_nodes(dir: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    (0..PROBED_CHIPS).map(move |n| dir.join(format!("gpiochip{n}")))
}

/// The probed nodes of `dir` whose chip is labelled `label` and, if given,
/// has `num_lines` lines. Nodes that cannot be opened are skipped.
pub fn probe_label(dir: &Path, label: &str, num_lines: Option<u32>) -> Vec<PathBuf> {
    probed_nodes(dir)
        .filter(|node| {
            Chip::from_path(node)
                .and_then(|chip| ChipIdentity::of(&chip))
                .is_ok_and(|id| {
                    id.label == label && num_lines.is_none_or(|want| id.num_lines == want)
                })
        })
        .collect()
}

/// The one node of `found`, or why there is not exactly one.
pub fn only_one(mut found: Vec<PathBuf>, label: &str, num_lines: Option<u32>) -> Result<PathBuf> {
    if found.len() == 1 {
        return Ok(found.remove(0));
    }
    let lines = num_lines.map_or_else(String::new, |n| format!(" with {n} lines"));
    Err(Error::ChipMissing {
        chip: format!("label '{label}'"),
        reason: format!(
            "{} of {CHIP_DIR}/gpiochip0 to gpiochip{} carry the label{lines}, not one",
            found.len(),
            PROBED_CHIPS - 1
        ),
    })
}

/// Lets a search run at most once per [`SCAN_INTERVAL`].
#[derive(Debug, Default)]
pub struct ScanGate {
    last: Option<Instant>,
}

impl ScanGate {
    /// Whether a search may run at `now`; if so, it counts as run.
    pub fn pass(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < SCAN_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// The chip was found: the next time it goes away, search at once.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_search_runs_at_most_once_a_second_until_the_chip_is_found() {
        let mut gate = ScanGate::default();
        let t0 = Instant::now();
        assert!(gate.pass(t0), "the first search runs at once");
        assert!(!gate.pass(t0));
        assert!(!gate.pass(t0 + Duration::from_millis(999)));
        assert!(gate.pass(t0 + SCAN_INTERVAL));
        assert!(!gate.pass(t0 + Duration::from_millis(1500)));
        // A clock read earlier than the last search does not open the gate.
        assert!(!gate.pass(t0));
        gate.reset();
        assert!(gate.pass(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn the_probe_is_bounded_and_names_the_nodes() {
        let nodes: Vec<_> = probed_nodes(Path::new("/dev")).collect();
        assert_eq!(nodes.len(), 64);
        assert_eq!(nodes[0], Path::new("/dev/gpiochip0"));
        assert_eq!(nodes[63], Path::new("/dev/gpiochip63"));
    }

    #[test]
    fn files_that_are_no_chips_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["gpiochip0", "gpiochip3", "gpiochip64"] {
            std::fs::write(dir.path().join(name), "label").unwrap();
        }
        std::os::unix::fs::symlink("/dev/null", dir.path().join("gpiochip1")).unwrap();
        std::fs::create_dir(dir.path().join("gpiochip2")).unwrap();
        assert!(probe_label(dir.path(), "label", None).is_empty());
        assert!(probe_label(Path::new("/nonexistent"), "label", Some(4)).is_empty());
    }

    #[test]
    fn exactly_one_chip_must_carry_the_label() {
        let one = only_one(vec!["/dev/gpiochip2".into()], "x", Some(4)).unwrap();
        assert_eq!(one, Path::new("/dev/gpiochip2"));
        let none = only_one(Vec::new(), "x", Some(4)).unwrap_err().to_string();
        assert_eq!(
            none,
            "label 'x': 0 of /dev/gpiochip0 to gpiochip63 carry the label with 4 lines, not one"
        );
        let two = vec!["/dev/gpiochip0".into(), "/dev/gpiochip5".into()];
        let two = only_one(two, "x", None).unwrap_err().to_string();
        assert!(two.contains("2 of") && !two.contains("lines"), "{two}");
    }
}
