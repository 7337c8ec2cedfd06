// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

use vhost_device_common::mock::{read_region, ChainBuilder, RawDesc};
use vm_memory::Bytes;

use super::cursor::MAX_CURSOR_IN_FLIGHT;
use super::fences::completes;
use super::*;
use crate::backend::{DisplayReply, Fence, Rutabaga2d};
use crate::protocol::{cmd, Format, Rect, FLAG_FENCE, UPDATE_CURSOR_SIZE};
use vm_memory::GuestAddress;

fn reply(hdr: &CtrlHdr, code: u32) -> Outcome {
    Outcome::Reply(hdr.response(code).encode().to_vec())
}

fn device(cfg: GpuConfig) -> GpuDevice {
    GpuDevice::new(cfg, Box::new(Rutabaga2d::new().unwrap()))
}

fn gpu() -> GpuDevice {
    device(GpuConfig::default())
}

fn displayed() -> GpuDevice {
    let mut d = gpu();
    d.assume_frontend_display();
    d
}

fn hdr(type_: u32) -> CtrlHdr {
    CtrlHdr {
        type_,
        ..Default::default()
    }
}

fn request(h: &CtrlHdr, fields: &[u32]) -> Vec<u8> {
    let mut v = h.encode().to_vec();
    for f in fields {
        v.extend_from_slice(&f.to_le_bytes());
    }
    v
}

fn cmd_req(type_: u32, fields: &[u32]) -> Vec<u8> {
    request(&hdr(type_), fields)
}

/// Runs one request through `run_one`, as the queue would, and returns the
/// bytes the device wrote (None if the chain was held for the display).
fn run(dev: &mut GpuDevice, req: &[u8], resp_len: u32) -> Option<Vec<u8>> {
    let (mem, chain) = ChainBuilder::new().readable(req).writable(resp_len).build();
    let chain = chain.unwrap();
    let len = dev.run_one(chain.clone(), &mem)?;
    let written = read_region(&mem, chain.writable().get(0).unwrap());
    Some(written.get(..len as usize).unwrap().to_vec())
}

fn resp_type(bytes: &[u8]) -> u32 {
    CtrlHdr::decode(bytes).unwrap().type_
}

fn exec(dev: &mut GpuDevice, req: &[u8]) -> Outcome {
    let (mem, chain) = ChainBuilder::new().readable(req).writable(2048).build();
    dev.execute(&chain.unwrap(), &mem)
}

fn status(dev: &mut GpuDevice, req: &[u8]) -> u32 {
    match exec(dev, req) {
        Outcome::Reply(bytes) => resp_type(&bytes),
        Outcome::Wait { .. } => cmd::RESP_OK_NODATA,
    }
}

fn create(dev: &mut GpuDevice, id: u32, format: Format, w: u32, h: u32) -> u32 {
    status(
        dev,
        &cmd_req(cmd::RESOURCE_CREATE_2D, &[id, format as u32, w, h]),
    )
}

/// Attaches a backing in a fresh mock memory and returns that memory and
/// the backing's guest address, so the test can draw into it.
fn attach(dev: &mut GpuDevice, id: u32, len: u32) -> (GuestMem, u64) {
    let mut b = ChainBuilder::new();
    let addr = b.scratch(len as usize);
    let mut req = cmd_req(cmd::RESOURCE_ATTACH_BACKING, &[id, 1]);
    req.extend_from_slice(&addr.to_le_bytes());
    req.extend_from_slice(&len.to_le_bytes());
    req.extend_from_slice(&0u32.to_le_bytes());
    let (mem, chain) = b.readable(&req).writable(24).build();
    let out = dev.execute(&chain.unwrap(), &mem);
    assert_eq!(
        out,
        reply(&hdr(cmd::RESOURCE_ATTACH_BACKING), cmd::RESP_OK_NODATA)
    );
    (mem, addr)
}

fn transfer(dev: &mut GpuDevice, id: u32, rect: Rect, offset: u64) -> u32 {
    let mut req = cmd_req(
        cmd::TRANSFER_TO_HOST_2D,
        &[rect.x, rect.y, rect.width, rect.height],
    );
    req.extend_from_slice(&offset.to_le_bytes());
    req.extend_from_slice(&id.to_le_bytes());
    req.extend_from_slice(&0u32.to_le_bytes());
    status(dev, &req)
}

fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
    Rect {
        x,
        y,
        width,
        height,
    }
}

/// A 16×8 B8G8R8X8 resource 1 with pixel (x, y) = B x, G y, R 0x80,
/// transferred whole.
fn drawn(dev: &mut GpuDevice) -> GuestMem {
    assert_eq!(create(dev, 1, Format::B8G8R8X8, 16, 8), cmd::RESP_OK_NODATA);
    let (mem, addr) = attach(dev, 1, 16 * 8 * 4);
    let pixels: Vec<u8> = (0..8u8)
        .flat_map(|y| (0..16u8).flat_map(move |x| [x, y, 0x80, 0]))
        .collect();
    mem.write_slice(&pixels, GuestAddress(addr)).unwrap();
    assert_eq!(transfer(dev, 1, rect(0, 0, 16, 8), 0), cmd::RESP_OK_NODATA);
    mem
}

fn expected_pixels(r: Rect) -> Vec<u8> {
    (r.y..r.y + r.height)
        .flat_map(|y| (r.x..r.x + r.width).flat_map(move |x| [x as u8, y as u8, 0x80, 0xff]))
        .collect()
}

fn set_scanout(dev: &mut GpuDevice, scanout: u32, id: u32, r: Rect) -> Outcome {
    exec(
        dev,
        &cmd_req(
            cmd::SET_SCANOUT,
            &[r.x, r.y, r.width, r.height, scanout, id],
        ),
    )
}

fn flush(dev: &mut GpuDevice, id: u32, r: Rect) -> Outcome {
    exec(
        dev,
        &cmd_req(cmd::RESOURCE_FLUSH, &[r.x, r.y, r.width, r.height, id, 0]),
    )
}

#[test]
fn config_space_is_20_bytes_with_scanouts() {
    let dev = device(GpuConfig {
        modes: vec![(800, 600), (640, 480)],
        ..Default::default()
    });
    let cfg = dev.config();
    assert_eq!(cfg.len(), 20);
    assert_eq!(u32::from_le_bytes(cfg[8..12].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(cfg[12..16].try_into().unwrap()), 0);
    assert_eq!(dev.num_queues(), 2);
    assert_eq!(dev.features(), F_EDID);
    let no_edid = device(GpuConfig {
        edid: false,
        ..Default::default()
    });
    assert_eq!(no_edid.features(), 0);
}

#[test]
fn events_clear_clears_events_read() {
    let mut dev = gpu();
    dev.config_space[0] = crate::protocol::EVENT_DISPLAY as u8;
    // QEMU writes the whole structure back.
    let mut whole = dev.config().to_vec();
    whole[4] = 1;
    assert!(dev.write_config(0, &whole));
    assert_eq!(&dev.config()[0..8], &[0; 8]);
    assert!(!dev.write_config(16, &[0; 8]));
}

#[test]
fn display_info_from_own_modes() {
    let mut dev = device(GpuConfig {
        modes: vec![(800, 600), (1024, 768)],
        ..Default::default()
    });
    let out = run(&mut dev, &cmd_req(cmd::GET_DISPLAY_INFO, &[]), 408).unwrap();
    assert_eq!(out.len(), 408);
    assert_eq!(resp_type(&out), cmd::RESP_OK_DISPLAY_INFO);
    let field = |i: usize| u32::from_le_bytes(out[24 + i * 4..28 + i * 4].try_into().unwrap());
    // Scanout 0: x, y, w, h, enabled; scanout 1 at +6 fields; 2 disabled.
    assert_eq!([field(2), field(3), field(4)], [800, 600, 1]);
    assert_eq!([field(8), field(9), field(10)], [1024, 768, 1]);
    assert_eq!(field(16), 0);
}

#[test]
fn display_info_waits_for_the_frontend_and_falls_back() {
    let mut dev = displayed();
    let req = cmd_req(cmd::GET_DISPLAY_INFO, &[]);
    let Outcome::Wait { batch, kind, hdr } = exec(&mut dev, &req) else {
        panic!("display info must come from the frontend");
    };
    assert_eq!(batch, vec![DisplayRequest::DisplayInfo]);
    let frontend = vec![DisplayMode {
        rect: rect(0, 0, 1920, 1080),
        enabled: true,
    }];
    let out = dev.finish(kind, &hdr, DisplayReply::DisplayInfo(frontend));
    assert_eq!(&out[32..40], &[0x80, 7, 0, 0, 0x38, 4, 0, 0]);
    // No answer from the frontend: our own mode, never nothing.
    let out = dev.finish(kind, &hdr, DisplayReply::Unavailable);
    assert_eq!(&out[32..40], &[0, 5, 0, 0, 0x20, 3, 0, 0]);
    // No display thread in this test: run_one answers with the fallback.
    let out = run(&mut dev, &req, 408).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_OK_DISPLAY_INFO);
    assert_eq!(&out[32..40], &[0, 5, 0, 0, 0x20, 3, 0, 0]);
}

#[test]
fn edid_own_frontend_and_errors() {
    let mut dev = gpu();
    let out = run(&mut dev, &cmd_req(cmd::GET_EDID, &[0, 0]), 1056).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_OK_EDID);
    assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 128);
    assert_eq!(&out[32..40], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::GET_EDID, &[1, 0])),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::GET_EDID, &[])),
        cmd::RESP_ERR_UNSPEC
    );

    let mut dev = displayed();
    // Output 3 is unknown to the frontend so far: answered here, since
    // QEMU would never answer for an output it does not have.
    let out = run(&mut dev, &cmd_req(cmd::GET_EDID, &[3, 0]), 1056).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_OK_EDID);
    let Outcome::Wait { kind, hdr, .. } = exec(&mut dev, &cmd_req(cmd::GET_DISPLAY_INFO, &[]))
    else {
        panic!();
    };
    let mut modes = vec![DisplayMode::default(); 4];
    modes[3].enabled = true;
    dev.finish(kind, &hdr, DisplayReply::DisplayInfo(modes));
    let Outcome::Wait { batch, kind, hdr } = exec(&mut dev, &cmd_req(cmd::GET_EDID, &[3, 0]))
    else {
        panic!("EDID must come from the frontend");
    };
    assert_eq!(batch, vec![DisplayRequest::Edid { scanout_id: 3 }]);
    let out = dev.finish(kind, &hdr, DisplayReply::Edid(vec![7; 256]));
    assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 256);
    assert_eq!(out[32], 7);

    let mut dev = device(GpuConfig {
        edid: false,
        ..Default::default()
    });
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::GET_EDID, &[0, 0])),
        cmd::RESP_ERR_UNSPEC
    );
}

#[test]
fn create_2d_every_format_and_bad_values() {
    let mut dev = gpu();
    for (i, format) in Format::ALL.into_iter().enumerate() {
        assert_eq!(
            create(&mut dev, 10 + i as u32, format, 64, 64),
            cmd::RESP_OK_NODATA,
            "{format:?}"
        );
    }
    let raw = |dev: &mut GpuDevice, f: &[u32]| status(dev, &cmd_req(cmd::RESOURCE_CREATE_2D, f));
    assert_eq!(
        raw(&mut dev, &[1, 5, 64, 64]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        raw(&mut dev, &[1, 0, 64, 64]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        raw(&mut dev, &[0, 1, 64, 64]),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        raw(&mut dev, &[10, 1, 64, 64]),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        raw(&mut dev, &[1, 1, 0, 64]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        raw(&mut dev, &[1, 1, 64, 0]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        raw(&mut dev, &[1, 1, u32::MAX, u32::MAX]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(raw(&mut dev, &[1, 1, 64]), cmd::RESP_ERR_UNSPEC);
}

#[test]
fn host_memory_limit_and_unref_frees_it() {
    let mut dev = device(GpuConfig {
        max_hostmem: 64 * 64 * 4 + resources::RESOURCE_OVERHEAD,
        ..Default::default()
    });
    assert_eq!(
        create(&mut dev, 1, Format::B8G8R8A8, 64, 64),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        create(&mut dev, 2, Format::B8G8R8A8, 1, 1),
        cmd::RESP_ERR_OUT_OF_MEMORY
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_UNREF, &[1, 0])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        create(&mut dev, 2, Format::B8G8R8A8, 64, 64),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_UNREF, &[1, 0])),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
}

#[test]
fn attach_and_detach_backing_validation() {
    let mut dev = gpu();
    let entry = |addr: u64, len: u32| {
        let mut v = addr.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v
    };
    let attach_raw = |dev: &mut GpuDevice, id: u32, n: u32, entries: &[u8]| {
        let mut req = cmd_req(cmd::RESOURCE_ATTACH_BACKING, &[id, n]);
        req.extend_from_slice(entries);
        status(dev, &req)
    };
    assert_eq!(
        attach_raw(&mut dev, 1, 1, &entry(0x2_0000, 64)),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        create(&mut dev, 1, Format::B8G8R8X8, 4, 4),
        cmd::RESP_OK_NODATA
    );
    // Outside guest memory (the mock memory is 0x1_0000..0x11_0000).
    assert_eq!(
        attach_raw(&mut dev, 1, 1, &entry(0x100_0000, 64)),
        cmd::RESP_ERR_UNSPEC
    );
    // Starts inside, ends outside.
    assert_eq!(
        attach_raw(&mut dev, 1, 1, &entry(0x10_fff0, 64)),
        cmd::RESP_ERR_UNSPEC
    );
    // Address overflow.
    assert_eq!(
        attach_raw(&mut dev, 1, 1, &entry(u64::MAX - 8, 64)),
        cmd::RESP_ERR_UNSPEC
    );
    assert_eq!(
        attach_raw(&mut dev, 1, 0, &[]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        attach_raw(&mut dev, 1, MAX_BACKING_ENTRIES + 1, &[]),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    // Announces two entries, carries one.
    assert_eq!(
        attach_raw(&mut dev, 1, 2, &entry(0x2_0000, 64)),
        cmd::RESP_ERR_UNSPEC
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_DETACH_BACKING, &[1, 0])),
        cmd::RESP_ERR_UNSPEC
    );
    // Two entries, the second in a separate descriptor as Linux sends it.
    let mut b = ChainBuilder::new();
    let a0 = b.scratch(32);
    let a1 = b.scratch(32);
    let mut entries = entry(a0, 32);
    entries.extend_from_slice(&entry(a1, 32));
    let (mem, chain) = b
        .readable(&cmd_req(cmd::RESOURCE_ATTACH_BACKING, &[1, 2]))
        .readable(&entries)
        .writable(24)
        .build();
    let out = dev.execute(&chain.unwrap(), &mem);
    assert_eq!(out, reply(&hdr(0), cmd::RESP_OK_NODATA));
    assert_eq!(
        attach_raw(&mut dev, 1, 1, &entry(0x2_0000, 64)),
        cmd::RESP_ERR_UNSPEC,
        "a second backing"
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_DETACH_BACKING, &[1, 0])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_DETACH_BACKING, &[9, 0])),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    // Without a backing no transfer.
    assert_eq!(
        transfer(&mut dev, 1, rect(0, 0, 4, 4), 0),
        cmd::RESP_ERR_UNSPEC
    );
}

#[test]
fn transfer_bounds_and_offsets() {
    let mut dev = gpu();
    drawn(&mut dev);
    assert_eq!(
        transfer(&mut dev, 2, rect(0, 0, 1, 1), 0),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        transfer(&mut dev, 1, rect(8, 0, 9, 8), 32),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        transfer(&mut dev, 1, rect(0, 7, 16, 2), 0),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        transfer(&mut dev, 1, rect(u32::MAX, 0, 2, 1), 0),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    // Source beyond the 512-byte backing.
    assert_eq!(
        transfer(&mut dev, 1, rect(0, 0, 16, 8), 4),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        transfer(&mut dev, 1, rect(0, 0, 1, 1), u64::MAX - 2),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    // Offset before the rectangle's own position (QEMU would accept it;
    // rutabaga cannot express it).
    assert_eq!(
        transfer(&mut dev, 1, rect(1, 1, 1, 1), 0),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    // Linux's offset for a sub-rectangle, and an empty rectangle.
    assert_eq!(
        transfer(&mut dev, 1, rect(2, 3, 4, 2), 3 * 64 + 8),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        transfer(&mut dev, 1, rect(0, 0, 0, 0), 0),
        cmd::RESP_OK_NODATA
    );
}

#[test]
fn set_scanout_then_flush_sends_only_the_damage() {
    let mut dev = displayed();
    let mem = drawn(&mut dev);
    // SET_SCANOUT sizes the output and sends no pixels: the flush that
    // follows does.
    let Outcome::Wait { batch, kind, .. } = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8)) else {
        panic!("set_scanout must go to the display");
    };
    assert_eq!(kind, WaitKind::NoData);
    assert_eq!(
        batch,
        vec![DisplayRequest::Scanout {
            scanout_id: 0,
            width: 16,
            height: 8
        }]
    );
    // The first flush after it sends the whole picture, whatever its
    // damage: the display shows nothing of this resource yet.
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(5, 2, 3, 2)) else {
        panic!("flush must go to the display");
    };
    assert_eq!(
        batch,
        vec![DisplayRequest::Update {
            scanout_id: 0,
            rect: rect(0, 0, 16, 8),
            pixels: expected_pixels(rect(0, 0, 16, 8)).into(),
        }]
    );
    // The guest draws a new pixel and flushes a 3x2 rectangle.
    drop(mem);
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(5, 2, 3, 2)) else {
        panic!("flush must go to the display");
    };
    assert_eq!(
        batch,
        vec![DisplayRequest::Update {
            scanout_id: 0,
            rect: rect(5, 2, 3, 2),
            pixels: expected_pixels(rect(5, 2, 3, 2)).into(),
        }]
    );
    // Same scanout again: no new SCANOUT (it would blank QEMU's surface),
    // no pixels, and later flushes still send only their damage.
    assert_eq!(
        set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8)),
        reply(&hdr(cmd::SET_SCANOUT), cmd::RESP_OK_NODATA)
    );
    assert_eq!(flushed(&mut dev, 1, rect(1, 1, 2, 2)), rect(1, 1, 2, 2));
}

/// Flushes `r` of resource `id` and returns the one UPDATE's rectangle.
fn flushed(dev: &mut GpuDevice, id: u32, r: Rect) -> Rect {
    match flush(dev, id, r) {
        Outcome::Wait { batch, .. } => match batch.as_slice() {
            [DisplayRequest::Update { rect, .. }] => *rect,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_page_flip_sends_the_new_picture_once() {
    let mut dev = displayed();
    drawn(&mut dev);
    assert_eq!(
        create(&mut dev, 2, Format::B8G8R8X8, 16, 8),
        cmd::RESP_OK_NODATA
    );
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    let _ = flush(&mut dev, 1, rect(0, 0, 16, 8));
    // Same size, other resource: nothing to tell the display yet.
    assert_eq!(
        set_scanout(&mut dev, 0, 2, rect(0, 0, 16, 8)),
        reply(&hdr(cmd::SET_SCANOUT), cmd::RESP_OK_NODATA)
    );
    // A partial flush of the new one still replaces the whole picture.
    assert_eq!(flushed(&mut dev, 2, rect(0, 0, 1, 1)), rect(0, 0, 16, 8));
}

#[test]
fn flushes_reuse_the_last_pixel_buffer() {
    let mut dev = displayed();
    drawn(&mut dev);
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    let pointer = |dev: &mut GpuDevice| {
        let Outcome::Wait { batch, .. } = flush(dev, 1, rect(0, 0, 16, 8)) else {
            panic!();
        };
        match &batch[..] {
            [DisplayRequest::Update { pixels, .. }] => pixels.as_ptr() as usize,
            other => panic!("{other:?}"),
        }
        // The batch, as the display thread would, lets go of it here.
    };
    let first = pointer(&mut dev);
    assert_eq!(pointer(&mut dev), first);
}

#[test]
fn transfer_then_flush_shows_new_pixels() {
    let mut dev = displayed();
    assert_eq!(
        create(&mut dev, 1, Format::R8G8B8A8, 4, 4),
        cmd::RESP_OK_NODATA
    );
    let (mem, addr) = attach(&mut dev, 1, 64);
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 4, 4));
    let _ = flush(&mut dev, 1, rect(0, 0, 4, 4));
    // Pixel (1, 2) becomes R 0x11, G 0x22, B 0x33, A 0x44.
    mem.write_slice(&[0x11, 0x22, 0x33, 0x44], GuestAddress(addr + 2 * 16 + 4))
        .unwrap();
    assert_eq!(
        transfer(&mut dev, 1, rect(1, 2, 1, 1), 2 * 16 + 4),
        cmd::RESP_OK_NODATA
    );
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(1, 2, 1, 1)) else {
        panic!();
    };
    assert_eq!(
        batch,
        vec![DisplayRequest::Update {
            scanout_id: 0,
            rect: rect(1, 2, 1, 1),
            pixels: vec![0x33, 0x22, 0x11, 0x44].into(),
        }]
    );
}

#[test]
fn scanout_of_a_sub_rectangle_translates_updates() {
    let mut dev = displayed();
    drawn(&mut dev);
    let _ = set_scanout(&mut dev, 1, 1, rect(8, 2, 8, 6));
    let _ = flush(&mut dev, 1, rect(0, 0, 16, 8));
    let Outcome::Wait { batch, .. } = flush(&mut dev, 1, rect(0, 0, 10, 4)) else {
        panic!();
    };
    // Only the overlap (8..10, 2..4), in scanout coordinates.
    assert_eq!(
        batch,
        vec![DisplayRequest::Update {
            scanout_id: 1,
            rect: rect(0, 0, 2, 2),
            pixels: expected_pixels(rect(8, 2, 2, 2)).into(),
        }]
    );
    // A flush outside what any scanout shows goes nowhere.
    assert_eq!(
        flush(&mut dev, 1, rect(0, 0, 4, 1)),
        reply(&hdr(cmd::RESOURCE_FLUSH), cmd::RESP_OK_NODATA)
    );
}

#[test]
fn set_scanout_and_flush_errors() {
    let mut dev = displayed();
    drawn(&mut dev);
    let code = |o: Outcome| match o {
        Outcome::Reply(b) => resp_type(&b),
        Outcome::Wait { .. } => 0,
    };
    assert_eq!(
        code(set_scanout(&mut dev, 16, 1, rect(0, 0, 16, 8))),
        cmd::RESP_ERR_INVALID_SCANOUT_ID
    );
    assert_eq!(
        code(set_scanout(&mut dev, 0, 7, rect(0, 0, 16, 8))),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        code(set_scanout(&mut dev, 0, 1, rect(1, 0, 16, 8))),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        code(set_scanout(&mut dev, 0, 1, rect(0, 0, 0, 8))),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    assert_eq!(
        code(flush(&mut dev, 7, rect(0, 0, 1, 1))),
        cmd::RESP_ERR_INVALID_RESOURCE_ID
    );
    assert_eq!(
        code(flush(&mut dev, 1, rect(0, 0, 17, 1))),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    // Without a frontend display the scanout ids are ours: one by default.
    let mut dev = gpu();
    drawn(&mut dev);
    assert_eq!(
        code(set_scanout(&mut dev, 1, 1, rect(0, 0, 16, 8))),
        cmd::RESP_ERR_INVALID_SCANOUT_ID
    );
    assert_eq!(
        code(set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8))),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        code(flush(&mut dev, 1, rect(0, 0, 16, 8))),
        cmd::RESP_OK_NODATA
    );
}

#[test]
fn disabling_and_unref_darken_the_scanout() {
    let mut dev = displayed();
    drawn(&mut dev);
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    let Outcome::Wait { batch, .. } = set_scanout(&mut dev, 0, 0, rect(0, 0, 0, 0)) else {
        panic!();
    };
    let off = DisplayRequest::Scanout {
        scanout_id: 0,
        width: 0,
        height: 0,
    };
    assert_eq!(batch, vec![off.clone()]);
    // Disabling an already dark scanout sends nothing.
    assert_eq!(
        set_scanout(&mut dev, 0, 0, rect(0, 0, 0, 0)),
        reply(&hdr(cmd::SET_SCANOUT), cmd::RESP_OK_NODATA)
    );
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    let Outcome::Wait { batch, .. } = exec(&mut dev, &cmd_req(cmd::RESOURCE_UNREF, &[1, 0])) else {
        panic!();
    };
    assert_eq!(batch, vec![off]);
}

#[test]
fn fences_are_echoed_after_the_work() {
    let mut dev = displayed();
    drawn(&mut dev);
    let fenced = CtrlHdr {
        type_: cmd::SET_SCANOUT,
        flags: FLAG_FENCE,
        fence_id: 42,
        ctx_id: 0,
        ring_idx: 0,
    };
    let req = request(&fenced, &[0, 0, 16, 8, 0, 1]);
    let Outcome::Wait { kind, hdr, .. } = exec(&mut dev, &req) else {
        panic!();
    };
    let resp = CtrlHdr::decode(&dev.finish(kind, &hdr, DisplayReply::Done)).unwrap();
    assert_eq!(resp.type_, cmd::RESP_OK_NODATA);
    assert_eq!(resp.flags & FLAG_FENCE, FLAG_FENCE);
    assert_eq!(resp.fence_id, 42);
    // A fenced command answered at once, and one that fails.
    let req = request(
        &CtrlHdr {
            type_: cmd::RESOURCE_CREATE_2D,
            ..fenced
        },
        &[5, 1, 8, 8],
    );
    let resp = CtrlHdr::decode(&run(&mut dev, &req, 24).unwrap()).unwrap();
    assert_eq!(
        (resp.type_, resp.fence_id, resp.flags),
        (cmd::RESP_OK_NODATA, 42, 1)
    );
    let resp = CtrlHdr::decode(&run(&mut dev, &req, 24).unwrap()).unwrap();
    assert_eq!(
        (resp.type_, resp.fence_id),
        (cmd::RESP_ERR_INVALID_RESOURCE_ID, 42)
    );
}

fn cursor_req(type_: u32, scanout: u32, x: u32, y: u32, id: u32) -> Vec<u8> {
    let v = cmd_req(type_, &[scanout, x, y, 0, id, 3, 4, 0]);
    assert_eq!(v.len(), UPDATE_CURSOR_SIZE);
    v
}

fn cursor(dev: &mut GpuDevice, req: &[u8]) -> Option<DisplayRequest> {
    // Cursor buffers have no writable part.
    let (mem, chain) = ChainBuilder::new().readable(req).build();
    dev.cursor(&chain.unwrap(), &mem)
}

#[test]
fn cursor_update_move_hide() {
    let mut dev = displayed();
    assert_eq!(
        create(&mut dev, 9, Format::B8G8R8A8, 64, 64),
        cmd::RESP_OK_NODATA
    );
    let (mem, addr) = attach(&mut dev, 9, 64 * 64 * 4);
    mem.write_slice(&[1, 2, 3, 4], GuestAddress(addr + 64 * 4 + 4))
        .unwrap();
    assert_eq!(
        transfer(&mut dev, 9, rect(0, 0, 64, 64), 0),
        cmd::RESP_OK_NODATA
    );
    let Some(DisplayRequest::CursorUpdate {
        scanout_id,
        x,
        y,
        hot_x,
        hot_y,
        image,
    }) = cursor(&mut dev, &cursor_req(cmd::UPDATE_CURSOR, 0, 10, 20, 9))
    else {
        panic!("no cursor update");
    };
    assert_eq!((scanout_id, x, y, hot_x, hot_y), (0, 10, 20, 3, 4));
    assert_eq!(&image[64 * 4 + 4..64 * 4 + 8], &[1, 2, 3, 4]);
    assert_eq!(&image[..4], &[0; 4]);
    assert_eq!(
        cursor(&mut dev, &cursor_req(cmd::MOVE_CURSOR, 0, 5, 6, 0)),
        Some(DisplayRequest::CursorMove {
            scanout_id: 0,
            x: 5,
            y: 6
        })
    );
    assert_eq!(
        cursor(&mut dev, &cursor_req(cmd::UPDATE_CURSOR, 0, 5, 6, 0)),
        Some(DisplayRequest::CursorHide { scanout_id: 0 })
    );
    // Unknown resource, bad scanout, unknown command, short request.
    assert_eq!(
        cursor(&mut dev, &cursor_req(cmd::UPDATE_CURSOR, 0, 0, 0, 77)),
        None
    );
    assert_eq!(
        cursor(&mut dev, &cursor_req(cmd::MOVE_CURSOR, 16, 0, 0, 0)),
        None
    );
    assert_eq!(
        cursor(&mut dev, &cursor_req(cmd::GET_DISPLAY_INFO, 0, 0, 0, 0)),
        None
    );
    assert_eq!(cursor(&mut dev, &cmd_req(cmd::MOVE_CURSOR, &[0, 1])), None);
}

#[test]
fn small_cursor_resource_is_padded() {
    let mut dev = displayed();
    assert_eq!(
        create(&mut dev, 9, Format::X8R8G8B8, 2, 2),
        cmd::RESP_OK_NODATA
    );
    let (mem, addr) = attach(&mut dev, 9, 16);
    mem.write_slice(&[0, 0x30, 0x20, 0x10], GuestAddress(addr + 12))
        .unwrap();
    assert_eq!(
        transfer(&mut dev, 9, rect(0, 0, 2, 2), 0),
        cmd::RESP_OK_NODATA
    );
    let Some(DisplayRequest::CursorUpdate { image, .. }) =
        cursor(&mut dev, &cursor_req(cmd::UPDATE_CURSOR, 0, 0, 0, 9))
    else {
        panic!();
    };
    // Pixel (1, 1) converted to B, G, R, opaque; beyond 2x2 transparent.
    assert_eq!(&image[256 + 4..256 + 8], &[0x10, 0x20, 0x30, 0xff]);
    assert_eq!(&image[8..12], &[0; 4]);
}

#[test]
fn unsupported_commands_get_errors() {
    let mut dev = gpu();
    for c in [
        cmd::RESOURCE_ASSIGN_UUID,
        cmd::RESOURCE_CREATE_BLOB,
        cmd::SET_SCANOUT_BLOB,
        cmd::CTX_CREATE,
        cmd::CTX_DESTROY,
        cmd::CTX_ATTACH_RESOURCE,
        cmd::CTX_DETACH_RESOURCE,
        cmd::RESOURCE_CREATE_3D,
        cmd::TRANSFER_TO_HOST_3D,
        cmd::TRANSFER_FROM_HOST_3D,
        cmd::SUBMIT_3D,
        cmd::RESOURCE_MAP_BLOB,
        cmd::RESOURCE_UNMAP_BLOB,
        cmd::UPDATE_CURSOR,
        cmd::MOVE_CURSOR,
        0,
        0xffff_ffff,
    ] {
        let out = run(&mut dev, &cmd_req(c, &[0; 24]), 64).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(resp_type(&out), cmd::RESP_ERR_UNSPEC, "command {c:#x}");
    }
    for c in [cmd::GET_CAPSET_INFO, cmd::GET_CAPSET] {
        assert_eq!(
            status(&mut dev, &cmd_req(c, &[0, 0])),
            cmd::RESP_ERR_INVALID_PARAMETER
        );
    }
}

#[test]
fn malformed_chains() {
    let mut dev = gpu();
    // Shorter than a header.
    let out = run(&mut dev, &[0; 10], 24).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_ERR_UNSPEC);
    // No room for the 408-byte display info: an error header instead.
    let out = run(&mut dev, &cmd_req(cmd::GET_DISPLAY_INFO, &[]), 100).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_ERR_UNSPEC);
    // No room at all.
    assert_eq!(
        run(&mut dev, &cmd_req(cmd::GET_DISPLAY_INFO, &[]), 8),
        Some(vec![])
    );
    // No writable descriptor.
    let (mem, chain) = ChainBuilder::new()
        .readable(&cmd_req(cmd::GET_DISPLAY_INFO, &[]))
        .build();
    assert_eq!(dev.run_one(chain.unwrap(), &mem), Some(0));
    // Only a writable descriptor.
    let (mem, chain) = ChainBuilder::new().writable(64).build();
    assert_eq!(dev.run_one(chain.unwrap(), &mem), Some(24));
    // A request split across descriptors byte by byte is still understood.
    let req = cmd_req(cmd::RESOURCE_CREATE_2D, &[3, 1, 8, 8]);
    let mut b = ChainBuilder::new();
    for byte in &req {
        b = b.readable(&[*byte]);
    }
    let (mem, chain) = b.writable(24).build();
    assert_eq!(
        dev.execute(&chain.unwrap(), &mem),
        reply(&hdr(0), cmd::RESP_OK_NODATA)
    );
    // A huge descriptor length is rejected by chain validation before us.
    let (_, chain) = ChainBuilder::new().raw(&[RawDesc {
        addr: 0x2_0000,
        len: u32::MAX,
        flags: 0,
        next: 0,
    }]);
    assert!(chain.is_err());
}

#[test]
fn reset_forgets_everything() {
    let mut dev = displayed();
    drawn(&mut dev);
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    dev.queue_stopped(CONTROL_QUEUE);
    assert_eq!(
        create(&mut dev, 1, Format::B8G8R8X8, 16, 8),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        flush(&mut dev, 1, rect(0, 0, 16, 8)),
        reply(&hdr(cmd::RESOURCE_FLUSH), cmd::RESP_OK_NODATA),
        "no scanout shows the new resource"
    );
    assert!(dev.state.replay_scanouts().is_empty());
}

#[test]
fn a_new_socket_replays_what_is_shown() {
    let mut dev = displayed();
    drawn(&mut dev);
    let _ = set_scanout(&mut dev, 0, 1, rect(0, 0, 16, 8));
    let replay = dev.state.replay_scanouts();
    assert_eq!(replay.len(), 2);
    assert_eq!(
        replay[0],
        DisplayRequest::Scanout {
            scanout_id: 0,
            width: 16,
            height: 8
        }
    );
}

mod hostile;

mod three_d;

#[test]
fn three_d_resources_are_charged_and_refunded() {
    let sim = crate::backend::sim::Sim3d::default();
    let mut dev = GpuDevice::new(
        GpuConfig {
            max_hostmem: 64 * 64 * 2 * 4 + resources::RESOURCE_OVERHEAD,
            ..Default::default()
        },
        Box::new(sim),
    );
    let create3d = cmd_req(
        cmd::RESOURCE_CREATE_3D,
        &[5, 3, 1, 2, 64, 64, 2, 1, 0, 0, 0, 0],
    );
    assert_eq!(status(&mut dev, &create3d), cmd::RESP_OK_NODATA);
    assert_eq!(
        create(&mut dev, 6, Format::B8G8R8X8, 1, 1),
        cmd::RESP_ERR_OUT_OF_MEMORY
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::RESOURCE_UNREF, &[5, 0])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(status(&mut dev, &create3d), cmd::RESP_OK_NODATA);
    // Format 3 is A8R8G8B8: showable. An unknown format is not.
    let odd = cmd_req(
        cmd::RESOURCE_CREATE_3D,
        &[7, 2, 200, 2, 16, 16, 1, 1, 0, 0, 0, 0],
    );
    let mut dev2 = GpuDevice::new(
        GpuConfig::default(),
        Box::new(crate::backend::sim::Sim3d::default()),
    );
    assert_eq!(status(&mut dev2, &odd), cmd::RESP_OK_NODATA);
    dev2.assume_frontend_display();
    assert_eq!(
        status(&mut dev2, &cmd_req(cmd::SET_SCANOUT, &[0, 0, 16, 16, 0, 7])),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
}

#[test]
fn cursor_requests_coalesce() {
    let mv = |s: u32, x: u32| DisplayRequest::CursorMove {
        scanout_id: s,
        x,
        y: 0,
    };
    let hide = |s: u32| DisplayRequest::CursorHide { scanout_id: s };
    let out = coalesce_cursor(vec![mv(0, 1), hide(0), mv(0, 2), mv(1, 9), mv(0, 3)]);
    assert_eq!(out, vec![hide(0), mv(1, 9), mv(0, 3)]);
    let out = coalesce_cursor(vec![mv(0, 1), mv(0, 2), hide(0)]);
    assert_eq!(out, vec![hide(0)]);
}

#[test]
fn cursor_batches_in_flight_are_bounded() {
    let mut dev = displayed();
    // No display thread: count what would be submitted by hand.
    dev.cursor_in_flight = MAX_CURSOR_IN_FLIGHT;
    dev.deferred_cursor
        .push(DisplayRequest::CursorHide { scanout_id: 0 });
    dev.submit_cursor();
    assert_eq!(
        dev.deferred_cursor.len(),
        1,
        "held back while QEMU is behind"
    );
    dev.cursor_in_flight = 0;
    dev.submit_cursor();
    assert!(dev.deferred_cursor.is_empty());
}
