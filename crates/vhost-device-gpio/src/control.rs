// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The client side of a simulated chip's control socket.
//!
//! The protocol is one command per line, one reply per line:
//!
//! ```text
//! lines            -> ok <count>
//! set <line> 0|1   -> ok              (drive an input from outside)
//! get <line>       -> ok 0|1          (the level the guest sees or drives)
//! info <line>      -> ok direction=... value=... output=... drive=... edges=...
//! anything wrong   -> err <reason>
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::Command;
use crate::error::{Error, Result};

/// A connection to a control socket.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<Self> {
        let err = |what| {
            let path = path.to_owned();
            move |source| Error::Control { path, what, source }
        };
        let stream = UnixStream::connect(path).map_err(err("connect"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(err("set timeout"))?;
        let writer = stream.try_clone().map_err(err("clone"))?;
        Ok(ControlClient {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one command and returns what follows `ok` in the reply.
    pub fn command(&mut self, command: &str) -> Result<String> {
        let err = |what| {
            let path = self.path.clone();
            move |source| Error::Control { path, what, source }
        };
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(err("send"))?;
        let mut reply = String::new();
        self.reader.read_line(&mut reply).map_err(err("receive"))?;
        let reply = reply.trim_end();
        if let Some(rest) = reply.strip_prefix("ok") {
            Ok(rest.trim_start().to_owned())
        } else {
            Err(Error::ControlReply {
                path: self.path.clone(),
                reply: if reply.is_empty() {
                    "connection closed".into()
                } else {
                    reply.to_owned()
                },
            })
        }
    }

    /// Drives `line` to `value`.
    pub fn set(&mut self, line: u16, value: bool) -> Result<()> {
        self.command(&format!("set {line} {}", u8::from(value)))
            .map(drop)
    }

    /// The level on `line`.
    pub fn get(&mut self, line: u16) -> Result<bool> {
        let reply = self.command(&format!("get {line}"))?;
        match reply.as_str() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(Error::ControlReply {
                path: self.path.clone(),
                reply: format!("unexpected reply '{other}'"),
            }),
        }
    }

    /// The description of `line`.
    pub fn info(&mut self, line: u16) -> Result<String> {
        self.command(&format!("info {line}"))
    }
}

/// Parses `LINE=VALUE`.
pub fn parse_assignment(text: &str) -> Result<(u16, bool)> {
    let bad = |reason: &str| Error::Flag {
        flag: "sim-set",
        reason: format!("'{text}': {reason}"),
    };
    let (line, value) = text
        .split_once('=')
        .ok_or_else(|| bad("expected LINE=0 or LINE=1"))?;
    let line = line
        .trim()
        .parse::<u16>()
        .map_err(|_| bad("the line is not a number"))?;
    let value = match value.trim() {
        "0" => false,
        "1" => true,
        _ => return Err(bad("the value must be 0 or 1")),
    };
    Ok((line, value))
}

/// Runs a subcommand, printing its results on stdout.
pub fn run(command: &Command) -> Result<()> {
    match command {
        Command::SimSet { control, values } => {
            // Parse everything first: a typo must not leave half applied.
            let assignments = values
                .iter()
                .map(|v| parse_assignment(v))
                .collect::<Result<Vec<_>>>()?;
            let mut client = ControlClient::connect(control)?;
            for (line, value) in assignments {
                client.set(line, value)?;
            }
        }
        Command::SimGet { control, lines } => {
            let mut client = ControlClient::connect(control)?;
            for &line in lines {
                println!("{line}={}", u8::from(client.get(line)?));
            }
        }
        Command::SimInfo { control, lines } => {
            let mut client = ControlClient::connect(control)?;
            for &line in lines {
                println!("{line}: {}", client.info(line)?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn assignments() {
        assert_eq!(parse_assignment("3=1").unwrap(), (3, true));
        assert_eq!(parse_assignment(" 0 = 0 ").unwrap(), (0, false));
        for bad in ["3", "x=1", "3=2", "=1", "70000=1", "3=high"] {
            let e = parse_assignment(bad).unwrap_err().to_string();
            assert!(e.contains(bad.trim()), "{e}");
            assert!(!e.contains('\n'));
        }
    }
}
