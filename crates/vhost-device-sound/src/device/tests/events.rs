// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The event queue: held buffers, pending events, xrun, jack and period
//! events.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::device::events::{event, MAX_PENDING_EVENTS};

// ----- event queue -----------------------------------------------------------

#[test]
fn event_buffers_are_held_not_spun_on() {
    let mut r = rig();
    let bufs: Vec<DescChain> = (0..16).map(|_| r.event_buffer()).collect();
    assert!(
        r.dev.take_completions().is_empty(),
        "no event, no completion"
    );
    assert_eq!(r.dev.held_event_buffers(), 16);
    // Control and PCM traffic does not consume them either.
    r.play_setup(3840);
    assert_eq!(r.dev.held_event_buffers(), 16);
    // A short event buffer is returned empty and the event goes to the next.
    r.dev.queue_stopped(EVENT_QUEUE);
    assert_eq!(r.dev.held_event_buffers(), 0);
    let short = r.mem.request(&[], &[4]);
    r.dev.add_event_buffer(short.clone(), r.mem.memory());
    r.dev.queue_event(event(VIRTIO_SND_EVT_PCM_XRUN, 0));
    r.dev.deliver_events(r.mem.memory());
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: EVENT_QUEUE,
            head: short.head(),
            len: 0
        }]
    );
    let ok = r.event_buffer();
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: EVENT_QUEUE,
            head: ok.head(),
            len: 8
        }]
    );
    drop(bufs);
}

#[test]
fn events_wait_for_a_buffer() {
    let mut r = rig();
    r.dev
        .queue_event(event(VIRTIO_SND_EVT_JACK_DISCONNECTED, 1));
    r.dev.deliver_events(r.mem.memory());
    assert!(r.dev.take_completions().is_empty());
    let ev = r.event_buffer();
    assert_eq!(r.dev.take_completions().len(), 1);
    assert_eq!(
        status_of(&r.mem.written(&ev)),
        VIRTIO_SND_EVT_JACK_DISCONNECTED
    );
    // A flood without buffers is bounded.
    for _ in 0..1000 {
        r.dev.queue_event(event(VIRTIO_SND_EVT_PCM_XRUN, 0));
    }
    assert_eq!(r.dev.pending_events.len(), MAX_PENDING_EVENTS);
}

#[test]
fn host_write_errors_fail_the_buffer_and_unplug_the_jack() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.play_setup(3840);
    let a = r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.host.0.lock().unwrap().fail = true;
    let done = r.fire(0);
    let io = done.iter().find(|c| c.queue == TX_QUEUE).unwrap();
    assert_eq!(io.head, a.head());
    assert_eq!(
        parse::<virtio_snd_pcm_status>(&r.mem.written(&a))
            .unwrap()
            .status
            .to_native(),
        VIRTIO_SND_S_IO_ERR
    );
    assert_eq!(
        status_of(&r.mem.written(&ev)),
        VIRTIO_SND_EVT_JACK_DISCONNECTED
    );
    let (_, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 1, 24), 28);
    assert_eq!(parse::<virtio_snd_jack_info>(&body).unwrap().connected, 0);
}

#[test]
fn period_events_when_the_driver_asks_for_them() {
    let mut r = rig();
    let evs: Vec<DescChain> = (0..2).map(|_| r.event_buffer()).collect();
    let mut req = set_params(0, 16, 8, 2, VIRTIO_SND_PCM_FMT_S16, 7);
    req[16] = 1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS;
    assert_eq!(r.control(&req), VIRTIO_SND_S_OK);
    assert_eq!(
        r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)),
        VIRTIO_SND_S_OK
    );
    r.tx(0, &[0; 16]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    let done = r.fire(0);
    assert_eq!(done.iter().filter(|c| c.queue == EVENT_QUEUE).count(), 2);
    for ev in &evs {
        assert_eq!(
            status_of(&r.mem.written(ev)),
            VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED
        );
    }
}
