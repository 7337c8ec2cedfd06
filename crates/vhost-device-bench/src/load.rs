// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The two load shapes, over any [`Driver`]: ping-pong (one request in
//! flight, every round trip timed) and pipelined (N in flight, requests per
//! second), with the daemon's CPU time taken around the measured part.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::affinity::Placement;
use crate::error::{Error, Result};
use crate::procstat::{self, Memory};
use crate::stats::Histogram;

/// How long a run lasts.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// Unmeasured time first, to fault pages in and settle caches and
    /// frequencies.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Stop the measured part after this many requests.
    pub max_requests: u64,
    /// A completion later than this is a stalled daemon: an error.
    pub stall: Duration,
}

/// Waits for `fd` to become readable; an error after `timeout`.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ret = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if ret > 0 {
            return Ok(());
        }
        if ret < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("poll", e));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Stalled(timeout, 0));
        }
    }
}

/// Reads (and so resets) a non-blocking eventfd; false if it was not set.
pub fn drain_eventfd(fd: RawFd) -> Result<bool> {
    let mut buf = [0u8; 8];
    // SAFETY: reading 8 bytes into an 8-byte buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n == 8 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(false),
        _ => Err(Error::io("reading the call eventfd", e)),
    }
}

/// A way to put requests on a virtqueue and take completions off it.
pub trait Driver {
    /// Posts the next request without notifying the device.
    fn post(&mut self) -> Result<()>;
    /// Notifies the device of what was posted, unless it asked not to be.
    fn kick(&mut self) -> Result<()>;
    /// Takes every completion the device has published, without blocking,
    /// checking each reply. Returns how many.
    fn reap(&mut self) -> Result<usize>;
    /// Sleeps until the device signals a completion (or `timeout`: an
    /// error). May return early; the caller reaps again.
    fn wait(&mut self, timeout: Duration) -> Result<()>;
    /// Requests posted and not completed.
    fn in_flight(&self) -> usize;
}

/// The shape of a load run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One request in flight.
    PingPong,
    /// This many in flight.
    Pipelined(usize),
}

impl Shape {
    /// Name in tables and JSON.
    pub fn name(self) -> String {
        match self {
            Shape::PingPong => "ping-pong".into(),
            Shape::Pipelined(n) => format!("pipelined-{n}"),
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// The shape.
    pub shape: Shape,
    /// Where the frontend and the daemon ran.
    pub placement: Placement,
    /// Completed requests in the measured part.
    pub requests: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Round-trip times (ping-pong only).
    pub latency: Option<Histogram>,
    /// The daemon's CPU time (all threads) over the measured part.
    pub daemon_cpu: Option<Duration>,
    /// The daemon's context switches over the measured part.
    pub daemon_switches: Option<u64>,
    /// The load generator thread's CPU time over the measured part.
    pub bench_cpu: Duration,
    /// The daemon's memory at the end of the measured part.
    pub memory: Option<Memory>,
    /// Ping-pong in paired rounds: each round's p50 over the p50 of the
    /// floor measured just before it (see `--rounds`).
    pub round_ratios: Vec<f64>,
}

impl LoadResult {
    /// Folds in a later round of the same shape and placement.
    pub fn merge(&mut self, other: LoadResult) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        match (&mut self.latency, &other.latency) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(_)) => self.latency = other.latency,
            _ => {}
        }
        self.daemon_cpu = self.daemon_cpu.zip(other.daemon_cpu).map(|(a, b)| a + b);
        self.daemon_switches = self
            .daemon_switches
            .zip(other.daemon_switches)
            .map(|(a, b)| a + b);
        self.bench_cpu += other.bench_cpu;
        self.memory = other.memory.or(self.memory.take());
        self.round_ratios.extend(other.round_ratios);
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }

    /// Daemon CPU per request in microseconds.
    pub fn daemon_us_per_request(&self) -> Option<f64> {
        let cpu = self.daemon_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    /// Load-generator CPU per request in microseconds.
    pub fn bench_us_per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.bench_cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// Snapshots of the daemon (if its pid is known) and of this thread.
struct Probe {
    pid: Option<u32>,
    wall: Instant,
    daemon_cpu: Option<Duration>,
    daemon_switches: Option<u64>,
    bench_cpu: Duration,
}

impl Probe {
    fn take(pid: Option<u32>) -> Self {
        Probe {
            pid,
            daemon_cpu: pid.and_then(|p| procstat::cpu_time_precise(p).ok()),
            daemon_switches: pid.and_then(|p| procstat::context_switches(p).ok()),
            bench_cpu: procstat::thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    fn finish(
        self,
        shape: Shape,
        placement: Placement,
        requests: u64,
        latency: Option<Histogram>,
    ) -> LoadResult {
        let wall = Instant::now();
        let bench_cpu = procstat::thread_cpu_time();
        let end = Probe::take(self.pid);
        LoadResult {
            shape,
            placement,
            requests,
            elapsed: wall - self.wall,
            latency,
            daemon_cpu: end
                .daemon_cpu
                .zip(self.daemon_cpu)
                .map(|(b, a)| b.saturating_sub(a)),
            daemon_switches: end
                .daemon_switches
                .zip(self.daemon_switches)
                .map(|(b, a)| b.saturating_sub(a)),
            bench_cpu: bench_cpu.saturating_sub(self.bench_cpu),
            memory: self.pid.and_then(|p| procstat::memory(p).ok()),
            round_ratios: Vec::new(),
        }
    }
}

/// Waits for at least one completion.
fn reap_some<D: Driver>(d: &mut D, stall: Duration) -> Result<usize> {
    let deadline = Instant::now() + stall;
    loop {
        let n = d.reap()?;
        if n > 0 {
            return Ok(n);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Stalled(stall, d.in_flight()));
        }
        d.wait(left).map_err(|e| match e {
            Error::Stalled(t, _) => Error::Stalled(t, d.in_flight()),
            e => e,
        })?;
    }
}

/// One request at a time; every round trip is timed from before the
/// request is written to after its completion is read.
pub fn ping_pong<D: Driver>(
    d: &mut D,
    placement: Placement,
    pid: Option<u32>,
    limits: &RunLimits,
) -> Result<LoadResult> {
    let mut hist = Histogram::new();
    let warmup_end = Instant::now() + limits.warmup;
    let mut probe: Option<Probe> = None;
    let mut end = Instant::now();
    loop {
        let t0 = Instant::now();
        if probe.is_none() && t0 >= warmup_end {
            probe = Some(Probe::take(pid));
            end = Instant::now() + limits.duration;
        }
        if probe.is_some() && (t0 >= end || hist.count() >= limits.max_requests) {
            break;
        }
        d.post()?;
        d.kick()?;
        reap_some(d, limits.stall)?;
        if probe.is_some() {
            hist.record(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }
    let requests = hist.count();
    let probe = probe.ok_or_else(|| Error::Failed("no measured part".into()))?;
    Ok(probe.finish(Shape::PingPong, placement, requests, Some(hist)))
}

/// Keeps `depth` requests in flight: each batch of completions is replaced
/// by as many new requests and one kick, as a driver with a full queue does.
pub fn pipelined<D: Driver>(
    d: &mut D,
    depth: usize,
    placement: Placement,
    pid: Option<u32>,
    limits: &RunLimits,
) -> Result<LoadResult> {
    for _ in 0..depth {
        d.post()?;
    }
    d.kick()?;
    let warmup_end = Instant::now() + limits.warmup;
    let mut probe: Option<Probe> = None;
    let mut end = Instant::now();
    let mut done: u64 = 0;
    loop {
        let n = reap_some(d, limits.stall)?;
        let now = Instant::now();
        match &probe {
            None if now >= warmup_end => {
                probe = Some(Probe::take(pid));
                end = Instant::now() + limits.duration;
            }
            None => {}
            Some(_) => done += n as u64,
        }
        if probe.is_some() && (now >= end || done >= limits.max_requests) {
            break;
        }
        for _ in 0..n {
            d.post()?;
        }
        d.kick()?;
    }
    let probe = probe.ok_or_else(|| Error::Failed("no measured part".into()))?;
    let result = probe.finish(Shape::Pipelined(depth), placement, done, None);
    // Leave the queue idle for the next run.
    while d.in_flight() > 0 {
        reap_some(d, limits.stall)?;
    }
    Ok(result)
}
