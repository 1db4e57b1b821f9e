//! The global allocator and how it is tuned.
//!
//! Measured with `perf record` (BENCHMARKS.md): the write path is allocation-bound (sled copies
//! leaf nodes on insert; JSON bodies are parsed into maps), and with mimalloc's default the server
//! spent 40% of its CPU in the kernel zeroing pages, because megabyte request and response buffers
//! were returned to the OS and faulted back in on every request.
//!
//! Built with `--features system-alloc`, settee uses the C library's malloc instead: heap
//! profilers such as heaptrack see malloc and free, not mimalloc (BENCHMARKS.md, "Soak").

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: position 15 of `mi_option_e` in both mimalloc v2 and v3 headers that
/// libmimalloc-sys bundles (it exports no constant for it).
#[cfg(not(feature = "system-alloc"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for a second before giving it back to the OS (default: 10 ms), so
/// back-to-back requests reuse it instead of faulting in zeroed pages; and turns transparent huge
/// pages off for the process. mimalloc advises its 1 GiB arena as huge pages, so each fault
/// zeroes 2 MiB and each purge splits one; with THP on, `perf` showed 28% of a `_bulk_docs`
/// ingest in `clear_page_erms` under huge-page faults, and the server used ~20% more CPU for the
/// same ingest (`bash benches/ab-fresh.sh 5 OLD NEW`: median of 5 fresh servers, CPU time
/// from /proc).
pub fn tune() {
    #[cfg(not(feature = "system-alloc"))]
    // SAFETY: setting a mimalloc option is thread-safe and takes plain integers.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000)
    }
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only changes this process's flags.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
