//! AVX-512 and AVX2 forms of [`crate::attend`]: one vector lane per key position
//! (scores) or per output value (weighted values), each lane the reference's chain of
//! fused multiply-adds, so the bits are the reference's on both. Several accumulators at
//! a time (queries times key blocks, or queries times output chunks: eight on AVX2, up to
//! sixteen of the 32 AVX-512 registers), so that one query alone still keeps the
//! multiply-add units busy while each chain waits on its last step.

use std::arch::x86_64::*;

use crate::attend::{KeyBlocks, KEY_BLOCK};

/// Queries scored together.
const QUERIES: usize = 4;

/// Eight key lanes at `p` as f32.
///
/// # Safety
/// The CPU must support AVX2 and F16C; `p` must be valid for 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const u16) -> __m256 {
    // SAFETY: the caller's.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// [`crate::attend::key_scores`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; every query must be `keys.dim()` long and
/// every output at most `keys.len()` long.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn key_scores(
    keys: &KeyBlocks,
    queries: &[&[f32]],
    scale: f32,
    outs: &mut [&mut [f32]],
) {
    for (qs, os) in queries.chunks(QUERIES).zip(outs.chunks_mut(QUERIES)) {
        let blocks = os
            .iter()
            .map(|o| o.len().div_ceil(KEY_BLOCK))
            .max()
            .unwrap_or(0);
        // SAFETY: in each arm, the caller's guarantees, passed on.
        unsafe {
            match qs.len() {
                1 => score_blocks(tiles::<1, 4>(), keys, qs, blocks, scale, os),
                2 => score_blocks(tiles::<2, 2>(), keys, qs, blocks, scale, os),
                3 => score_blocks(tiles::<3, 1>(), keys, qs, blocks, scale, os),
                _ => score_blocks(tiles::<4, 1>(), keys, qs, blocks, scale, os),
            }
        }
    }
}

/// One tile of scores: `Q` queries against `B` key blocks from a first one (the
/// arguments of [`score_tile`]).
type ScoreTile = unsafe fn(&KeyBlocks, &[&[f32]], usize, f32, &mut [&mut [f32]]);

/// Key blocks `0..blocks`, `step` at a time with `tile` and the rest one at a time with
/// `one`.
///
/// # Safety
/// As the tiles': the CPU runs their instruction set, and the queries and outputs are as
/// [`key_scores`] requires.
#[allow(clippy::too_many_arguments)]
unsafe fn score_blocks(
    (step, tile, one): (usize, ScoreTile, ScoreTile),
    keys: &KeyBlocks,
    qs: &[&[f32]],
    blocks: usize,
    scale: f32,
    os: &mut [&mut [f32]],
) {
    let mut b = 0;
    while b < blocks {
        let whole = b + step <= blocks;
        // SAFETY: the caller's guarantees; blocks b..b + step (or b) lie below `blocks`.
        unsafe {
            if whole {
                tile(keys, qs, b, scale, os)
            } else {
                one(keys, qs, b, scale, os)
            }
        }
        b += if whole { step } else { 1 };
    }
}

/// The AVX2 tiles of `Q` queries, `B` key blocks at a time.
fn tiles<const Q: usize, const B: usize>() -> (usize, ScoreTile, ScoreTile) {
    (B, score_tile::<Q, B>, score_tile::<Q, 1>)
}

/// The AVX-512 tiles of `Q` queries, `B` key blocks at a time.
fn tiles_512<const Q: usize, const B: usize>() -> (usize, ScoreTile, ScoreTile) {
    (B, score_tile_512::<Q, B>, score_tile_512::<Q, 1>)
}

/// `Q` queries against key blocks `first..first + B`.
///
/// # Safety
/// As [`score_blocks`]; blocks `first..first + B` cover only positions some output of
/// `os` reaches, so they are held.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn score_tile<const Q: usize, const B: usize>(
    keys: &KeyBlocks,
    qs: &[&[f32]],
    first: usize,
    scale: f32,
    os: &mut [&mut [f32]],
) {
    let dim = keys.dim();
    let block: [&[u16]; B] = std::array::from_fn(|i| keys.block(first + i).unwrap_or(&[]));
    if block.iter().any(|b| b.len() != KEY_BLOCK * dim) || qs.len() < Q {
        return;
    }
    let q: [&[f32]; Q] = std::array::from_fn(|i| qs[i]);
    let mut acc = [[[_mm256_setzero_ps(); 2]; B]; Q];
    for d in 0..dim {
        // SAFETY: each block holds KEY_BLOCK * dim values, so lanes d * 16..d * 16 + 16
        // are within it.
        let k: [[__m256; 2]; B] = std::array::from_fn(|i| unsafe {
            let p = block[i].as_ptr().add(d * KEY_BLOCK);
            [load8(p), load8(p.add(8))]
        });
        // Constant trip counts throughout, so that the accumulators stay in registers.
        for i in 0..Q {
            // SAFETY: every query is `dim` long (the caller's).
            let x = _mm256_set1_ps(unsafe { *q[i].get_unchecked(d) });
            for b in 0..B {
                acc[i][b][0] = _mm256_fmadd_ps(x, k[b][0], acc[i][b][0]);
                acc[i][b][1] = _mm256_fmadd_ps(x, k[b][1], acc[i][b][1]);
            }
        }
    }
    let s = _mm256_set1_ps(scale);
    for (acc, o) in acc.iter().zip(os.iter_mut()) {
        for (i, acc) in acc.iter().enumerate() {
            let mut lanes = [0f32; KEY_BLOCK];
            // SAFETY: `lanes` holds 16 f32; each store writes 8.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_mul_ps(acc[0], s));
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), _mm256_mul_ps(acc[1], s));
            }
            let at = (first + i) * KEY_BLOCK;
            if let Some(dst) = o.get_mut(at..) {
                for (dst, v) in dst.iter_mut().zip(lanes) {
                    *dst = v;
                }
            }
        }
    }
}

/// [`crate::attend::weighted_values`] on AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; every output must be `dim` long (the first
/// one's length, not zero) and `values` must hold `weights[i].len()` rows of `dim` for
/// every `i`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn weighted_values(values: &[u16], weights: &[&[f32]], outs: &mut [&mut [f32]]) {
    let dim = outs.first().map_or(0, |o| o.len());
    for (ws, os) in weights.chunks(QUERIES).zip(outs.chunks_mut(QUERIES)) {
        let mut e = 0;
        // SAFETY: for each call, the caller's guarantees; each chunk e..e + 8C fits in dim.
        unsafe {
            match ws.len() {
                1 => {
                    while e + 64 <= dim {
                        value_chunk::<1, 8>(values, dim, e, ws, os);
                        e += 64;
                    }
                }
                2 => {
                    while e + 32 <= dim {
                        value_chunk::<2, 4>(values, dim, e, ws, os);
                        e += 32;
                    }
                }
                _ => {}
            }
            while e + 16 <= dim {
                match ws.len() {
                    1 => value_chunk::<1, 2>(values, dim, e, ws, os),
                    2 => value_chunk::<2, 2>(values, dim, e, ws, os),
                    3 => value_chunk::<3, 2>(values, dim, e, ws, os),
                    _ => value_chunk::<4, 2>(values, dim, e, ws, os),
                }
                e += 16;
            }
        }
        values_from(e, values, dim, ws, os);
    }
}

/// The first `Q` weight rows and how many positions they all weigh (the shortest's
/// length); None when there are fewer than `Q` rows or outputs.
fn weight_group<'w, const Q: usize>(
    ws: &[&'w [f32]],
    outs: usize,
) -> Option<([&'w [f32]; Q], usize)> {
    if ws.len() < Q || outs < Q {
        return None;
    }
    let w: [&[f32]; Q] = std::array::from_fn(|i| ws[i]);
    let common = w.iter().map(|w| w.len()).min().unwrap_or(0);
    Some((w, common))
}

/// Output values `e..` of each query, one at a time (the chain of the reference per
/// value): what the vector chunks leave.
fn values_from(e: usize, values: &[u16], dim: usize, ws: &[&[f32]], os: &mut [&mut [f32]]) {
    for (w, o) in ws.iter().zip(os.iter_mut()) {
        for (d, o) in o.iter_mut().enumerate().skip(e) {
            let mut acc = 0f32;
            for (j, w) in w.iter().enumerate() {
                let x = values.get(j * dim + d).copied().unwrap_or(0);
                acc = crate::vector::f32_of(x).mul_add(*w, acc);
            }
            *o = acc;
        }
    }
}

/// Writes a value kernel (`$name`, for `$feature`, `$lanes` values a `$vector`
/// register): output values `e..e + lanes * C` of `Q` queries, the positions all of them
/// weigh together first, then each query's own further positions. The AVX2 and AVX-512
/// forms are the same loop on registers of different widths, so one text writes both.
macro_rules! value_chunk_kernel {
    ($name:ident, $feature:literal, $vector:ty, $lanes:literal, $zero:ident, $set1:ident,
     $fmadd:ident, $load:ident, $store:ident) => {
        /// # Safety
        #[doc = concat!("The CPU must support ", $feature, "; every row `j` of `values` a weight row")]
        /// reaches is held (`(j + 1) * dim` values), `ws` and `os` hold at least `Q`
        #[doc = concat!("entries and `e + ", stringify!($lanes), "C <= dim`.")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const Q: usize, const C: usize>(
            values: &[u16],
            dim: usize,
            e: usize,
            ws: &[&[f32]],
            os: &mut [&mut [f32]],
        ) {
            let Some((w, common)) = weight_group::<Q>(ws, os.len()) else {
                return;
            };
            let mut acc = [[$zero(); C]; Q];
            for j in 0..common {
                // SAFETY: j < every weight row's length, so row j of `values` is held
                // (the caller's), and e + lanes * C <= dim.
                let v: [$vector; C] = std::array::from_fn(|c| unsafe {
                    $load(values.as_ptr().add(j * dim + e + $lanes * c))
                });
                // Constant trip counts, so that the accumulators stay in registers.
                for i in 0..Q {
                    // SAFETY: j < common <= w[i].len().
                    let x = $set1(unsafe { *w[i].get_unchecked(j) });
                    for c in 0..C {
                        acc[i][c] = $fmadd(v[c], x, acc[i][c]);
                    }
                }
            }
            for (w, acc) in ws.iter().zip(acc.iter_mut()) {
                for (j, w) in w.iter().enumerate().skip(common) {
                    let w = $set1(*w);
                    for (c, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: j < w.len(), so row j is held; e + lanes * (c + 1) <= dim.
                        let v = unsafe { $load(values.as_ptr().add(j * dim + e + $lanes * c)) };
                        *acc = $fmadd(v, w, *acc);
                    }
                }
            }
            for (o, acc) in os.iter_mut().zip(&acc) {
                if let Some(dst) = o.get_mut(e..e + $lanes * C) {
                    for (c, acc) in acc.iter().enumerate() {
                        // SAFETY: dst holds lanes * C f32; this store writes `lanes` of them
                        // at lanes * c.
                        unsafe { $store(dst.as_mut_ptr().add($lanes * c), *acc) };
                    }
                }
            }
        }
    };
}

value_chunk_kernel!(
    value_chunk,
    "avx2,fma,f16c",
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    load8,
    _mm256_storeu_ps
);

/// Queries scored together on AVX-512.
const QUERIES_512: usize = 8;

/// Sixteen key lanes (or values) at `p` as f32.
///
/// # Safety
/// The CPU must support AVX-512 F; `p` must be valid for 32 bytes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16(p: *const u16) -> __m512 {
    // SAFETY: the caller's.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
}

/// [`crate::attend::key_scores`] on AVX-512: a key block is one register.
///
/// # Safety
/// The CPU must support AVX-512 F; every query must be `keys.dim()` long and every
/// output at most `keys.len()` long.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn key_scores_512(
    keys: &KeyBlocks,
    queries: &[&[f32]],
    scale: f32,
    outs: &mut [&mut [f32]],
) {
    for (qs, os) in queries
        .chunks(QUERIES_512)
        .zip(outs.chunks_mut(QUERIES_512))
    {
        let blocks = os
            .iter()
            .map(|o| o.len().div_ceil(KEY_BLOCK))
            .max()
            .unwrap_or(0);
        // SAFETY: in each arm, the caller's guarantees, passed on.
        unsafe {
            match qs.len() {
                1 => score_blocks(tiles_512::<1, 8>(), keys, qs, blocks, scale, os),
                2 => score_blocks(tiles_512::<2, 4>(), keys, qs, blocks, scale, os),
                3 => score_blocks(tiles_512::<3, 4>(), keys, qs, blocks, scale, os),
                4 => score_blocks(tiles_512::<4, 4>(), keys, qs, blocks, scale, os),
                5 => score_blocks(tiles_512::<5, 2>(), keys, qs, blocks, scale, os),
                6 => score_blocks(tiles_512::<6, 2>(), keys, qs, blocks, scale, os),
                7 => score_blocks(tiles_512::<7, 2>(), keys, qs, blocks, scale, os),
                _ => score_blocks(tiles_512::<8, 2>(), keys, qs, blocks, scale, os),
            }
        }
    }
}

/// `Q` queries against key blocks `first..first + B`, a register per block.
///
/// # Safety
/// As [`score_tile`], with AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn score_tile_512<const Q: usize, const B: usize>(
    keys: &KeyBlocks,
    qs: &[&[f32]],
    first: usize,
    scale: f32,
    os: &mut [&mut [f32]],
) {
    let dim = keys.dim();
    let block: [&[u16]; B] = std::array::from_fn(|i| keys.block(first + i).unwrap_or(&[]));
    if block.iter().any(|b| b.len() != KEY_BLOCK * dim) || qs.len() < Q {
        return;
    }
    let q: [&[f32]; Q] = std::array::from_fn(|i| qs[i]);
    let mut acc = [[_mm512_setzero_ps(); B]; Q];
    for d in 0..dim {
        // SAFETY: each block holds KEY_BLOCK * dim values, so lanes d * 16..d * 16 + 16
        // are within it.
        let k: [__m512; B] =
            std::array::from_fn(|i| unsafe { load16(block[i].as_ptr().add(d * KEY_BLOCK)) });
        // Constant trip counts throughout, so that the accumulators stay in registers.
        for i in 0..Q {
            // SAFETY: every query is `dim` long (the caller's).
            let x = _mm512_set1_ps(unsafe { *q[i].get_unchecked(d) });
            for b in 0..B {
                acc[i][b] = _mm512_fmadd_ps(x, k[b], acc[i][b]);
            }
        }
    }
    let s = _mm512_set1_ps(scale);
    for (acc, o) in acc.iter().zip(os.iter_mut()) {
        for (i, acc) in acc.iter().enumerate() {
            let mut lanes = [0f32; KEY_BLOCK];
            // SAFETY: `lanes` holds 16 f32, the store's size.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_mul_ps(*acc, s)) };
            let at = (first + i) * KEY_BLOCK;
            if let Some(dst) = o.get_mut(at..) {
                for (dst, v) in dst.iter_mut().zip(lanes) {
                    *dst = v;
                }
            }
        }
    }
}

/// [`crate::attend::weighted_values`] on AVX-512.
///
/// # Safety
/// As [`weighted_values`], with AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn weighted_values_512(
    values: &[u16],
    weights: &[&[f32]],
    outs: &mut [&mut [f32]],
) {
    let dim = outs.first().map_or(0, |o| o.len());
    for (ws, os) in weights
        .chunks(QUERIES_512)
        .zip(outs.chunks_mut(QUERIES_512))
    {
        let mut e = 0;
        // SAFETY: for each call, the caller's guarantees; each chunk e..e + 16C fits in
        // dim.
        unsafe {
            while e + 64 <= dim {
                match ws.len() {
                    1 => value_chunk_512::<1, 4>(values, dim, e, ws, os),
                    2 => value_chunk_512::<2, 4>(values, dim, e, ws, os),
                    3 => value_chunk_512::<3, 4>(values, dim, e, ws, os),
                    4 => value_chunk_512::<4, 4>(values, dim, e, ws, os),
                    _ => break,
                }
                e += 64;
            }
            while e + 32 <= dim {
                match ws.len() {
                    5 => value_chunk_512::<5, 2>(values, dim, e, ws, os),
                    6 => value_chunk_512::<6, 2>(values, dim, e, ws, os),
                    7 => value_chunk_512::<7, 2>(values, dim, e, ws, os),
                    8 => value_chunk_512::<8, 2>(values, dim, e, ws, os),
                    _ => break,
                }
                e += 32;
            }
            while e + 16 <= dim {
                match ws.len() {
                    1 => value_chunk_512::<1, 1>(values, dim, e, ws, os),
                    2 => value_chunk_512::<2, 1>(values, dim, e, ws, os),
                    3 => value_chunk_512::<3, 1>(values, dim, e, ws, os),
                    4 => value_chunk_512::<4, 1>(values, dim, e, ws, os),
                    5 => value_chunk_512::<5, 1>(values, dim, e, ws, os),
                    6 => value_chunk_512::<6, 1>(values, dim, e, ws, os),
                    7 => value_chunk_512::<7, 1>(values, dim, e, ws, os),
                    _ => value_chunk_512::<8, 1>(values, dim, e, ws, os),
                }
                e += 16;
            }
        }
        values_from(e, values, dim, ws, os);
    }
}

value_chunk_kernel!(
    value_chunk_512,
    "avx512f",
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    load16,
    _mm512_storeu_ps
);
