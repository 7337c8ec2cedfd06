// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One virglrenderer for the whole process, handed from connection to
//! connection.
//!
//! virglrenderer is process-global state, and rutabaga_gfx starts it at
//! most once per process (a second `RutabagaBuilder::build` falls back to
//! 2D). Its GL context is current on the thread that started it, the vring
//! worker of the first connection, which ends with that connection. So
//! when a connection ends, its worker tears down the guest's contexts and
//! resources, releases the GL context from its thread and parks the
//! renderer here; the next connection's worker takes it, makes the
//! context current on itself (`force_ctx_0`) and goes on. Fences go
//! wherever the connection that holds the renderer wants them.
//!
//! One connection at a time renders: a second guest served at the same
//! time (`--socket-count`) finds no renderer to take, and its 3D commands
//! fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{info, warn};
use rutabaga_gfx::{Rutabaga, RutabagaFence, RutabagaFenceHandler};
use vmm_sys_util::eventfd::EventFd;

use super::renderer::Fence;

/// The renderer between connections.
struct Parked(Rutabaga);

// SAFETY: a parked `Rutabaga` is not used until a worker takes it, and the
// worker that parked it released virglrenderer's GL context from its
// thread first (see `park`); the taker makes it current on its own thread
// before any other call (`force_ctx_0`).
unsafe impl Send for Parked {}

static PARKED: Mutex<Option<Parked>> = Mutex::new(None);

/// Whether this process has started virglrenderer (rutabaga will not
/// start it again).
static STARTED: AtomicBool = AtomicBool::new(false);

/// Records that virglrenderer runs in this process.
pub fn mark_started() {
    STARTED.store(true, Ordering::Release);
}

/// Whether virglrenderer was started in this process: then a connection
/// that finds none parked must wait for the one that has it.
pub fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Where signalled fences go: the list and eventfd of the connection that
/// holds the renderer.
type Sink = (Arc<Mutex<Vec<Fence>>>, EventFd);

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// The fence handler for the process's renderer: delivers to the current
/// [`SINK`], drops fences nobody waits for any more.
pub fn fence_handler() -> RutabagaFenceHandler {
    RutabagaFenceHandler::new(|f: RutabagaFence| {
        let Ok(sink) = SINK.lock() else {
            return;
        };
        if let Some((list, event)) = sink.as_ref() {
            if let Ok(mut v) = list.lock() {
                v.push(Fence {
                    id: f.fence_id,
                    flags: f.flags,
                    ctx_id: f.ctx_id,
                    ring_idx: f.ring_idx,
                });
            }
            let _ = event.write(1);
        }
    })
}

/// Sends fences to `list` and `event` from now on.
pub fn set_sink(list: Arc<Mutex<Vec<Fence>>>, event: EventFd) {
    if let Ok(mut sink) = SINK.lock() {
        *sink = Some((list, event));
    }
}

/// The renderer a previous connection parked, made current on this
/// thread; `None` when there is none (first connection, or another
/// connection holds it).
pub fn take() -> Option<Rutabaga> {
    let Parked(rutabaga) = PARKED.lock().ok()?.take()?;
    rutabaga.force_ctx_0();
    info!("virglrenderer taken over from the previous connection");
    Some(rutabaga)
}

/// Parks `rutabaga` for the next connection. Called on the thread whose GL
/// context virglrenderer uses, after the connection's contexts and
/// resources are gone.
pub fn park(rutabaga: Rutabaga) {
    release_current_egl_context();
    if let Ok(mut sink) = SINK.lock() {
        *sink = None;
    }
    match PARKED.lock() {
        Ok(mut parked) => *parked = Some(Parked(rutabaga)),
        // Dropping it here would run virglrenderer's cleanup on this
        // thread with no current context: keep it alive instead.
        Err(_) => std::mem::forget(rutabaga),
    }
}

type EglGetCurrentDisplay = unsafe extern "C" fn() -> *mut libc::c_void;
type EglMakeCurrent = unsafe extern "C" fn(
    *mut libc::c_void,
    *mut libc::c_void,
    *mut libc::c_void,
    *mut libc::c_void,
) -> libc::c_uint;

/// `eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE,
/// EGL_NO_CONTEXT)` on this thread, so that another thread may make the
/// context current. libEGL is already loaded (libepoxy opened it), so it
/// is looked up, never loaded.
fn release_current_egl_context() {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a library already
    // loaded; the two symbols have the EGL 1.4 signatures declared above;
    // EGL_NO_SURFACE and EGL_NO_CONTEXT are null.
    unsafe {
        let lib = libc::dlopen(c"libEGL.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if lib.is_null() {
            warn!("libEGL is not loaded: cannot release virglrenderer's GL context");
            return;
        }
        let get = libc::dlsym(lib, c"eglGetCurrentDisplay".as_ptr());
        let make = libc::dlsym(lib, c"eglMakeCurrent".as_ptr());
        if !get.is_null() && !make.is_null() {
            let get: EglGetCurrentDisplay = std::mem::transmute(get);
            let make: EglMakeCurrent = std::mem::transmute(make);
            let display = get();
            if !display.is_null() {
                let null = std::ptr::null_mut();
                if make(display, null, null, null) == 0 {
                    warn!("eglMakeCurrent(EGL_NO_CONTEXT) failed");
                }
            }
        }
        libc::dlclose(lib);
    }
}
