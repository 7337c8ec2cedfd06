// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The PCM lifecycle and SET_PARAMS validation.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

// ----- the PCM state machine ----------------------------------------------

#[test]
fn every_transition_follows_the_spec() {
    use PcmState::*;
    let all = [
        VIRTIO_SND_R_PCM_SET_PARAMS,
        VIRTIO_SND_R_PCM_PREPARE,
        VIRTIO_SND_R_PCM_START,
        VIRTIO_SND_R_PCM_STOP,
        VIRTIO_SND_R_PCM_RELEASE,
    ];
    // From each state, the requests the spec allows and where they lead.
    let table: [(PcmState, &[(u32, PcmState)]); 6] = [
        (Idle, &[(VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet)]),
        (
            ParamsSet,
            &[
                (VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet),
                (VIRTIO_SND_R_PCM_PREPARE, Prepared),
            ],
        ),
        (
            Prepared,
            &[
                (VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet),
                (VIRTIO_SND_R_PCM_PREPARE, Prepared),
                (VIRTIO_SND_R_PCM_START, Running),
                (VIRTIO_SND_R_PCM_RELEASE, Released),
            ],
        ),
        (Running, &[(VIRTIO_SND_R_PCM_STOP, Stopped)]),
        (
            Stopped,
            &[
                (VIRTIO_SND_R_PCM_START, Running),
                (VIRTIO_SND_R_PCM_RELEASE, Released),
            ],
        ),
        (
            Released,
            &[
                (VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet),
                (VIRTIO_SND_R_PCM_PREPARE, Prepared),
            ],
        ),
    ];
    let path_to = |state: PcmState| -> Vec<u32> {
        match state {
            Idle => vec![],
            ParamsSet => vec![VIRTIO_SND_R_PCM_SET_PARAMS],
            Prepared => vec![VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_PREPARE],
            Running => vec![
                VIRTIO_SND_R_PCM_SET_PARAMS,
                VIRTIO_SND_R_PCM_PREPARE,
                VIRTIO_SND_R_PCM_START,
            ],
            Stopped => vec![
                VIRTIO_SND_R_PCM_SET_PARAMS,
                VIRTIO_SND_R_PCM_PREPARE,
                VIRTIO_SND_R_PCM_START,
                VIRTIO_SND_R_PCM_STOP,
            ],
            Released => vec![
                VIRTIO_SND_R_PCM_SET_PARAMS,
                VIRTIO_SND_R_PCM_PREPARE,
                VIRTIO_SND_R_PCM_RELEASE,
            ],
        }
    };
    let send = |r: &mut Rig, code: u32| -> u32 {
        if code == VIRTIO_SND_R_PCM_SET_PARAMS {
            r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7))
        } else {
            r.control(&pcm(code, 0))
        }
    };
    for (from, allowed) in table {
        for code in all {
            let mut r = rig();
            for step in path_to(from) {
                assert_eq!(send(&mut r, step), VIRTIO_SND_S_OK);
            }
            assert_eq!(r.dev.stream_state(0), Some(from));
            let status = send(&mut r, code);
            match allowed.iter().find(|(c, _)| *c == code) {
                Some((_, to)) => {
                    assert_eq!(status, VIRTIO_SND_S_OK, "{from:?} + {code:#x}");
                    assert_eq!(r.dev.stream_state(0), Some(*to), "{from:?} + {code:#x}");
                }
                None => {
                    assert_eq!(
                        status, VIRTIO_SND_S_BAD_MSG,
                        "{from:?} + {code:#x} must be refused"
                    );
                    assert_eq!(r.dev.stream_state(0), Some(from), "state must not change");
                }
            }
        }
    }
}

#[test]
fn pcm_requests_for_unknown_streams_or_short_bodies_are_bad() {
    let mut r = rig();
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 2)),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control(&set_params(7, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)[..6]),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)[..20]),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control(&VIRTIO_SND_R_PCM_PREPARE.to_le_bytes()[..2]),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(r.control(&0x9999u32.to_le_bytes()), VIRTIO_SND_S_NOT_SUPP);
}

#[test]
fn set_params_validates_every_field() {
    let mut r = rig();
    let ok = |r: &mut Rig, req: Vec<u8>| r.control(&req);
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 3840, 3, VIRTIO_SND_PCM_FMT_S16, 7)
        ),
        VIRTIO_SND_S_BAD_MSG,
        "3 ch"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 3840, 0, VIRTIO_SND_PCM_FMT_S16, 7)
        ),
        VIRTIO_SND_S_BAD_MSG,
        "0 ch"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 0, 2, VIRTIO_SND_PCM_FMT_S16, 7)
        ),
        VIRTIO_SND_S_BAD_MSG,
        "period 0"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19201, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)
        ),
        VIRTIO_SND_S_BAD_MSG,
        "divisor"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 18, 6, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "partial frame"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, 3, 7)),
        VIRTIO_SND_S_NOT_SUPP,
        "S8"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, 99, 7)),
        VIRTIO_SND_S_NOT_SUPP,
        "unknown format"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 0)
        ),
        VIRTIO_SND_S_NOT_SUPP,
        "5512"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 13)
        ),
        VIRTIO_SND_S_NOT_SUPP,
        "384k"
    );
    assert_eq!(
        ok(
            &mut r,
            set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 40)
        ),
        VIRTIO_SND_S_NOT_SUPP,
        "rate"
    );
    let mut shmem = set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7);
    shmem[16] = 1 << VIRTIO_SND_PCM_F_SHMEM_HOST;
    assert_eq!(r.control(&shmem), VIRTIO_SND_S_NOT_SUPP);
    for (format, bytes) in [
        (VIRTIO_SND_PCM_FMT_U8, 1),
        (VIRTIO_SND_PCM_FMT_S16, 2),
        (VIRTIO_SND_PCM_FMT_S24, 4),
        (VIRTIO_SND_PCM_FMT_S32, 4),
        (VIRTIO_SND_PCM_FMT_FLOAT, 4),
    ] {
        for rate in [1u8, 7, 12, 14] {
            let period = 2 * bytes * 100;
            assert_eq!(
                ok(&mut r, set_params(0, period * 4, period, 2, format, rate)),
                VIRTIO_SND_S_OK
            );
        }
    }
    assert_eq!(r.dev.stream_state(0), Some(PcmState::ParamsSet));
}

#[test]
fn backend_failure_at_prepare_is_an_io_error_and_unplugs_the_jack() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.host.0.lock().unwrap().fail = true;
    assert_eq!(
        r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_OK
    );
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_IO_ERR);
    assert_eq!(r.dev.stream_state(0), Some(PcmState::ParamsSet));
    assert!(completions
        .iter()
        .any(|c| c.queue == EVENT_QUEUE && c.head == ev.head()));
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_JACK_DISCONNECTED);
    assert_eq!(status_of(&written[4..]), 0, "jack 0");
    // The host comes back: the next PREPARE works and plugs the jack in.
    r.host.0.lock().unwrap().fail = false;
    let ev = r.event_buffer();
    let (status, _, _) = r.control_with(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(
        status_of(&r.mem.written(&ev)),
        VIRTIO_SND_EVT_JACK_CONNECTED
    );
}

#[test]
fn prepare_opens_again_an_endpoint_that_lost_its_device_and_only_that() {
    let mut r = rig();
    r.play_setup(3840);
    assert_eq!(r.host.0.lock().unwrap().opens, 1);
    // Same parameters, device still there: the endpoint is kept.
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)),
        VIRTIO_SND_S_OK
    );
    assert_eq!(r.host.0.lock().unwrap().opens, 1);
    // Its card went away and came back: a new one.
    r.host.0.lock().unwrap().gone = true;
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)),
        VIRTIO_SND_S_OK
    );
    let host = r.host.0.lock().unwrap();
    assert_eq!((host.opens, host.live), (2, 1));
}

#[test]
fn a_released_stream_lets_go_of_an_exclusive_device_once_played() {
    let mut r = rig();
    r.host.0.lock().unwrap().exclusive = true;
    r.play_setup(3840);
    r.capture_setup(3840);
    assert_eq!(r.host.0.lock().unwrap().live, 2);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    // Capture holds nothing to play: closed at once.
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_RELEASE, 1)),
        VIRTIO_SND_S_OK
    );
    assert_eq!(r.host.0.lock().unwrap().live, 1);
    // The sink still holds 77 bytes: closed when they have played.
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_RELEASE, 0)),
        VIRTIO_SND_S_OK
    );
    assert_eq!(r.host.0.lock().unwrap().live, 1);
    let at = r.timers.get(0).expect("a timer to close the sink");
    assert!(at > r.clock.now());
    // A wake-up before the deadline leaves it open.
    r.dev.handle_timer(0, r.mem.memory());
    assert_eq!(r.host.0.lock().unwrap().live, 1);
    r.fire(0);
    assert_eq!(r.host.0.lock().unwrap().live, 0);
    // The next PREPARE opens it again.
    r.play_setup(3840);
    let host = r.host.0.lock().unwrap();
    assert_eq!((host.opens, host.live), (3, 1));
}

#[test]
fn an_idle_stream_notices_its_exclusive_device_going_away() {
    let mut r = rig();
    r.host.0.lock().unwrap().exclusive = true;
    r.play_setup(3840);
    // Prepared: checked once a second.
    let at = r.timers.get(0).expect("a probe timer");
    assert_eq!(at, r.clock.now() + Duration::from_secs(1));
    // An early wake-up checks too, harmlessly.
    r.fire(0);
    assert_eq!(r.host.0.lock().unwrap().probes, 1);
    assert!(r.timers.get(0).is_some_and(|next| next > at));
    // Stopped after playing: checked as well.
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    r.fire(0);
    assert_eq!(r.host.0.lock().unwrap().probes, 2);
    // The card goes away: the driver is told, the checks stop, and the
    // next PREPARE opens the device again.
    r.host.0.lock().unwrap().gone = true;
    let ev = r.event_buffer();
    r.fire(0);
    assert_eq!(
        status_of(&r.mem.written(&ev)),
        VIRTIO_SND_EVT_JACK_DISCONNECTED
    );
    assert_eq!(r.timers.get(0), None);
    // The driver releases and prepares the stream again (the card is back).
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_RELEASE, 0)),
        VIRTIO_SND_S_OK
    );
    let ev = r.event_buffer();
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)),
        VIRTIO_SND_S_OK
    );
    assert_eq!(
        status_of(&r.mem.written(&ev)),
        VIRTIO_SND_EVT_JACK_CONNECTED
    );
    assert_eq!(r.host.0.lock().unwrap().opens, 2);
}

#[test]
fn a_shared_device_is_not_probed() {
    let mut r = rig();
    r.play_setup(3840);
    assert_eq!(r.timers.get(0), None);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.timers.get(0), None);
    assert_eq!(r.host.0.lock().unwrap().probes, 0);
}

#[test]
fn a_released_stream_keeps_a_shared_device_for_the_next_prepare() {
    let mut r = rig();
    r.play_setup(3840);
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_RELEASE, 0)),
        VIRTIO_SND_S_OK
    );
    assert_eq!(r.timers.get(0), None);
    r.play_setup(3840);
    let host = r.host.0.lock().unwrap();
    assert_eq!((host.opens, host.live), (1, 1));
}

#[test]
fn set_params_bounds_period_and_buffer_bytes() {
    // Issue 17, item 6: the host backends size their buffers from these;
    // a 2 GiB period made the PipeWire backend abort on allocation.
    let mut r = rig();
    let max_period = MAX_IO_BYTES as u32;
    let cases = [
        (0x8000_0000, 0x8000_0000, VIRTIO_SND_S_BAD_MSG),
        (2 * (max_period + 4), max_period + 4, VIRTIO_SND_S_BAD_MSG),
        (MAX_BUFFER_BYTES as u32 + 4096, 4096, VIRTIO_SND_S_BAD_MSG),
        (MAX_BUFFER_BYTES as u32, max_period, VIRTIO_SND_S_OK),
        (19200, 3840, VIRTIO_SND_S_OK),
    ];
    for (buffer, period, want) in cases {
        assert_eq!(
            r.control(&set_params(0, buffer, period, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
            want,
            "buffer {buffer} period {period}"
        );
    }
}
