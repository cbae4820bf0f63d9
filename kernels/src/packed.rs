//! A repacked weight matrix of any of the kernels' formats: rows in tiles of 16, each
//! tile's blocks in order, and its product with activations on the best kernel of the
//! CPU. What differs between Q4_0, Q4_K and Q8_0 (a block's bytes in the file and in a
//! tile, and the kernels) is the [`Format`] of the tile blocks.

use crate::activations::Activations;
use crate::isa::Isa;
use crate::product::{self, Kernel, Tiles};
use crate::{KernelError, Threads};

/// Weight rows per tile.
pub const TILE_ROWS: usize = 16;

/// A storage type's tile block: 16 rows' worth of one of its blocks. Sealed: only this
/// crate's formats implement it, since a product runs the kernel a format names as one
/// this CPU supports.
pub trait Format: sealed::Tile {}

pub(crate) mod sealed {
    use super::{Isa, Kernel};

    /// What a format tells [`super::Packed`]; not nameable outside the crate.
    pub trait Tile: Copy + Send + Sync + 'static {
        /// The type's name, for errors.
        const NAME: &'static str;
        /// Weights per block.
        const WEIGHTS: usize;
        /// Bytes of one block in a GGUF file.
        const FILE_BYTES: usize;
        /// A block of 16 padding rows (zero scales).
        const EMPTY: Self;
        /// Writes row `r` (< 16) of this tile block from its GGUF block
        /// (`FILE_BYTES` long).
        fn put_row(&mut self, r: usize, block: &[u8]);
        /// The kernel for `isa` when this CPU runs it, else the scalar reference: the
        /// product runs it without checking again.
        fn kernel(isa: Isa) -> Kernel<Self>;
    }
}

/// A matrix of `rows` weight rows of `cols` weights, repacked in tiles of format `F`.
pub struct Packed<F> {
    rows: usize,
    cols: usize,
    blocks: usize,
    /// `[tile][block]`.
    tiles: Vec<F>,
}

impl<F: Format> std::fmt::Debug for Packed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed{}({} x {})", F::NAME, self.rows, self.cols)
    }
}

impl<F: Format> Packed<F> {
    /// Repacks `rows` rows of `cols` weights from the GGUF bytes (row after row).
    ///
    /// Errors: `cols` is not a whole number of blocks, or `data` has the wrong length.
    pub fn from_gguf(data: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        if !cols.is_multiple_of(F::WEIGHTS) || cols == 0 {
            return Err(KernelError::RowLength(cols));
        }
        let blocks = cols / F::WEIGHTS;
        let expected = rows
            .checked_mul(blocks)
            .and_then(|b| b.checked_mul(F::FILE_BYTES))
            .ok_or(KernelError::TooLarge(rows, cols))?;
        if data.len() != expected {
            return Err(KernelError::Length {
                what: F::NAME,
                got: data.len(),
                expected,
            });
        }
        let mut tiles = vec![F::EMPTY; rows.div_ceil(TILE_ROWS) * blocks];
        for (row, bytes) in data.chunks_exact(blocks * F::FILE_BYTES).enumerate() {
            let (tile, r) = (row / TILE_ROWS, row % TILE_ROWS);
            for (b, block) in bytes.chunks_exact(F::FILE_BYTES).enumerate() {
                tiles[tile * blocks + b].put_row(r, block);
            }
        }
        Ok(Packed {
            rows,
            cols,
            blocks,
            tiles,
        })
    }

    /// Weight rows (outputs per activation row).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Weights per row (the activations' width).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The tile blocks, `[tile][block]`.
    #[cfg(test)]
    pub(crate) fn tiles(&self) -> &[F] {
        &self.tiles
    }

    /// `out[i * rows + j]` = activation row `i` times weight row `j`, on the best kernel
    /// of this CPU, over candle's CPU worker pool.
    ///
    /// Errors: `x` is not `cols` wide, or `out` is not `x.rows() * rows` long.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.matmul_on(Isa::best(), Threads::Pool, x, out)
    }

    /// Like [`Packed::matmul`] on the kernel of `isa` (the scalar one when this CPU lacks
    /// it) and the threads asked for.
    pub fn matmul_on(
        &self,
        isa: Isa,
        threads: Threads,
        x: &Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        self.matmul_parts_on(isa, threads, x, &mut [out])
    }

    /// Like [`Packed::matmul`], the weight rows split into consecutive parts, each its
    /// own output `[x.rows()][its width]` (a fused projection's outputs, written where
    /// they lie). Every part but the last must be a whole number of 16-row tiles wide.
    ///
    /// Errors: as [`Packed::matmul`], or a part is not a whole number of rows or tiles.
    pub fn matmul_parts(
        &self,
        x: &Activations,
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        self.matmul_parts_on(Isa::best(), Threads::Pool, x, outs)
    }

    /// [`Packed::matmul_parts`] on the kernel of `isa` and the threads asked for.
    pub fn matmul_parts_on(
        &self,
        isa: Isa,
        threads: Threads,
        x: &Activations,
        outs: &mut [&mut [f32]],
    ) -> Result<(), KernelError> {
        let tiles = Tiles {
            blocks: &self.tiles,
            per_tile: self.blocks,
            rows: self.rows,
            cols: self.cols,
        };
        // SAFETY: `Format::kernel` gives the scalar kernel or one whose instruction set
        // this CPU runs.
        unsafe { product::run(tiles, F::kernel(isa), threads, x, outs) }
    }
}
