// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon behind a real socket, driven by the test frontend, with
//! a fake QEMU display on the vhost-user-gpu socket pair.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::Duration;

use vhost_device_common::testing::{DaemonProcess, FrontendOptions, TestFrontend};
use vm_memory::{Bytes, GuestAddress};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-gpu");
const T: Duration = Duration::from_secs(5);

const GET_DISPLAY_INFO: u32 = 0x0100;
const RESOURCE_CREATE_2D: u32 = 0x0101;
const SET_SCANOUT: u32 = 0x0103;
const RESOURCE_FLUSH: u32 = 0x0104;
const TRANSFER_TO_HOST_2D: u32 = 0x0105;
const RESOURCE_ATTACH_BACKING: u32 = 0x0106;
const GET_EDID: u32 = 0x010a;
const RESOURCE_CREATE_BLOB: u32 = 0x010c;
const UPDATE_CURSOR: u32 = 0x0300;
const MOVE_CURSOR: u32 = 0x0301;
const OK_NODATA: u32 = 0x1100;
const OK_DISPLAY_INFO: u32 = 0x1101;
const OK_EDID: u32 = 0x1104;
const ERR_UNSPEC: u32 = 0x1200;

// vhost-user-gpu socket requests.
const VU_GET_PROTOCOL_FEATURES: u32 = 1;
const VU_SET_PROTOCOL_FEATURES: u32 = 2;
const VU_GET_DISPLAY_INFO: u32 = 3;
const VU_CURSOR_POS: u32 = 4;
const VU_CURSOR_POS_HIDE: u32 = 5;
const VU_CURSOR_UPDATE: u32 = 6;
const VU_SCANOUT: u32 = 7;
const VU_UPDATE: u32 = 8;
const VU_GET_EDID: u32 = 11;

struct Daemon {
    // Declared first so the process is gone before its directory.
    process: DaemonProcess,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let process = DaemonProcess::start(BIN, &dir.path().join("gpu.sock"), 1, args).unwrap();
        Daemon { process, _dir: dir }
    }

    fn connect(&self) -> TestFrontend {
        self.process.connect(0, FrontendOptions::default()).unwrap()
    }

    fn path(&self) -> &Path {
        self.process.socket(0).unwrap()
    }
}

fn req(type_: u32, fields: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    for f in [type_, 0, 0, 0, 0, 0] {
        v.extend_from_slice(&f.to_le_bytes());
    }
    for f in fields {
        v.extend_from_slice(&f.to_le_bytes());
    }
    v
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn control(fe: &mut TestFrontend, request: &[u8], resp: u32) -> Vec<u8> {
    fe.queue(0)
        .unwrap()
        .request(&[request], &[resp], T)
        .unwrap()
        .data
}

fn status(fe: &mut TestFrontend, request: &[u8]) -> u32 {
    u32_at(&control(fe, request, 24), 0)
}

/// One message the backend sent on the display socket.
#[derive(Debug)]
struct Msg {
    request: u32,
    payload: Vec<u8>,
}

/// Plays QEMU's side of the display socket: answers the queries like QEMU
/// does (display 640x480, EDID with a marker byte) and passes every
/// message on.
fn fake_qemu(sock: UnixStream) -> Receiver<Msg> {
    fake_qemu_gated(sock, None)
}

/// Like [`fake_qemu`], but answers GET_DISPLAY_INFO only once `gate`
/// yields, as QEMU does when its main loop is busy.
fn fake_qemu_gated(mut sock: UnixStream, gate: Option<Receiver<()>>) -> Receiver<Msg> {
    let (tx, rx) = channel();
    thread::spawn(move || loop {
        let mut hdr = [0u8; 12];
        if sock.read_exact(&mut hdr).is_err() {
            return;
        }
        let (request, size) = (u32_at(&hdr, 0), u32_at(&hdr, 8) as usize);
        let mut payload = vec![0; size];
        if sock.read_exact(&mut payload).is_err() {
            return;
        }
        // Pass it on before answering, so a test sees a held query.
        if tx
            .send(Msg {
                request,
                payload: payload.clone(),
            })
            .is_err()
        {
            return;
        }
        let answer = |sock: &mut UnixStream, body: &[u8]| {
            let mut out = Vec::new();
            for v in [request, 0x4, body.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(body);
            sock.write_all(&out).unwrap();
        };
        match request {
            VU_GET_PROTOCOL_FEATURES => answer(&mut sock, &3u64.to_le_bytes()),
            VU_GET_DISPLAY_INFO => {
                if let Some(gate) = &gate {
                    let _ = gate.recv();
                }
                let mut body = vec![0u8; 408];
                body[..4].copy_from_slice(&OK_DISPLAY_INFO.to_le_bytes());
                for (i, v) in [0u32, 0, 640, 480, 1, 0].iter().enumerate() {
                    body[24 + i * 4..28 + i * 4].copy_from_slice(&v.to_le_bytes());
                }
                answer(&mut sock, &body);
            }
            VU_GET_EDID => {
                let mut body = vec![0u8; 1056];
                body[..4].copy_from_slice(&OK_EDID.to_le_bytes());
                body[24..28].copy_from_slice(&128u32.to_le_bytes());
                body[32] = 0x5a;
                answer(&mut sock, &body);
            }
            _ => {}
        }
    });
    rx
}

/// The next message that is not part of the handshake.
fn next(rx: &Receiver<Msg>) -> Msg {
    loop {
        let m = rx
            .recv_timeout(T)
            .expect("no message on the display socket");
        if m.request != VU_GET_PROTOCOL_FEATURES && m.request != VU_SET_PROTOCOL_FEATURES {
            return m;
        }
    }
}

#[test]
fn features_and_20_byte_config() {
    let d = Daemon::start(&["--resolution", "800x600", "--resolution", "640x480"]);
    let mut fe = d.connect();
    let features = fe.device_features();
    assert_ne!(features & (1 << 32), 0, "VERSION_1");
    assert_ne!(features & (1 << 1), 0, "EDID");
    assert_eq!(features & (1 << 0), 0, "no VIRGL in 2D");
    assert_eq!(features & (1 << 3), 0, "no RESOURCE_BLOB");
    assert_eq!(features & (1 << 4), 0, "no CONTEXT_INIT in 2D");
    let config = fe.get_config(0, 20).unwrap();
    assert_eq!(config.len(), 20);
    assert_eq!(u32_at(&config, 8), 2, "num_scanouts");
    assert_eq!(u32_at(&config, 12), 0, "num_capsets");
    // QEMU writes the whole structure back on events_clear.
    fe.set_config(0, &config).unwrap();
    fe.disconnect().unwrap();

    let d = Daemon::start(&["--no-edid"]);
    let fe = d.connect();
    assert_eq!(fe.device_features() & (1 << 1), 0);
}

#[test]
fn headless_answers_from_its_own_modes() {
    let d = Daemon::start(&["--headless", "--resolution", "1024x768"]);
    let mut fe = d.connect();
    // A display socket is accepted and ignored.
    let _sock = fe.set_gpu_socket().unwrap();
    let info = control(&mut fe, &req(GET_DISPLAY_INFO, &[]), 408);
    assert_eq!(u32_at(&info, 0), OK_DISPLAY_INFO);
    assert_eq!(
        [u32_at(&info, 32), u32_at(&info, 36), u32_at(&info, 40)],
        [1024, 768, 1]
    );
    let edid = control(&mut fe, &req(GET_EDID, &[0, 0]), 1056);
    assert_eq!(u32_at(&edid, 0), OK_EDID);
    assert_eq!(&edid[32..40], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        status(
            &mut fe,
            &req(RESOURCE_CREATE_BLOB, &[1, 1, 0, 0, 0, 0, 0, 0])
        ),
        ERR_UNSPEC
    );
    fe.disconnect().unwrap();
}

/// Creates resource 1 (`w`×`h`, B8G8R8X8) backed by the control queue's
/// scratch area, with pixel (x, y) = B x, G y, R 0x40.
fn draw(fe: &mut TestFrontend, w: u32, h: u32) -> u64 {
    assert_eq!(
        status(fe, &req(RESOURCE_CREATE_2D, &[1, 2, w, h])),
        OK_NODATA
    );
    let (addr, len) = fe.queue(0).unwrap().scratch();
    assert!(len >= u64::from(w * h * 4));
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 0x40, 0]))
        .collect();
    fe.memory()
        .write_slice(&pixels, GuestAddress(addr))
        .unwrap();
    let mut attach = req(RESOURCE_ATTACH_BACKING, &[1, 1]);
    attach.extend_from_slice(&addr.to_le_bytes());
    attach.extend_from_slice(&(w * h * 4).to_le_bytes());
    attach.extend_from_slice(&[0; 4]);
    assert_eq!(status(fe, &attach), OK_NODATA);
    let mut transfer = req(TRANSFER_TO_HOST_2D, &[0, 0, w, h]);
    transfer.extend_from_slice(&0u64.to_le_bytes());
    transfer.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(status(fe, &transfer), OK_NODATA);
    addr
}

fn expected(x0: u32, y0: u32, w: u32, h: u32) -> Vec<u8> {
    (y0..y0 + h)
        .flat_map(|y| (x0..x0 + w).flat_map(move |x| [x as u8, y as u8, 0x40, 0xff]))
        .collect()
}

#[test]
fn create_attach_transfer_flush_reaches_the_display_socket() {
    let d = Daemon::start(&[]);
    let mut fe = d.connect();
    let rx = fake_qemu(fe.set_gpu_socket().unwrap());

    // Display info and EDID come from the frontend's display.
    let info = control(&mut fe, &req(GET_DISPLAY_INFO, &[]), 408);
    assert_eq!(
        [u32_at(&info, 32), u32_at(&info, 36), u32_at(&info, 40)],
        [640, 480, 1]
    );
    assert_eq!(next(&rx).request, VU_GET_DISPLAY_INFO);
    let edid = control(&mut fe, &req(GET_EDID, &[0, 0]), 1056);
    assert_eq!(edid[32], 0x5a);
    assert_eq!(next(&rx).request, VU_GET_EDID);

    draw(&mut fe, 32, 16);
    assert_eq!(
        status(&mut fe, &req(SET_SCANOUT, &[0, 0, 32, 16, 0, 1])),
        OK_NODATA
    );
    let m = next(&rx);
    assert_eq!(m.request, VU_SCANOUT);
    assert_eq!(m.payload, [0u32, 32, 16].map(u32::to_le_bytes).concat());
    // SET_SCANOUT sends no pixels; the first flush after it sends the
    // whole picture, whatever its damage.
    assert_eq!(
        status(&mut fe, &req(RESOURCE_FLUSH, &[0, 0, 1, 1, 1, 0])),
        OK_NODATA
    );
    let m = next(&rx);
    assert_eq!(m.request, VU_UPDATE);
    assert_eq!(
        &m.payload[..20],
        [0u32, 0, 0, 32, 16].map(u32::to_le_bytes).concat()
    );
    assert_eq!(&m.payload[20..], expected(0, 0, 32, 16));

    // A flush sends exactly the damaged rectangle.
    let mut flush = req(RESOURCE_FLUSH, &[5, 3, 7, 2, 1, 0]);
    assert_eq!(status(&mut fe, &flush), OK_NODATA);
    let m = next(&rx);
    assert_eq!(m.request, VU_UPDATE);
    assert_eq!(
        &m.payload[..20],
        [0u32, 5, 3, 7, 2].map(u32::to_le_bytes).concat()
    );
    assert_eq!(m.payload.len(), 20 + 7 * 2 * 4);
    assert_eq!(&m.payload[20..], expected(5, 3, 7, 2));

    // Fenced: the fence comes back with the response.
    flush[4] = 1;
    flush[8] = 99;
    let resp = control(&mut fe, &flush, 24);
    assert_eq!(
        (u32_at(&resp, 0), u32_at(&resp, 4), resp[8]),
        (OK_NODATA, 1, 99)
    );
    assert_eq!(next(&rx).request, VU_UPDATE);

    // Cursor queue: no response descriptor, a CURSOR_POS on the socket.
    let cursor = req(MOVE_CURSOR, &[0, 11, 12, 0, 0, 0, 0, 0]);
    let used = fe.queue(1).unwrap().request(&[&cursor], &[], T).unwrap();
    assert_eq!(used.len, 0);
    let m = next(&rx);
    assert_eq!(m.request, VU_CURSOR_POS);
    assert_eq!(m.payload, [0u32, 11, 12].map(u32::to_le_bytes).concat());

    // DRIVER_OK again: QEMU hands over a new socket, the old one is dead.
    let rx2 = fake_qemu(fe.set_gpu_socket().unwrap());
    // What is shown is replayed on the new socket.
    assert_eq!(next(&rx2).request, VU_SCANOUT);
    assert_eq!(next(&rx2).request, VU_UPDATE);
    assert_eq!(status(&mut fe, &flush), OK_NODATA);
    assert_eq!(next(&rx2).request, VU_UPDATE);
    fe.disconnect().unwrap();
}

#[test]
fn a_dead_display_socket_does_not_stall_the_guest() {
    let d = Daemon::start(&[]);
    let mut fe = d.connect();
    drop(fe.set_gpu_socket().unwrap());
    // QEMU went away from the display: the guest still gets answers.
    let info = control(&mut fe, &req(GET_DISPLAY_INFO, &[]), 408);
    assert_eq!(u32_at(&info, 0), OK_DISPLAY_INFO);
    assert_eq!([u32_at(&info, 32), u32_at(&info, 36)], [1280, 800]);
    draw(&mut fe, 16, 16);
    assert_eq!(
        status(&mut fe, &req(SET_SCANOUT, &[0, 0, 16, 16, 0, 1])),
        OK_NODATA
    );
    assert_eq!(
        status(&mut fe, &req(RESOURCE_FLUSH, &[0, 0, 16, 16, 1, 0])),
        OK_NODATA
    );
    fe.disconnect().unwrap();
}

#[test]
fn the_daemon_serves_again_after_a_disconnect() {
    let d = Daemon::start(&[]);
    for _ in 0..3 {
        let mut fe = TestFrontend::connect_retry(d.path(), FrontendOptions::default(), T).unwrap();
        let rx = fake_qemu(fe.set_gpu_socket().unwrap());
        // A fresh device each time: resource 1 can be created again.
        draw(&mut fe, 8, 8);
        assert_eq!(
            status(&mut fe, &req(SET_SCANOUT, &[0, 0, 8, 8, 0, 1])),
            OK_NODATA
        );
        assert_eq!(next(&rx).request, VU_SCANOUT);
        fe.disconnect().unwrap();
    }
}

#[test]
fn config_is_answered_while_the_display_is_slow() {
    // QEMU reads the display socket in its main loop, which waits while a
    // vCPU waits for GET_CONFIG: the device must answer GET_CONFIG while a
    // display query is outstanding.
    let d = Daemon::start(&[]);
    let mut fe = d.connect();
    let (open, gate) = channel();
    let rx = fake_qemu_gated(fe.set_gpu_socket().unwrap(), Some(gate));
    let request = req(GET_DISPLAY_INFO, &[]);
    fe.queue(0).unwrap().add(&[&request], &[408]).unwrap();
    fe.queue(0).unwrap().kick().unwrap();
    assert_eq!(next(&rx).request, VU_GET_DISPLAY_INFO);
    let config = fe.get_config(0, 20).unwrap();
    assert_eq!(config.len(), 20);
    // The control queue stays held until the display answers.
    thread::sleep(Duration::from_millis(100));
    assert!(fe.queue(0).unwrap().try_used().unwrap().is_none());
    open.send(()).unwrap();
    let used = fe.queue(0).unwrap().wait_used(T).unwrap();
    assert_eq!(u32_at(&used.data, 0), OK_DISPLAY_INFO);
    assert_eq!(u32_at(&used.data, 32), 640);
    fe.disconnect().unwrap();
}

#[test]
fn cursor_image_reaches_the_display_socket() {
    let d = Daemon::start(&[]);
    let mut fe = d.connect();
    let rx = fake_qemu(fe.set_gpu_socket().unwrap());
    // A 64x64 B8G8R8X8 cursor, pixel (x, y) = [x, y, 0x40, 0].
    draw(&mut fe, 64, 64);
    let update = req(UPDATE_CURSOR, &[0, 100, 50, 0, 1, 7, 9, 0]);
    let used = fe.queue(1).unwrap().request(&[&update], &[], T).unwrap();
    assert_eq!(used.len, 0);
    let m = next(&rx);
    assert_eq!(m.request, VU_CURSOR_UPDATE);
    assert_eq!(m.payload.len(), 12 + 8 + 64 * 64 * 4);
    assert_eq!(
        &m.payload[..20],
        [0u32, 100, 50, 7, 9].map(u32::to_le_bytes).concat()
    );
    // Pixel (3, 2): B8G8R8X8 source, so alpha becomes opaque.
    let px = 20 + (2 * 64 + 3) * 4;
    assert_eq!(&m.payload[px..px + 4], &[3, 2, 0x40, 0xff]);
    // Resource 0 hides it.
    let hide = req(UPDATE_CURSOR, &[0, 0, 0, 0, 0, 0, 0, 0]);
    fe.queue(1).unwrap().request(&[&hide], &[], T).unwrap();
    assert_eq!(next(&rx).request, VU_CURSOR_POS_HIDE);
    fe.disconnect().unwrap();
}

#[test]
fn a_display_that_never_answers_falls_back_to_our_modes() {
    let d = Daemon::start(&["--resolution", "800x600"]);
    let mut fe = d.connect();
    let (_never, gate) = channel();
    let rx = fake_qemu_gated(fe.set_gpu_socket().unwrap(), Some(gate));
    let started = std::time::Instant::now();
    let info = fe
        .queue(0)
        .unwrap()
        .request(
            &[&req(GET_DISPLAY_INFO, &[])],
            &[408],
            Duration::from_secs(10),
        )
        .unwrap()
        .data;
    assert_eq!(next(&rx).request, VU_GET_DISPLAY_INFO);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(u32_at(&info, 0), OK_DISPLAY_INFO);
    assert_eq!([u32_at(&info, 32), u32_at(&info, 36)], [800, 600]);
    // The guest goes on without that display.
    draw(&mut fe, 8, 8);
    assert_eq!(
        status(&mut fe, &req(SET_SCANOUT, &[0, 0, 8, 8, 0, 1])),
        OK_NODATA
    );
    fe.disconnect().unwrap();
}

#[test]
fn a_display_that_never_reads_times_out() {
    // A display socket that completes the handshake and then reads
    // nothing: once its buffer is full every write blocks. The guest must
    // get its answers anyway, and not only for queries.
    let d = Daemon::start(&[]);
    let mut fe = d.connect();
    let mut sock = fe.set_gpu_socket().unwrap();
    let mut hdr = [0u8; 12];
    sock.read_exact(&mut hdr).unwrap();
    assert_eq!(u32_at(&hdr, 0), VU_GET_PROTOCOL_FEATURES);
    let mut out = Vec::new();
    for v in [VU_GET_PROTOCOL_FEATURES, 0x4, 8] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u64.to_le_bytes());
    sock.write_all(&out).unwrap();
    let side = 128;
    draw(&mut fe, side, side);
    let started = std::time::Instant::now();
    let mut requests = vec![req(SET_SCANOUT, &[0, 0, side, side, 0, 1])];
    // 2.5 MiB of updates in all, more than any socket buffer holds.
    requests.extend((0..40).map(|_| req(RESOURCE_FLUSH, &[0, 0, side, side, 1, 0])));
    for request in &requests {
        let used = fe
            .queue(0)
            .unwrap()
            .request(&[request], &[24], Duration::from_secs(20))
            .expect("the guest waits for a display that never reads");
        assert_eq!(u32_at(&used.data, 0), OK_NODATA);
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
    // The guest goes on without that display, from our own modes.
    let info = control(&mut fe, &req(GET_DISPLAY_INFO, &[]), 408);
    assert_eq!([u32_at(&info, 32), u32_at(&info, 36)], [1280, 800]);
    drop(sock);
    fe.disconnect().unwrap();
}
