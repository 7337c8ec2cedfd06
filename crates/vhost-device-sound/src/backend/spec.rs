// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The backend the command line chose, checked once at startup, and how
//! each guest connection gets a backend of its own from it.

use std::path::PathBuf;

use vhost_device_common::{FsAccess, SandboxPolicy, SeccompPolicy};

use super::null::NullBackend;
use super::syscalls;
use super::wav::WavBackend;
use super::{AudioBackend, BackendError};

/// A checked backend choice, from which each connection gets its backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// `null`.
    Null,
    /// `wav`.
    Wav {
        /// Output directory.
        dir: PathBuf,
        /// Capture files.
        inputs: Vec<PathBuf>,
        /// Loop capture files.
        looped: bool,
        /// Largest output file (`--wav-max-bytes`).
        max_bytes: u64,
    },
    /// `alsa`.
    Alsa {
        /// Output PCM names.
        outputs: Vec<String>,
        /// Input PCM names.
        inputs: Vec<String>,
    },
    /// `pipewire`.
    Pipewire {
        /// Node name prefix.
        node_name: String,
        /// Output targets.
        outputs: Vec<String>,
        /// Input targets.
        inputs: Vec<String>,
        /// node.latency in frames.
        latency: u32,
    },
}

impl BackendSpec {
    /// What the daemon needs once set up; seccomp defaults to `kill` for
    /// every backend. null and wav make no call beyond the core's, and
    /// Landlock allows only the WAV directory (output files are created for
    /// each connection) and the input files. alsa-lib and PipeWire load
    /// plugins the host's configuration chooses: each adds its list of
    /// calls (`backend/syscalls.rs`), and Landlock keeps the file system
    /// read-only, with the sound device nodes and shared memory writable
    /// ([`SandboxPolicy::host_library`]).
    pub fn sandbox_policy(&self, seccomp: SeccompPolicy) -> SandboxPolicy {
        let policy = SandboxPolicy::new(seccomp);
        match self {
            BackendSpec::Null => policy,
            BackendSpec::Wav { dir, inputs, .. } => inputs.iter().fold(
                policy.with_path(dir, FsAccess::ReadWrite),
                |policy, input| policy.with_path(input, FsAccess::Read),
            ),
            BackendSpec::Alsa { .. } => {
                let mut policy = policy
                    .host_library()
                    .with_path("/dev/snd", FsAccess::Device);
                policy.seccomp.extra = syscalls::ALSA;
                policy
            }
            BackendSpec::Pipewire { .. } => {
                let mut policy = policy.host_library();
                policy.seccomp.extra = syscalls::PIPEWIRE;
                policy
            }
        }
    }

    /// A fresh backend for a connection of guest `guest`, which is `Some`
    /// when the daemon serves several guests (`--socket-count`): their WAV
    /// files and PipeWire nodes then carry the guest's number.
    pub fn build(&self, guest: Option<usize>) -> Result<Box<dyn AudioBackend>, BackendError> {
        match self {
            BackendSpec::Null => Ok(Box::new(NullBackend)),
            BackendSpec::Wav {
                dir,
                inputs,
                looped,
                max_bytes,
            } => {
                let backend = WavBackend::new(dir.clone(), inputs.clone(), *looped)
                    .with_max_bytes(*max_bytes);
                Ok(Box::new(match guest {
                    Some(guest) => backend.for_guest(guest),
                    None => backend,
                }))
            }
            #[cfg(feature = "alsa-backend")]
            BackendSpec::Alsa { outputs, inputs } => Ok(Box::new(super::alsa::AlsaBackend::new(
                outputs.clone(),
                inputs.clone(),
            ))),
            #[cfg(feature = "pw-backend")]
            BackendSpec::Pipewire {
                node_name,
                outputs,
                inputs,
                latency,
            } => super::pipewire::PipewireBackend::new(
                match guest {
                    Some(guest) => format!("{node_name}-guest{guest}"),
                    None => node_name.clone(),
                },
                outputs.clone(),
                inputs.clone(),
                *latency,
            )
            .map(|b| Box::new(b) as Box<dyn AudioBackend>),
            #[allow(unreachable_patterns)]
            _ => Err(BackendError::NotBuilt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vhost_device_common::{SandboxArgs, SeccompMode};

    #[test]
    fn every_backend_defaults_to_kill() {
        let specs = [
            BackendSpec::Null,
            BackendSpec::Wav {
                dir: "/tmp".into(),
                inputs: Vec::new(),
                looped: false,
                max_bytes: 0,
            },
            BackendSpec::Alsa {
                outputs: Vec::new(),
                inputs: Vec::new(),
            },
            BackendSpec::Pipewire {
                node_name: "vds".into(),
                outputs: Vec::new(),
                inputs: Vec::new(),
                latency: 0,
            },
        ];
        for spec in specs {
            let policy = spec.sandbox_policy(SeccompPolicy::default());
            let mode = SandboxArgs::default().seccomp_mode(&policy);
            assert_eq!(mode, SeccompMode::Kill, "{spec:?}");
        }
    }
}
