// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The transfer thread of one guest: runs the groups that reach a host
//! adapter, so that a transfer waiting on hardware (up to the adapter's
//! I2C_TIMEOUT) or on another guest's use of the same adapter never holds
//! the vring worker, the device lock or the vhost-user control path.
//!
//! One job at a time: the device hands over a group, stops taking requests
//! from the ring, and takes the next ones when the job comes back (the
//! eventfd [`Transfers::ready`] is registered on the worker's epoll). Linux
//! sends one `i2c_transfer()` at a time per adapter anyway, so a depth of
//! one costs nothing, keeps the guest's requests in order, and bounds what
//! is held to one group. Each guest has its own thread, so a guest whose
//! adapter is busy delays no other guest, except on that same adapter,
//! which serialises transfers in hardware too.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread;

use log::debug;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::{BusMap, I2cMsg, TransferError};

/// One group on its way to the thread and back.
#[derive(Debug)]
pub struct Job {
    /// The message slots; the first `count` are the group.
    pub msgs: Vec<I2cMsg>,
    /// Number of messages of the group.
    pub count: usize,
    /// What the transfer gave; `Ok` until it ran.
    pub result: Result<(), TransferError>,
    /// The device's generation when the job was sent: a job from before a
    /// queue stop or a reset has no chains left to answer.
    pub generation: u64,
}

/// What [`Transfers::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// Nothing came back (yet).
    Nothing,
    /// The job that came back.
    Job(Job),
    /// The thread is dead (it panicked, in an adapter's transfer, say): the
    /// job it had, if any, is lost. [`Transfers::restart`] starts another.
    Died,
}

/// The handle of a guest's transfer thread.
#[derive(Debug)]
pub struct Transfers {
    bus: BusMap,
    jobs: SyncSender<Job>,
    results: Receiver<Job>,
    ready: EventFd,
}

/// Signals the worker when the transfer thread unwinds, so that a thread
/// that died mid-transfer does not leave the guest's queue waiting for a
/// job that will never come back.
struct DeathNotice(EventFd);

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if thread::panicking() {
            let _ = self.0.write(1);
        }
    }
}

impl Transfers {
    /// Starts the thread, which transfers on `bus`.
    ///
    /// # Errors
    /// The eventfd or the thread could not be made.
    pub fn start(bus: BusMap) -> io::Result<Self> {
        let ready = EventFd::new(EFD_NONBLOCK)?;
        let (jobs, results) = spawn(bus.clone(), &ready)?;
        Ok(Transfers {
            bus,
            jobs,
            results,
            ready,
        })
    }

    /// Starts a new thread in place of a dead one, on the same eventfd (so
    /// the worker's registration stays).
    ///
    /// # Errors
    /// The thread could not be made.
    pub fn restart(&mut self) -> io::Result<()> {
        let (jobs, results) = spawn(self.bus.clone(), &self.ready)?;
        self.jobs = jobs;
        self.results = results;
        Ok(())
    }

    /// The eventfd that becomes readable when a job comes back or the
    /// thread dies.
    pub fn ready(&self) -> &EventFd {
        &self.ready
    }

    /// Hands `job` to the thread; gives it back if the thread is gone or
    /// (never, with one job out at a time) its slot is taken.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }

    /// The job that came back, or the news that the thread died. Clears the
    /// eventfd first, so that a job arriving meanwhile signals again.
    pub fn take(&self) -> Taken {
        let _ = self.ready.read();
        match self.results.try_recv() {
            Ok(job) => Taken::Job(job),
            Err(TryRecvError::Empty) => Taken::Nothing,
            Err(TryRecvError::Disconnected) => Taken::Died,
        }
    }
}

/// Starts a transfer thread on `bus` that signals `ready`; the channels to
/// and from it.
fn spawn(bus: BusMap, ready: &EventFd) -> io::Result<(SyncSender<Job>, Receiver<Job>)> {
    let signal = ready.try_clone()?;
    let notice = DeathNotice(ready.try_clone()?);
    // One job is out at a time; the slot makes sending never wait.
    let (jobs, inbox) = mpsc::sync_channel::<Job>(1);
    let (outbox, results) = mpsc::sync_channel::<Job>(1);
    thread::Builder::new()
        .name("i2c-transfer".into())
        .spawn(move || {
            // Dropped last: on a panic the channels are gone by then, so
            // the worker's `take` sees the thread dead when it wakes.
            let _notice = notice;
            let (inbox, outbox) = (inbox, outbox);
            // Ends when the device drops its handle.
            while let Ok(mut job) = inbox.recv() {
                let msgs = job.msgs.get_mut(..job.count).unwrap_or_default();
                job.result = bus.transfer(msgs);
                if outbox.send(job).is_err() {
                    break;
                }
                // The counter cannot overflow with one job out at a time.
                let _ = signal.write(1);
            }
            debug!("i2c transfer thread ends");
        })?;
    Ok((jobs, results))
}
