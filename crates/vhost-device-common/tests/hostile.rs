// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A hostile driver and frontend against the real daemon (the echo test
//! device behind `daemon::serve`), over real sockets: a bogus `avail.idx`, a
//! bogus SET_VRING_BASE, a head made available while the device holds it,
//! and a chain longer than the queue. Each must leave the daemon serving,
//! asleep and stoppable.

#![cfg(feature = "test-frontend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::thread;
use std::time::{Duration, Instant};

use vhost::VhostBackend;
use vhost_device_common::testing::{DaemonProcess, FrontendError, TestFrontend};

use support::{connect, publish_oversized_indirect_table, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-echo");
/// CPU a sleeping daemon may use over [`WATCH`], in clock ticks (1/100 s):
/// a spinning one uses nearly all of them.
const IDLE_TICKS: u64 = 10;
const WATCH: Duration = Duration::from_secs(1);

fn start(dir: &tempfile::TempDir) -> (DaemonProcess, TestFrontend) {
    let path = dir.path().join("hostile.sock");
    let daemon = DaemonProcess::start(BIN, &path, 1, &[]).unwrap();
    let frontend = connect(&path);
    (daemon, frontend)
}

/// The echoed bytes of `payload`.
fn echo(frontend: &mut TestFrontend, payload: &[u8]) -> Vec<u8> {
    support::echo(frontend, payload).2
}

/// The daemon's CPU ticks over [`WATCH`].
fn cpu_over_watch(daemon: &DaemonProcess) -> u64 {
    let before = daemon.cpu_ticks().unwrap();
    thread::sleep(WATCH);
    daemon.cpu_ticks().unwrap() - before
}

/// The queue is broken: the daemon sleeps, answers the control path,
/// recovers after a queue reset, and exits cleanly on SIGTERM.
fn assert_broken_then_recovers(daemon: DaemonProcess, mut frontend: TestFrontend) {
    // Let the worker take the kick.
    thread::sleep(Duration::from_millis(100));
    let ticks = cpu_over_watch(&daemon);
    assert!(
        ticks <= IDLE_TICKS,
        "daemon used {ticks} ticks in {WATCH:?}: it spins"
    );
    let asked = Instant::now();
    assert_eq!(frontend.get_config(0, 4).unwrap(), [0; 4]);
    let answered = asked.elapsed();
    assert!(answered < TIMEOUT);
    // Kicks on a broken queue are cheap and change nothing.
    for _ in 0..100 {
        frontend.queue(0).unwrap().notify().unwrap();
    }
    let after_kicks = cpu_over_watch(&daemon);
    assert!(
        after_kicks <= IDLE_TICKS,
        "daemon used {after_kicks} ticks after kicks"
    );

    // What QEMU does when the driver resets the device.
    let reset = Instant::now();
    frontend.reset_queue(0).unwrap();
    assert_eq!(echo(&mut frontend, b"again"), b"again");
    let recovered = reset.elapsed();

    let stopping = Instant::now();
    let status = daemon.stop().unwrap();
    assert!(status.success(), "{status}");
    // For RELIABILITY.md.
    eprintln!(
        "broken queue: {ticks} ticks/s, {after_kicks} after 100 kicks; GET_CONFIG in {answered:?}; \
         recovered in {recovered:?}; SIGTERM exit in {:?}",
        stopping.elapsed()
    );
}

#[test]
fn an_avail_index_more_than_a_ring_ahead_breaks_the_queue_not_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut frontend) = start(&dir);
    assert_eq!(echo(&mut frontend, b"first"), b"first");
    let q = frontend.queue(0).unwrap();
    let (_, avail, _) = q.ring_addresses();
    let bogus = q.avail_idx().wrapping_add(q.size()).wrapping_add(7);
    q.write_guest(avail + 2, &bogus.to_le_bytes()).unwrap();
    q.notify().unwrap();
    assert_broken_then_recovers(daemon, frontend);
}

#[test]
fn a_bogus_vring_base_breaks_the_queue_not_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut frontend) = start(&dir);
    assert_eq!(echo(&mut frontend, b"first"), b"first");
    // avail.idx is 1; a base of 1000 puts it 64 537 entries ahead.
    frontend.raw().set_vring_base(0, 1000).unwrap();
    frontend.queue(0).unwrap().notify().unwrap();
    assert_broken_then_recovers(daemon, frontend);
}

#[test]
fn a_head_made_available_while_held_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut frontend) = start(&dir);
    let q = frontend.queue(0).unwrap();
    let held = q.add(&[b"hold me"], &[64]).unwrap();
    q.kick().unwrap();
    // Made available 200 more times while the device holds it; before the
    // in-flight set, each was parsed and held again.
    q.republish(held, 200).unwrap();
    q.notify().unwrap();
    let release = q.add(&[b"release"], &[64]).unwrap();
    q.kick().unwrap();
    // Exactly two completions: the held chain once, and the release.
    let mut heads = vec![
        q.wait_used(TIMEOUT).unwrap().head,
        q.wait_used(TIMEOUT).unwrap().head,
    ];
    heads.sort_unstable();
    let mut want = vec![held, release];
    want.sort_unstable();
    assert_eq!(heads, want);
    assert!(matches!(
        q.wait_used(Duration::from_millis(200)),
        Err(FrontendError::Timeout { .. })
    ));
    // The head is free again and works as usual.
    assert_eq!(echo(&mut frontend, b"next"), b"next");
    assert!(daemon.stop().unwrap().success());
}

#[test]
fn a_chain_longer_than_the_queue_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut frontend) = start(&dir);
    let q = frontend.queue(0).unwrap();
    let head = publish_oversized_indirect_table(q);
    let used = q.wait_used(TIMEOUT).unwrap();
    assert_eq!((used.head, used.len), (head, 0));
    assert_eq!(echo(&mut frontend, b"still here"), b"still here");
    assert!(daemon.stop().unwrap().success());
}

fn rss_kib(daemon: &DaemonProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// The memory attack of #17: one held head with a queue-sized indirect
/// table, made available 10 000 times. Held each time, it grew the daemon by
/// about 4 KiB per republication.
#[test]
fn a_republished_head_does_not_grow_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut frontend) = start(&dir);
    let q = frontend.queue(0).unwrap();
    let mut readable: Vec<&[u8]> = vec![b"hold"];
    readable.resize(usize::from(q.size()) - 1, b"x");
    let held = q.add_indirect(&readable, &[64]).unwrap();
    q.kick().unwrap();
    thread::sleep(Duration::from_millis(100));
    let before = rss_kib(&daemon);
    for _ in 0..50 {
        q.republish(held, 200).unwrap();
        q.notify().unwrap();
        // Let the worker take them before the next round, so that the index
        // stays within a ring of the device's: a fixed pause was not enough
        // on a loaded machine, and the device then (rightly) stopped the
        // queue as bogus. With EVENT_IDX the device says how far it has read.
        assert!(q.event_idx(), "the test frontend negotiates EVENT_IDX");
        let deadline = Instant::now() + TIMEOUT;
        while q.avail_event().unwrap() != q.avail_idx() {
            assert!(Instant::now() < deadline, "the worker did not catch up");
            thread::sleep(Duration::from_millis(1));
        }
    }
    let growth = rss_kib(&daemon).saturating_sub(before);
    eprintln!("10 000 republications of a held 256-descriptor chain: RSS +{growth} KiB");
    assert!(growth < 1024, "the daemon grew by {growth} KiB");
    // Still serving: the held chain and the release come back, once each.
    let q = frontend.queue(0).unwrap();
    q.add(&[b"release"], &[64]).unwrap();
    q.kick().unwrap();
    q.wait_used(TIMEOUT).unwrap();
    q.wait_used(TIMEOUT).unwrap();
    assert_eq!(q.in_flight(), 0);
    assert!(daemon.stop().unwrap().success());
}
