// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control channel: a serial port the guest writes requests to
//! (`rig-screendump NAME`, and `boot` and `reset` from the prelude of a
//! scenario with [`crate::Scenario::resets`]), served by a thread of the rig that talks to
//! QEMU's QMP socket.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::qmp::Qmp;
use crate::text::{parse_control, ControlRequest};
use crate::Error;

/// How often the control thread looks for a connection.
const POLL: Duration = Duration::from_millis(50);

pub(crate) struct Control {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the control thread and the rig share.
struct Shared {
    qmp_path: PathBuf,
    dir: PathBuf,
    screendumps: Mutex<Vec<PathBuf>>,
    /// Resets done so far: the guest runs boot `resets + 1`.
    resets: AtomicU32,
    /// How many resets the scenario allows.
    max_resets: u32,
}

/// What a run's control channel saw.
pub(crate) struct ControlReport {
    pub(crate) screendumps: Vec<PathBuf>,
    pub(crate) resets: u32,
}

impl Control {
    pub(crate) fn start(
        listener: UnixListener,
        qmp_path: PathBuf,
        dir: PathBuf,
        max_resets: u32,
    ) -> Result<Self, Error> {
        listener
            .set_nonblocking(true)
            .map_err(Error::io("control socket"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = File::create(dir.join("control.log")).map_err(Error::io("control.log"))?;
        let shared = Arc::new(Shared {
            qmp_path,
            dir,
            screendumps: Mutex::new(Vec::new()),
            resets: AtomicU32::new(0),
            max_resets,
        });
        let (s, sh) = (stop.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("rig-control".into())
            .spawn(move || control_thread(&listener, &sh, &s, log))
            .map_err(Error::io("control thread"))?;
        Ok(Self {
            stop,
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn finish(mut self) -> ControlReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        ControlReport {
            screendumps: self
                .shared
                .screendumps
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
            resets: self.shared.resets.load(Ordering::SeqCst),
        }
    }
}

fn control_thread(listener: &UnixListener, shared: &Shared, stop: &AtomicBool, mut log: File) {
    let mut qmp: Option<Qmp> = None;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve_control(stream, shared, stop, &mut log, &mut qmp),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                let _ = writeln!(log, "accept: {e}");
                return;
            }
        }
    }
}

/// The QMP session, connected on first use.
fn session<'a>(qmp: &'a mut Option<Qmp>, path: &Path) -> Result<&'a mut Qmp, String> {
    match qmp {
        Some(q) => Ok(q),
        None => Qmp::connect(path, Instant::now() + Duration::from_secs(5)).map(|q| qmp.insert(q)),
    }
}

/// Something to do once the reply is on its way to the guest.
enum After {
    Nothing,
    /// Reset the machine: the guest has its `ok` before the reset, so no
    /// stale reply waits for the next boot.
    Reset,
}

fn answer(request: &str, shared: &Shared, qmp: &mut Option<Qmp>) -> (String, After) {
    match parse_control(request) {
        Ok(ControlRequest::Screendump(name)) => {
            let file = shared.dir.join(format!("{name}.png"));
            let reply = match session(qmp, &shared.qmp_path).and_then(|q| q.screendump(&file)) {
                Ok(()) if file.exists() => {
                    if let Ok(mut v) = shared.screendumps.lock() {
                        v.push(file);
                    }
                    "ok".to_owned()
                }
                Ok(()) => format!("error: QEMU wrote no {}", file.display()),
                Err(e) => format!("error: {e}"),
            };
            (reply, After::Nothing)
        }
        Ok(ControlRequest::Boot) => (
            format!(
                "boot {}",
                shared.resets.load(Ordering::SeqCst).saturating_add(1)
            ),
            After::Nothing,
        ),
        Ok(ControlRequest::Reset) => {
            let done = shared.resets.load(Ordering::SeqCst);
            if done >= shared.max_resets {
                let reply = format!(
                    "error: this scenario allows {} reset(s), see Scenario::resets",
                    shared.max_resets
                );
                return (reply, After::Nothing);
            }
            match session(qmp, &shared.qmp_path).and_then(|q| q.set_reboot_action("reset")) {
                Ok(()) => ("ok".to_owned(), After::Reset),
                Err(e) => (format!("error: {e}"), After::Nothing),
            }
        }
        Err(e) => (format!("error: {e}"), After::Nothing),
    }
}

/// Resets the machine; the reboot action goes back to `shutdown` after it,
/// so a guest reboot or panic still ends QEMU.
fn reset(shared: &Shared, qmp: &mut Option<Qmp>, log: &mut File) {
    // Counted first: the next boot asks for its number as soon as it runs.
    shared.resets.fetch_add(1, Ordering::SeqCst);
    let result = session(qmp, &shared.qmp_path).and_then(|q| {
        let reset = q.system_reset();
        reset.and(q.set_reboot_action("shutdown"))
    });
    let _ = match result {
        Ok(()) => writeln!(log, "rig: system_reset done"),
        Err(e) => writeln!(log, "rig: system_reset failed: {e}"),
    };
}

fn serve_control(
    stream: UnixStream,
    shared: &Shared,
    stop: &AtomicBool,
    log: &mut File,
    qmp: &mut Option<Qmp>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {}
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                let _ = writeln!(log, "read: {e}");
                return;
            }
        }
        let request = std::mem::take(&mut line);
        let _ = writeln!(log, "guest: {}", request.trim());
        let (reply, after) = answer(&request, shared, qmp);
        let _ = writeln!(log, "rig: {reply}");
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
        if matches!(after, After::Reset) {
            reset(shared, qmp, log);
        }
    }
}
