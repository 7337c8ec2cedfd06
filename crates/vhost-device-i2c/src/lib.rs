// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user backend for virtio-i2c (virtio device ID 34).
//!
//! The guest sees one I2C adapter. Behind it, each configured address leads
//! to a target on a host adapter (`/dev/i2c-N`, plain I2C or SMBus
//! emulation) or to a simulated chip (24C EEPROM, LM75), mixed on one
//! virtual bus. See `README.md` for the command line.

pub mod args;
pub mod backend;
pub mod config;
pub mod device;

pub use args::Args;
pub use device::I2cDevice;

/// What can go wrong setting the device up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--device-list` entry is malformed or conflicts with another.
    #[error("--device-list entry \"{entry}\": {reason}")]
    Entry {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host adapter cannot be used.
    #[error("I2C adapter {adapter}: {reason}")]
    Adapter {
        /// Its device path.
        adapter: String,
        /// Why.
        reason: String,
    },
    /// The number of `--device-list` options fits neither way.
    #[error("--device-list was given {given} times for {guests} guests: give it once (shared by every guest) or once per guest")]
    ListCount {
        /// Options given.
        given: usize,
        /// `--socket-count`.
        guests: usize,
    },
}
