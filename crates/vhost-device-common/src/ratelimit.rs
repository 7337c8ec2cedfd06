// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Rate-limited warnings, so a misbehaving guest cannot flood the host log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::warn;

/// Messages allowed per window before the rest are only counted.
const BURST: u32 = 10;
/// Length of a window.
const WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Logs at most 10 warnings per 5 seconds, then says how many it
/// dropped.
#[derive(Debug)]
pub struct RateLimited {
    window: Mutex<Window>,
}

impl Default for RateLimited {
    fn default() -> Self {
        RateLimited {
            window: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }
}

impl RateLimited {
    /// Logs the message `msg` builds, unless the window is full. The message
    /// is only built when it will be logged.
    pub fn warn(&self, msg: impl FnOnce() -> String) {
        if !log::log_enabled!(log::Level::Warn) {
            return;
        }
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(window.start) >= WINDOW {
            if window.suppressed > 0 {
                warn!("{} similar warnings suppressed", window.suppressed);
            }
            *window = Window {
                start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if window.logged < BURST {
            window.logged += 1;
            drop(window);
            warn!("{}", msg());
        } else {
            window.suppressed += 1;
        }
    }
}
