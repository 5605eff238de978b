//! The process's allocator: mimalloc, entered through its plain `malloc` wherever a block's
//! alignment allows.
//!
//! A proxied request allocates a few dozen small blocks (header maps, buffers, the event's parts)
//! and frees them on the same thread; glibc's malloc spent about a tenth of a GET's instructions
//! on them. The `mimalloc` crate's own allocator passes every block through `mi_malloc_aligned`,
//! whose checks cost about 30 instructions more per block than `mi_malloc_small`'s inlined fast
//! path, and sends blocks over 1 KiB down its slow aligned path. A POST allocates about 17
//! blocks: about 730 instructions through the crate, 265 here (callgrind; BENCHMARKS.md,
//! thirteenth pass).
//!
//! mimalloc's `mi_malloc` is a C `malloc`: every block is word-aligned, and a block whose size is
//! a multiple of 16 is 16-aligned. A Rust layout's size is a multiple of its alignment, so that
//! covers every alignment up to 16; anything else (tokio's cache-padded task cells, a hand-built
//! layout) keeps the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment `mi_malloc` guarantees any block whose size is a multiple of it (mimalloc's
/// `MI_MAX_ALIGN_SIZE`, C's `max_align_t`).
const PLAIN_ALIGN: usize = 16;

/// The largest block `mi_malloc_small` serves (mimalloc's `MI_SMALL_SIZE_MAX`): its inlined
/// fast path skips the size test and call that `mi_malloc` makes first.
const SMALL: usize = 128 * WORD;

/// Word alignment, which every mimalloc block has whatever its size.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the binary's `#[global_allocator]`; a type of our own so that the entry points
/// are chosen per block (see the module's doc).
pub struct Mimalloc;

/// Whether `mi_malloc` and `mi_realloc` give a block of `size` bytes at least `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= WORD || (align <= PLAIN_ALIGN && size.is_multiple_of(align))
}

// SAFETY: every entry point forwards to mimalloc, which returns null on failure, blocks aligned as
// `plain` states or as asked of its aligned entry points, and frees any of its blocks with
// `mi_free` whatever entry point made it.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; the layout's size is non-zero (GlobalAlloc's contract).
        unsafe {
            if plain(layout.align(), layout.size()) {
                if layout.size() <= SMALL {
                    mi::mi_malloc_small(layout.size()).cast()
                } else {
                    mi::mi_malloc(layout.size()).cast()
                }
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from one of the entry points above (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its alignment
        // (checked against the new size, as a fresh block of that size would be).
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block, whichever entry point made it, has the alignment its layout asked for, and
    /// keeps it (and its bytes) across a reallocation.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = Mimalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1usize, 3, 8, 16, 24, 48, 100, 1000, 1024, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: non-zero sizes; each block is freed once, with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "realloc size {size} align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xA5);
                    a.dealloc(grown, Layout::from_size_align_unchecked(size * 3, align));
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed size {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
