// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! systemd socket activation (sd_listen_fds(3)): systemd hands the
//! listening sockets of a `.socket` unit to the service as descriptors
//! 3, 4, ... and says how many in `LISTEN_FDS`, for the process named in
//! `LISTEN_PID`. The units in `packaging/systemd/` run the daemon with
//! `--socket-fd 3`; this module checks that the descriptors `--socket-fd`
//! and `--socket-count` name are among those systemd passed.

use std::ops::Range;
use std::os::fd::RawFd;

use log::info;

use crate::error::{Error, Result};

/// The first descriptor systemd passes.
pub const LISTEN_FDS_START: RawFd = 3;

/// The descriptors passed to the process `pid`, given the values of
/// `LISTEN_PID` and `LISTEN_FDS`; `None` when they are absent, malformed
/// or meant for another process (a parent that did not clear them).
pub fn passed_fds(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
) -> Option<Range<RawFd>> {
    let for_pid: u32 = listen_pid?.trim().parse().ok()?;
    if for_pid != pid {
        return None;
    }
    let count: RawFd = listen_fds?.trim().parse().ok()?;
    let end = LISTEN_FDS_START.checked_add(count)?;
    Some(LISTEN_FDS_START..end)
}

/// With systemd's variables set for this process, checks that `count`
/// descriptors from `fd` on were all passed, then removes the variables
/// (as sd_listen_fds(1) does) so that no process the daemon starts takes
/// the descriptors for its own. Without them, does nothing: the
/// descriptors come from another manager (libvirt, a test).
pub fn claim(fd: RawFd, count: u16) -> Result<()> {
    let var = |name| std::env::var(name).ok();
    let Some(passed) = passed_fds(
        std::process::id(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
    ) else {
        return Ok(());
    };
    let wanted = fd..fd.saturating_add(RawFd::from(count));
    if wanted.start < passed.start || wanted.end > passed.end {
        return Err(Error::BadSocketFd {
            fd,
            reason: format!(
                "systemd passed descriptors {}..{} (LISTEN_FDS), not {}..{}",
                passed.start, passed.end, wanted.start, wanted.end
            ),
        });
    }
    info!(
        "socket activation: serving descriptors {}..{} of LISTEN_FDS",
        wanted.start, wanted.end
    );
    // The daemon binds before it starts any thread, so no other thread
    // reads the environment while it changes.
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_variables_for_this_process_count() {
        assert_eq!(passed_fds(7, Some("7"), Some("2")), Some(3..5));
        assert_eq!(passed_fds(7, Some("8"), Some("2")), None);
        assert_eq!(passed_fds(7, None, Some("2")), None);
        assert_eq!(passed_fds(7, Some("7"), None), None);
        assert_eq!(passed_fds(7, Some("7"), Some("x")), None);
    }
}
