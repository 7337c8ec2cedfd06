// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host-adapter backend against real kernel adapters, run inside the
//! rig's guest (this host has neither i2c-stub nor a spare I2C bus):
//!
//! - SMBus mode on `i2c-stub` (SMBus only, no `I2C_FUNC_I2C`), found by its
//!   adapter name: every SMBus command i2c-stub implements, the block
//!   commands on their own, and refusals that touch nothing;
//! - I2C mode (`I2C_RDWR`) on the guest's virtio-i2c adapter, which QEMU
//!   backs with this daemon's simulated EEPROM on the host: a real adapter
//!   with `I2C_FUNC_I2C` in a kernel we control; and SMBus emulation forced
//!   onto the same adapter;
//! - the daemon itself in the guest, mixing i2c-stub and a simulated chip
//!   on one virtual bus, driven by the test frontend.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vhost_device_common::testing::{FrontendOptions, TestFrontend};
use vhost_device_i2c::backend::host::{
    find_adapter, list_adapters, AdapterBus, HostAdapter, LinuxAdapter, Mode,
};
use vhost_device_i2c::backend::smbus::{func, SmbusOp, SmbusReply};
use vhost_device_i2c::backend::{BusMap, I2cBus, I2cMsg, SharedBus};
use vhost_device_i2c::config::{build, HostPaths};
use vhost_device_i2c::protocol::{
    VIRTIO_I2C_FLAGS_FAIL_NEXT as FN, VIRTIO_I2C_FLAGS_M_RD as RD, VIRTIO_I2C_MSG_ERR,
    VIRTIO_I2C_MSG_OK,
};
use vhost_device_rig::{in_guest, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-i2c");
const GUEST_BIN: &str = "/rig/vhost-device-i2c";
const STUB: &str = "SMBus stub driver";

fn w(addr: u8, data: &[u8]) -> I2cMsg {
    I2cMsg::write(addr, data)
}
fn r(addr: u8, len: usize) -> I2cMsg {
    I2cMsg::read(addr, len)
}

/// `msgs` through `bus`, returning the data of the reads.
fn xfer(bus: &BusMap, mut msgs: Vec<I2cMsg>) -> Vec<Vec<u8>> {
    bus.transfer(&mut msgs)
        .unwrap_or_else(|e| panic!("{msgs:?}: {e}"));
    msgs.into_iter().filter(|m| m.read).map(|m| m.buf).collect()
}

/// A real adapter that hides some of its functionality, to reach the
/// SMBus commands a fuller adapter would not be asked for.
struct Masked {
    inner: LinuxAdapter,
    hide: u64,
}

impl HostAdapter for Masked {
    fn funcs(&self) -> u64 {
        self.inner.funcs() & !self.hide
    }
    fn rdwr(&mut self, msgs: &mut [I2cMsg]) -> std::io::Result<usize> {
        self.inner.rdwr(msgs)
    }
    fn smbus(&mut self, addr: u8, op: &SmbusOp) -> std::io::Result<SmbusReply> {
        self.inner.smbus(addr, op)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn single(bus: impl I2cBus + 'static, addrs: &[u8]) -> BusMap {
    let shared: SharedBus = Arc::new(Mutex::new(bus));
    let mut map = BusMap::new();
    assert!(map.add(shared, addrs));
    map
}

fn smbus_on_i2c_stub() {
    let number = find_adapter(Path::new("/sys"), STUB).unwrap();
    let dev = Path::new("/dev");
    let adapter = LinuxAdapter::open(dev, number, &[0x20]).unwrap();
    assert_eq!(adapter.funcs() & func::I2C, 0, "i2c-stub is SMBus only");
    assert_eq!(AdapterBus::new(adapter).mode(), Mode::Smbus);

    // By name, as a user would write it; 0x22 is not one of the stub's chips.
    let list = format!("{STUB}:0x20:0x21:0x22");
    let map = build(&[list], 1, &HostPaths::default()).unwrap().remove(0);

    xfer(&map, vec![w(0x20, &[])]); // quick write
    xfer(&map, vec![w(0x20, &[0x10, 0xab])]); // write byte data
    assert_eq!(xfer(&map, vec![w(0x20, &[0x10]), r(0x20, 1)]), [[0xab]]);
    xfer(&map, vec![w(0x20, &[0x30, 0x34, 0x12])]); // write word data
    assert_eq!(
        xfer(&map, vec![w(0x20, &[0x30]), r(0x20, 2)]),
        [[0x34, 0x12]]
    );
    // The stub's words are independent per chip.
    assert_eq!(xfer(&map, vec![w(0x21, &[0x30]), r(0x21, 2)]), [[0, 0]]);
    // Write byte sets the stub's pointer; read byte reads there.
    xfer(&map, vec![w(0x20, &[0x10])]);
    assert_eq!(xfer(&map, vec![r(0x20, 1)]), [[0xab]]);
    // I2C block write and read.
    xfer(&map, vec![w(0x20, &[0x40, 1, 2, 3, 4, 5, 6])]);
    assert_eq!(
        xfer(&map, vec![w(0x20, &[0x40]), r(0x20, 6)]),
        [[1, 2, 3, 4, 5, 6]]
    );
    xfer(&map, vec![r(0x20, 0)]); // quick read

    // A chip the adapter does not have: the kernel's error, as a failure.
    let mut msgs = [w(0x22, &[0x00, 0x01])];
    let err = map.transfer(&mut msgs).unwrap_err();
    assert_eq!(err.completed, 0, "{err}");
    // Shapes with no SMBus command, and commands i2c-stub lacks, are
    // refused before any I/O.
    let err = map
        .transfer(&mut [w(0x20, &[1]), w(0x20, &[2])])
        .unwrap_err();
    assert!(err.reason.contains("SMBus"), "{err}");
    let err = map
        .transfer(&mut [w(0x20, &[0x50, 1, 2]), r(0x20, 2)])
        .unwrap_err();
    assert!(err.reason.contains("process call"), "{err}");

    // Block commands, on an adapter that does not offer I2C-block ones.
    let hide = func::SMBUS_READ_I2C_BLOCK | func::SMBUS_WRITE_I2C_BLOCK;
    let masked = Masked {
        inner: LinuxAdapter::open(dev, number, &[0x21]).unwrap(),
        hide,
    };
    assert_ne!(
        masked.funcs() & func::SMBUS_WRITE_BLOCK_DATA,
        0,
        "load i2c-stub with functionality=0xffffffff"
    );
    let map = single(AdapterBus::new(masked), &[0x21]);
    xfer(&map, vec![w(0x21, &[0x60, 3, 7, 8, 9])]); // block write
                                                    // Block read: count then data, then the idle bus.
    assert_eq!(
        xfer(&map, vec![w(0x21, &[0x60]), r(0x21, 6)]),
        [[3, 7, 8, 9, 0xff, 0xff]]
    );
}

/// The guest's virtio-i2c adapter, which the host daemon backs.
fn virtio_adapter() -> (u32, String) {
    let adapters = list_adapters(Path::new("/sys"));
    let found = adapters
        .iter()
        .find(|a| {
            a.name
                .as_deref()
                .is_some_and(|n| n.starts_with("i2c_virtio"))
        })
        .unwrap_or_else(|| panic!("no virtio i2c adapter among {adapters:?}"));
    (found.number, found.name.clone().unwrap())
}

fn i2c_on_virtio() {
    let (number, name) = virtio_adapter();
    let adapter = LinuxAdapter::open(Path::new("/dev"), number, &[0x50]).unwrap();
    assert_ne!(adapter.funcs() & func::I2C, 0);
    assert_eq!(AdapterBus::new(adapter).mode(), Mode::I2c);

    let map = build(&[format!("{name}:0x50")], 1, &HostPaths::default())
        .unwrap()
        .remove(0);
    xfer(&map, vec![w(0x50, &[0x10, 1, 2, 3, 4, 5])]);
    // One I2C_RDWR of three messages: set the pointer, read, read on.
    assert_eq!(
        xfer(&map, vec![w(0x50, &[0x10]), r(0x50, 3), r(0x50, 2)]),
        [vec![1, 2, 3], vec![4, 5]]
    );
    // A page write wraps within its 8-byte page.
    xfer(&map, vec![w(0x50, &[0x06, 0xa, 0xb, 0xc])]);
    assert_eq!(
        xfer(&map, vec![w(0x50, &[0x00]), r(0x50, 8)]),
        [[0xc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa, 0xb]]
    );
    // An address the host daemon does not have: the guest's virtio driver
    // reports one of two messages done, and so do we.
    let mut msgs = [w(0x50, &[0]), r(0x51, 1)];
    let err = build(&[format!("{name}:0x50:0x51")], 1, &HostPaths::default())
        .unwrap()
        .remove(0)
        .transfer(&mut msgs)
        .unwrap_err();
    assert_eq!(err.completed, 1, "{err}");

    // SMBus emulation forced onto the same adapter: i2cdev's SMBus ioctls,
    // emulated by the guest kernel over I2C.
    let adapter = LinuxAdapter::open(Path::new("/dev"), number, &[0x50]).unwrap();
    let map = single(AdapterBus::with_mode(adapter, Mode::Smbus), &[0x50]);
    xfer(&map, vec![w(0x50, &[0x80, 0x5a])]);
    assert_eq!(xfer(&map, vec![w(0x50, &[0x80]), r(0x50, 1)]), [[0x5a]]);
    xfer(&map, vec![w(0x50, &[0x90, 0x34, 0x12])]);
    assert_eq!(
        xfer(&map, vec![w(0x50, &[0x90]), r(0x50, 2)]),
        [[0x34, 0x12]]
    );
    assert_eq!(xfer(&map, vec![r(0x50, 1)]), [[0xff]]);
    xfer(&map, vec![w(0x50, &[0xa0, 1, 2, 3, 4])]);
    assert_eq!(
        xfer(&map, vec![w(0x50, &[0xa0]), r(0x50, 4)]),
        [[1, 2, 3, 4]]
    );
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hdr(addr: u8, flags: u32) -> Vec<u8> {
    let mut h = (u16::from(addr) << 1).to_le_bytes().to_vec();
    h.extend([0, 0]);
    h.extend(flags.to_le_bytes());
    h
}

fn daemon_with_stub_and_sim() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("i2c.sock");
    let list = format!("{STUB}:0x20,sim:0x50=eeprom:256");
    let daemon = Daemon(
        Command::new(GUEST_BIN)
            .arg("--socket-path")
            .arg(&sock)
            .arg("--device-list")
            .arg(&list)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "daemon did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut fe =
        TestFrontend::connect_retry(&sock, FrontendOptions::default(), Duration::from_secs(5))
            .unwrap();
    let q = fe.queue(0).unwrap();
    let wait = Duration::from_secs(5);
    // Write byte data to the stub, then one group that reads it back from
    // the stub and reads the simulated EEPROM: host and simulated targets
    // on one virtual bus.
    let used = q
        .request(&[&hdr(0x20, 0), &[0x11, 0x77]], &[1], wait)
        .unwrap();
    assert_eq!(used.data, [VIRTIO_I2C_MSG_OK]);
    let heads = [
        q.add(&[&hdr(0x20, FN), &[0x11]], &[1]).unwrap(),
        q.add(&[&hdr(0x20, FN | RD)], &[1, 1]).unwrap(),
        q.add(&[&hdr(0x50, FN), &[0x00]], &[1]).unwrap(),
        q.add(&[&hdr(0x50, RD)], &[2, 1]).unwrap(),
    ];
    q.kick().unwrap();
    let mut replies = std::collections::BTreeMap::new();
    for _ in heads {
        let used = q.wait_used(wait).unwrap();
        replies.insert(used.head, used.data);
    }
    assert_eq!(replies[&heads[0]], [VIRTIO_I2C_MSG_OK]);
    assert_eq!(replies[&heads[1]], [0x77, VIRTIO_I2C_MSG_OK]);
    assert_eq!(replies[&heads[2]], [VIRTIO_I2C_MSG_OK]);
    assert_eq!(replies[&heads[3]], [0xff, 0xff, VIRTIO_I2C_MSG_OK]);
    // Two writes in one group have no SMBus command: both fail.
    let a = q.add(&[&hdr(0x20, FN), &[1]], &[1]).unwrap();
    let b = q.add(&[&hdr(0x20, 0), &[2]], &[1]).unwrap();
    q.kick().unwrap();
    for _ in [a, b] {
        let used = q.wait_used(wait).unwrap();
        assert_eq!(used.data, [VIRTIO_I2C_MSG_ERR], "request {}", used.head);
    }
    // The host side cannot vanish under the daemon: it holds the stub's
    // /dev/i2c-N open, which pins the i2c-stub module, so the kernel refuses
    // to remove it (delete_module, as rmmod does) and the daemon serves on.
    // SAFETY: a NUL-terminated module name and a flags value.
    let removed = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            c"i2c_stub".as_ptr(),
            libc::O_NONBLOCK,
        )
    };
    let error = std::io::Error::last_os_error();
    assert!(removed != 0, "i2c-stub was removed under the daemon");
    eprintln!("removing i2c-stub under the daemon: {error}");
    let used = q
        .request(&[&hdr(0x20, 0), &[0x11, 0x78]], &[1], wait)
        .unwrap();
    assert_eq!(
        used.data,
        [VIRTIO_I2C_MSG_OK],
        "the stub after the refused removal"
    );
    fe.disconnect().unwrap();
    drop(daemon);
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_i2c_adapters() {
    if in_guest() {
        smbus_on_i2c_stub();
        i2c_on_virtio();
        daemon_with_stub_and_sim();
        return;
    }
    Scenario::host_test(
        "host_kernel_i2c_adapters",
        std::env::current_exe().unwrap(),
        "host_kernel_i2c_adapters",
    )
    .backend(
        BIN,
        &[
            "--socket-path",
            "{sock}",
            "--device-list",
            "sim:0x50=eeprom:256",
        ],
    )
    .qemu_args(&[
        "-chardev",
        "socket,id=i2c0,path={sock}",
        "-device",
        "vhost-user-i2c-pci,chardev=i2c0",
    ])
    .modules(&[
        "i2c-dev",
        "i2c-stub chip_addr=0x20,0x21 functionality=0xffffffff",
    ])
    .guest_file(BIN, GUEST_BIN)
    .memory_mb(1024)
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start")
    .assert_success();
}
