// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The guest-memory and vring types the whole core shares. A leaf module:
//! it imports nothing of the crate, so every other module may use it.

use vhost_user_backend::VringRwLock;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

/// Guest memory as the devices see it.
pub type GuestMem = GuestMemoryMmap<()>;

/// The vring type the adapter uses.
pub type Vring = VringRwLock<GuestMemoryAtomic<GuestMem>>;
