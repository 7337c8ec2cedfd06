// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `null` backend: playback is discarded and capture is silence, both
//! at the real-time pace the device keeps.

use super::{AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::format::PcmParams;

/// Discards playback, records silence.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullBackend;

struct NullSink;

impl OutputSink for NullSink {
    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        Ok(data.len())
    }
}

struct Silence {
    byte: u8,
}

impl InputSource for Silence {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError> {
        buf.fill(self.byte);
        Ok(buf.len())
    }
}

impl AudioBackend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }

    fn open_output(
        &mut self,
        _stream: StreamRef,
        _params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError> {
        Ok(Box::new(NullSink))
    }

    fn open_input(
        &mut self,
        _stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        Ok(Box::new(Silence {
            byte: params.format.silence_byte(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::format::SampleFormat;

    #[test]
    fn discards_and_records_silence() {
        let params = PcmParams {
            buffer_bytes: 8,
            period_bytes: 4,
            features: 0,
            channels: 1,
            format: SampleFormat::U8,
            rate: 8000,
        };
        let stream = StreamRef { id: 0, index: 0 };
        let mut out = NullBackend.open_output(stream, &params).unwrap();
        assert_eq!(out.write(&[1, 2, 3]).unwrap(), 3);
        let mut input = NullBackend.open_input(stream, &params).unwrap();
        let mut buf = [0; 4];
        assert_eq!(input.read(&mut buf).unwrap(), 4);
        assert_eq!(buf, [0x80; 4]);
    }
}
