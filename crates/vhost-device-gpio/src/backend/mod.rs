// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side of the device: a GPIO chip behind one trait.
//!
//! [`cdev::CdevChip`] drives a real chip through the kernel's GPIO character
//! device (the `gpiocdev` crate, no C library); [`sim::SimChip`] is a
//! simulated chip whose inputs are driven from outside through a control
//! socket. The device (`device.rs`, `lines.rs`) talks to either through
//! [`GpioBackend`] and does all the interrupt bookkeeping itself, so both
//! backends only report edges.

pub mod cdev;
pub mod locate;
pub mod sim;

use vhost_device_common::EventRegistry;

use crate::error::Result;

/// A line's direction as the virtio spec numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Not in use.
    None = 0,
    /// Driven by the guest.
    Out = 1,
    /// Sensed by the guest.
    In = 2,
}

impl Direction {
    /// The spec value, if it is one.
    pub fn from_spec(value: u32) -> Option<Self> {
        match value {
            0 => Some(Direction::None),
            1 => Some(Direction::Out),
            2 => Some(Direction::In),
            _ => None,
        }
    }
}

/// One edge seen on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Low to high.
    Rising,
    /// High to low.
    Falling,
}

/// Which edges a backend must report for a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Edges {
    /// None: edge detection off.
    #[default]
    None,
    /// Low-to-high only.
    Rising,
    /// High-to-low only.
    Falling,
    /// Both. Level interrupts use this too: the device tracks the level
    /// from the edges and the line's current value.
    Both,
}

impl Edges {
    /// Whether `edge` is one of these.
    pub fn contains(self, edge: Edge) -> bool {
        matches!(
            (self, edge),
            (Edges::Both, _) | (Edges::Rising, Edge::Rising) | (Edges::Falling, Edge::Falling)
        )
    }
}

/// What the device did with a line's interrupt, for backends that show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqNote {
    /// The driver posted its event buffer: the interrupt is unmasked.
    Unmasked,
    /// The interrupt was delivered (buffer returned `VALID`): masked again.
    Fired,
    /// The buffer was returned unused (`INVALID`).
    Returned,
}

/// A GPIO chip as the device sees it. Line numbers passed in are always
/// below [`GpioBackend::num_lines`]; the device checks that first.
pub trait GpioBackend: Send + 'static {
    /// Number of lines.
    fn num_lines(&self) -> u16;

    /// The lines' names, in line order (empty for an unnamed line). Read
    /// once, when the device is built.
    fn line_names(&self) -> Vec<String>;

    /// The line's current direction. A line the guest has not claimed
    /// reports the host's view of it.
    fn direction(&mut self, line: u16) -> Result<Direction>;

    /// Claims the line as an input or output, or releases it (`None`). An
    /// output takes the value last given to [`GpioBackend::set_value`].
    /// Releasing forgets everything about the line, edge detection included.
    fn set_direction(&mut self, line: u16, direction: Direction) -> Result<()>;

    /// The line's current level. Works whatever the direction, released
    /// lines included.
    fn value(&mut self, line: u16) -> Result<bool>;

    /// The output level: driven now if the line is an output, remembered for
    /// when it becomes one otherwise.
    fn set_value(&mut self, line: u16, value: bool) -> Result<()>;

    /// Turns edge reporting for the line on or off.
    fn set_edges(&mut self, line: u16, edges: Edges) -> Result<()>;

    /// Registers the backend's event fds on the worker's epoll. Called once
    /// per connection before any request.
    fn activate(&mut self, events: EventRegistry) -> Result<()>;

    /// The fd registered with `token` is readable: report the edges it has
    /// as `(line, edge)`, in order.
    fn read_events(&mut self, token: u16, sink: &mut dyn FnMut(u16, Edge));

    /// Releases every line (device reset).
    fn release_all(&mut self);

    /// Told whenever a line's interrupt is unmasked, delivered or returned.
    /// The simulated chip shows it on its control socket so that a test can
    /// wait for the guest instead of sleeping; others ignore it.
    fn irq_note(&mut self, _line: u16, _note: IrqNote) {}
}

impl GpioBackend for Box<dyn GpioBackend> {
    fn num_lines(&self) -> u16 {
        (**self).num_lines()
    }
    fn line_names(&self) -> Vec<String> {
        (**self).line_names()
    }
    fn direction(&mut self, line: u16) -> Result<Direction> {
        (**self).direction(line)
    }
    fn set_direction(&mut self, line: u16, direction: Direction) -> Result<()> {
        (**self).set_direction(line, direction)
    }
    fn value(&mut self, line: u16) -> Result<bool> {
        (**self).value(line)
    }
    fn set_value(&mut self, line: u16, value: bool) -> Result<()> {
        (**self).set_value(line, value)
    }
    fn set_edges(&mut self, line: u16, edges: Edges) -> Result<()> {
        (**self).set_edges(line, edges)
    }
    fn activate(&mut self, events: EventRegistry) -> Result<()> {
        (**self).activate(events)
    }
    fn read_events(&mut self, token: u16, sink: &mut dyn FnMut(u16, Edge)) {
        (**self).read_events(token, sink);
    }
    fn release_all(&mut self) {
        (**self).release_all();
    }
    fn irq_note(&mut self, line: u16, note: IrqNote) {
        (**self).irq_note(line, note);
    }
}
