// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type: what stops the daemon from starting, and
//! what a guest request comes to when it fails. Each request error knows
//! the `VIRTIO_GPU_RESP_ERR_*` code the guest gets for it ([`Error::status`]).

use vhost_device_common::ChainError;

use crate::backend::RendererError;
use crate::protocol::{cmd, CtrlHdr};

/// What can go wrong, at start-up or in a guest request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More `--resolution` flags than scanouts.
    #[error("{0} --resolution flags given, but a GPU has at most 16 scanouts")]
    TooManyScanouts(usize),
    /// `--capset` in 2D mode.
    #[error("--capset needs --gpu-mode virgl: the 2D mode has no capability sets")]
    CapsetWithout2d,
    /// `--gpu-mode virgl` in a build without it.
    #[error("--gpu-mode virgl: this binary was built without the `virgl` feature (cargo build --features virgl,rutabaga_gfx/virgl_renderer; needs virglrenderer >= 1.3)")]
    VirglNotBuilt,
    /// The renderer could not start.
    #[error("cannot start the renderer: {0}")]
    Renderer(RendererError),

    /// The request is shorter than its command needs, or its chain cannot
    /// be read.
    #[error("malformed request: {0}")]
    Malformed(#[from] ChainError),
    /// A command this device does not implement (or not in this mode).
    #[error("unsupported command {0:#x}")]
    Unsupported(u32),
    /// No resource with this id.
    #[error("resource {0} does not exist")]
    UnknownResource(u32),
    /// A new resource's id is 0 or taken.
    #[error("resource id {0} is 0 or already in use")]
    ResourceIdTaken(u32),
    /// No such scanout.
    #[error("scanout {0} does not exist")]
    InvalidScanout(u32),
    /// The context is unknown (or, for CTX_CREATE, 0 or taken).
    #[error("context {0} is invalid here")]
    InvalidContext(u32),
    /// A value out of range.
    #[error("{0}")]
    InvalidParameter(String),
    /// The request would take more host memory, resources or contexts than
    /// this guest may have.
    #[error("out of host memory: {0}")]
    OutOfMemory(String),
    /// A request that is well-formed but makes no sense in this state.
    #[error("{0}")]
    Refused(String),
    /// The renderer refused the guest's values.
    #[error("{what}: {source}")]
    Rejected {
        /// The operation.
        what: &'static str,
        /// Why.
        source: RendererError,
    },
    /// The renderer failed on the host side.
    #[error("{what}: {source}")]
    Host {
        /// The operation.
        what: &'static str,
        /// Why.
        source: RendererError,
    },
}

impl Error {
    /// The response code the guest gets for this error (virtio 1.3
    /// §5.7.6.7: `VIRTIO_GPU_RESP_ERR_*`).
    pub fn status(&self) -> u32 {
        match self {
            Error::UnknownResource(_) | Error::ResourceIdTaken(_) => {
                cmd::RESP_ERR_INVALID_RESOURCE_ID
            }
            Error::InvalidScanout(_) => cmd::RESP_ERR_INVALID_SCANOUT_ID,
            Error::InvalidContext(_) => cmd::RESP_ERR_INVALID_CONTEXT_ID,
            Error::InvalidParameter(_) | Error::Rejected { .. } => cmd::RESP_ERR_INVALID_PARAMETER,
            Error::OutOfMemory(_) => cmd::RESP_ERR_OUT_OF_MEMORY,
            Error::TooManyScanouts(_)
            | Error::CapsetWithout2d
            | Error::VirglNotBuilt
            | Error::Renderer(_)
            | Error::Malformed(_)
            | Error::Unsupported(_)
            | Error::Refused(_)
            | Error::Host { .. } => cmd::RESP_ERR_UNSPEC,
        }
    }

    /// The 24-byte response to the request with header `hdr`.
    pub fn response(&self, hdr: &CtrlHdr) -> CtrlHdr {
        hdr.response(self.status())
    }

    /// A renderer failure on the host side.
    pub fn host(what: &'static str) -> impl FnOnce(RendererError) -> Error {
        move |source| Error::Host { what, source }
    }
}

/// A request's result: its response, or the error it is answered with.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_error_has_its_status() {
        let r = || RendererError::Unsupported;
        let cases = [
            (Error::Unsupported(0x999), cmd::RESP_ERR_UNSPEC),
            (Error::UnknownResource(1), cmd::RESP_ERR_INVALID_RESOURCE_ID),
            (Error::ResourceIdTaken(0), cmd::RESP_ERR_INVALID_RESOURCE_ID),
            (Error::InvalidScanout(16), cmd::RESP_ERR_INVALID_SCANOUT_ID),
            (Error::InvalidContext(0), cmd::RESP_ERR_INVALID_CONTEXT_ID),
            (
                Error::InvalidParameter("x".into()),
                cmd::RESP_ERR_INVALID_PARAMETER,
            ),
            (Error::OutOfMemory("x".into()), cmd::RESP_ERR_OUT_OF_MEMORY),
            (Error::Refused("x".into()), cmd::RESP_ERR_UNSPEC),
            (
                Error::Rejected {
                    what: "t",
                    source: r(),
                },
                cmd::RESP_ERR_INVALID_PARAMETER,
            ),
            (Error::host("t")(r()), cmd::RESP_ERR_UNSPEC),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e}");
            assert_eq!(e.response(&CtrlHdr::default()).type_, status);
        }
    }
}
