//! Attention on the CPU: every new position of every sequence over its cache, in plain
//! loops over host memory.
//!
//! Two reasons for not using candle's tensor operations here. Speed: a decode step ran
//! attention as about ten candle operations per sequence and layer (reshapes, rotary
//! embedding, cache append, two matmuls, mask, softmax), each allocating its output; for
//! the 100M benchmark shape that was 1.3 ms of a 7.6 ms single-stream step and 11 of
//! 27 ms with eight streams. Exactness: candle's masked matmul over many positions
//! rounds differently from its one-position path, and through the quantised
//! activations of the next layer that moved logits of a Q8_0 model 512 wide by up to
//! 0.09 between decoding token by token and a verifier's teacher-forced pass, more than
//! replay's drift bound. Here the arithmetic of a position depends only on its query and
//! the cache, never on how many positions the pass holds or on the other sequences of a
//! batch, so a CPU decodes and replays the same bits.
//!
//! Work is spread over candle's CPU worker pool, one item per sequence and key/value
//! head; the cache keeps each key/value head's positions contiguous.

use candle_core::Tensor;

use fai_kernels::attend::{self, KeyBlocks};
use fai_kernels::vector;

use crate::error::{EngineError, Result};

/// The heads of a model's attention.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub query: usize,
    /// Key/value heads (each shared by `query / kv` consecutive query heads).
    pub kv: usize,
    /// Values per head.
    pub dim: usize,
}

impl Heads {
    fn query_width(&self) -> usize {
        self.query * self.dim
    }

    fn kv_width(&self) -> usize {
        self.kv * self.dim
    }

    /// Query heads per key/value head (at least 1).
    fn group(&self) -> usize {
        (self.query / self.kv.max(1)).max(1)
    }
}

/// The rotary embedding's cosine and sine for every position of the context, per pair of
/// a head's values, and which values pair up.
#[derive(Debug, Clone)]
pub struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Pairs per head (head dimension / 2).
    pairs: usize,
    /// NEOX style: value `i` pairs with `i + pairs`; otherwise `2i` with `2i + 1`.
    halves: bool,
}

impl RopeTable {
    /// The tables from the `[context, head_dim / 2]` tensors the candle path uses, so that
    /// both paths rotate by the same numbers.
    pub fn from_tensors(cos: &Tensor, sin: &Tensor, halves: bool) -> Result<Self> {
        let (_, pairs) = cos.dims2()?;
        Ok(RopeTable {
            cos: cos.flatten_all()?.to_vec1()?,
            sin: sin.flatten_all()?.to_vec1()?,
            pairs,
            halves,
        })
    }

    /// Whether the table reaches position `pos` (an error naming it if not).
    fn check(&self, pos: usize) -> Result<()> {
        let end = pos.checked_add(1).and_then(|p| p.checked_mul(self.pairs));
        match end {
            Some(end) if end <= self.cos.len() && end <= self.sin.len() => Ok(()),
            _ => Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "position {pos} is beyond the rotary table"
            )))),
        }
    }

    /// Rotates every head of `row` (heads of `2 * pairs` values) to position `pos`.
    fn rotate(&self, row: &mut [f32], pos: usize) -> Result<()> {
        let beyond = || {
            EngineError::Compute(candle_core::Error::Msg(format!(
                "position {pos} is beyond the rotary table"
            )))
        };
        let at = pos.checked_mul(self.pairs).ok_or_else(beyond)?;
        let (cos, sin) = match (
            self.cos.get(at..at.saturating_add(self.pairs)),
            self.sin.get(at..at.saturating_add(self.pairs)),
        ) {
            (Some(c), Some(s)) => (c, s),
            _ => return Err(beyond()),
        };
        for head in row.chunks_exact_mut(2 * self.pairs) {
            if self.halves {
                let (a, b) = head.split_at_mut(self.pairs);
                for (((x, y), c), s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
                    let (x0, y0) = (*x, *y);
                    *x = x0 * c - y0 * s;
                    *y = x0 * s + y0 * c;
                }
            } else {
                for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                    if let [x, y] = pair {
                        let (x0, y0) = (*x, *y);
                        *x = x0 * c - y0 * s;
                        *y = x0 * s + y0 * c;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One layer's keys (rotated) and values of a sequence, per key/value head: keys in
/// blocks of 16 positions ([`KeyBlocks`]: a vector lane per position when scoring),
/// values position after position (`[positions][head dim]`). Appending a position
/// extends every head. Both are held as f16 (bits; [`vector::to_f16`]): a decode step
/// streams through the whole cache, which at a few hundred positions weighs as much as a
/// 4-bit model.
#[derive(Debug, Default)]
pub struct HostKv {
    keys: Vec<KeyBlocks>,
    values: Vec<Vec<u16>>,
    positions: usize,
}

/// One sequence's part of a host attention step: its new rows (queries and keys
/// unrotated), its cache and its output rows.
pub struct Step<'a> {
    pub cache: &'a mut HostKv,
    /// Position of the first new row.
    pub start: usize,
    /// `[rows][query width]`.
    pub q: &'a [f32],
    /// `[rows][kv width]`.
    pub k: &'a [f32],
    /// `[rows][kv width]`.
    pub v: &'a [f32],
    /// `[rows][query width]`, written.
    pub out: &'a mut [f32],
}

impl Step<'_> {
    /// Checks the shapes, that the step continues the cache and that the rotary table
    /// reaches its last position; returns its rows.
    fn check(&self, heads: Heads, rope: &RopeTable) -> Result<usize> {
        let (qw, kw) = (heads.query_width(), heads.kv_width());
        if qw == 0 || kw == 0 {
            return Err(EngineError::NoTokens);
        }
        let rows = self.q.len() / qw;
        if self.k.len() != rows * kw || self.v.len() != rows * kw || self.out.len() != rows * qw {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "attention rows disagree: q {}, k {}, v {}, out {} values",
                self.q.len(),
                self.k.len(),
                self.v.len(),
                self.out.len()
            ))));
        }
        let held = self.cache.positions;
        if held != self.start {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "cache holds {held} positions, the step starts at {}",
                self.start
            ))));
        }
        if rows > 0 {
            rope.check(self.start + rows - 1)?;
        }
        Ok(rows)
    }
}

/// One work item of a step: a sequence's new rows for one key/value head. It rotates
/// and appends that head's new keys and values to the cache and writes the outputs of
/// the head's query heads, where they lie in the step's output rows.
struct Unit<'a> {
    heads: Heads,
    /// Which key/value head.
    g: usize,
    start: usize,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    keys: &'a mut KeyBlocks,
    values: &'a mut Vec<u16>,
    /// Each new row's part of the output: its group's query heads.
    out: Vec<&'a mut [f32]>,
}

/// Attention of every step: each sequence's new rows over its cache and themselves
/// (causal). Runs on candle's CPU worker pool, one work item per sequence and key/value
/// head (rotation, the cache's new positions, scores and sums all in the item), so the
/// two matmul-free halves of a decode step use every core.
pub fn attend_all(heads: Heads, rope: &RopeTable, steps: &mut [Step<'_>]) -> Result<()> {
    let mut rows = Vec::with_capacity(steps.len());
    for step in steps.iter() {
        rows.push(step.check(heads, rope)?);
    }
    let span = heads.group() * heads.dim;
    let mut units = Vec::with_capacity(steps.len() * heads.kv);
    for (step, &rows) in steps.iter_mut().zip(&rows) {
        let cache = &mut *step.cache;
        if cache.keys.len() != heads.kv {
            cache
                .keys
                .resize_with(heads.kv, || KeyBlocks::new(heads.dim));
            cache.values.resize_with(heads.kv, Vec::new);
        }
        // Each row's output, cut into the spans of the key/value heads' groups.
        let mut outs: Vec<Vec<&mut [f32]>> =
            (0..heads.kv).map(|_| Vec::with_capacity(rows)).collect();
        for row in step.out.chunks_exact_mut(heads.query_width()) {
            for (o, part) in outs.iter_mut().zip(row.chunks_exact_mut(span)) {
                o.push(part);
            }
        }
        for (g, ((keys, values), out)) in cache
            .keys
            .iter_mut()
            .zip(cache.values.iter_mut())
            .zip(outs)
            .enumerate()
        {
            units.push(Unit {
                heads,
                g,
                start: step.start,
                q: step.q,
                k: step.k,
                v: step.v,
                keys,
                values,
                out,
            });
        }
        cache.positions += rows;
    }
    fai_kernels::pool::each_part(units, |unit| unit.run(rope));
    Ok(())
}

/// New rows whose query heads are scored together (the scores of this many rows times
/// the group's heads over the whole cache are held at once).
const ROWS_AT_ONCE: usize = 8;

/// A worker thread's buffers for [`Unit::run`], kept from item to item.
#[derive(Default)]
struct UnitBuffers {
    /// Rotated query heads, `[rows at once x group][head dim]`.
    queries: Vec<f32>,
    /// A rotated key.
    key: Vec<f32>,
    scores: Vec<f32>,
}

thread_local! {
    static BUFFERS: std::cell::RefCell<UnitBuffers> = std::cell::RefCell::default();
}

impl Unit<'_> {
    /// Appends this head's new keys (rotated) and values to the cache, then attends:
    /// up to [`ROWS_AT_ONCE`] rows' query heads are scored against the head's keys
    /// together and sum its values together (each query's numbers are the same as alone:
    /// [`attend`]). Positions were checked against the rotary table first.
    fn run(&mut self, rope: &RopeTable) {
        BUFFERS.with(|b| self.run_with(rope, &mut b.borrow_mut()));
    }

    fn run_with(&mut self, rope: &RopeTable, buf: &mut UnitBuffers) {
        let h = self.heads;
        let (qw, kw, hd, group) = (h.query_width(), h.kv_width(), h.dim, h.group());
        let head = self.g * hd..(self.g + 1) * hd;
        for (i, (k, v)) in self
            .k
            .chunks_exact(kw)
            .zip(self.v.chunks_exact(kw))
            .enumerate()
        {
            buf.key.clear();
            buf.key
                .extend_from_slice(k.get(head.clone()).unwrap_or(&[]));
            // The position was checked against the table (Step::check).
            let _ = rope.rotate(&mut buf.key, self.start + i);
            self.keys.push(&buf.key);
            vector::to_f16(v.get(head.clone()).unwrap_or(&[]), self.values);
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let rows = self.out.len();
        let mut first = 0;
        while first < rows {
            let last = (first + ROWS_AT_ONCE).min(rows);
            // Row i's query heads of this group, rotated; each sees positions
            // 0..=start + i.
            buf.queries.clear();
            let mut lens = Vec::with_capacity((last - first) * group);
            for i in first..last {
                let heads_of_row = self
                    .q
                    .get(i * qw + self.g * group * hd..i * qw + (self.g + 1) * group * hd)
                    .unwrap_or(&[]);
                let at = buf.queries.len();
                buf.queries.extend_from_slice(heads_of_row);
                if let Some(row) = buf.queries.get_mut(at..) {
                    let _ = rope.rotate(row, self.start + i);
                }
                lens.extend(std::iter::repeat_n(
                    (self.start + i + 1).min(self.keys.len()),
                    heads_of_row.len() / hd.max(1),
                ));
            }
            let queries: Vec<&[f32]> = buf.queries.chunks_exact(hd.max(1)).collect();
            let widest = lens.iter().copied().max().unwrap_or(0);
            buf.scores.clear();
            buf.scores.resize(queries.len() * widest, 0.0);
            let mut scores: Vec<&mut [f32]> = buf
                .scores
                .chunks_exact_mut(widest.max(1))
                .zip(&lens)
                .map(|(row, len)| &mut row[..*len])
                .collect();
            attend::key_scores(self.keys, &queries, scale, &mut scores);
            for s in scores.iter_mut() {
                vector::softmax(s);
            }
            let weights: Vec<&[f32]> = scores.iter().map(|s| &**s).collect();
            let mut outs: Vec<&mut [f32]> = self
                .out
                .get_mut(first..last)
                .unwrap_or(&mut [])
                .iter_mut()
                .flat_map(|row| row.chunks_exact_mut(hd.max(1)))
                .collect();
            attend::weighted_values(self.values, &weights, &mut outs);
            first = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sequence's step of `q.len() / query width` rows.
    fn attend(
        heads: Heads,
        rope: &RopeTable,
        cache: &mut HostKv,
        start: usize,
        (q, k, v): (&mut [f32], &mut [f32], &[f32]),
        out: &mut [f32],
    ) -> Result<()> {
        let mut steps = [Step {
            cache,
            start,
            q,
            k,
            v,
            out,
        }];
        attend_all(heads, rope, &mut steps)
    }

    /// Plain attention of one position over `keys`/`values` (`[len][dim]`), as a formula.
    fn reference(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>]) -> Vec<f32> {
        let scale = 1.0 / (q.len() as f64).sqrt();
        let s: Vec<f64> = keys
            .iter()
            .map(|k| {
                q.iter()
                    .zip(k)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..q.len())
            .map(|d| {
                (e.iter()
                    .zip(values)
                    .map(|(w, v)| w * v[d] as f64)
                    .sum::<f64>()
                    / sum) as f32
            })
            .collect()
    }

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1000) as f32 / 500.0) - 1.0
    }

    #[test]
    fn grouped_heads_attend_causally_to_their_own_key_value_head() {
        // 4 query heads over 2 key/value heads of 8 values; no rotation (a table of
        // angle 0) so that the reference is the bare formula. Six positions: a step of
        // three, then three steps of one.
        let heads = Heads {
            query: 4,
            kv: 2,
            dim: 8,
        };
        let rope = RopeTable {
            cos: vec![1.0; 64 * 4],
            sin: vec![0.0; 64 * 4],
            pairs: 4,
            halves: false,
        };
        let row = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| value(i + seed)).collect() };
        let qs: Vec<Vec<f32>> = (0..6).map(|p| row(32, 100 * p)).collect();
        let ks: Vec<Vec<f32>> = (0..6).map(|p| row(16, 100 * p + 37)).collect();
        let vs: Vec<Vec<f32>> = (0..6).map(|p| row(16, 100 * p + 71)).collect();
        let mut cache = HostKv::default();
        for (start, end) in [(0, 3), (3, 4), (4, 5), (5, 6)] {
            let mut q = qs[start..end].concat();
            let mut k = ks[start..end].concat();
            let v = vs[start..end].concat();
            let mut out = vec![0.0; q.len()];
            attend(
                heads,
                &rope,
                &mut cache,
                start,
                (&mut q, &mut k, &v),
                &mut out,
            )
            .unwrap();
            for (p, out_row) in (start..end).zip(out.chunks(32)) {
                for h in 0..4 {
                    let g = h / 2;
                    // The cache holds keys and values as f16.
                    let head = |r: &Vec<f32>| {
                        r[g * 8..g * 8 + 8]
                            .iter()
                            .map(|v| vector::round_to_f16(*v))
                            .collect::<Vec<f32>>()
                    };
                    let keys: Vec<Vec<f32>> = ks[..=p].iter().map(head).collect();
                    let values: Vec<Vec<f32>> = vs[..=p].iter().map(head).collect();
                    let want = reference(&qs[p][h * 8..h * 8 + 8], &keys, &values);
                    for (a, b) in out_row[h * 8..h * 8 + 8].iter().zip(&want) {
                        assert!((a - b).abs() < 1e-5, "position {p} head {h}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_step_that_does_not_continue_the_cache_is_refused() {
        let heads = Heads {
            query: 1,
            kv: 1,
            dim: 2,
        };
        let rope = RopeTable {
            cos: vec![1.0; 4],
            sin: vec![0.0; 4],
            pairs: 1,
            halves: true,
        };
        let (mut q, mut k, v, mut out) = ([1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0; 2]);
        let mut run = |cache: &mut HostKv, pos| {
            attend(heads, &rope, cache, pos, (&mut q, &mut k, &v), &mut out)
        };
        assert!(run(&mut HostKv::default(), 3).is_err());
        // Positions 0 to 3 fit the rotary table; position 4 is an error, not a panic.
        let mut cache = HostKv::default();
        for pos in 0..5 {
            assert_eq!(run(&mut cache, pos).is_ok(), pos < 4, "position {pos}");
        }
    }
}
