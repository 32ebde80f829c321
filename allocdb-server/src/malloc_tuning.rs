//! Makes the memory of large, short-lived buffers go back to the operating system when they
//! are freed (glibc only; other allocators and platforms are left alone).
//!
//! glibc gives an allocation above `M_MMAP_THRESHOLD` (128 KiB) its own mapping, which `free`
//! unmaps. But by default it *raises* the threshold (up to 32 MiB) each time such a block is
//! freed, and from then on large blocks come from its heap arenas, where freed memory between
//! live blocks stays resident. Measured on a replica: 1,000 partial 300 KB client frames, all
//! closed by their pace, left RSS at +5 % to +55 % of its baseline depending on the order of
//! frees. Fixing the threshold turns the adjustment off, so every frame buffer of 128 KiB or
//! more is returned when its connection closes (and the core's tables, allocated once at
//! start-up, are mapped as before).

/// The fixed threshold: glibc's own initial value.
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold. Call once, before the runtime starts threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_large_buffers() -> bool {
    // SAFETY: `mallopt` only sets a parameter of the allocator (thread-safe in glibc); no
    // memory is touched and no pointer is passed.
    let done = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
    done == 1
}

/// Elsewhere there is nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_large_buffers() -> bool {
    let _ = MMAP_THRESHOLD_BYTES;
    false
}
