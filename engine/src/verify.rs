//! Checking another node's output at a fraction of the cost of producing it.
//!
//! One trait, [`Verifier`], and two methods:
//!
//! - [`Replay`]: one teacher-forced forward pass over prompt + claimed output gives the
//!   verifier's own logits at every claimed position. Each claimed token is re-derived with
//!   the request's declared sampling and seed (the same ChaCha draws, in the same order).
//!   A claimed token that is not re-derived is a near-tie when logits within the drift
//!   bound of the verifier's would pick it ([`Sampler::could_pick`]): numeric drift between
//!   devices, kernels, batch shapes and thread counts flips exactly those, so they never
//!   count against the node. Any other token is a hard mismatch, and an answer with more
//!   than `max_mismatches` of them (none by default) is rejected, whatever its length.
//!   The claimed end is checked too ([`End`]): an answer shorter than `max_tokens` that
//!   no stop string ended claims end-of-text, so the pass runs one position past it and
//!   the verifier's own next token must end generation (or be a near-tie of an end token);
//!   an answer that runs on past a stop string or holds an end token is rejected unread.
//!   Replays batch: [`Verifier::verify_batch`] scores many answers in one pass.
//! - [`Judge`] (the paper's): a prompt asks the same model whether the output answers the
//!   input, and one forward pass compares the next-token logits of "YES" and "NO".

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::generate::{find_new_stop, prompt_tokens, GenerateRequest};
use crate::gguf::LoadedModel;
use crate::model::{log_softmax, BatchItem};
use crate::sampling::Sampler;
use crate::tokenizer::StreamDecoder;

/// A verifier's decision about one result, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub method: &'static str,
    pub accepted: bool,
    /// In [0, 1]; higher is more convincing.
    pub score: f64,
    pub reasons: Vec<String>,
}

/// A way to check that `output` is what `model` produces for `request`.
pub trait Verifier {
    fn name(&self) -> &'static str;

    /// Errors: the request and output do not fit the model, or a tensor operation failed.
    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict>;

    /// Verdicts on several results, in order; a method that can batches them.
    fn verify_batch(
        &self,
        model: &LoadedModel,
        cases: &[(&GenerateRequest, &[u32])],
    ) -> Vec<Result<Verdict>> {
        cases
            .iter()
            .map(|(request, output)| self.verify(model, request, output))
            .collect()
    }
}

/// Teacher-forced re-derivation of every claimed token.
#[derive(Debug, Clone)]
pub struct Replay {
    /// How far numeric drift may move each logit (raw logit units): a claimed token that
    /// logits this close to the verifier's would pick is a near-tie. 0.15: candle's
    /// AVX512-VNNI and AVX2 kernels move the logits of a 512-wide Q8_0 model by up to
    /// 0.15 against each other (tests/cross_kernel.rs); at 0.05 honest answers made on one
    /// CPU were rejected on another.
    pub drift_logit: f32,
    /// Hard mismatches (neither re-derived nor a near-tie) an answer may hold.
    pub max_mismatches: usize,
    /// Most tokens (prompts and outputs) one batched replay pass reads.
    pub batch_tokens: usize,
    /// Most output positions one pass turns into logits (each a vocabulary's worth of
    /// f32, held about three times while scored): a longer output is replayed alone, in
    /// passes of this many positions over one cache, so that replay memory is bounded by
    /// this times the vocabulary, not by the output's length (512 rows of a
    /// 150,000-token vocabulary: about 0.9 GB).
    pub rows_per_pass: usize,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            drift_logit: 0.15,
            max_mismatches: 0,
            batch_tokens: 4096,
            rows_per_pass: 512,
        }
    }
}

/// How an answer ended, as generation would have ended it: what its length and text claim,
/// then (for end-of-text) what the verifier's next token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `max_tokens` tokens, or the context window full: nothing more to check.
    Length,
    /// The last token completed the first stop string.
    Stop,
    /// Shorter than `max_tokens` with no stop string: the model ended it. Before the pass
    /// this is the claim; after it, the claim held (the verifier's next token ends
    /// generation, or an end token is a near-tie there).
    EndOfText,
    /// End-of-text, where an end token is not the verifier's choice but a near-tie.
    EndOfTextNearTie,
    /// The claim of end-of-text failed: the model would have gone on (an answer cut short,
    /// or padded past its end and then cut).
    NotEnded,
    /// Tokens after the one that completed a stop string (padding past the end).
    PastStop { extra: usize },
    /// An end token among the output's tokens (generation never emits one).
    EndTokenInside,
    /// More tokens than `max_tokens`.
    TooLong,
}

impl End {
    /// Whether an honest generation could have ended this way.
    pub fn is_valid(self) -> bool {
        matches!(
            self,
            End::Length | End::Stop | End::EndOfText | End::EndOfTextNearTie
        )
    }

    /// Why an answer that ended this way is rejected, if it is.
    fn fault(self) -> Option<String> {
        match self {
            End::Length | End::Stop | End::EndOfText | End::EndOfTextNearTie => None,
            End::NotEnded => {
                Some("the answer claims the model ended it, but the model goes on there".into())
            }
            End::PastStop { extra } => Some(format!(
                "{extra} tokens follow the one that completed a stop string"
            )),
            End::EndTokenInside => Some("an end-of-text token inside the answer".into()),
            End::TooLong => Some("more tokens than max_tokens".into()),
        }
    }
}

/// What a replay measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayStats {
    pub tokens: usize,
    /// Re-derived exactly.
    pub exact: usize,
    /// Not re-derived, but a near-tie.
    pub near_ties: usize,
    /// Mean log-probability (natural log) of the claimed tokens under the verifier.
    pub mean_logprob: f64,
    /// Hard mismatches that stay mismatches with the drift bound doubled (a claimed end
    /// that no end token could take even so counts too): no device within the bound of
    /// this verifier's could call them near-ties (decision 0004).
    pub gross: usize,
    /// How the answer ended. An answer whose length or text alone shows a forgery
    /// ([`End::PastStop`], [`End::EndTokenInside`], [`End::TooLong`]) is not run through
    /// the model: its counts are 0.
    pub end: End,
}

impl ReplayStats {
    /// Claimed tokens neither re-derived nor near-ties.
    pub fn mismatches(&self) -> usize {
        self.tokens
            .saturating_sub(self.exact)
            .saturating_sub(self.near_ties)
    }

    /// Accepted, yet not what the verifier derives: every difference (a token or the end)
    /// is a near-tie, so a device drifting within the bound could have given this answer
    /// honestly, and replay cannot tell it from one.
    pub fn near_tie_only(&self) -> bool {
        self.end.is_valid()
            && self.mismatches() == 0
            && (self.near_ties > 0 || self.end == End::EndOfTextNearTie)
    }

    /// Whether a rejection is gross: the answer breaks a rule that needs no logits (an
    /// end token inside, tokens past a stop string, more than `max_tokens`), or a claimed
    /// token (or the claimed end) is a mismatch even at twice the drift bound. Any other
    /// verifier whose logits are within the bound of this one's rejects it too.
    pub fn is_gross(&self) -> bool {
        matches!(
            self.end,
            End::EndTokenInside | End::PastStop { .. } | End::TooLong
        ) || self.gross > 0
    }

    /// An answer not run through the model.
    fn unread(tokens: usize, end: End) -> Self {
        ReplayStats {
            tokens,
            exact: 0,
            near_ties: 0,
            mean_logprob: 0.0,
            gross: 0,
            end,
        }
    }
}

/// How `output` claims to have ended, for a prompt of `prompt_len` tokens: the rules of
/// [`crate::generate::Sequence`] read backwards (an end token stops generation before it
/// is kept, a stop string after the token that completes it, then `max_tokens` and the
/// context window).
pub fn claimed_end(
    model: &LoadedModel,
    request: &GenerateRequest,
    prompt_len: usize,
    output: &[u32],
) -> End {
    let n = output.len();
    if output.iter().any(|t| model.tokenizer.is_end(*t)) {
        return End::EndTokenInside;
    }
    let max_tokens = request.sampling.max_tokens as usize;
    if n > max_tokens {
        return End::TooLong;
    }
    let stops = &request.sampling.stop;
    if !stops.is_empty() {
        let (mut decoder, mut text) = (StreamDecoder::default(), String::new());
        for (i, t) in output.iter().enumerate() {
            let piece = decoder.push(model.tokenizer.token_bytes(*t));
            text.push_str(&piece);
            if find_new_stop(&text, piece.len(), stops).is_some() {
                let extra = n - i - 1;
                return if extra == 0 {
                    End::Stop
                } else {
                    End::PastStop { extra }
                };
            }
        }
    }
    // Generation ends for length once the cache (the prompt and every token but the last)
    // fills the context window.
    let cached = prompt_len.saturating_add(n.saturating_sub(1));
    if n == max_tokens || (n > 0 && cached >= model.model.config.context_length) {
        return End::Length;
    }
    End::EndOfText
}

/// One replay to run: the tokens through the model and the claimed output.
struct Prepared<'a> {
    index: usize,
    request: &'a GenerateRequest,
    /// The prompt and the claimed tokens the logits are computed after.
    input: Vec<u32>,
    output: &'a [u32],
    /// Logit rows: one per claimed token, and one more past the output when it claims
    /// end-of-text.
    rows: usize,
    end: End,
}

impl Replay {
    /// The statistics of one replay.
    pub fn measure(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<ReplayStats> {
        self.measure_batch(model, &[(request, output)])
            .pop()
            .unwrap_or(Err(EngineError::NoTokens))
    }

    /// The statistics of several replays, in order, run in as few batched forward
    /// passes as [`Replay::batch_tokens`] allows. A case that cannot run (bad sampling,
    /// longer than the context window) gets its own error; a failed pass fails its cases.
    pub fn measure_batch(
        &self,
        model: &LoadedModel,
        cases: &[(&GenerateRequest, &[u32])],
    ) -> Vec<Result<ReplayStats>> {
        let mut results: Vec<Option<Result<ReplayStats>>> = cases.iter().map(|_| None).collect();
        let mut ready: Vec<Prepared<'_>> = Vec::new();
        let context = model.model.config.context_length;
        for (index, (request, output)) in cases.iter().enumerate() {
            let prepared = request.sampling.validate().and_then(|()| {
                let mut input = prompt_tokens(model, request)?;
                if input.is_empty() {
                    return Err(EngineError::NoTokens);
                }
                let end = claimed_end(model, request, input.len(), output);
                if !end.is_valid() {
                    return Ok(Err(ReplayStats::unread(output.len(), end)));
                }
                let rows = output.len() + usize::from(end == End::EndOfText);
                // The prompt and every claimed token before the last row's position.
                let fed = output.get(..rows.saturating_sub(1)).unwrap_or(output);
                let len = input.len() + fed.len();
                if len > context {
                    return Err(EngineError::PromptTooLong {
                        tokens: len,
                        context,
                    });
                }
                input.extend_from_slice(fed);
                Ok(Ok((input, rows, end)))
            });
            match prepared {
                Err(e) => results[index] = Some(Err(e)),
                Ok(Err(unread)) => results[index] = Some(Ok(unread)),
                Ok(Ok((_, 0, end))) => results[index] = Some(Ok(ReplayStats::unread(0, end))),
                Ok(Ok((input, rows, end))) => ready.push(Prepared {
                    index,
                    request,
                    input,
                    output,
                    rows,
                    end,
                }),
            }
        }
        // Long outputs alone, in bounded passes.
        let (long, ready): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|p| p.rows > self.rows_per_pass.max(1));
        for p in &long {
            if let Some(slot) = results.get_mut(p.index) {
                *slot = Some(self.run_in_passes(model, p));
            }
        }
        let mut chunk: Vec<Prepared<'_>> = Vec::new();
        let (mut chunk_tokens, mut chunk_rows) = (0usize, 0usize);
        let mut run = |chunk: &mut Vec<Prepared<'_>>| {
            for (index, r) in self.run_chunk(model, chunk) {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(r);
                }
            }
            chunk.clear();
        };
        for p in ready {
            if !chunk.is_empty()
                && (chunk_tokens + p.input.len() > self.batch_tokens
                    || chunk_rows + p.rows > self.rows_per_pass)
            {
                run(&mut chunk);
                chunk_tokens = 0;
                chunk_rows = 0;
            }
            chunk_tokens += p.input.len();
            chunk_rows += p.rows;
            chunk.push(p);
        }
        if !chunk.is_empty() {
            run(&mut chunk);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(EngineError::NoTokens)))
            .collect()
    }

    /// One batched teacher-forced pass over `chunk`, then each claimed token scored.
    fn run_chunk(
        &self,
        model: &LoadedModel,
        chunk: &[Prepared<'_>],
    ) -> Vec<(usize, Result<ReplayStats>)> {
        let mut caches: Vec<_> = chunk.iter().map(|_| model.model.new_cache()).collect();
        let pass = {
            let mut items: Vec<BatchItem<'_, '_>> = chunk
                .iter()
                .zip(caches.iter_mut())
                .map(|(p, cache)| BatchItem {
                    tokens: &p.input,
                    cache,
                    rows: p.rows,
                })
                .collect();
            model.model.forward_batch(&mut items)
        };
        match pass {
            Ok(all) => chunk
                .iter()
                .zip(all)
                .map(|(p, logits)| (p.index, self.score(model, p, &logits)))
                .collect(),
            Err(e) => {
                let message = e.to_string();
                chunk
                    .iter()
                    .map(|p| {
                        let err = candle_core::Error::Msg(message.clone());
                        (p.index, Err(EngineError::Compute(err)))
                    })
                    .collect()
            }
        }
    }

    /// One output replayed alone over one cache, [`Replay::rows_per_pass`] positions a
    /// pass: the first pass reads the prompt and the output's first tokens, each later one
    /// the next tokens only; the sampler runs on across passes, so the result is the one
    /// pass's (the rows are computed as the incremental decoding that made them was).
    fn run_in_passes(&self, model: &LoadedModel, p: &Prepared<'_>) -> Result<ReplayStats> {
        let n = p.rows;
        let prompt = p.input.len().saturating_add(1).saturating_sub(n);
        let step = self.rows_per_pass.max(1);
        let mut cache = model.model.new_cache();
        let mut scoring = Scoring::new(model, p, self.drift_logit);
        let (mut done, mut fed) = (0usize, 0usize);
        while done < n {
            let rows = (n - done).min(step);
            // Through the token before the last claimed one of this pass.
            let end = (prompt + done + rows).saturating_sub(1);
            let tokens = p.input.get(fed..end).ok_or(EngineError::NoTokens)?;
            let mut items = [BatchItem {
                tokens,
                cache: &mut cache,
                rows,
            }];
            let logits = model
                .model
                .forward_batch(&mut items)?
                .pop()
                .ok_or(EngineError::NoTokens)?;
            // The row past the output, if this pass reaches it, has no claimed token.
            let claimed = p
                .output
                .get(done.min(p.output.len())..(done + rows).min(p.output.len()))
                .ok_or(EngineError::NoTokens)?;
            scoring.rows(claimed, &logits)?;
            fed = end;
            done += rows;
        }
        Ok(scoring.finish(p.output.len()))
    }

    /// Re-derives each claimed token (and the end, when claimed) from the verifier's
    /// logits at its position.
    fn score(&self, model: &LoadedModel, p: &Prepared<'_>, logits: &Tensor) -> Result<ReplayStats> {
        let mut scoring = Scoring::new(model, p, self.drift_logit);
        scoring.rows(p.output, logits)?;
        Ok(scoring.finish(p.output.len()))
    }

    /// The verdict for measured statistics.
    pub fn judge_stats(&self, s: &ReplayStats) -> Verdict {
        let hard = s.mismatches();
        let mut reasons = vec![format!(
            "{} of {} tokens re-derived exactly, {} near-ties, mean log-probability {:.2}, ended by {:?}",
            s.exact, s.tokens, s.near_ties, s.mean_logprob, s.end
        )];
        let mut accepted = true;
        if let Some(fault) = s.end.fault() {
            accepted = false;
            reasons.push(fault);
        } else if hard > self.max_mismatches {
            accepted = false;
            reasons.push(format!(
                "{hard} tokens are neither re-derived nor near-ties (at most {} allowed)",
                self.max_mismatches
            ));
        }
        let score = if !accepted && s.end.fault().is_some() {
            0.0
        } else {
            1.0 - hard as f64 / s.tokens.max(1) as f64
        };
        Verdict {
            method: "replay",
            accepted,
            score,
            reasons,
        }
    }
}

/// The running score of one replay: the sampler at the next position and the counts.
struct Scoring {
    sampler: Sampler,
    drift_logit: f32,
    /// The tokens that end generation, for the row past a claimed end-of-text.
    ends: Vec<u32>,
    exact: usize,
    near_ties: usize,
    /// Hard mismatches beyond twice the drift bound.
    gross: usize,
    lp_sum: f64,
    /// How the answer claims to have ended; [`End::NotEnded`] once the row past a
    /// claimed end-of-text says so.
    end: End,
}

impl Scoring {
    fn new(model: &LoadedModel, p: &Prepared<'_>, drift_logit: f32) -> Self {
        Scoring {
            sampler: Sampler::new(&p.request.sampling),
            drift_logit,
            ends: model.tokenizer.end_tokens().to_vec(),
            exact: 0,
            near_ties: 0,
            gross: 0,
            lp_sum: 0.0,
            end: p.end,
        }
    }

    /// Scores the claimed tokens `output` against `logits`, a row per token, in order;
    /// a row after the last claimed token is the position past a claimed end-of-text.
    fn rows(&mut self, output: &[u32], logits: &Tensor) -> Result<()> {
        let logprobs = log_softmax(logits)?.to_vec2::<f32>()?;
        let rows = logits.to_vec2::<f32>()?;
        for ((row, lp), claimed) in rows.iter().zip(&logprobs).zip(output) {
            // The draw is taken for every token, so the stream stays aligned.
            let probe = self.sampler.clone();
            let (derived, draw) = self.sampler.sample_traced(row);
            if derived == *claimed {
                self.exact += 1;
            } else if probe.could_pick(row, draw, *claimed, self.drift_logit) {
                self.near_ties += 1;
            } else if !probe.could_pick(row, draw, *claimed, 2.0 * self.drift_logit) {
                self.gross += 1;
            }
            self.lp_sum += f64::from(
                lp.get(*claimed as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY)
                    .max(-100.0),
            );
        }
        if let Some(past) = rows.get(output.len()) {
            let probe = self.sampler.clone();
            let (derived, draw) = self.sampler.sample_traced(past);
            let pickable = |drift: f32| {
                self.ends
                    .iter()
                    .any(|e| probe.could_pick(past, draw, *e, drift))
            };
            self.end = if self.ends.contains(&derived) {
                End::EndOfText
            } else if pickable(self.drift_logit) {
                End::EndOfTextNearTie
            } else {
                // Gross only when no end token could be chosen even at twice the bound,
                // as for a claimed token.
                if !pickable(2.0 * self.drift_logit) {
                    self.gross += 1;
                }
                End::NotEnded
            };
        }
        Ok(())
    }

    fn finish(self, tokens: usize) -> ReplayStats {
        ReplayStats {
            tokens,
            exact: self.exact,
            near_ties: self.near_ties,
            mean_logprob: self.lp_sum / tokens.max(1) as f64,
            gross: self.gross,
            end: self.end,
        }
    }
}

impl Verifier for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict> {
        Ok(self.judge_stats(&self.measure(model, request, output)?))
    }

    fn verify_batch(
        &self,
        model: &LoadedModel,
        cases: &[(&GenerateRequest, &[u32])],
    ) -> Vec<Result<Verdict>> {
        self.measure_batch(model, cases)
            .into_iter()
            .map(|r| r.map(|s| self.judge_stats(&s)))
            .collect()
    }
}

/// The paper's judge: the model itself says whether the output answers the input.
#[derive(Debug, Clone, Default)]
pub struct Judge;

/// The instruction the judge gives the model.
pub const JUDGE_SYSTEM: &str =
    "You check answers. Reply YES if the answer responds to the question, NO otherwise.";

impl Verifier for Judge {
    fn name(&self) -> &'static str {
        "judge"
    }

    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict> {
        let answer = model.tokenizer.decode(output);
        let question = format!(
            "Question: {}\nAnswer: {}\nYES or NO?",
            request.input, answer
        );
        let tokens = model.chat_tokens(JUDGE_SYSTEM, &[], &question)?;
        let mut cache = model.model.new_cache();
        let row = model
            .model
            .forward_last(&tokens, &mut cache, 1)?
            .get(0)?
            .to_vec1::<f32>()?;
        let logit = |words: &[&str]| {
            model
                .tokenizer
                .token_of(words)
                .and_then(|t| row.get(t as usize).copied())
                .unwrap_or(f32::NEG_INFINITY)
        };
        let yes = logit(&["YES", " YES", "Yes", " Yes", "Y", " Y"]);
        let no = logit(&["NO", " NO", "No", " No", "N", " N"]);
        let score = 1.0 / (1.0 + (f64::from(no) - f64::from(yes)).exp());
        Ok(Verdict {
            method: "judge",
            accepted: score >= 0.5,
            score,
            reasons: vec![format!("logit YES {yes:.3} against NO {no:.3}")],
        })
    }
}
