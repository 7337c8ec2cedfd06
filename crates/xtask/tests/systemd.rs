// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The systemd units: every device has a template socket and service, and
//! each daemon, started the way systemd starts the service (the listening
//! socket as descriptor 3, `LISTEN_FDS`/`LISTEN_PID` set for it, the
//! unit's own `ExecStart` arguments), serves the test frontend.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use vhost_device_common::testing::{DaemonProcess, FrontendOptions};
use xtask::{built_binary, packaging_dir, Device, DEVICES};

/// VIRTIO_F_VERSION_1: every device of ours offers it.
const F_VERSION_1: u64 = 1 << 32;

fn unit(device: &Device, suffix: &str) -> String {
    let path: PathBuf = packaging_dir()
        .join("systemd")
        .join(format!("{}@.{suffix}", device.binary));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in a unit (one occurrence).
fn setting(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    let mut found = unit.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
    let value = found
        .next()
        .unwrap_or_else(|| panic!("no {key}= in\n{unit}"));
    assert!(found.next().is_none(), "two {key}= in\n{unit}");
    value.to_owned()
}

/// The service's command line, with `$VHOST_DEVICE_ARGS` expanded (word
/// split, as systemd does for `$VAR`) to the device's test flags.
fn exec_start(device: &Device, service: &str) -> Vec<String> {
    let mut argv = Vec::new();
    for word in setting(service, "ExecStart").split_whitespace() {
        if word == "$VHOST_DEVICE_ARGS" {
            argv.extend(device.service_args.iter().map(|s| (*s).to_owned()));
        } else {
            argv.push(word.to_owned());
        }
    }
    argv
}

#[test]
fn every_device_has_a_template_socket_and_service() {
    for device in DEVICES {
        let name = device.binary.trim_start_matches("vhost-device-");
        let socket = unit(device, "socket");
        assert_eq!(
            setting(&socket, "ListenStream"),
            format!("/run/vhost-device/{name}-%i.sock")
        );
        assert_eq!(setting(&socket, "Accept"), "no");
        let service = unit(device, "service");
        assert_eq!(
            setting(&service, "Requires"),
            format!("{}@%i.socket", device.binary)
        );
        let argv = exec_start(device, &service);
        assert_eq!(argv[0], format!("/usr/bin/{}", device.binary));
        assert_eq!(argv[1..3], ["--socket-fd", "3"]);
        // The flags the service passes parse.
        let parsed = (device.command)().try_get_matches_from(&argv);
        assert!(parsed.is_ok(), "{}: {:?}", device.binary, parsed.err());
    }
}

#[test]
fn each_daemon_serves_a_socket_handed_over_as_systemd_does() {
    let dir = tempfile::tempdir().unwrap();
    for device in DEVICES {
        let path = dir.path().join(format!("{}.sock", device.binary));
        let listener = UnixListener::bind(&path).unwrap();
        let fd = listener.as_raw_fd();
        let argv = exec_start(device, &unit(device, "service"));
        // LISTEN_PID is the daemon's own pid: the shell sets it and execs
        // the daemon in its place, as systemd sets it in the forked child.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
            .arg(built_binary(device.binary).unwrap())
            .args(&argv[1..]);
        // SAFETY: dup2 and fcntl are async-signal-safe; `fd` stays open in
        // the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec.
                let ret = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if ret < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let daemon = DaemonProcess::spawn(command, vec![path.clone()]).unwrap();
        drop(listener);
        let frontend = daemon
            .connect(0, FrontendOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", device.binary));
        assert_ne!(
            frontend.device_features() & F_VERSION_1,
            0,
            "{}",
            device.binary
        );
        assert!(frontend.num_queues() > 0);
        frontend.abort();
        let status = daemon.stop().unwrap();
        assert!(status.success(), "{}: {status}", device.binary);
    }
}

#[test]
fn descriptors_beyond_listen_fds_are_refused() {
    let device = DEVICES[0];
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(built_binary(device.binary).unwrap())
        .args(["--socket-fd", "3", "--socket-count", "2"])
        .args(device.service_args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("systemd passed descriptors 3..4 (LISTEN_FDS), not 3..5"),
        "{stderr}"
    );
}
