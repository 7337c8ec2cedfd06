// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Linux's rpmsg drivers (`virtio_rpmsg_bus`, `rpmsg_ns`, `rpmsg_char`,
//! `rpmsg_ctrl`, `rpmsg_tty`) behind QEMU's `vhost-user-test-device-pci`,
//! talking to host programs on the channel sockets.
//!
//! The guest half is this test binary itself, run inside the guest by the
//! rig (the `in_guest()` branches); the host half serves the sockets from
//! threads of the outer test.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use vhost_device_rig::{in_guest, Backend, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-rpmsg");
const BURST: u32 = 10_000;
/// The address and name of a channel the guest creates itself.
const GUEST_CHANNEL_SRC: u32 = 4000;

// ---- guest side ----------------------------------------------------------

/// Waits until `f` returns something, up to `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn attr(dev: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dev.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The `/dev/rpmsgN` of the endpoint device named `name` (with source
/// address `src`, if given).
fn find_rpmsg(name: &str, src: Option<u32>) -> Option<PathBuf> {
    for entry in std::fs::read_dir("/sys/class/rpmsg").ok()? {
        let path = entry.ok()?.path();
        let dev = path.file_name()?.to_str()?.to_owned();
        if dev.starts_with("rpmsg_ctrl") || attr(&path, "name").as_deref() != Some(name) {
            continue;
        }
        if let Some(src) = src {
            let got = attr(&path, "src")?;
            let got = got
                .strip_prefix("0x")
                .map_or_else(|| got.parse().ok(), |h| u32::from_str_radix(h, 16).ok());
            if got != Some(src) {
                continue;
            }
        }
        return Some(PathBuf::from("/dev").join(dev));
    }
    None
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// One `read` after waiting up to `limit` for data.
fn read_within(f: &mut File, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if n <= 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no data"));
    }
    f.read(buf)
}

/// `RPMSG_CREATE_DEV_IOCTL`: `_IOW(0xb5, 3, struct rpmsg_endpoint_info)`.
const RPMSG_CREATE_DEV_IOCTL: libc::c_ulong = 0x4028_b503;

fn create_dev(ctrl: &File, name: &str, src: u32, dst: u32) {
    let mut info = [0u8; 40];
    info[..name.len()].copy_from_slice(name.as_bytes());
    info[32..36].copy_from_slice(&src.to_ne_bytes());
    info[36..40].copy_from_slice(&dst.to_ne_bytes());
    // SAFETY: the ioctl reads a 40-byte rpmsg_endpoint_info we own.
    let r = unsafe { libc::ioctl(ctrl.as_raw_fd(), RPMSG_CREATE_DEV_IOCTL, info.as_ptr()) };
    assert_eq!(
        r,
        0,
        "RPMSG_CREATE_DEV_IOCTL: {}",
        io::Error::last_os_error()
    );
}

fn guest_channels() {
    let limit = Duration::from_secs(30);
    wait_for("/dev/ttyRPMSG0", limit, || {
        Path::new("/dev/ttyRPMSG0").exists().then_some(())
    });
    let raw_path = wait_for("the rpmsg-raw channel", limit, || {
        find_rpmsg("rpmsg-raw", None)
    });
    println!("GUEST raw channel {}", raw_path.display());

    // rpmsg-tty: text out, the host's reply back.
    let mut tty = open(Path::new("/dev/ttyRPMSG0"));
    tty.write_all(b"hello tty\n").unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(b"reply tty\n") && Instant::now() < deadline {
        let mut buf = [0u8; 64];
        if let Ok(n) = read_within(&mut tty, &mut buf, Duration::from_secs(1)) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, b"reply tty\n");
    println!("GUEST tty ok");

    // rpmsg-raw: 1 and 496 bytes echoed whole; 497 refused.
    let mut raw = open(&raw_path);
    let mut buf = [0u8; 1024];
    for len in [1usize, 2, 496] {
        let msg: Vec<u8> = std::iter::once(b'E')
            .chain((1..len).map(|i| (i % 251) as u8))
            .collect();
        assert_eq!(raw.write(&msg).unwrap(), len);
        let n = read_within(&mut raw, &mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(&buf[..n], &msg[..], "echo of {len} bytes");
        println!("GUEST raw echo {len} ok");
    }
    let e = raw.write(&[b'E'; 497]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
    println!("GUEST raw 497 EMSGSIZE");

    // An endpoint made through rpmsg_ctrl0, answered by the host.
    let out = std::process::Command::new("rig-rpmsg")
        .args(["/dev/rpmsg_ctrl0", "rig-ept", "3000", "0x402", "ping-ctrl"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("GUEST rig-rpmsg: {text}");
    assert!(
        out.status.success(),
        "rig-rpmsg: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("recv: svc:ping-ctrl"), "{text}");

    // A channel the guest announces itself: a host socket appears for it.
    let ctrl = open(Path::new("/dev/rpmsg_ctrl0"));
    create_dev(&ctrl, "rpmsg-raw", GUEST_CHANNEL_SRC, 0x410);
    let gc_path = wait_for("the guest channel's /dev/rpmsgN", limit, || {
        find_rpmsg("rpmsg-raw", Some(GUEST_CHANNEL_SRC))
    });
    let mut gc = open(&gc_path);
    let reply = wait_for("the host on the guest channel", limit, || {
        gc.write_all(b"hi host").ok()?;
        let n = read_within(&mut gc, &mut buf, Duration::from_secs(1)).ok()?;
        Some(buf[..n].to_vec())
    });
    assert_eq!(reply, b"gc:hi host");
    println!("GUEST guest channel ok");

    // The burst: every write returns promptly (no 15 s wait for a TX
    // buffer), and the host counts every message.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..BURST {
        let t = Instant::now();
        raw.write_all(format!("B{i}").as_bytes()).unwrap();
        slowest = slowest.max(t.elapsed());
    }
    raw.write_all(b"END").unwrap();
    let n = read_within(&mut raw, &mut buf, Duration::from_secs(60)).unwrap();
    let summary = String::from_utf8_lossy(&buf[..n]).into_owned();
    println!(
        "GUEST burst {BURST} in {} ms, slowest write {} ms, host says {summary}",
        start.elapsed().as_millis(),
        slowest.as_millis()
    );
    assert!(
        slowest < Duration::from_secs(5),
        "a write blocked {slowest:?}"
    );
    assert_eq!(summary, format!("GOT {BURST} in order"));
}

// ---- host side -----------------------------------------------------------

/// Connects to a channel socket once it exists, unless told to stop.
fn connect(path: &Path, stop: &AtomicBool) -> Option<Socket> {
    while !stop.load(Ordering::Relaxed) {
        let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).ok()?;
        if s.connect(&SockAddr::unix(path).ok()?).is_ok() {
            s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
            return Some(s);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Serves one channel socket until told to stop, answering each message
/// with `answer` (None: no reply), and connects again when the daemon hangs
/// up (as it may when the guest's machine is reset).
fn serve(
    path: PathBuf,
    stop: Arc<AtomicBool>,
    mut answer: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Some(s) = connect(&path, &stop) {
            serve_connection(&s, &stop, &mut answer);
        }
    })
}

/// One connection of [`serve`], until a hang-up or `stop`.
fn serve_connection(
    s: &Socket,
    stop: &AtomicBool,
    answer: &mut impl FnMut(&[u8]) -> Option<Vec<u8>>,
) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        match (&*s).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Some(reply) = answer(&buf[..n]) {
                    s.send(&reply).unwrap();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rpmsg_channels_through_qemu() {
    if in_guest() {
        guest_channels();
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("vdrpmsg")
        .tempdir()
        .unwrap();
    let p = |name: &str| tmp.path().join(name);
    let stop = Arc::new(AtomicBool::new(false));

    let mut tty_text = Vec::new();
    let tty = serve(p("tty.sock"), Arc::clone(&stop), move |m| {
        tty_text.extend_from_slice(m);
        tty_text
            .ends_with(b"hello tty\n")
            .then(|| b"reply tty\n".to_vec())
    });
    let (mut count, mut ordered) = (0u32, true);
    let raw = serve(p("raw.sock"), Arc::clone(&stop), move |m| {
        if m == b"END" {
            let order = if ordered { "in order" } else { "out of order" };
            return Some(format!("GOT {count} {order}").into_bytes());
        }
        match m.first() {
            Some(b'E') => Some(m.to_vec()),
            Some(b'B') => {
                ordered &= m[1..] == *count.to_string().as_bytes();
                count += 1;
                None
            }
            _ => None,
        }
    });
    let svc = serve(p("svc.sock"), Arc::clone(&stop), |m| {
        Some([&b"svc:"[..], m].concat())
    });
    let gc = serve(
        p(&format!("guest/rpmsg-raw.{GUEST_CHANNEL_SRC}")),
        Arc::clone(&stop),
        |m| Some([&b"gc:"[..], m].concat()),
    );
    let channels = [
        format!(
            "name=rpmsg-tty,addr=0x400,socket={}",
            p("tty.sock").display()
        ),
        format!(
            "name=rpmsg-raw,addr=0x401,socket={}",
            p("raw.sock").display()
        ),
        format!("name=rig-svc,addr=0x402,socket={}", p("svc.sock").display()),
    ];
    let guest_dir = p("guest").display().to_string();
    let mut args = vec!["--socket-path", "{sock}", "--guest-channel-dir", &guest_dir];
    for c in &channels {
        args.extend(["--channel", c]);
    }
    let result = Scenario::host_test(
        "guest_rpmsg_channels_through_qemu",
        std::env::current_exe().unwrap(),
        "guest_rpmsg_channels_through_qemu",
    )
    .backend(BIN, &args)
    .qemu_args(&[
        "-chardev",
        "socket,id=rpmsg0,path={sock}",
        "-device",
        "vhost-user-test-device-pci,chardev=rpmsg0,virtio-id=7,num_vqs=2",
    ])
    .modules(&["rpmsg_char", "rpmsg_ctrl", "rpmsg_tty"])
    .timeout(Duration::from_secs(240))
    .run()
    .expect("scenario could not start");
    stop.store(true, Ordering::Relaxed);
    for t in [tty, raw, svc, gc] {
        t.join().unwrap();
    }
    result.assert_success();
    let out = &result.guest_output;
    for line in [
        "GUEST tty ok",
        "GUEST raw echo 496 ok",
        "GUEST raw 497 EMSGSIZE",
        "GUEST guest channel ok",
    ] {
        assert!(out.contains(line), "{line}: {}", result.report());
    }
    assert!(
        out.contains(&format!("host says GOT {BURST} in order")),
        "{}",
        result.report()
    );
}

fn guest_linked() {
    let limit = Duration::from_secs(30);
    let devs = wait_for("two rpmsg-raw channels", limit, || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/sys/class/rpmsg")
            .ok()?
            .filter_map(|e| {
                let path = e.ok()?.path();
                let dev = PathBuf::from("/dev").join(path.file_name()?);
                (attr(&path, "name").as_deref() == Some("rpmsg-raw")).then_some(dev)
            })
            .collect();
        found.sort();
        (found.len() == 2).then_some(found)
    });
    let mut a = open(&devs[0]);
    let mut b = open(&devs[1]);
    // Each device learns its endpoint from its first message; the other's
    // message waited in the link meanwhile.
    a.write_all(b"from a").unwrap();
    b.write_all(b"from b").unwrap();
    let mut buf = [0u8; 512];
    let n = read_within(&mut a, &mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!(&buf[..n], b"from b");
    let n = read_within(&mut b, &mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!(&buf[..n], b"from a");
    for i in 0..200u32 {
        a.write_all(format!("m{i}").as_bytes()).unwrap();
        let n = read_within(&mut b, &mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(&buf[..n], format!("m{i}").as_bytes());
    }
    println!("GUEST link ok");
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rpmsg_two_devices_linked() {
    if in_guest() {
        guest_linked();
        return;
    }
    let result = Scenario::host_test(
        "guest_rpmsg_two_devices_linked",
        std::env::current_exe().unwrap(),
        "guest_rpmsg_two_devices_linked",
    )
    .backend_with(
        Backend::new(BIN)
            .args(&[
                "--socket-path",
                "{sock}",
                "--socket-count",
                "2",
                "--channel",
                "name=rpmsg-raw,addr=0x402,link",
            ])
            .wait_for_socket("{sock}1"),
    )
    .qemu_args(&[
        "-chardev",
        "socket,id=rpmsg0,path={sock}0",
        "-device",
        "vhost-user-test-device-pci,chardev=rpmsg0,virtio-id=7,num_vqs=2",
        "-chardev",
        "socket,id=rpmsg1,path={sock}1",
        "-device",
        "vhost-user-test-device-pci,chardev=rpmsg1,virtio-id=7,num_vqs=2",
    ])
    .modules(&["rpmsg_char", "rpmsg_ctrl"])
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start");
    result.assert_success();
    assert!(
        result.guest_output.contains("GUEST link ok"),
        "{}",
        result.report()
    );
}

/// One device on the daemon with `args` beside its socket, and the guest's
/// rpmsg_char and rpmsg_ctrl loaded.
fn one_device(name: &str, args: &[&str]) -> Scenario {
    let mut all = vec!["--socket-path", "{sock}"];
    all.extend_from_slice(args);
    Scenario::new(name)
        .backend(BIN, &all)
        .qemu_args(&[
            "-chardev",
            "socket,id=rpmsg0,path={sock}",
            "-device",
            "vhost-user-test-device-pci,chardev=rpmsg0,virtio-id=7,num_vqs=2",
        ])
        .modules(&["rpmsg_char", "rpmsg_ctrl"])
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rpmsg_no_channels_still_probes() {
    one_device("guest_rpmsg_no_channels_still_probes", &[])
        .guest_script(
            "set -e\n\
             n=0\n\
             until [ -c /dev/rpmsg_ctrl0 ]; do\n\
                 n=$((n + 1)); [ $n -lt 300 ] || { echo 'no /dev/rpmsg_ctrl0'; exit 1; }\n\
                 sleep 0.1\n\
             done\n\
             ls /sys/bus/rpmsg/devices\n\
             echo CTRL OK\n",
        )
        .timeout(Duration::from_secs(90))
        .run()
        .expect("scenario could not start")
        .assert_success();
}

/// A machine reset after using a host service (issue #17): the next boot's
/// driver probes again, gets the daemon's channel announcements again, and
/// reaches the same host service.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rpmsg_works_after_a_machine_reset() {
    let tmp = tempfile::Builder::new()
        .prefix("vdrpmsg")
        .tempdir()
        .unwrap();
    let sock = tmp.path().join("svc.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let svc = serve(sock.clone(), Arc::clone(&stop), |m| {
        Some([&b"svc:"[..], m].concat())
    });
    let channel = format!("name=rig-svc,addr=0x402,socket={}", sock.display());
    let result = one_device(
        "guest_rpmsg_works_after_a_machine_reset",
        &["--channel", &channel],
    )
        .resets(1)
        .guest_script(
            "set -e\n\
             n=0\n\
             until [ -c /dev/rpmsg_ctrl0 ] && grep -qs rig-svc /sys/bus/rpmsg/devices/*/name; do\n\
                 n=$((n + 1)); [ $n -lt 300 ] || { echo 'no rig-svc channel'; ls /sys/bus/rpmsg/devices; exit 1; }\n\
                 sleep 0.1\n\
             done\n\
             rig-rpmsg /dev/rpmsg_ctrl0 rig-ept 3000 0x402 \"ping-$RIG_BOOT\" | sed \"s/^/BOOT $RIG_BOOT /\"\n\
             [ \"$RIG_BOOT\" -gt 1 ] || rig_reset\n",
        )
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    stop.store(true, Ordering::Relaxed);
    svc.join().unwrap();
    result.assert_success();
    for boot in [1, 2] {
        let line = format!("BOOT {boot} recv: svc:ping-{boot}");
        assert!(
            result.guest_output.lines().any(|l| l.trim_end() == line),
            "no {line:?}\n{}",
            result.report()
        );
    }
}
