//! The global allocator: the system `malloc`, with cheap over-aligned blocks.
//!
//! tokio aligns every task cell and every socket registration to 128 bytes
//! (a cache line pair). The system allocator serves those with
//! `posix_memalign`, which in glibc carves an aligned chunk out of a bigger
//! one: about 800 instructions a call, 2,400 per proxied connection, a tenth
//! of betwixt's own work per connection (callgrind, see docs/PERFORMANCE.md).
//! Here an over-aligned block is a plain `malloc` of `size + align` bytes;
//! the block handed out starts at the first aligned address past a word, and
//! the word just below it remembers the `malloc`ed address for `free`.
//! Blocks with ordinary alignment go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Alignments up to this are the system allocator's business.
const PLAIN: usize = 16;
const WORD: usize = std::mem::size_of::<usize>();

pub struct Allocator;

/// The layout of the `malloc`ed block behind an over-aligned `layout`.
fn outer(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(layout.align())?;
    Layout::from_size_align(size, WORD).ok()
}

// SAFETY: over-aligned blocks lie inside their outer block: `raw` is
// word-aligned and `align > PLAIN >= WORD`, so the first multiple of `align`
// above `raw` is at least `raw + WORD` (room for the word below it) and at
// most `raw + align`, leaving `size` bytes before the outer block's end.
// Everything else is forwarded to `System` with the caller's layout.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN {
            // SAFETY: the caller's contract, forwarded.
            return unsafe { System.alloc(layout) };
        }
        let Some(outer) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size.
        let raw = unsafe { System.alloc(outer) };
        if raw.is_null() {
            return raw;
        }
        let offset = layout.align() - (raw as usize & (layout.align() - 1));
        // SAFETY: see the impl comment; `offset` is in `WORD..=align`.
        unsafe {
            let block = raw.add(offset);
            block.cast::<usize>().sub(1).write(raw as usize);
            block
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() <= PLAIN {
            // SAFETY: the caller's contract, forwarded.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let Some(outer) = outer(layout) else { return };
        // SAFETY: `ptr` came from `alloc` above, which stored the outer
        // block's address in the word below it.
        unsafe {
            let raw = ptr.cast::<usize>().sub(1).read() as *mut u8;
            System.dealloc(raw, outer);
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN {
            // SAFETY: the caller's contract, forwarded.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: as `alloc`; a non-null block has `layout.size()` bytes.
        unsafe {
            let block = self.alloc(layout);
            if !block.is_null() {
                block.write_bytes(0, layout.size());
            }
            block
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= PLAIN {
            // SAFETY: the caller's contract, forwarded.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a fresh block, then a copy of what both blocks hold.
        unsafe {
            let block = self.alloc(new);
            if !block.is_null() {
                std::ptr::copy_nonoverlapping(ptr, block, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            block
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_aligned_blocks_are_aligned_writable_and_freed() {
        let a = Allocator;
        for align in [32, 64, 128, 4096] {
            for size in [1, 7, 128, 1000, 5000] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; every block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "align {align} size {size}");
                    p.write_bytes(0xa5, size);
                    let z = a.alloc_zeroed(layout);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0);
                    assert!(
                        std::slice::from_raw_parts(q, size)
                            .iter()
                            .all(|b| *b == 0xa5)
                    );
                    a.dealloc(q, Layout::from_size_align(size * 3, align).expect("layout"));
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn plain_blocks_go_to_the_system_allocator() {
        let a = Allocator;
        let layout = Layout::from_size_align(24, 8).expect("layout");
        // SAFETY: freed with the layout it was made with.
        unsafe {
            let p = a.alloc(layout);
            assert_eq!(p as usize % 8, 0);
            let p = a.realloc(p, layout, 4000);
            a.dealloc(p, Layout::from_size_align(4000, 8).expect("layout"));
        }
    }

    #[test]
    fn impossible_sizes_fail_without_panicking() {
        // size + align overflows the outer layout: null before any malloc.
        let layout = Layout::from_size_align(isize::MAX as usize - 127, 128).expect("layout");
        // SAFETY: a null result is not used.
        assert!(unsafe { Allocator.alloc(layout) }.is_null());
        // malloc itself fails (a 32-bit process may get the 2 GiB instead).
        if cfg!(target_pointer_width = "64") {
            let layout = Layout::from_size_align(isize::MAX as usize - 255, 128).expect("layout");
            // SAFETY: a null result is not used.
            assert!(unsafe { Allocator.alloc(layout) }.is_null());
        }
    }
}
