// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vhost-device-bench`: a load generator for vhost-user backends.
//!
//! It plays QEMU's part through the common test frontend, against any
//! backend socket, and measures a scenario in explicit CPU placements next
//! to the machine's floor: a bare eventfd round trip between two threads.
//! See BENCHMARKS.md at the workspace root for how to run it and the
//! figures.

pub mod affinity;
pub mod args;
pub mod bt;
pub mod daemon;
pub mod driver;
pub mod error;
pub mod floor;
pub mod gpu_display;
pub mod load;
pub mod machine;
pub mod memcpy;
pub mod procstat;
pub mod report;
pub mod rpmsg;
pub mod run;
pub mod scenario;
pub mod sound;
pub mod stats;
pub mod virgl;

pub use args::Args;
pub use error::{Error, Result};
pub use report::Report;
