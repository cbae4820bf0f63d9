//! The fraud suite on fai-tiny: `replay` must catch at least 99% of every kind of forgery
//! (but see `other-prompt` below) and reject no honest result; `judge` is measured and
//! reported, not held to a bar (on a random-weight model its opinion means nothing).
//! `infer-node bench verify` prints the same table for fai-tiny and a model 8x wider.

use candle_core::Device;
use fai_engine::fraud::{build, evaluate, evaluate_replay, Forgers, KINDS};
use fai_engine::tiny::{ensure_fai_tiny, TinySpec};
use fai_engine::{Judge, LoadedModel, Replay};

#[test]
fn replay_catches_every_kind_of_forgery_and_rejects_no_honest_result() {
    let dir = tempfile::tempdir().unwrap();
    let model = LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &Device::Cpu).unwrap();
    let forgers = Forgers::for_spec(&TinySpec::fai_tiny(), dir.path(), &Device::Cpu).unwrap();

    let prompts: Vec<String> = (0..60)
        .map(|i| format!("question number {i}: what is {i} + {}?", i * 7))
        .collect();
    let cases = build(&model, &forgers, &prompts, 64, 11).unwrap();
    let rows = evaluate_replay(&Replay::default(), &model, &cases).unwrap();
    for row in &rows {
        eprintln!(
            "{:<7} {:<20} {:>4} cases, {:>5.1}% rejected ({} grossly), {:>3} accepted as near-tie-only",
            row.method,
            row.kind,
            row.cases,
            row.rate() * 100.0,
            row.gross,
            row.near_tie_only
        );
    }
    assert_eq!(rows.len(), KINDS.len());
    for row in &rows {
        assert!(row.cases >= 50, "too few cases: {row:?}");
        if row.kind == "honest" {
            assert_eq!(row.rejected, 0, "false rejections: {row:?}");
            continue;
        }
        // Replay accepts a forgery only when every difference from what the verifier
        // derives is a near-tie: an answer a device drifting by the bound could give
        // honestly (docs/consensus.md). Anything else is caught.
        assert_eq!(row.detection(), 1.0, "{row:?}");
        let floor = match row.kind {
            // fai-tiny's answers fall into a few loops that barely depend on the prompt
            // or the system prompt: another prompt's answer often differs from this
            // one's only where this one's logits are near-ties. With the drift bound at
            // 0.15 (what separates two x86 CPU kernel families, tests/cross_kernel.rs)
            // about 90% of other prompts' answers and 60% of other system prompts' are
            // caught here; the 512-wide model catches more (bench verify).
            "other-prompt" => 0.80,
            "other-system-prompt" => 0.50,
            // The same weights at Q4_0 differ from Q8_0 only at near-ties in a few long
            // answers (98% caught here, 90% on the 512-wide model), and the end token can
            // itself be a near-tie where an answer is padded (98% here).
            "lower-precision" | "padded-past-end" => 0.95,
            _ => 0.99,
        };
        assert!(row.rate() >= floor, "{row:?}");
        // What an audit plants (decision 0004: random tokens) and the forgeries as plain
        // are rejected grossly, by any verifier within the drift bound.
        if matches!(row.kind, "random-tokens" | "other-model") {
            assert_eq!(row.gross, row.rejected, "{row:?}");
        }
        // An answer cut short, or padded past its end, is always rejected, but not always
        // grossly: the one claim that differs is at the position where the model ends
        // (an end claimed where it goes on, or a token where it ends), and where the end
        // token and the claimed one are within twice the bound of each other a verifier
        // drifting by the bound could see a near-tie there. Here 1 of 110 cut-short cases
        // (since the attention cache holds f16) and 1 of 59 padded ones (since attention
        // sums its keys in one chain per position: 63 of its 64 tokens re-derived
        // exactly, the pad at the end position within twice the bound).
        if matches!(row.kind, "cut-short" | "padded-past-end") {
            assert!(row.gross * 50 >= row.rejected * 49, "{row:?}");
        }
    }
    let judged = evaluate(&Judge, &model, &cases).unwrap();
    assert_eq!(judged.iter().map(|r| r.cases).sum::<usize>(), cases.len());
}
