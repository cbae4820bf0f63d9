//! Attention's two products over an f16 cache: every query against a head's keys (the
//! scores), and the softmax weights against its values (the output).
//!
//! Each score and each output value is one chain of fused multiply-adds from zero, in a
//! fixed order, whatever else is computed beside it:
//! - score `j` of query `q` = `(sum over d in order of q[d] * key_j[d]) * scale`;
//! - output value `d` = `sum over j in order of weight_j * value_j[d]`.
//!
//! So a query's scores and outputs do not depend on how many queries run together (a
//! decode step's one position, or a verifier's whole answer), nor on the instruction
//! set: the AVX2 kernels ([`crate::x86_attend`]) compute a chain per vector lane and
//! give the scalar reference's bits.
//!
//! Keys are held in blocks of [`KEY_BLOCK`] positions, each `[dim][16]` (a block's
//! positions side by side for each of a head's values), so that a vector lane is a
//! position: the scores of 16 positions take one load and one multiply-add per value
//! and no sum across lanes. Values stay position after position.

use crate::vector::{f32_of, to_f16};
use crate::Isa;

/// Positions per block of keys.
pub const KEY_BLOCK: usize = 16;

/// One head's keys as f16 bits, in blocks of [`KEY_BLOCK`] positions laid out
/// `[dim][KEY_BLOCK]`; the last block's unused positions are zeros.
#[derive(Debug, Clone, Default)]
pub struct KeyBlocks {
    bits: Vec<u16>,
    dim: usize,
    len: usize,
    /// The key being appended, rounded (reused from key to key).
    rounded: Vec<u16>,
}

impl KeyBlocks {
    /// No keys yet, of `dim` values each.
    pub fn new(dim: usize) -> Self {
        KeyBlocks {
            bits: Vec::new(),
            dim,
            len: 0,
            rounded: Vec::new(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per key.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Appends one key (f32, rounded to f16 as [`crate::vector::to_f16`] rounds).
    /// Values past `dim` are ignored; missing ones are zeros.
    pub fn push(&mut self, key: &[f32]) {
        let lane = self.len % KEY_BLOCK;
        if lane == 0 {
            self.bits.resize(self.bits.len() + KEY_BLOCK * self.dim, 0);
        }
        let block = self.bits.len() - KEY_BLOCK * self.dim;
        self.rounded.clear();
        to_f16(key.get(..self.dim).unwrap_or(key), &mut self.rounded);
        for (d, v) in self.rounded.iter().enumerate() {
            if let Some(slot) = self.bits.get_mut(block + d * KEY_BLOCK + lane) {
                *slot = *v;
            }
        }
        self.len += 1;
    }

    /// Block `b` (`[dim][KEY_BLOCK]`), if held.
    pub(crate) fn block(&self, b: usize) -> Option<&[u16]> {
        let size = KEY_BLOCK * self.dim;
        self.bits.get(b * size..(b + 1) * size)
    }

    /// Key `j`'s value `d` as f32 (the reference's reads).
    fn value(&self, j: usize, d: usize) -> f32 {
        let at = (j / KEY_BLOCK) * KEY_BLOCK * self.dim + d * KEY_BLOCK + j % KEY_BLOCK;
        f32_of(self.bits.get(at).copied().unwrap_or(0))
    }
}

/// For each query `i`: `outs[i][j] = (queries[i] . key_j) * scale` for `j <
/// outs[i].len()`. Each `outs[i]` is at most `keys.len()` long and each query `keys.dim()`
/// long, one output per query (the engine's attention makes them so; other shapes take
/// the scalar reference, which cuts longer ones and leaves the rest unwritten).
pub fn key_scores(keys: &KeyBlocks, queries: &[&[f32]], scale: f32, outs: &mut [&mut [f32]]) {
    key_scores_on(Isa::best(), keys, queries, scale, outs)
}

/// [`key_scores`] on the kernel of `isa` (the reference where this CPU lacks it).
pub(crate) fn key_scores_on(
    isa: Isa,
    keys: &KeyBlocks,
    queries: &[&[f32]],
    scale: f32,
    outs: &mut [&mut [f32]],
) {
    let fits = queries.len() == outs.len()
        && queries.iter().all(|q| q.len() == keys.dim)
        && outs.iter().all(|o| o.len() <= keys.len);
    #[cfg(target_arch = "x86_64")]
    if fits && isa.available() {
        match isa {
            Isa::Avx512Vnni => {
                // SAFETY: this CPU runs AVX-512 F (`available`); every query is `dim` long
                // and every output within the keys held.
                return unsafe { crate::x86_attend::key_scores_512(keys, queries, scale, outs) };
            }
            Isa::Avx2 => {
                // SAFETY: this CPU runs AVX2, FMA and F16C; as above.
                return unsafe { crate::x86_attend::key_scores(keys, queries, scale, outs) };
            }
            Isa::Scalar => {}
        }
    }
    let _ = (fits, isa);
    key_scores_reference(keys, queries, scale, outs)
}

/// [`key_scores`] one value at a time.
pub(crate) fn key_scores_reference(
    keys: &KeyBlocks,
    queries: &[&[f32]],
    scale: f32,
    outs: &mut [&mut [f32]],
) {
    for (q, out) in queries.iter().zip(outs.iter_mut()) {
        for (j, o) in out.iter_mut().enumerate().take(keys.len) {
            let mut acc = 0f32;
            for (d, x) in q.iter().enumerate().take(keys.dim) {
                acc = x.mul_add(keys.value(j, d), acc);
            }
            *o = acc * scale;
        }
    }
}

/// For each query `i`: `outs[i][d] = sum over j < weights[i].len() of weights[i][j] *
/// value_j[d]`, with `values` `[positions][outs[i].len()]` f16 bits. Weights past the
/// values held are ignored.
pub fn weighted_values(values: &[u16], weights: &[&[f32]], outs: &mut [&mut [f32]]) {
    weighted_values_on(Isa::best(), values, weights, outs)
}

/// [`weighted_values`] on the kernel of `isa` (the reference where this CPU lacks it).
pub(crate) fn weighted_values_on(
    isa: Isa,
    values: &[u16],
    weights: &[&[f32]],
    outs: &mut [&mut [f32]],
) {
    let dim = outs.first().map_or(0, |o| o.len());
    let fits = dim > 0
        && weights.len() == outs.len()
        && outs.iter().all(|o| o.len() == dim)
        && weights
            .iter()
            .all(|w| w.len().checked_mul(dim).is_some_and(|n| n <= values.len()));
    #[cfg(target_arch = "x86_64")]
    if fits && isa.available() {
        match isa {
            Isa::Avx512Vnni => {
                // SAFETY: this CPU runs AVX-512 F (`available`); every output is `dim` long
                // and every weight has its value row.
                return unsafe { crate::x86_attend::weighted_values_512(values, weights, outs) };
            }
            Isa::Avx2 => {
                // SAFETY: this CPU runs AVX2, FMA and F16C; as above.
                return unsafe { crate::x86_attend::weighted_values(values, weights, outs) };
            }
            Isa::Scalar => {}
        }
    }
    let _ = (fits, isa);
    weighted_values_reference(values, weights, outs)
}

/// [`weighted_values`] one value at a time.
pub(crate) fn weighted_values_reference(
    values: &[u16],
    weights: &[&[f32]],
    outs: &mut [&mut [f32]],
) {
    for (w, out) in weights.iter().zip(outs.iter_mut()) {
        let dim = out.len();
        if dim == 0 {
            continue;
        }
        out.fill(0.0);
        for (weight, value) in w.iter().zip(values.chunks_exact(dim)) {
            for (o, x) in out.iter_mut().zip(value) {
                *o = f32_of(*x).mul_add(*weight, *o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-2, 2].
    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::vector::test_values(n, seed)
            .into_iter()
            .map(|v| 2.0 * v)
            .collect()
    }

    /// Every query count up to 9 with lengths that end inside and on block edges, on
    /// head sizes that are and are not multiples of the vector chunks.
    #[test]
    fn the_kernels_give_the_references_bits_and_the_formula() {
        for isa in Isa::available_all() {
            check_kernels(isa);
        }
    }

    fn check_kernels(isa: Isa) {
        for dim in [1, 7, 16, 24, 48, 64, 80, 128] {
            let positions = 53;
            let mut keys = KeyBlocks::new(dim);
            let key_rows: Vec<Vec<f32>> = (0..positions).map(|j| data(dim, j as u32)).collect();
            for k in &key_rows {
                keys.push(k);
            }
            assert_eq!(keys.len(), positions);
            let mut values = Vec::new();
            let value_rows: Vec<Vec<f32>> =
                (0..positions).map(|j| data(dim, 1000 + j as u32)).collect();
            for v in &value_rows {
                crate::vector::to_f16(v, &mut values);
            }
            for count in 1..=9usize {
                let queries: Vec<Vec<f32>> = (0..count).map(|i| data(dim, 77 + i as u32)).collect();
                let q: Vec<&[f32]> = queries.iter().map(|v| v.as_slice()).collect();
                // Lengths: the last query sees everything, earlier ones less.
                let lens: Vec<usize> = (0..count)
                    .map(|i| positions - (count - 1 - i) * 5)
                    .collect();
                let mut fast: Vec<Vec<f32>> = lens.iter().map(|l| vec![f32::NAN; *l]).collect();
                let mut plain = fast.clone();
                {
                    let mut f: Vec<&mut [f32]> =
                        fast.iter_mut().map(|v| v.as_mut_slice()).collect();
                    key_scores_on(isa, &keys, &q, 0.125, &mut f);
                    let mut p: Vec<&mut [f32]> =
                        plain.iter_mut().map(|v| v.as_mut_slice()).collect();
                    key_scores_reference(&keys, &q, 0.125, &mut p);
                }
                for (i, (a, b)) in fast.iter().zip(&plain).enumerate() {
                    for (j, (x, y)) in a.iter().zip(b).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{isa:?} score dim {dim} count {count} query {i} key {j}"
                        );
                        let want: f64 = queries[i]
                            .iter()
                            .zip(&key_rows[j])
                            .map(|(q, k)| {
                                f64::from(*q) * f64::from(crate::vector::round_to_f16(*k))
                            })
                            .sum::<f64>()
                            * 0.125;
                        assert!(
                            (f64::from(*x) - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{x} vs {want}"
                        );
                    }
                }
                let weights: Vec<Vec<f32>> = lens
                    .iter()
                    .map(|l| data(*l, 5).iter().map(|v| v / 4.0).collect())
                    .collect();
                let w: Vec<&[f32]> = weights.iter().map(|v| v.as_slice()).collect();
                let mut fast = vec![vec![f32::NAN; dim]; count];
                let mut plain = fast.clone();
                {
                    let mut f: Vec<&mut [f32]> =
                        fast.iter_mut().map(|v| v.as_mut_slice()).collect();
                    weighted_values_on(isa, &values, &w, &mut f);
                    let mut p: Vec<&mut [f32]> =
                        plain.iter_mut().map(|v| v.as_mut_slice()).collect();
                    weighted_values_reference(&values, &w, &mut p);
                }
                for (i, (a, b)) in fast.iter().zip(&plain).enumerate() {
                    for (d, (x, y)) in a.iter().zip(b).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{isa:?} value dim {dim} count {count} query {i} value {d}"
                        );
                        let want: f64 = weights[i]
                            .iter()
                            .zip(&value_rows)
                            .map(|(w, v)| {
                                f64::from(*w) * f64::from(crate::vector::round_to_f16(v[d]))
                            })
                            .sum();
                        assert!(
                            (f64::from(*x) - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{x} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Small cases worked by hand, on every instruction set, at a head size the vector
    /// loops take (16) and one they leave to the scalar tail (3).
    #[test]
    fn scores_and_sums_are_the_dot_products_and_weighted_sums() {
        for dim in [3, 16] {
            let padded = |v: &[f32]| {
                let mut row = v.to_vec();
                row.resize(dim, 0.0);
                row
            };
            let mut keys = KeyBlocks::new(dim);
            keys.push(&padded(&[1.0, 0.0, 0.0]));
            keys.push(&padded(&[0.0, 1.0, 1.0]));
            let mut values = Vec::new();
            to_f16(&padded(&[1.0, 0.0, 0.0]), &mut values);
            to_f16(&padded(&[0.0, 1.0, 1.0]), &mut values);
            let q = padded(&[1.0, 2.0, 3.0]);
            for isa in Isa::available_all() {
                let mut out = [9f32; 2];
                key_scores_on(isa, &keys, &[q.as_slice()], 0.5, &mut [out.as_mut_slice()]);
                assert_eq!(out, [0.5, 2.5], "{isa:?} dim {dim}");
                let mut acc = vec![9f32; dim];
                weighted_values_on(isa, &values, &[&[2.0, -1.0]], &mut [acc.as_mut_slice()]);
                assert_eq!(acc, padded(&[2.0, -1.0, -1.0]), "{isa:?} dim {dim}");
            }
        }
    }

    /// Shapes the engine never passes (more weight rows or queries than outputs, outputs
    /// longer than the keys, weights longer than the values) take the reference: the same
    /// numbers, no read past a buffer.
    #[test]
    fn shapes_that_do_not_fit_take_the_reference() {
        let dim = 64;
        let mut keys = KeyBlocks::new(dim);
        let mut values = Vec::new();
        for j in 0..20 {
            keys.push(&data(dim, j));
            crate::vector::to_f16(&data(dim, 50 + j), &mut values);
        }
        let weights: Vec<Vec<f32>> = (0..2).map(|i| data(20, 9 + i)).collect();
        let w: Vec<&[f32]> = weights.iter().map(|v| v.as_slice()).collect();
        let (mut fast, mut plain) = (vec![f32::NAN; dim], vec![f32::NAN; dim]);
        weighted_values(&values, &w, &mut [fast.as_mut_slice()]);
        weighted_values_reference(&values, &w, &mut [plain.as_mut_slice()]);
        assert_eq!(fast, plain);
        let long = data(25, 3);
        let (mut fast, mut plain) = (vec![f32::NAN; dim], vec![f32::NAN; dim]);
        weighted_values(&values, &[long.as_slice()], &mut [fast.as_mut_slice()]);
        weighted_values_reference(&values, &[long.as_slice()], &mut [plain.as_mut_slice()]);
        assert_eq!(fast, plain);
        let queries: Vec<Vec<f32>> = (0..3).map(|i| data(dim, 70 + i)).collect();
        let q: Vec<&[f32]> = queries.iter().map(|v| v.as_slice()).collect();
        let (mut fast, mut plain) = (vec![vec![0f32; 25]; 2], vec![vec![0f32; 25]; 2]);
        let mut f: Vec<&mut [f32]> = fast.iter_mut().map(|v| v.as_mut_slice()).collect();
        key_scores(&keys, &q, 0.5, &mut f);
        let mut p: Vec<&mut [f32]> = plain.iter_mut().map(|v| v.as_mut_slice()).collect();
        key_scores_reference(&keys, &q, 0.5, &mut p);
        assert_eq!(fast, plain);
    }

    #[test]
    fn a_query_scores_the_same_alone_and_among_others() {
        let dim = 64;
        let mut keys = KeyBlocks::new(dim);
        for j in 0..40 {
            keys.push(&data(dim, j));
        }
        let queries: Vec<Vec<f32>> = (0..5).map(|i| data(dim, 300 + i)).collect();
        let q: Vec<&[f32]> = queries.iter().map(|v| v.as_slice()).collect();
        let mut together = vec![vec![0f32; 37]; 5];
        let mut t: Vec<&mut [f32]> = together.iter_mut().map(|v| v.as_mut_slice()).collect();
        key_scores(&keys, &q, 0.5, &mut t);
        for (i, row) in together.iter().enumerate() {
            let mut alone = vec![0f32; 37];
            key_scores(&keys, &q[i..=i], 0.5, &mut [alone.as_mut_slice()]);
            assert_eq!(&alone, row, "query {i}");
        }
    }
}
