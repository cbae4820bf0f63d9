//! Input rows quantised to 8 bits per 32-value block, the form the kernels multiply.
//!
//! A block's scale is its largest magnitude over 127; each value becomes the nearest
//! integer of value / scale (halves away from zero: |value| times 1 / scale, plus 1/2,
//! truncated, with the value's sign), in -127..=127. The scale stays an
//! f32 (GGUF's Q8_0 rounds it to f16). AVX2 and plain Rust quantise to the same bits, so
//! every kernel starts from the same integers.

use crate::{KernelError, BLOCK};

/// Rows of activations, quantised; block `b` of row `i` is entry `i * blocks + b`.
#[derive(Debug, Clone, Default)]
pub struct Activations {
    rows: usize,
    blocks: usize,
    /// The 32 quantised values of each block, four to a little-endian word.
    pub(crate) words: Vec<[i32; 8]>,
    /// Each block's scale.
    pub(crate) scales: Vec<f32>,
    /// Each block's sum of quantised values times -8: Q4_0 stores weight w as w + 8, and
    /// the sum of (w + 8) * a, plus this, is the sum of w * a.
    pub(crate) offsets: Vec<i32>,
    /// Each block's sum of quantised values (an integer, exact as an f32).
    pub(crate) sums: Vec<f32>,
}

impl Activations {
    /// Quantises `rows` rows of `width` values each (`x`, row after row).
    ///
    /// Errors: `width` is not a whole number of blocks, or `x` is not `rows * width` long.
    pub fn quantize(x: &[f32], rows: usize, width: usize) -> Result<Self, KernelError> {
        let mut a = Activations::default();
        a.requantize(x, rows, width)?;
        Ok(a)
    }

    /// Like [`Activations::quantize`], reusing this value's buffers.
    pub fn requantize(&mut self, x: &[f32], rows: usize, width: usize) -> Result<(), KernelError> {
        if !width.is_multiple_of(BLOCK) {
            return Err(KernelError::RowLength(width));
        }
        let expected = rows
            .checked_mul(width)
            .ok_or(KernelError::TooLarge(rows, width))?;
        if x.len() != expected {
            return Err(KernelError::Length {
                what: "activations",
                got: x.len(),
                expected,
            });
        }
        self.rows = rows;
        self.blocks = width / BLOCK;
        let total = rows * self.blocks;
        self.words.clear();
        self.scales.clear();
        self.offsets.clear();
        self.words.resize(total, [0; 8]);
        self.scales.resize(total, 0.0);
        self.offsets.resize(total, 0);
        quantize_on_pool(x, &mut self.words, &mut self.scales, &mut self.offsets);
        self.sums.clear();
        // offset = -8 * sum exactly, so this is the sum.
        self.sums
            .extend(self.offsets.iter().map(|o| (o / -8) as f32));
        Ok(())
    }

    /// Bytes this value holds on the heap (its buffers' capacity).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * std::mem::size_of::<[i32; 8]>()
            + (self.scales.capacity() + self.offsets.capacity() + self.sums.capacity()) * 4
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.blocks * BLOCK
    }

    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Row `row`'s blocks: slices of exactly [`Activations::blocks`] entries each.
    ///
    /// Panics if `row` is not below [`Activations::rows`] (the kernels' groups of rows
    /// never pass one that is not).
    #[inline(always)]
    pub(crate) fn row(&self, row: usize) -> RowBlocks<'_> {
        let at = row * self.blocks..(row + 1) * self.blocks;
        RowBlocks {
            words: &self.words[at.clone()],
            scales: &self.scales[at.clone()],
            offsets: &self.offsets[at.clone()],
            sums: &self.sums[at],
        }
    }

    /// Quantised value `j` (0..32) of block entry `index` (row * blocks + block): for the
    /// reference kernels.
    pub(crate) fn value(&self, index: usize, j: usize) -> i32 {
        let word = self.words[index][j / 4];
        i32::from(word.to_le_bytes()[j % 4] as i8)
    }
}

/// One activation row's blocks (see [`Activations`] for each field).
#[derive(Clone, Copy)]
pub(crate) struct RowBlocks<'a> {
    pub(crate) words: &'a [[i32; 8]],
    pub(crate) scales: &'a [f32],
    pub(crate) offsets: &'a [i32],
    pub(crate) sums: &'a [f32],
}

impl<'a> RowBlocks<'a> {
    /// No blocks.
    pub(crate) const EMPTY: RowBlocks<'static> = RowBlocks {
        words: &[],
        scales: &[],
        offsets: &[],
        sums: &[],
    };

    /// The first `n` blocks (panics if the row has fewer: the products check the width
    /// first).
    #[inline(always)]
    pub(crate) fn first(self, n: usize) -> Self {
        RowBlocks {
            words: &self.words[..n],
            scales: &self.scales[..n],
            offsets: &self.offsets[..n],
            sums: &self.sums[..n],
        }
    }
}

/// Blocks from which quantising is split over candle's worker pool (a verifier's pass
/// over a few hundred positions: about 6,600 blocks per matrix input, which took a twelfth
/// of the pass on one thread while the other waited).
const POOL_BLOCKS: usize = 2048;

/// One part of a quantisation on the pool: inputs, then the three outputs.
type Part<'a> = (&'a [f32], &'a mut [[i32; 8]], &'a mut [f32], &'a mut [i32]);

/// [`quantize_rows`], in parts over candle's worker pool when there are many blocks. Each
/// block's result does not depend on the split.
fn quantize_on_pool(x: &[f32], words: &mut [[i32; 8]], scales: &mut [f32], offsets: &mut [i32]) {
    let blocks = words.len();
    if blocks < POOL_BLOCKS {
        return quantize_rows(x, words, scales, offsets);
    }
    let per_part = POOL_BLOCKS / 4;
    let parts: Vec<Part<'_>> = x
        .chunks(per_part * BLOCK)
        .zip(words.chunks_mut(per_part))
        .zip(scales.chunks_mut(per_part))
        .zip(offsets.chunks_mut(per_part))
        .map(|(((x, w), s), o)| (x, w, s, o))
        .collect();
    crate::pool::each_part(parts, |(x, w, s, o)| quantize_rows(x, w, s, o));
}

/// Quantises every block of `x` into the three outputs (one entry per block), with AVX2
/// where this CPU has it. The operations (abs, max, divide, multiply, add, truncate) are
/// exact IEEE ones with no fusing, and a block's maximum does not depend on the order it
/// is taken in, so both ways give the same bits.
fn quantize_rows(x: &[f32], words: &mut [[i32; 8]], scales: &mut [f32], offsets: &mut [i32]) {
    // AVX2 unless the kernels in use are the scalar ones (`FAI_KERNEL_ISA=scalar`).
    #[cfg(target_arch = "x86_64")]
    let avx2 = crate::Isa::best() != crate::Isa::Scalar;
    let blocks = x
        .chunks_exact(BLOCK)
        .zip(words.iter_mut())
        .zip(scales.iter_mut())
        .zip(offsets.iter_mut());
    for (((block, words), scale), offset) in blocks {
        #[cfg(target_arch = "x86_64")]
        let q = if avx2 {
            // SAFETY: this CPU runs AVX2.
            unsafe { crate::x86_quantize::block(block) }
        } else {
            quantize_block(block)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let q = quantize_block(block);
        *words = q.words;
        *scale = q.scale;
        // |sum| <= 32 * 127, so this cannot overflow.
        *offset = -8 * q.sum;
    }
}

/// One block, quantised: its values four to a word, its scale and its values' sum.
pub(crate) struct Quantised {
    pub(crate) words: [i32; 8],
    pub(crate) scale: f32,
    pub(crate) sum: i32,
}

/// A block's scale (its largest magnitude / 127) and the factor its values are
/// multiplied by. A block so small that 1 / scale overflows (largest magnitude under
/// about 4e-37) counts as zeros: scale 0, all values 0.
pub(crate) fn scale_and_inverse(amax: f32) -> (f32, f32) {
    let scale = amax / 127.0;
    let inverse = 1.0 / scale;
    if scale != 0.0 && inverse.is_finite() {
        (scale, inverse)
    } else if scale.is_infinite() {
        (scale, 0.0)
    } else {
        (0.0, 0.0)
    }
}

/// One block (the reference): its scale is the largest magnitude / 127, and each value
/// |v| times 1 / scale, plus 1/2, truncated, with v's sign (round to nearest, halves away
/// from zero), in -127..=127. A NaN is skipped by the maximum.
pub(crate) fn quantize_block(block: &[f32]) -> Quantised {
    let mut amax = 0f32;
    for v in block {
        let a = v.abs();
        amax = if a > amax { a } else { amax };
    }
    let (scale, inverse) = scale_and_inverse(amax);
    let mut q = [0i8; BLOCK];
    let mut sum = 0i32;
    for (q, v) in q.iter_mut().zip(block) {
        // In 0..=127 (a NaN gives 0; the bound only guards against rounding).
        let magnitude = ((v.abs() * inverse + 0.5) as i32).min(127);
        *q = if *v < 0.0 { -magnitude } else { magnitude } as i8;
        sum += i32::from(*q);
    }
    let mut words = [0i32; 8];
    for (w, four) in words.iter_mut().zip(q.chunks_exact(4)) {
        *w = i32::from_le_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
    }
    Quantised { words, scale, sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_to_the_nearest_step_of_the_block_scale() {
        let mut x = vec![0f32; 32];
        x[0] = 1.27;
        x[1] = -0.6351; // -63.51 steps: -64
        x[2] = 0.004; // 0.4 steps: 0
        x[31] = -1.27;
        let a = Activations::quantize(&x, 1, 32).unwrap();
        assert!((a.scales[0] - 0.01).abs() < 1e-9);
        assert_eq!(a.value(0, 0), 127);
        assert_eq!(a.value(0, 1), -64);
        assert_eq!(a.value(0, 2), 0);
        assert_eq!(a.value(0, 31), -127);
        assert_eq!(a.offsets[0], -8 * (127 - 64 - 127));
    }

    #[test]
    fn a_zero_block_has_a_zero_scale_and_bad_shapes_are_refused() {
        let a = Activations::quantize(&[0.0; 64], 2, 32).unwrap();
        assert_eq!(a.scales, vec![0.0, 0.0]);
        assert_eq!(a.offsets, vec![0, 0]);
        assert_eq!(
            Activations::quantize(&[0.0; 48], 1, 48).unwrap_err(),
            KernelError::RowLength(48)
        );
        assert!(matches!(
            Activations::quantize(&[0.0; 63], 2, 32),
            Err(KernelError::Length {
                got: 63,
                expected: 64,
                ..
            })
        ));
    }

    #[test]
    fn the_avx2_quantiser_gives_the_scalar_one_s_bits() {
        let mut x: Vec<f32> = (0..32 * 50)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * [0.001, 1.0, 300.0][i % 3])
            .collect();
        // Values a half step from a rounding edge, zeros of both signs, a block of zeros,
        // and blocks with a NaN or an infinity (which go the scalar way).
        x[40] = 0.5 * x[33] / 127.0;
        x[41] = -0.0;
        x[64..96].fill(0.0);
        x[100] = f32::NAN;
        x[140] = f32::NEG_INFINITY;
        // Blocks so small that 1 / scale overflows: zeros on both paths.
        x[160] = 1e-38;
        x[161..192].fill(0.0);
        x[192..224].fill(-3e-37);
        x[224..256]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32 * 1e-45);
        let n = x.len() / BLOCK;
        let mut fast = (vec![[0; 8]; n], vec![0f32; n], vec![0; n]);
        quantize_rows(&x, &mut fast.0, &mut fast.1, &mut fast.2);
        for (i, block) in x.chunks_exact(BLOCK).enumerate() {
            let plain = quantize_block(block);
            assert_eq!(plain.words, fast.0[i], "block {i}");
            assert_eq!(plain.scale.to_bits(), fast.1[i].to_bits(), "block {i}");
            assert_eq!(-8 * plain.sum, fast.2[i], "block {i}");
        }
    }

    #[test]
    fn quantising_in_parts_on_the_pool_gives_the_same_blocks() {
        // Enough blocks to be split, and a last part shorter than the others.
        let blocks = POOL_BLOCKS * 2 + 37;
        let x: Vec<f32> = (0..blocks * BLOCK)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * [0.01, 1.0, 30.0][i % 3])
            .collect();
        let a = Activations::quantize(&x, 1, x.len()).unwrap();
        let mut one = (vec![[0; 8]; blocks], vec![0f32; blocks], vec![0; blocks]);
        quantize_rows(&x, &mut one.0, &mut one.1, &mut one.2);
        assert_eq!(a.words, one.0);
        assert_eq!(
            a.scales.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            one.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(a.offsets, one.2);
    }

    #[test]
    fn non_finite_inputs_give_numbers_not_a_panic() {
        let mut x = vec![0.5f32; 32];
        x[3] = f32::NAN;
        x[4] = f32::INFINITY;
        let a = Activations::quantize(&x, 1, 32).unwrap();
        assert_eq!(a.rows(), 1);
        assert_eq!(a.width(), 32);
    }
}
