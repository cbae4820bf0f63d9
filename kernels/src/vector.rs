//! The float loops of attention: a query against every key, and the weighted sum of the
//! values. One source, compiled twice: for AVX2 with FMA where the CPU has it, and
//! plain. Every multiply-add is fused (`mul_add`), which is exact however it is done (an
//! instruction, or libm's `fmaf` on a build for any x86-64), and the order of the sums
//! is fixed, so both builds give the same bits; the plain one is just slow.

/// Values of one vector register (AVX, f32).
const LANES: usize = 8;
/// Independent chains of fused multiply-adds in [`dot`].
const CHAINS: usize = 4;

/// `out[j] = (q . keys[j]) * scale` for each key (`keys`: `[out.len()][q.len()]`).
pub fn scaled_dots(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: this CPU runs AVX2 and FMA.
        return unsafe { scaled_dots_fma(q, keys, scale, out) };
    }
    scaled_dots_plain(q, keys, scale, out)
}

/// `out += sum over j of weights[j] * values[j]` (`values`: `[weights.len()][out.len()]`),
/// each element's sum taken in order of j.
pub fn add_weighted(weights: &[f32], values: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: this CPU runs AVX2 and FMA.
        return unsafe { add_weighted_fma(weights, values, out) };
    }
    add_weighted_plain(weights, values, out)
}

/// Whether the kernels in use have AVX2 and FMA (not when `FAI_KERNEL_ISA=scalar`).
#[cfg(target_arch = "x86_64")]
fn fma() -> bool {
    crate::Isa::best() != crate::Isa::Scalar
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scaled_dots_fma(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
    scaled_dots_plain(q, keys, scale, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_weighted_fma(weights: &[f32], values: &[f32], out: &mut [f32]) {
    add_weighted_plain(weights, values, out)
}

#[inline(always)]
fn scaled_dots_plain(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
    if q.is_empty() {
        return out.fill(0.0);
    }
    for (o, key) in out.iter_mut().zip(keys.chunks_exact(q.len())) {
        *o = dot(q, key) * scale;
    }
}

#[inline(always)]
fn add_weighted_plain(weights: &[f32], values: &[f32], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    for (w, value) in weights.iter().zip(values.chunks_exact(out.len())) {
        for (o, x) in out.iter_mut().zip(value) {
            *o = x.mul_add(*w, *o);
        }
    }
}

/// `a . b` over the shorter of the two: [`CHAINS`] independent register-wide partial
/// sums, added as a tree (a running sum of the lanes would be one long dependency chain).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; LANES]; CHAINS];
    let (ca, cb) = (
        a.chunks_exact(LANES * CHAINS),
        b.chunks_exact(LANES * CHAINS),
    );
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((chain, xa), xb) in acc
            .iter_mut()
            .zip(xa.chunks_exact(LANES))
            .zip(xb.chunks_exact(LANES))
        {
            for ((s, x), y) in chain.iter_mut().zip(xa).zip(xb) {
                *s = x.mul_add(*y, *s);
            }
        }
    }
    let [a0, a1, a2, a3] = acc;
    let mut v = [0f32; LANES];
    for ((((v, a), b), c), d) in v.iter_mut().zip(a0).zip(a1).zip(a2).zip(a3) {
        *v = (a + b) + (c + d);
    }
    let [v0, v1, v2, v3, v4, v5, v6, v7] = v;
    (((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn both_builds_give_the_same_bits() {
        for dim in [1, 7, 32, 64, 100, 128] {
            let q = data(dim, 1);
            let keys = data(dim * 37, 2);
            let (mut fast, mut plain) = (vec![0f32; 37], vec![0f32; 37]);
            scaled_dots(&q, &keys, 0.125, &mut fast);
            scaled_dots_plain(&q, &keys, 0.125, &mut plain);
            assert!(
                fast.iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "dots, dim {dim}"
            );
            let weights = data(37, 3);
            let (mut fast, mut plain) = (data(dim, 4), data(dim, 4));
            add_weighted(&weights, &keys, &mut fast);
            add_weighted_plain(&weights, &keys, &mut plain);
            assert!(
                fast.iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "sums, dim {dim}"
            );
        }
    }

    #[test]
    fn the_loops_compute_dot_products_and_weighted_sums() {
        let q = [1.0, 2.0, 3.0];
        let keys = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut out = [0f32; 2];
        scaled_dots(&q, &keys, 0.5, &mut out);
        assert_eq!(out, [0.5, 2.5]);
        let mut acc = [1.0f32, 1.0, 1.0];
        add_weighted(&[2.0, -1.0], &keys, &mut acc);
        assert_eq!(acc, [3.0, 0.0, 0.0]);
    }
}
