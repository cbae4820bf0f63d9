//! The output of a product, written by several worker threads at once: each writes the
//! columns of its own tiles of weight rows, in every output row.

use std::marker::PhantomData;

use crate::q4_0::TILE_ROWS;

/// `rows x cols` f32 values, row after row, that workers fill one tile of columns at a time.
pub(crate) struct SharedOut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: the pointer comes from a `&'a mut [f32]` held for 'a by this value, and
// `write_tile` writes only whole tiles of columns; the callers give each tile of columns
// to exactly one worker, so no two threads ever touch the same value, and none reads.
unsafe impl Send for SharedOut<'_> {}
// SAFETY: as above: concurrent calls write disjoint values.
unsafe impl Sync for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    /// `out` must hold exactly `rows * cols` values (checked by the caller).
    pub(crate) fn new(out: &'a mut [f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(Some(out.len()), rows.checked_mul(cols));
        SharedOut {
            ptr: out.as_mut_ptr(),
            rows,
            cols,
            _borrow: PhantomData,
        }
    }

    /// Writes the columns of tile `tile` in row `row`: `values[r]` goes to column
    /// `tile * 16 + r`, for the columns that exist (the last tile may be partial).
    ///
    /// # Safety
    /// The caller must be the only thread writing tile `tile` through this value (every
    /// product gives each tile of columns to exactly one worker).
    pub(crate) unsafe fn write_tile(&self, row: usize, tile: usize, values: &[f32; TILE_ROWS]) {
        let first = tile.saturating_mul(TILE_ROWS);
        assert!(
            row < self.rows && first < self.cols,
            "tile outside the output"
        );
        let count = (self.cols - first).min(TILE_ROWS);
        let at = row * self.cols + first;
        // SAFETY: row < rows and first + count <= cols, so at..at + count lies inside the
        // rows * cols values `ptr` points to, which live for 'a. Only this worker writes
        // tile `tile` (this function's contract), so the writes race with nothing; `values` is a separate local array, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(at), count);
        }
    }
}
