// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One timer per stream, on the vring worker's epoll.
//!
//! A running stream arms its timer for the instant its next buffer falls
//! due. The timer is a `CLOCK_MONOTONIC` timerfd armed with an absolute
//! time, registered through the core's `EventRegistry`, so the same worker
//! thread that handles the queues wakes up exactly then: no thread per
//! stream, no sleeping, no polling.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use vhost_device_common::{EventRegistry, EventSet};

/// Arms and disarms the per-stream timers.
pub trait StreamTimers: Send {
    /// Fires stream `stream`'s timer at `at` (absolute, on the pacing
    /// clock), or disarms it with `None`. Re-arming replaces the previous
    /// deadline.
    fn arm(&mut self, stream: usize, at: Option<Duration>);

    /// Clears a fired timer before it is handled.
    fn acknowledge(&mut self, _stream: usize) {}
}

/// Timers that never fire, until [`TimerFds`] replaces them at activation.
#[derive(Debug, Default)]
pub struct NoTimers;

impl StreamTimers for NoTimers {
    fn arm(&mut self, _stream: usize, _at: Option<Duration>) {}
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    /// Creates a disarmed timer.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: timerfd_create returned a new descriptor nobody else owns.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms at absolute monotonic time `at`, or disarms.
    pub fn set(&self, at: Option<Duration>) -> io::Result<()> {
        let value = match at {
            // A zero it_value disarms, so an instant at the very origin is
            // nudged to 1 ns; any instant in the past fires at once.
            Some(at) => libc::timespec {
                tv_sec: libc::time_t::try_from(at.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(at.subsec_nanos().max(u32::from(at.as_secs() == 0))),
            },
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: valid fd and a properly initialised itimerspec that
        // outlives the call.
        let ret = unsafe {
            libc::timerfd_settime(
                self.0.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &raw const spec,
                std::ptr::null_mut(),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads the expiry count, clearing readiness. Zero if it had not fired.
    pub fn read(&self) -> u64 {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into a u64 that outlives the call.
        let n = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&raw mut count).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
        if n == 8 {
            count
        } else {
            0
        }
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// One timerfd per stream, registered with the stream index as token.
#[derive(Debug)]
pub struct TimerFds {
    timers: Vec<TimerFd>,
    _registry: EventRegistry,
}

impl TimerFds {
    /// Creates `count` timers and registers them on the worker's epoll.
    pub fn new(count: usize, registry: EventRegistry) -> io::Result<Self> {
        let mut timers = Vec::with_capacity(count);
        for stream in 0..count {
            let timer = TimerFd::new()?;
            let token = u16::try_from(stream)
                .ok()
                .filter(|t| *t <= registry.max_token())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many streams"))?;
            registry.register(&timer, EventSet::IN, token)?;
            timers.push(timer);
        }
        Ok(TimerFds {
            timers,
            _registry: registry,
        })
    }
}

impl StreamTimers for TimerFds {
    fn arm(&mut self, stream: usize, at: Option<Duration>) {
        if let Some(timer) = self.timers.get(stream) {
            if let Err(e) = timer.set(at) {
                log::warn!("stream {stream}: cannot arm its timer: {e}");
            }
        }
    }

    fn acknowledge(&mut self, stream: usize) {
        if let Some(timer) = self.timers.get(stream) {
            timer.read();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pacer::{Clock, MonotonicClock};

    fn wait(timer: &TimerFd, ms: i32) -> bool {
        let mut fds = libc::pollfd {
            fd: timer.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut fds, 1, ms) == 1 }
    }

    #[test]
    fn absolute_deadline_fires_once_then_disarms() {
        let timer = TimerFd::new().unwrap();
        assert_eq!(timer.read(), 0);
        let start = MonotonicClock.now();
        timer.set(Some(start + Duration::from_millis(30))).unwrap();
        assert!(wait(&timer, 1000));
        let elapsed = MonotonicClock.now() - start;
        assert!(elapsed >= Duration::from_millis(30), "{elapsed:?}");
        assert_eq!(timer.read(), 1);
        assert!(!wait(&timer, 50));
        // In the past: fires at once.
        timer.set(Some(start)).unwrap();
        assert!(wait(&timer, 100));
        assert_eq!(timer.read(), 1);
        timer
            .set(Some(MonotonicClock.now() + Duration::from_secs(10)))
            .unwrap();
        timer.set(None).unwrap();
        assert_eq!(timer.read(), 0);
    }
}
