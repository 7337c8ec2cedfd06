// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon on a real socket, driven by the test frontend the way
//! QEMU drives it, with host programs on the channel sockets.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use vhost_device_common::testing::{DaemonProcess, FrontendOptions, TestFrontend, TestQueue};
use vhost_device_rpmsg::protocol::{
    header, rpmsg_ns_msg, Announcement, NsOp, RPMSG_NS_ADDR, RX_QUEUE, TX_QUEUE, VIRTIO_RPMSG_F_NS,
};
use vm_memory::ByteValued;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-rpmsg");
const WAIT: Duration = Duration::from_secs(5);
const GUEST_EPT: u32 = 1024;

struct Daemon {
    process: DaemonProcess,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// The daemon with `channels` (`%` in a channel is replaced by the
    /// temporary directory).
    fn start(count: u16, channels: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("rpmsg.sock");
        let mut command = Command::new(BIN);
        command
            .arg("--socket-path")
            .arg(&sock)
            .arg("--socket-count")
            .arg(count.to_string());
        let root = dir.path().to_str().unwrap().to_owned();
        for c in channels {
            command.arg("--channel").arg(c.replace('%', &root));
        }
        command.args(extra.iter().map(|a| a.replace('%', &root)));
        let sockets = vhost_device_common::SocketArgs::with_path(&sock, count).paths();
        let process = DaemonProcess::spawn(command, sockets).unwrap();
        Daemon { process, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn connect(&self, guest: usize) -> TestFrontend {
        let opts = FrontendOptions {
            num_queues: Some(2),
            queue_size: 64,
            ..Default::default()
        };
        self.process.connect(guest, opts).unwrap()
    }
}

/// A host program's connection to a channel socket.
fn host(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn host_recv(s: &Socket) -> Vec<u8> {
    use std::io::Read;
    let mut buf = [0u8; 600];
    let n = (&mut &*s).read(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn message(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = header(src, dst, payload.len()).as_slice().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Sends one guest message; the TX buffer must come back at once, empty.
fn send(fe: &mut TestFrontend, src: u32, dst: u32, payload: &[u8]) {
    let used = fe
        .queue(TX_QUEUE)
        .unwrap()
        .request(&[&message(src, dst, payload)], &[], WAIT)
        .unwrap();
    assert_eq!(used.len, 0);
}

/// Posts `n` empty 512-byte RX buffers.
fn post_rx(q: &mut TestQueue, n: usize) {
    for _ in 0..n {
        q.add(&[], &[512]).unwrap();
    }
    q.kick().unwrap();
}

/// The next message the device put in an RX buffer: (src, dst, payload).
fn recv(fe: &mut TestFrontend) -> (u32, u32, Vec<u8>) {
    let used = fe.queue(RX_QUEUE).unwrap().wait_used(WAIT).unwrap();
    let d = &used.data[..used.len as usize];
    let src = u32::from_le_bytes(d[0..4].try_into().unwrap());
    let dst = u32::from_le_bytes(d[4..8].try_into().unwrap());
    let len = u16::from_le_bytes(d[12..14].try_into().unwrap());
    assert_eq!(usize::from(len) + 16, d.len());
    (src, dst, d[16..].to_vec())
}

fn ns(name: &str, addr: u32, op: NsOp) -> Vec<u8> {
    Announcement {
        name: name.into(),
        addr,
        op,
    }
    .encode()
    .as_slice()
    .to_vec()
}

/// Connects, posts RX buffers and checks the announcements.
fn start_guest(d: &Daemon, guest: usize, expect: &[(&str, u32)]) -> TestFrontend {
    let mut fe = d.connect(guest);
    assert_ne!(fe.acked_features() & VIRTIO_RPMSG_F_NS, 0);
    post_rx(fe.queue(RX_QUEUE).unwrap(), 32);
    for &(name, addr) in expect {
        let (src, dst, payload) = recv(&mut fe);
        assert_eq!((src, dst), (addr, RPMSG_NS_ADDR));
        assert_eq!(payload, ns(name, addr, NsOp::Create));
    }
    fe
}

#[test]
fn announces_then_exchanges_with_a_host_program() {
    let d = Daemon::start(
        1,
        &[
            "name=rpmsg-tty,addr=0x400,socket=%/tty.sock",
            "name=rpmsg-raw,addr=0x401,socket=%/raw.sock",
        ],
        &[],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.path("tty.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "--socket-mode's default");
    let tty = host(&d.path("tty.sock"));
    let mut fe = start_guest(&d, 0, &[("rpmsg-tty", 0x400), ("rpmsg-raw", 0x401)]);
    assert_eq!(std::mem::size_of::<rpmsg_ns_msg>(), 40);

    // The host speaks first: it waits until the guest endpoint is known.
    tty.send(b"early").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(fe.queue(RX_QUEUE).unwrap().try_used().unwrap().is_none());

    send(&mut fe, GUEST_EPT, 0x400, b"hello");
    assert_eq!(host_recv(&tty), b"hello");
    assert_eq!(recv(&mut fe), (0x400, GUEST_EPT, b"early".to_vec()));
    tty.send(b"world").unwrap();
    assert_eq!(recv(&mut fe), (0x400, GUEST_EPT, b"world".to_vec()));

    // The largest message, whole, both ways.
    let big = vec![0x5a; 496];
    send(&mut fe, GUEST_EPT, 0x400, &big);
    assert_eq!(host_recv(&tty), big);
    tty.send(&big).unwrap();
    assert_eq!(recv(&mut fe).2, big);
    // One byte more from the host is dropped, and the channel goes on.
    tty.send(&[1u8; 497]).unwrap();
    tty.send(b"after").unwrap();
    assert_eq!(recv(&mut fe).2, b"after");
}

/// Many messages per kick and per host wake-up (the device moves them in
/// batches): each arrives whole, in order, on its own channel; host
/// messages beyond the free RX buffers wait in the socket.
#[test]
fn bursts_keep_order_and_boundaries_both_ways() {
    let d = Daemon::start(
        1,
        &[
            "name=rpmsg-tty,addr=0x400,socket=%/tty.sock",
            "name=rpmsg-raw,addr=0x401,socket=%/raw.sock",
        ],
        &[],
    );
    let tty = host(&d.path("tty.sock"));
    let raw = host(&d.path("raw.sock"));
    let mut fe = start_guest(&d, 0, &[("rpmsg-tty", 0x400), ("rpmsg-raw", 0x401)]);
    // 60 chains in one kick: runs to raw, tty, raw, of varied sizes.
    let plan: Vec<(u32, Vec<u8>)> = (0..60u32)
        .map(|i| {
            let dst = if (20..30).contains(&i) { 0x400 } else { 0x401 };
            let len = 1 + (i as usize * 37) % 496;
            (dst, vec![u8::try_from(i).unwrap(); len])
        })
        .collect();
    let tx = fe.queue(TX_QUEUE).unwrap();
    for (dst, payload) in &plan {
        tx.add(&[&message(GUEST_EPT, *dst, payload)], &[]).unwrap();
    }
    tx.kick().unwrap();
    for _ in &plan {
        assert_eq!(tx.wait_used(WAIT).unwrap().len, 0);
    }
    for (dst, payload) in &plan {
        let peer = if *dst == 0x400 { &tty } else { &raw };
        assert_eq!(&host_recv(peer), payload);
    }
    // 30 RX buffers are left; the host sends 45 messages at once.
    for i in 0..45u8 {
        raw.send(&vec![i; 1 + usize::from(i) * 11]).unwrap();
    }
    for i in 0..30u8 {
        assert_eq!(
            recv(&mut fe),
            (0x401, GUEST_EPT, vec![i; 1 + usize::from(i) * 11])
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(fe.queue(RX_QUEUE).unwrap().try_used().unwrap().is_none());
    post_rx(fe.queue(RX_QUEUE).unwrap(), 20);
    for i in 30..45u8 {
        assert_eq!(
            recv(&mut fe),
            (0x401, GUEST_EPT, vec![i; 1 + usize::from(i) * 11])
        );
    }
}

#[test]
fn bad_messages_are_dropped_and_the_device_serves_on() {
    let d = Daemon::start(1, &["name=rpmsg-raw,addr=0x401,socket=%/raw.sock"], &[]);
    let raw = host(&d.path("raw.sock"));
    let mut fe = start_guest(&d, 0, &[("rpmsg-raw", 0x401)]);
    // Unknown address, oversize header, length past the buffer, malformed
    // NS, a header cut short: each TX buffer still comes back at once.
    send(&mut fe, GUEST_EPT, 0x999, b"nobody");
    let mut over = message(GUEST_EPT, 0x401, &[0; 496]);
    over.push(0);
    over[12..14].copy_from_slice(&497u16.to_le_bytes());
    let used = fe
        .queue(TX_QUEUE)
        .unwrap()
        .request(&[&over], &[], WAIT)
        .unwrap();
    assert_eq!(used.len, 0);
    let mut past = message(GUEST_EPT, 0x401, b"abc");
    past[12] = 100;
    fe.queue(TX_QUEUE)
        .unwrap()
        .request(&[&past], &[], WAIT)
        .unwrap();
    send(&mut fe, 53, 53, &[0u8; 39]);
    fe.queue(TX_QUEUE)
        .unwrap()
        .request(&[&[1u8; 7]], &[], WAIT)
        .unwrap();
    // Still serving.
    send(&mut fe, GUEST_EPT, 0x401, b"ok");
    assert_eq!(host_recv(&raw), b"ok");
}

#[test]
fn a_slow_host_never_holds_tx_buffers() {
    let d = Daemon::start(
        1,
        &["name=rpmsg-raw,addr=0x401,socket=%/raw.sock"],
        &["--queue-limit", "8"],
    );
    let mut fe = start_guest(&d, 0, &[("rpmsg-raw", 0x401)]);
    // No host peer: 200 messages, far more than the queue (8) and the TX
    // ring (64); every buffer comes back at once.
    for i in 0..200u32 {
        send(&mut fe, GUEST_EPT, 0x401, &i.to_le_bytes());
    }
    // The host peer connects and gets the first 8, in order.
    let raw = host(&d.path("raw.sock"));
    for i in 0..8u32 {
        assert_eq!(host_recv(&raw), i.to_le_bytes());
    }
    raw.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    let _ = std::io::Read::read(&mut &raw, &mut buf).unwrap_err();
    // A connected peer that does not read: the socket buffer fills, then
    // the queue, then messages are dropped; buffers still come back.
    let start = Instant::now();
    for _ in 0..2000 {
        send(&mut fe, GUEST_EPT, 0x401, &[0u8; 400]);
    }
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn guest_announced_channels_get_a_socket() {
    let d = Daemon::start(1, &[], &["--guest-channel-dir", "%/guest"]);
    // No channel configured: nothing is announced, the device serves.
    let mut fe = start_guest(&d, 0, &[]);
    send(&mut fe, 53, 53, &ns("my-svc", 2000, NsOp::Create));
    let path = d.path("guest/my-svc.2000");
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket for the guest channel");
        std::thread::sleep(Duration::from_millis(10));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let svc = host(&path);
    // The guest sends from its announced address to any device address.
    send(&mut fe, 2000, 0x500, b"ping");
    assert_eq!(host_recv(&svc), b"ping");
    svc.send(b"pong").unwrap();
    let (src, dst, payload) = recv(&mut fe);
    assert_eq!((dst, payload.as_slice()), (2000, &b"pong"[..]));
    assert!(src < 1024);
    send(&mut fe, 53, 53, &ns("my-svc", 2000, NsOp::Destroy));
    let deadline = Instant::now() + WAIT;
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "guest channel socket not removed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_link_joins_two_guests() {
    let d = Daemon::start(2, &["name=rpmsg-raw,addr=0x402,link"], &[]);
    let mut a = start_guest(&d, 0, &[("rpmsg-raw", 0x402)]);
    let mut b = start_guest(&d, 1, &[("rpmsg-raw", 0x402)]);
    // Each device learns its guest's endpoint from that guest's first
    // message; what the other side sent meanwhile waits in the link.
    send(&mut b, 1030, 0x402, b"b here");
    send(&mut a, 1025, 0x402, b"a here");
    assert_eq!(recv(&mut a), (0x402, 1025, b"b here".to_vec()));
    assert_eq!(recv(&mut b), (0x402, 1030, b"a here".to_vec()));
    for i in 0..100u32 {
        send(&mut a, 1025, 0x402, &i.to_le_bytes());
    }
    // More than b has RX buffers: the rest wait in the link until b posts
    // buffers again.
    for i in 0..100u32 {
        assert_eq!(recv(&mut b).2, i.to_le_bytes());
        post_rx(b.queue(RX_QUEUE).unwrap(), 1);
    }
}

#[test]
fn killed_frontends_and_reconnects() {
    let d = Daemon::start(
        1,
        &[
            "name=rpmsg-raw,addr=0x401,socket=%/raw.sock",
            "name=echo,addr=0x402,echo",
        ],
        &[],
    );
    for round in 0..3u8 {
        let mut fe = start_guest(&d, 0, &[("rpmsg-raw", 0x401), ("echo", 0x402)]);
        // The host program of the last session was let go with it.
        let raw = host(&d.path("raw.sock"));
        send(&mut fe, GUEST_EPT, 0x402, &[round]);
        assert_eq!(recv(&mut fe), (0x402, GUEST_EPT, vec![round]));
        send(&mut fe, GUEST_EPT, 0x401, &[round]);
        assert_eq!(host_recv(&raw), [round]);
        raw.send(&[round, round]).unwrap();
        assert_eq!(recv(&mut fe).2, [round, round]);
        // A message published and kicked, and the frontend dies at once.
        let q = fe.queue(TX_QUEUE).unwrap();
        q.add(&[&message(GUEST_EPT, 0x401, b"last words")], &[])
            .unwrap();
        q.kick().unwrap();
        fe.abort();
    }
}

#[test]
fn channels_not_yet_used_are_announced_again() {
    let d = Daemon::start(
        1,
        &["name=a,addr=0x400,echo", "name=b,addr=0x401,echo"],
        &[],
    );
    let mut fe = start_guest(&d, 0, &[("a", 0x400), ("b", 0x401)]);
    send(&mut fe, GUEST_EPT, 0x400, b"x");
    assert_eq!(recv(&mut fe), (0x400, GUEST_EPT, b"x".to_vec()));
    // Two seconds on, only the channel nobody used is announced again.
    let start = Instant::now();
    let (src, dst, payload) = recv(&mut fe);
    assert!(start.elapsed() > Duration::from_secs(1));
    assert_eq!((src, dst), (0x401, RPMSG_NS_ADDR));
    assert_eq!(payload, ns("b", 0x401, NsOp::Create));
    // Once used, it is not announced any more.
    send(&mut fe, GUEST_EPT, 0x401, b"y");
    assert_eq!(recv(&mut fe), (0x401, GUEST_EPT, b"y".to_vec()));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(fe.queue(RX_QUEUE).unwrap().try_used().unwrap().is_none());
}
