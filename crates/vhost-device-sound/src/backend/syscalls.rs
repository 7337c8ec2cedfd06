// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The system calls the host-library backends add to the core's seccomp
//! list (`vhost_device_common::sandbox::seccomp`). Each backend builds its
//! host side per connection, so alsa-lib and PipeWire's client load their
//! configuration and plugins under the filter.
//!
//! How the lists were found: the daemon ran in `--seccomp log` mode in the
//! tests that drive each backend for real, and every call it logged is
//! here (`host_kernel_alsa_loopback`: hw, dmix and dsnoop on snd-aloop;
//! `pipewire_nodes_appear_and_pass_audio_both_ways` and
//! `alsa_through_the_pipewire_plugin_passes_audio_both_ways` against a real
//! PipeWire daemon, with its realtime module). Calls marked "not seen in
//! the tests" are on paths users reach that the tests do not take; each
//! says which.

/// PipeWire's client (libpipewire and the SPA plugins it loads).
pub(super) const PIPEWIRE: &[libc::c_long] = &[
    // Seen: the connection to the PipeWire daemon's socket (and to the
    // system bus, for RTKit, below). A reconnection after the daemon
    // restarts makes the same calls.
    libc::SYS_socket,
    libc::SYS_connect,
    // Seen: buffers shared with the daemon are locked in memory (and
    // unlocked as they go).
    libc::SYS_mlock,
    libc::SYS_munlock,
    // Seen with the realtime module (`module-rt`, loaded by every client
    // since PipeWire 1.0; the test loads it on 0.3 with `client-rt.conf`):
    // its data thread asks for SCHED_FIFO, directly or through RTKit, and
    // sets RLIMIT_RTTIME first; the D-Bus handshake with RTKit reads the
    // caller's ids.
    libc::SYS_sched_getparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_prlimit64,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    // Not seen in the tests (run as root, where SCHED_FIFO is granted):
    // without realtime rights the module falls back to a nice level of its
    // thread.
    libc::SYS_setpriority,
    libc::SYS_getpriority,
    // PipeWire 1.x checks the file system of the memory it maps.
    libc::SYS_statfs,
    libc::SYS_fstatfs,
];

/// alsa-lib: its configuration, the `hw` and `plug` PCMs, the dmix and
/// dsnoop plugins, and the plugins that route ALSA to a sound server (the
/// `pipewire` and `pulse` PCMs of a desktop's default device), which make
/// the PipeWire client's calls. Seen through the `pipewire` PCM
/// (`alsa_through_the_pipewire_plugin_passes_audio_both_ways`; the plugin
/// loads the realtime module): socket, connect, mlock and the realtime
/// module's calls. Seen with dmix and dsnoop: socket and connect again (they
/// give their shared memory to the group `audio`, alsa-lib's default, whose
/// lookup asks nscd or systemd-userdb over a Unix socket first), mlock (the
/// shared ring), and the System V calls below. The `pulse` PCM is a
/// PulseAudio client, not run by the tests; with PipeWire's pulse server
/// it needs the same kinds of calls.
pub(super) const ALSA: &[libc::c_long] =
    &concat::<{ PIPEWIRE.len() + DIRECT.len() }>(PIPEWIRE, DIRECT);

/// Seen: dmix and dsnoop share their ring and hardware pointer between
/// clients through System V shared memory, under a semaphore (`semop` is
/// `semtimedop` in glibc on x86_64; `shmdt` and the removals run as the
/// last client closes).
const DIRECT: &[libc::c_long] = &[
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmdt,
    libc::SYS_shmctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_semctl,
];

/// `a` then `b`, as one array of `N` (their total length). Only evaluated
/// at compile time, where an index out of bounds is a build error.
#[allow(clippy::indexing_slicing)]
const fn concat<const N: usize>(a: &[libc::c_long], b: &[libc::c_long]) -> [libc::c_long; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < a.len() { a[i] } else { b[i - a.len()] };
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alsa_holds_the_pipewire_clients_calls_and_dmixs() {
        // ALSA's default device on a desktop is the pipewire (or pulse)
        // plugin: a PipeWire client inside alsa-lib.
        for call in PIPEWIRE.iter().chain(DIRECT) {
            assert!(ALSA.contains(call), "{call} is not on the alsa list");
        }
        assert_eq!(ALSA.len(), 24);
    }
}
