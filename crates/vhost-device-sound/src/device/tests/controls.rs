// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Volume and mute control elements.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

// ----- controls ------------------------------------------------------------

#[test]
fn control_elements_describe_read_and_write() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 0, 4, 96), 4 + 4 * 96);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let infos: Vec<virtio_snd_ctl_info> = body.chunks(96).map(|c| parse(c).unwrap()).collect();
    let name = |i: &virtio_snd_ctl_info| {
        String::from_utf8(i.name.iter().copied().take_while(|&b| b != 0).collect()).unwrap()
    };
    assert_eq!(name(&infos[0]), "PCM Playback Volume");
    assert_eq!(name(&infos[1]), "PCM Playback Switch");
    assert_eq!(name(&infos[2]), "Capture Volume");
    assert_eq!(name(&infos[3]), "Capture Switch");
    assert_eq!(infos[0].type_.to_native(), VIRTIO_SND_CTL_TYPE_INTEGER);
    assert_eq!(infos[0].role.to_native(), VIRTIO_SND_CTL_ROLE_VOLUME << 1);
    assert_eq!(infos[3].role.to_native(), VIRTIO_SND_CTL_ROLE_MUTE << 1 | 1);
    assert_eq!(infos[1].type_.to_native(), VIRTIO_SND_CTL_TYPE_BOOLEAN);
    assert_eq!(infos[0].count.to_native(), 1);
    assert_eq!(
        [
            infos[0].value[0].to_native(),
            infos[0].value[1].to_native(),
            infos[0].value[2].to_native()
        ],
        [0, VOLUME_MAX, 1]
    );
    assert_eq!(infos[0].access.to_native(), 0b11);

    let read = |r: &mut Rig, id: u32| -> (u32, u32) {
        let req: Vec<u8> = [VIRTIO_SND_R_CTL_READ, id]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (status, body, _) = r.control_with(&req, 4 + CTL_VALUE_SIZE as u32);
        (
            status,
            if status == VIRTIO_SND_S_OK {
                status_of(&body)
            } else {
                0
            },
        )
    };
    let write = |r: &mut Rig, id: u32, value: u32| -> (u32, Vec<Completion>) {
        let mut req: Vec<u8> = [VIRTIO_SND_R_CTL_WRITE, id]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut val = vec![0u8; CTL_VALUE_SIZE];
        val[..4].copy_from_slice(&value.to_le_bytes());
        req.extend(val);
        let (status, _, completions) = r.control_with(&req, 4);
        (status, completions)
    };
    assert_eq!(read(&mut r, 0), (VIRTIO_SND_S_OK, VOLUME_MAX));
    assert_eq!(
        read(&mut r, 1),
        (VIRTIO_SND_S_OK, 1),
        "switch on: not muted"
    );
    let ev = r.event_buffer();
    let (status, completions) = write(&mut r, 2, 40);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert!(completions.iter().any(|c| c.queue == EVENT_QUEUE));
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_CTL_NOTIFY);
    assert_eq!(
        u16::from_le_bytes([written[4], written[5]]),
        2,
        "control id"
    );
    assert_eq!(
        u16::from_le_bytes([written[6], written[7]]),
        1 << VIRTIO_SND_CTL_EVT_MASK_VALUE
    );
    assert_eq!(read(&mut r, 2), (VIRTIO_SND_S_OK, 40));
    // Writing the same value again notifies nothing.
    let ev2 = r.event_buffer();
    let (status, completions) = write(&mut r, 2, 40);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert!(!completions.iter().any(|c| c.queue == EVENT_QUEUE));
    assert_eq!(r.dev.held_event_buffers(), 1);
    drop(ev2);
    assert_eq!(write(&mut r, 0, VOLUME_MAX + 1).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(write(&mut r, 1, 2).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(
        write(&mut r, 4, 1).0,
        VIRTIO_SND_S_BAD_MSG,
        "no such control"
    );
    assert_eq!(read(&mut r, 4).0, VIRTIO_SND_S_BAD_MSG);
    // A write without its value.
    let short: Vec<u8> = [VIRTIO_SND_R_CTL_WRITE, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(r.control(&short), VIRTIO_SND_S_BAD_MSG);
    // No enumerated controls, no TLV.
    let req: Vec<u8> = [VIRTIO_SND_R_CTL_ENUM_ITEMS, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(r.control(&req), VIRTIO_SND_S_BAD_MSG);
    for code in [
        VIRTIO_SND_R_CTL_TLV_READ,
        VIRTIO_SND_R_CTL_TLV_WRITE,
        VIRTIO_SND_R_CTL_TLV_COMMAND,
    ] {
        let req: Vec<u8> = [code, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(r.control(&req), VIRTIO_SND_S_NOT_SUPP);
    }
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 3, 2, 96), 4 + 192)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
}

#[test]
fn controls_need_the_feature() {
    let mut r = rig();
    r.dev.set_acked_features(1 << 32);
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 0, 1, 96), 100)
            .0,
        VIRTIO_SND_S_NOT_SUPP
    );
    let r = rig_with(SoundConfig::new(vec![default_chmap(2)], vec![], false));
    assert_eq!(r.dev.features(), 0);
    assert_eq!(status_of(&r.dev.config()[12..]), 0);
}
