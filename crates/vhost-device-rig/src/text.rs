// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Pure text handling: placeholder substitution in arguments and the markers
//! the guest's `/init` prints on the serial console.

use std::time::Duration;

/// Values for the `{...}` placeholders of backend and QEMU arguments.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// `{dir}`: the scenario's log directory (kept after the run).
    pub dir: String,
    /// `{run}`: the scenario's short-lived runtime directory (sockets).
    pub run: String,
    /// `{sockN}`: the socket of backend N; `{sock}` is resolved by [`Self::own`].
    pub sockets: Vec<String>,
    /// `{sock}` means this backend's own socket (in a backend's arguments) or
    /// backend 0's socket (in QEMU's arguments).
    pub own: usize,
}

impl Placeholders {
    /// The same placeholders with `{sock}` meaning backend `index`'s socket.
    pub fn for_backend(&self, index: usize) -> Self {
        Self {
            own: index,
            ..self.clone()
        }
    }

    /// Replaces `{dir}`, `{run}`, `{sock}` and `{sockN}` in `arg`. `{{` and `}}`
    /// give literal braces; an unknown placeholder is an error, so a typo does
    /// not reach QEMU as a path.
    ///
    /// # Errors
    /// The unknown or unterminated placeholder.
    pub fn substitute(&self, arg: &str) -> Result<String, String> {
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(pos) = rest.find(['{', '}']) {
            let (head, tail) = rest.split_at(pos);
            out.push_str(head);
            if let Some(t) = tail.strip_prefix("{{") {
                out.push('{');
                rest = t;
                continue;
            }
            if let Some(t) = tail.strip_prefix("}}") {
                out.push('}');
                rest = t;
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!("unmatched '}}' in argument {arg:?}"));
            }
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in argument {arg:?}"))?;
            let key = tail.get(1..end).unwrap_or_default();
            out.push_str(&self.lookup(key).ok_or_else(|| {
                format!(
                    "unknown placeholder {{{key}}} in argument {arg:?} \
                     (known: {{dir}} {{run}} {{sock}} {{sock0}}..{{sock{}}})",
                    self.sockets.len().saturating_sub(1)
                )
            })?);
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, key: &str) -> Option<String> {
        match key {
            "dir" => Some(self.dir.clone()),
            "run" => Some(self.run.clone()),
            "sock" => self.sockets.get(self.own).cloned(),
            _ => {
                let n: usize = key.strip_prefix("sock")?.parse().ok()?;
                self.sockets.get(n).cloned()
            }
        }
    }

    /// Substitutes every argument.
    ///
    /// # Errors
    /// The first argument that fails [`Self::substitute`].
    pub fn substitute_all(&self, args: &[String]) -> Result<Vec<String>, String> {
        args.iter().map(|a| self.substitute(a)).collect()
    }
}

/// Marker printed by `/init` just before it runs the scenario script, with the
/// guest's uptime in seconds.
pub const START_MARKER: &str = "@@RIG-START";
/// Marker printed by `/init` after the script, with its exit code.
pub const EXIT_MARKER: &str = "@@RIG-EXIT";

/// What the serial log says so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SerialState {
    /// Byte offset just past the start marker's line, if it was seen.
    pub script_started_at: Option<usize>,
    /// Guest uptime when the script started.
    pub guest_uptime_at_start: Option<Duration>,
    /// Byte offset of the exit marker's line, if it was seen.
    pub script_ended_at: Option<usize>,
    /// The guest script's exit code, once the exit marker was seen.
    pub exit_code: Option<i32>,
}

/// Finds `@@KEY value@@` markers in a serial log. Markers must start a line
/// (after an optional carriage return), so a script that echoes the marker
/// text inside another line does not fool the rig.
pub fn parse_serial(log: &str) -> SerialState {
    let mut state = SerialState::default();
    let mut offset = 0;
    for line in log.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let l = line.trim_matches(['\r', '\n']);
        // Only complete lines count.
        if !line.ends_with('\n') {
            break;
        }
        if let Some(v) = marker_value(l, START_MARKER) {
            if state.script_started_at.is_none() {
                state.script_started_at = Some(offset);
                state.guest_uptime_at_start = v.parse::<f64>().ok().and_then(|s| {
                    if s.is_finite() && s >= 0.0 {
                        Some(Duration::from_secs_f64(s))
                    } else {
                        None
                    }
                });
            }
        } else if let Some(v) = marker_value(l, EXIT_MARKER) {
            if let Ok(code) = v.parse::<i32>() {
                state.script_ended_at = Some(start);
                state.exit_code = Some(code);
            }
        }
    }
    state
}

fn marker_value<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.strip_prefix(marker)?
        .strip_prefix(' ')?
        .strip_suffix("@@")
        .map(str::trim)
}

/// The part of the serial log the guest script printed (between the markers),
/// or everything after the start marker if the script did not finish.
pub fn guest_output<'a>(log: &'a str, state: &SerialState) -> &'a str {
    let Some(start) = state.script_started_at else {
        return "";
    };
    let end = state.script_ended_at.unwrap_or(log.len());
    log.get(start..end).unwrap_or_default()
}

/// A request the guest sends on the control serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// `screendump NAME`: take a screendump now, save it as `NAME.png`.
    Screendump(String),
    /// `boot`: which boot of the scenario this is (answered `boot N`, from 1).
    Boot,
    /// `reset`: reset the machine now (QMP `system_reset`), as far as the
    /// scenario's [`crate::Scenario::resets`] allows.
    Reset,
}

/// Parses one line of the control channel.
///
/// # Errors
/// A message for the guest when the line is not a valid request.
pub fn parse_control(line: &str) -> Result<ControlRequest, String> {
    let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "screendump" => {
            let name = arg.trim();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                Err(format!(
                    "bad screendump name {name:?} (want [A-Za-z0-9_-]{{1,64}})"
                ))
            } else {
                Ok(ControlRequest::Screendump(name.to_owned()))
            }
        }
        "boot" | "reset" if !arg.trim().is_empty() => {
            Err(format!("{cmd} takes no argument (got {:?})", arg.trim()))
        }
        "boot" => Ok(ControlRequest::Boot),
        "reset" => Ok(ControlRequest::Reset),
        _ => Err(format!("unknown request {cmd:?}")),
    }
}

/// Whether `name` is usable as a scenario name (directory name, one line).
pub fn valid_scenario_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn ph() -> Placeholders {
        Placeholders {
            dir: "/logs/x".into(),
            run: "/tmp/r".into(),
            sockets: vec!["/tmp/r/vhost-0.sock".into(), "/tmp/r/vhost-1.sock".into()],
            own: 0,
        }
    }

    #[test]
    fn substitutes_placeholders() {
        let p = ph();
        assert_eq!(
            p.substitute("socket,id=c0,path={sock}").unwrap(),
            "socket,id=c0,path=/tmp/r/vhost-0.sock"
        );
        assert_eq!(p.substitute("{sock1}").unwrap(), "/tmp/r/vhost-1.sock");
        assert_eq!(
            p.for_backend(1).substitute("{sock}").unwrap(),
            "/tmp/r/vhost-1.sock"
        );
        assert_eq!(p.substitute("{dir}/a-{run}").unwrap(), "/logs/x/a-/tmp/r");
        assert_eq!(p.substitute("plain").unwrap(), "plain");
        assert_eq!(p.substitute("{{json}}").unwrap(), "{json}");
        assert_eq!(p.substitute("").unwrap(), "");
    }

    #[test]
    fn rejects_bad_placeholders() {
        let p = ph();
        assert!(p.substitute("{sock2}").unwrap_err().contains("sock2"));
        assert!(p.substitute("{nope}").unwrap_err().contains("unknown"));
        assert!(p.substitute("{dir").unwrap_err().contains("unterminated"));
        assert!(p.substitute("a}b").unwrap_err().contains("unmatched"));
        let none = Placeholders::default();
        none.substitute("{sock}").unwrap_err();
    }

    #[test]
    fn parses_markers() {
        let log =
            "[    1.0] boot\n@@RIG-START 4.94@@\r\nhello\nworld\n@@RIG-EXIT 3@@\n[ 5.0] reboot\n";
        let s = parse_serial(log);
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(s.guest_uptime_at_start, Some(Duration::from_millis(4940)));
        assert_eq!(guest_output(log, &s), "hello\nworld\n");
    }

    #[test]
    fn incomplete_or_embedded_markers_do_not_count() {
        let s = parse_serial("@@RIG-START 1@@\necho @@RIG-EXIT 0@@\n@@RIG-EXIT 0@@");
        assert!(s.script_started_at.is_some());
        assert_eq!(s.exit_code, None);
        let s = parse_serial("@@RIG-EXIT x@@\n");
        assert_eq!(s.exit_code, None);
        let s = parse_serial("no markers at all\n");
        assert_eq!(s, SerialState::default());
        assert_eq!(guest_output("x", &s), "");
    }

    #[test]
    fn output_of_an_unfinished_script() {
        let log = "@@RIG-START 2.5@@\nstill running\n";
        let s = parse_serial(log);
        assert_eq!(s.exit_code, None);
        assert_eq!(guest_output(log, &s), "still running\n");
    }

    #[test]
    fn negative_exit_code() {
        assert_eq!(parse_serial("@@RIG-EXIT -1@@\n").exit_code, Some(-1));
    }

    #[test]
    fn control_requests() {
        assert_eq!(
            parse_control("screendump console-1\n").unwrap(),
            ControlRequest::Screendump("console-1".into())
        );
        parse_control("screendump ../../etc/passwd").unwrap_err();
        parse_control("screendump").unwrap_err();
        parse_control("reboot now").unwrap_err();
        assert_eq!(parse_control("boot\n").unwrap(), ControlRequest::Boot);
        assert_eq!(parse_control("reset\r\n").unwrap(), ControlRequest::Reset);
        parse_control("reset now").unwrap_err();
        parse_control("boot 2").unwrap_err();
    }

    #[test]
    fn names_and_quoting() {
        assert!(valid_scenario_name("i2c-basic_1.x"));
        assert!(!valid_scenario_name("a/b"));
        assert!(!valid_scenario_name(""));
        assert!(!valid_scenario_name(".hidden"));
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(tail_lines("1\n2\n3\n", 2), "2\n3");
    }
}
