//! Settings of the global allocator (mimalloc, chosen in `main.rs`).
//!
//! mimalloc keeps freed pages committed for a while and commits its arenas
//! eagerly; both are right for a short-lived benchmark and wrong for a
//! gateway that streams gigabytes through 8 MiB buffers: the 1 GiB
//! streaming test peaked at 122 MiB with the defaults and at 58 MiB with
//! these (glibc: 62 MiB). Throughput is unchanged (same instructions per
//! request under callgrind).

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (the Rust
/// bindings only name the v2 layout). Default 2.
const ARENA_EAGER_COMMIT: mi_option_t = 4;
/// `mi_option_purge_delay` (ms before freed memory is returned). Default
/// 1000 (the header's comment still says 10).
const PURGE_DELAY: mi_option_t = 15;

/// Return freed memory at once and commit arena memory only when touched.
pub fn configure() {
    // SAFETY: plain option setters of the C library, valid at any time.
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 0);
    }
}

/// Current values of the two options, for the test below and for support.
pub fn settings() -> (i64, i64) {
    // SAFETY: plain option getters.
    unsafe {
        (
            mi_option_get(ARENA_EAGER_COMMIT) as i64,
            mi_option_get(PURGE_DELAY) as i64,
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn option_numbers_match_the_linked_mimalloc() {
        // The documented defaults identify the options: if an update of
        // mimalloc renumbers them, this fails instead of setting others.
        assert_eq!(super::settings(), (2, 1000));
        super::configure();
        assert_eq!(super::settings(), (0, 0));
    }
}
