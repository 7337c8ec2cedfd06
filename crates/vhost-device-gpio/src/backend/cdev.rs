// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A real chip through the kernel's GPIO character device.
//!
//! Lines are requested from the kernel only as the guest claims them, one
//! request per line so each can be reconfigured or released on its own, and
//! each request's fd sits on the device worker's epoll (token = line
//! number) to deliver edge events without a thread. The chip itself is
//! opened only for the time of a call: the line fds are all the daemon
//! holds.
//!
//! A chip that goes away (a USB expander unplugged, gpio-sim's `live` set
//! to 0) fails the guest's requests with the error status; its lines are
//! let go. When it comes back, the guest's next request claims them again
//! as the guest had set them, edge detection included, so a driver that
//! keeps waiting for an interrupt gets it. It must come back as the same
//! chip (label and number of lines, see [`super::locate`]): at the same
//! node, or, for a chip the user named by label, at any node.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::{Config, Request};
use gpiocdev::Chip;
use log::{info, warn};
use vhost_device_common::{EventRegistry, EventSet};

use super::locate::{self, ChipIdentity, ScanGate, CHIP_DIR};
use super::{Direction, Edge, Edges, GpioBackend};
use crate::error::{Error, Result};

/// The consumer name the host sees on lines the guest holds.
const CONSUMER: &str = "vhost-device-gpio";

/// Most edge events read in one go from one line, so a noisy line cannot
/// starve the rest of the worker (the epoll is level-triggered and calls
/// again).
const EVENTS_PER_WAKEUP: usize = 64;

#[derive(Debug, Default)]
struct CdevLine {
    request: Option<Request>,
    direction: Option<Direction>,
    output: bool,
    edges: Edges,
}

/// A host GPIO chip.
#[derive(Debug)]
pub struct CdevChip {
    /// Where the chip is now.
    path: PathBuf,
    /// What it was when opened: a chip at `path` that differs is not it.
    identity: ChipIdentity,
    /// The user named the chip by label: it is followed to another node.
    follow_label: bool,
    /// Limits the searches for a followed chip that is away.
    scan: ScanGate,
    num_lines: u16,
    names: Vec<String>,
    lines: Vec<CdevLine>,
    events: Option<EventRegistry>,
    /// Some lines were let go because their chip went away (see
    /// `read_events`): the next request claims them again.
    lost_lines: bool,
    /// The chip's return was logged.
    back_logged: bool,
}

/// Finds the chip whose label is `label`.
pub fn find_by_label(label: &str) -> Result<PathBuf> {
    let chips = gpiocdev::chip::chips().map_err(|source| Error::Chip {
        chip: label.to_owned(),
        what: "list GPIO chips".into(),
        source,
    })?;
    let mut found = Vec::new();
    for path in chips {
        let Ok(chip) = Chip::from_path(&path) else {
            continue;
        };
        if chip.info().is_ok_and(|info| info.label == label) {
            found.push(path);
        }
    }
    let reason = match found.len() {
        1 => return Ok(found.remove(0)),
        0 => format!("no GPIO chip is labelled '{label}'"),
        n => format!("{n} GPIO chips are labelled '{label}'"),
    };
    Err(Error::DeviceList {
        entry: label.to_owned(),
        reason,
    })
}

impl CdevChip {
    /// Opens the chip at `path` and reads its line names. If it goes away,
    /// only a chip with the same label and number of lines at the same node
    /// is taken for it.
    pub fn open(path: &Path) -> Result<Self> {
        let chip = Chip::from_path(path).map_err(|source| Error::Chip {
            chip: path.display().to_string(),
            what: "open".into(),
            source,
        })?;
        Self::with_chip(path, &chip, false)
    }

    /// Opens the chip labelled `label`: at `node`, where it was last seen,
    /// if it is still there, else on the one probed node that carries the
    /// label (see [`locate`]; `/dev` is not listed, so this works in the
    /// sandbox). If it goes away, it is followed to wherever it comes back.
    pub fn open_label(label: &str, node: &Path) -> Result<Self> {
        if let Ok(chip) = Chip::from_path(node) {
            if ChipIdentity::of(&chip).is_ok_and(|id| id.label == label) {
                return Self::with_chip(node, &chip, true);
            }
        }
        let found = locate::probe_label(Path::new(CHIP_DIR), label, None);
        let path = locate::only_one(found, label, None)?;
        let chip = Chip::from_path(&path).map_err(|source| Error::Chip {
            chip: path.display().to_string(),
            what: "open".into(),
            source,
        })?;
        Self::with_chip(&path, &chip, true)
    }

    fn with_chip(path: &Path, chip: &Chip, follow_label: bool) -> Result<Self> {
        let chip_error = |what: &str| {
            let chip = path.display().to_string();
            let what = what.to_owned();
            move |source| Error::Chip { chip, what, source }
        };
        let identity = ChipIdentity::of(chip).map_err(chip_error("read chip info"))?;
        let num_lines = u16::try_from(identity.num_lines).map_err(|_| Error::Line {
            line: u16::MAX,
            reason: format!(
                "{} has {} lines, more than virtio-gpio can address",
                path.display(),
                identity.num_lines
            ),
        })?;
        if num_lines == 0 {
            return Err(Error::Line {
                line: 0,
                reason: format!("{} has no lines", path.display()),
            });
        }
        let mut names = Vec::with_capacity(usize::from(num_lines));
        for offset in 0..u32::from(num_lines) {
            let name = chip
                .line_info(offset)
                .map(|info| info.name)
                .map_err(chip_error("read line info"))?;
            names.push(name);
        }
        Ok(CdevChip {
            path: path.to_owned(),
            identity,
            follow_label,
            scan: ScanGate::default(),
            num_lines,
            names,
            lines: (0..num_lines).map(|_| CdevLine::default()).collect(),
            events: None,
            lost_lines: false,
            back_logged: false,
        })
    }

    /// The chip's path: where it was opened, or where it was followed to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for an edge event on a claimed line, without
    /// consuming it: for tests and tools that have no worker epoll.
    pub fn wait_edge_event(&self, line: u16, timeout: std::time::Duration) -> Result<bool> {
        let Some(request) = self
            .lines
            .get(usize::from(line))
            .and_then(|slot| slot.request.as_ref())
        else {
            return Ok(false);
        };
        request
            .wait_edge_event(timeout)
            .map_err(self.line_error(line, "wait for an edge event"))
    }

    fn slot(&mut self, line: u16) -> Result<&mut CdevLine> {
        let ngpio = self.num_lines;
        self.lines
            .get_mut(usize::from(line))
            .ok_or(Error::LineOutOfRange { line, ngpio })
    }

    fn line_error(&self, line: u16, what: &str) -> impl FnOnce(gpiocdev::Error) -> Error {
        let chip = format!("{} line {line}", self.path.display());
        let what = what.to_owned();
        move |source| Error::Chip { chip, what, source }
    }

    fn config(&self, line: u16, slot_direction: Direction, output: bool, edges: Edges) -> Config {
        let mut cfg = Config::default();
        cfg.on_chip(self.path.clone()).with_line(u32::from(line));
        match slot_direction {
            Direction::Out => {
                cfg.as_output(if output {
                    Value::Active
                } else {
                    Value::Inactive
                });
            }
            _ => {
                cfg.as_input().with_edge_detection(match edges {
                    Edges::None => None,
                    Edges::Rising => Some(EdgeDetection::RisingEdge),
                    Edges::Falling => Some(EdgeDetection::FallingEdge),
                    Edges::Both => Some(EdgeDetection::BothEdges),
                });
            }
        }
        cfg
    }

    /// Opens the guest's chip: at its node if it is there, else, for a chip
    /// followed by label, wherever the label went (searched at most once
    /// per [`locate::SCAN_INTERVAL`]). Lines still held on the old node
    /// belong to a chip that is gone: they are let go, to be claimed again.
    fn locate(&mut self) -> Result<Chip> {
        let at_node = match self.identity.open_at(&self.path) {
            Ok(chip) => {
                self.scan.reset();
                return Ok(chip);
            }
            Err(e) => e,
        };
        if !self.follow_label || !self.scan.pass(Instant::now()) {
            return Err(at_node);
        }
        let label = &self.identity.label;
        let found = locate::probe_label(Path::new(CHIP_DIR), label, Some(self.identity.num_lines));
        let path = locate::only_one(found, label, Some(self.identity.num_lines))?;
        let chip = self.identity.open_at(&path)?;
        if path == self.path {
            return Ok(chip);
        }
        // Once per move: the next search is for the next time it goes away.
        info!(
            "{}: the chip labelled '{label}' is at {} now; following it",
            self.path.display(),
            path.display()
        );
        self.scan.reset();
        self.path = path;
        for line in 0..self.num_lines {
            if self
                .lines
                .get(usize::from(line))
                .is_some_and(|slot| slot.request.is_some())
            {
                self.release(line);
                self.lost_lines = true;
                self.back_logged = false;
            }
        }
        Ok(chip)
    }

    /// Brings the kernel request for `line` in line with what the guest
    /// asked: requests, reconfigures or releases it. A new request is made
    /// only on the guest's chip (see [`CdevChip::locate`]).
    fn apply(&mut self, line: u16) -> Result<()> {
        let slot = self.slot(line)?;
        if slot.request.is_none() && wanted(slot.direction, slot.edges).is_some() {
            self.locate()?;
        }
        self.apply_located(line)
    }

    /// [`CdevChip::apply`] once the chip is known to be at `self.path`.
    fn apply_located(&mut self, line: u16) -> Result<()> {
        let (direction, output, edges, requested) = {
            let slot = self.slot(line)?;
            (
                slot.direction,
                slot.output,
                slot.edges,
                slot.request.is_some(),
            )
        };
        let Some(wanted) = wanted(direction, edges) else {
            self.release(line);
            return Ok(());
        };
        let cfg = self.config(line, wanted, output, edges);
        if requested {
            let err = self.line_error(line, "reconfigure");
            let slot = self.slot(line)?;
            if let Some(request) = &slot.request {
                request.reconfigure(&cfg).map_err(err)?;
            }
            return Ok(());
        }
        let request = Request::from_config(cfg)
            .with_consumer(CONSUMER)
            .request()
            .map_err(self.line_error(line, "request"))?;
        if let Some(events) = &self.events {
            if let Err(e) = events.register(&request, EventSet::IN, line) {
                warn!(
                    "{}: line {line}: cannot watch edge events: {e}",
                    self.path.display()
                );
            }
        }
        self.slot(line)?.request = Some(request);
        Ok(())
    }

    /// Claims again the lines let go when their chip went away, as the
    /// guest last set them (direction, output value, edges), once the chip
    /// is back (see [`CdevChip::locate`]). While it is gone, that costs one
    /// failed open per request, and for a chip followed by label a search
    /// at most once a second.
    fn reclaim_lost_lines(&mut self) {
        if !self.lost_lines || self.locate().is_err() {
            return;
        }
        self.lost_lines = false;
        let mut failed = 0;
        for line in 0..self.num_lines {
            let lost = self.lines.get(usize::from(line)).is_some_and(|slot| {
                slot.request.is_none() && wanted(slot.direction, slot.edges).is_some()
            });
            if lost && self.apply_located(line).is_err() {
                // Tried again on the next request.
                self.lost_lines = true;
                failed += 1;
            }
        }
        // Once per return of the chip: the guest's requests bring us here.
        if !std::mem::replace(&mut self.back_logged, true) {
            info!(
                "{}: the chip is back; the guest's lines are claimed again ({failed} failed)",
                self.path.display()
            );
        }
    }

    fn release(&mut self, line: u16) {
        let Some(slot) = self.lines.get_mut(usize::from(line)) else {
            return;
        };
        if let Some(request) = slot.request.take() {
            if let Some(events) = &self.events {
                let _ = events.unregister(&request);
            }
        }
    }
}

/// What a line must be requested as for the guest's `direction` and
/// `edges`, if at all. Edge detection needs an input, claimed or not.
fn wanted(direction: Option<Direction>, edges: Edges) -> Option<Direction> {
    match (direction, edges) {
        (Some(Direction::Out), _) => Some(Direction::Out),
        (Some(Direction::In), _) => Some(Direction::In),
        (_, Edges::None) => None,
        (_, _) => Some(Direction::In),
    }
}

impl GpioBackend for CdevChip {
    fn num_lines(&self) -> u16 {
        self.num_lines
    }

    fn line_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn direction(&mut self, line: u16) -> Result<Direction> {
        self.reclaim_lost_lines();
        if let Some(direction) = self.slot(line)?.direction {
            return Ok(direction);
        }
        // Opened for the question only: a chip fd kept open would keep a
        // chip that went away from being freed, and gpio-sim (or a USB
        // expander plugged in again) would then get another node.
        let info = self
            .locate()?
            .line_info(u32::from(line))
            .map_err(self.line_error(line, "read line info"))?;
        Ok(match info.direction {
            gpiocdev::line::Direction::Output => Direction::Out,
            gpiocdev::line::Direction::Input => Direction::In,
        })
    }

    fn set_direction(&mut self, line: u16, direction: Direction) -> Result<()> {
        self.reclaim_lost_lines();
        let slot = self.slot(line)?;
        let previous = (slot.direction, slot.output, slot.edges);
        match direction {
            Direction::None => {
                *slot = CdevLine {
                    request: slot.request.take(),
                    ..CdevLine::default()
                };
            }
            Direction::Out => {
                slot.direction = Some(Direction::Out);
                slot.edges = Edges::None;
            }
            Direction::In => slot.direction = Some(Direction::In),
        }
        let result = self.apply(line);
        if result.is_err() {
            // Keep our view matching the kernel's.
            let slot = self.slot(line)?;
            (slot.direction, slot.output, slot.edges) = previous;
        }
        result
    }

    fn value(&mut self, line: u16) -> Result<bool> {
        self.reclaim_lost_lines();
        let offset = u32::from(line);
        if let Some(request) = &self.slot(line)?.request {
            let value = request
                .value(offset)
                .map_err(self.line_error(line, "read value"))?;
            return Ok(value == Value::Active);
        }
        // An unclaimed line: borrow it as it is just for the read, from the
        // guest's chip only.
        self.locate()?;
        let request = Request::builder()
            .on_chip(self.path.clone())
            .with_line(offset)
            .as_is()
            .with_consumer(CONSUMER)
            .request()
            .map_err(self.line_error(line, "request to read"))?;
        let value = request
            .value(offset)
            .map_err(self.line_error(line, "read value"))?;
        Ok(value == Value::Active)
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<()> {
        self.reclaim_lost_lines();
        let err = self.line_error(line, "set value");
        let slot = self.slot(line)?;
        slot.output = value;
        if slot.direction == Some(Direction::Out) {
            if slot.request.is_none() {
                // Released after its chip went away (see `read_events`) and
                // not claimed back: claim it with the value, which fails
                // while the chip is gone.
                return self.apply(line);
            }
            if let Some(request) = &slot.request {
                let v = if value {
                    Value::Active
                } else {
                    Value::Inactive
                };
                request.set_value(u32::from(line), v).map_err(err)?;
            }
        }
        Ok(())
    }

    fn set_edges(&mut self, line: u16, edges: Edges) -> Result<()> {
        self.reclaim_lost_lines();
        let slot = self.slot(line)?;
        if edges != Edges::None && slot.direction == Some(Direction::Out) {
            return Err(Error::Line {
                line,
                reason: "an output line has no interrupts".into(),
            });
        }
        let previous = slot.edges;
        slot.edges = edges;
        let result = self.apply(line);
        if result.is_err() {
            self.slot(line)?.edges = previous;
        }
        result
    }

    fn activate(&mut self, events: EventRegistry) -> Result<()> {
        for (index, slot) in self.lines.iter().enumerate() {
            if let (Some(request), Ok(token)) = (&slot.request, u16::try_from(index)) {
                events
                    .register(request, EventSet::IN, token)
                    .map_err(|source| Error::Io {
                        what: "register a line's event fd",
                        source,
                    })?;
            }
        }
        self.events = Some(events);
        Ok(())
    }

    fn read_events(&mut self, token: u16, sink: &mut dyn FnMut(u16, Edge)) {
        let Some(slot) = self.lines.get(usize::from(token)) else {
            return;
        };
        let Some(request) = &slot.request else {
            return;
        };
        let failed = (|| {
            for _ in 0..EVENTS_PER_WAKEUP {
                match request.has_edge_event() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => return Some(format!("poll edge events: {e}")),
                }
                match request.read_edge_event() {
                    Ok(event) => sink(
                        token,
                        match event.kind {
                            EdgeKind::Rising => Edge::Rising,
                            EdgeKind::Falling => Edge::Falling,
                        },
                    ),
                    Err(e) => return Some(format!("read edge event: {e}")),
                }
            }
            None
        })();
        if let Some(what) = failed {
            // The chip went away (ENODEV): its line fds stay readable for
            // ever on the level-triggered epoll, so keeping this one would
            // spin the worker and flood the log. Let the line go; the
            // guest's next request asks the kernel again: the error status
            // while the chip is gone, and the line claimed again as the
            // guest set it once the chip is back.
            warn!(
                "{}: line {token}: {what}; line released",
                self.path.display()
            );
            self.release(token);
            self.lost_lines = true;
            self.back_logged = false;
        }
    }

    fn release_all(&mut self) {
        self.lost_lines = false;
        for line in 0..self.num_lines {
            self.release(line);
            if let Some(slot) = self.lines.get_mut(usize::from(line)) {
                *slot = CdevLine::default();
            }
        }
    }
}
