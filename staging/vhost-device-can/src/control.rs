// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtual bus's control socket: one command per line, one answer line
//! each (`ok ...` or `error ...`).
//!
//! | command | effect |
//! | --- | --- |
//! | `busoff GUEST` | takes that guest's controller off the bus |
//! | `dropped` | `ok GUEST=N ...`: frames each guest's inbox dropped |

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use vhost_device_common::IoError;

use log::warn;

use vhost_device_common::SocketFileGuard;

use crate::backend::bus::VirtualBus;
use crate::error::Result;

/// Longest command line a client may send.
const MAX_COMMAND: u64 = 128;

/// Listens on `path` and serves each client on a thread of its own.
pub fn serve(bus: Arc<VirtualBus>, path: &Path) -> Result<SocketFileGuard> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| IoError::new(format!("{}", path.display()), e))?;
    // Started before `serve`: a host thread drops its capabilities itself
    // and leaves SIGTERM/SIGINT to the main thread.
    vhost_device_common::daemon::spawn_host_thread("can-bus-control", move || {
        for stream in listener.incoming().flatten() {
            let bus = bus.clone();
            let _ = thread::Builder::new()
                .name("can-bus-client".into())
                .spawn(move || {
                    if let Err(e) = serve_client(&bus, stream) {
                        warn!("bus control client: {e}");
                    }
                });
        }
    })
    .map_err(|e| IoError::new("control thread", io::Error::other(e.to_string())))?;
    Ok(SocketFileGuard::new(path))
}

fn serve_client(bus: &VirtualBus, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if Read::by_ref(&mut reader)
            .take(MAX_COMMAND)
            .read_line(&mut line)?
            == 0
        {
            return Ok(());
        }
        let answer = execute(bus, line.trim());
        writeln!(writer, "{answer}")?;
    }
}

/// Runs one command; the answer line.
pub fn execute(bus: &VirtualBus, command: &str) -> String {
    let mut words = command.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("busoff"), Some(guest), None) => match guest.parse::<usize>() {
            Ok(guest) if bus.force_bus_off(guest) => "ok".to_owned(),
            Ok(guest) => format!("error guest {guest} is not on the bus"),
            Err(_) => "error GUEST is a number".to_owned(),
        },
        (Some("dropped"), None, None) => {
            let counts: Vec<String> = bus
                .dropped()
                .iter()
                .map(|(g, n)| format!("{g}={n}"))
                .collect();
            format!("ok {}", counts.join(" "))
        }
        _ => "error commands: busoff GUEST, dropped".to_owned(),
    }
}
