//! The x86 kernels for Q4_K (layout and arithmetic in [`crate::q4_k`], which they
//! reproduce bit for bit). Per sub-block the 16 rows' integer dot products are exact in
//! any order; the scales are formed and applied per row lane exactly as the reference
//! does.

use std::arch::x86_64::*;

use crate::activations::{Activations, RowBlocks};
use crate::packed::TILE_ROWS;
use crate::q4_k::{TileSuper, SUBS};
use crate::x86_common::{lanes16, lanes8x2, prefetch_ahead};

/// Every activation row times one tile (its super-blocks in order); hands each row's 16
/// results to `write`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn avx512(
    supers: &[TileSuper],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    // The row functions need this function's target features, which it has.
    in_row_groups!(rows_avx512, supers, x, write, [1, 2, 3, 4, 5, 6, 7], 8);
}

/// Activation rows `first..first + R` times one tile (`first + R <= x.rows()` is checked
/// by indexing).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn rows_avx512<const R: usize>(
    supers: &[TileSuper],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let nibble = _mm512_set1_epi8(0x0F);
    // Each row's blocks, cut to the tile's length (the product checked that they agree).
    let n = supers.len() * SUBS;
    let mut rows = [RowBlocks::EMPTY; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = x.row(first + r).first(n);
    }
    let mut acc = [_mm512_setzero_ps(); R];
    for (b, sb) in supers.iter().enumerate() {
        prefetch_ahead(supers, b);
        // SAFETY: `d` and `dmin` are 16 u16 each, the 32 bytes each load reads.
        let (d, dmin) = unsafe {
            (
                _mm512_cvtph_ps(_mm256_loadu_si256(sb.d.as_ptr().cast())),
                _mm512_cvtph_ps(_mm256_loadu_si256(sb.dmin.as_ptr().cast())),
            )
        };
        for s in 0..SUBS {
            let (c, shift) = (s / 2, (s % 2) as u32 * 4);
            // SAFETY: `qs` is 2,048 bytes; these read bytes (8c + g) * 64.. + 64 for
            // c < 4, g < 8. `scales[s]` and `mins[s]` are 16 bytes each.
            let (q, scale, min) = unsafe {
                let q: [__m512i; 8] = std::array::from_fn(|g| {
                    let w = _mm512_loadu_si512(sb.qs.as_ptr().add((8 * c + g) * 64).cast());
                    _mm512_and_si512(_mm512_srl_epi16(w, _mm_cvtsi32_si128(shift as i32)), nibble)
                });
                let scale = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    sb.scales[s].as_ptr().cast(),
                )));
                let min = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    sb.mins[s].as_ptr().cast(),
                )));
                (q, _mm512_mul_ps(d, scale), _mm512_mul_ps(dmin, min))
            };
            let at = b * SUBS + s;
            each_row!(R, r => {
                let row = rows[r];
                let a = &row.words[at];
                let mut even = _mm512_setzero_si512();
                let mut odd = _mm512_setzero_si512();
                for g in (0..8).step_by(2) {
                    even = _mm512_dpbusd_epi32(even, q[g], _mm512_set1_epi32(a[g]));
                    odd = _mm512_dpbusd_epi32(odd, q[g + 1], _mm512_set1_epi32(a[g + 1]));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
                let da = _mm512_set1_ps(row.scales[at]);
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(scale, da), dot, acc[r]);
                acc[r] =
                    _mm512_fnmadd_ps(_mm512_mul_ps(min, da), _mm512_set1_ps(row.sums[at]), acc[r]);
            });
        }
    }
    acc.map(|v| lanes16(v))
}

/// As [`avx512`], on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2(
    supers: &[TileSuper],
    x: &Activations,
    write: &mut dyn FnMut(usize, &[[f32; TILE_ROWS]]),
) {
    in_row_groups!(rows_avx2, supers, x, write, [1], 2);
}

/// Activation rows `first..first + R` times one tile, eight weight rows at a time.
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<const R: usize>(
    supers: &[TileSuper],
    x: &Activations,
    first: usize,
) -> [[f32; TILE_ROWS]; R] {
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (b, sb) in supers.iter().enumerate() {
        prefetch_ahead(supers, b);
        for half in 0..2 {
            // SAFETY: `d` and `dmin` are 16 u16; these read the 8 of rows 8h..8h + 8.
            let (d, dmin) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(sb.d.as_ptr().add(8 * half).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(sb.dmin.as_ptr().add(8 * half).cast())),
                )
            };
            for s in 0..SUBS {
                let (c, shift) = (s / 2, (s % 2) as i32 * 4);
                // SAFETY: `qs` is 2,048 bytes; these read bytes (8c + g) * 64 + 32h.. + 32
                // for c < 4, g < 8, h < 2. `scales[s]` and `mins[s]` are 16 bytes; these
                // read the 8 at 8h.
                let (q, scale, min) = unsafe {
                    let q: [__m256i; 8] = std::array::from_fn(|g| {
                        let w = _mm256_loadu_si256(
                            sb.qs.as_ptr().add((8 * c + g) * 64 + 32 * half).cast(),
                        );
                        _mm256_and_si256(_mm256_srl_epi16(w, _mm_cvtsi32_si128(shift)), nibble)
                    });
                    let scale = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        sb.scales[s].as_ptr().add(8 * half).cast(),
                    )));
                    let min = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        sb.mins[s].as_ptr().add(8 * half).cast(),
                    )));
                    (q, _mm256_mul_ps(d, scale), _mm256_mul_ps(dmin, min))
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    let at = (first + r) * x.blocks() + b * SUBS + s;
                    let a = &x.words[at];
                    let dot4 = |w: __m256i, a: i32| {
                        _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_set1_epi32(a)), ones)
                    };
                    let mut even = dot4(q[0], a[0]);
                    let mut odd = dot4(q[1], a[1]);
                    for g in (2..8).step_by(2) {
                        even = _mm256_add_epi32(even, dot4(q[g], a[g]));
                        odd = _mm256_add_epi32(odd, dot4(q[g + 1], a[g + 1]));
                    }
                    let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(even, odd));
                    let da = _mm256_set1_ps(x.scales[at]);
                    let sum = _mm256_set1_ps(x.sums[at]);
                    acc[half] = _mm256_fmadd_ps(_mm256_mul_ps(scale, da), dot, acc[half]);
                    acc[half] = _mm256_fnmadd_ps(_mm256_mul_ps(min, da), sum, acc[half]);
                }
            }
        }
    }
    acc.map(|v| lanes8x2(v))
}
