//! AVX2 forms of [`crate::vector`]'s f16 rounding, dot product and weighted sum, written
//! out because the compiler vectorised the plain ones two lanes at a time. They keep the plain
//! ones' order of operations exactly: the same four chains of eight lanes of fused
//! multiply-adds and the same tree at the end for the dot product, the same sequence of
//! fused multiply-adds per element for the weighted sum.

use std::arch::x86_64::*;

/// [`crate::vector::to_f16`] on F16C, NaNs made the one quiet NaN first.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn to_f16(src: &[f32], dst: &mut Vec<u16>) {
    dst.reserve(src.len());
    let mut chunks = src.chunks_exact(8);
    let quiet = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0_0000));
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds 8 f32.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        let v = _mm256_blendv_ps(v, quiet, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        let mut bits = [0u16; 8];
        // SAFETY: `bits` is 16 bytes, the store's size.
        unsafe { _mm_storeu_si128(bits.as_mut_ptr().cast(), h) };
        dst.extend_from_slice(&bits);
    }
    dst.extend(
        chunks
            .remainder()
            .iter()
            .map(|v| crate::vector::f16_bits(*v)),
    );
}

/// Eight f16 values at `p` as f32.
///
/// # Safety
/// The CPU must support F16C and AVX; `p` must be valid for 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const u16) -> __m256 {
    // SAFETY: the caller's.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// [`crate::vector::dot`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    let whole = n - n % 32;
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < whole {
        for (c, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8c + 8 <= whole <= n, within both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * c)),
                    load_f16(b.as_ptr().add(i + 8 * c)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    let tail: f32 = a[whole..n]
        .iter()
        .zip(&b[whole..n])
        .map(|(x, y)| x * half::f16::from_bits(*y).to_f32())
        .sum();
    // v = (a0 + a1) + (a2 + a3); then ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)).
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s) + tail
}

/// [`crate::vector::add_weighted`] on AVX2: 32 elements of `out` at a time, kept in
/// registers while every weighted value is added to them in order.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn add_weighted(weights: &[f32], values: &[u16], out: &mut [f32]) {
    let dim = out.len();
    if dim == 0 {
        return;
    }
    let count = weights.len().min(values.len() / dim);
    let whole = dim - dim % 32;
    let mut e = 0;
    while e < whole {
        // SAFETY: e + 32 <= whole <= dim: the four loads and stores stay within `out`.
        let mut o: [__m256; 4] =
            std::array::from_fn(|c| unsafe { _mm256_loadu_ps(out.as_ptr().add(e + 8 * c)) });
        for (j, w) in weights.iter().take(count).enumerate() {
            let w = _mm256_set1_ps(*w);
            for (c, o) in o.iter_mut().enumerate() {
                // SAFETY: j < count <= values.len() / dim, so j * dim + e + 8c + 8 <=
                // (j + 1) * dim <= values.len().
                let x = unsafe { load_f16(values.as_ptr().add(j * dim + e + 8 * c)) };
                *o = _mm256_fmadd_ps(x, w, *o);
            }
        }
        for (c, o) in o.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(e + 8 * c), *o) };
        }
        e += 32;
    }
    if whole < dim {
        for (w, value) in weights.iter().zip(values.chunks_exact(dim)) {
            for (o, x) in out[whole..].iter_mut().zip(&value[whole..]) {
                *o = half::f16::from_bits(*x).to_f32().mul_add(*w, *o);
            }
        }
    }
}
