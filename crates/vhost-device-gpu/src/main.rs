// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

use std::process::ExitCode;

use vhost_device_gpu::{heap::PageAlignLarge, make_renderer, Args, GpuDevice};

// Page-aligns rutabaga's 2D resources, so that transfers from (page-aligned)
// guest memory copy rows in step; see `heap`.
#[global_allocator]
static ALLOCATOR: PageAlignLarge = PageAlignLarge;

fn main() -> ExitCode {
    vhost_device_common::cli::run::<Args>(|args| {
        let cfg = args.config()?;
        // Fail on the command line, not on the first connection (the
        // virgl renderer only starts on first use, on the worker thread).
        drop(make_renderer(&cfg)?);
        log::info!("vhost-device-gpu: {cfg:?}");
        let policy = cfg.sandbox_policy();
        vhost_device_common::daemon::serve_with(
            "vhost-device-gpu",
            &args.socket,
            &policy,
            move |_guest| {
                Ok(GpuDevice::new(
                    cfg.clone(),
                    make_renderer(&cfg).map_err(|e| e.to_string())?,
                ))
            },
        )?;
        Ok(())
    })
}
