// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One invocation: the floor, the daemon, the scenario's load runs in each
//! placement, and the idle cost.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vhost_device_common::testing::TestFrontend;

use crate::affinity::{self, Placement};
use crate::args::{Args, DriverArg, PlacementArg, ShapeArg};
use crate::bt;
use crate::daemon::{find_binary, peer_pid, Spawned};
use crate::driver::{FrontendDriver, LeanDriver};
use crate::error::{Error, Result};
use crate::floor::{self, FloorResult};
use crate::load::{self, Driver, LoadResult, RunLimits, Shape};
use crate::machine::Machine;
use crate::memcpy;
use crate::procstat;
use crate::report::{DaemonInfo, Idle, Report};
use crate::rpmsg;
use crate::scenario::{self, Scenario, GPU_FRAME_BYTES};
use crate::sound;

/// How long to wait for a daemon's socket to accept the frontend.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The limits of every measured run, from the arguments.
pub fn limits(args: &Args) -> RunLimits {
    let duration = Duration::from_millis(args.duration_ms);
    RunLimits {
        warmup: (duration / 10).min(Duration::from_millis(200)),
        duration,
        max_requests: args.requests.unwrap_or(u64::MAX),
        stall: Duration::from_secs(5),
    }
}

/// Runs the scenario the arguments name.
pub fn run(args: &Args) -> Result<Report> {
    let (first, second) =
        affinity::cpu_pair(args.cpus).map_err(|e| Error::io("reading the CPU affinity", e))?;
    let mut report = Report {
        scenario: args.scenario.name(),
        // rpmsg drives its two queues through the test frontend.
        driver: if args.scenario == Scenario::Rpmsg {
            DriverArg::Frontend.name()
        } else {
            args.driver.name()
        },
        machine: Machine::detect(),
        cpus: (first, second),
        daemon: None,
        floors: Vec::new(),
        loads: Vec::new(),
        bytes_per_round: None,
        idle: None,
        memcpy: None,
        memcpy_memfd: None,
        memcpy_memfd_off16: None,
        sound: Vec::new(),
        notes: Vec::new(),
    };
    let mut placements = Vec::new();
    if matches!(args.placement, PlacementArg::Same | PlacementArg::Both) {
        placements.push(Placement::SameCpu);
    }
    if matches!(args.placement, PlacementArg::Cross | PlacementArg::Both) {
        match second {
            Some(_) => placements.push(Placement::CrossCpu),
            None if args.placement == PlacementArg::Cross => {
                return Err(Error::Unsupported(
                    "the cross-cpu placement needs two CPUs".into(),
                ))
            }
            None => report
                .notes
                .push("one CPU only: the cross-cpu placement was skipped".into()),
        }
    }
    let pair = (first, second.unwrap_or(first));
    let limits = limits(args);
    // Request scenarios with ping-pong measure their floor in rounds
    // between ping-pong slices instead (see --rounds).
    let paired = args.rounds > 1
        && !args.no_floor
        && shapes(args).contains(&Shape::PingPong)
        && !matches!(
            args.scenario,
            Scenario::Floor | Scenario::Memcpy | Scenario::SoundNull
        );
    if paired {
        report.notes.push(format!(
            "floor and ping-pong measured in {} alternating rounds; ×floor is the median of the rounds' ratios",
            args.rounds
        ));
    }
    let mut pairing = paired.then(|| Pairing {
        rounds: args.rounds,
        pair,
        calls: usize::from(args.floor_calls),
        floors: Vec::new(),
    });

    if args.scenario != Scenario::Memcpy && !args.no_floor && !paired {
        for &p in &placements {
            let calls = usize::from(args.floor_calls);
            report.floors.push(floor::measure(p, pair, calls, &limits)?);
        }
    }
    match args.scenario {
        Scenario::Floor => return Ok(report),
        Scenario::Memcpy => {
            affinity::pin_self(first).map_err(|e| Error::io("pinning", e))?;
            measure_memcpy(&mut report, &limits)?;
            return Ok(report);
        }
        _ => {}
    }

    let mut spawned = start_daemon(args)?;
    let socket: PathBuf = match (&spawned, &args.socket_path) {
        (Some(s), _) => s.socket().to_path_buf(),
        (None, Some(p)) => p.clone(),
        (None, None) => return Err(Error::Failed("no daemon to drive".into())),
    };
    let mut opts = args.scenario.frontend_options();
    opts.queue_size = args.queue_size;
    let mut fe = TestFrontend::connect_retry(&socket, opts, CONNECT_WAIT).map_err(
        Error::frontend(format!("connecting to {}", socket.display())),
    )?;
    let pid = args
        .pid
        .or_else(|| spawned.as_ref().map(Spawned::pid))
        .or_else(|| peer_pid(fe.raw().as_raw_fd()));
    if pid.is_none() {
        report
            .notes
            .push("the daemon's pid is unknown: no CPU, wake-up or memory figures".into());
    }
    report.daemon = Some(DaemonInfo {
        description: spawned.as_ref().map_or_else(
            || format!("listening on {}", socket.display()),
            |s| s.command().to_owned(),
        ),
        pid,
        exit_code: None,
    });

    if args.scenario == Scenario::SoundNull {
        sound::post_event_buffers(&mut fe, args.sound_event_buffers)?;
        for &p in &placements {
            place(p, pair, pid)?;
            report.sound.push(sound::measure(&mut fe, p, pid, &limits)?);
        }
        report.idle = measure_idle(pid, Duration::from_millis(args.idle_ms))?;
    } else if args.scenario == Scenario::Rpmsg {
        // The host program is this process's own thread, not pinned: its
        // cost is not in the daemon's figures. A daemon started with an
        // echo channel instead (--spawn) has no peer socket.
        let peer_path = rpmsg::peer_path(&socket);
        let _peer = if peer_path.exists() {
            Some(rpmsg::Peer::start(&peer_path)?)
        } else {
            report.notes.push(format!(
                "no {}: the channel's remote is the daemon's own (echo)",
                peer_path.display()
            ));
            None
        };
        let mut d = rpmsg::prepare(&mut fe)?;
        place(Placement::SameCpu, pair, pid)?;
        report.idle = measure_idle(pid, Duration::from_millis(args.idle_ms))?;
        let shapes = shapes(args);
        let loads = Loads::new(&placements, &shapes, pair, pid, &limits);
        report.loads = loads.run(&mut d, pairing.as_mut())?;
        if let Some(p) = pairing.take() {
            report.floors = p.floors;
        }
    } else if args.scenario == Scenario::Bt {
        let shapes = shapes(args);
        let depth = max_depth(&shapes);
        let templates = bt::lean_templates();
        let loads = Loads::new(&placements, &shapes, pair, pid, &limits);
        report.loads = match args.driver {
            DriverArg::Lean => {
                let mut d = bt::BtLean::new(&mut fe, &templates, depth)?;
                place(Placement::SameCpu, pair, pid)?;
                report.idle = measure_idle(pid, Duration::from_millis(args.idle_ms))?;
                loads.run(&mut d, pairing.as_mut())?
            }
            DriverArg::Frontend => {
                let mut d = bt::BtDriver::new(&mut fe, depth)?;
                place(Placement::SameCpu, pair, pid)?;
                report.idle = measure_idle(pid, Duration::from_millis(args.idle_ms))?;
                loads.run(&mut d, pairing.as_mut())?
            }
        };
        if let Some(p) = pairing.take() {
            report.floors = p.floors;
        }
    } else {
        let prepared = scenario::prepare(args.scenario, &mut fe, args.gpio_drive_first)?;
        report.bytes_per_round = prepared
            .bytes_per_round
            .map(|b| (b, prepared.templates.len()));
        // Idle after setup: the state a guest leaves the device in.
        place(Placement::SameCpu, pair, pid)?;
        report.idle = measure_idle(pid, Duration::from_millis(args.idle_ms))?;
        let shapes = shapes(args);
        let depth = max_depth(&shapes);
        let name = args.scenario.name();
        let queue = fe
            .queue(prepared.queue)
            .map_err(Error::frontend("selecting the queue"))?;
        report.loads = match args.driver {
            DriverArg::Lean => {
                let mut d = LeanDriver::new(queue, name, &prepared.templates, depth)?;
                let loads = Loads::new(&placements, &shapes, pair, pid, &limits);
                loads.run(&mut d, pairing.as_mut())?
            }
            DriverArg::Frontend => {
                let mut d = FrontendDriver::new(queue, name, &prepared.templates);
                let loads = Loads::new(&placements, &shapes, pair, pid, &limits);
                loads.run(&mut d, pairing.as_mut())?
            }
        };
        if let Some(p) = pairing.take() {
            report.floors = p.floors;
        }
        if args.scenario == Scenario::Gpu2d {
            affinity::pin_self(first).map_err(|e| Error::io("pinning", e))?;
            measure_memcpy(&mut report, &limits)?;
        }
    }

    // The orderly stop QEMU does; a daemon that cannot take it is news.
    if let Err(e) = fe.disconnect() {
        report.notes.push(format!("disconnecting: {e}"));
    }
    if let Some(s) = spawned.take() {
        let code = s.stop();
        if let Some(d) = report.daemon.as_mut() {
            d.exit_code = code;
        }
    }
    Ok(report)
}

/// Both memcpy baselines of gpu-2d, on the calling thread's CPU.
fn measure_memcpy(report: &mut Report, limits: &RunLimits) -> Result<()> {
    report.memcpy = Some(memcpy::measure(GPU_FRAME_BYTES, limits));
    let row = scenario::GPU_WIDTH as usize * 4;
    let from_memfd = |offset| {
        memcpy::measure_from_memfd(GPU_FRAME_BYTES, row, offset, limits)
            .map_err(|e| Error::io("memcpy from a memfd", e))
    };
    report.memcpy_memfd = Some(from_memfd(0)?);
    report.memcpy_memfd_off16 = Some(from_memfd(16)?);

    Ok(())
}

/// The most requests any of `shapes` keeps in flight.
fn max_depth(shapes: &[Shape]) -> usize {
    shapes
        .iter()
        .map(|s| match s {
            Shape::PingPong => 1,
            Shape::Pipelined(n) => *n,
        })
        .max()
        .unwrap_or(1)
}

fn shapes(args: &Args) -> Vec<Shape> {
    let mut shapes = Vec::new();
    if matches!(args.shape, ShapeArg::PingPong | ShapeArg::Both) {
        shapes.push(Shape::PingPong);
    }
    if matches!(args.shape, ShapeArg::Pipelined | ShapeArg::Both) {
        shapes.push(Shape::Pipelined(usize::from(args.in_flight)));
    }
    shapes
}

/// Starts the daemon the arguments ask for, if any (none with
/// --socket-path).
fn start_daemon(args: &Args) -> Result<Option<Spawned>> {
    if args.socket_path.is_some() {
        return Ok(None);
    }
    let (binary, extra): (String, Vec<String>) = if let Some(cmd) = &args.spawn {
        let (bin, rest) = cmd
            .split_first()
            .ok_or_else(|| Error::Failed("--spawn needs a binary".into()))?;
        (bin.clone(), rest.to_vec())
    } else {
        let spec = match &args.device {
            Some(name) => scenario::device_spec(name)
                .ok_or_else(|| Error::Failed(format!("no device '{name}' in the table")))?,
            None => args.scenario.default_device().ok_or_else(|| {
                Error::Failed(format!("{} needs no daemon", args.scenario.name()))
            })?,
        };
        (
            spec.binary.to_owned(),
            spec.args.iter().map(|s| (*s).to_owned()).collect(),
        )
    };
    let path = find_binary(&binary, args.bin_dir.as_deref())?;
    Spawned::start(&path, &extra).map(Some)
}

/// Pins this thread and the daemon's threads for `placement`.
fn place(placement: Placement, pair: (usize, usize), pid: Option<u32>) -> Result<()> {
    let (front, daemon) = placement.cpus(pair);
    affinity::pin_self(front).map_err(|e| Error::io(format!("pinning to CPU {front}"), e))?;
    if let Some(pid) = pid {
        affinity::pin_process(pid, &[daemon])
            .map_err(|e| Error::io(format!("pinning the daemon (pid {pid}) to CPU {daemon}"), e))?;
    }
    Ok(())
}

/// Counts the daemon's context switches while nothing is sent.
fn measure_idle(pid: Option<u32>, window: Duration) -> Result<Option<Idle>> {
    let Some(pid) = pid else { return Ok(None) };
    // Let whatever the setup started settle first.
    std::thread::sleep(Duration::from_millis(100));
    let read = || procstat::context_switches(pid).map_err(|e| Error::io("reading /proc", e));
    let before = read()?;
    let start = Instant::now();
    std::thread::sleep(window);
    let after = read()?;
    let window = start.elapsed();
    let memory = procstat::memory(pid).map_err(|e| Error::io("reading /proc", e))?;
    Ok(Some(Idle {
        window,
        switches: after.saturating_sub(before),
        memory,
    }))
}

/// Floor and ping-pong measured in alternating rounds, and the floors
/// that come of it.
struct Pairing {
    rounds: u32,
    pair: (usize, usize),
    /// Call eventfds the floor writes per round trip (`--floor-calls`).
    calls: usize,
    floors: Vec<FloorResult>,
}

/// The load runs of one invocation.
struct Loads<'a> {
    placements: &'a [Placement],
    shapes: &'a [Shape],
    pair: (usize, usize),
    pid: Option<u32>,
    limits: &'a RunLimits,
}

impl<'a> Loads<'a> {
    fn new(
        placements: &'a [Placement],
        shapes: &'a [Shape],
        pair: (usize, usize),
        pid: Option<u32>,
        limits: &'a RunLimits,
    ) -> Self {
        Loads {
            placements,
            shapes,
            pair,
            pid,
            limits,
        }
    }

    fn run<D: Driver>(
        &self,
        d: &mut D,
        mut pairing: Option<&mut Pairing>,
    ) -> Result<Vec<LoadResult>> {
        let mut results = Vec::new();
        for &p in self.placements {
            place(p, self.pair, self.pid)?;
            for &shape in self.shapes {
                results.push(match (shape, pairing.as_deref_mut()) {
                    (Shape::PingPong, Some(pairing)) => self.paired(d, p, pairing)?,
                    (Shape::PingPong, None) => load::ping_pong(d, p, self.pid, self.limits)?,
                    (Shape::Pipelined(n), _) => load::pipelined(d, n, p, self.pid, self.limits)?,
                });
            }
        }
        Ok(results)
    }

    /// Ping-pong in `rounds` slices, each right after a floor slice of the
    /// same length: on a machine whose speed drifts by the second, a ratio
    /// of two runs taken seconds apart measures the drift.
    fn paired<D: Driver>(
        &self,
        d: &mut D,
        placement: Placement,
        pairing: &mut Pairing,
    ) -> Result<LoadResult> {
        let rounds = pairing.rounds.max(1);
        let duration = self.limits.duration / rounds;
        let slice = RunLimits {
            warmup: (duration / 10).min(self.limits.warmup),
            duration,
            max_requests: (self.limits.max_requests / u64::from(rounds)).max(1),
            stall: self.limits.stall,
        };
        let mut floor_total: Option<FloorResult> = None;
        let mut load_total: Option<LoadResult> = None;
        for _ in 0..rounds {
            let floor = floor::measure(placement, pairing.pair, pairing.calls, &slice)?;
            // The floor pinned this thread; pin both sides again.
            place(placement, self.pair, self.pid)?;
            let mut load = load::ping_pong(d, placement, self.pid, &slice)?;
            let floor_p50 = floor.latency.quantile(0.5);
            if let (Some(hist), true) = (&load.latency, floor_p50 > 0) {
                load.round_ratios
                    .push(hist.quantile(0.5) as f64 / floor_p50 as f64);
            }
            match &mut floor_total {
                Some(total) => total.merge(&floor),
                None => floor_total = Some(floor),
            }
            match &mut load_total {
                Some(total) => total.merge(load),
                None => load_total = Some(load),
            }
        }
        pairing.floors.extend(floor_total);
        load_total.ok_or_else(|| Error::Failed("no ping-pong round".into()))
    }
}
