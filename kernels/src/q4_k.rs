//! GGUF's Q4_K weights, repacked for the kernels, and their product with activations.
//!
//! A Q4_K super-block holds 256 weights in 144 bytes: f16 `d` and `dmin`, 12 bytes that
//! pack eight 6-bit scales and eight 6-bit mins (one pair per 32-weight sub-block), and
//! 128 bytes of nibbles: byte `32c + j` carries weight `64c + j` (sub-block `2c`) in its
//! low nibble and weight `64c + 32 + j` (sub-block `2c + 1`) in its high one. Weight =
//! `d * scale * q - dmin * min`.
//!
//! Repacking keeps the nibble bytes and moves them, as for Q4_0 ([`crate::q4_0`]), into
//! tiles of 16 rows ordered `[chunk c][group g of 4 bytes][row][4 bytes]`, so one 64-byte
//! load holds weights `4g..4g+4` of sub-blocks `2c` (low nibbles) and `2c + 1` (high) for
//! all 16 rows. The 6-bit scales and mins are unpacked to a byte each,
//! `[sub-block][row]`, so that 16 rows' scales are one load: 2,368 bytes per 16 x 256
//! weights, 4.625 bits a weight against the file's 4.5.
//!
//! Arithmetic (the scalar reference, which the vector kernels reproduce bit for bit): per
//! activation row and weight row, over super-blocks and then sub-blocks in order, with
//! `dot` the exact integer dot product of the nibbles and the activation block, `sum` the
//! activation block's sum and `da` its scale:
//! `acc = (d * scale * da).mul_add(dot, acc)`, then
//! `acc = (-(dmin * min * da)).mul_add(sum, acc)`; `d * scale` and `dmin * min` are exact
//! (an f16 times a 6-bit integer).

use half::f16;

use crate::activations::Activations;
use crate::isa::Isa;
use crate::product::{self, Kernel, Tiles};
use crate::q4_0::TILE_ROWS;
use crate::{KernelError, Threads, BLOCK};

/// Weights per super-block.
pub const SUPER: usize = 256;

/// Bytes of one GGUF Q4_K super-block.
pub const GGUF_BLOCK_BYTES: usize = 144;

/// Sub-blocks per super-block.
pub(crate) const SUBS: usize = SUPER / BLOCK;

/// One super-block of 256 weights for the 16 rows of a tile.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct TileSuper {
    /// Each row's `d`, as f16 bits.
    pub(crate) d: [u16; TILE_ROWS],
    /// Each row's `dmin`, as f16 bits.
    pub(crate) dmin: [u16; TILE_ROWS],
    /// `[sub-block][row]`, 0..=63.
    pub(crate) scales: [[u8; TILE_ROWS]; SUBS],
    /// `[sub-block][row]`, 0..=63.
    pub(crate) mins: [[u8; TILE_ROWS]; SUBS],
    /// `[chunk (4)][group (8)][row (16)][4 bytes]`, each byte as in the GGUF block.
    pub(crate) qs: [u8; 4 * 8 * TILE_ROWS * 4],
}

const EMPTY: TileSuper = TileSuper {
    d: [0; TILE_ROWS],
    dmin: [0; TILE_ROWS],
    scales: [[0; TILE_ROWS]; SUBS],
    mins: [[0; TILE_ROWS]; SUBS],
    qs: [0; 4 * 8 * TILE_ROWS * 4],
};

/// Sub-block `j`'s 6-bit scale and min from the 12 packed bytes (GGUF's layout: the
/// first four pairs in the low six bits of bytes 0..4 and 4..8, the last four split
/// between bytes 8..12 and the top two bits of bytes 0..8).
fn scale_min(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// A Q4_K matrix of `rows` weight rows of `cols` weights, repacked.
pub struct PackedQ4K {
    rows: usize,
    cols: usize,
    supers: usize,
    /// `[tile][super-block]`.
    tiles: Vec<TileSuper>,
}

impl std::fmt::Debug for PackedQ4K {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ4K({} x {})", self.rows, self.cols)
    }
}

impl PackedQ4K {
    /// Repacks `rows` rows of `cols` weights from GGUF's Q4_K bytes (row after row).
    ///
    /// Errors: `cols` is not a whole number of super-blocks, or `data` has the wrong
    /// length.
    pub fn from_gguf(data: &[u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        if !cols.is_multiple_of(SUPER) || cols == 0 {
            return Err(KernelError::RowLength(cols));
        }
        let supers = cols / SUPER;
        let expected = rows
            .checked_mul(supers)
            .and_then(|b| b.checked_mul(GGUF_BLOCK_BYTES))
            .ok_or(KernelError::TooLarge(rows, cols))?;
        if data.len() != expected {
            return Err(KernelError::Length {
                what: "Q4_K matrix bytes",
                got: data.len(),
                expected,
            });
        }
        let tiles = rows.div_ceil(TILE_ROWS);
        let mut packed = vec![EMPTY; tiles * supers];
        for (row, bytes) in data.chunks_exact(supers * GGUF_BLOCK_BYTES).enumerate() {
            let (tile, r) = (row / TILE_ROWS, row % TILE_ROWS);
            for (b, block) in bytes.chunks_exact(GGUF_BLOCK_BYTES).enumerate() {
                let out = &mut packed[tile * supers + b];
                out.d[r] = u16::from_le_bytes([block[0], block[1]]);
                out.dmin[r] = u16::from_le_bytes([block[2], block[3]]);
                for s in 0..SUBS {
                    let (scale, min) = scale_min(s, &block[4..16]);
                    out.scales[s][r] = scale;
                    out.mins[s][r] = min;
                }
                for (cg, four) in block[16..].chunks_exact(4).enumerate() {
                    let at = (cg * TILE_ROWS + r) * 4;
                    out.qs[at..at + 4].copy_from_slice(four);
                }
            }
        }
        Ok(PackedQ4K {
            rows,
            cols,
            supers,
            tiles: packed,
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

    /// `out[i * rows + j]` = activation row `i` times weight row `j`, on the best kernel
    /// of this CPU, over candle's CPU worker pool.
    ///
    /// Errors: `x` is not `cols` wide, or `out` is not `x.rows() * rows` long.
    pub fn matmul(&self, x: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
        self.matmul_on(Isa::best(), Threads::Pool, x, out)
    }

    /// Like [`PackedQ4K::matmul`] on the kernel of `isa` (the scalar one when this CPU
    /// lacks it) and the threads asked for.
    pub fn matmul_on(
        &self,
        isa: Isa,
        threads: Threads,
        x: &Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let kernel: Kernel<TileSuper> = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni if isa.available() => crate::x86_q4_k::avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if isa.available() => crate::x86_q4_k::avx2,
            _ => reference,
        };
        let tiles = Tiles {
            blocks: &self.tiles,
            per_tile: self.supers,
            rows: self.rows,
            cols: self.cols,
        };
        // SAFETY: `kernel` is the scalar one or one whose instruction set is available.
        unsafe { product::run(tiles, kernel, threads, x, out) }
    }
}

/// The scalar kernel (the arithmetic in the module's documentation).
fn reference(
    supers: &[TileSuper],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[f32; TILE_ROWS]),
) {
    for i in 0..x.rows() {
        let mut acc = [0f32; TILE_ROWS];
        for (b, sb) in supers.iter().enumerate() {
            for (r, acc) in acc.iter_mut().enumerate() {
                let d = f16::from_bits(sb.d[r]).to_f32();
                let dmin = f16::from_bits(sb.dmin[r]).to_f32();
                for s in 0..SUBS {
                    let at = i * x.blocks() + b * SUBS + s;
                    let (c, high) = (s / 2, s % 2 == 1);
                    let mut dot = 0i32;
                    for g in 0..8 {
                        for j in 0..4 {
                            let byte = sb.qs[((c * 8 + g) * TILE_ROWS + r) * 4 + j];
                            let q = if high { byte >> 4 } else { byte & 0x0F };
                            dot += i32::from(q) * x.value(at, 4 * g + j);
                        }
                    }
                    let da = x.scales[at];
                    let scale = d * f32::from(sb.scales[s][r]) * da;
                    let min = dmin * f32::from(sb.mins[s][r]) * da;
                    *acc = scale.mul_add(dot as f32, *acc);
                    *acc = (-min).mul_add(x.sums[at], *acc);
                }
            }
        }
        write(i, &acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacking_moves_every_nibble_byte_and_unpacks_every_scale() {
        let rows = 18;
        let data: Vec<u8> = (0..rows * 2 * GGUF_BLOCK_BYTES)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let p = PackedQ4K::from_gguf(&data, rows, 512).unwrap();
        assert_eq!(p.tiles.len(), 4);
        for row in 0..rows {
            for b in 0..2 {
                let src = &data[(row * 2 + b) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let t = &p.tiles[(row / 16) * 2 + b];
                let r = row % 16;
                assert_eq!(t.d[r].to_le_bytes(), [src[0], src[1]]);
                assert_eq!(t.dmin[r].to_le_bytes(), [src[2], src[3]]);
                for s in 0..8 {
                    assert_eq!((t.scales[s][r], t.mins[s][r]), scale_min(s, &src[4..16]));
                    assert!(t.scales[s][r] < 64 && t.mins[s][r] < 64);
                }
                for j in 0..128 {
                    assert_eq!(t.qs[((j / 4) * 16 + r) * 4 + j % 4], src[16 + j]);
                }
            }
        }
        assert!(matches!(
            PackedQ4K::from_gguf(&data[1..], rows, 512),
            Err(KernelError::Length { .. })
        ));
        assert_eq!(
            PackedQ4K::from_gguf(&data, rows, 96).unwrap_err(),
            KernelError::RowLength(96)
        );
    }
}
