// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Playback and capture: holding, pacing, completing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::device::io::SINK_RETRY;
use vhost_device_common::Region;
use vm_memory::GuestAddress;

// ----- playback pacing -----------------------------------------------------

#[test]
fn playback_is_held_until_start_then_paced_in_real_time() {
    let mut r = rig();
    r.play_setup(3840);
    let t0 = r.clock.now();
    // Pre-buffering: four periods before START, none completed.
    let periods: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; 3840]).collect();
    let chains: Vec<DescChain> = periods.iter().map(|p| r.tx(0, p)).collect();
    assert!(r.dev.take_completions().is_empty());
    assert_eq!(r.dev.held_io(0), 4);
    assert_eq!(r.timers.get(0), None);
    r.clock.advance(MS * 500);
    assert!(
        r.dev.take_completions().is_empty(),
        "nothing plays before START"
    );

    let t_start = r.clock.now();
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_START, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(completions.len(), 1, "only the START reply, no audio yet");
    assert!(r.host.0.lock().unwrap().played.is_empty());
    assert_eq!(r.timers.get(0), Some(t_start + MS * 20));

    for (i, chain) in chains.iter().enumerate() {
        // One tick early: nothing.
        r.clock
            .set(r.timers.get(0).unwrap() - Duration::from_micros(10));
        r.dev.handle_timer(0, r.mem.memory());
        assert!(r.dev.take_completions().is_empty());
        let done = r.fire(0);
        assert_eq!(done.len(), 1, "period {i}");
        assert_eq!(
            done[0],
            Completion {
                queue: TX_QUEUE,
                head: chain.head(),
                len: 8
            }
        );
        assert_eq!(r.clock.now(), t_start + MS * 20 * (i as u32 + 1));
        let status: virtio_snd_pcm_status = parse(&r.mem.written(chain)).unwrap();
        assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
        assert_eq!(status.latency_bytes.to_native(), 77);
    }
    assert_eq!(r.host.0.lock().unwrap().played, periods.concat());
    assert!(r.clock.now() - t0 >= MS * 580);
}

#[test]
fn stop_pauses_and_start_resumes_without_rushing() {
    let mut r = rig();
    r.play_setup(3840);
    let a = r.tx(0, &[1; 3840]);
    let b = r.tx(0, &[2; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.clock.advance(MS * 10);
    r.dev.handle_timer(0, r.mem.memory());
    assert!(r.dev.take_completions().is_empty());
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.timers.get(0), None, "a stopped stream has no timer");
    r.clock.advance(Duration::from_secs(5));
    r.dev.handle_timer(0, r.mem.memory());
    assert!(
        r.dev.take_completions().is_empty(),
        "nothing plays while stopped"
    );
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    let resumed = r.clock.now();
    // The first buffer had 10 ms left.
    let done = r.fire(0);
    assert_eq!(done[0].head, a.head());
    assert_eq!(r.clock.now(), resumed + MS * 10);
    let done = r.fire(0);
    assert_eq!(done[0].head, b.head());
    assert_eq!(r.clock.now(), resumed + MS * 30);
}

#[test]
fn release_completes_every_pending_buffer_before_answering() {
    let mut r = rig();
    r.play_setup(3840);
    let chains: Vec<DescChain> = (0..3).map(|_| r.tx(0, &[5; 3840])).collect();
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.fire(0);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_RELEASE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    // Two I/O completions, then the RELEASE reply last.
    let queues: Vec<usize> = completions.iter().map(|c| c.queue).collect();
    assert_eq!(queues, [TX_QUEUE, TX_QUEUE, CONTROL_QUEUE]);
    assert_eq!(completions[0].head, chains[1].head());
    assert_eq!(completions[1].head, chains[2].head());
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(
        r.host.0.lock().unwrap().played.len(),
        3840,
        "released audio is not played"
    );
}

#[test]
fn io_outside_prepared_states_or_for_the_wrong_direction_is_refused() {
    let mut r = rig();
    let early = r.tx(0, &[0; 64]);
    let c = r.dev.take_completions();
    assert_eq!(
        c,
        [Completion {
            queue: TX_QUEUE,
            head: early.head(),
            len: 8
        }]
    );
    let status: virtio_snd_pcm_status = parse(&r.mem.written(&early)).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_IO_ERR);
    r.play_setup(3840);
    // Stream 1 is an input: not on the tx queue.
    let wrong = r.tx(1, &[0; 64]);
    assert_eq!(r.dev.take_completions()[0].head, wrong.head());
    let unknown = r.tx(9, &[0; 64]);
    assert_eq!(r.dev.take_completions()[0].head, unknown.head());
    // An empty buffer is done at once.
    let empty = r.tx(0, &[]);
    let c = r.dev.take_completions();
    assert_eq!(c[0].head, empty.head());
    assert_eq!(
        parse::<virtio_snd_pcm_status>(&r.mem.written(&empty))
            .unwrap()
            .status
            .to_native(),
        VIRTIO_SND_S_OK
    );
}

#[test]
fn malformed_io_chains_are_dropped() {
    let mut r = rig();
    r.play_setup(3840);
    // No status descriptor.
    let chain = r.mem.request(&[&0u32.to_le_bytes(), &[0; 16]], &[]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), r.mem.memory());
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: TX_QUEUE,
            head: chain.head(),
            len: 0
        }]
    );
    // Status too short.
    let chain = r.mem.request(&[&0u32.to_le_bytes(), &[0; 16]], &[4]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // No stream id.
    let chain = r.mem.request(&[&[0; 2]], &[8]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Capture buffer with only readable parts.
    let chain = r.mem.request(&[&1u32.to_le_bytes(), &[0; 64]], &[]);
    r.dev.handle_io(RX_QUEUE, chain.clone(), r.mem.memory());
    assert_eq!(r.dev.take_completions()[0].len, 0);
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(r.dev.held_io(1), 0);
}

#[test]
fn a_full_sink_holds_buffers_back() {
    let mut r = rig();
    r.play_setup(3840);
    r.host.0.lock().unwrap().room = Some(1000);
    let a = r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert!(r.fire(0).is_empty(), "the sink took only 1000 bytes");
    let retry = r.timers.get(0).unwrap();
    assert!(retry <= r.clock.now() + SINK_RETRY);
    r.host.0.lock().unwrap().room = None;
    let done = r.fire(0);
    assert_eq!(done[0].head, a.head());
    assert_eq!(r.host.0.lock().unwrap().played, vec![1; 3840]);
}

#[test]
fn underrun_sends_an_xrun_event_and_does_not_rush_afterwards() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.play_setup(3840);
    r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.fire(0).len(), 1);
    // The driver sends nothing; a period later the device reports it.
    let done = r.fire(0);
    assert_eq!(
        done,
        [Completion {
            queue: EVENT_QUEUE,
            head: ev.head(),
            len: 8
        }]
    );
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_PCM_XRUN);
    assert_eq!(status_of(&written[4..]), 0);
    assert_eq!(
        r.timers.get(0),
        None,
        "reported once, then wait for the driver"
    );
    // Much later a buffer comes: it takes a whole period from now.
    r.clock.advance(Duration::from_secs(1));
    let b = r.tx(0, &[2; 3840]);
    assert!(r.dev.take_completions().is_empty());
    let now = r.clock.now();
    assert_eq!(r.timers.get(0), Some(now + MS * 20));
    assert_eq!(r.fire(0)[0].head, b.head());
}

#[test]
fn volume_and_mute_are_applied_to_played_samples() {
    let mut r = rig();
    r.play_setup(8);
    let ctl_write = |id: u32, value: u32| -> Vec<u8> {
        let mut v = [VIRTIO_SND_R_CTL_WRITE, id]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>();
        let mut val = vec![0u8; CTL_VALUE_SIZE];
        val[..4].copy_from_slice(&value.to_le_bytes());
        v.extend(val);
        v
    };
    let sample = |v: i16| -> Vec<u8> { [v, v].iter().flat_map(|s| s.to_le_bytes()).collect() };
    let mut frames = sample(1000);
    frames.extend(sample(-2000));
    for _ in 0..3 {
        r.tx(0, &frames);
    }
    assert_eq!(r.control(&ctl_write(0, 50)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.fire(0);
    let mut half = sample(500);
    half.extend(sample(-1000));
    assert_eq!(r.host.0.lock().unwrap().played, half, "volume 50");
    assert_eq!(r.control(&ctl_write(1, 0)), VIRTIO_SND_S_OK, "mute");
    r.fire(0);
    assert_eq!(&r.host.0.lock().unwrap().played[8..], &[0; 8], "muted");
    assert_eq!(r.control(&ctl_write(1, 1)), VIRTIO_SND_S_OK, "unmute");
    assert_eq!(r.control(&ctl_write(0, 100)), VIRTIO_SND_S_OK);
    r.fire(0);
    assert_eq!(
        &r.host.0.lock().unwrap().played[16..],
        &frames[..],
        "unity gain is bit-exact"
    );
}

// ----- capture -------------------------------------------------------------

#[test]
fn capture_buffers_complete_when_full_at_real_time_pace() {
    let mut r = rig();
    r.capture_setup(100);
    let a = r.rx(1, 100);
    let b = r.rx(1, 100);
    assert!(r.dev.take_completions().is_empty());
    let start = r.clock.now();
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 1)), VIRTIO_SND_S_OK);
    // 100 bytes at 192 kB/s = 520.833 µs.
    let done = r.fire(1);
    assert_eq!(
        done,
        [Completion {
            queue: RX_QUEUE,
            head: a.head(),
            len: 108
        }]
    );
    let elapsed = r.clock.now() - start;
    assert!(elapsed >= Duration::from_nanos(520_833) && elapsed < Duration::from_micros(530));
    let written = r.mem.written(&a);
    let expected: Vec<u8> = (0..100u8).collect();
    assert_eq!(&written[..100], &expected[..]);
    let status: virtio_snd_pcm_status = parse(&written[100..]).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
    let done = r.fire(1);
    assert_eq!(done[0].head, b.head());
    assert_eq!(r.mem.written(&b)[0], 100);
}

#[test]
fn release_returns_partial_capture() {
    let mut r = rig();
    r.capture_setup(100);
    let a = r.rx(1, 100);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 1)), VIRTIO_SND_S_OK);
    r.clock.advance(Duration::from_micros(200));
    r.dev.handle_timer(1, r.mem.memory());
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 1)), VIRTIO_SND_S_OK);
    let (_, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_RELEASE, 1), 4);
    let io = completions.iter().find(|c| c.queue == RX_QUEUE).unwrap();
    assert_eq!(io.head, a.head());
    // 200 µs at 192 kB/s: 38.4 bytes, so 9 whole frames.
    assert_eq!(io.len, 36 + 8);
    let written = r.mem.written(&a);
    let status: virtio_snd_pcm_status = parse(&written[100..]).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
}

#[test]
fn oversized_io_buffers_are_refused() {
    let mut r = rig();
    r.capture_setup(100);
    // Five 1 MiB regions (over the same guest memory) plus a status: more
    // than MAX_IO_BYTES of room to record into.
    let id = r.mem.request(&[&1u32.to_le_bytes()], &[]);
    let big = Region {
        addr: GuestAddress(vhost_device_common::mock::MEM_BASE),
        len: 1 << 20,
    };
    let status = r.mem.request(&[], &[8]);
    let mut writable = vec![big; 5];
    writable.push(*status.writable().get(0).unwrap());
    let chain = DescChain::from_regions(99, &[*id.readable().get(0).unwrap()], &writable);
    r.dev.handle_io(RX_QUEUE, chain, r.mem.memory());
    let c = r.dev.take_completions();
    assert_eq!(
        c,
        [Completion {
            queue: RX_QUEUE,
            head: 99,
            len: 8
        }]
    );
    assert_eq!(r.dev.held_io(1), 0);
    let written = r.mem.written(&status);
    assert_eq!(status_of(&written), VIRTIO_SND_S_IO_ERR);
}

#[test]
fn partial_frames_are_refused_not_retried_for_ever() {
    // Issue 17, item 5: a one-frame period and a buffer of a frame and a
    // half. Real sinks take whole frames only, so the half frame could
    // never be moved and the stream's timer re-armed every few µs.
    let mut r = rig();
    r.play_setup(4);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    let chain = r.tx(0, &[1; 6]);
    let c = r.dev.take_completions();
    assert_eq!(
        c,
        [Completion {
            queue: TX_QUEUE,
            head: chain.head(),
            len: 8
        }]
    );
    assert_eq!(status_of(&r.mem.written(&chain)), VIRTIO_SND_S_IO_ERR);
    assert_eq!(r.dev.held_io(0), 0);
    assert!(r.host.0.lock().unwrap().played.is_empty());
    // Capture room that is not whole frames is refused the same way.
    r.capture_setup(4);
    let chain = r.rx(1, 6);
    r.dev.take_completions();
    assert_eq!(r.dev.held_io(1), 0);
    assert_eq!(status_of(&r.mem.written(&chain)[6..]), VIRTIO_SND_S_IO_ERR);
}

#[test]
fn guest_errors_are_logged_rate_limited() {
    // Issue 17, item 7: a driver repeating a bad request gets its status
    // every time, but the host log only a burst of lines.
    let mut r = rig();
    let lines = super::warnings_during(|| {
        for _ in 0..50 {
            assert_eq!(r.control_with(&[], 4).0, VIRTIO_SND_S_BAD_MSG);
            let chain = r.mem.request(&[&7u32.to_le_bytes(), &[0; 4]], &[8]);
            r.dev.handle_io(TX_QUEUE, chain, r.mem.memory());
            let io = r.mem.request(&[], &[8]);
            r.dev.handle_io(TX_QUEUE, io, r.mem.memory());
        }
    });
    assert!(
        (1..=10).contains(&lines.len()),
        "{} warnings: {lines:#?}",
        lines.len()
    );
}
