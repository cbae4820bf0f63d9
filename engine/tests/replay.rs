//! Replay never rejects an honest answer: fai-tiny and a model 8x wider, greedy and
//! sampled, short and long answers, decoded alone or in a batch, replayed alone, in a
//! batch or in bounded passes, and answers made under simulated device drift. And what
//! is not a near-tie is still caught.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fai_engine::generate::Sequence;
use fai_engine::scheduler::Scheduler;
use fai_engine::verify::End;
use fai_engine::{generate, GenerateRequest, LoadedModel, Replay, Verifier};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// At least this many honest answers per model and mode.
const ANSWERS: usize = 100;

fn honest_set(model: &LoadedModel, sampled: bool) -> Vec<(GenerateRequest, Vec<u32>)> {
    (0..ANSWERS)
        .map(|i| {
            // Every fourth answer is short (under 16 tokens).
            let max_tokens = if i % 4 == 0 { 12 } else { 48 };
            let r = common::request(i, sampled, max_tokens);
            let g = generate(model, &r, &AtomicBool::new(false), |_| {}).unwrap();
            (r, g.tokens)
        })
        .collect()
}

fn rejected(model: &LoadedModel, set: &[(GenerateRequest, Vec<u32>)]) -> Vec<String> {
    let replay = Replay::default();
    let cases: Vec<(&GenerateRequest, &[u32])> =
        set.iter().map(|(r, o)| (r, o.as_slice())).collect();
    let batched = replay.verify_batch(model, &cases);
    // Replayed in passes of 5 positions (memory bounded by that times the vocabulary,
    // not by the answer's length): the same counts as in one pass.
    let in_passes = Replay {
        rows_per_pass: 5,
        ..Replay::default()
    };
    let mut bad = Vec::new();
    for (i, ((r, o), b)) in set.iter().zip(batched).enumerate() {
        let alone = replay.verify(model, r, o).unwrap();
        let b = b.unwrap();
        assert_eq!(b, alone, "a batched replay decides as one alone");
        let (one, passes) = (
            replay.measure(model, r, o).unwrap(),
            in_passes.measure(model, r, o).unwrap(),
        );
        assert_eq!(
            (one.tokens, one.exact, one.near_ties),
            (passes.tokens, passes.exact, passes.near_ties),
            "#{i}: replayed in passes"
        );
        assert!(
            (one.mean_logprob - passes.mean_logprob).abs() < 1e-3,
            "#{i}"
        );
        if !alone.accepted {
            bad.push(format!("#{i} ({} tokens): {:?}", o.len(), alone.reasons));
        }
    }
    bad
}

#[test]
fn no_honest_answer_is_rejected_greedy_or_sampled_short_or_long() {
    let dir = tempfile::tempdir().unwrap();
    for model in common::models(dir.path()) {
        for sampled in [false, true] {
            let set = honest_set(&model, sampled);
            let lens: Vec<usize> = set.iter().map(|(_, o)| o.len()).collect();
            eprintln!("{} sampled={sampled}: lengths {lens:?}", model.name);
            assert!(
                lens.iter().any(|l| *l < 16) && lens.iter().any(|l| *l >= 40),
                "{lens:?}"
            );
            let bad = rejected(&model, &set);
            assert!(bad.is_empty(), "{} sampled={sampled}: {bad:?}", model.name);
        }
    }
}

#[test]
fn answers_decoded_in_a_batch_are_accepted_replayed_alone() {
    let dir = tempfile::tempdir().unwrap();
    for model in common::models(dir.path()) {
        let scheduler = Scheduler::start_batched(Arc::clone(&model), 1, 128, 32);
        let requests: Vec<_> = (0..ANSWERS)
            .map(|i| common::request(i, i % 2 == 1, 32))
            .collect();
        let jobs: Vec<_> = requests
            .iter()
            .map(|r| scheduler.submit(r.clone()).unwrap())
            .collect();
        let set: Vec<_> = requests
            .into_iter()
            .zip(jobs)
            .map(|(r, j)| (r, j.wait().1.unwrap().tokens))
            .collect();
        let bad = rejected(&model, &set);
        assert!(bad.is_empty(), "{}: {bad:?}", model.name);
    }
}

/// Generates `request` the way a device whose logits differ from ours by up to `drift`
/// would: the same model, with every logit moved by a random amount within the bound.
fn generate_with_drift(
    model: &LoadedModel,
    request: &GenerateRequest,
    drift: f32,
    rng: &mut ChaCha20Rng,
) -> Vec<u32> {
    let mut seq = Sequence::start(model, request).unwrap();
    while !seq.is_finished() {
        let logits = model.model.forward_batch(&mut [seq.batch_item()]).unwrap();
        let mut row: Vec<f32> = logits[0].get(0).unwrap().to_vec1().unwrap();
        for l in row.iter_mut() {
            *l += rng.gen_range(-drift..=drift);
        }
        seq.advance(model, &row);
    }
    seq.finish().0.tokens
}

#[test]
fn answers_made_under_device_drift_are_never_rejected_and_drift_does_flip_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::default();
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    for model in common::models(dir.path()) {
        let (mut flipped, mut total) = (0usize, 0usize);
        for i in 0..ANSWERS {
            let r = common::request(i, i % 2 == 1, 40);
            let drifted = generate_with_drift(&model, &r, replay.drift_logit, &mut rng);
            let stats = replay.measure(&model, &r, &drifted).unwrap();
            flipped += stats.near_ties;
            total += stats.tokens;
            let v = replay.judge_stats(&stats);
            assert!(v.accepted, "{} #{i}: {:?}", model.name, v.reasons);
        }
        eprintln!("{}: {flipped} near-tie flips in {total} tokens", model.name);
        assert!(total > 1000);
    }
}

#[test]
fn a_token_that_is_not_a_near_tie_is_a_mismatch_whatever_the_answer_length() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::default();
    for model in common::models(dir.path()) {
        for (i, max_tokens) in [(1usize, 8u32), (2, 64)] {
            for sampled in [false, true] {
                let r = common::request(i, sampled, max_tokens);
                let honest = generate(&model, &r, &AtomicBool::new(false), |_| {})
                    .unwrap()
                    .tokens;
                assert!(!honest.is_empty());
                // Replace the last token by the one the verifier ranks lowest there.
                let mut input = model.chat_tokens(&r.system, &r.context, &r.input).unwrap();
                input.extend_from_slice(&honest[..honest.len() - 1]);
                let row: Vec<f32> = model
                    .model
                    .forward_last(&input, &mut model.model.new_cache(), 1)
                    .unwrap()
                    .get(0)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let worst = row
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(t, _)| t as u32)
                    .unwrap();
                let mut forged = honest.clone();
                *forged.last_mut().unwrap() = worst;
                let v = replay.verify(&model, &r, &forged).unwrap();
                assert!(
                    !v.accepted,
                    "{} {max_tokens} sampled={sampled}: {:?}",
                    model.name, v.reasons
                );
                assert!(replay.verify(&model, &r, &honest).unwrap().accepted);
            }
        }
    }
}

/// The claimed end is checked: an answer cut short (or empty) claims that the model ended
/// it, and the verifier's next token says otherwise; tokens after the one that completed a
/// stop string, an end token inside the answer and more than `max_tokens` tokens are
/// padding. Before this check every one of these was accepted (each claimed token is what
/// the model derives), so a node could be paid for less work or for more tokens.
#[test]
fn the_claimed_end_is_checked_cut_short_padded_past_a_stop_or_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::default();
    for model in common::models(dir.path()) {
        let name = &model.name;
        let eos = model.tokenizer.end_tokens()[0];
        let end_of = |r: &GenerateRequest, o: &[u32]| replay.measure(&model, r, o).unwrap();
        let accepted =
            |r: &GenerateRequest, o: &[u32]| replay.verify(&model, r, o).unwrap().accepted;
        let (mut ended_by_model, mut stopped) = (0, 0);
        for i in 0..12 {
            let r = common::request(i, i % 2 == 1, 32);
            let g = generate(&model, &r, &AtomicBool::new(false), |_| {}).unwrap();
            let honest = g.tokens;
            assert!(accepted(&r, &honest), "{name} #{i}");
            if honest.len() == 32 {
                assert_eq!(end_of(&r, &honest).end, End::Length);
                // Cut short: the first half, claiming end-of-text.
                let cut = &honest[..16];
                let s = end_of(&r, cut);
                assert_eq!((s.end, s.mismatches()), (End::NotEnded, 0), "{name} #{i}");
                assert!(!accepted(&r, cut), "{name} #{i}: cut short");
                // One token more than max_tokens.
                let mut long = honest.clone();
                long.push(honest[0]);
                assert_eq!(end_of(&r, &long).end, End::TooLong);
                assert!(!accepted(&r, &long));
                // Nothing at all.
                assert!(!accepted(&r, &[]), "{name} #{i}: empty answer");
            } else {
                ended_by_model += 1;
                assert!(
                    matches!(
                        end_of(&r, &honest).end,
                        End::EndOfText | End::EndOfTextNearTie
                    ),
                    "{name} #{i}"
                );
            }
            // An end token inside, then the rest of the answer.
            let mut inside = honest.clone();
            inside.insert(honest.len() / 2, eos);
            inside.truncate(32);
            assert_eq!(end_of(&r, &inside).end, End::EndTokenInside);
            assert!(!accepted(&r, &inside));

            // A stop string from the middle of the answer: honest answers end at it; the
            // same tokens run on past it are padding.
            let text = model.tokenizer.decode(&honest);
            let Some(stop) = text
                .chars()
                .skip(text.chars().count() / 2)
                .find(|c| !c.is_whitespace() && *c != char::REPLACEMENT_CHARACTER)
            else {
                continue;
            };
            let mut with_stop = r.clone();
            with_stop.sampling.stop = vec![stop.to_string()];
            let g = generate(&model, &with_stop, &AtomicBool::new(false), |_| {}).unwrap();
            assert!(g.tokens.len() <= honest.len(), "{name} #{i}");
            assert_eq!(end_of(&with_stop, &g.tokens).end, End::Stop);
            assert!(accepted(&with_stop, &g.tokens), "{name} #{i}");
            if g.tokens.len() == honest.len() {
                continue; // the stop string first appears with the last token
            }
            let s = end_of(&with_stop, &honest);
            assert!(
                matches!(s.end, End::PastStop { extra } if extra > 0),
                "{s:?}"
            );
            assert!(
                !accepted(&with_stop, &honest),
                "{name} #{i}: padded past a stop"
            );
            stopped += 1;
        }
        eprintln!(
            "{name}: {ended_by_model} answers ended by the model, {stopped} by a stop string"
        );
        assert!(stopped >= 6, "{name}: {stopped}");
    }
}
