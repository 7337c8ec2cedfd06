// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Host audio behind one trait.
//!
//! The device owns the stream state machine and the pacing; a backend only
//! moves samples. [`AudioBackend`] opens one [`OutputSink`] or
//! [`InputSource`] per stream when the driver prepares it with a set of
//! parameters. The device feeds a sink, or drains a source, by whole frames
//! as they fall due; a sink with its own buffer (ALSA, PipeWire) may accept
//! less than offered when that buffer is full, which holds back the guest's
//! buffers: playback then follows the host device's clock.

use std::time::Duration;

use crate::format::PcmParams;

pub mod null;
mod spec;
mod syscalls;
pub mod wav;

pub use spec::BackendSpec;

#[cfg(feature = "alsa-backend")]
pub mod alsa;

#[cfg(feature = "pw-backend")]
pub mod pipewire;

/// A backend failure, reported to the guest as `VIRTIO_SND_S_IO_ERR`.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A WAV file is not one we can read.
    #[error("{path}: {reason}")]
    BadWav {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend was not compiled into this binary.
    #[error("this backend is not built into this binary")]
    NotBuilt,
    /// The host sound system refused.
    #[error("{backend} {device}: {reason}")]
    Host {
        /// Backend name.
        backend: &'static str,
        /// Device, node or target.
        device: String,
        /// The host's message.
        reason: String,
    },
}

/// Which stream a sink or source serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// Stream id on the virtio device.
    pub id: u32,
    /// Position among the streams of the same direction (output 0, 1, …).
    pub index: usize,
}

/// Where playback goes.
pub trait OutputSink: Send {
    /// The stream started (PCM_START).
    fn start(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The stream stopped (PCM_STOP) or was released. Frames the sink
    /// already took were completed to the guest, so they should still play.
    fn stop(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Takes whole frames of `data`; returns how many bytes it accepted.
    /// Fewer than offered means "full, try again later".
    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError>;

    /// Bytes accepted but not yet heard.
    fn latency_bytes(&mut self) -> u32 {
        0
    }

    /// How far ahead of real time the sink wants to be fed (its buffer).
    fn lead(&self) -> Duration {
        Duration::ZERO
    }
    /// Whether the sink still holds its host device. One that lost it (its
    /// card went away) is opened anew by the next PREPARE.
    fn is_open(&self) -> bool {
        true
    }

    /// Whether to let go of the host device while the stream is released
    /// (once the frames it took have played): an ALSA card that other
    /// programs may want, and that the kernel can only remove once nothing
    /// holds it. The default keeps it for the next PREPARE.
    fn close_when_released(&self) -> bool {
        false
    }

    /// Checks, without moving frames, that the host device is still there,
    /// while the stream is prepared or stopped (nothing else would notice);
    /// one that lost it lets go of it (see [`OutputSink::is_open`]). Called
    /// about once a second, only when [`OutputSink::close_when_released`].
    fn probe(&mut self) -> bool {
        true
    }
}

/// Where capture comes from.
pub trait InputSource: Send {
    /// The stream started.
    fn start(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The stream stopped or was released.
    fn stop(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Fills the front of `buf` with whole frames; returns the bytes
    /// written. Fewer than asked means "nothing more yet".
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError>;

    /// Bytes recorded but not yet handed over.
    fn latency_bytes(&mut self) -> u32 {
        0
    }

    /// How far ahead of real time the source may be read: a source with
    /// its own clock and buffer hands over what it has as soon as it has
    /// it.
    fn lead(&self) -> Duration {
        Duration::ZERO
    }

    /// As [`OutputSink::is_open`].
    fn is_open(&self) -> bool {
        true
    }

    /// As [`OutputSink::close_when_released`] (a source is closed at once).
    fn close_when_released(&self) -> bool {
        false
    }

    /// As [`OutputSink::probe`].
    fn probe(&mut self) -> bool {
        true
    }
}

/// Opens sinks and sources for one guest connection.
pub trait AudioBackend: Send {
    /// Name, for logs.
    fn name(&self) -> &'static str;

    /// Opens playback for `stream` with `params`.
    fn open_output(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError>;

    /// Opens capture for `stream` with `params`.
    fn open_input(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError>;
}

/// Rounds `len` down to whole frames of `frame_bytes`.
pub fn whole_frames(len: usize, frame_bytes: usize) -> usize {
    if frame_bytes == 0 {
        len
    } else {
        len - len % frame_bytes
    }
}
