//! The float loops of a forward pass outside the matrix products and attention's two
//! products ([`crate::attend`]): softmax, SwiGLU's `silu(gate) * up`, and the f16
//! rounding of the attention cache. Each has a plain form and an AVX2 one with FMA and
//! F16C ([`crate::x86_vector`]) that gives the same bits. `exp` is the engine's own
//! ([`exp`]: IEEE operations only, so it vectorises and gives the same bits everywhere,
//! where libm's is a call per value whose last bit may vary by build). Every multiply-add
//! is fused (`mul_add`), which is exact however it is done (an instruction, or glibc's or
//! musl's `fmaf` on a build for any x86-64), and the order of the sums is fixed, so both
//! forms give the same bits; the plain one is just slow.

/// Values of one vector register (AVX, f32).
const LANES: usize = 8;

/// `keys` (or values) as f16 bits, appended to `dst`: rounded to nearest, ties to even,
/// and every NaN as the one quiet NaN `0x7e00`. An attention cache holds this: half the
/// bytes a decode step streams through.
pub fn to_f16(src: &[f32], dst: &mut Vec<u16>) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: this CPU runs AVX2, FMA and F16C (`Isa::Avx2` and better have all three).
        return unsafe { crate::x86_vector::to_f16(src, dst) };
    }
    dst.extend(src.iter().map(|v| f16_bits(*v)));
}

/// One value as f16 bits (see [`to_f16`]).
#[inline(always)]
pub(crate) fn f16_bits(v: f32) -> u16 {
    if v.is_nan() {
        0x7e00
    } else {
        half::f16::from_f32(v).to_bits()
    }
}

/// The value an f16 cache holds for `v` (see [`to_f16`]).
pub fn round_to_f16(v: f32) -> f32 {
    f32_of(f16_bits(v))
}

#[inline(always)]
pub(crate) fn f32_of(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Whether the kernels in use have AVX2, FMA and F16C (not when `FAI_KERNEL_ISA=scalar`).
#[cfg(target_arch = "x86_64")]
fn fma() -> bool {
    crate::Isa::best() != crate::Isa::Scalar
}

/// Softmax in place: `exp(x - max) / sum`, the sum taken in [`LANES`] partial sums
/// added as a tree.
pub fn softmax(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: this CPU runs AVX2, FMA and F16C (`Isa::Avx2` and better have all three).
        return unsafe { softmax_fma(x) };
    }
    softmax_plain(x)
}

/// `gate[i] = silu(gate[i]) * up[i]` (SwiGLU), `silu(g) = g / (1 + exp(-g))`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: this CPU runs AVX2, FMA and F16C (`Isa::Avx2` and better have all three).
        return unsafe { silu_mul_fma(gate, up) };
    }
    silu_mul_plain(gate, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax_fma(x: &mut [f32]) {
    // SAFETY: this function's target features.
    unsafe { crate::x86_vector::softmax(x) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn silu_mul_fma(gate: &mut [f32], up: &[f32]) {
    // SAFETY: this function's target features.
    unsafe { crate::x86_vector::silu_mul(gate, up) }
}

#[inline(always)]
fn softmax_plain(x: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
    let mut partial = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (p, v) in partial.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - max);
            *p += *v;
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        tail += *v;
    }
    let [p0, p1, p2, p3, p4, p5, p6, p7] = partial;
    let sum = (((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))) + tail;
    if sum > 0.0 {
        let inverse = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inverse;
        }
    }
}

#[inline(always)]
fn silu_mul_plain(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// 1.5 x 2^23: adding and subtracting it rounds an f32 of magnitude under 2^22 to an
/// integer.
pub(crate) const MAGIC: f32 = 12_582_912.0;
/// ln 2 in two parts, subtracted with fused multiply-adds, so `r` keeps the bits a single
/// ln 2 would lose.
pub(crate) const LN2_HI: f32 = 0.693_145_75;
/// ln 2 - [`LN2_HI`].
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x` within 2 ulp, from IEEE operations only (multiply, add, fused multiply-add,
/// comparisons, and an exponent written into the bits). `x` is clamped to
/// [-87.3, 88.7] first, so the result lies in [2^-126, 2^128): a NaN gives `e^-87.3`.
/// `x = n ln 2 + r` with `n` the nearest integer of `x / ln 2` (by the 1.5 x 2^23
/// trick, exact in round-to-nearest), `|r| <= ln 2 / 2`, and `e^r` a degree-6
/// polynomial (Taylor, Horner form).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    let x = x.clamp(-87.3, 88.7);
    // Not f32::max/min on NaN: clamp of a NaN is NaN; map it to the low end.
    let x = if x.is_nan() { -87.3 } else { x };
    let n = x.mul_add(LOG2_E, MAGIC) - MAGIC;
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p: f32 = 1.0 / 720.0;
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // n is an integer in -126..=128; 2^n as an f32's bits (2^128 as 2^127 * 2).
    let n = n as i32;
    let half = n / 2;
    let two_to = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    p * two_to(half) * two_to(n - half)
}

/// `n` spread values in [-1, 1] from `seed`, for the crate's tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        test_values(n, seed)
    }

    #[test]
    fn exp_is_within_two_ulp_and_softmax_and_silu_use_it_on_both_builds() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "exp is off by {worst} ulp");
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.3));
        assert_eq!(exp(f32::NAN), exp(-87.3));
        assert!(exp(f32::INFINITY).is_finite());
        for n in [1, 5, 8, 9, 33, 200] {
            let mut x = data(n, 5).iter().map(|v| v * 30.0).collect::<Vec<_>>();
            // Values exp clamps, and NaN, in the vector part and in the tail.
            for (at, v) in [(0, -100.0), (3, 95.0), (6, f32::NAN), (n - 1, -0.0)] {
                if at < n && n > 8 {
                    x[at] = v;
                }
            }
            let (mut fast, mut plain) = (x.clone(), x.clone());
            softmax(&mut fast);
            softmax_plain(&mut plain);
            assert!(
                fast.iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "softmax, {n}"
            );
            let total: f32 = fast.iter().sum();
            assert!((total - 1.0).abs() < 1e-5, "softmax sums to {total}");
            let up = data(n, 6);
            let (mut fast, mut plain) = (x.clone(), x.clone());
            silu_mul(&mut fast, &up);
            silu_mul_plain(&mut plain, &up);
            assert!(
                fast.iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "silu, {n}"
            );
            for ((s, g), u) in fast.iter().zip(&x).zip(&up) {
                if g.is_nan() {
                    assert!(s.is_nan(), "silu(NaN) = {s}");
                    continue;
                }
                let want = f64::from(*g) / (1.0 + (-f64::from(*g)).exp()) * f64::from(*u);
                assert!(
                    (f64::from(*s) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "silu({g})"
                );
            }
        }
    }

    #[test]
    fn both_builds_round_to_f16_alike() {
        // Every 65,537th bit pattern (all exponents, signs, NaNs and infinities), and
        // values on and between f16 steps near the normal, subnormal and overflow edges.
        let mut values: Vec<f32> = (0..=u32::MAX / 65_537)
            .map(|i| f32::from_bits(i * 65_537))
            .collect();
        for base in [6.103_515_6e-5f32, 5.960_464_5e-8, 65_504.0, 1.0] {
            for k in 0..64 {
                let v = base * (1.0 + k as f32 / 4096.0);
                values.extend([v, -v]);
            }
        }
        values.extend([f32::NAN, -f32::NAN, f32::INFINITY, 65_520.0, 1e-10]);
        let mut fast = Vec::new();
        to_f16(&values, &mut fast);
        let plain: Vec<u16> = values.iter().map(|v| f16_bits(*v)).collect();
        assert_eq!(fast.len(), plain.len());
        for ((v, a), b) in values.iter().zip(&fast).zip(&plain) {
            assert_eq!(a, b, "{v:e} ({:#x})", v.to_bits());
        }
    }
}
