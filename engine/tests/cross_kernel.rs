//! Answers made with one family of x86 kernels and replayed with another: candle picks its
//! quantised matmul kernels by CPU feature at run time (AVX512-VNNI, AVX-VNNI, AVX2), and
//! they quantise activations differently, so an operator's CPU and a verifier's CPU give
//! different logits for the same model (up to 0.15 per logit on the 512-wide Q8_0 model
//! between AVX512-VNNI and AVX2). No honest answer may be rejected for that.
//!
//! candle reads its kernel choice once per process (`MISTRALRS_FORCE_AVX2=1` forces the
//! AVX2 family), so this test runs a copy of itself with the AVX2 kernels for one side.
//! On a CPU without AVX512-VNNI both sides use the same kernels, and the test says so.
//!
//! Q8_0, Q4_0 and Q4_K matrices now run on the engine's own kernels (`fai-kernels`),
//! whose instruction sets agree bit for bit (tests/kernel_isa.rs); the copy is told to
//! use their AVX2 forms too (`FAI_KERNEL_ISA=avx2`). The two models here are Q8_0, so
//! the answers must now be the same on both sides, token for token; the replay in both
//! directions still holds whatever runs on candle's kernels to the same rule.

mod common;

use std::process::Command;
use std::sync::atomic::AtomicBool;

use fai_engine::{generate, Replay};

/// Set in the copy: what it does (`gen` or `replay`) and its files.
const MODE: &str = "FAI_CROSS_KERNEL_MODE";
const ANSWERS_FILE: &str = "FAI_CROSS_KERNEL_ANSWERS";
const MODELS_DIR: &str = "FAI_CROSS_KERNEL_MODELS";
const TEST: &str = "honest_answers_survive_a_change_of_cpu_kernels_in_both_directions";
const PROMPTS: usize = 100;

/// Every model's answers, greedy and sampled, in a fixed order.
fn answers(dir: &std::path::Path) -> Vec<Vec<u32>> {
    let mut all = Vec::new();
    for model in common::models(dir) {
        for i in 0..PROMPTS {
            for sampled in [false, true] {
                let r = common::request(i, sampled, 48);
                all.push(
                    generate(&model, &r, &AtomicBool::new(false), |_| {})
                        .unwrap()
                        .tokens,
                );
            }
        }
    }
    all
}

/// How many of `answers` each model rejects, and the near-ties it accepted.
fn rejected(dir: &std::path::Path, answers: &[Vec<u32>]) -> Vec<(String, usize, usize)> {
    let replay = Replay::default();
    let mut it = answers.iter();
    let mut out = Vec::new();
    for model in common::models(dir) {
        let (mut bad, mut ties) = (0, 0);
        for i in 0..PROMPTS {
            for sampled in [false, true] {
                let r = common::request(i, sampled, 48);
                let stats = replay.measure(&model, &r, it.next().unwrap()).unwrap();
                ties += stats.near_ties;
                if !replay.judge_stats(&stats).accepted {
                    bad += 1;
                }
            }
        }
        out.push((model.name.clone(), bad, ties));
    }
    out
}

/// Runs this test in a copy of the process with the AVX2 kernels.
fn on_avx2(mode: &str, answers: &std::path::Path, models: &std::path::Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env("MISTRALRS_FORCE_AVX2", "1")
        .env("FAI_KERNEL_ISA", "avx2")
        .env(MODE, mode)
        .env(ANSWERS_FILE, answers)
        .env(MODELS_DIR, models)
        .status()
        .unwrap();
    assert!(status.success(), "the AVX2 copy failed ({mode})");
}

#[cfg(target_arch = "x86_64")]
fn has_avx512_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512_vnni() -> bool {
    false
}

#[test]
fn honest_answers_survive_a_change_of_cpu_kernels_in_both_directions() {
    if let (Ok(mode), Ok(file), Ok(models)) = (
        std::env::var(MODE),
        std::env::var(ANSWERS_FILE),
        std::env::var(MODELS_DIR),
    ) {
        let models = std::path::Path::new(&models);
        if mode == "gen" {
            std::fs::write(&file, serde_json::to_vec(&answers(models)).unwrap()).unwrap();
        } else {
            let theirs: Vec<Vec<u32>> =
                serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            for (name, bad, ties) in rejected(models, &theirs) {
                eprintln!("{name}: default kernels' answers on AVX2: {ties} near-ties");
                assert_eq!(bad, 0, "{name}: honest answers rejected across kernels");
            }
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mine_file, theirs_file) = (dir.path().join("mine.json"), dir.path().join("theirs.json"));
    let mine = answers(dir.path());
    std::fs::write(&mine_file, serde_json::to_vec(&mine).unwrap()).unwrap();
    on_avx2("gen", &theirs_file, dir.path());
    let theirs: Vec<Vec<u32>> =
        serde_json::from_slice(&std::fs::read(&theirs_file).unwrap()).unwrap();
    assert_eq!(theirs.len(), mine.len());
    if has_avx512_vnni() {
        // Both models are Q8_0, which runs on the engine's own kernels: AVX2 and
        // AVX-512 give every answer token for token (candle's two families did not:
        // some answers differed, within the drift bound).
        assert_eq!(mine, theirs, "the AVX2 kernels gave other answers");
    } else {
        eprintln!("no AVX512-VNNI on this CPU: both sides ran the AVX2 kernels");
    }
    for (name, bad, ties) in rejected(dir.path(), &theirs) {
        eprintln!("{name}: AVX2 kernels' answers on the default kernels: {ties} near-ties");
        assert_eq!(bad, 0, "{name}: honest answers rejected across kernels");
    }
    on_avx2("replay", &mine_file, dir.path());
}
