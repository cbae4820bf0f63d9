//! Generation: the prompt goes through the model once (prefill), then one token at a time
//! with the KV cache (decode). Text streams out as it is produced, holding back only what
//! could still turn out to be the start of a stop string; a request can be cancelled
//! between any two tokens.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;

use crate::chat::Turn;
use crate::error::{EngineError, Result};
use crate::gguf::LoadedModel;
use crate::model::{BatchItem, KvCache};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::StreamDecoder;

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub system: String,
    pub context: Vec<Turn>,
    pub input: String,
    pub sampling: SamplingParams,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` reached, or the context window is full.
    Length,
    /// A stop string appeared.
    Stop,
    /// The model produced its end-of-text token.
    EndOfText,
    Cancelled,
}

/// The outcome of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// The tokens generated (without the end-of-text token).
    pub tokens: Vec<u32>,
    /// Their text, cut before a stop string.
    pub text: String,
    pub finish: FinishReason,
}

/// The prompt tokens of a request for `model`.
pub fn prompt_tokens(model: &LoadedModel, req: &GenerateRequest) -> Result<Vec<u32>> {
    model.chat_tokens(&req.system, &req.context, &req.input)
}

pub(crate) fn last_row(logits: &Tensor) -> Result<Vec<f32>> {
    let rows = logits.dim(0)?;
    Ok(logits.get(rows.saturating_sub(1))?.to_vec1::<f32>()?)
}

/// Bytes at the end of `text` that begin some stop string, to be held back.
fn holdback(text: &str, stops: &[String]) -> usize {
    let mut keep = 0;
    for stop in stops {
        for n in (1..stop.len().min(text.len() + 1)).rev() {
            if n > keep
                && text.is_char_boundary(text.len() - n)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - n..])
            {
                keep = n;
                break;
            }
        }
    }
    keep
}

/// Where the first stop string in `text` begins, given that none was in `text` before its
/// last `added` bytes: only the tail a new stop string can reach is searched, so checking
/// after every token costs the token, not the whole text so far.
pub(crate) fn find_new_stop(text: &str, added: usize, stops: &[String]) -> Option<usize> {
    let longest = stops.iter().map(String::len).max()?;
    let mut from = text
        .len()
        .saturating_sub(added.saturating_add(longest).saturating_sub(1));
    while !text.is_char_boundary(from) {
        from = from.saturating_sub(1);
    }
    let tail = text.get(from..)?;
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| tail.find(s.as_str()))
        .min()
        .map(|at| from + at)
}

/// One request being generated: the state between two forward passes, so that a
/// scheduler can advance many sequences with one batched pass per step
/// ([`crate::model::Llama::forward_batch`]) and [`generate`] one alone, with the same
/// stopping, streaming and sampling rules.
pub struct Sequence {
    sampling: SamplingParams,
    sampler: Sampler,
    decoder: StreamDecoder,
    cache: KvCache,
    /// What the next forward pass reads: the prompt, then each sampled token.
    pending: Vec<u32>,
    context: usize,
    prompt_tokens: usize,
    tokens: Vec<u32>,
    text: String,
    emitted: usize,
    finish: Option<FinishReason>,
    failed: bool,
}

impl Sequence {
    /// Checks and tokenizes `req` for `model`.
    ///
    /// Errors: invalid sampling parameters, or a prompt that does not fit the context
    /// window.
    pub fn start(model: &LoadedModel, req: &GenerateRequest) -> Result<Self> {
        req.sampling.validate()?;
        let prompt = prompt_tokens(model, req)?;
        let context = model.model.config.context_length;
        if prompt.len() >= context {
            return Err(EngineError::PromptTooLong {
                tokens: prompt.len(),
                context,
            });
        }
        if prompt.is_empty() {
            return Err(EngineError::NoTokens);
        }
        Ok(Sequence {
            sampler: Sampler::new(&req.sampling),
            sampling: req.sampling.clone(),
            decoder: StreamDecoder::default(),
            cache: model.model.new_cache(),
            prompt_tokens: prompt.len(),
            pending: prompt,
            context,
            tokens: Vec::new(),
            text: String::new(),
            emitted: 0,
            finish: (req.sampling.max_tokens == 0).then_some(FinishReason::Length),
            failed: false,
        })
    }

    /// Whether generation has ended (then [`Sequence::finish`] gives the result).
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The next forward pass's input for this sequence: its tokens, its cache, one row.
    pub fn batch_item(&mut self) -> BatchItem<'_, '_> {
        BatchItem {
            tokens: &self.pending,
            cache: &mut self.cache,
            rows: 1,
        }
    }

    /// Stops the sequence before its next token.
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
        }
    }

    /// Ends the sequence after an error (which its owner reports).
    pub fn fail(&mut self) {
        self.failed = true;
        self.cancel();
    }

    /// Whether the sequence ended in an error.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Takes the logits of the last position just run, chooses the next token, and
    /// returns the text that is now safe to stream (possibly empty).
    pub fn advance(&mut self, model: &LoadedModel, logits: &[f32]) -> String {
        if self.finish.is_some() {
            return String::new();
        }
        let token = self.sampler.sample(logits);
        if model.tokenizer.is_end(token) {
            self.finish = Some(FinishReason::EndOfText);
            return String::new();
        }
        self.tokens.push(token);
        let piece = self.decoder.push(model.tokenizer.token_bytes(token));
        self.text.push_str(&piece);
        if let Some(at) = find_new_stop(&self.text, piece.len(), &self.sampling.stop) {
            self.text.truncate(at);
            self.finish = Some(FinishReason::Stop);
            return String::new();
        }
        let ready = self.text.len() - holdback(&self.text, &self.sampling.stop);
        let mut piece = String::new();
        if ready > self.emitted {
            piece = self.text[self.emitted..ready].to_string();
            self.emitted = ready;
        }
        if self.tokens.len() >= self.sampling.max_tokens as usize
            || self.cache.len() >= self.context
        {
            self.finish = Some(FinishReason::Length);
        } else {
            self.pending.clear();
            self.pending.push(token);
        }
        piece
    }

    /// The result, and the text not yet streamed.
    pub fn finish(mut self) -> (Generation, String) {
        let finish = self.finish.unwrap_or(FinishReason::Cancelled);
        if finish != FinishReason::Stop {
            self.text.push_str(&self.decoder.finish());
        }
        let tail = self.text.get(self.emitted..).unwrap_or("").to_string();
        (
            Generation {
                prompt_tokens: self.prompt_tokens,
                tokens: self.tokens,
                text: self.text,
                finish,
            },
            tail,
        )
    }
}

/// Generates the answer to `req`, calling `on_text` with each new piece of text.
///
/// Errors: invalid sampling parameters, a prompt that does not fit the context window,
/// or a failed tensor operation.
pub fn generate(
    model: &LoadedModel,
    req: &GenerateRequest,
    cancel: &AtomicBool,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut seq = Sequence::start(model, req)?;
    while !seq.is_finished() {
        if cancel.load(Ordering::Relaxed) {
            seq.cancel();
            break;
        }
        let logits = model.model.forward_batch(&mut [seq.batch_item()])?;
        let row = last_row(logits.first().ok_or(EngineError::NoTokens)?)?;
        let piece = seq.advance(model, &row);
        if !piece.is_empty() {
            on_text(&piece);
        }
    }
    let (generation, tail) = seq.finish();
    if !tail.is_empty() {
        on_text(&tail);
    }
    Ok(generation)
}

/// Generates the answers to `requests` together, one batched forward pass per step until
/// every one has ended (the scheduler's loop without its queue). On the CPU each answer is
/// exactly what [`generate`] gives alone.
///
/// Errors: any request that cannot start, or a failed tensor operation.
pub fn generate_batch(
    model: &LoadedModel,
    requests: &[GenerateRequest],
) -> Result<Vec<Generation>> {
    let mut seqs: Vec<Sequence> = requests
        .iter()
        .map(|r| Sequence::start(model, r))
        .collect::<Result<_>>()?;
    loop {
        let mut running: Vec<&mut Sequence> =
            seqs.iter_mut().filter(|s| !s.is_finished()).collect();
        if running.is_empty() {
            break;
        }
        let rows = {
            let mut items: Vec<BatchItem<'_, '_>> =
                running.iter_mut().map(|s| s.batch_item()).collect();
            model.model.forward_batch(&mut items)?
        };
        for (seq, logits) in running.into_iter().zip(rows) {
            let row = last_row(&logits)?;
            seq.advance(model, &row);
        }
    }
    Ok(seqs.into_iter().map(|s| s.finish().0).collect())
}

#[cfg(test)]
mod tests {
    use super::{find_new_stop, holdback};

    #[test]
    fn a_new_stop_string_is_found_in_the_tail_alone() {
        let stops = vec!["END".to_string(), "é!".to_string()];
        // "EN" came before, "D" now: the stop began before the added bytes.
        assert_eq!(find_new_stop("abcEND", 1, &stops), Some(3));
        assert_eq!(find_new_stop("abcEN", 1, &stops), None);
        // A multibyte character just before the searched tail.
        assert_eq!(find_new_stop("xé!", 1, &stops), Some(1));
        assert_eq!(find_new_stop("xyz", 3, &[]), None);
        // The earliest of two new ones.
        assert_eq!(find_new_stop("aaé!END", 7, &stops), Some(2));
    }

    #[test]
    fn only_a_possible_stop_prefix_is_held_back() {
        let stops = vec!["\nEND".to_string()];
        assert_eq!(holdback("abc\nEN", &stops), 3);
        assert_eq!(holdback("abc", &stops), 0);
        assert_eq!(holdback("abc\n", &stops), 1);
        assert_eq!(holdback("", &stops), 0);
    }
}
