//! The x86 kernels for Q4_0 (see [`crate::q4_0`] for the layout and [`crate::q4_0`]'s
//! `reference` for the arithmetic they reproduce bit for bit).
//!
//! Per block: the 16 rows' integer dot products are exact whatever the order
//! (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`: weights are 0..=15 and activations
//! -127..=127, so no 16-bit pair sum can saturate), then each row lane does
//! `scale = d_w * d_a` and `acc = fma(scale, dot, acc)`, as the reference does.
//!
//! A pass over a tile's blocks serves eight activation rows on AVX-512 (their
//! accumulators and the tile's unpacked weights fit in the 32 vector registers) and two
//! on AVX2 (16 registers), so a batch reads the weights once per eight rows.

use std::arch::x86_64::*;

use crate::activations::{Activations, RowBlocks};
use crate::packed::TILE_ROWS;
use crate::q4_0::TileBlock;
use crate::x86_common::{lanes16, lanes8x2, prefetch_ahead};

/// Every activation row times one tile (its blocks in order); hands each row's 16
/// results to `write`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn avx512(
    blocks: &[TileBlock],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    // The row functions need this function's target features, which it has.
    in_row_groups!(rows_avx512, blocks, x, write, [1, 2, 3, 4, 5, 6, 7], 8);
}

/// Activation rows `first..first + R` times one tile (`first + R <= x.rows()` is checked
/// by indexing). Callable only where the target features are known to be present.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn rows_avx512<const R: usize>(
    blocks: &[TileBlock],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let nibble = _mm512_set1_epi8(0x0F);
    let n = blocks.len();
    // Each row's blocks, cut to the tile's length (the product checked that they agree).
    let mut rows = [RowBlocks::EMPTY; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = x.row(first + r).first(n);
    }
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..n {
        prefetch_ahead(blocks, b);
        let block = &blocks[b];
        // SAFETY: `qs` is 256 bytes; the loads read bytes 64g..64g + 64 for g < 4.
        let w: [__m512i; 4] = std::array::from_fn(|g| unsafe {
            _mm512_loadu_si512(block.qs.as_ptr().add(64 * g).cast())
        });
        let lo = w.map(|v| _mm512_and_si512(v, nibble));
        let hi = w.map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), nibble));
        // SAFETY: `d` is 16 u16, the 32 bytes this reads.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(block.d.as_ptr().cast()) });
        each_row!(R, r => {
            let row = rows[r];
            let a = &row.words[b];
            let mut even = _mm512_set1_epi32(row.offsets[b]);
            let mut odd = _mm512_setzero_si512();
            even = _mm512_dpbusd_epi32(even, lo[0], _mm512_set1_epi32(a[0]));
            odd = _mm512_dpbusd_epi32(odd, lo[1], _mm512_set1_epi32(a[1]));
            even = _mm512_dpbusd_epi32(even, lo[2], _mm512_set1_epi32(a[2]));
            odd = _mm512_dpbusd_epi32(odd, lo[3], _mm512_set1_epi32(a[3]));
            even = _mm512_dpbusd_epi32(even, hi[0], _mm512_set1_epi32(a[4]));
            odd = _mm512_dpbusd_epi32(odd, hi[1], _mm512_set1_epi32(a[5]));
            even = _mm512_dpbusd_epi32(even, hi[2], _mm512_set1_epi32(a[6]));
            odd = _mm512_dpbusd_epi32(odd, hi[3], _mm512_set1_epi32(a[7]));
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
    blocks: &[TileBlock],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    in_row_groups!(rows_avx2, blocks, x, write, [1], 2);
}

/// Activation rows `first..first + R` times one tile, eight weight rows at a time.
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<const R: usize>(
    blocks: &[TileBlock],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (b, block) in blocks.iter().enumerate() {
        prefetch_ahead(blocks, b);
        for half in 0..2 {
            // SAFETY: `qs` is 256 bytes; the loads read bytes 64g + 32h..64g + 32h + 32
            // for g < 4, h < 2.
            let w: [__m256i; 4] = std::array::from_fn(|g| unsafe {
                _mm256_loadu_si256(block.qs.as_ptr().add(64 * g + 32 * half).cast())
            });
            let lo = w.map(|v| _mm256_and_si256(v, nibble));
            let hi = w.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble));
            // SAFETY: `d` is 16 u16; this reads the 8 (16 bytes) of rows 8h..8h + 8.
            let d =
                _mm256_cvtph_ps(unsafe { _mm_loadu_si128(block.d.as_ptr().add(8 * half).cast()) });
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = (first + r) * x.blocks() + b;
                let a = &x.words[at];
                let dot4 = |w: __m256i, a: i32| {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_set1_epi32(a)), ones)
                };
                let mut even = _mm256_set1_epi32(x.offsets[at]);
                let mut odd = dot4(lo[1], a[1]);
                even = _mm256_add_epi32(even, dot4(lo[0], a[0]));
                even = _mm256_add_epi32(even, dot4(lo[2], a[2]));
                odd = _mm256_add_epi32(odd, dot4(lo[3], a[3]));
                even = _mm256_add_epi32(even, dot4(hi[0], a[4]));
                odd = _mm256_add_epi32(odd, dot4(hi[1], a[5]));
                even = _mm256_add_epi32(even, dot4(hi[2], a[6]));
                odd = _mm256_add_epi32(odd, dot4(hi[3], a[7]));
                let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(even, odd));
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scales[at]));
                acc[half] = _mm256_fmadd_ps(scale, dot, acc[half]);
            }
        }
    }
    acc.map(|v| lanes8x2(v))
}
