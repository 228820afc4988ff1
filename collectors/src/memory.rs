//! How the collector asks the C library's allocator to behave (glibc's `malloc`, which Rust's
//! default allocator calls, as does librdkafka).
//!
//! At full speed the collector's memory is mostly batches on their way out: a batch's columns,
//! its Arrow IPC stream, zstd's context and the compressed envelope, each up to about a megabyte,
//! made and dropped several times a second on whichever runtime thread runs the shipper. With
//! glibc's defaults every thread that allocates may get an arena of its own (up to eight per
//! core), and a freed megabyte stays in the arena that made it, ready for that thread only, so
//! the peak RSS counts several arenas' high-water marks. Before any thread starts, the collector
//! therefore asks for:
//! - **one arena** (`M_ARENA_MAX = 1`): every thread reuses the same freed blocks. The
//!   collector's threads are few (the runtime's workers, librdkafka's) and rarely allocate at
//!   the same moment.
//! - **blocks of 512 KiB and more mapped on their own** (`M_MMAP_THRESHOLD`): they go back to
//!   the kernel when freed instead of raising the arena's high-water mark. Fixing the threshold
//!   also stops glibc from raising it after each such free, which is what otherwise pulls every
//!   batch buffer into the arenas.
//!
//! Mapped blocks come back from the kernel as fresh pages, faulted in one by one when written.
//! The shipper therefore keeps its largest buffers instead of freeing them: zstd's context and
//! the stream buffers live in its `EnvelopeWriter`, and each encoded batch's text columns go
//! back to their builder (`BatchBuilder::recycle`). Page faults per million lines went from
//! about 149,000 to about 3,000 with the peak RSS unchanged (`benches/README.md`).
//!
//! Measured with `benches/collector/peers.sh` (1M syslog lines at full speed, `benches/README.md`):
//! peak RSS 30.0–31.5 MiB with glibc's defaults, 24.7–24.8 MiB with these, CPU per event the
//! same within the machine's noise. An operator's `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_`
//! in the environment is left as it is. Other C libraries (musl) and other platforms: nothing
//! is changed.

/// The allocator settings [`tune_allocator`] made; `None` where it left the C library's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorTuning {
    /// The arena limit set.
    pub arena_max: Option<i32>,
    /// The mmap threshold set, in bytes.
    pub mmap_threshold: Option<i32>,
}

/// The arena limit asked for.
pub const ARENA_MAX: i32 = 1;
/// The size from which a block is mapped on its own, in bytes.
pub const MMAP_THRESHOLD: i32 = 512 * 1024;

/// Sets the allocator's arena limit and mmap threshold (see the module), except where the
/// environment names its own. Call it first in `main`, before any thread is started: arenas
/// already made are never given up, and glibc's `mallopt` is not safe to call while other
/// threads allocate.
pub fn tune_allocator() -> AllocatorTuning {
    let mut done = AllocatorTuning::default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && glibc::set(glibc::M_ARENA_MAX, ARENA_MAX) {
        done.arena_max = Some(ARENA_MAX);
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none()
        && glibc::set(glibc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    {
        done.mmap_threshold = Some(MMAP_THRESHOLD);
    }
    done
}

impl std::fmt::Display for AllocatorTuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.arena_max {
            Some(n) => write!(f, "malloc arenas {n}")?,
            None => f.write_str("malloc arenas as the C library's")?,
        }
        match self.mmap_threshold {
            Some(b) => write!(f, ", mmap threshold {} KiB", b / 1024),
            None => f.write_str(", mmap threshold as the C library's"),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub use libc::{M_ARENA_MAX, M_MMAP_THRESHOLD};

    /// `mallopt(param, value)`; true when glibc accepted it.
    // The one `unsafe` in Varde (the workspace denies it everywhere else): `mallopt` is a C
    // function, so calling it is `unsafe` by definition.
    #[allow(unsafe_code)]
    pub fn set(param: libc::c_int, value: libc::c_int) -> bool {
        // SAFETY: `mallopt` takes two integers and touches no memory of the caller; glibc marks
        // it MT-unsafe (it changes the allocator's global settings), and `tune_allocator`'s
        // contract is to be called before any other thread exists.
        unsafe { libc::mallopt(param, value) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub const M_ARENA_MAX: i32 = 0;
    pub const M_MMAP_THRESHOLD: i32 = 0;

    /// Not glibc: nothing to set.
    pub fn set(_param: i32, _value: i32) -> bool {
        false
    }
}
