// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The floor: a bare eventfd ping-pong between two threads, the same
//! notification path a vhost-user request takes with no virtqueue and no
//! device in it.
//!
//! The "frontend" thread writes the kick eventfd and waits for the call
//! eventfd with `poll`, as the test frontend does; the "device" thread
//! waits for the kick with `epoll_wait`, as the vring worker does, reads it
//! and writes the call eventfd. With `calls` above one it first writes
//! another eventfd that many times less one, which nobody waits for: the
//! signal of a device's other queue (bt's tx) that a driver takes in an
//! interrupt of its own.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::affinity::{pin_self, Placement};
use crate::error::{Error, Result};
use crate::load::{wait_readable, RunLimits};
use crate::procstat::thread_cpu_time;
use crate::stats::Histogram;

/// One floor measurement.
#[derive(Debug, Clone)]
pub struct FloorResult {
    /// Where the two threads ran.
    pub placement: Placement,
    /// Round-trip times.
    pub latency: Histogram,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// CPU time of the frontend thread per round trip (measured part).
    pub frontend_cpu_per_rt: Duration,
    /// CPU time of the device thread per round trip (whole run: it cannot
    /// tell the warm-up apart, and costs the same in both).
    pub device_cpu_per_rt: Duration,
}

impl FloorResult {
    /// Folds in another measurement of the same placement (a later round).
    pub fn merge(&mut self, other: &FloorResult) {
        let (a, b) = (self.latency.count(), other.latency.count());
        let weighted =
            |x: Duration, y: Duration| per(x * weight(a) + y * weight(b), a.saturating_add(b));
        self.frontend_cpu_per_rt = weighted(self.frontend_cpu_per_rt, other.frontend_cpu_per_rt);
        self.device_cpu_per_rt = weighted(self.device_cpu_per_rt, other.device_cpu_per_rt);
        self.latency.merge(&other.latency);
        self.elapsed += other.elapsed;
    }
}

/// A count as a `Duration` multiplier (saturating; counts here are far
/// below `u32::MAX`).
fn weight(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn per(total: Duration, count: u64) -> Duration {
    Duration::from_nanos(
        u64::try_from(total.as_nanos() / u128::from(count.max(1))).unwrap_or(u64::MAX),
    )
}

fn drain(fd: &EventFd) -> Result<bool> {
    match fd.read() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(Error::io("reading an eventfd", e)),
    }
}

/// Measures the eventfd round trip with the frontend thread (the caller) on
/// `cpus.0` and the device thread on `cpus.1`, the device writing `calls`
/// call eventfds per round trip.
pub fn measure(
    placement: Placement,
    cpus: (usize, usize),
    calls: usize,
    limits: &RunLimits,
) -> Result<FloorResult> {
    let new_fd = || EventFd::new(EFD_NONBLOCK).map_err(|e| Error::io("creating an eventfd", e));
    let kick = Arc::new(new_fd()?);
    let call = Arc::new(new_fd()?);
    let side = new_fd()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (front_cpu, device_cpu) = placement.cpus(cpus);
    pin_self(front_cpu).map_err(|e| Error::io(format!("pinning to CPU {front_cpu}"), e))?;

    let device = {
        let (kick, call, stop) = (kick.clone(), call.clone(), stop.clone());
        std::thread::Builder::new()
            .name("floor-device".into())
            .spawn(move || -> Result<(u64, Duration)> {
                let cpu0 = thread_cpu_time();
                let mut trips = 0u64;
                pin_self(device_cpu)
                    .map_err(|e| Error::io(format!("pinning to CPU {device_cpu}"), e))?;
                let epoll = Epoll::new().map_err(|e| Error::io("epoll_create", e))?;
                epoll
                    .ctl(
                        ControlOperation::Add,
                        kick.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, 1),
                    )
                    .map_err(|e| Error::io("epoll_ctl", e))?;
                let mut events = [EpollEvent::default(); 4];
                loop {
                    match epoll.wait(-1, &mut events) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io("epoll_wait", e)),
                    }
                    if !drain(&kick)? {
                        continue;
                    }
                    if stop.load(Ordering::Acquire) {
                        return Ok((trips, thread_cpu_time().saturating_sub(cpu0)));
                    }
                    for _ in 1..calls {
                        side.write(1)
                            .map_err(|e| Error::io("writing the side eventfd", e))?;
                    }
                    call.write(1)
                        .map_err(|e| Error::io("writing the call eventfd", e))?;
                    trips += 1;
                }
            })
            .map_err(|e| Error::io("starting the floor thread", e))?
    };

    let result = run_frontend(&kick, &call, limits);
    stop.store(true, Ordering::Release);
    let _ = kick.write(1);
    let joined = device
        .join()
        .map_err(|_| Error::Failed("the floor's device thread panicked".into()))?;
    let (latency, elapsed, frontend_cpu) = result?;
    let (trips, device_cpu) = joined?;
    Ok(FloorResult {
        placement,
        frontend_cpu_per_rt: per(frontend_cpu, latency.count()),
        device_cpu_per_rt: per(device_cpu, trips),
        latency,
        elapsed,
    })
}

fn run_frontend(
    kick: &EventFd,
    call: &EventFd,
    limits: &RunLimits,
) -> Result<(Histogram, Duration, Duration)> {
    let mut hist = Histogram::new();
    let warmup_end = Instant::now() + limits.warmup;
    let mut measuring = false;
    let mut start = Instant::now();
    let mut end = start + limits.duration;
    let mut cpu0 = Duration::ZERO;
    loop {
        let t0 = Instant::now();
        if !measuring && t0 >= warmup_end {
            measuring = true;
            cpu0 = thread_cpu_time();
            start = t0;
            end = t0 + limits.duration;
        }
        if measuring && (t0 >= end || hist.count() >= limits.max_requests) {
            return Ok((hist, t0 - start, thread_cpu_time().saturating_sub(cpu0)));
        }
        kick.write(1)
            .map_err(|e| Error::io("writing the kick eventfd", e))?;
        loop {
            wait_readable(call.as_raw_fd(), limits.stall)?;
            if drain(call)? {
                break;
            }
        }
        if measuring {
            hist.record(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }
}
