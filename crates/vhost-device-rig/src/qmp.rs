// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A minimal QMP client: enough to negotiate capabilities and run a command.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A connected QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Quotes `s` as a JSON string.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The outcome of one QMP reply line: `Some(Ok)` for a return, `Some(Err)` for
/// an error, `None` for anything else (events, the greeting).
pub fn classify_reply(line: &str) -> Option<Result<String, String>> {
    let l = line.trim_start();
    if l.starts_with("{\"return\"") || l.contains("\"return\":") && !l.contains("\"event\"") {
        Some(Ok(line.trim().to_owned()))
    } else if l.starts_with("{\"error\"") || l.contains("\"error\":") && !l.contains("\"event\"") {
        Some(Err(line.trim().to_owned()))
    } else {
        None
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket, retrying until `deadline`, and leaves
    /// negotiation mode.
    ///
    /// # Errors
    /// A message when the socket cannot be reached or QEMU refuses.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Self, String> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot connect to QMP at {}: {e}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let mut greeting = String::new();
        qmp.reader
            .read_line(&mut greeting)
            .map_err(|e| format!("no QMP greeting: {e}"))?;
        if !greeting.contains("\"QMP\"") {
            return Err(format!("unexpected QMP greeting: {}", greeting.trim()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with optional JSON `arguments` and waits for its reply.
    ///
    /// # Errors
    /// QEMU's error reply, or an I/O problem.
    pub fn execute(&mut self, command: &str, arguments: Option<&str>) -> Result<String, String> {
        let msg = match arguments {
            Some(a) => format!(
                "{{\"execute\":{},\"arguments\":{a}}}\n",
                json_string(command)
            ),
            None => format!("{{\"execute\":{}}}\n", json_string(command)),
        };
        self.writer
            .write_all(msg.as_bytes())
            .map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("QMP read: {e}"))?;
            if n == 0 {
                return Err("QMP connection closed".to_owned());
            }
            if let Some(result) = classify_reply(&line) {
                return result;
            }
        }
    }

    /// Writes a PNG screendump of the guest display to `file`.
    ///
    /// # Errors
    /// QEMU's error reply, or an I/O problem.
    pub fn screendump(&mut self, file: &Path) -> Result<(), String> {
        let args = format!(
            "{{\"filename\":{},\"format\":\"png\"}}",
            json_string(&file.to_string_lossy())
        );
        self.execute("screendump", Some(&args)).map(|_| ())
    }

    /// Sets what QEMU does when the guest or QMP asks for a reset:
    /// `"reset"`, or `"shutdown"` as `-no-reboot` (the rig's default) does.
    /// QEMU applies the action when a reset is requested, so switching back
    /// right after a `system_reset` does not undo it.
    ///
    /// # Errors
    /// QEMU's error reply, or an I/O problem.
    pub fn set_reboot_action(&mut self, action: &str) -> Result<(), String> {
        let args = format!("{{\"reboot\":{}}}", json_string(action));
        self.execute("set-action", Some(&args)).map(|_| ())
    }

    /// Resets the machine, as the reset button would (under `-no-reboot`,
    /// first [`Self::set_reboot_action`] `"reset"`, or QEMU shuts down).
    ///
    /// # Errors
    /// QEMU's error reply, or an I/O problem.
    pub fn system_reset(&mut self) -> Result<(), String> {
        self.execute("system_reset", None).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_quoting() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(json_string("/tmp/x.png"), "\"/tmp/x.png\"");
    }

    #[test]
    fn reply_classification() {
        assert_eq!(
            classify_reply("{\"return\": {}}"),
            Some(Ok("{\"return\": {}}".into()))
        );
        assert!(matches!(
            classify_reply("{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}"),
            Some(Err(_))
        ));
        assert_eq!(
            classify_reply("{\"timestamp\": {}, \"event\": \"RESUME\"}"),
            None
        );
        assert_eq!(classify_reply("{\"QMP\": {\"version\": {}}}"), None);
    }
}
