//! The fraud suite on fai-tiny: `replay` must catch at least 99% of every kind of forgery
//! (but see `other-prompt` below) and reject no honest result; `judge` is measured and reported, not held to a bar (on a
//! random-weight model its opinion means nothing).

use candle_core::Device;
use fai_engine::fraud::{self, build, evaluate};
use fai_engine::tiny::{ensure_fai_tiny, write_gguf};
use fai_engine::{Judge, LoadedModel, Replay};

#[test]
fn replay_catches_every_kind_of_forgery_and_rejects_no_honest_result() {
    let dir = tempfile::tempdir().unwrap();
    let model = LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &Device::Cpu).unwrap();
    let other_path = dir.path().join("other.gguf");
    write_gguf(&fraud::other_model_spec(), &other_path).unwrap();
    let other = LoadedModel::load(&other_path, &Device::Cpu).unwrap();

    let prompts: Vec<String> = (0..60)
        .map(|i| format!("question number {i}: what is {i} + {}?", i * 7))
        .collect();
    let cases = build(&model, &other, &prompts, 48, 11).unwrap();
    let rows = evaluate(&Replay::default(), &model, &cases).unwrap();
    for row in &rows {
        eprintln!(
            "{:<7} {:<16} {:>4} cases, {:>5.1}% rejected",
            row.method,
            row.kind,
            row.cases,
            row.rate() * 100.0
        );
    }
    for row in &rows {
        assert!(row.cases >= 50, "{row:?}");
        if row.kind == "honest" {
            assert_eq!(row.rejected, 0, "false rejections: {row:?}");
        } else if row.kind == "other-prompt" {
            // fai-tiny's greedy answers fall into a few loops that barely depend on the
            // prompt: another prompt's answer can differ from this prompt's only where
            // this prompt's logits are near-ties, which is an answer a device drifting by
            // the bound could give honestly. With the drift bound at 0.15 (what separates
            // two x86 CPU kernel families, tests/cross_kernel.rs) about 84% are caught
            // here (98% at 0.05, a bound that rejected honest answers across CPUs); the
            // 512-wide model catches 96.5% (bench verify). Replay accepts those and
            // nothing else: every accepted one must be all exact tokens and near-ties.
            assert!(row.rate() >= 0.80, "{row:?}");
        } else {
            assert!(row.rate() >= 0.99, "{row:?}");
        }
    }
    let replay = Replay::default();
    for case in cases.iter().filter(|c| c.kind == "other-prompt") {
        let stats = replay.measure(&model, &case.request, &case.output).unwrap();
        if replay.judge_stats(&stats).accepted {
            assert_eq!(stats.mismatches(), 0);
            assert!(
                stats.near_ties > 0,
                "{stats:?}: identical to the honest answer?"
            );
        }
    }
    let judged = evaluate(&Judge, &model, &cases).unwrap();
    assert_eq!(judged.iter().map(|r| r.cases).sum::<usize>(), cases.len());
}
