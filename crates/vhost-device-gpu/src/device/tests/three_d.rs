// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The 3D command set against a simulated renderer.

use super::*;
use crate::backend::sim::{Call, Sim3d};
use crate::protocol::FLAG_INFO_RING_IDX;

fn dev3d() -> (GpuDevice, Sim3d) {
    let sim = Sim3d::default();
    (
        GpuDevice::new(GpuConfig::default(), Box::new(sim.clone())),
        sim,
    )
}

fn ctx_hdr(type_: u32, ctx_id: u32) -> CtrlHdr {
    CtrlHdr {
        type_,
        ctx_id,
        ..Default::default()
    }
}

fn create_ctx(dev: &mut GpuDevice, ctx: u32) -> u32 {
    let mut fields = vec![4, 2];
    let mut name = [0u8; 64];
    name[..4].copy_from_slice(b"test");
    fields.extend(
        name.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap())),
    );
    status(dev, &request(&ctx_hdr(cmd::CTX_CREATE, ctx), &fields))
}

#[test]
fn features_and_capsets() {
    let (mut dev, _) = dev3d();
    assert_eq!(dev.features(), F_EDID | F_VIRGL | F_CONTEXT_INIT);
    assert_eq!(
        u32::from_le_bytes(dev.config()[12..16].try_into().unwrap()),
        1
    );
    let out = run(&mut dev, &cmd_req(cmd::GET_CAPSET_INFO, &[0, 0]), 40).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_OK_CAPSET_INFO);
    assert_eq!(
        [u32_at(&out, 24), u32_at(&out, 28), u32_at(&out, 32)],
        [2, 1, 8]
    );
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::GET_CAPSET_INFO, &[1, 0])),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
    let out = run(&mut dev, &cmd_req(cmd::GET_CAPSET, &[2, 1]), 64).unwrap();
    assert_eq!(resp_type(&out), cmd::RESP_OK_CAPSET);
    assert_eq!(&out[24..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        status(&mut dev, &cmd_req(cmd::GET_CAPSET, &[9, 1])),
        cmd::RESP_ERR_INVALID_PARAMETER
    );
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn contexts_resources_transfers_submit() {
    let (mut dev, sim) = dev3d();
    assert_eq!(create_ctx(&mut dev, 1), cmd::RESP_OK_NODATA);
    assert_eq!(create_ctx(&mut dev, 1), cmd::RESP_ERR_INVALID_CONTEXT_ID);
    assert_eq!(create_ctx(&mut dev, 0), cmd::RESP_ERR_INVALID_CONTEXT_ID);
    let create = cmd_req(
        cmd::RESOURCE_CREATE_3D,
        &[5, 2, 1, 2, 64, 32, 1, 1, 0, 0, 0, 0],
    );
    assert_eq!(status(&mut dev, &create), cmd::RESP_OK_NODATA);
    assert_eq!(status(&mut dev, &create), cmd::RESP_ERR_INVALID_RESOURCE_ID);
    let huge = cmd_req(
        cmd::RESOURCE_CREATE_3D,
        &[6, 2, 1, 2, 64, 0, 1, 1, 0, 0, 0, 0],
    );
    assert_eq!(status(&mut dev, &huge), cmd::RESP_ERR_INVALID_PARAMETER);
    let attach = |dev: &mut GpuDevice, ctx: u32, res: u32| {
        status(
            dev,
            &request(&ctx_hdr(cmd::CTX_ATTACH_RESOURCE, ctx), &[res, 0]),
        )
    };
    assert_eq!(attach(&mut dev, 1, 5), cmd::RESP_OK_NODATA);
    assert_eq!(attach(&mut dev, 1, 7), cmd::RESP_ERR_INVALID_RESOURCE_ID);
    assert_eq!(attach(&mut dev, 3, 5), cmd::RESP_ERR_INVALID_CONTEXT_ID);
    let mut transfer = request(&ctx_hdr(cmd::TRANSFER_TO_HOST_3D, 1), &[1, 2, 0, 8, 4, 1]);
    transfer.extend_from_slice(&256u64.to_le_bytes());
    for v in [5u32, 0, 256, 0] {
        transfer.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(status(&mut dev, &transfer), cmd::RESP_OK_NODATA);
    let mut submit = request(&ctx_hdr(cmd::SUBMIT_3D, 1), &[8, 0]);
    submit.extend_from_slice(&[9; 8]);
    assert_eq!(status(&mut dev, &submit), cmd::RESP_OK_NODATA);
    // Announces more than it carries; unknown context.
    let short = request(&ctx_hdr(cmd::SUBMIT_3D, 1), &[64, 0]);
    assert_eq!(status(&mut dev, &short), cmd::RESP_ERR_INVALID_PARAMETER);
    let mut other = request(&ctx_hdr(cmd::SUBMIT_3D, 2), &[8, 0]);
    other.extend_from_slice(&[9; 8]);
    assert_eq!(status(&mut dev, &other), cmd::RESP_ERR_INVALID_CONTEXT_ID);
    assert_eq!(
        status(&mut dev, &request(&ctx_hdr(cmd::CTX_DESTROY, 1), &[])),
        cmd::RESP_OK_NODATA
    );
    assert_eq!(
        status(&mut dev, &request(&ctx_hdr(cmd::CTX_DESTROY, 1), &[])),
        cmd::RESP_ERR_INVALID_CONTEXT_ID
    );
    let calls = sim.state().calls.clone();
    assert_eq!(calls[0], Call::CreateContext(1, 2, "test".into()));
    assert!(matches!(calls[1], Call::Create(5, c) if c.width == 64 && c.height == 32));
    assert_eq!(calls[2], Call::Attach(1, 5));
    assert!(matches!(
        calls[3],
        Call::ToHost(1, 5, t) if t.bx == [1, 2, 0, 8, 4, 1] && t.offset == 256 && t.stride == 256
    ));
    assert_eq!(calls[4], Call::Submit(1, vec![9; 8]));
    assert_eq!(calls[5], Call::DestroyContext(1));
}

#[test]
fn fenced_responses_wait_for_their_fence_and_timeline() {
    let (mut dev, sim) = dev3d();
    assert_eq!(create_ctx(&mut dev, 1), cmd::RESP_OK_NODATA);
    let fenced = |id: u64, ring: Option<u8>| CtrlHdr {
        type_: cmd::SUBMIT_3D,
        flags: FLAG_FENCE | ring.map_or(0, |_| FLAG_INFO_RING_IDX),
        fence_id: id,
        ctx_id: 1,
        ring_idx: ring.unwrap_or(0),
    };
    let submit = |h: &CtrlHdr| {
        let mut v = request(h, &[4, 0]);
        v.extend_from_slice(&[1; 4]);
        v
    };
    // Fence 3 globally, fence 2 on ring 1: both held.
    assert_eq!(run(&mut dev, &submit(&fenced(3, None)), 24), None);
    assert_eq!(run(&mut dev, &submit(&fenced(2, Some(1))), 24), None);
    assert_eq!(sim.state().pending.len(), 2);
    // The renderer signals both (global 3, ring-1 2); the device
    // matches each to its own timeline and completes both.
    sim.state().signal_up_to(3);
    assert!(sim.state().pending.is_empty());
    let done = dev.take_signalled();
    assert_eq!(done.len(), 2);
    for (_, bytes) in &done {
        let h = CtrlHdr::decode(bytes).unwrap();
        assert_eq!(h.type_, cmd::RESP_OK_NODATA);
        assert_ne!(h.flags & FLAG_FENCE, 0);
    }
    // A ring fence does not complete a global one.
    assert_eq!(run(&mut dev, &submit(&fenced(10, None)), 24), None);
    let ring_fence = Fence {
        id: 50,
        flags: FLAG_FENCE | FLAG_INFO_RING_IDX,
        ctx_id: 1,
        ring_idx: 0,
    };
    assert!(!completes(&ring_fence, &dev.fenced[0].fence));
    let global = Fence {
        id: 9,
        flags: FLAG_FENCE,
        ..Default::default()
    };
    assert!(!completes(&global, &dev.fenced[0].fence), "older fence");
    // Unfenced commands are answered at once.
    let plain = submit(&ctx_hdr(cmd::SUBMIT_3D, 1));
    assert!(run(&mut dev, &plain, 24).is_some());
}

#[test]
fn reset_destroys_contexts_and_resources_on_the_next_command() {
    let (mut dev, sim) = dev3d();
    assert_eq!(create_ctx(&mut dev, 4), cmd::RESP_OK_NODATA);
    assert_eq!(
        create(&mut dev, 8, Format::B8G8R8X8, 4, 4),
        cmd::RESP_OK_NODATA
    );
    dev.queue_stopped(CONTROL_QUEUE);
    let before = sim.state().calls.len();
    assert_eq!(create_ctx(&mut dev, 4), cmd::RESP_OK_NODATA);
    let calls = sim.state().calls[before..].to_vec();
    assert_eq!(
        calls,
        vec![
            Call::Unref(8),
            Call::DestroyContext(4),
            Call::CreateContext(4, 2, "test".into())
        ]
    );
}
