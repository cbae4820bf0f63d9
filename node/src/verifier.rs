//! What a verifier does with an inference block: for each inference, open its payload
//! (prompt, output text, output token ids, sealed to the verifiers: [`Texts`]), check it
//! against the hashes the block carries, and replay the output with the engine under the
//! declared sampling.
//!
//! Verdicts ([`Verdict`]): accept; reject when the answer is provably not the model's
//! (its tokens do not spell its signed text, replay rejects it, the request it claims to
//! answer is invalid), grossly when any verifier within the drift bound would too (a
//! rule broken, or a mismatch even at twice the bound: decision 0004; also when the text
//! the serving node sealed and signed does not open under the key it sealed to this
//! verifier, or does not match its own receipt); abstain when this verifier cannot judge:
//! it does not hold the model, the text never reached it or was not sealed to it, or its
//! own engine failed. An
//! abstention never counts against the node (docs/consensus.md): a verifier's missing
//! model or slow network must not slash an honest node.

use fai_engine::chat::{Role as ChatRole, Turn as ChatTurn};
use fai_engine::{EngineError, GenerateRequest, LoadedModel, Replay, SamplingParams};
use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::payloads::PayloadStore;
use fai_inference_chain::quorum::Verdict;
use fai_inference_chain::served::ServedInference;
use fai_inference_chain::types::{Inference, Prompt, Role, Sampling};
use fai_primitives::seal::SealingSecret;
use fai_primitives::Hash160;

/// Why a verifier does not accept an inference: how it votes ([`Verdict::Reject`],
/// [`Verdict::RejectGross`] or [`Verdict::Abstain`]) and the reason it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub verdict: Verdict,
    pub why: String,
}

impl Refusal {
    fn reject(why: impl Into<String>) -> Self {
        Refusal {
            verdict: Verdict::Reject,
            why: why.into(),
        }
    }

    /// A rejection every verifier within the drift bound makes alike (decision 0004).
    fn reject_grossly(why: impl Into<String>) -> Self {
        Refusal {
            verdict: Verdict::RejectGross,
            why: why.into(),
        }
    }

    fn abstain(why: impl Into<String>) -> Self {
        Refusal {
            verdict: Verdict::Abstain,
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// The engine's sampling for a transaction's declared sampling.
pub fn sampling_params(s: &Sampling) -> SamplingParams {
    SamplingParams {
        max_tokens: s.max_tokens,
        temperature: s.temperature_milli as f32 / 1000.0,
        top_p: s.top_p_milli as f32 / 1000.0,
        top_k: s.top_k,
        seed: s.seed,
        stop: s.stop.clone(),
    }
}

/// The engine's request for a prompt and sampling.
pub fn request(prompt: &Prompt, sampling: &Sampling) -> GenerateRequest {
    GenerateRequest {
        system: prompt.system.clone(),
        context: prompt
            .context
            .iter()
            .map(|t| ChatTurn {
                role: match t.role {
                    Role::User => ChatRole::User,
                    Role::Assistant => ChatRole::Assistant,
                },
                text: t.text.clone(),
            })
            .collect(),
        input: prompt.input.clone(),
        sampling: sampling_params(sampling),
    }
}

/// The verdict on one inference by whichever of `models` it names; an inference on a
/// model not loaded here is abstained on (a verifier loads every model it must replay,
/// and one that lacks a model must not slash the nodes that serve it).
pub fn verdict_among(
    models: &[std::sync::Arc<LoadedModel>],
    texts: &Texts<'_>,
    inf: &Inference,
) -> Result<(), Refusal> {
    match models.iter().find(|m| m.id.0 == inf.stub.model) {
        Some(model) => verdict(model, texts, inf),
        None => Err(Refusal::abstain(format!(
            "model {} is not loaded here",
            hex::encode(inf.stub.model)
        ))),
    }
}

/// An inference whose text passed every check before replay: what replay needs.
pub struct ToReplay {
    pub request: GenerateRequest,
    pub tokens: Vec<u32>,
}

/// Where a verifier takes the text of the inferences it replays: the sealed texts this
/// node stores, opened in memory with its sealing secret (nothing opened is written).
pub struct Texts<'a> {
    pub store: &'a PayloadStore,
    /// The verifier's address, under which the texts are sealed to it.
    pub me: Hash160,
    pub secret: &'a SealingSecret,
}

impl Texts<'_> {
    /// The text of `inf`, opened; the refusal if it is not here or does not open (this
    /// verifier cannot judge: it abstains). `inf` is an inference of a block the chain
    /// accepted, whose sender's and receipt's signatures it verified: only the serving
    /// node's signature of the sealed text is verified here.
    fn open(&self, inf: &Inference) -> Result<ServedInference, Refusal> {
        let sealed = self
            .store
            .sealed(&inf.stub.txid(), &inf.receipt.signing_digest())
            .map_err(|e| Refusal::abstain(e.to_string()))?
            .ok_or_else(|| Refusal::abstain("no text for this answer"))?;
        sealed
            .open_carried(inf, &self.me, self.secret)
            .map_err(|why| match why {
                fai_inference_chain::served::Unopened::NotForMe(why) => {
                    Refusal::abstain(format!("the text held here does not open: {why}"))
                }
                fai_inference_chain::served::Unopened::SealersFault(why) => {
                    Refusal::reject_grossly(format!(
                        "the serving node sealed no answer to judge: {why}"
                    ))
                }
            })
    }
}

/// The checks before replay: the text sealed to this verifier must open (else it
/// abstains: it cannot judge) and match the signed hashes (else the serving node, which
/// signed both the hashes and the sealed bytes, sent text that is not its answer: a gross
/// rejection), and the tokens must spell the output (else the node signed something
/// impossible: a gross rejection).
pub fn checked(
    model: &LoadedModel,
    texts: &Texts<'_>,
    inf: &Inference,
) -> Result<ToReplay, Refusal> {
    if inf.stub.model != model.id.0 {
        return Err(Refusal::abstain(format!(
            "model {} is not the one loaded",
            hex::encode(inf.stub.model)
        )));
    }
    let served = texts.open(inf)?;
    served.check_text().map_err(|why| {
        Refusal::reject_grossly(format!("the text the serving node sealed: {why}"))
    })?;
    let ServedInference {
        prompt,
        output,
        tokens,
        ..
    } = served;
    // Both hashes are the node's signature: from here on, what is wrong is its fault.
    // The output is the tokens' text, cut before the first stop string (the token that
    // completed it is among the tokens, as generation counts it).
    let mut spelled = model.tokenizer.decode(&tokens);
    if let Some(at) = inf
        .stub
        .sampling
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| spelled.find(s.as_str()))
        .min()
    {
        spelled.truncate(at);
    }
    if tokens.len() != inf.receipt.tokens as usize || spelled != output {
        return Err(Refusal::reject_grossly(
            "the output tokens do not spell the output",
        ));
    }
    Ok(ToReplay {
        request: request(&prompt, &inf.stub.sampling),
        tokens,
    })
}

/// The verdict a replay's statistics (or its failure) give.
fn judged(
    replay: &Replay,
    stats: fai_engine::Result<fai_engine::verify::ReplayStats>,
) -> Result<(), Refusal> {
    let stats = stats.map_err(|e| match e {
        // The request the node answered is not one the model can run.
        EngineError::PromptTooLong { .. }
        | EngineError::InvalidSampling(_)
        | EngineError::Tokenize(_)
        | EngineError::Template(_) => Refusal::reject_grossly(e.to_string()),
        // This verifier's engine failed (`NoTokens` too: an empty prompt is never
        // served, and the engine also says it when it has nothing to give).
        _ => Refusal::abstain(e.to_string()),
    })?;
    let v = replay.judge_stats(&stats);
    if v.accepted {
        Ok(())
    } else if stats.is_gross() {
        Err(Refusal::reject_grossly(v.reasons.join("; ")))
    } else {
        Err(Refusal::reject(v.reasons.join("; ")))
    }
}

/// The verdict on one inference, with the reason when it is not an acceptance.
pub fn verdict(model: &LoadedModel, texts: &Texts<'_>, inf: &Inference) -> Result<(), Refusal> {
    let case = checked(model, texts, inf)?;
    let replay = Replay::default();
    judged(&replay, replay.measure(model, &case.request, &case.tokens))
}

/// The verdicts on `inferences` (a block's, in order) by whichever of `models` each
/// names, the same as [`verdict_among`] one by one, with the replays of each model run
/// together in batched forward passes ([`Replay::measure_batch`]).
pub fn batch_verdicts(
    models: &[std::sync::Arc<LoadedModel>],
    texts: &Texts<'_>,
    inferences: &[Inference],
) -> Vec<Result<(), Refusal>> {
    batch_verdicts_timed(models, texts, inferences).0
}

/// The time one model's inferences of a block took to judge (their checks and their
/// replay), and their units of work (`crate::replay_cost::units`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTiming {
    pub model: [u8; 32],
    pub units: u64,
    pub took: std::time::Duration,
}

/// As [`batch_verdicts`], with the time each model's inferences took (none for a model
/// with nothing to replay).
pub fn batch_verdicts_timed(
    models: &[std::sync::Arc<LoadedModel>],
    texts: &Texts<'_>,
    inferences: &[Inference],
) -> (Vec<Result<(), Refusal>>, Vec<ModelTiming>) {
    use std::time::{Duration, Instant};
    let mut out: Vec<Result<(), Refusal>> = Vec::with_capacity(inferences.len());
    // Per model: (where in `out`, what to replay), the units and the checks' time.
    let mut cases: Vec<Vec<(usize, ToReplay)>> = models.iter().map(|_| Vec::new()).collect();
    let mut spent: Vec<(u64, Duration)> = models.iter().map(|_| (0, Duration::ZERO)).collect();
    for (at, inf) in inferences.iter().enumerate() {
        let Some(((model, list), spent)) = models
            .iter()
            .zip(cases.iter_mut())
            .zip(spent.iter_mut())
            .find(|((m, _), _)| m.id.0 == inf.stub.model)
        else {
            out.push(Err(Refusal::abstain(format!(
                "model {} is not loaded here",
                hex::encode(inf.stub.model)
            ))));
            continue;
        };
        let started = Instant::now();
        let case = checked(model, texts, inf);
        spent.1 = spent.1.saturating_add(started.elapsed());
        match case {
            Ok(case) => {
                out.push(Ok(()));
                list.push((at, case));
                spent.0 = spent
                    .0
                    .saturating_add(crate::replay_cost::units(inf.receipt.tokens));
            }
            Err(r) => out.push(Err(r)),
        }
    }
    let replay = Replay::default();
    let mut timings = Vec::new();
    for ((model, list), (units, checks)) in models.iter().zip(&cases).zip(spent) {
        if list.is_empty() {
            continue;
        }
        let started = Instant::now();
        let batch: Vec<(&GenerateRequest, &[u32])> = list
            .iter()
            .map(|(_, c)| (&c.request, c.tokens.as_slice()))
            .collect();
        for ((at, _), stats) in list.iter().zip(replay.measure_batch(model, &batch)) {
            if let Some(slot) = out.get_mut(*at) {
                *slot = judged(&replay, stats);
            }
        }
        timings.push(ModelTiming {
            model: model.id.0,
            units,
            took: checks.saturating_add(started.elapsed()),
        });
    }
    (out, timings)
}

/// One verdict per inference of `block`, in order.
pub fn verdicts(
    model: &std::sync::Arc<LoadedModel>,
    texts: &Texts<'_>,
    block: &InferenceBlock,
) -> Vec<Verdict> {
    batch_verdicts(std::slice::from_ref(model), texts, &block.inferences)
        .into_iter()
        .map(|v| match v {
            Ok(()) => Verdict::Accept,
            Err(r) => r.verdict,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use candle_core::Device;
    use fai_engine::tiny::ensure_fai_tiny;
    use fai_engine::Verifier;
    use fai_inference_chain::payloads::PAYLOADS_COLUMN;
    use fai_inference_chain::types::{InferenceStub, ResultReceipt};
    use fai_primitives::{Amount, SecretKey, Signature};

    use super::*;

    /// Attack: a node that relays an honest answer swaps token ids for others that spell
    /// the same text (two bytes that are each invalid UTF-8 both read as U+FFFD; real
    /// vocabularies spell most words several ways) and keeps the count. The receipt
    /// signed only the text and the count, so the relayed answer passed every check, and
    /// verifiers holding it replayed the swapped ids and rejected the honest node (a
    /// slash). The receipt signs the ids' hash now: the swap is refused on arrival.
    #[test]
    fn a_relay_cannot_swap_token_ids_that_spell_the_same_text() {
        let dir = tempfile::tempdir().unwrap();
        let model = LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &Device::Cpu).unwrap();
        let (user, node) = (
            SecretKey::from_bytes(&[2; 32]).unwrap(),
            SecretKey::from_bytes(&[3; 32]).unwrap(),
        );
        // An honest answer holding a byte that is never valid UTF-8 (0xF8 to 0xFF).
        let (prompt, sampling, tokens, at) = (0..200)
            .find_map(|i| {
                let prompt = Prompt {
                    input: format!("question {i}"),
                    ..Prompt::default()
                };
                let sampling = Sampling {
                    max_tokens: 48,
                    temperature_milli: 1000,
                    top_p_milli: 1000,
                    top_k: 0,
                    seed: i,
                    stop: vec![],
                };
                let tokens = fai_engine::generate(
                    &model,
                    &request(&prompt, &sampling),
                    &AtomicBool::new(false),
                    |_| {},
                )
                .unwrap()
                .tokens;
                let at = tokens.iter().position(|t| (0xf8..=0xff).contains(t))?;
                Some((prompt, sampling, tokens, at))
            })
            .expect("an answer with an invalid byte");
        let mut stub = InferenceStub {
            sender: user.public_key(),
            nonce: 0,
            chain_id: 1,
            model: model.id.0,
            prompt_hash: prompt.hash(),
            sampling,
            max_fee: Amount::from_units(1_000).unwrap(),
            expiry: 100,
            signature: Signature([0; 64]),
        };
        stub.sign(&user);
        let text = model.tokenizer.decode(&tokens);
        let receipt = ResultReceipt::new_signed(stub.txid(), &text, &tokens, &node);
        let honest = fai_inference_chain::served::ServedInference {
            inference: Inference { stub, receipt },
            prompt,
            output: text.clone(),
            tokens: tokens.clone(),
        };
        assert_eq!(honest.check(), Ok(()));
        let mut swapped = honest.clone();
        swapped.tokens[at] = if tokens[at] == 0xff { 0xf8 } else { 0xff };
        assert_eq!(model.tokenizer.decode(&swapped.tokens), text, "same text");
        assert_eq!(swapped.tokens.len(), tokens.len(), "same count");
        // What the swap would do to a verifier that held it: reject the honest answer.
        let replay = fai_engine::Replay::default();
        let req = request(&honest.prompt, &honest.inference.stub.sampling);
        assert!(replay.verify(&model, &req, &tokens).unwrap().accepted);
        assert!(
            !replay
                .verify(&model, &req, &swapped.tokens)
                .unwrap()
                .accepted
        );
        // It never gets there.
        assert_eq!(
            swapped.check(),
            Err("the output tokens do not match their hash")
        );
        // And a store that somehow holds swapped ids, sealed by the relay, is not read as
        // the node's answer: the node did not sign that sealed text.
        let schema = fai_storage::Schema {
            columns: &[PAYLOADS_COLUMN],
            format_version: 1,
        };
        let kv = Arc::new(fai_storage::RocksStore::open(&dir.path().join("db"), schema).unwrap());
        let payloads = PayloadStore::new(kv);
        let (me, sealing) = verifier_key();
        let relay = SecretKey::from_bytes(&[4; 32]).unwrap();
        swapped
            .seal(&relay, &[(me, sealing.public())])
            .unwrap()
            .store(&payloads, 1)
            .unwrap();
        let texts = Texts {
            store: &payloads,
            me,
            secret: &sealing,
        };
        let refusal = verdict(&model, &texts, &honest.inference).unwrap_err();
        assert!(
            refusal.why.contains("not signed by the serving node"),
            "{refusal}"
        );
        // Not the node's fault: this verifier abstains.
        assert_eq!(refusal.verdict, Verdict::Abstain);
    }

    /// A verifier's address and sealing secret.
    fn verifier_key() -> (fai_primitives::Hash160, SealingSecret) {
        let key = SecretKey::from_bytes(&[7; 32]).unwrap();
        (key.public_key().hash160(), SealingSecret::derive(&key))
    }

    #[test]
    fn missing_or_mismatched_payloads_and_forged_outputs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let model = Arc::new(
            LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &Device::Cpu).unwrap(),
        );
        let schema = fai_storage::Schema {
            columns: &[PAYLOADS_COLUMN],
            format_version: 1,
        };
        let kv = Arc::new(fai_storage::RocksStore::open(&dir.path().join("db"), schema).unwrap());
        let payloads = PayloadStore::new(kv);
        let (user, node) = (
            SecretKey::from_bytes(&[2; 32]).unwrap(),
            SecretKey::from_bytes(&[3; 32]).unwrap(),
        );
        let prompt = Prompt {
            input: "who verifies the verifiers".into(),
            ..Prompt::default()
        };
        let make_with = |nonce: u64, tokens: &[u32], stop: Vec<String>| {
            let mut stub = InferenceStub {
                sender: user.public_key(),
                nonce,
                chain_id: 1,
                model: model.id.0,
                prompt_hash: prompt.hash(),
                sampling: Sampling {
                    max_tokens: 32,
                    temperature_milli: 700,
                    top_p_milli: 1000,
                    top_k: 40,
                    seed: 3,
                    stop,
                },
                max_fee: Amount::from_units(1_000).unwrap(),
                expiry: 100,
                signature: Signature([0; 64]),
            };
            stub.sign(&user);
            let text = model.tokenizer.decode(tokens);
            let receipt = ResultReceipt::new_signed(stub.txid(), &text, tokens, &node);
            (Inference { stub, receipt }, text)
        };
        let make = |nonce: u64, tokens: &[u32]| make_with(nonce, tokens, vec![]);
        let honest_tokens = {
            let (inf, _) = make(0, &[]);
            fai_engine::generate(
                &model,
                &request(&prompt, &inf.stub.sampling),
                &AtomicBool::new(false),
                |_| {},
            )
            .unwrap()
            .tokens
        };
        let (me, sealing) = verifier_key();
        let texts = Texts {
            store: &payloads,
            me,
            secret: &sealing,
        };
        // The text sealed to this verifier by the node that signed `inf`'s receipt.
        let seal_by = |signer: &SecretKey, inf: &Inference, text: &str, tokens: &[u32]| {
            fai_inference_chain::served::ServedInference {
                inference: inf.clone(),
                prompt: prompt.clone(),
                output: text.into(),
                tokens: tokens.to_vec(),
            }
            .seal(signer, &[(me, sealing.public())])
            .unwrap()
            .store(&payloads, 1)
            .unwrap();
        };
        let store = |inf: &Inference, text: &str, tokens: &[u32]| seal_by(&node, inf, text, tokens);

        let (honest, text) = make(0, &honest_tokens);
        store(&honest, &text, &honest_tokens);
        assert_eq!(verdict(&model, &texts, &honest), Ok(()));

        // Attack: a rival node answers the same request (a receipt of its own, another
        // text) and its answer is stored after the honest one. Before, text was kept by
        // transaction id alone, so the rival's replaced the honest text and the honest
        // receipt in the block was rejected (its node slashed). Each answer is kept under
        // its receipt now.
        let rival_key = SecretKey::from_bytes(&[9; 32]).unwrap();
        let mut rival = honest.clone();
        rival.receipt = ResultReceipt {
            tx: honest.stub.txid(),
            output_hash: ResultReceipt::hash_output(""),
            tokens_hash: ResultReceipt::hash_tokens(&[]),
            tokens: 0,
            node: rival_key.public_key(),
            signature: Signature([0; 64]),
        };
        rival.receipt.sign(&rival_key);
        seal_by(&rival_key, &rival, "", &[]);
        assert_eq!(verdict(&model, &texts, &honest), Ok(()));

        // With a stop string met halfway: the output stops before it, while the tokens
        // include the one that completed it; an honest answer all the same.
        let stop = text
            .chars()
            .skip(text.chars().count() / 2)
            .find(|c| *c != char::REPLACEMENT_CHARACTER)
            .unwrap()
            .to_string();
        let (asked, _) = make_with(4, &[], vec![stop.clone()]);
        let g = fai_engine::generate(
            &model,
            &request(&prompt, &asked.stub.sampling),
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap();
        assert!(!g.text.contains(&stop) && g.tokens.len() < honest_tokens.len());
        let (mut stopped, _) = make_with(4, &g.tokens, vec![stop]);
        stopped.receipt.output_hash = ResultReceipt::hash_output(&g.text);
        stopped.receipt.sign(&node);
        store(&stopped, &g.text, &g.tokens);
        assert_eq!(verdict(&model, &texts, &stopped), Ok(()));

        // Attack (on the honest node, by the network): the text has not reached this
        // verifier. Before, it voted reject and the honest node was slashed with the
        // votes of verifiers that never saw its answer; it abstains now.
        let (missing, _) = make(1, &honest_tokens);
        let refusal = verdict(&model, &texts, &missing).unwrap_err();
        assert!(refusal.why.contains("no text"), "{refusal}");
        assert_eq!(refusal.verdict, Verdict::Abstain);
        // Nor does a verifier without the model judge: it abstains too.
        let refusal = verdict_among(&[], &texts, &honest).unwrap_err();
        assert!(refusal.why.contains("not loaded here"), "{refusal}");
        assert_eq!(refusal.verdict, Verdict::Abstain);

        // The sealed output is not the one the receipt hashed: the node signed both, so
        // it sent text that is not its answer, and every verifier that opens it sees so.
        let (swapped, _) = make(2, &honest_tokens);
        store(&swapped, "something else", &honest_tokens);
        let refusal = verdict(&model, &texts, &swapped).unwrap_err();
        assert!(refusal.why.contains("does not match"), "{refusal}");
        assert_eq!(refusal.verdict, Verdict::RejectGross);
        // Sealed to other verifiers only: this one cannot open it, and abstains.
        let (unsealed, text) = make(5, &honest_tokens);
        let other = SealingSecret::derive(&SecretKey::from_bytes(&[8; 32]).unwrap());
        fai_inference_chain::served::ServedInference {
            inference: unsealed.clone(),
            prompt: prompt.clone(),
            output: text,
            tokens: honest_tokens.clone(),
        }
        .seal(&node, &[(fai_primitives::Hash160([8; 20]), other.public())])
        .unwrap()
        .store(&payloads, 1)
        .unwrap();
        let refusal = verdict(&model, &texts, &unsealed).unwrap_err();
        assert!(refusal.why.contains("not sealed to this key"), "{refusal}");
        assert_eq!(refusal.verdict, Verdict::Abstain);
        // Its key opens for this verifier and the text under it does not (the node
        // encrypted under another key, or changed the bytes, and signed them): the node
        // sent nothing to judge, its own doing.
        let (garbled_inf, text) = make(6, &honest_tokens);
        let mut garbled = fai_inference_chain::served::ServedInference {
            inference: garbled_inf.clone(),
            prompt: prompt.clone(),
            output: text,
            tokens: honest_tokens.clone(),
        }
        .seal(&node, &[(me, sealing.public())])
        .unwrap();
        garbled.sealed.ciphertext[0] ^= 1;
        garbled.signature = node.sign(&garbled.signing_digest());
        garbled.store(&payloads, 1).unwrap();
        let refusal = verdict(&model, &texts, &garbled_inf).unwrap_err();
        assert!(refusal.why.contains("sealed no answer"), "{refusal}");
        assert_eq!(refusal.verdict, Verdict::RejectGross);

        // Tokens the model would not have sampled: the node's fault, and far enough from
        // the model's choices that every verifier within the drift bound rejects them.
        let forged_tokens: Vec<u32> = honest_tokens.iter().map(|t| (t + 1) % 256).collect();
        let (forged, text) = make(3, &forged_tokens);
        store(&forged, &text, &forged_tokens);
        assert_eq!(
            verdict(&model, &texts, &forged).unwrap_err().verdict,
            Verdict::RejectGross
        );

        let block = InferenceBlock {
            header: fai_inference_chain::block::InferenceHeader {
                version: 1,
                height: 1,
                parent: [0; 32],
                ledger_anchor: [0; 32],
                ledger_height: 1,
                tx_root: fai_primitives::Hash256([0; 32]),
                results_root: fai_primitives::Hash256([0; 32]),
                commits_root: fai_primitives::Hash256([0; 32]),
                votes_root: fai_primitives::Hash256([0; 32]),
                state_root: [0; 32],
                vrf_proof: None,
                producer: node.public_key(),
                signature: Signature([0; 64]),
            },
            vm_txs: vec![],
            inferences: vec![honest, missing, swapped, forged],
            commits: vec![],
            votes: vec![],
        };
        assert_eq!(
            verdicts(&model, &texts, &block),
            vec![
                Verdict::Accept,
                Verdict::Abstain,
                Verdict::RejectGross,
                Verdict::RejectGross
            ]
        );
        // Batched, the replays give what each gives alone.
        let one_by_one: Vec<Verdict> = block
            .inferences
            .iter()
            .map(|inf| {
                verdict(&model, &texts, inf).map_or_else(|r| r.verdict, |()| Verdict::Accept)
            })
            .collect();
        assert_eq!(verdicts(&model, &texts, &block), one_by_one);
    }
}
