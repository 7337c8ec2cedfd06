// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Real-time pacing of a running stream.
//!
//! The guest driver treats the completion of an I/O buffer as "the device
//! played (or recorded) one period". Completing early makes `aplay` finish
//! instantly and the guest clock run fast; completing late starves it. A
//! [`Pacer`] keeps the stream's position against a monotonic clock: how
//! many bytes the stream may have consumed by a given instant, and when a
//! given position will be due. Time comes from a [`Clock`], so the logic is
//! tested against a fake one.

use std::time::Duration;

/// A monotonic clock. The real one is `CLOCK_MONOTONIC`, the clock the
/// stream timers (timerfds) use, so deadlines computed here can be armed
/// as absolute timer values.
pub trait Clock: Send {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// `CLOCK_MONOTONIC`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

/// A stream's position against the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacer {
    /// Bytes per second.
    byte_rate: u64,
    /// Bytes per frame; positions are whole frames.
    frame_bytes: u64,
    /// The instant at which position 0 was due.
    origin: Duration,
    /// Bytes consumed (played or recorded) since `origin`.
    consumed: u64,
    /// How far ahead of real time a sink may be fed (its own buffer).
    lead: Duration,
}

impl Pacer {
    /// A pacer for a stream of `byte_rate` bytes per second in frames of
    /// `frame_bytes`, started at `now`, which lets a sink be fed `lead`
    /// ahead of real time.
    pub fn start(byte_rate: u64, frame_bytes: usize, now: Duration, lead: Duration) -> Self {
        Pacer {
            byte_rate: byte_rate.max(1),
            frame_bytes: (frame_bytes as u64).max(1),
            origin: now,
            consumed: 0,
            lead,
        }
    }

    /// Bytes consumed since the start.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The position (in bytes, whole frames) that is due at `now`.
    pub fn due(&self, now: Duration) -> u64 {
        let elapsed = (now + self.lead).saturating_sub(self.origin);
        let bytes = elapsed.as_nanos() * u128::from(self.byte_rate) / 1_000_000_000;
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        bytes - bytes % self.frame_bytes
    }

    /// Bytes that may be consumed at `now`.
    pub fn budget(&self, now: Duration) -> u64 {
        self.due(now).saturating_sub(self.consumed)
    }

    /// Records `bytes` as consumed.
    pub fn advance(&mut self, bytes: u64) {
        self.consumed += bytes;
    }

    /// The instant at which `more` bytes past the current position are due.
    pub fn deadline_after(&self, more: u64) -> Duration {
        let target = u128::from(self.consumed + more);
        let rate = u128::from(self.byte_rate);
        // Round up, so that the position is fully due when the timer fires.
        let nanos = (target * 1_000_000_000).div_ceil(rate);
        let at = self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        at.saturating_sub(self.lead)
    }

    /// How far real time has run ahead of the stream at `now` (an underrun
    /// for output, an overrun for input), in bytes.
    pub fn starved_bytes(&self, now: Duration) -> u64 {
        self.budget(now)
    }

    /// Restarts the clock at `now` from the current position: time the
    /// stream was stopped or starved is not made up by rushing. The sink's
    /// lead is granted again, since a starved sink has drained its buffer.
    pub fn rebase(&mut self, now: Duration) {
        let played = Duration::from_nanos(
            u64::try_from(u128::from(self.consumed) * 1_000_000_000 / u128::from(self.byte_rate))
                .unwrap_or(u64::MAX),
        );
        self.origin = now.saturating_sub(played);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A clock the test moves by hand.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct FakeClock(pub Arc<AtomicU64>);

    impl FakeClock {
        pub(crate) fn advance(&self, by: Duration) {
            self.0.fetch_add(
                u64::try_from(by.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
        pub(crate) fn set(&self, at: Duration) {
            self.0.store(
                u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn position_follows_the_clock_in_whole_frames() {
        // 48 kHz stereo S16: 192 bytes per ms.
        let clock = FakeClock::default();
        clock.set(Duration::from_secs(100));
        let mut p = Pacer::start(192_000, 4, clock.now(), Duration::ZERO);
        assert_eq!(p.due(clock.now()), 0);
        clock.advance(MS * 20);
        assert_eq!(p.budget(clock.now()), 3840);
        // A fraction of a frame is not due yet.
        clock.advance(Duration::from_nanos(15_000));
        assert_eq!(p.budget(clock.now()), 3840);
        clock.advance(Duration::from_nanos(10_000));
        assert_eq!(p.budget(clock.now()), 3844);
        p.advance(3844);
        assert_eq!(p.budget(clock.now()), 0);
        assert_eq!(p.consumed(), 3844);
    }

    #[test]
    fn deadline_is_when_the_bytes_are_fully_due() {
        let clock = FakeClock::default();
        let p = Pacer::start(192_000, 4, clock.now(), Duration::ZERO);
        let deadline = p.deadline_after(3840);
        assert_eq!(deadline, MS * 20);
        assert_eq!(p.due(deadline), 3840);
        assert!(p.due(deadline - Duration::from_nanos(1)) < 3840);
        // 44.1 kHz does not divide a millisecond: the deadline rounds up.
        let p = Pacer::start(176_400, 4, Duration::ZERO, Duration::ZERO);
        let d = p.deadline_after(4);
        assert!(p.due(d) >= 4);
        assert!(p.due(d - Duration::from_nanos(1)) < 4);
    }

    #[test]
    fn lead_lets_a_buffered_sink_be_fed_early() {
        let p = Pacer::start(192_000, 4, MS * 10, MS * 5);
        assert_eq!(p.due(MS * 10), 960);
        assert_eq!(p.deadline_after(960), MS * 10);
        assert_eq!(p.deadline_after(1920), MS * 15);
    }

    #[test]
    fn rebase_does_not_rush_after_a_gap() {
        let clock = FakeClock::default();
        let mut p = Pacer::start(192_000, 4, clock.now(), Duration::ZERO);
        clock.advance(MS * 20);
        p.advance(p.budget(clock.now()));
        // The stream stalls for 100 ms.
        clock.advance(MS * 100);
        assert_eq!(p.starved_bytes(clock.now()), 19_200);
        p.rebase(clock.now());
        assert_eq!(p.budget(clock.now()), 0);
        clock.advance(MS * 20);
        assert_eq!(p.budget(clock.now()), 3840);
    }

    #[test]
    fn one_second_of_audio_takes_one_second() {
        // 50 periods of 20 ms at 48 kHz stereo S16, consumed only when due.
        let clock = FakeClock::default();
        let mut p = Pacer::start(192_000, 4, clock.now(), Duration::ZERO);
        for _ in 0..50 {
            let at = p.deadline_after(3840);
            assert!(at >= clock.now());
            clock.set(at);
            assert!(p.budget(clock.now()) >= 3840);
            p.advance(3840);
        }
        assert_eq!(clock.now(), Duration::from_secs(1));
    }
}
