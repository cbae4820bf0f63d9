//! GGUF's Q4_0 weights, repacked for the kernels, and their product with activations.
//!
//! A Q4_0 block holds 32 weights as an f16 scale `d` and 16 bytes: byte `j` carries
//! weight `j` in its low nibble and weight `j + 16` in its high one, each stored plus 8.
//! Repacking keeps every byte and only moves it: the rows of a matrix go in tiles of 16,
//! and a tile keeps, per block, its 16 scales and then its bytes ordered
//! `[group g of 4 bytes][row][4 bytes]`. One 64-byte load then holds, for all 16 rows,
//! weights `4g..4g+4` (low nibbles) and `16+4g..16+4g+4` (high nibbles), which is what a
//! `vpdpbusd` against four broadcast activation bytes wants. The tile's blocks follow one
//! another, so a product reads the matrix once, front to back. Storage stays 18 bytes
//! per 32 weights; a last, partial tile is padded with zero rows.

use half::f16;

use crate::activations::Activations;
use crate::isa::Isa;
use crate::packed::sealed::Tile;
use crate::packed::{Format, Packed, TILE_ROWS};
use crate::product::Kernel;
use crate::BLOCK;

/// Bytes of one GGUF Q4_0 block.
pub const GGUF_BLOCK_BYTES: usize = 18;

/// One block of 32 weights for the 16 rows of a tile.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TileBlock {
    /// Each row's scale, as f16 bits.
    pub(crate) d: [u16; TILE_ROWS],
    /// `[group (4)][row (16)][4 bytes]`, each byte as in the GGUF block.
    pub(crate) qs: [u8; 4 * TILE_ROWS * 4],
}

const EMPTY: TileBlock = TileBlock {
    d: [0; TILE_ROWS],
    qs: [0x88; 4 * TILE_ROWS * 4],
};

/// A Q4_0 matrix, repacked.
pub type PackedQ4_0 = Packed<TileBlock>;

impl Format for TileBlock {}

impl Tile for TileBlock {
    const NAME: &'static str = "Q4_0";
    const WEIGHTS: usize = BLOCK;
    const FILE_BYTES: usize = GGUF_BLOCK_BYTES;
    const EMPTY: Self = EMPTY;

    fn put_row(&mut self, r: usize, block: &[u8]) {
        self.d[r] = u16::from_le_bytes([block[0], block[1]]);
        for (g, four) in block[2..].chunks_exact(4).enumerate() {
            let at = (g * TILE_ROWS + r) * 4;
            self.qs[at..at + 4].copy_from_slice(four);
        }
    }

    fn kernel(isa: Isa) -> Kernel<Self> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni if isa.available() => crate::x86_q4_0::avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if isa.available() => crate::x86_q4_0::avx2,
            _ => reference,
        }
    }
}

/// The scalar kernel, which every other is held to: for each activation row and weight
/// row, over the blocks in order, `acc = (d_w * d_a).mul_add(dot, acc)` with `dot` the
/// block's exact integer dot product.
fn reference(
    blocks: &[TileBlock],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    for i in 0..x.rows() {
        let mut acc = [0f32; TILE_ROWS];
        for (b, block) in blocks.iter().enumerate() {
            let at = i * x.blocks() + b;
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut dot = x.offsets[at];
                for g in 0..4 {
                    for j in 0..4 {
                        let byte = block.qs[(g * TILE_ROWS + r) * 4 + j];
                        dot += i32::from(byte & 0x0F) * x.value(at, 4 * g + j);
                        dot += i32::from(byte >> 4) * x.value(at, 16 + 4 * g + j);
                    }
                }
                let scale = f16::from_bits(block.d[r]).to_f32() * x.scales[at];
                *acc = scale.mul_add(dot as f32, *acc);
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
    fn repacking_moves_every_byte_and_pads_the_last_tile() {
        // 17 rows of 64 weights: two tiles, the second with one real row.
        let rows = 17;
        let data: Vec<u8> = (0..rows * 2 * GGUF_BLOCK_BYTES)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let p = PackedQ4_0::from_gguf(&data, rows, 64).unwrap();
        assert_eq!(p.tiles().len(), 4);
        for row in 0..rows {
            for b in 0..2 {
                let src = &data[(row * 2 + b) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let t = &p.tiles()[(row / 16) * 2 + b];
                let r = row % 16;
                assert_eq!(t.d[r].to_le_bytes(), [src[0], src[1]]);
                for j in 0..16 {
                    assert_eq!(t.qs[((j / 4) * 16 + r) * 4 + j % 4], src[2 + j]);
                }
            }
        }
        assert_eq!(p.tiles()[2].d[1], 0, "padding rows have a zero scale");
        assert!(matches!(
            PackedQ4_0::from_gguf(&data[1..], rows, 64),
            Err(KernelError::Length { .. })
        ));
        assert_eq!(
            PackedQ4_0::from_gguf(&data, rows, 40).unwrap_err(),
            KernelError::RowLength(40)
        );
    }
}
