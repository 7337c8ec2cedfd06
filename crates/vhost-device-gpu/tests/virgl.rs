// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon in `--gpu-mode virgl` on the real virglrenderer (EGL
//! surfaceless on Mesa's llvmpipe when the host has no GPU), driven by the
//! test frontend: a guest's 3D command stream clears a resource, and the
//! pixels come back into guest memory.
//!
//! Needs a build with `--features virgl,rutabaga_gfx/virgl_renderer`
//! against virglrenderer >= 1.3, which `rust-vmm-ci/virgl/provision.sh`
//! provides; `rust-vmm-ci/steps/virgl.sh` builds and runs it. Without that
//! build every 3D command fails, so the test is ignored elsewhere.

#![cfg(feature = "virgl")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use vhost_device_common::testing::{
    default_seccomp_mode, wait_for_default_seccomp, DaemonProcess, FrontendOptions, TestFrontend,
};
use vm_memory::{Bytes, GuestAddress};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-gpu");
/// The first command starts virglrenderer and llvmpipe, which takes a
/// while on a loaded machine.
const T: Duration = Duration::from_secs(60);

const RESOURCE_UNREF: u32 = 0x0102;
const SET_SCANOUT: u32 = 0x0103;
const RESOURCE_FLUSH: u32 = 0x0104;
const RESOURCE_ATTACH_BACKING: u32 = 0x0106;
const GET_CAPSET_INFO: u32 = 0x0108;
const GET_CAPSET: u32 = 0x0109;
const CTX_CREATE: u32 = 0x0200;
const CTX_DESTROY: u32 = 0x0201;
const CTX_ATTACH_RESOURCE: u32 = 0x0202;
const RESOURCE_CREATE_3D: u32 = 0x0204;
const TRANSFER_TO_HOST_3D: u32 = 0x0205;
const TRANSFER_FROM_HOST_3D: u32 = 0x0206;
const SUBMIT_3D: u32 = 0x0207;
const OK_NODATA: u32 = 0x1100;
const OK_CAPSET_INFO: u32 = 0x1102;
const OK_CAPSET: u32 = 0x1103;
const ERR_UNSPEC: u32 = 0x1200;
const ERR_OUT_OF_MEMORY: u32 = 0x1201;
const FLAG_FENCE: u32 = 1;
const FLAG_INFO_RING_IDX: u32 = 2;

// Gallium/virgl values (virglrenderer's src/virgl_protocol.h, virgl_hw.h).
const PIPE_TEXTURE_2D: u32 = 2;
const VIRGL_FORMAT_B8G8R8A8_UNORM: u32 = 1;
const VIRGL_BIND_RENDER_TARGET: u32 = 1 << 1;
const VIRGL_CCMD_CREATE_OBJECT: u32 = 1;
const VIRGL_CCMD_SET_FRAMEBUFFER_STATE: u32 = 5;
const VIRGL_CCMD_CLEAR: u32 = 7;
const VIRGL_OBJECT_SURFACE: u32 = 8;
const PIPE_CLEAR_COLOR0: u32 = 1 << 2;

/// A control request: header (type, flags, fence id, context) and body.
fn req(type_: u32, flags: u32, fence: u64, ctx_id: u32, body: &[u32]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&type_.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&fence.to_le_bytes());
    v.extend_from_slice(&ctx_id.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    for f in body {
        v.extend_from_slice(&f.to_le_bytes());
    }
    v
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn send(fe: &mut TestFrontend, request: &[u8], resp: u32) -> Vec<u8> {
    fe.queue(0)
        .unwrap()
        .request(&[request], &[resp], T)
        .unwrap()
        .data
}

fn ok(fe: &mut TestFrontend, request: &[u8]) {
    let resp = send(fe, request, 24);
    assert_eq!(
        u32_at(&resp, 0),
        OK_NODATA,
        "request {:#x}",
        u32_at(request, 0)
    );
}

/// One virgl command: header dword (command, object type, length) and
/// its payload.
fn ccmd(out: &mut Vec<u32>, cmd: u32, object: u32, payload: &[u32]) {
    out.push(cmd | (object << 8) | ((payload.len() as u32) << 16));
    out.extend_from_slice(payload);
}

/// Binds resource `res` as colour buffer 0 and clears it to `rgba`.
fn clear_stream(res: u32, rgba: [f32; 4]) -> Vec<u8> {
    let surface = 1;
    let mut s = Vec::new();
    // Surface `surface` on level 0, layer 0 of `res`.
    ccmd(
        &mut s,
        VIRGL_CCMD_CREATE_OBJECT,
        VIRGL_OBJECT_SURFACE,
        &[surface, res, VIRGL_FORMAT_B8G8R8A8_UNORM, 0, 0],
    );
    // One colour buffer, no depth/stencil surface.
    ccmd(
        &mut s,
        VIRGL_CCMD_SET_FRAMEBUFFER_STATE,
        0,
        &[1, 0, surface],
    );
    let mut clear = vec![PIPE_CLEAR_COLOR0];
    clear.extend(rgba.map(f32::to_bits));
    let depth = 1.0f64.to_bits();
    clear.extend([depth as u32, (depth >> 32) as u32, 0]);
    ccmd(&mut s, VIRGL_CCMD_CLEAR, 0, &clear);
    s.iter().flat_map(|d| d.to_le_bytes()).collect()
}

/// The daemon in virgl mode (headless, with `extra` flags) and a
/// connected frontend.
fn start(extra: &[&str]) -> (tempfile::TempDir, DaemonProcess, TestFrontend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::start(
        BIN,
        &dir.path().join("gpu.sock"),
        1,
        &[&["--gpu-mode", "virgl", "--headless"], extra].concat(),
    )
    .unwrap();
    let fe = daemon.connect(0, FrontendOptions::default()).unwrap();
    // virglrenderer and Mesa run under the virgl mode's seccomp list, in
    // kill mode by default: a call outside it would kill the daemon.
    assert_eq!(
        wait_for_default_seccomp(daemon.pid(), T).unwrap(),
        default_seccomp_mode()
    );
    (dir, daemon, fe)
}

/// CTX_CREATE `ctx` with `context_init` (0, or a capset id).
fn create_context(fe: &mut TestFrontend, ctx: u32, context_init: u32) {
    let mut create = req(CTX_CREATE, 0, 0, ctx, &[4, context_init]);
    create.extend_from_slice(b"test");
    create.resize(24 + 8 + 64, 0);
    ok(fe, &create);
}

/// A `w`x`h` render target `res` in context `ctx`, backed at `addr` in
/// guest memory, which is first filled with a marker.
fn create_target(fe: &mut TestFrontend, ctx: u32, res: u32, (w, h): (u32, u32), addr: u64) {
    let body = [
        res,
        PIPE_TEXTURE_2D,
        VIRGL_FORMAT_B8G8R8A8_UNORM,
        VIRGL_BIND_RENDER_TARGET,
        w,
        h,
        1,
        1,
        0,
        0,
        0,
        0,
    ];
    ok(fe, &req(RESOURCE_CREATE_3D, 0, 0, ctx, &body));
    let size = w * h * 4;
    fe.memory()
        .write_slice(&vec![0xee; size as usize], GuestAddress(addr))
        .unwrap();
    let mut attach = req(RESOURCE_ATTACH_BACKING, 0, 0, 0, &[res, 1]);
    attach.extend_from_slice(&addr.to_le_bytes());
    attach.extend_from_slice(&size.to_le_bytes());
    attach.extend_from_slice(&[0; 4]);
    ok(fe, &attach);
    ok(fe, &req(CTX_ATTACH_RESOURCE, 0, 0, ctx, &[res, 0]));
}

/// SUBMIT_3D of `stream` on `ctx`, fenced with `fence` (on `ring` with
/// INFO_RING_IDX when given); returns the response header.
fn submit(fe: &mut TestFrontend, ctx: u32, stream: &[u8], fence: u64, ring: Option<u8>) -> Vec<u8> {
    let flags = FLAG_FENCE | ring.map_or(0, |_| FLAG_INFO_RING_IDX);
    let mut request = req(SUBMIT_3D, flags, fence, ctx, &[stream.len() as u32, 0]);
    request[20] = ring.unwrap_or(0);
    request.extend_from_slice(stream);
    send(fe, &request, 24)
}

/// TRANSFER_FROM_HOST_3D of all of `res` (fenced) and the pixels it
/// wrote at `addr`.
fn read_back(fe: &mut TestFrontend, ctx: u32, res: u32, (w, h): (u32, u32), addr: u64) -> Vec<u8> {
    // Box, offset, resource, level, stride, layer stride.
    let body = [0, 0, 0, w, h, 1, 0, 0, res, 0, w * 4, 0];
    let resp = send(
        fe,
        &req(TRANSFER_FROM_HOST_3D, FLAG_FENCE, 99, ctx, &body),
        24,
    );
    assert_eq!((u32_at(&resp, 0), u32_at(&resp, 8)), (OK_NODATA, 99));
    let mut pixels = vec![0u8; (w * h * 4) as usize];
    fe.memory()
        .read_slice(&mut pixels, GuestAddress(addr))
        .unwrap();
    pixels
}

fn assert_all(pixels: &[u8], bgra: [u8; 4]) {
    for (i, px) in pixels.chunks_exact(4).enumerate() {
        assert_eq!(px, bgra, "pixel {i}");
    }
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_clear_then_transfer_from_host_3d() {
    let (_dir, _daemon, mut fe) = start(&[]);
    let features = fe.device_features();
    assert_ne!(features & (1 << 0), 0, "VIRTIO_GPU_F_VIRGL");
    assert_ne!(features & (1 << 4), 0, "VIRTIO_GPU_F_CONTEXT_INIT");
    let config = fe.get_config(0, 20).unwrap();
    assert_eq!(u32_at(&config, 12), 2, "num_capsets");

    // Both capsets, from virglrenderer itself.
    let mut ids = Vec::new();
    for index in 0..2 {
        let info = send(&mut fe, &req(GET_CAPSET_INFO, 0, 0, 0, &[index, 0]), 40);
        assert_eq!(u32_at(&info, 0), OK_CAPSET_INFO);
        let (id, version, size) = (u32_at(&info, 24), u32_at(&info, 28), u32_at(&info, 32));
        assert!(
            version >= 1 && size >= 4,
            "capset {id}: v{version}, {size} bytes"
        );
        let caps = send(
            &mut fe,
            &req(GET_CAPSET, 0, 0, 0, &[id, version]),
            24 + size,
        );
        assert_eq!(u32_at(&caps, 0), OK_CAPSET);
        assert_eq!(caps.len(), 24 + size as usize);
        // virgl_caps starts with the highest caps version it fills in.
        assert!(u32_at(&caps, 24) >= 1, "capset {id} max_version");
        ids.push(id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "virgl and virgl2");

    let (ctx, res, size) = (1, 5, (16, 8));
    create_context(&mut fe, ctx, 0);
    let (addr, len) = fe.queue(0).unwrap().scratch();
    assert!(len >= 16 * 8 * 4);
    create_target(&mut fe, ctx, res, size, addr);

    // Clear to (R, G, B, A) = (0.2, 0.4, 0.6, 1.0), fenced: the answer
    // comes once the host has run the commands.
    let resp = submit(
        &mut fe,
        ctx,
        &clear_stream(res, [0.2, 0.4, 0.6, 1.0]),
        7,
        None,
    );
    assert_eq!(
        (
            u32_at(&resp, 0),
            u32_at(&resp, 4) & FLAG_FENCE,
            u32_at(&resp, 8)
        ),
        (OK_NODATA, FLAG_FENCE, 7)
    );
    // B8G8R8A8: 0.6 * 255 = 153, 0.4 * 255 = 102, 0.2 * 255 = 51.
    assert_all(
        &read_back(&mut fe, ctx, res, size, addr),
        [153, 102, 51, 255],
    );

    ok(&mut fe, &req(CTX_DESTROY, 0, 0, ctx, &[]));
    fe.disconnect().unwrap();
}

/// Context `ctx` with a 16x8 target cleared to `rgba` and read back.
fn clear_and_read(fe: &mut TestFrontend, ctx: u32, rgba: [f32; 4]) -> Vec<u8> {
    let (res, size) = (5, (16, 8));
    create_context(fe, ctx, 0);
    let (addr, _) = fe.queue(0).unwrap().scratch();
    create_target(fe, ctx, res, size, addr);
    let resp = submit(fe, ctx, &clear_stream(res, rgba), 7, None);
    assert_eq!(u32_at(&resp, 0), OK_NODATA);
    read_back(fe, ctx, res, size, addr)
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_a_new_connection_renders_and_the_daemon_stops_cleanly() {
    // QEMU going away ends the connection while virglrenderer has contexts
    // and resources; its cleanup must run on the thread that owns its GL
    // context, or EGL refuses and libepoxy aborts the daemon.
    let (_dir, daemon, mut fe) = start(&[]);
    assert_all(
        &clear_and_read(&mut fe, 1, [0.2, 0.4, 0.6, 1.0]),
        [153, 102, 51, 255],
    );
    drop(fe);
    let mut fe = daemon.connect(0, FrontendOptions::default()).unwrap();
    assert_all(
        &clear_and_read(&mut fe, 3, [1.0, 0.0, 0.0, 1.0]),
        [0, 0, 255, 255],
    );
    fe.disconnect().unwrap();
    // Still serving after the second connection ended too.
    let fe = daemon.connect(0, FrontendOptions::default()).unwrap();
    drop(fe);
    let status = daemon.stop().unwrap();
    assert!(status.success(), "daemon exit {status:?}");
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_writes_mesas_shader_cache_under_the_filter() {
    // Without Landlock (`--landlock none`, or a kernel without it) Mesa
    // creates and writes its shader cache, from threads it gives a low
    // priority: those calls are on the virgl list, so the daemon renders
    // in kill mode and the cache appears.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sock = dir.path().join("gpu.sock");
    let mut command = std::process::Command::new(BIN);
    command
        .arg("--socket-path")
        .arg(&sock)
        .args(["--gpu-mode", "virgl", "--headless", "--landlock", "none"])
        .env("XDG_CACHE_HOME", &cache)
        .env_remove("MESA_SHADER_CACHE_DIR")
        .env_remove("MESA_SHADER_CACHE_DISABLE");
    let daemon = DaemonProcess::spawn(command, vec![sock]).unwrap();
    let mut fe = daemon.connect(0, FrontendOptions::default()).unwrap();
    assert_eq!(
        wait_for_default_seccomp(daemon.pid(), T).unwrap(),
        default_seccomp_mode()
    );
    assert_all(
        &clear_and_read(&mut fe, 1, [0.2, 0.4, 0.6, 1.0]),
        [153, 102, 51, 255],
    );
    fe.disconnect().unwrap();
    assert!(
        cache.join("mesa_shader_cache").is_dir(),
        "Mesa made no shader cache"
    );
    let status = daemon.stop().unwrap();
    assert!(status.success(), "daemon exit {status:?}");
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_serves_one_guest_at_a_time() {
    // Two guests of one daemon: virglrenderer is the process's, so the
    // second gets an error until the first has gone, then renders.
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::start(
        BIN,
        &dir.path().join("gpu.sock"),
        2,
        &["--gpu-mode", "virgl", "--headless"],
    )
    .unwrap();
    let mut first = daemon.connect(0, FrontendOptions::default()).unwrap();
    let mut second = daemon.connect(1, FrontendOptions::default()).unwrap();
    assert_all(
        &clear_and_read(&mut first, 1, [0.0, 1.0, 0.0, 1.0]),
        [0, 255, 0, 255],
    );
    let mut create = req(CTX_CREATE, 0, 0, 1, &[4, 0]);
    create.extend_from_slice(b"busy");
    create.resize(24 + 8 + 64, 0);
    assert_eq!(u32_at(&send(&mut second, &create, 24), 0), ERR_UNSPEC);
    first.disconnect().unwrap();
    // The first connection's worker parks the renderer as it ends.
    let deadline = std::time::Instant::now() + T;
    loop {
        let resp = send(&mut second, &create, 24);
        if u32_at(&resp, 0) == OK_NODATA {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renderer never came free"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (addr, _) = second.queue(0).unwrap().scratch();
    create_target(&mut second, 1, 5, (16, 8), addr);
    let resp = submit(
        &mut second,
        1,
        &clear_stream(5, [0.0, 0.0, 1.0, 1.0]),
        9,
        None,
    );
    assert_eq!(u32_at(&resp, 0), OK_NODATA);
    assert_all(
        &read_back(&mut second, 1, 5, (16, 8), addr),
        [255, 0, 0, 255],
    );
    second.disconnect().unwrap();
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_ring_fences_and_a_broken_context_leave_the_others_alive() {
    let (_dir, _daemon, mut fe) = start(&[]);
    let (addr, _) = fe.queue(0).unwrap().scratch();
    let size = (8, 4);
    // Context 1: virgl2 through CONTEXT_INIT, fences on its ring.
    create_context(&mut fe, 1, 2);
    create_target(&mut fe, 1, 10, size, addr);
    // Context 2: a plain one that gets a command stream virglrenderer
    // rejects (an unknown command): an error for that submit only.
    create_context(&mut fe, 2, 0);
    let garbage: Vec<u8> = [0xfeu32 | (3 << 16), 1, 2, 3]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
    let resp = submit(&mut fe, 2, &garbage, 3, None);
    assert!(u32_at(&resp, 0) >= 0x1200, "{:#x}", u32_at(&resp, 0));

    // A virgl context has one timeline, ring 0: the fence is signalled on
    // it and comes back with its ring.
    let stream = clear_stream(10, [1.0, 0.0, 0.0, 1.0]);
    let resp = submit(&mut fe, 1, &stream, 11, Some(0));
    assert_eq!(u32_at(&resp, 0), OK_NODATA);
    assert_eq!(u32_at(&resp, 4), FLAG_FENCE | FLAG_INFO_RING_IDX);
    assert_eq!((u32_at(&resp, 8), resp[20]), (11, 0), "fence 11 on ring 0");
    assert_all(&read_back(&mut fe, 1, 10, size, addr), [0, 0, 255, 255]);
    // virglrenderer refuses a fence on a ring a virgl context does not
    // have; the guest still gets its answer rather than waiting forever.
    let resp = submit(&mut fe, 1, &stream, 12, Some(1));
    assert_eq!(u32_at(&resp, 8), 12);
    // The daemon and the broken context's neighbour are still there.
    ok(&mut fe, &req(CTX_DESTROY, 0, 0, 2, &[]));
    ok(&mut fe, &req(CTX_DESTROY, 0, 0, 1, &[]));
    fe.disconnect().unwrap();
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_3d_resources_count_against_max_hostmem() {
    let (_dir, _daemon, mut fe) = start(&["--max-hostmem", "1"]);
    create_context(&mut fe, 1, 0);
    // 512x512 B8G8R8A8 is 1 MiB of pixels: over the budget with the
    // per-resource overhead, so virglrenderer never sees it.
    let mut body = [
        20,
        PIPE_TEXTURE_2D,
        VIRGL_FORMAT_B8G8R8A8_UNORM,
        VIRGL_BIND_RENDER_TARGET,
        512,
        512,
        1,
        1,
        0,
        0,
        0,
        0,
    ];
    let resp = send(&mut fe, &req(RESOURCE_CREATE_3D, 0, 0, 1, &body), 24);
    assert_eq!(u32_at(&resp, 0), ERR_OUT_OF_MEMORY);
    // The daemon lives, and a resource that fits renders.
    body[4] = 256;
    body[5] = 256;
    ok(&mut fe, &req(RESOURCE_CREATE_3D, 0, 0, 1, &body));
    let (addr, _) = fe.queue(0).unwrap().scratch();
    let size = (8, 8);
    create_target(&mut fe, 1, 21, size, addr);
    let resp = submit(&mut fe, 1, &clear_stream(21, [0.0, 1.0, 0.0, 1.0]), 5, None);
    assert_eq!(u32_at(&resp, 0), OK_NODATA);
    assert_all(&read_back(&mut fe, 1, 21, size, addr), [0, 255, 0, 255]);
    // 512 KiB more fits (about 769 KiB in all), another 512 KiB does not,
    // until the first one is unreferenced.
    body[0] = 22;
    body[4] = 512;
    ok(&mut fe, &req(RESOURCE_CREATE_3D, 0, 0, 1, &body));
    body[0] = 23;
    let resp = send(&mut fe, &req(RESOURCE_CREATE_3D, 0, 0, 1, &body), 24);
    assert_eq!(u32_at(&resp, 0), ERR_OUT_OF_MEMORY);
    ok(&mut fe, &req(RESOURCE_UNREF, 0, 0, 0, &[22, 0]));
    ok(&mut fe, &req(RESOURCE_CREATE_3D, 0, 0, 1, &body));
    fe.disconnect().unwrap();
}

/// QEMU's side of the vhost-user-gpu socket, reduced to what a scanout
/// needs: protocol features are answered (none), and every SCANOUT (7)
/// and UPDATE (8) is passed on as (request, payload).
fn display(mut sock: UnixStream) -> Receiver<(u32, Vec<u8>)> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut hdr = [0u8; 12];
        while sock.read_exact(&mut hdr).is_ok() {
            let request = u32_at(&hdr, 0);
            let mut payload = vec![0; u32_at(&hdr, 8) as usize];
            if sock.read_exact(&mut payload).is_err() {
                return;
            }
            if request == 1 {
                let reply: Vec<u8> = [1u32, 4, 8, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                if sock.write_all(&reply).is_err() {
                    return;
                }
            } else if (request == 7 || request == 8) && tx.send((request, payload)).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
#[ignore = "needs virglrenderer >= 1.3 and a virgl_renderer build: rust-vmm-ci/steps/virgl.sh runs it"]
fn virglrenderer_a_3d_resource_on_a_scanout_reaches_the_display() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = DaemonProcess::start(
        BIN,
        &dir.path().join("gpu.sock"),
        1,
        &["--gpu-mode", "virgl"],
    )
    .unwrap();
    let mut fe = daemon.connect(0, FrontendOptions::default()).unwrap();
    let rx = display(fe.set_gpu_socket().unwrap());
    let (ctx, res, (w, h)) = (1, 30, (8u32, 4u32));
    create_context(&mut fe, ctx, 0);
    let (addr, _) = fe.queue(0).unwrap().scratch();
    create_target(&mut fe, ctx, res, (w, h), addr);
    let resp = submit(
        &mut fe,
        ctx,
        &clear_stream(res, [0.2, 0.4, 0.6, 1.0]),
        1,
        None,
    );
    assert_eq!(u32_at(&resp, 0), OK_NODATA);
    ok(&mut fe, &req(SET_SCANOUT, 0, 0, 0, &[0, 0, w, h, 0, res]));
    ok(
        &mut fe,
        &req(RESOURCE_FLUSH, 0, 0, 0, &[0, 0, w, h, res, 0]),
    );
    let next = || rx.recv_timeout(T).expect("nothing on the display socket");
    let (request, payload) = next();
    assert_eq!(request, 7, "SCANOUT");
    assert_eq!(payload, [0u32, w, h].map(u32::to_le_bytes).concat());
    // The pixels virglrenderer rendered, read back from the host once:
    // on the flush, not on SET_SCANOUT.
    let (request, payload) = next();
    assert_eq!(request, 8, "UPDATE");
    assert_eq!(
        &payload[..20],
        [0u32, 0, 0, w, h].map(u32::to_le_bytes).concat()
    );
    assert_all(&payload[20..], [153, 102, 51, 255]);

    // Guest pixels uploaded with TRANSFER_TO_HOST_3D, pixel (x, y) =
    // [x, y, 0x40, 0xff], come out in the same order: rows top to bottom,
    // no flip on the way in or out.
    let pattern: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % w) as u8, (i / w) as u8, 0x40, 0xff])
        .collect();
    fe.memory()
        .write_slice(&pattern, GuestAddress(addr))
        .unwrap();
    let body = [0, 0, 0, w, h, 1, 0, 0, res, 0, w * 4, 0];
    ok(&mut fe, &req(TRANSFER_TO_HOST_3D, 0, 0, ctx, &body));
    ok(
        &mut fe,
        &req(RESOURCE_FLUSH, 0, 0, 0, &[0, 0, w, h, res, 0]),
    );
    let (request, payload) = next();
    assert_eq!(request, 8, "UPDATE");
    assert_eq!(&payload[20..], pattern);
    assert_eq!(read_back(&mut fe, ctx, res, (w, h), addr), pattern);
    // A flush of part of it reads back and sends only that part.
    ok(
        &mut fe,
        &req(RESOURCE_FLUSH, 0, 0, 0, &[3, 1, 4, 2, res, 0]),
    );
    let (request, payload) = next();
    assert_eq!(request, 8, "UPDATE");
    assert_eq!(
        &payload[..20],
        [0u32, 3, 1, 4, 2].map(u32::to_le_bytes).concat()
    );
    let part: Vec<u8> = (1..3)
        .flat_map(|y| (3..7).flat_map(move |x| [x as u8, y as u8, 0x40, 0xff]))
        .collect();
    assert_eq!(&payload[20..], part);
    fe.disconnect().unwrap();
}
