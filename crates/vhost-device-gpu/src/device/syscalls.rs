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
//! both on Mesa's llvmpipe, the second with a fresh shader cache
//! directory; every call it logged is here. Calls marked "not seen in the
//! tests" are what hardware drivers and a writable shader cache add; each
//! says which.

/// The virgl mode's calls beyond the core's.
pub(super) const VIRGL: &[libc::c_long] = &[
    // Seen: a library puts stderr onto stdout while virglrenderer starts
    // (`dup2` exists on x86_64 only; elsewhere it is `dup3`, in the core).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    // Seen: glibc's user lookup (Mesa finds the home directory of its shader
    // cache) asks nscd, or systemd-userdb, over a Unix socket first. EGL on a
    // display server's platform (X11, Wayland) connects the same way.
    libc::SYS_socket,
    libc::SYS_connect,
    // Seen: Mesa sizes its caches and memory heaps by the machine's memory.
    libc::SYS_sysinfo,
    // Seen with a fresh cache directory: Mesa creates its shader cache
    // (Landlock refuses it unless the directory is writable, and Mesa
    // then runs without the cache).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    // Not seen in the tests: the shader cache with a writable directory
    // (`--landlock none`) locks, renames and watches its files, and checks
    // the free space of their file system.
    libc::SYS_flock,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    // Not seen in the tests (llvmpipe): hardware drivers' thread queues run
    // at a low priority (SCHED_BATCH or SCHED_IDLE, or a nice level), and
    // radeonsi pins its threads next to the caller's cache.
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_getparam,
    libc::SYS_sched_setaffinity,
    libc::SYS_setpriority,
    libc::SYS_getpriority,
    // Not seen in the tests: amdgpu's winsys tells whether two fds are the
    // same device file (radeonsi).
    libc::SYS_kcmp,
];
