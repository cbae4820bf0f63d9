//! Batched forward passes and continuous batching: on the CPU a sequence's logits and
//! tokens are exactly what it gets alone, whatever else shares the pass, and exactly what
//! one teacher-forced pass over the same tokens gives (a verifier's replay).

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fai_engine::generate;
use fai_engine::model::BatchItem;
use fai_engine::scheduler::Scheduler;

#[test]
fn decoding_token_by_token_and_one_teacher_forced_pass_give_the_same_logits_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for model in common::models_with_4_bit(dir.path()) {
        let m = &model.model;
        let prompt = model
            .chat_tokens(
                "",
                &[],
                "a prompt long enough to span a few dozen positions",
            )
            .unwrap();
        let output: Vec<u32> = (0..60).map(|i| (i * 37 % 200) + 3).collect();
        // The verifier: every position at once (the last output token is predicted, not
        // read).
        let all: Vec<u32> = prompt
            .iter()
            .chain(&output[..output.len() - 1])
            .copied()
            .collect();
        let replayed = m
            .forward_last(&all, &mut m.new_cache(), output.len())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // The server: prefill, then one token per pass.
        let mut cache = m.new_cache();
        let mut decoded = m
            .forward_last(&prompt, &mut cache, 1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for t in &output[..output.len() - 1] {
            decoded.extend(
                m.forward(&[*t], &mut cache)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap(),
            );
        }
        let worst = decoded
            .iter()
            .flatten()
            .zip(replayed.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(
            decoded, replayed,
            "{}: logits differ by up to {worst}",
            model.name
        );
    }
}

#[test]
fn a_batched_pass_gives_each_sequence_its_own_logits_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for model in common::models_with_4_bit(dir.path()) {
        let m = &model.model;
        let prompts: Vec<Vec<u32>> = (0..5)
            .map(|i| {
                model
                    .chat_tokens("", &[], &format!("prompt {i} {}", "x".repeat(i * 9)))
                    .unwrap()
            })
            .collect();
        // Alone: prefill, then three decode steps each.
        let alone: Vec<Vec<Vec<f32>>> = prompts
            .iter()
            .map(|p| {
                let mut cache = m.new_cache();
                let mut rows = vec![m
                    .forward_last(p, &mut cache, 2)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap()];
                for t in [7u32, 99, 3] {
                    rows.push(
                        m.forward(&[t], &mut cache)
                            .unwrap()
                            .to_vec2::<f32>()
                            .unwrap(),
                    );
                }
                rows.concat()
            })
            .collect();
        // Together: all prefills in one pass, then the decode steps in passes where the
        // sequences sit at different positions.
        let mut caches: Vec<_> = prompts.iter().map(|_| m.new_cache()).collect();
        let mut got: Vec<Vec<Vec<f32>>> = prompts.iter().map(|_| Vec::new()).collect();
        let mut items: Vec<BatchItem> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(p, cache)| BatchItem {
                tokens: p,
                cache,
                rows: 2,
            })
            .collect();
        for (g, t) in got.iter_mut().zip(m.forward_batch(&mut items).unwrap()) {
            g.extend(t.to_vec2::<f32>().unwrap());
        }
        for t in [7u32, 99, 3] {
            let step = [t];
            let mut items: Vec<BatchItem> = caches
                .iter_mut()
                .map(|cache| BatchItem {
                    tokens: &step,
                    cache,
                    rows: 1,
                })
                .collect();
            for (g, t) in got.iter_mut().zip(m.forward_batch(&mut items).unwrap()) {
                g.extend(t.to_vec2::<f32>().unwrap());
            }
        }
        assert_eq!(got, alone, "{}", model.name);
    }
}

#[test]
fn requests_decoded_together_get_exactly_the_tokens_they_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    for model in common::models_with_4_bit(dir.path()) {
        let requests: Vec<_> = (0..12)
            .map(|i| common::request(i, i % 2 == 1, [5, 40, 17][i % 3]))
            .collect();
        let alone: Vec<_> = requests
            .iter()
            .map(|r| generate(&model, r, &AtomicBool::new(false), |_| {}).unwrap())
            .collect();
        // One worker decoding up to 8 at once: the requests join and leave mid-batch.
        let scheduler = Scheduler::start_batched(Arc::clone(&model), 1, 16, 8);
        let jobs: Vec<_> = requests
            .iter()
            .map(|r| scheduler.submit(r.clone()).unwrap())
            .collect();
        for (job, expected) in jobs.into_iter().zip(&alone) {
            let (streamed, result) = job.wait();
            let g = result.unwrap();
            assert_eq!(&g, expected, "{}", model.name);
            assert_eq!(streamed, g.text);
        }
    }
}
