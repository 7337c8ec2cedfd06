// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Decoding, info queries and malformed control chains.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

// ----- configuration and info requests --------------------------------

#[test]
fn config_space_counts_items() {
    let r = rig_with(SoundConfig::new(
        vec![default_chmap(2), default_chmap(6)],
        vec![default_chmap(1)],
        true,
    ));
    let c = r.dev.config();
    let words: Vec<u32> = c
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words, [3, 3, 3, 6]);
    assert_eq!(r.dev.features(), VIRTIO_SND_F_CTLS);
    assert_eq!(r.dev.num_queues(), 4);
}

#[test]
fn pcm_info_describes_every_stream() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 4 + 64);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let out: virtio_snd_pcm_info = parse(&body[..32]).unwrap();
    let inp: virtio_snd_pcm_info = parse(&body[32..]).unwrap();
    assert_eq!(out.direction, VIRTIO_SND_D_OUTPUT);
    assert_eq!(inp.direction, VIRTIO_SND_D_INPUT);
    assert_eq!((out.channels_min, out.channels_max), (1, 2));
    let formats = out.formats.to_native();
    for f in [
        VIRTIO_SND_PCM_FMT_U8,
        VIRTIO_SND_PCM_FMT_S16,
        VIRTIO_SND_PCM_FMT_S24,
        VIRTIO_SND_PCM_FMT_S32,
        VIRTIO_SND_PCM_FMT_FLOAT,
    ] {
        assert_ne!(formats & 1 << f, 0);
    }
    let rates = out.rates.to_native();
    assert_ne!(rates & 1 << 1, 0, "8 kHz");
    assert_ne!(rates & 1 << 12, 0, "192 kHz");
    assert_ne!(
        out.features.to_native() & 1 << VIRTIO_SND_PCM_F_EVT_XRUNS,
        0
    );
    assert_eq!(out.padding, [0; 5]);
    assert_eq!(out.hda_fn_nid.to_native(), inp.hda_fn_nid.to_native());
}

#[test]
fn info_queries_check_range_room_and_size() {
    let mut r = rig();
    // Past the end.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 2, 32), 68)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, u32::MAX, 2, 32), 68)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
    // Response too small for count * size.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 40)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
    // Zero or absurd item size.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 0), 36).0,
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 1 << 20), 36)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
    // An older, shorter structure is truncated; a newer, longer one padded.
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 8), 12);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(body.len(), 8);
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 40), 44);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(body[24], VIRTIO_SND_D_INPUT);
    assert_eq!(&body[32..], &[0; 8]);
    // Zero items is a valid, empty answer.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 2, 0, 32), 4).0,
        VIRTIO_SND_S_OK
    );
}

#[test]
fn chmap_info_reports_each_streams_positions() {
    let mut r = rig_with(SoundConfig::new(
        vec![default_chmap(6)],
        vec![crate::config::parse_chmap("FC").unwrap()],
        false,
    ));
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_CHMAP_INFO, 0, 2, 24), 52);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let a: virtio_snd_chmap_info = parse(&body[..24]).unwrap();
    let b: virtio_snd_chmap_info = parse(&body[24..]).unwrap();
    assert_eq!((a.direction, a.channels), (VIRTIO_SND_D_OUTPUT, 6));
    assert_eq!(
        &a.positions[..6],
        &[
            VIRTIO_SND_CHMAP_FL,
            VIRTIO_SND_CHMAP_FR,
            VIRTIO_SND_CHMAP_RL,
            VIRTIO_SND_CHMAP_RR,
            VIRTIO_SND_CHMAP_FC,
            VIRTIO_SND_CHMAP_LFE
        ]
    );
    assert_eq!(&a.positions[6..], &[0; 12]);
    assert_eq!(
        (b.direction, b.channels, b.positions[0]),
        (VIRTIO_SND_D_INPUT, 1, VIRTIO_SND_CHMAP_FC)
    );
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CHMAP_INFO, 2, 1, 24), 28)
            .0,
        VIRTIO_SND_S_BAD_MSG
    );
}

#[test]
fn jack_info_and_remap() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 2, 24), 52);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let out: virtio_snd_jack_info = parse(&body[..24]).unwrap();
    let inp: virtio_snd_jack_info = parse(&body[24..]).unwrap();
    assert_eq!(out.connected, 1);
    assert_eq!(out.features.to_native(), 1 << VIRTIO_SND_JACK_F_REMAP);
    assert_eq!(out.hda_reg_defconf.to_native() >> 20 & 0xf, 0x0, "line out");
    assert_eq!(inp.hda_reg_defconf.to_native() >> 20 & 0xf, 0xa, "mic");
    assert_eq!(out.padding, [0; 7]);

    let remap = |jack: u32, association: u32, sequence: u32| -> Vec<u8> {
        [VIRTIO_SND_R_JACK_REMAP, jack, association, sequence]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    };
    assert_eq!(r.control(&remap(0, 3, 2)), VIRTIO_SND_S_OK);
    let (_, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 1, 24), 28);
    let out: virtio_snd_jack_info = parse(&body).unwrap();
    assert_eq!(out.hda_reg_defconf.to_native() & 0xff, 0x32);
    assert_eq!(
        r.control(&remap(2, 1, 1)),
        VIRTIO_SND_S_BAD_MSG,
        "no such jack"
    );
    assert_eq!(
        r.control(&remap(0, 16, 1)),
        VIRTIO_SND_S_BAD_MSG,
        "4-bit association"
    );
    assert_eq!(
        r.control(&remap(0, 1, 1)[..12]),
        VIRTIO_SND_S_BAD_MSG,
        "short request"
    );
}

// ----- malformed control chains ---------------------------------------------

#[test]
fn malformed_control_chains() {
    let mut r = rig();
    // No response descriptor at all: nothing can be written.
    let chain = r
        .mem
        .request(&[&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32)], &[]);
    r.dev.handle_control(&chain, r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Response shorter than a status.
    let chain = r
        .mem
        .request(&[&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32)], &[3]);
    r.dev.handle_control(&chain, r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Empty request.
    assert_eq!(r.control_with(&[], 4).0, VIRTIO_SND_S_BAD_MSG);
    // A huge request is refused without reading it all.
    assert_eq!(r.control_with(&vec![0; 70_000], 4).0, VIRTIO_SND_S_BAD_MSG);
    // Request split over many descriptors still parses.
    let q = query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32);
    let parts: Vec<&[u8]> = q.chunks(3).collect();
    let chain = r.mem.request(&parts, &[2, 34]);
    r.dev.handle_control(&chain, r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 36);
    assert_eq!(status_of(&r.mem.written(&chain)), VIRTIO_SND_S_OK);
}

#[test]
fn chains_from_the_mock_builder_validate_as_the_daemon_does() {
    // Readable where writable is needed, and a length beyond memory, are
    // refused by chain validation before the device sees them; what gets
    // through with only readable parts is answered without a status.
    let (mem, chain) = ChainBuilder::new()
        .readable(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32))
        .readable(&[0; 36])
        .build();
    let chain = chain.unwrap();
    let mut r = rig();
    r.dev.handle_control(&chain, &mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    let (_, bad) = ChainBuilder::new().raw(&[vhost_device_common::mock::RawDesc {
        addr: vhost_device_common::mock::MEM_BASE,
        len: u32::MAX,
        flags: 2,
        next: 0,
    }]);
    bad.unwrap_err();
    // An indirect chain works like a direct one.
    let (mem, chain) = ChainBuilder::new()
        .readable(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 32))
        .writable(36)
        .build_indirect();
    let chain = chain.unwrap();
    r.dev.handle_control(&chain, &mem);
    assert_eq!(r.dev.take_completions()[0].len, 36);
}
