// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A tiny test-only device behind the real daemon, for the core's own
//! integration tests and the benchmark floor.
//!
//! One queue. Each request's readable bytes come back after a 12-byte
//! header: the request's sequence number on this connection (le64) and the
//! guest index (le32). The sequence restarts with every connection, so tests
//! can see that each frontend gets fresh device state. A request whose
//! payload starts with `hold` is kept unanswered until a `release` request
//! arrives, so a test can disconnect with requests in flight. Two requests
//! exist for the sandbox tests: `execve` (a forbidden system call) and
//! `open:PATH` (a file outside every policy).
//!
//! Config space (8 bytes): the guest index (le32, read-only) and a scratch
//! word (le32) the driver may write.

use crate::chain::DescChain;
use crate::device::{DeviceResult, Queues, VirtioDevice};
use crate::vring::GuestMem;

/// Device ID from the range the spec reserves for experiments.
pub const ECHO_DEVICE_ID: u32 = 0xfff0;

/// The echo device.
#[derive(Debug)]
pub struct Echo {
    guest: u32,
    seq: u64,
    config: [u8; 8],
    held: Vec<DescChain>,
}

impl Echo {
    /// The device for guest `guest`.
    pub fn new(guest: u32) -> Self {
        let mut config = [0; 8];
        config[..4].copy_from_slice(&guest.to_le_bytes());
        Echo {
            guest,
            seq: 0,
            config,
            held: Vec::new(),
        }
    }

    /// Answers one request; `None` keeps the chain.
    fn answer(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        let mut payload = [0u8; 16];
        let prefix_len = chain.reader(mem).available().min(payload.len());
        let prefix = payload.get_mut(..prefix_len)?;
        if chain.reader(mem).read_exact(prefix).is_err() {
            return Some(0);
        }
        if prefix.starts_with(b"execve") {
            // The sandbox tests' forbidden call: a device that never runs
            // programs asking to run one.
            return Some(forbidden_call());
        }
        if prefix.starts_with(b"open:") {
            return Some(open_probe(&chain, mem));
        }
        if prefix.starts_with(b"hold") {
            self.held.push(chain);
            return None;
        }
        Some(self.echo(&chain, mem))
    }

    fn echo(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        self.seq += 1;
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        if writer.write_obj(self.seq.to_le()).is_err()
            || writer.write_obj(self.guest.to_le()).is_err()
        {
            return writer.used_len();
        }
        // Copied through a small stack buffer: the benchmark uses this
        // device to measure the core, so it must not allocate. A reply that
        // does not fit is cut short; the used length says so.
        let mut buf = [0u8; 256];
        loop {
            let n = reader.available().min(writer.available()).min(buf.len());
            let Some(chunk) = buf.get_mut(..n) else {
                break;
            };
            if n == 0 || reader.read_exact(chunk).is_err() || writer.write_all(chunk).is_err() {
                break;
            }
        }
        writer.used_len()
    }
}

impl VirtioDevice for Echo {
    fn num_queues(&self) -> usize {
        1
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn write_config(&mut self, offset: u32, data: &[u8]) -> bool {
        crate::config::write(&mut self.config, 4..8, offset, data)
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        let Some(mut queue) = queues.get(index) else {
            return Ok(());
        };
        let mut release = false;
        queue.drain(|chain, mem| {
            let mut tag = [0u8; 7];
            if chain.reader(mem).read_exact(&mut tag).is_ok() && &tag == b"release" {
                release = true;
            }
            self.answer(chain, mem)
        });
        if release {
            for chain in std::mem::take(&mut self.held) {
                let len = self.echo(&chain, queue.memory());
                queue.complete(chain.head(), len);
            }
        }
        Ok(())
    }

    fn queue_stopped(&mut self, _index: usize) {
        self.held.clear();
    }

    fn reset(&mut self) {
        *self = Echo::new(self.guest);
    }
}

/// The Landlock tests' probe: `open:PATH` opens PATH read-only and answers
/// with the errno (le32, 0 when it opened).
fn open_probe(chain: &DescChain, mem: &GuestMem) -> u32 {
    use std::os::unix::ffi::OsStrExt;

    let mut request = [0u8; 256];
    let mut reader = chain.reader(mem);
    let len = reader.available().min(request.len());
    let Some(request) = request.get_mut(..len) else {
        return 0;
    };
    if reader.read_exact(request).is_err() {
        return 0;
    }
    let path = std::ffi::OsStr::from_bytes(request.get(5..).unwrap_or_default());
    let errno = match std::fs::File::open(path) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    let mut writer = chain.writer(mem);
    if writer.write_obj(errno.to_le()).is_err() {
        return 0;
    }
    writer.used_len()
}

/// Calls execve(2) on a path that does not exist, outside every daemon's
/// seccomp list: in kill mode the process dies of SIGSYS; otherwise the call
/// fails with ENOENT and the reply's used length is 0.
fn forbidden_call() -> u32 {
    let path = c"/nonexistent/vhost-device-seccomp-test";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: NUL-terminated path and NULL-terminated argv and envp that
    // outlive the call; the path does not exist, so nothing is executed.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    0
}
