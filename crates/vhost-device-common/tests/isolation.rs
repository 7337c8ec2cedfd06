// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Isolation between the guests of one daemon (`--socket-count 2`, the echo
//! test device): while guest 0 repeats each attack of `hostile.rs` against
//! its own queue, guest 1 gets every answer, in order and unchanged (issue
//! #17). Correctness is asserted; the latencies are printed for
//! RELIABILITY.md, not checked (speed belongs in benchmarks).

#![cfg(feature = "test-frontend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost::VhostBackend;
use vhost_device_common::testing::{DaemonProcess, TestFrontend};

use support::{connect, echo, publish_oversized_indirect_table, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-echo");
/// Requests guest 1 sends at least, while guest 0 attacks.
const REQUESTS: u64 = 200;
/// Attack rounds guest 0 makes while guest 1's requests go on. The
/// test is bounded by counts, not by the clock: every round and every
/// request has its own timeout, so a stuck daemon still fails it, and a
/// slow machine only makes it take longer.
const ROUNDS: u32 = 50;

/// Guest 0 publishes an `avail.idx` more than a ring ahead.
fn bogus_avail_index(f: &mut TestFrontend) {
    let q = f.queue(0).unwrap();
    let (_, avail, _) = q.ring_addresses();
    let bogus = q.avail_idx().wrapping_add(q.size()).wrapping_add(7);
    q.write_guest(avail + 2, &bogus.to_le_bytes()).unwrap();
    q.notify().unwrap();
}

/// Guest 0's frontend sets a base 1000 entries ahead of the ring.
fn bogus_vring_base(f: &mut TestFrontend) {
    f.raw().set_vring_base(0, 1000).unwrap();
    f.queue(0).unwrap().notify().unwrap();
}

/// Guest 0 makes a held head with a queue-sized indirect table available
/// again, 200 times.
fn republished_indirect_head(f: &mut TestFrontend) {
    let q = f.queue(0).unwrap();
    let mut readable: Vec<&[u8]> = vec![b"hold"];
    readable.resize(usize::from(q.size()) - 1, b"x");
    let held = q.add_indirect(&readable, &[64]).unwrap();
    q.kick().unwrap();
    q.republish(held, 200).unwrap();
    q.notify().unwrap();
}

/// Guest 0 publishes an indirect table one entry longer than the queue.
fn oversized_indirect_table(f: &mut TestFrontend) {
    publish_oversized_indirect_table(f.queue(0).unwrap());
}

/// Guest 0 repeats `attack` (each round on a freshly reset queue, as after
/// a device reset) [`ROUNDS`] times while guest 1 sends requests, at least
/// [`REQUESTS`] and until the attacker is done; every answer
/// of guest 1 must be its own, in sequence, with its payload. Guest 0
/// recovers afterwards and the daemon exits cleanly.
fn guest_1_is_unaffected(name: &str, attack: fn(&mut TestFrontend)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iso.sock");
    let daemon = DaemonProcess::start(BIN, &path, 2, &[]).unwrap();
    let mut hostile = connect(&dir.path().join("iso.sock0"));
    let mut victim = connect(&dir.path().join("iso.sock1"));
    assert_eq!(echo(&mut victim, b"warm-up"), (1, 1, b"warm-up".to_vec()));

    let rounds = Arc::new(AtomicU32::new(0));
    let r = rounds.clone();
    let attacker = thread::spawn(move || {
        for _ in 0..ROUNDS {
            hostile.reset_queue(0).unwrap();
            attack(&mut hostile);
            r.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(1));
        }
        hostile
    });
    let deadline = Instant::now() + TIMEOUT;
    while rounds.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the attack did not start");
        thread::sleep(Duration::from_millis(1));
    }

    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while i < REQUESTS || !attacker.is_finished() {
        let payload = format!("guest 1 request {i}");
        let sent = Instant::now();
        let answer = echo(&mut victim, payload.as_bytes());
        slowest = slowest.max(sent.elapsed());
        assert_eq!(answer, (i + 2, 1, payload.into_bytes()), "request {i}");
        i += 1;
    }
    let mut hostile = attacker.join().unwrap();
    let during = rounds.load(Ordering::SeqCst);
    assert_eq!(during, ROUNDS);

    // Guest 0 gets its queue back with a device reset.
    hostile.reset_queue(0).unwrap();
    let (_, guest, payload) = echo(&mut hostile, b"recovered");
    assert_eq!((guest, payload.as_slice()), (0, &b"recovered"[..]));
    assert_eq!(echo(&mut victim, b"last").0, i + 2);
    assert!(daemon.stop().unwrap().success());
    // For RELIABILITY.md.
    eprintln!(
        "{name}: {during} attack rounds on guest 0 during guest 1's {i} requests; \
         all correct, slowest {slowest:?}"
    );
}

#[test]
fn a_bogus_avail_index_on_one_guest_leaves_the_other_served() {
    guest_1_is_unaffected("bogus avail.idx", bogus_avail_index);
}

#[test]
fn a_bogus_vring_base_on_one_guest_leaves_the_other_served() {
    guest_1_is_unaffected("bogus SET_VRING_BASE", bogus_vring_base);
}

#[test]
fn a_republished_indirect_head_on_one_guest_leaves_the_other_served() {
    guest_1_is_unaffected("republished indirect head", republished_indirect_head);
}

#[test]
fn an_oversized_indirect_table_on_one_guest_leaves_the_other_served() {
    guest_1_is_unaffected("oversized indirect table", oversized_indirect_table);
}
