// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A hostile guest (issue #17): host memory it could grow outside the
//! budget, work it could amplify, values that must be checked before the
//! renderer sees them.

use std::collections::HashSet;

use super::*;
use crate::backend::sim::{Call, Sim3d};
use crate::protocol::{Create3d, Transfer3d, FLAG_INFO_RING_IDX};

/// An ATTACH_BACKING of `n` entries of `len` bytes each, all in one
/// scratch area of the chain's memory.
fn attach_many(dev: &mut GpuDevice, id: u32, n: u32, len: u32) -> u32 {
    let mut b = ChainBuilder::new();
    let base = b.scratch((n * len) as usize);
    let mut req = cmd_req(cmd::RESOURCE_ATTACH_BACKING, &[id, n]);
    for i in 0..u64::from(n) {
        req.extend_from_slice(&(base + i * u64::from(len)).to_le_bytes());
        req.extend_from_slice(&len.to_le_bytes());
        req.extend_from_slice(&0u32.to_le_bytes());
    }
    let (mem, chain) = b.readable(&req).writable(24).build();
    match dev.execute(&chain.unwrap(), &mem) {
        Outcome::Reply(bytes) => resp_type(&bytes),
        Outcome::Wait { .. } => panic!("attach does not wait"),
    }
}

#[test]
fn backing_entries_are_charged_to_the_budget() {
    let mut dev = device(GpuConfig {
        max_hostmem: 16 << 10,
        ..Default::default()
    });
    assert_eq!(
        create(&mut dev, 1, Format::B8G8R8X8, 1, 1),
        cmd::RESP_OK_NODATA
    );
    // 1,024 entries cost the host far more than the 4 bytes of pixels.
    assert_eq!(
        attach_many(&mut dev, 1, 1024, 4),
        cmd::RESP_ERR_OUT_OF_MEMORY
    );
    assert_eq!(attach_many(&mut dev, 1, 4, 1), cmd::RESP_OK_NODATA);
    // Detaching refunds the entries: a large backing fits again later.
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_DETACH_BACKING, &[1, 0])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(attach_many(&mut dev, 1, 64, 1), cmd::RESP_OK_NODATA);
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_UNREF, &[1, 0])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(dev.state.hostmem, 0, "unref refunds pixels and backing");
}

#[test]
fn every_resource_is_charged_an_overhead() {
    let mut dev = device(GpuConfig {
        max_hostmem: 64 << 10,
        ..Default::default()
    });
    // 64 KiB of 1x1 pixels would be 16,384 resources; the host spends far
    // more than 4 bytes on each.
    let created = (1..=200)
        .take_while(|&id| create(&mut dev, id, Format::B8G8R8X8, 1, 1) == cmd::RESP_OK_NODATA)
        .count();
    assert!((16..200).contains(&created), "{created} resources");
}

fn empty_mem() -> GuestMem {
    ChainBuilder::new().writable(24).build().0
}

#[test]
fn resources_and_contexts_are_capped() {
    let sim = Sim3d::default();
    let mut state = GpuState::new(
        GpuConfig {
            max_hostmem: 1 << 40,
            ..Default::default()
        },
        Box::new(sim),
    );
    let mem = empty_mem();
    let hdr = CtrlHdr::default();
    let create = |id| {
        GpuCommand::ResourceCreate2d(crate::protocol::ResourceCreate2d {
            resource_id: id,
            format: Format::B8G8R8X8 as u32,
            width: 1,
            height: 1,
        })
    };
    let mut id = 1;
    while state.dispatch(&hdr, create(id), &mem).is_ok() {
        id += 1;
        assert!(id <= 1 << 20, "no cap on resources");
    }
    assert_eq!(id - 1, MAX_RESOURCES);
    let err = state.dispatch(&hdr, create(id), &mem).unwrap_err();
    assert_eq!(err.status(), cmd::RESP_ERR_OUT_OF_MEMORY);

    let ctx = |ctx_id| CtrlHdr {
        type_: cmd::CTX_CREATE,
        ctx_id,
        ..Default::default()
    };
    let new_ctx = || GpuCommand::CtxCreate {
        context_init: 0,
        name: String::new(),
    };
    let mut n = 1;
    while state.dispatch(&ctx(n), new_ctx(), &mem).is_ok() {
        n += 1;
        assert!(n <= 1 << 16, "no cap on contexts");
    }
    assert_eq!(n - 1, MAX_CONTEXTS);
}

#[test]
fn deferred_cursor_requests_are_bounded() {
    let mut dev = displayed();
    // QEMU is behind: every batch slot is taken.
    dev.cursor_in_flight = MAX_CURSOR_IN_FLIGHT;
    for i in 0..20_000u32 {
        let scanout_id = i % 16;
        dev.defer_cursor(vec![
            DisplayRequest::CursorMove {
                scanout_id,
                x: i,
                y: 0,
            },
            DisplayRequest::CursorHide { scanout_id },
        ]);
    }
    assert!(
        dev.deferred_cursor.len() <= 2 * crate::protocol::MAX_SCANOUTS,
        "{} requests kept",
        dev.deferred_cursor.len()
    );
}

/// Distinct pixel buffers in a batch, and their total size.
fn copied_bytes(batch: &[DisplayRequest]) -> usize {
    let buffers: HashSet<(usize, usize)> = batch
        .iter()
        .filter_map(|r| match r {
            DisplayRequest::Update { pixels, .. } => Some((pixels.as_ptr() as usize, pixels.len())),
            _ => None,
        })
        .collect();
    buffers.iter().map(|(_, len)| len).sum()
}

#[test]
fn a_flush_shown_on_many_scanouts_is_copied_once() {
    let mut dev = displayed();
    drawn(&mut dev);
    let size = 16 * 8 * 4;
    for scanout in 0..16 {
        let _ = set_scanout(&mut dev, scanout, 1, rect(0, 0, 16, 8));
    }
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(0, 0, 16, 8)) else {
        panic!("flush must go to the display");
    };
    // Every output still gets its update, all from one copy.
    assert_eq!(batch.len(), 16);
    assert_eq!(copied_bytes(&batch), size);
    if let DisplayRequest::Update { pixels, .. } = &batch[15] {
        assert_eq!(pixels.to_vec(), expected_pixels(rect(0, 0, 16, 8)));
    }
    // Sixteen different views of it: the copies stay bounded.
    for s in 0..16 {
        let _ = set_scanout(&mut dev, s, 1, rect(s % 4, s / 4 % 2, 12, 7));
    }
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(0, 0, 16, 8)) else {
        panic!();
    };
    assert!(copied_bytes(&batch) <= 2 * size, "{}", copied_bytes(&batch));
}

#[test]
fn the_backlog_behind_a_held_command_is_bounded() {
    let mut dev = displayed();
    let (mem, chain) = ChainBuilder::new()
        .readable(&cmd_req(cmd::GET_DISPLAY_INFO, &[]))
        .writable(408)
        .build();
    dev.pending = Some(control::Pending {
        ticket: 1,
        chain: chain.unwrap(),
        kind: WaitKind::DisplayInfo,
        hdr: hdr(cmd::GET_DISPLAY_INFO),
    });
    // A guest that republishes heads can offer far more chains than its
    // ring holds.
    let req = cmd_req(cmd::RESOURCE_CREATE_2D, &[1, 1, 1, 1]);
    let (mem2, chain) = ChainBuilder::new().readable(&req).writable(24).build();
    let chain = chain.unwrap();
    drop(mem);
    let mut answered = 0;
    for _ in 0..5000 {
        if dev.accept_control(chain.clone(), &mem2).is_some() {
            answered += 1;
        }
    }
    assert!(dev.backlog.len() <= control::MAX_BACKLOG);
    assert_eq!(answered, 5000 - dev.backlog.len());
}

fn dev3d_with(max_hostmem: u64) -> (GpuDevice, Sim3d) {
    let sim = Sim3d::default();
    let dev = GpuDevice::new(
        GpuConfig {
            max_hostmem,
            ..Default::default()
        },
        Box::new(sim.clone()),
    );
    (dev, sim)
}

#[test]
fn transfer_3d_boxes_and_strides_are_checked_before_the_renderer() {
    let (mut dev, sim) = dev3d_with(256 << 20);
    let mem = empty_mem();
    let hdr = CtrlHdr::default();
    let create = GpuCommand::ResourceCreate3d {
        resource_id: 5,
        create: Create3d {
            last_level: 1,
            ..Create3d::texture_2d(64, 32, 2)
        },
    };
    dev.state.dispatch(&hdr, create, &mem).unwrap();
    let transfer = |bx: [u32; 6], level: u32, offset: u64, stride: u32| GpuCommand::Transfer3d {
        to_host: true,
        resource_id: 5,
        transfer: Transfer3d {
            bx,
            offset,
            level,
            stride,
            layer_stride: 0,
        },
    };
    let bad = [
        transfer([60, 0, 0, 8, 1, 1], 0, 0, 0), // beyond the width
        transfer([0, 30, 0, 1, 4, 1], 0, 0, 0), // beyond the height
        transfer([0, 0, 1, 1, 1, 1], 0, 0, 0),  // beyond the depth
        transfer([u32::MAX, 0, 0, 2, 1, 1], 0, 0, 0), // overflow
        transfer([0, 0, 0, 64, 32, 1], 1, 0, 0), // level 1 is 32x16
        transfer([0, 0, 0, 1, 1, 1], 2, 0, 0),  // no level 2
        transfer([0, 0, 0, 64, 32, 1], 0, 0, u32::MAX), // rows beyond the backing
        transfer([0, 0, 0, 1, 1, 1], 0, u64::MAX, 0), // offset beyond it
    ];
    // A 64x32 backing of 4-byte pixels.
    let (mem, _) = {
        let mut b = ChainBuilder::new();
        let addr = b.scratch(64 * 32 * 4);
        let mut req = cmd_req(cmd::RESOURCE_ATTACH_BACKING, &[5, 1]);
        req.extend_from_slice(&addr.to_le_bytes());
        req.extend_from_slice(&(64u32 * 32 * 4).to_le_bytes());
        req.extend_from_slice(&0u32.to_le_bytes());
        let (mem, chain) = b.readable(&req).writable(24).build();
        assert_eq!(
            dev.execute(&chain.unwrap(), &mem),
            reply(&hdr, cmd::RESP_OK_NODATA)
        );
        (mem, addr)
    };
    for (i, t) in bad.into_iter().enumerate() {
        let err = dev.state.dispatch(&hdr, t, &mem).unwrap_err();
        assert_eq!(err.status(), cmd::RESP_ERR_INVALID_PARAMETER, "case {i}");
    }
    assert!(
        !sim.state()
            .calls
            .iter()
            .any(|c| matches!(c, Call::ToHost(..))),
        "a bad transfer reached the renderer"
    );
    let good = transfer([0, 0, 0, 32, 16, 1], 1, 0, 32 * 4);
    dev.state.dispatch(&hdr, good, &mem).unwrap();
    let whole = transfer([0, 0, 0, 64, 32, 1], 0, 0, 64 * 4);
    dev.state.dispatch(&hdr, whole, &mem).unwrap();
}

#[test]
fn signalled_fences_complete_in_order_in_one_pass() {
    let (mut dev, sim) = dev3d_with(256 << 20);
    let fenced = |id: u64, ring: Option<u8>| CtrlHdr {
        type_: cmd::RESOURCE_UNREF,
        flags: FLAG_FENCE | ring.map_or(0, |_| FLAG_INFO_RING_IDX),
        fence_id: id,
        ctx_id: 1,
        ring_idx: ring.unwrap_or(0),
    };
    // 20,000 held responses on two timelines.
    for id in 0..10_000u64 {
        for ring in [None, Some(1)] {
            assert_eq!(
                run(&mut dev, &request(&fenced(id, ring), &[9, 0]), 24),
                None
            );
        }
    }
    sim.state().signal_up_to(4_999);
    let done = dev.take_signalled();
    assert_eq!(done.len(), 10_000);
    let ids: Vec<u64> = done
        .iter()
        .map(|(_, b)| CtrlHdr::decode(b).unwrap().fence_id)
        .collect();
    let mut expected: Vec<u64> = (0..5_000).flat_map(|id| [id, id]).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "submission order");
    assert_eq!(dev.fenced.len(), 10_000);
    sim.state().signal_up_to(u64::MAX);
    assert_eq!(dev.take_signalled().len(), 10_000);
    assert!(dev.fenced.is_empty());
}

#[test]
fn buffers_count_bytes_and_may_be_wider_than_a_texture() {
    // Mesa's virgl driver makes 1 MiB upload buffers: target PIPE_BUFFER,
    // width in bytes, height 1. Textures stay bounded by their side.
    let (mut dev, _sim) = dev3d_with(2 << 20);
    let mem = empty_mem();
    let hdr = CtrlHdr::default();
    let buffer = |id: u32, bytes: u32, height: u32| GpuCommand::ResourceCreate3d {
        resource_id: id,
        create: Create3d {
            target: 0,
            height,
            ..Create3d::texture_2d(bytes, 1, 64)
        },
    };
    dev.state
        .dispatch(&hdr, buffer(1, 1 << 20, 1), &mem)
        .unwrap();
    // Charged with its bytes, not four per byte: a second one still fits.
    dev.state
        .dispatch(&hdr, buffer(2, 900 << 10, 1), &mem)
        .unwrap();
    let err = dev
        .state
        .dispatch(&hdr, buffer(3, 1 << 20, 1), &mem)
        .unwrap_err();
    assert_eq!(err.status(), cmd::RESP_ERR_OUT_OF_MEMORY);
    let err = dev.state.dispatch(&hdr, buffer(4, 0, 1), &mem).unwrap_err();
    assert_eq!(err.status(), cmd::RESP_ERR_INVALID_PARAMETER);
    let err = dev
        .state
        .dispatch(&hdr, buffer(5, u32::MAX, 1), &mem)
        .unwrap_err();
    assert_eq!(err.status(), cmd::RESP_ERR_INVALID_PARAMETER);
    let wide = GpuCommand::ResourceCreate3d {
        resource_id: 6,
        create: Create3d::texture_2d(MAX_RESOURCE_SIDE + 1, 1, 2),
    };
    let err = dev.state.dispatch(&hdr, wide, &mem).unwrap_err();
    assert_eq!(err.status(), cmd::RESP_ERR_INVALID_PARAMETER);
}
