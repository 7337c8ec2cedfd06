// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A simulated chip whose inputs the outside world drives.
//!
//! The chip's state lives in a [`SimWorld`] that outlasts guest
//! connections, the way a board outlasts the software on it: what the
//! outside drives onto a line stays driven when the guest reconnects, while
//! what the guest configured (directions, outputs, interrupts) starts afresh
//! with each connection's [`SimChip`].
//!
//! The outside world is a control socket ([`SimWorld::serve_control`]) that
//! speaks a line protocol (see [`crate::control`]). A change of a driven
//! input that makes an edge the guest asked for sets a per-line pending bit
//! and signals an eventfd on the device worker's epoll, so no thread ever
//! waits for an interrupt and nothing polls. Every per-line field is an
//! atomic: the guest's request path never takes a lock.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, warn};
use vhost_device_common::{EventRegistry, EventSet, SocketFileGuard};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Direction, Edge, Edges, GpioBackend, IrqNote};
use crate::error::{Error, Result};

/// Most lines a simulated chip may have.
pub const MAX_SIM_LINES: u16 = 1024;

/// The epoll token of the chip's eventfd.
pub const SIM_TOKEN: u16 = 0;

const PENDING_RISING: u8 = 1;
const PENDING_FALLING: u8 = 2;

/// One simulated line.
#[derive(Debug)]
struct SimLine {
    /// The guest's direction, as [`Direction`] numbers it.
    direction: AtomicU8,
    /// The guest's output value.
    output: AtomicBool,
    /// What the outside drives onto the line when the guest does not.
    drive: AtomicBool,
    /// The edges the guest wants, as [`edges_to_u8`] encodes them.
    edges: AtomicU8,
    /// Edges seen and not yet reported.
    pending: AtomicU8,
    /// The device holds the guest's event buffer: the interrupt is unmasked.
    armed: AtomicBool,
    /// Interrupts delivered to the guest on this connection.
    fired: AtomicU32,
}

impl SimLine {
    fn new() -> Self {
        SimLine {
            direction: AtomicU8::new(Direction::In as u8),
            output: AtomicBool::new(false),
            drive: AtomicBool::new(false),
            edges: AtomicU8::new(0),
            pending: AtomicU8::new(0),
            armed: AtomicBool::new(false),
            fired: AtomicU32::new(0),
        }
    }

    fn direction(&self) -> Direction {
        match self.direction.load(Ordering::Acquire) {
            1 => Direction::Out,
            0 => Direction::None,
            _ => Direction::In,
        }
    }

    /// The level on the line: the guest's output if it drives it, what the
    /// outside drives otherwise.
    fn level(&self) -> bool {
        if self.direction() == Direction::Out {
            self.output.load(Ordering::Acquire)
        } else {
            self.drive.load(Ordering::Acquire)
        }
    }

    fn edges(&self) -> Edges {
        edges_from_u8(self.edges.load(Ordering::Acquire))
    }

    /// Back to the power-on state of the guest side; the outside drive stays.
    fn reset_guest_side(&self) {
        self.direction.store(Direction::In as u8, Ordering::Release);
        self.output.store(false, Ordering::Release);
        self.edges.store(0, Ordering::Release);
        self.pending.store(0, Ordering::Release);
        self.armed.store(false, Ordering::Release);
    }
}

fn edges_to_u8(edges: Edges) -> u8 {
    match edges {
        Edges::None => 0,
        Edges::Rising => 1,
        Edges::Falling => 2,
        Edges::Both => 3,
    }
}

fn edges_from_u8(value: u8) -> Edges {
    match value {
        1 => Edges::Rising,
        2 => Edges::Falling,
        3 => Edges::Both,
        _ => Edges::None,
    }
}

/// The simulated board: lines, names, and the eventfd that tells the device
/// worker about new edges.
#[derive(Debug)]
pub struct SimWorld {
    lines: Box<[SimLine]>,
    names: Vec<String>,
    notify: EventFd,
}

impl SimWorld {
    /// A chip with `lines` lines named `<prefix><n>`.
    pub fn new(lines: u16, prefix: &str) -> Result<Arc<Self>> {
        if lines == 0 || lines > MAX_SIM_LINES {
            return Err(Error::Line {
                line: lines,
                reason: format!("a simulated chip has 1 to {MAX_SIM_LINES} lines"),
            });
        }
        let notify = EventFd::new(EFD_NONBLOCK).map_err(|source| Error::Io {
            what: "eventfd for the simulated chip",
            source,
        })?;
        Ok(Arc::new(SimWorld {
            lines: (0..lines).map(|_| SimLine::new()).collect(),
            names: (0..lines).map(|i| format!("{prefix}{i}")).collect(),
            notify,
        }))
    }

    /// Number of lines.
    pub fn num_lines(&self) -> u16 {
        // new() bounded the count to MAX_SIM_LINES.
        u16::try_from(self.lines.len()).unwrap_or(u16::MAX)
    }

    fn line(&self, line: u16) -> Result<&SimLine> {
        self.lines
            .get(usize::from(line))
            .ok_or(Error::LineOutOfRange {
                line,
                ngpio: self.num_lines(),
            })
    }

    /// Drives `line` from outside. If the level the guest sees changes in a
    /// direction it asked to hear about, the edge is recorded and the device
    /// worker woken.
    pub fn drive(&self, line: u16, value: bool) -> Result<()> {
        let l = self.line(line)?;
        let before = l.level();
        l.drive.store(value, Ordering::Release);
        let after = l.level();
        if before == after {
            return Ok(());
        }
        let (edge, bit) = if after {
            (Edge::Rising, PENDING_RISING)
        } else {
            (Edge::Falling, PENDING_FALLING)
        };
        if l.edges().contains(edge) {
            l.pending.fetch_or(bit, Ordering::AcqRel);
            self.notify.write(1).map_err(|source| Error::Io {
                what: "signal the simulated chip's eventfd",
                source,
            })?;
        }
        Ok(())
    }

    /// The level on `line` as the guest sees it.
    pub fn level(&self, line: u16) -> Result<bool> {
        Ok(self.line(line)?.level())
    }

    /// A one-line description of `line` for the control socket.
    pub fn describe(&self, line: u16) -> Result<String> {
        let l = self.line(line)?;
        let direction = match l.direction() {
            Direction::None => "none",
            Direction::Out => "out",
            Direction::In => "in",
        };
        let edges = match l.edges() {
            Edges::None => "none",
            Edges::Rising => "rising",
            Edges::Falling => "falling",
            Edges::Both => "both",
        };
        Ok(format!(
            "direction={direction} value={} output={} drive={} edges={edges} armed={} fired={}",
            u8::from(l.level()),
            u8::from(l.output.load(Ordering::Acquire)),
            u8::from(l.drive.load(Ordering::Acquire)),
            u8::from(l.armed.load(Ordering::Acquire)),
            l.fired.load(Ordering::Acquire),
        ))
    }

    /// Binds the control socket at `path` and serves it from a thread for
    /// the life of the process. The returned guard removes the socket file
    /// when dropped.
    pub fn serve_control(self: &Arc<Self>, path: &Path) -> Result<SocketFileGuard> {
        let control_error = |what, source| Error::Control {
            path: path.to_owned(),
            what,
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(control_error(
                    "refusing to replace",
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "it exists and is not a socket",
                    ),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(control_error(
                    "refusing to replace",
                    io::Error::new(io::ErrorKind::AddrInUse, "another process serves it"),
                ));
            }
            std::fs::remove_file(path).map_err(|e| control_error("remove stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| control_error("bind", e))?;
        let world = Arc::clone(self);
        let name = path.display().to_string();
        // Started before `serve`: a host thread drops its capabilities
        // itself (the daemon's drop covers only threads started after it).
        vhost_device_common::daemon::spawn_host_thread("gpio-sim-control", move || {
            for stream in listener.incoming() {
                match stream {
                    // A thread per client (they are few and short-lived)
                    // so that one left open cannot block a test's next.
                    Ok(stream) => {
                        let world = Arc::clone(&world);
                        let client = name.clone();
                        let spawned = thread::Builder::new().name("gpio-sim-client".into()).spawn(
                            move || {
                                if let Err(e) = serve_client(&world, stream) {
                                    debug!("{client}: client: {e}");
                                }
                            },
                        );
                        if let Err(e) = spawned {
                            warn!("{name}: cannot serve a client: {e}");
                        }
                    }
                    Err(e) => warn!("{name}: accept: {e}"),
                }
            }
        })
        .map_err(|e| control_error("spawn its thread", io::Error::other(e.to_string())))?;
        Ok(SocketFileGuard::new(path))
    }
}

/// Longest command line a client may send.
const MAX_COMMAND: usize = 256;

fn serve_client(world: &SimWorld, stream: UnixStream) -> io::Result<()> {
    // A client that stops talking must not keep its thread for ever.
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = Read::by_ref(&mut reader)
            .take(MAX_COMMAND as u64)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = match execute(world, line.trim()) {
            Ok(reply) => reply,
            Err(e) => format!("err {e}"),
        };
        writer.write_all(reply.as_bytes())?;
        writer.write_all(b"\n")?;
    }
}

/// Runs one control command and returns the reply line.
pub fn execute(world: &SimWorld, command: &str) -> std::result::Result<String, String> {
    let mut words = command.split_ascii_whitespace();
    let verb = words.next().unwrap_or("");
    let mut line = || -> std::result::Result<u16, String> {
        let word = words.next().ok_or("missing line number")?;
        word.parse::<u16>()
            .map_err(|_| format!("'{word}' is not a line number"))
    };
    match verb {
        "lines" => Ok(format!("ok {}", world.num_lines())),
        "get" => {
            let l = line()?;
            let level = world.level(l).map_err(|e| e.to_string())?;
            Ok(format!("ok {}", u8::from(level)))
        }
        "info" => {
            let l = line()?;
            let text = world.describe(l).map_err(|e| e.to_string())?;
            Ok(format!("ok {text}"))
        }
        "set" => {
            let l = line()?;
            let value = match words.next() {
                Some("0") => false,
                Some("1") => true,
                Some(other) => return Err(format!("'{other}' is not 0 or 1")),
                None => return Err("missing value".into()),
            };
            world.drive(l, value).map_err(|e| e.to_string())?;
            Ok("ok".into())
        }
        "" => Err("empty command".into()),
        other => Err(format!(
            "unknown command '{other}' (lines, get L, info L, set L 0|1)"
        )),
    }
}

/// One guest connection's view of a [`SimWorld`].
#[derive(Debug)]
pub struct SimChip {
    world: Arc<SimWorld>,
    events: Option<EventRegistry>,
}

impl SimChip {
    /// A fresh guest side of `world`: every line an unclaimed input.
    pub fn new(world: Arc<SimWorld>) -> Self {
        for line in world.lines.iter() {
            line.reset_guest_side();
            line.fired.store(0, Ordering::Release);
        }
        // Edges pending from a previous connection are not this guest's.
        let _ = world.notify.read();
        SimChip {
            world,
            events: None,
        }
    }

    /// The shared world, for tests that drive it directly.
    pub fn world(&self) -> &Arc<SimWorld> {
        &self.world
    }
}

impl GpioBackend for SimChip {
    fn num_lines(&self) -> u16 {
        self.world.num_lines()
    }

    fn line_names(&self) -> Vec<String> {
        self.world.names.clone()
    }

    fn direction(&mut self, line: u16) -> Result<Direction> {
        Ok(self.world.line(line)?.direction())
    }

    fn set_direction(&mut self, line: u16, direction: Direction) -> Result<()> {
        let l = self.world.line(line)?;
        match direction {
            Direction::None => l.reset_guest_side(),
            _ => l.direction.store(direction as u8, Ordering::Release),
        }
        Ok(())
    }

    fn value(&mut self, line: u16) -> Result<bool> {
        Ok(self.world.line(line)?.level())
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<()> {
        self.world
            .line(line)?
            .output
            .store(value, Ordering::Release);
        Ok(())
    }

    fn set_edges(&mut self, line: u16, edges: Edges) -> Result<()> {
        let l = self.world.line(line)?;
        if edges != Edges::None && l.direction() == Direction::Out {
            return Err(Error::Line {
                line,
                reason: "an output line has no interrupts".into(),
            });
        }
        l.edges.store(edges_to_u8(edges), Ordering::Release);
        l.pending.store(0, Ordering::Release);
        Ok(())
    }

    fn activate(&mut self, events: EventRegistry) -> Result<()> {
        events
            .register(&self.world.notify, EventSet::IN, SIM_TOKEN)
            .map_err(|source| Error::Io {
                what: "register the simulated chip's eventfd",
                source,
            })?;
        self.events = Some(events);
        Ok(())
    }

    fn read_events(&mut self, token: u16, sink: &mut dyn FnMut(u16, Edge)) {
        if token != SIM_TOKEN {
            return;
        }
        // Reset the eventfd before looking, so an edge set after the scan
        // signals again.
        let _ = self.world.notify.read();
        for (index, line) in self.world.lines.iter().enumerate() {
            let pending = line.pending.swap(0, Ordering::AcqRel);
            if pending == 0 {
                continue;
            }
            let Ok(index) = u16::try_from(index) else {
                break;
            };
            if pending & PENDING_RISING != 0 {
                sink(index, Edge::Rising);
            }
            if pending & PENDING_FALLING != 0 {
                sink(index, Edge::Falling);
            }
        }
    }

    fn release_all(&mut self) {
        for line in self.world.lines.iter() {
            line.reset_guest_side();
        }
    }

    fn irq_note(&mut self, line: u16, note: IrqNote) {
        let Ok(l) = self.world.line(line) else {
            return;
        };
        l.armed.store(note == IrqNote::Unmasked, Ordering::Release);
        if note == IrqNote::Fired {
            l.fired.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        if let Some(events) = &self.events {
            let _ = events.unregister(&self.world.notify);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn chip(lines: u16) -> SimChip {
        SimChip::new(SimWorld::new(lines, "sim").unwrap())
    }

    fn events(chip: &mut SimChip) -> Vec<(u16, Edge)> {
        let mut seen = Vec::new();
        chip.read_events(SIM_TOKEN, &mut |l, e| seen.push((l, e)));
        seen
    }

    #[test]
    fn driven_inputs_are_read_back_and_outputs_win() {
        let mut c = chip(4);
        assert!(!c.value(1).unwrap());
        c.world().drive(1, true).unwrap();
        assert!(c.value(1).unwrap());
        c.set_value(1, false).unwrap();
        c.set_direction(1, Direction::Out).unwrap();
        assert!(!c.value(1).unwrap());
        assert!(!c.world().level(1).unwrap());
        c.set_direction(1, Direction::None).unwrap();
        // Released: back to what the outside drives, and readable.
        assert!(c.value(1).unwrap());
        assert_eq!(c.direction(1).unwrap(), Direction::In);
    }

    #[test]
    fn only_requested_edges_are_reported() {
        let mut c = chip(2);
        c.world().drive(0, true).unwrap();
        assert!(events(&mut c).is_empty(), "no edges before edge detection");
        c.set_edges(0, Edges::Falling).unwrap();
        c.world().drive(0, true).unwrap();
        assert!(events(&mut c).is_empty(), "no change, no edge");
        c.world().drive(0, false).unwrap();
        assert_eq!(events(&mut c), vec![(0, Edge::Falling)]);
        c.world().drive(0, true).unwrap();
        assert!(events(&mut c).is_empty(), "rising not asked for");
        c.set_edges(0, Edges::Both).unwrap();
        c.world().drive(0, false).unwrap();
        c.world().drive(0, true).unwrap();
        assert_eq!(events(&mut c), vec![(0, Edge::Rising), (0, Edge::Falling)]);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn edges_wake_the_eventfd_and_outputs_refuse_edges() {
        let mut c = chip(2);
        c.set_edges(1, Edges::Rising).unwrap();
        c.world().notify.read().unwrap_err();
        c.world().drive(1, true).unwrap();
        assert_eq!(c.world().notify.read().unwrap(), 1);
        c.set_edges(1, Edges::None).unwrap();
        c.set_direction(1, Direction::Out).unwrap();
        c.set_edges(1, Edges::Both).unwrap_err();
        c.world().drive(9, true).unwrap_err();
    }

    #[test]
    fn control_commands() {
        let world = SimWorld::new(3, "x").unwrap();
        assert_eq!(execute(&world, "lines").unwrap(), "ok 3");
        assert_eq!(execute(&world, "set 2 1").unwrap(), "ok");
        assert_eq!(execute(&world, "get 2").unwrap(), "ok 1");
        assert!(execute(&world, "info 2").unwrap().contains("drive=1"));
        execute(&world, "set 3 1").unwrap_err();
        execute(&world, "set 2 7").unwrap_err();
        execute(&world, "set two 1").unwrap_err();
        execute(&world, "get").unwrap_err();
        execute(&world, "").unwrap_err();
        execute(&world, "jump").unwrap_err();
    }

    #[test]
    fn a_new_connection_starts_fresh_but_keeps_the_drive() {
        let world = SimWorld::new(2, "x").unwrap();
        let mut first = SimChip::new(world.clone());
        first.set_value(0, true).unwrap();
        first.set_direction(0, Direction::Out).unwrap();
        first.set_edges(1, Edges::Both).unwrap();
        world.drive(1, true).unwrap();
        drop(first);
        let mut second = SimChip::new(world.clone());
        assert_eq!(second.direction(0).unwrap(), Direction::In);
        assert!(!second.value(0).unwrap());
        assert!(second.value(1).unwrap());
        assert!(events(&mut second).is_empty());
    }
}
