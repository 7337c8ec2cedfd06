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
pub mod error;
pub mod protocol;
pub mod request;
pub mod transfer;

pub use args::Args;
pub use device::I2cDevice;
pub use error::Error;
