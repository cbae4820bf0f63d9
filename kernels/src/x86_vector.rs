//! AVX2 forms of [`crate::vector`]'s f16 rounding, softmax and SwiGLU, written out
//! because the compiler vectorised the plain ones poorly (`exp` not at all: SwiGLU took
//! 17 ns a value). They keep the plain ones' operations exactly: softmax's eight partial
//! sums are the eight lanes, and [`crate::vector::exp`]'s operations run lane by lane.

use std::arch::x86_64::*;

use crate::vector::{LN2_HI, LN2_LO, MAGIC};

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

/// [`crate::vector::exp`] on eight lanes: the same IEEE operations in the same order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
        _mm256_set1_ps(88.7),
    );
    // max/min keep their second operand when the first is NaN: a NaN lane is -87.3 now,
    // as the plain form maps it.
    let n = _mm256_sub_ps(
        _mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(MAGIC),
        ),
        _mm256_set1_ps(MAGIC),
    );
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // n is an integer in -126..=128, exact as an i32; half = n / 2 rounded toward zero.
    let n = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32::<1>(_mm256_add_epi32(n, _mm256_srli_epi32::<31>(n)));
    let two_to = |k: __m256i| {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )))
    };
    _mm256_mul_ps(
        _mm256_mul_ps(p, two_to(half)),
        two_to(_mm256_sub_epi32(n, half)),
    )
}

/// [`crate::vector::softmax`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let whole = x.len() - x.len() % 8;
    // The largest value, NaNs passed over (as the plain fold does).
    let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
    for chunk in x[..whole].chunks_exact(8) {
        // SAFETY: `chunk` holds 8 f32.
        max = _mm256_max_ps(unsafe { _mm256_loadu_ps(chunk.as_ptr()) }, max);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), max) };
    let max = lanes
        .iter()
        .chain(&x[whole..])
        .fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
    let m = _mm256_set1_ps(max);
    let mut partial = _mm256_setzero_ps();
    for chunk in x[..whole].chunks_exact_mut(8) {
        // SAFETY: `chunk` holds 8 f32, read and written.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), m));
            _mm256_storeu_ps(chunk.as_mut_ptr(), e);
            partial = _mm256_add_ps(partial, e);
        }
    }
    let mut tail = 0f32;
    for v in &mut x[whole..] {
        *v = crate::vector::exp(*v - max);
        tail += *v;
    }
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), partial) };
    let [p0, p1, p2, p3, p4, p5, p6, p7] = lanes;
    let sum = (((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))) + tail;
    if sum > 0.0 {
        let inverse = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inverse;
        }
    }
}

/// [`crate::vector::silu_mul`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let whole = n - n % 8;
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    for (g, u) in gate[..whole]
        .chunks_exact_mut(8)
        .zip(up[..whole].chunks_exact(8))
    {
        // SAFETY: `g` and `u` hold 8 f32 each; `g` is written.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr());
            let e = exp8(_mm256_xor_ps(x, sign));
            let y = _mm256_mul_ps(
                _mm256_div_ps(x, _mm256_add_ps(one, e)),
                _mm256_loadu_ps(u.as_ptr()),
            );
            _mm256_storeu_ps(g.as_mut_ptr(), y);
        }
    }
    for (g, u) in gate[whole..n].iter_mut().zip(&up[whole..n]) {
        *g = *g / (1.0 + crate::vector::exp(-*g)) * u;
    }
}
