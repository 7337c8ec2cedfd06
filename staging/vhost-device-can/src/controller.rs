// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The controller's mode and the config `status` it implies, with no queue
//! in sight (§"Controller Mode", §"BusOff Indication").

use crate::error::{Error, Result};
use crate::protocol::VIRTIO_CAN_S_CTRL_BUSOFF;

/// Where the controller is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Not on the bus: the initial mode, and the one STOP leads to.
    #[default]
    Stopped,
    /// On the bus: frames go out and come in.
    Started,
    /// Taken off the bus by the host side. Like STOPPED, with the BUSOFF
    /// status bit set until the driver sends STOP.
    BusOff,
}

impl Mode {
    /// A name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Stopped => "stopped",
            Mode::Started => "started",
            Mode::BusOff => "bus-off",
        }
    }
}

/// The controller state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controller {
    mode: Mode,
}

impl Controller {
    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether frames may be sent and received.
    pub fn is_started(&self) -> bool {
        self.mode == Mode::Started
    }

    /// The config `status` field.
    pub fn status(&self) -> u16 {
        if self.mode == Mode::BusOff {
            VIRTIO_CAN_S_CTRL_BUSOFF
        } else {
            0
        }
    }

    /// START. Refused while bus-off: the driver must STOP first, so that it
    /// has seen the bus-off before the controller rejoins the bus.
    pub fn start(&mut self) -> Result<()> {
        match self.mode {
            Mode::BusOff => Err(Error::BusOff),
            Mode::Stopped | Mode::Started => {
                self.mode = Mode::Started;
                Ok(())
            }
        }
    }

    /// STOP, from any mode; clears BUSOFF.
    pub fn stop(&mut self) {
        self.mode = Mode::Stopped;
    }

    /// The host side reported bus-off. Returns whether this changed the
    /// mode (a stopped controller is not on the bus and cannot go bus-off).
    pub fn bus_off(&mut self) -> bool {
        if self.mode == Mode::Started {
            self.mode = Mode::BusOff;
            true
        } else {
            false
        }
    }

    /// Why a TX is refused, if it is.
    pub fn check_tx(&self) -> Result<()> {
        if self.is_started() {
            Ok(())
        } else {
            Err(Error::NotStarted(self.mode.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn starts_stopped_and_follows_start_stop() {
        let mut c = Controller::default();
        assert_eq!(c.mode(), Mode::Stopped);
        assert!(c.check_tx().is_err());
        c.start().unwrap();
        c.check_tx().unwrap();
        c.stop();
        assert_eq!(c.mode(), Mode::Stopped);
        assert_eq!(c.status(), 0);
    }

    #[test]
    fn bus_off_needs_stop_then_start() {
        let mut c = Controller::default();
        assert!(!c.bus_off(), "a stopped controller is not on the bus");
        c.start().unwrap();
        assert!(c.bus_off());
        assert_eq!(c.status(), VIRTIO_CAN_S_CTRL_BUSOFF);
        assert!(matches!(c.start(), Err(Error::BusOff)));
        assert!(c.check_tx().is_err());
        c.stop();
        assert_eq!(c.status(), 0);
        c.start().unwrap();
        assert!(c.is_started());
    }
}
