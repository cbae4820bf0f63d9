//! GGUF's Q8_0 weights, repacked for the kernels, and their product with activations.
//!
//! A Q8_0 block holds 32 weights as an f16 scale `d` and 32 signed bytes. Repacking puts
//! the rows in tiles of 16, a tile keeping per block its 16 scales and then its bytes
//! ordered `[group g of 4 bytes][row][4 bytes]` (weights `4g..4g+4` of each row), each
//! byte with its top bit flipped: `w + 128` as an unsigned byte, the operand `vpdpbusd`
//! takes (the sum of `(w + 128) * a`, less `128` times the activations' sum, is the
//! sum of `w * a`). 34 bytes per 32 weights, as in the file.
//!
//! Arithmetic (the scalar reference, which the vector kernels reproduce bit for bit), as
//! for Q4_0: per activation row and weight row, over the blocks in order,
//! `acc = (d_w * d_a).mul_add(dot, acc)` with `dot` the block's exact integer dot product.

use half::f16;

use crate::activations::Activations;
use crate::isa::Isa;
use crate::packed::sealed::Tile;
use crate::packed::{Format, Packed, TILE_ROWS};
use crate::product::Kernel;
use crate::BLOCK;

/// Bytes of one GGUF Q8_0 block.
pub const GGUF_BLOCK_BYTES: usize = 34;

/// One block of 32 weights for the 16 rows of a tile.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TileBlock8 {
    /// Each row's scale, as f16 bits.
    pub(crate) d: [u16; TILE_ROWS],
    /// `[group (8)][row (16)][4 bytes]`, each `w + 128`.
    pub(crate) qs: [u8; 8 * TILE_ROWS * 4],
}

const EMPTY: TileBlock8 = TileBlock8 {
    d: [0; TILE_ROWS],
    qs: [0x80; 8 * TILE_ROWS * 4],
};

/// A Q8_0 matrix, repacked.
pub type PackedQ8_0 = Packed<TileBlock8>;

impl Format for TileBlock8 {}

impl Tile for TileBlock8 {
    const NAME: &'static str = "Q8_0";
    const WEIGHTS: usize = BLOCK;
    const FILE_BYTES: usize = GGUF_BLOCK_BYTES;
    const EMPTY: Self = EMPTY;

    fn put_row(&mut self, r: usize, block: &[u8]) {
        self.d[r] = u16::from_le_bytes([block[0], block[1]]);
        for (g, four) in block[2..].chunks_exact(4).enumerate() {
            let at = (g * TILE_ROWS + r) * 4;
            for (o, w) in self.qs[at..at + 4].iter_mut().zip(four) {
                *o = w ^ 0x80;
            }
        }
    }

    fn kernel(isa: Isa) -> Kernel<Self> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni if isa.available() => crate::x86_q8_0::avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if isa.available() => crate::x86_q8_0::avx2,
            _ => reference,
        }
    }
}

/// The scalar kernel (the arithmetic in the module's documentation).
fn reference(
    blocks: &[TileBlock8],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    for i in 0..x.rows() {
        let mut acc = [0f32; TILE_ROWS];
        for (b, block) in blocks.iter().enumerate() {
            let at = i * x.blocks() + b;
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut dot = 0i32;
                for g in 0..8 {
                    for j in 0..4 {
                        let w = (block.qs[(g * TILE_ROWS + r) * 4 + j] ^ 0x80) as i8;
                        dot += i32::from(w) * x.value(at, 4 * g + j);
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
    fn repacking_moves_every_byte_with_its_top_bit_flipped() {
        let rows = 17;
        let data: Vec<u8> = (0..rows * 2 * GGUF_BLOCK_BYTES)
            .map(|i| (i * 11 % 251) as u8)
            .collect();
        let p = PackedQ8_0::from_gguf(&data, rows, 64).unwrap();
        assert_eq!(p.tiles().len(), 4);
        for row in 0..rows {
            for b in 0..2 {
                let src = &data[(row * 2 + b) * GGUF_BLOCK_BYTES..][..GGUF_BLOCK_BYTES];
                let t = &p.tiles()[(row / 16) * 2 + b];
                let r = row % 16;
                assert_eq!(t.d[r].to_le_bytes(), [src[0], src[1]]);
                for j in 0..32 {
                    let stored = t.qs[((j / 4) * 16 + r) * 4 + j % 4];
                    assert_eq!(i32::from(stored), i32::from(src[2 + j] as i8) + 128);
                }
            }
        }
        assert_eq!(p.tiles()[2].d[1], 0, "padding rows have a zero scale");
        assert!(matches!(
            PackedQ8_0::from_gguf(&data[1..], rows, 64),
            Err(KernelError::Length { .. })
        ));
    }
}
