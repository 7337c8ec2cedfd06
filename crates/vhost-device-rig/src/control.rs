// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control channel: a serial port the guest writes requests to
//! (`rig-screendump NAME`), served by a thread of the rig that talks to
//! QEMU's QMP socket.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    screendumps: Arc<Mutex<Vec<PathBuf>>>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    pub(crate) fn start(
        listener: UnixListener,
        qmp_path: PathBuf,
        dir: PathBuf,
    ) -> Result<Self, Error> {
        listener
            .set_nonblocking(true)
            .map_err(Error::io("control socket"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let screendumps = Arc::new(Mutex::new(Vec::new()));
        let log = File::create(dir.join("control.log")).map_err(Error::io("control.log"))?;
        let (s, d) = (stop.clone(), screendumps.clone());
        let thread = std::thread::Builder::new()
            .name("rig-control".into())
            .spawn(move || control_thread(&listener, &qmp_path, &dir, &s, &d, log))
            .map_err(Error::io("control thread"))?;
        Ok(Self {
            stop,
            screendumps,
            thread: Some(thread),
        })
    }

    pub(crate) fn finish(mut self) -> Vec<PathBuf> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.screendumps
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

fn control_thread(
    listener: &UnixListener,
    qmp_path: &Path,
    dir: &Path,
    stop: &AtomicBool,
    shots: &Mutex<Vec<PathBuf>>,
    mut log: File,
) {
    let mut qmp: Option<Qmp> = None;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                serve_control(stream, qmp_path, dir, stop, shots, &mut log, &mut qmp);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                let _ = writeln!(log, "accept: {e}");
                return;
            }
        }
    }
}

fn serve_control(
    stream: UnixStream,
    qmp_path: &Path,
    dir: &Path,
    stop: &AtomicBool,
    shots: &Mutex<Vec<PathBuf>>,
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
        let reply = match parse_control(&request) {
            Ok(ControlRequest::Screendump(name)) => {
                let file = dir.join(format!("{name}.png"));
                let result = match qmp {
                    Some(q) => Ok(q),
                    None => Qmp::connect(qmp_path, Instant::now() + Duration::from_secs(5))
                        .map(|q| qmp.insert(q)),
                }
                .and_then(|q| q.screendump(&file));
                match result {
                    Ok(()) if file.exists() => {
                        if let Ok(mut v) = shots.lock() {
                            v.push(file);
                        }
                        "ok".to_owned()
                    }
                    Ok(()) => format!("error: QEMU wrote no {}", file.display()),
                    Err(e) => format!("error: {e}"),
                }
            }
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(log, "rig: {reply}");
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}
