//! The x86 kernels for Q8_0 (layout and arithmetic in [`crate::q8_0`], which they
//! reproduce bit for bit). AVX-512 VNNI multiplies the stored `w + 128` bytes and
//! starts each block's sum at `-128` times the activations' sum; AVX2 has no unsigned
//! byte product that cannot saturate there, so it recovers the signed weights and
//! multiplies `|w|` by the activation given w's sign (at most 128 x 127 x 2 per 16-bit
//! pair: no saturation). Both give the exact integer dot product.

use std::arch::x86_64::*;

use crate::activations::{Activations, RowBlocks};
use crate::packed::TILE_ROWS;
use crate::q8_0::TileBlock8;
use crate::x86_common::{lanes16, lanes8x2, prefetch_ahead};

/// Every activation row times one tile (its blocks in order); hands each row's 16
/// results to `write`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn avx512(
    blocks: &[TileBlock8],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    // The row functions need this function's target features, which it has.
    in_row_groups!(rows_avx512, blocks, x, write, [1, 2, 3, 4, 5, 6, 7], 8);
}

/// Activation rows `first..first + R` times one tile (`first + R <= x.rows()` is checked
/// by indexing).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn rows_avx512<const R: usize>(
    blocks: &[TileBlock8],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let n = blocks.len();
    // Each row's blocks, cut to the tile's length (the product checked that they agree).
    // (A loop rather than `from_fn`: its closure was a call per row per tile.)
    let mut rows = [RowBlocks::EMPTY; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = x.row(first + r).first(n);
    }
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..n {
        prefetch_ahead(blocks, b);
        let block = &blocks[b];
        // SAFETY: `qs` is 512 bytes; the loads read bytes 64g..64g + 64 for g < 8.
        let w: [__m512i; 8] = std::array::from_fn(|g| unsafe {
            _mm512_loadu_si512(block.qs.as_ptr().add(64 * g).cast())
        });
        // SAFETY: `d` is 16 u16, the 32 bytes this reads.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(block.d.as_ptr().cast()) });
        each_row!(R, r => {
            let row = rows[r];
            let a = &row.words[b];
            // -128 * sum = 16 * (-8 * sum); |sum| <= 32 * 127, no overflow.
            let mut even = _mm512_set1_epi32(16 * row.offsets[b]);
            let mut odd = _mm512_setzero_si512();
            for g in (0..8).step_by(2) {
                even = _mm512_dpbusd_epi32(even, w[g], _mm512_set1_epi32(a[g]));
                odd = _mm512_dpbusd_epi32(odd, w[g + 1], _mm512_set1_epi32(a[g + 1]));
            }
            let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(row.scales[b]));
            acc[r] = _mm512_fmadd_ps(scale, dot, acc[r]);
        });
    }
    acc.map(|v| lanes16(v))
}

/// As [`avx512`], on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2(
    blocks: &[TileBlock8],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    in_row_groups!(rows_avx2, blocks, x, write, [1], 2);
}

/// Activation rows `first..first + R` times one tile, eight weight rows at a time.
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<const R: usize>(
    blocks: &[TileBlock8],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (b, block) in blocks.iter().enumerate() {
        prefetch_ahead(blocks, b);
        for half in 0..2 {
            // SAFETY: `qs` is 512 bytes; the loads read bytes 64g + 32h..64g + 32h + 32
            // for g < 8, h < 2. The xor gives back the signed weights.
            let w: [__m256i; 8] = std::array::from_fn(|g| unsafe {
                _mm256_xor_si256(
                    _mm256_loadu_si256(block.qs.as_ptr().add(64 * g + 32 * half).cast()),
                    flip,
                )
            });
            let magnitude = w.map(|v| _mm256_abs_epi8(v));
            // SAFETY: `d` is 16 u16; this reads the 8 (16 bytes) of rows 8h..8h + 8.
            let d =
                _mm256_cvtph_ps(unsafe { _mm_loadu_si128(block.d.as_ptr().add(8 * half).cast()) });
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = (first + r) * x.blocks() + b;
                let a = &x.words[at];
                let dot4 = |g: usize| {
                    let signed = _mm256_sign_epi8(_mm256_set1_epi32(a[g]), w[g]);
                    _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude[g], signed), ones)
                };
                let mut even = dot4(0);
                let mut odd = dot4(1);
                for g in (2..8).step_by(2) {
                    even = _mm256_add_epi32(even, dot4(g));
                    odd = _mm256_add_epi32(odd, dot4(g + 1));
                }
                let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(even, odd));
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[at]));
                acc[half] = _mm256_fmadd_ps(scale, dot, acc[half]);
            }
        }
    }
    acc.map(|v| lanes8x2(v))
}
