// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Capabilities: a daemon started with any (as root, or with file
//! capabilities) keeps only those its device declares, adjusted by
//! `--modcaps`, once it is set up. The rest leave the effective, permitted,
//! inheritable and ambient sets, and the bounding set, so that no later
//! step can get them back.
//!
//! Capabilities belong to a thread: the drop covers the thread that calls
//! `serve` and every thread it starts afterwards (all socket and vring
//! threads). A thread started before `serve` (gpio's and can's
//! `--*-control` sockets) would keep what the process had, so such threads
//! start through [`crate::daemon::spawn_host_thread`], which drops them all
//! in the new thread before it runs anything.

use std::io;

use crate::error::{Error, Result};

/// Capability numbers and their names in capabilities(7), without `CAP_`.
const NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// `CAP_NET_ADMIN`, e.g. for binding an HCI user channel.
pub const CAP_NET_ADMIN: u8 = 12;
/// `CAP_NET_RAW`.
pub const CAP_NET_RAW: u8 = 13;

/// A set of capabilities, one bit per number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSet(u64);

impl CapSet {
    /// The set holding `caps`.
    pub const fn of(mut caps: &[u8]) -> Self {
        let mut bits = 0u64;
        while let [first, rest @ ..] = caps {
            bits |= 1u64 << (*first & 63);
            caps = rest;
        }
        CapSet(bits)
    }

    /// The bits, as `/proc/PID/status` shows them (`CapEff` etc.).
    pub fn bits(self) -> u64 {
        self.0
    }

    fn contains(self, cap: u8) -> bool {
        self.0 & (1u64 << (cap & 63)) != 0
    }

    /// The capabilities' names, comma-separated (`none` for the empty set).
    pub fn names(self) -> String {
        let names: Vec<&str> = NAMES
            .iter()
            .zip(0u8..)
            .filter(|(_, n)| self.contains(*n))
            .map(|(name, _)| *name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

/// `--modcaps`: capabilities added to (`+name`) or removed from (`-name`)
/// what the device keeps, `:`-separated, as virtiofsd spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModCaps {
    add: CapSet,
    remove: CapSet,
}

impl ModCaps {
    /// The set kept: the device's `keep`, modified.
    pub fn apply(self, keep: CapSet) -> CapSet {
        CapSet((keep.0 | self.add.0) & !self.remove.0)
    }
}

/// Parses `+net_admin:-net_raw` (names case-insensitive, `cap_` optional).
pub fn parse_modcaps(text: &str) -> std::result::Result<ModCaps, String> {
    let mut mods = ModCaps::default();
    for item in text.split(':') {
        let (add, name) = if let Some(name) = item.strip_prefix('+') {
            (true, name)
        } else if let Some(name) = item.strip_prefix('-') {
            (false, name)
        } else {
            return Err(format!("{item:?}: start each capability with + or -"));
        };
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        let number = NAMES
            .iter()
            .zip(0u8..)
            .find(|(n, _)| **n == bare)
            .map(|(_, number)| number)
            .ok_or_else(|| format!("{name:?} is not a capability (see capabilities(7))"))?;
        let set = if add { &mut mods.add } else { &mut mods.remove };
        set.0 |= 1u64 << number;
    }
    Ok(mods)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a v3 header and the two data words v3 reads and writes.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn split(set: u64) -> [u32; 2] {
    // Low and high words; the truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    [set as u32, (set >> 32) as u32]
}

/// Keeps `keep` (of what the calling thread has) and drops every other
/// capability from all five sets; the set kept. `None`, with nothing to
/// do, for a thread without capabilities.
pub(crate) fn drop_all_but(keep: CapSet) -> Result<Option<CapSet>> {
    let fail = |what: &str| Error::Sandbox(format!("{what}: {}", io::Error::last_os_error()));
    let [low, high] = capget().map_err(|e| Error::Sandbox(format!("capget: {e}")))?;
    let permitted = u64::from(low.permitted) | (u64::from(high.permitted) << 32);
    // SAFETY: prctl with integer arguments only.
    let ambient = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // EINVAL: a kernel older than 4.3, without ambient capabilities.
    if ambient != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(fail("clearing ambient capabilities"));
    }
    if permitted == 0 {
        return Ok(None);
    }
    // The bounding set first: dropping from it needs CAP_SETPCAP, which
    // the capset below may remove. Numbers past the kernel's last are
    // EINVAL, and end the loop.
    for cap in 0u8..64 {
        if keep.contains(cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) => break,
                // Without CAP_SETPCAP the bounding set stays; the sets
                // below still lose everything.
                Some(libc::EPERM) => break,
                _ => return Err(fail("dropping from the bounding set")),
            }
        }
    }
    let kept = keep.0 & permitted;
    let words = split(kept);
    let mut data = words.map(|w| CapData {
        effective: w,
        permitted: w,
        inheritable: 0,
    });
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: a v3 header and the two data words v3 reads.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_mut_ptr()) } != 0 {
        return Err(fail("capset"));
    }
    Ok(Some(CapSet(kept)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn modcaps_adds_and_removes_by_name() {
        let mods = parse_modcaps("+NET_ADMIN:-cap_net_raw:+sys_nice").unwrap();
        let kept = mods.apply(CapSet::of(&[CAP_NET_RAW]));
        assert_eq!(kept, CapSet::of(&[CAP_NET_ADMIN, 23]));
        assert_eq!(kept.names(), "net_admin,sys_nice");
        assert_eq!(CapSet::default().names(), "none");
        assert!(parse_modcaps("net_admin")
            .unwrap_err()
            .contains("start each capability with + or -"));
        assert!(parse_modcaps("+net_admn")
            .unwrap_err()
            .contains("not a capability"));
        assert_eq!(NAMES.get(40), Some(&"checkpoint_restore"));
    }
}
