//! What every product shares: the shape checks, the split of a matrix's tiles over the
//! worker pool, the output the workers fill at once (each the columns of its own tiles,
//! in every output row), and the loop of the x86 kernels over groups of activation rows.

use std::marker::PhantomData;
use std::ops::Range;

use crate::activations::Activations;
use crate::packed::TILE_ROWS;
use crate::{KernelError, Threads};

/// A kernel: every activation row times the blocks of one tile, in order; the rows' 16
/// results each go to the callback, a group of consecutive rows at a time (the first
/// row's index and the group). `unsafe`: the x86 ones need their CPU features.
pub(crate) type Kernel<B> =
    unsafe fn(&[B], &Activations, &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]));

/// A repacked matrix as the driver sees it: `rows x cols` weights in tiles of 16 rows of
/// `per_tile` blocks each.
pub(crate) struct Tiles<'m, B> {
    pub(crate) blocks: &'m [B],
    pub(crate) per_tile: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

/// Activation row `i` times weight row `j`, each tile of weight rows handed to one call
/// of `kernel`, over candle's worker pool or this thread, into `outs`: the weight rows
/// split into consecutive parts, part `p` `[x.rows()][its width]` (a fused projection's
/// outputs, filled where they lie, with no copy afterwards). Every part but the last must
/// be a whole number of tiles wide, so that no tile spans two.
///
/// Errors: `x` is not `cols` wide, the parts do not hold `x.rows() * rows` values in all,
/// one is not a whole number of rows, or a part other than the last is not a whole
/// number of tiles wide.
///
/// # Safety
/// This CPU must run `kernel` (the instruction set it was written for is available).
pub(crate) unsafe fn run<B: Sync>(
    m: Tiles<'_, B>,
    kernel: Kernel<B>,
    threads: Threads,
    x: &Activations,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    if x.width() != m.cols {
        return Err(KernelError::Width {
            got: x.width(),
            expected: m.cols,
        });
    }
    let expected = x
        .rows()
        .checked_mul(m.rows)
        .ok_or(KernelError::TooLarge(x.rows(), m.rows))?;
    let total: usize = outs.iter().map(|o| o.len()).sum();
    if total != expected {
        return Err(KernelError::Length {
            what: "output",
            got: total,
            expected,
        });
    }
    if expected == 0 {
        return Ok(());
    }
    let shared = SharedOut::new(outs, x.rows())?;
    let work = |range: Range<usize>| {
        for tile in range {
            let blocks = &m.blocks[tile * m.per_tile..(tile + 1) * m.per_tile];
            let mut write = |first: usize, rows: &[[f32; TILE_ROWS]]| {
                for (r, values) in rows.iter().enumerate() {
                    // SAFETY: the pool and the loop below hand each tile to exactly one
                    // call.
                    unsafe { shared.write_tile(first + r, tile, values) }
                }
            };
            // SAFETY: the caller vouches that this CPU runs `kernel`.
            unsafe { kernel(blocks, x, &mut write) };
        }
    };
    let tiles = m.rows.div_ceil(TILE_ROWS);
    match threads {
        Threads::Pool => candle_core::utils::barrier_pool().execute_chunked(tiles, work),
        Threads::One => work(0..tiles),
    }
    Ok(())
}

/// Hands rows `first..first + R` of a kernel's results to `write`, in one call.
#[cfg(target_arch = "x86_64")]
pub(crate) fn write_rows<const R: usize>(
    first: usize,
    rows: [[f32; TILE_ROWS]; R],
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    write(first, &rows);
}

/// Runs `$rows::<R>(blocks, x, first)` over the activation rows in groups of `$max`
/// (the last group as small as it is: one of `$small`), handing the results to `write`.
#[cfg(target_arch = "x86_64")]
macro_rules! in_row_groups {
    ($rows:ident, $blocks:expr, $x:expr, $write:expr, [$($small:literal),*], $max:literal) => {{
        let mut first = 0;
        while first < $x.rows() {
            let left = $x.rows() - first;
            match left {
                $($small => crate::product::write_rows(first, $rows::<$small>($blocks, $x, first), $write),)*
                _ => crate::product::write_rows(first, $rows::<$max>($blocks, $x, first), $write),
            }
            first += left.min($max);
        }
    }};
}

/// Runs `$body` once for each `$r` in `0..$count` (`$count` a constant of at most 8),
/// written out one copy per row: a kernel's per-row accumulators then live in registers
/// (as a loop over an array of them, the compiler kept them on the stack and reloaded
/// them every block).
#[cfg(target_arch = "x86_64")]
macro_rules! each_row {
    ($count:expr, $r:ident => $body:block) => {
        each_row!(@ $count, $r, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $count:expr, $r:ident, $body:block, $($i:literal)*) => {{
        const { assert!($count <= 8, "each_row! writes out at most 8 rows") };
        $(
            if $i < $count {
                let $r: usize = $i;
                $body
            }
        )*
    }};
}

/// One part of an output: `rows x cols` f32 values, row after row, holding the columns
/// of tiles `first_tile..`.
struct Part {
    ptr: *mut f32,
    cols: usize,
    first_tile: usize,
}

/// An output in parts that workers fill one tile of columns at a time.
pub(crate) struct SharedOut<'a> {
    parts: Vec<Part>,
    rows: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: each part's pointer comes from a distinct `&'a mut [f32]` held for 'a by this
// value, and `write_tile` writes only whole tiles of columns, each within one part; the
// callers give each tile of columns to exactly one worker, so no two threads ever touch
// the same value, and none reads.
unsafe impl Send for SharedOut<'_> {}
// SAFETY: as above: concurrent calls write disjoint values.
unsafe impl Sync for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    /// `outs`: parts of `rows` rows each (`rows` > 0), every one but the last a whole
    /// number of tiles wide (checked: every write's bounds rest on it).
    pub(crate) fn new<'b: 'a>(
        outs: &'a mut [&'b mut [f32]],
        rows: usize,
    ) -> Result<Self, KernelError> {
        let count = outs.len();
        let mut parts = Vec::with_capacity(count);
        let mut first_tile = 0usize;
        for (i, out) in outs.iter_mut().enumerate() {
            let cols = out.len().checked_div(rows).unwrap_or(0);
            if cols.checked_mul(rows) != Some(out.len()) {
                return Err(KernelError::Length {
                    what: "output part",
                    got: out.len(),
                    expected: cols.saturating_add(1).saturating_mul(rows),
                });
            }
            if i + 1 < count && !cols.is_multiple_of(TILE_ROWS) {
                return Err(KernelError::PartWidth(cols));
            }
            parts.push(Part {
                ptr: out.as_mut_ptr(),
                cols,
                first_tile,
            });
            first_tile += cols.div_ceil(TILE_ROWS);
        }
        Ok(SharedOut {
            parts,
            rows,
            _borrow: PhantomData,
        })
    }

    /// Writes the columns of tile `tile` in row `row`: `values[r]` goes to column
    /// `tile * 16 + r` of the parts laid side by side, for the columns that exist (a
    /// part's last tile may be partial).
    ///
    /// # Safety
    /// The caller must be the only thread writing tile `tile` through this value (every
    /// product gives each tile of columns to exactly one worker).
    pub(crate) unsafe fn write_tile(&self, row: usize, tile: usize, values: &[f32; TILE_ROWS]) {
        let part = self
            .parts
            .iter()
            .rev()
            .find(|p| p.first_tile <= tile)
            .expect("tile outside the output");
        let first = (tile - part.first_tile).saturating_mul(TILE_ROWS);
        assert!(
            row < self.rows && first < part.cols,
            "tile outside the output"
        );
        let count = (part.cols - first).min(TILE_ROWS);
        let at = row * part.cols + first;
        // SAFETY: row < rows and first + count <= cols, so at..at + count lies inside the
        // rows * cols values of this part's slice, which lives for 'a. Only this worker
        // writes tile `tile` (this function's contract), and a tile lies in one part
        // (every part but the last is whole tiles wide), so the writes race with nothing;
        // `values` is a separate local array, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), part.ptr.add(at), count);
        }
    }
}
