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
use crate::packed::sealed::Tile;
use crate::packed::{Format, Packed, TILE_ROWS};
use crate::product::Kernel;
use crate::BLOCK;

/// Weights per super-block.
pub const SUPER: usize = 256;

/// Bytes of one GGUF Q4_K super-block.
pub const GGUF_BLOCK_BYTES: usize = 144;

/// Sub-blocks per super-block.
pub(crate) const SUBS: usize = SUPER / BLOCK;

/// One super-block of 256 weights for the 16 rows of a tile.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TileSuper {
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

/// A Q4_K matrix, repacked.
pub type PackedQ4K = Packed<TileSuper>;

impl Format for TileSuper {}

impl Tile for TileSuper {
    const NAME: &'static str = "Q4_K";
    const WEIGHTS: usize = SUPER;
    const FILE_BYTES: usize = GGUF_BLOCK_BYTES;
    const EMPTY: Self = EMPTY;

    fn put_row(&mut self, r: usize, block: &[u8]) {
        self.d[r] = u16::from_le_bytes([block[0], block[1]]);
        self.dmin[r] = u16::from_le_bytes([block[2], block[3]]);
        for s in 0..SUBS {
            let (scale, min) = scale_min(s, &block[4..16]);
            self.scales[s][r] = scale;
            self.mins[s][r] = min;
        }
        for (cg, four) in block[16..].chunks_exact(4).enumerate() {
            let at = (cg * TILE_ROWS + r) * 4;
            self.qs[at..at + 4].copy_from_slice(four);
        }
    }

    fn kernel(isa: Isa) -> Kernel<Self> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni if isa.available() => crate::x86_q4_k::avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if isa.available() => crate::x86_q4_k::avx2,
            _ => reference,
        }
    }
}

/// The scalar kernel (the arithmetic in the module's documentation).
fn reference(
    supers: &[TileSuper],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
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
        write(i, std::slice::from_ref(&acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelError;

    #[test]
    fn repacking_moves_every_nibble_byte_and_unpacks_every_scale() {
        let rows = 18;
        let data: Vec<u8> = (0..rows * 2 * GGUF_BLOCK_BYTES)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let p = PackedQ4K::from_gguf(&data, rows, 512).unwrap();
        assert_eq!(p.tiles().len(), 4);
        for row in 0..rows {
            for b in 0..2 {
                let src = &data[(row * 2 + b) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let t = &p.tiles()[(row / 16) * 2 + b];
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
