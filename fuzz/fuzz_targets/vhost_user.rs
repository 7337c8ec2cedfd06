// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a hostile frontend can send: vhost-user messages, over a real
//! socket, to the real daemon (`daemon::Daemon` in this process, serving
//! the core's echo device through `DeviceBackend`), then a check that the
//! daemon still serves the next frontend correctly.
//!
//! Input: a sequence of operations. Each starts with a byte `op`; `op % 32`
//! picks the message from [`MESSAGES`] (or one of the extra operations at
//! its end), bit 5 sets NEED_REPLY, and the bytes that follow fill the
//! message's body field by field (zeros when the input runs out). Messages
//! that carry a file descriptor take one more byte choosing it: none, an
//! eventfd, a 64 KiB memfd (the "guest memory" the `poke` operation
//! writes), /dev/null, a pipe's read end, or a socket whose peer is gone.
//!
//! Checked: no panic in the daemon (a panic in any thread aborts the
//! fuzzer); after the hostile connection ends, a well-behaved frontend
//! connects, sets up a queue and gets its echo back. A daemon that hangs
//! makes that step block, which libFuzzer reports as a timeout.

#![no_main]

use std::io::{ErrorKind, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vhost_device_common::daemon::Daemon;
use vhost_device_common::echo::Echo;
use vhost_device_common::socket::BoundSocket;
use vhost_device_common::testing::{FrontendOptions, TestFrontend};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// What a message's body is made of.
#[derive(Clone, Copy)]
enum Body {
    None,
    U64,
    /// A u64 (queue index, bit 8: no fd) and an fd.
    U64Fd,
    /// vhost_vring_state: index, num.
    State,
    /// vhost_vring_addr: index, flags, desc, used, avail, log.
    Addr,
    /// Region count (0 to 9, one byte), padding, then that many regions of
    /// 32 bytes, each with a memfd.
    MemTable,
    /// offset, size, flags, then `size` bytes (capped at 256).
    Config,
    /// padding u64 and one region, with a memfd.
    MemReg,
    /// mmap_size, mmap_offset, num_queues (le16), queue_size (le16).
    Inflight,
    /// An fd and no body.
    Fd,
    /// Like `Inflight`, with an fd.
    InflightFd,
}

/// (request code, body) of each message the fuzzer may send.
const MESSAGES: &[(u32, Body)] = &[
    (1, Body::None),        // GET_FEATURES
    (2, Body::U64),         // SET_FEATURES
    (3, Body::None),        // SET_OWNER
    (4, Body::None),        // RESET_OWNER
    (5, Body::MemTable),    // SET_MEM_TABLE
    (8, Body::State),       // SET_VRING_NUM
    (9, Body::Addr),        // SET_VRING_ADDR
    (10, Body::State),      // SET_VRING_BASE
    (11, Body::State),      // GET_VRING_BASE
    (12, Body::U64Fd),      // SET_VRING_KICK
    (13, Body::U64Fd),      // SET_VRING_CALL
    (14, Body::U64Fd),      // SET_VRING_ERR
    (15, Body::None),       // GET_PROTOCOL_FEATURES
    (16, Body::U64),        // SET_PROTOCOL_FEATURES
    (17, Body::None),       // GET_QUEUE_NUM
    (18, Body::State),      // SET_VRING_ENABLE
    (21, Body::Fd),         // SET_BACKEND_REQ_FD
    (24, Body::Config),     // GET_CONFIG
    (25, Body::Config),     // SET_CONFIG
    (34, Body::None),       // RESET_DEVICE
    (36, Body::None),       // GET_MAX_MEM_SLOTS
    (37, Body::MemReg),     // ADD_MEM_REG
    (38, Body::MemReg),     // REM_MEM_REG
    (39, Body::U64),        // SET_STATUS
    (40, Body::None),       // GET_STATUS
    (31, Body::Inflight),   // GET_INFLIGHT_FD
    (32, Body::InflightFd), // SET_INFLIGHT_FD
    (33, Body::Fd),         // GPU_SET_SOCKET
];
/// Extra operations, after the messages: a raw message, a kick, a poke
/// into guest memory, and a sane queue setup.
const OP_RAW: usize = MESSAGES.len();
const OP_KICK: usize = OP_RAW + 1;
const OP_POKE: usize = OP_RAW + 2;
const OP_SETUP: usize = OP_RAW + 3;

const VERSION: u32 = 1;
const NEED_REPLY: u32 = 1 << 3;
const GUEST_MEM: usize = 0x1_0000;
/// Where the sane setup says guest memory is mapped in the frontend.
const UADDR: u64 = 0x7000_0000_0000;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        let mut v = head.to_vec();
        v.resize(len, 0);
        v
    }
    fn byte(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
}

/// The fds one hostile session made, kept open until it ends.
struct Session {
    stream: UnixStream,
    /// The guest memory memfd, shared by every message that takes one.
    memfd: OwnedFd,
    kicks: Vec<OwnedFd>,
    keep: Vec<OwnedFd>,
}

fn memfd() -> OwnedFd {
    // SAFETY: plain syscalls; the fd is owned at once.
    unsafe {
        let fd = libc::memfd_create(c"fuzz-guest".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "memfd_create");
        let fd = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::ftruncate(fd.as_raw_fd(), GUEST_MEM as i64), 0);
        fd
    }
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned at once.
    unsafe {
        let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        assert!(fd >= 0, "eventfd");
        OwnedFd::from_raw_fd(fd)
    }
}

impl Session {
    /// The fd `choice` names; `None` for "no fd".
    fn fd(&mut self, choice: u8) -> Option<RawFd> {
        let fd = match choice % 6 {
            0 => return None,
            1 => {
                let fd = eventfd();
                let raw = fd.as_raw_fd();
                self.kicks.push(fd);
                return Some(raw);
            }
            2 => return Some(self.memfd.as_raw_fd()),
            3 => std::fs::File::open("/dev/null").ok()?.into(),
            4 => {
                let mut fds = [0; 2];
                // SAFETY: pipe2 fills `fds` with two new fds we then own.
                if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                    return None;
                }
                // SAFETY: both are ours; the write end is closed at once.
                unsafe {
                    drop(OwnedFd::from_raw_fd(fds[1]));
                    OwnedFd::from_raw_fd(fds[0])
                }
            }
            _ => {
                let (a, b) = UnixStream::pair().ok()?;
                drop(b);
                a.into()
            }
        };
        let raw = fd.as_raw_fd();
        self.keep.push(fd);
        Some(raw)
    }

    fn send(&mut self, code: u32, flags: u32, body: &[u8], fds: &[RawFd]) {
        let mut msg = Vec::with_capacity(12 + body.len());
        msg.extend_from_slice(&code.to_le_bytes());
        msg.extend_from_slice(&(VERSION | flags).to_le_bytes());
        msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
        msg.extend_from_slice(body);
        // A send may fail once the daemon dropped the connection: that is
        // one of its answers to a bad message.
        let _ = self.stream.send_with_fds(&[&msg[..]], fds);
        self.drain();
    }

    /// Throws away what the daemon answered, so its replies never fill the
    /// socket.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }

    fn message(&mut self, code: u32, body: Body, flags: u32, input: &mut Input<'_>) {
        let mut fds = Vec::new();
        let data = match body {
            Body::None => Vec::new(),
            Body::U64 => input.take(8),
            Body::U64Fd => {
                let data = input.take(8);
                fds.extend(self.fd(input.byte()));
                data
            }
            Body::State => input.take(8),
            Body::Addr => input.take(40),
            Body::MemTable => {
                let count = input.byte() % 10;
                let mut data = u32::from(count).to_le_bytes().to_vec();
                data.extend_from_slice(&[0; 4]);
                for _ in 0..count {
                    data.extend(input.take(32));
                    fds.push(self.memfd.as_raw_fd());
                }
                data
            }
            Body::Config => {
                let offset = input.u32();
                let size = input.u32() % 257;
                let cfg_flags = input.u32();
                let mut data = Vec::new();
                for v in [offset, size, cfg_flags] {
                    data.extend_from_slice(&v.to_le_bytes());
                }
                data.extend(input.take(size as usize));
                data
            }
            Body::MemReg => {
                fds.push(self.memfd.as_raw_fd());
                input.take(40)
            }
            Body::Inflight => input.take(20),
            Body::InflightFd => {
                fds.extend(self.fd(input.byte()));
                input.take(20)
            }
            Body::Fd => {
                fds.extend(self.fd(input.byte()));
                Vec::new()
            }
        };
        self.send(code, flags, &data, &fds);
    }

    /// A queue set up as QEMU would, with its geometry from the input:
    /// features and memory first, then size, rings, base, kick, call and
    /// enable, so the worker really runs over what `poke` wrote.
    fn setup(&mut self, input: &mut Input<'_>) {
        let size = 1u32 << (input.byte() % 10);
        let desc = u64::from(input.byte()) * 16;
        let avail = u64::from(input.byte()) * 64;
        let used = u64::from(input.byte()) * 64;
        let base = u32::from(u16::from_le_bytes([input.byte(), input.byte()]));
        let le = |v: &[u64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let features: u64 = (1 << 32) | (1 << 28) | (1 << 29) | (1 << 30);
        self.send(2, 0, &features.to_le_bytes(), &[]);
        let mut table = vec![1, 0, 0, 0, 0, 0, 0, 0];
        table.extend(le(&[0, GUEST_MEM as u64, UADDR, 0]));
        let mem = self.memfd.as_raw_fd();
        self.send(5, 0, &table, &[mem]);
        let state = |index: u32, num: u32| le(&[u64::from(index) | u64::from(num) << 32]);
        self.send(8, 0, &state(0, size), &[]);
        // Ring addresses are the frontend's virtual addresses.
        let mut addr = le(&[0]);
        addr.extend(le(&[UADDR + desc, UADDR + used, UADDR + avail, 0]));
        self.send(9, 0, &addr, &[]);
        self.send(10, 0, &state(0, base), &[]);
        let kick = eventfd();
        let call = eventfd();
        self.send(12, 0, &le(&[0]), &[kick.as_raw_fd()]);
        self.send(13, 0, &le(&[0]), &[call.as_raw_fd()]);
        self.kicks.push(kick);
        self.keep.push(call);
        self.send(18, 0, &state(0, 1), &[]);
    }

    fn run(&mut self, input: &mut Input<'_>) {
        while !input.0.is_empty() {
            let op = input.byte();
            let flags = if op & 0x20 != 0 { NEED_REPLY } else { 0 };
            let which = usize::from(op & 0x1f);
            if let Some(&(code, body)) = MESSAGES.get(which) {
                self.message(code, body, flags, input);
                continue;
            }
            match which {
                OP_RAW => {
                    let code = input.u32();
                    let len = usize::from(input.byte());
                    let body = input.take(len);
                    self.send(code, flags, &body, &[]);
                }
                OP_KICK => {
                    let pick = usize::from(input.byte());
                    if let Some(fd) = self.kicks.get(pick % self.kicks.len().max(1)) {
                        // SAFETY: writes 8 bytes from a local to our own fd.
                        let one = 1u64;
                        unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
                    }
                }
                OP_POKE => {
                    let offset = u16::from_le_bytes([input.byte(), input.byte()]);
                    let len = usize::from(input.byte());
                    let bytes = input.take(len);
                    // SAFETY: writes `bytes` into our own memfd.
                    unsafe {
                        libc::pwrite(
                            self.memfd.as_raw_fd(),
                            bytes.as_ptr().cast(),
                            bytes.len(),
                            i64::from(offset),
                        )
                    };
                }
                OP_SETUP => self.setup(input),
                _ => {}
            }
        }
    }
}

fn socket() -> &'static PathBuf {
    static DAEMON: OnceLock<(PathBuf, Daemon)> = OnceLock::new();
    &DAEMON
        .get_or_init(|| {
            // RUST_LOG=debug shows what the daemon did with an input; CI
            // runs without it, quietly.
            if std::env::var_os("RUST_LOG").is_some() {
                let _ = env_logger::try_init();
            }
            // A send to a daemon that has hung up must fail, not kill us.
            // SAFETY: ignoring a signal is always sound.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            let dir =
                std::env::temp_dir().join(format!("vhost-device-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("echo.sock");
            let _ = std::fs::remove_file(&path);
            let bound = BoundSocket::bind(&path).unwrap();
            let daemon = Daemon::start("fuzz", vec![bound], Duration::ZERO, |guest| {
                Ok(Echo::new(guest as u32))
            })
            .unwrap();
            (path, daemon)
        })
        .0
}

/// Ends the hostile connection as a frontend that is done: no more
/// messages, then everything the daemon answers is read until it hangs up.
/// (Closing with replies unread would reset the connection, and the daemon
/// would never see the last messages.) A daemon that neither answers nor
/// hangs up within 5 s is stuck.
fn finish(mut session: Session) {
    let _ = session.stream.shutdown(Shutdown::Write);
    let _ = session.stream.set_nonblocking(false);
    let _ = session
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    loop {
        match session.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if std::env::var_os("FUZZ_HANG_WAIT").is_some() {
                    // Leaves the threads as they are, for `gdb -p`.
                    eprintln!("hang: attach a debugger to pid {}", std::process::id());
                    std::thread::sleep(Duration::from_secs(600));
                }
                panic!("the daemon neither answers nor hangs up after the frontend's EOF")
            }
            Err(_) => break,
        }
    }
}

/// The next frontend is served as if nothing had happened.
fn probe(path: &PathBuf) {
    let opts = FrontendOptions {
        mem_size: 1 << 20,
        queue_size: 16,
        num_queues: Some(1),
        ..Default::default()
    };
    let mut fe = TestFrontend::connect(path, opts)
        .unwrap_or_else(|e| panic!("the next frontend cannot connect: {e}"));
    let used = fe
        .queue(0)
        .and_then(|q| q.request(&[b"ping"], &[64], Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("the next frontend gets no echo: {e}"));
    assert_eq!(
        used.data.get(12..),
        Some(&b"ping"[..]),
        "echo after a hostile frontend"
    );
    fe.disconnect()
        .unwrap_or_else(|e| panic!("disconnect: {e}"));
}

fuzz_target!(|data: &[u8]| {
    let path = socket();
    let stream = UnixStream::connect(path).unwrap();
    stream.set_nonblocking(true).unwrap();
    let mut session = Session {
        stream,
        memfd: memfd(),
        kicks: Vec::new(),
        keep: Vec::new(),
    };
    session.run(&mut Input(data));
    finish(session);
    probe(path);
});
