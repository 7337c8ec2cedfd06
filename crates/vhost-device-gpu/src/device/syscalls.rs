// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The system calls the virgl mode adds to the core's seccomp list
//! (`vhost_device_common::sandbox::seccomp`): rutabaga, virglrenderer,
//! libepoxy, EGL and the host's Mesa driver, which start on each
//! connection's worker thread, under the filter. GPU work goes through
//! `ioctl` on the render node, which the core's list holds.
//!
//! How the list was found: the daemon ran in `--seccomp log` mode in the
//! six `virglrenderer_*` tests (`tests/virgl.rs`) and in
//! `guest_virgl_gles_triangle_on_the_scanout` (a guest's GL through QEMU),
//! both on Mesa's llvmpipe, with the default Landlock (the shader cache
//! read-only) and again with `--landlock none` and a fresh cache directory
//! (Mesa then writes its shader cache, as on a kernel without Landlock);
//! every call it logged is here. Calls marked "not seen in the tests" are
//! what hardware drivers add; each says which.

/// The virgl mode's calls beyond the core's.
pub(super) const VIRGL: &[libc::c_long] = &[
    // Seen: a library puts stderr onto stdout while virglrenderer starts
    // (`dup2` exists on x86_64 only; elsewhere it is `dup3`, in the core).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    // Seen: glibc's user lookup (Mesa finds the home directory of its shader
    // cache when XDG_CACHE_HOME is unset) asks nscd, or systemd-userdb,
    // over a Unix socket first. EGL on a display server's platform (X11,
    // Wayland) connects the same way.
    libc::SYS_socket,
    libc::SYS_connect,
    // Seen: Mesa sizes its caches and memory heaps by the machine's memory.
    libc::SYS_sysinfo,
    // Seen: Mesa creates its shader cache directories (Landlock refuses
    // them by default, and Mesa then runs without the cache); with a
    // writable cache it locks its index and renames each entry into place.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_flock,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_renameat,
    libc::SYS_renameat2,
    // Seen: Mesa's queue threads (the shader cache's writer, the driver's
    // compiler threads) lower their priority (SCHED_IDLE or SCHED_BATCH, and
    // a nice level) and are pinned next to the caller's cache.
    libc::SYS_sched_setscheduler,
    libc::SYS_setpriority,
    libc::SYS_sched_setaffinity,
    // Not seen in the tests: reading back those settings, and the cache's
    // checks on its file system and its files (inotify for a
    // multi-process cache).
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_getparam,
    libc::SYS_getpriority,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    // Not seen in the tests: amdgpu's winsys tells whether two fds are the
    // same device file (radeonsi).
    libc::SYS_kcmp,
];
