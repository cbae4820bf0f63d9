//! Generation: the prompt goes through the model once (prefill), then one token at a time
//! with the KV cache (decode). Text streams out as it is produced, holding back only what
//! could still turn out to be the start of a stop string; a request can be cancelled
//! between any two tokens.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;

use crate::chat::Turn;
use crate::error::{EngineError, Result};
use crate::gguf::LoadedModel;
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

fn last_row(logits: &Tensor) -> Result<Vec<f32>> {
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
    req.sampling.validate()?;
    let prompt = prompt_tokens(model, req)?;
    let context = model.model.config.context_length;
    if prompt.len() >= context {
        return Err(EngineError::PromptTooLong {
            tokens: prompt.len(),
            context,
        });
    }
    let mut cache = model.model.new_cache();
    let mut logits = last_row(&model.model.forward_last(&prompt, &mut cache, 1)?)?;
    let mut sampler = Sampler::new(&req.sampling);
    let mut decoder = StreamDecoder::default();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut finish = FinishReason::Length;
    for _ in 0..req.sampling.max_tokens {
        if cancel.load(Ordering::Relaxed) {
            finish = FinishReason::Cancelled;
            break;
        }
        let token = sampler.sample(&logits);
        if model.tokenizer.is_end(token) {
            finish = FinishReason::EndOfText;
            break;
        }
        tokens.push(token);
        text.push_str(&decoder.push(model.tokenizer.token_bytes(token)));
        if let Some(at) = req
            .sampling
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(at);
            finish = FinishReason::Stop;
            break;
        }
        let ready = text.len() - holdback(&text, &req.sampling.stop);
        if ready > emitted {
            on_text(&text[emitted..ready]);
            emitted = ready;
        }
        if cache.len() >= context {
            break;
        }
        logits = last_row(&model.model.forward(&[token], &mut cache)?)?;
    }
    if finish != FinishReason::Stop {
        text.push_str(&decoder.finish());
    }
    if text.len() > emitted {
        on_text(&text[emitted..]);
    }
    Ok(Generation {
        prompt_tokens: prompt.len(),
        tokens,
        text,
        finish,
    })
}

#[cfg(test)]
mod tests {
    use super::holdback;

    #[test]
    fn only_a_possible_stop_prefix_is_held_back() {
        let stops = vec!["\nEND".to_string()];
        assert_eq!(holdback("abc\nEN", &stops), 3);
        assert_eq!(holdback("abc", &stops), 0);
        assert_eq!(holdback("abc\n", &stops), 1);
        assert_eq!(holdback("", &stops), 0);
    }
}
