// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The gpu-virgl scenario: what a guest's GL driver asks of a virgl
//! device every frame, on the daemon's real virglrenderer. Setup makes a
//! context and a 256x256 render target backed in guest memory; each round
//! is a SUBMIT_3D whose virgl command stream clears the target, then a
//! TRANSFER_FROM_HOST_3D that reads it back into guest memory (the
//! glReadPixels path).
//!
//!
//! The gpu-virgl-scanout scenario measures the display path instead: two
//! 1280x800 render targets, cleared once, are put on scanout 0 in turn
//! (SET_SCANOUT) and flushed whole (RESOURCE_FLUSH), which is what the
//! Linux driver sends for each page flip of a GL client, with a display
//! socket attached (crate::gpu_display) that takes the pixels.
//!
//! The command stream and the structures follow virglrenderer's
//! `virgl_protocol.h` and the virtio spec (5.7.6.8, 3D commands), not our
//! gpu crate, so the scenario can drive any virgl device.

use vhost_device_common::testing::TestFrontend;

use crate::driver::{Template, LEAN_AREA};
use crate::error::{Error, Result};
use crate::scenario::{
    gpu_cmd, gpu_ok, le, setup_request, Prepared, GPU_CMD_RESOURCE_ATTACH_BACKING,
    GPU_CMD_RESOURCE_FLUSH, GPU_CMD_SET_SCANOUT,
};

const NAME: &str = "gpu-virgl";
const SCANOUT_NAME: &str = "gpu-virgl-scanout";
/// The scanout scenario's picture: the guest rig's 1280x800.
pub const SCANOUT_SIZE: (u32, u32) = (1280, 800);
/// Bytes of one picture of the scanout scenario.
pub const SCANOUT_FRAME_BYTES: u64 = SCANOUT_SIZE.0 as u64 * SCANOUT_SIZE.1 as u64 * 4;
/// The render target's side, in pixels.
pub const SIDE: u32 = 256;
/// Bytes of one read-back of the render target.
pub const FRAME_BYTES: u64 = SIDE as u64 * SIDE as u64 * 4;

const CTX_CREATE: u32 = 0x0200;
const CTX_ATTACH_RESOURCE: u32 = 0x0202;
const RESOURCE_CREATE_3D: u32 = 0x0204;
const TRANSFER_FROM_HOST_3D: u32 = 0x0206;
const SUBMIT_3D: u32 = 0x0207;

const CTX: u32 = 1;
const RESOURCE: u32 = 1;
const SURFACE: u32 = 1;
const PIPE_TEXTURE_2D: u32 = 2;
const VIRGL_FORMAT_B8G8R8A8_UNORM: u32 = 1;
const VIRGL_BIND_RENDER_TARGET: u32 = 1 << 1;
const VIRGL_CCMD_CREATE_OBJECT: u32 = 1;
const VIRGL_CCMD_SET_FRAMEBUFFER_STATE: u32 = 5;
const VIRGL_CCMD_CLEAR: u32 = 7;
const VIRGL_OBJECT_SURFACE: u32 = 8;
const PIPE_CLEAR_COLOR0: u32 = 1 << 2;

/// A control request on context `ctx`: the 24-byte header, then `body`.
fn cmd3d(kind: u32, ctx: u32, body: &[u32]) -> Vec<u8> {
    let mut v = le(&[kind, 0, 0, 0, ctx, 0]);
    v.extend(le(body));
    v
}

/// One virgl command: header dword (command, object, length), payload.
fn ccmd(out: &mut Vec<u32>, cmd: u32, object: u32, payload: &[u32]) {
    let len = u32::try_from(payload.len()).unwrap_or(0);
    out.push(cmd | (object << 8) | (len << 16));
    out.extend_from_slice(payload);
}

/// The per-round stream: colour buffer 0 is the target's surface, cleared.
fn clear_stream() -> Vec<u8> {
    clear_surface(SURFACE)
}

/// A stream that makes `surface` colour buffer 0 and clears it.
fn clear_surface(surface: u32) -> Vec<u8> {
    let mut s = Vec::new();
    ccmd(
        &mut s,
        VIRGL_CCMD_SET_FRAMEBUFFER_STATE,
        0,
        &[1, 0, surface],
    );
    let mut clear = vec![PIPE_CLEAR_COLOR0];
    clear.extend([0.25f32, 0.5, 0.75, 1.0].map(f32::to_bits));
    let depth = 1.0f64.to_bits();
    clear.extend([depth as u32, (depth >> 32) as u32, 0]);
    ccmd(&mut s, VIRGL_CCMD_CLEAR, 0, &clear);
    le(&s)
}

/// SUBMIT_3D of `stream` on the context.
fn submit(stream: &[u8]) -> Vec<u8> {
    let len = u32::try_from(stream.len()).unwrap_or(0);
    let mut v = cmd3d(SUBMIT_3D, CTX, &[len, 0]);
    v.extend_from_slice(stream);
    v
}

fn ok_template(name: &'static str, request: Vec<u8>) -> Template {
    Template {
        name,
        readable: vec![request],
        writable: vec![24],
        check: gpu_ok,
    }
}

/// RESOURCE_CREATE_3D of a `w`x`h` B8G8R8A8 render target.
fn create_target(id: u32, (w, h): (u32, u32)) -> Template {
    ok_template(
        "RESOURCE_CREATE_3D",
        cmd3d(
            RESOURCE_CREATE_3D,
            CTX,
            &[
                id,
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
            ],
        ),
    )
}

/// CTX_CREATE of the context every scenario uses.
fn create_context() -> Template {
    let mut create_ctx = cmd3d(CTX_CREATE, CTX, &[5, 0]);
    create_ctx.extend_from_slice(b"bench");
    create_ctx.resize(24 + 8 + 64, 0);
    ok_template("CTX_CREATE", create_ctx)
}

/// A SUBMIT_3D that makes surface `surface` of resource `resource`.
fn create_surface(surface: u32, resource: u32) -> Template {
    let mut stream = Vec::new();
    ccmd(
        &mut stream,
        VIRGL_CCMD_CREATE_OBJECT,
        VIRGL_OBJECT_SURFACE,
        &[surface, resource, VIRGL_FORMAT_B8G8R8A8_UNORM, 0, 0],
    );
    ok_template("SUBMIT_3D (surface)", submit(&le(&stream)))
}

fn run_setup(fe: &mut TestFrontend, name: &'static str, setup: &[Template]) -> Result<()> {
    for t in setup {
        setup_request(fe, name, 0, t).map_err(|e| {
            Error::Failed(format!(
                "{e} (a virgl scenario needs vhost-device-gpu built with \
                 --features virgl,rutabaga_gfx/virgl_renderer and virglrenderer on LD_LIBRARY_PATH)"
            ))
        })?;
    }
    Ok(())
}

/// Attaches a display socket, makes two render targets with a picture
/// each, and returns the page flip between them.
pub fn prepare_scanout(fe: &mut TestFrontend) -> Result<Prepared> {
    let sock = fe
        .set_gpu_socket()
        .map_err(Error::frontend("GPU_SET_SOCKET"))?;
    crate::gpu_display::spawn(sock).map_err(|e| Error::io("starting the display thread", e))?;
    let (w, h) = SCANOUT_SIZE;
    let targets = [(1u32, [1.0f32, 0.5, 0.0, 1.0]), (2, [0.0, 0.5, 1.0, 1.0])];
    let mut setup = vec![create_context()];
    for (id, colour) in targets {
        setup.push(create_target(id, SCANOUT_SIZE));
        setup.push(ok_template(
            "CTX_ATTACH_RESOURCE",
            cmd3d(CTX_ATTACH_RESOURCE, CTX, &[id, 0]),
        ));
        setup.push(create_surface(id, id));
        let mut clear = clear_surface(id);
        // The colour's four floats follow the framebuffer state (4 dwords)
        // and the clear's header and buffer mask (2).
        for (i, c) in colour.iter().enumerate() {
            let at = (6 + i) * 4;
            if let Some(d) = clear.get_mut(at..at + 4) {
                d.copy_from_slice(&c.to_bits().to_le_bytes());
            }
        }
        setup.push(ok_template("SUBMIT_3D (clear)", submit(&clear)));
    }
    run_setup(fe, SCANOUT_NAME, &setup)?;
    let mut templates = Vec::new();
    for (id, _) in targets {
        templates.push(ok_template(
            "SET_SCANOUT",
            gpu_cmd(GPU_CMD_SET_SCANOUT, &[0, 0, w, h, 0, id]),
        ));
        templates.push(ok_template(
            "RESOURCE_FLUSH",
            gpu_cmd(GPU_CMD_RESOURCE_FLUSH, &[0, 0, w, h, id, 0]),
        ));
    }
    Ok(Prepared {
        queue: 0,
        templates,
        bytes_per_round: Some(2 * SCANOUT_FRAME_BYTES),
    })
}

/// Sets up the context and the render target and returns the round.
pub fn prepare(fe: &mut TestFrontend) -> Result<Prepared> {
    let (scratch, scratch_len) = fe
        .queue(0)
        .map_err(Error::frontend("selecting the control queue"))?
        .scratch();
    if scratch_len < LEAN_AREA + FRAME_BYTES {
        return Err(Error::Failed(format!(
            "scratch area of {scratch_len} bytes cannot hold the render target"
        )));
    }
    let backing = scratch + LEAN_AREA;
    let mut attach = cmd3d(GPU_CMD_RESOURCE_ATTACH_BACKING, 0, &[RESOURCE, 1]);
    attach.extend(backing.to_le_bytes());
    attach.extend(le(&[SIDE * SIDE * 4, 0]));
    let setup = [
        create_context(),
        create_target(RESOURCE, (SIDE, SIDE)),
        ok_template("RESOURCE_ATTACH_BACKING", attach),
        ok_template(
            "CTX_ATTACH_RESOURCE",
            cmd3d(CTX_ATTACH_RESOURCE, CTX, &[RESOURCE, 0]),
        ),
        create_surface(SURFACE, RESOURCE),
    ];
    run_setup(fe, NAME, &setup)?;
    // Box, offset, resource, level, stride, layer stride.
    let read_back = cmd3d(
        TRANSFER_FROM_HOST_3D,
        CTX,
        &[0, 0, 0, SIDE, SIDE, 1, 0, 0, RESOURCE, 0, SIDE * 4, 0],
    );
    Ok(Prepared {
        queue: 0,
        templates: vec![
            ok_template("SUBMIT_3D (clear)", submit(&clear_stream())),
            ok_template("TRANSFER_FROM_HOST_3D", read_back),
        ],
        bytes_per_round: Some(FRAME_BYTES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_spec_sizes() {
        // Header + size + padding + the stream: 3-dword framebuffer state
        // (with its header: 4) and an 8-dword clear (9).
        assert_eq!(submit(&clear_stream()).len(), 32 + 13 * 4);
        assert_eq!(
            cmd3d(TRANSFER_FROM_HOST_3D, CTX, &[0; 12]).len(),
            72,
            "virtio_gpu_transfer_host_3d"
        );
        assert_eq!(cmd3d(RESOURCE_CREATE_3D, CTX, &[0; 12]).len(), 72);
        assert_eq!(
            cmd3d(CTX_CREATE, CTX, &[0; 2]).get(16..20),
            Some(&[1u8, 0, 0, 0][..])
        );
    }
}
