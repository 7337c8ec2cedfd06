// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user virtio sound device (virtio device ID 25).
//!
//! [`device::SoundDevice`] implements the virtio-snd control, event, tx and
//! rx queues on top of `vhost-device-common`, with the spec's PCM state
//! machine, real-time pacing ([`pacer`]) driven by one timerfd per stream
//! ([`timer`]), channel maps, jacks and volume/mute controls. Samples go to
//! and come from a host [`backend`]: `null`, `wav`, `alsa` or `pipewire`.
//!
//! The shape: [`args`] parses flags into a [`config::SoundConfig`] and a
//! [`backend::BackendSpec`]; [`protocol`] is the wire format, named as the
//! spec names it; [`device`] decodes each request once, dispatches and
//! completes; [`stream`] is a PCM stream's state, testable with no queue;
//! [`error::RequestError`] knows the status the guest gets for each error.

pub mod args;
pub mod backend;
pub mod config;
pub mod device;
pub mod error;
pub mod format;
pub mod pacer;
pub mod protocol;
pub mod stream;
pub mod timer;

pub use device::SoundDevice;
pub use error::{Error, RequestError};
