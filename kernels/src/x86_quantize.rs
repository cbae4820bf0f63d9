//! A block of activations quantised with AVX2, to the bits of
//! [`crate::activations::quantize_block`]: the same IEEE operations per value (abs,
//! multiply by 1 / scale, add 1/2, truncate, sign), and a maximum over non-negative
//! finite values, which is the same in any order. Blocks with a NaN or an infinity go
//! the scalar way.

use std::arch::x86_64::*;

use crate::activations::{quantize_block, scale_and_inverse, Quantised};

/// # Safety
/// The CPU must support AVX2. `block` must hold 32 values (checked).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn block(block: &[f32]) -> Quantised {
    let Ok(block) = <&[f32; 32]>::try_from(block) else {
        return quantize_block(block);
    };
    // SAFETY: `block` holds 32 f32; the loads read 8 each at 0, 8, 16, 24.
    let v: [__m256; 4] =
        std::array::from_fn(|i| unsafe { _mm256_loadu_ps(block.as_ptr().add(8 * i)) });
    let sign = _mm256_set1_ps(-0.0);
    let abs = v.map(|v| _mm256_andnot_ps(sign, v));
    // Any NaN or infinity: greater than f32::MAX, or unordered.
    let huge = _mm256_set1_ps(f32::MAX);
    let bad = abs.iter().fold(0, |m, a| {
        m | _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(*a, huge))
    });
    if bad != 0 {
        return quantize_block(block);
    }
    let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds the 8 f32 this writes.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let amax = lanes.iter().fold(0f32, |m, a| if *a > m { *a } else { m });
    let (scale, inverse) = scale_and_inverse(amax);
    let (inverse, half, zero) = (
        _mm256_set1_ps(inverse),
        _mm256_set1_ps(0.5),
        _mm256_setzero_ps(),
    );
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let magnitude = _mm256_min_epi32(
            _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(abs[i], inverse), half)),
            _mm256_set1_epi32(127),
        );
        let negative = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(v[i], zero));
        _mm256_blendv_epi8(
            magnitude,
            _mm256_sub_epi32(_mm256_setzero_si256(), magnitude),
            negative,
        )
    });
    // Values are in -127..=127 (finite inputs, a finite 1 / scale, and the bound): the
    // packs do not saturate. They interleave 128-bit
    // lanes; the permutation puts the 32 bytes back in order.
    let bytes = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let mut words = [0i32; 8];
    // SAFETY: `words` is 32 bytes, the store's size.
    unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), bytes) };
    let sums = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 bytes, the store's size.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums) };
    Quantised {
        words,
        scale,
        sum: lanes.iter().sum(),
    }
}
