// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The seccomp allow-list, the last step of the sandbox.
//!
//! The list is the core's (what the daemon, vhost-user-backend, the Rust
//! runtime and the logger need) plus what the device adds through
//! [`crate::VirtioDevice::seccomp_policy`]. It applies to every thread, and
//! the threads started later (the socket threads, and one vring worker per
//! connection) inherit it. Devices are built per connection, so opening
//! their host devices happens under the filter and is on the list.
//!
//! Modes (`--seccomp`):
//! - `kill` (the default): a call outside the list gets SIGSYS. A handler
//!   writes `seccomp: forbidden system call NAME (NUMBER)` to stderr, then
//!   the process dies of SIGSYS, so both a packager and the service manager
//!   can tell what happened.
//! - `log`: the call goes through and the daemon logs `seccomp: system call
//!   NAME (NUMBER) is outside the allow-list` (a warning), to build a
//!   device's list. The filter hands each such call to a thread of the
//!   daemon (a seccomp user notification), which logs it and lets the kernel
//!   carry it out; this works whether or not the kernel's audit is on.
//! - `none`: no filter (`no_new_privs` still applies).

use std::collections::BTreeMap;
use std::io;

use clap::ValueEnum;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use log::{info, warn};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

use crate::error::{Error, Result};

/// What happens on a system call outside the allow-list.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompMode {
    /// Kill the process with SIGSYS, naming the call on stderr.
    Kill,
    /// Allow it, and log it.
    Log,
    /// Install no filter.
    None,
}

/// What a device adds to the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeccompPolicy {
    /// System calls beyond the core's list (`libc::SYS_*`).
    pub extra: &'static [libc::c_long],
    /// The mode when `--seccomp` is not given: `Kill` for every device
    /// today, the host-library backends included (their lists name what
    /// alsa-lib, PipeWire and Mesa call). A device that cannot list its
    /// calls would say `None` here, and why in its README.
    pub default_mode: SeccompMode,
}

impl Default for SeccompPolicy {
    fn default() -> Self {
        SeccompPolicy {
            extra: &[],
            default_mode: SeccompMode::Kill,
        }
    }
}

/// Calls every daemon makes: memory, threads, signals, time, the
/// vhost-user socket and its fds, epoll and eventfds, files the devices and
/// the logger use, and the exit path.
const CORE: &[libc::c_long] = &[
    libc::SYS_accept4,
    libc::SYS_brk,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_fallocate,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getpeername,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_ioctl,
    libc::SYS_lseek,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_munmap,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_pipe2,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_read,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_set_robust_list,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_statx,
    libc::SYS_tgkill,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_write,
    libc::SYS_writev,
];

/// Calls that only exist on x86_64 (aarch64 has the `*at` and `p*` forms
/// above only).
#[cfg(target_arch = "x86_64")]
const CORE_X86_64: &[libc::c_long] = &[
    libc::SYS_access,
    libc::SYS_epoll_wait,
    libc::SYS_open,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_stat,
    libc::SYS_unlink,
];
#[cfg(not(target_arch = "x86_64"))]
const CORE_X86_64: &[libc::c_long] = &[];

/// What LLVM's profile runtime does when the process exits: create the
/// profile's directory and lock the file. Allowed only in a coverage build
/// (`cargo llvm-cov` sets `--cfg coverage`) that writes a profile (when
/// LLVM_PROFILE_FILE names one); never in any other build.
const PROFILE: &[libc::c_long] = &[
    libc::SYS_flock,
    libc::SYS_mkdirat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
];

/// Installs the filter on every thread of the process in `mode`, with
/// the calls `policy` adds. `no_new_privs` must be set already.
pub(super) fn install(mode: SeccompMode, policy: &SeccompPolicy) -> Result<()> {
    match mode {
        SeccompMode::None => {
            info!("seccomp: no filter (--seccomp none)");
            return Ok(());
        }
        SeccompMode::Log => {
            let program = build(policy.extra, SeccompAction::Trap)?;
            let listener = install_with_listener(&to_user_notif(program))?;
            std::thread::Builder::new()
                .name("seccomp-log".into())
                .spawn(move || log_calls(&listener))
                .map_err(|e| Error::Sandbox(format!("seccomp log thread: {e}")))?;
        }
        SeccompMode::Kill => {
            install_sigsys_handler()?;
            let program = build(policy.extra, SeccompAction::Trap)?;
            seccompiler::apply_filter_all_threads(&program)
                .map_err(|e| Error::Sandbox(e.to_string()))?;
        }
    }
    info!("seccomp: allow-list installed (--seccomp {mode:?})");
    Ok(())
}

/// The BPF program: the core's calls and `extra` allowed, `action` for the
/// rest.
fn build(extra: &[libc::c_long], action: SeccompAction) -> Result<BpfProgram> {
    let profile = if cfg!(coverage) && std::env::var_os("LLVM_PROFILE_FILE").is_some() {
        PROFILE
    } else {
        &[]
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = CORE
        .iter()
        .chain(CORE_X86_64)
        .chain(profile)
        .chain(extra)
        .map(|&call| (call, Vec::new()))
        .collect();
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| Error::Sandbox(e.to_string()))?;
    let filter = SeccompFilter::new(rules, action, SeccompAction::Allow, arch)
        .map_err(|e| Error::Sandbox(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| Error::Sandbox(e.to_string()))
}

/// The same program, with every "trap" answer turned into a user
/// notification (seccompiler has no such action).
fn to_user_notif(mut program: BpfProgram) -> BpfProgram {
    const RET_K: u16 = 0x06;
    for insn in &mut program {
        if insn.code == RET_K && insn.k == libc::SECCOMP_RET_TRAP {
            insn.k = libc::SECCOMP_RET_USER_NOTIF;
        }
    }
    program
}

/// Installs `program` on every thread and returns the notification fd.
fn install_with_listener(program: &BpfProgram) -> Result<OwnedFd> {
    let len = u16::try_from(program.len())
        .map_err(|_| Error::Sandbox("seccomp program too long".into()))?;
    let fprog = libc::sock_fprog {
        len,
        // The two sock_filter types have the same layout (linux/filter.h).
        filter: program.as_ptr().cast_mut().cast(),
    };
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    // SAFETY: `fprog` points at `program`, which outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &raw const fprog,
        )
    };
    let fd = libc::c_int::try_from(fd).unwrap_or(-1);
    if fd < 0 {
        return Err(Error::Sandbox(format!(
            "seccomp: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Log mode's thread: logs each call the filter reports and lets it go on.
/// It only makes listed calls itself (ioctl, write, futex), or it would wait
/// for its own answer.
fn log_calls(listener: &OwnedFd) {
    loop {
        // SAFETY: the kernel wants a zeroed request; plain data.
        let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: a valid listener fd and a request of the size the ioctl
        // number encodes.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &raw mut request,
            )
        };
        if ret < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Interrupted, or the caller died before we read it.
                Some(libc::EINTR | libc::ENOENT) => continue,
                _ => return,
            }
        }
        let nr = libc::c_long::from(request.data.nr);
        let name = name_of(nr).unwrap_or("?");
        warn!(
            "seccomp: system call {name} ({nr}) is outside the allow-list (thread {}); \
             --seccomp log lets it through",
            request.pid
        );
        let mut response = libc::seccomp_notif_resp {
            id: request.id,
            val: 0,
            error: 0,
            flags: u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(1),
        };
        // SAFETY: as above, with a response of the encoded size.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &raw mut response,
            )
        };
    }
}

fn name_of(nr: libc::c_long) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// Names of the calls a packager is most likely to meet; others are
/// reported by number.
const NAMES: &[(libc::c_long, &str)] = &[
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_mkdirat, "mkdirat"),
    (libc::SYS_renameat2, "renameat2"),
    (libc::SYS_fchmodat, "fchmodat"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_setuid, "setuid"),
    (libc::SYS_sched_setaffinity, "sched_setaffinity"),
    (libc::SYS_sysinfo, "sysinfo"),
    // What the host-library backends' lists add (sound's alsa and
    // pipewire, gpu's virgl), so that a user's setup that needs one more
    // such call is named in the message.
    (libc::SYS_mlock, "mlock"),
    (libc::SYS_munlock, "munlock"),
    (libc::SYS_shmget, "shmget"),
    (libc::SYS_shmat, "shmat"),
    (libc::SYS_shmdt, "shmdt"),
    (libc::SYS_shmctl, "shmctl"),
    (libc::SYS_semget, "semget"),
    (libc::SYS_semop, "semop"),
    (libc::SYS_semtimedop, "semtimedop"),
    (libc::SYS_semctl, "semctl"),
    (libc::SYS_sched_setscheduler, "sched_setscheduler"),
    (libc::SYS_sched_getscheduler, "sched_getscheduler"),
    (libc::SYS_sched_getparam, "sched_getparam"),
    (libc::SYS_sched_get_priority_max, "sched_get_priority_max"),
    (libc::SYS_sched_get_priority_min, "sched_get_priority_min"),
    (libc::SYS_setpriority, "setpriority"),
    (libc::SYS_getpriority, "getpriority"),
    (libc::SYS_prlimit64, "prlimit64"),
    (libc::SYS_getresuid, "getresuid"),
    (libc::SYS_getresgid, "getresgid"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_flock, "flock"),
    (libc::SYS_statfs, "statfs"),
    (libc::SYS_fstatfs, "fstatfs"),
    (libc::SYS_inotify_init1, "inotify_init1"),
    (libc::SYS_inotify_add_watch, "inotify_add_watch"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_dup2, "dup2"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_mkdir, "mkdir"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_rename, "rename"),
];

/// The SIGSYS handler of kill mode. Only async-signal-safe calls, all on
/// the allow-list: write, rt_sigaction (through `signal`), and returning
/// with the signal still pending kills the process by SIGSYS.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let mut msg = [0u8; 96];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if let Some(slot) = msg.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
    };
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler;
    // for SIGSYS from seccomp, `si_syscall` sits 8 bytes into the
    // `_sigsys` union member (after the call address), at offset 16 + 8.
    let call = libc::c_int::from_ne_bytes(unsafe {
        info.cast::<u8>().add(24).cast::<[u8; 4]>().read_unaligned()
    });
    put(b"seccomp: forbidden system call ");
    if let Some(name) = name_of(libc::c_long::from(call)) {
        put(name.as_bytes());
        put(b" ");
    }
    put(b"(");
    let mut digits = [0u8; 12];
    let mut n = call.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            // `n % 10` is a single digit.
            *d = b'0' + u8::try_from(n % 10).unwrap_or(0);
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    put(digits.get(i..).unwrap_or_default());
    put(b"); see --seccomp\n");
    // SAFETY: write(2) and signal(2) are async-signal-safe; `msg` is valid
    // for `len` bytes. With the default action restored, the SIGSYS raised
    // again is fatal.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), len);
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            libc::SIGSYS,
        );
    }
}

fn install_sigsys_handler() -> Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature and only makes async-signal-safe calls.
    let ret = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&raw mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &raw const action, std::ptr::null_mut())
    };
    if ret != 0 {
        return Err(Error::Sandbox(format!(
            "SIGSYS handler: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_filter_builds_for_this_machine() {
        assert!(build(&[], SeccompAction::Trap).is_ok_and(|p| !p.is_empty()));
        assert!(!build(&[libc::SYS_sysinfo], SeccompAction::Log)
            .unwrap()
            .is_empty());
    }
}
