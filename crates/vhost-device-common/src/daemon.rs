// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The daemon: one thread per socket, a fresh device per connection, and a
//! clean exit on SIGTERM or SIGINT.
//!
//! The listening socket is bound once and kept for the life of the process,
//! so the socket file never disappears between frontends: QEMU can reconnect
//! (or a new QEMU can start) at any moment. Each accepted connection gets a
//! device built by the caller's factory, so no state leaks from one guest
//! session into the next.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use log::{error, info, warn};
use vhost::vhost_user::Listener;
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::device::{worker_epoll, DeviceBackend, VirtioDevice};
use crate::error::{Error, Result};
use crate::sandbox::SandboxPolicy;
use crate::socket::{BoundSocket, SocketArgs};

pub use crate::error::FactoryError;

/// Builds the device for guest `index` (the socket's position). Called for
/// every new connection.
pub trait DeviceFactory<D>:
    Fn(usize) -> std::result::Result<D, FactoryError> + Send + Sync + 'static
{
}
impl<D, F> DeviceFactory<D> for F where
    F: Fn(usize) -> std::result::Result<D, FactoryError> + Send + Sync + 'static
{
}

/// Serves the sockets `sockets` names until SIGTERM or SIGINT, then removes
/// the socket files it created and returns `Ok`. Once the sockets are
/// bound, the process is sandboxed as `sockets.sandbox` and
/// the device's [`VirtioDevice::seccomp_policy`] say, with no paths and no
/// capabilities kept ([`SandboxPolicy::of`]); a device that opens files or
/// keeps capabilities uses [`serve_with`].
///
/// Call it from the main thread before starting any other thread: it blocks
/// the two signals so that only its own wait sees them. A thread started
/// earlier (a device's control socket, say) must block them itself, or the
/// kernel may deliver SIGTERM to it and kill the process without cleanup;
/// [`block_stop_signals`] does that.
pub fn serve<D: VirtioDevice>(
    name: &str,
    sockets: &SocketArgs,
    factory: impl DeviceFactory<D>,
) -> Result<()> {
    serve_with(name, sockets, &SandboxPolicy::of::<D>(), factory)
}

/// [`serve`], with the sandbox `policy` (what the device needs once set
/// up: see [`crate::sandbox`]).
pub fn serve_with<D: VirtioDevice>(
    name: &str,
    sockets: &SocketArgs,
    policy: &SandboxPolicy,
    factory: impl DeviceFactory<D>,
) -> Result<()> {
    let signals = block_stop_signals()?;
    let bound = sockets.bind()?;
    // Setup is done once the sockets are bound. Sandboxed before the first
    // accept, so no frontend ever talks to an unsandboxed daemon; the
    // socket and vring threads inherit it.
    sockets.sandbox.install(policy, &sockets.paths())?;
    let daemon = Daemon::start(name, bound, sockets.busy_poll(), factory)?;
    daemon.wait_for(signals.as_fd())
}

/// A running daemon: its socket threads and the means to stop them.
pub struct Daemon {
    stop: Arc<EventFd>,
    finished: Arc<EventFd>,
    threads: Vec<thread::JoinHandle<Result<()>>>,
    connections: Vec<Arc<Mutex<Option<ShutdownHandle>>>>,
}

impl Daemon {
    /// Starts one thread per socket. Queues are polled for `busy_poll`
    /// after each batch (see [`SocketArgs::busy_poll`]).
    pub fn start<D: VirtioDevice>(
        name: &str,
        sockets: Vec<BoundSocket>,
        busy_poll: Duration,
        factory: impl DeviceFactory<D>,
    ) -> Result<Self> {
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(Error::io("eventfd"))?);
        let finished = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(Error::io("eventfd"))?);
        let factory = Arc::new(factory);
        let mut threads = Vec::new();
        let mut connections = Vec::new();
        for (index, socket) in sockets.into_iter().enumerate() {
            let slot = Arc::new(Mutex::new(None));
            let worker = SocketWorker {
                name: format!("{name}-{index}"),
                index,
                socket,
                busy_poll,
                stop: stop.clone(),
                connection: slot.clone(),
            };
            let factory = factory.clone();
            let finished = finished.clone();
            let handle = thread::Builder::new()
                .name(worker.name.clone())
                .spawn(move || {
                    let result = worker.run(&*factory);
                    if let Err(e) = &result {
                        error!("{}: {e}", worker.socket.name());
                    }
                    let _ = finished.write(1);
                    result
                })
                .map_err(Error::io("spawn socket thread"))?;
            threads.push(handle);
            connections.push(slot);
        }
        Ok(Daemon {
            stop,
            finished,
            threads,
            connections,
        })
    }

    /// Waits until `signals` (a signalfd) fires or every socket thread has
    /// ended, then stops the rest.
    pub fn wait_for(self, signals: BorrowedFd<'_>) -> Result<()> {
        let mut ended = 0;
        while ended < self.threads.len() {
            let (signalled, finished) = poll_pair(signals.as_raw_fd(), self.finished.as_raw_fd())?;
            if signalled != 0 {
                info!("stop signal received, shutting down");
                break;
            }
            if finished != 0 {
                ended += usize::try_from(self.finished.read().unwrap_or(0)).unwrap_or(0);
            }
        }
        self.stop()
    }

    /// Stops every socket thread, closing live connections, and returns the
    /// first error any of them had. Socket files are removed as the threads
    /// drop their sockets.
    pub fn stop(self) -> Result<()> {
        let _ = self.stop.write(1);
        for slot in &self.connections {
            if let Some(handle) = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
            {
                handle.shutdown();
            }
        }
        let mut first_error = None;
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::Daemon {
                        socket: "socket thread".into(),
                        reason: "panicked".into(),
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("sockets", &self.threads.len())
            .finish_non_exhaustive()
    }
}

struct SocketWorker {
    name: String,
    index: usize,
    socket: BoundSocket,
    busy_poll: Duration,
    stop: Arc<EventFd>,
    connection: Arc<Mutex<Option<ShutdownHandle>>>,
}

impl SocketWorker {
    fn run<D: VirtioDevice>(
        &self,
        factory: &dyn Fn(usize) -> std::result::Result<D, FactoryError>,
    ) -> Result<()> {
        let daemon_error = |reason: String| Error::Daemon {
            socket: self.socket.name().to_owned(),
            reason,
        };
        // vhost's Listener over a duplicate: it would otherwise own (and on
        // drop close) the socket that must outlive every connection.
        let mut listener = Listener::from(
            self.socket
                .listener()
                .try_clone()
                .map_err(Error::io("dup listener"))?,
        );
        info!("{}: waiting for a frontend", self.socket.name());
        while self.wait_readable()? {
            let device = match factory(self.index) {
                Ok(device) => device,
                Err(source) => {
                    // Refuse this frontend cleanly rather than leave it hanging.
                    error!(
                        "{}: {}",
                        self.socket.name(),
                        Error::Device {
                            guest: self.index,
                            source
                        }
                    );
                    let _ = listener.accept();
                    continue;
                }
            };
            let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
            let backend = DeviceBackend::new(device, mem.clone())
                .map_err(Error::io("eventfd"))?
                .with_busy_poll(self.busy_poll);
            let mut daemon = VhostUserDaemon::new(self.name.clone(), backend.clone(), mem)
                .map_err(|e| daemon_error(e.to_string()))?;
            let activated = daemon
                .get_epoll_handlers()
                .iter()
                .try_for_each(|handler| backend.activate(worker_epoll(&**handler)));
            if let Err(e) = activated {
                error!("{}: device activation failed: {e}", self.socket.name());
                backend.stop_worker();
                let _ = listener.accept();
                continue;
            }
            if let Err(e) = daemon.start(&mut listener) {
                warn!("{}: accept failed: {e}", self.socket.name());
                backend.stop_worker();
                continue;
            }
            info!("{}: frontend connected", self.socket.name());
            *self.lock_connection() = daemon.shutdown_handle();
            if self.stop_requested() {
                daemon.request_shutdown();
            }
            match daemon.wait() {
                Ok(()) => info!("{}: frontend disconnected", self.socket.name()),
                // A frontend that goes away without a word (QEMU quitting or
                // killed) is normal life for a daemon.
                Err(vhost_user_backend::Error::HandleRequest(
                    vhost::vhost_user::Error::Disconnected
                    | vhost::vhost_user::Error::PartialMessage,
                )) => info!("{}: frontend disconnected", self.socket.name()),
                Err(e) => warn!("{}: connection ended: {e}", self.socket.name()),
            }
            *self.lock_connection() = None;
            backend.stop_worker();
            // Dropping the daemon joins the vring worker.
        }
        Ok(())
    }

    fn lock_connection(&self) -> std::sync::MutexGuard<'_, Option<ShutdownHandle>> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stop_requested(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&raw mut fd, 1, 0) > 0 }
    }

    /// Waits for a connection (true) or the stop event (false).
    fn wait_readable(&self) -> Result<bool> {
        loop {
            let (listener, stop) =
                poll_pair(self.socket.listener().as_raw_fd(), self.stop.as_raw_fd())?;
            if stop != 0 {
                return Ok(false);
            }
            if listener & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(Error::Daemon {
                    socket: self.socket.name().to_owned(),
                    reason: "listening socket failed".into(),
                });
            }
            if listener != 0 {
                return Ok(true);
            }
        }
    }
}

/// Waits with no timeout until `first` or `second` is readable or fails,
/// and returns what `poll` reported for each.
fn poll_pair(first: RawFd, second: RawFd) -> Result<(libc::c_short, libc::c_short)> {
    loop {
        let mut fds = [first, second].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: fds is a valid array of two pollfd for the call.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ret >= 0 {
            let [a, b] = fds;
            return Ok((a.revents, b.revents));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::Io {
                what: "poll",
                source: e,
            });
        }
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread it
/// starts) and returns a signalfd that reports them.
pub fn block_stop_signals() -> Result<OwnedFd> {
    let set = mask_stop_signals()?;
    // SAFETY: `set` is a valid, initialised sigset_t.
    let fd = unsafe { libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::Io {
            what: "signalfd",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks SIGTERM and SIGINT in this thread; the set blocked.
fn mask_stop_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for all of these calls.
    let blocked = unsafe {
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut())
    };
    if blocked != 0 {
        return Err(Error::Io {
            what: "block signals",
            source: io::Error::last_os_error(),
        });
    }
    Ok(set)
}

/// Starts a thread that serves the host, not the guest (a device's control
/// socket), before [`serve`]: it runs `body` with SIGTERM and SIGINT
/// blocked (they are the main thread's to wait for) and without any
/// capability, bounding set included. Capabilities belong to a thread, so
/// [`serve`]'s drop cannot reach a thread started before it; this one drops
/// its own before `spawn_host_thread` returns, so before the seccomp filter
/// (which does not allow `capset`) is installed. Threads `body` starts
/// inherit both.
pub fn spawn_host_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<thread::JoinHandle<()>> {
    let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let setup = mask_stop_signals()
                .and_then(|_| crate::sandbox::caps::drop_all_but(Default::default()).map(drop));
            let ok = setup.is_ok();
            let _ = ready_tx.send(setup);
            if ok {
                body();
            }
        })
        .map_err(Error::io("spawn a host thread"))?;
    match ready.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Daemon {
            socket: name.to_owned(),
            reason: "its thread ended before it was set up".into(),
        }),
    }
}
