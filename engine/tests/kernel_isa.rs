//! The engine's Q4_0 and Q4_K kernels give the same logits on every instruction set: a model's
//! logits computed with AVX-512 VNNI, with AVX2 and with plain Rust are the same bits, so
//! an operator's CPU never changes what a verifier replays (candle's own kernel families
//! differ by up to 0.15 per logit, tests/cross_kernel.rs).
//!
//! The kernel is chosen once per process (`FAI_KERNEL_ISA`), so this test runs copies of
//! itself with each lesser instruction set and compares their logits with its own.

mod common;

use std::process::Command;

use candle_core::quantized::GgmlDType;
use fai_kernels::Isa;

const MODE: &str = "FAI_KERNEL_ISA_TEST_OUT";
const TEST: &str = "a_4_bit_model_gives_the_same_logits_on_every_instruction_set";

/// The logits of the 512-wide model at Q4_0 and at Q4_K for a fixed prompt and
/// continuation, in one pass and token by token, as bits.
fn logits(dir: &std::path::Path) -> Vec<u32> {
    let mut bits = Vec::new();
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4K] {
        bits.extend(model_logits(&common::wide_as(dir, dtype)));
    }
    bits
}

fn model_logits(model: &fai_engine::LoadedModel) -> Vec<u32> {
    let m = &model.model;
    let tokens: Vec<u32> = (0..48).map(|i| (i * 53 % 250) + 3).collect();
    let mut bits: Vec<u32> = m
        .forward(&tokens, &mut m.new_cache())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let mut cache = m.new_cache();
    for t in &tokens[..8] {
        let row = m.forward(&[*t], &mut cache).unwrap();
        bits.extend(
            row.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits()),
        );
    }
    bits
}

#[test]
fn a_4_bit_model_gives_the_same_logits_on_every_instruction_set() {
    let dir = tempfile::tempdir().unwrap();
    if let Ok(out) = std::env::var(MODE) {
        let bits: Vec<u8> = logits(dir.path())
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect();
        std::fs::write(out, bits).unwrap();
        return;
    }
    let own = logits(dir.path());
    assert!(own.iter().all(|b| f32::from_bits(*b).is_finite()));
    let best = Isa::best();
    println!(
        "this process: {best:?}; available: {:?}",
        Isa::available_all()
    );
    let exe = std::env::current_exe().unwrap();
    let mut compared = 0;
    for isa in Isa::available_all().into_iter().filter(|i| *i != best) {
        let out = dir.path().join(format!("{}.bits", isa.name()));
        let status = Command::new(&exe)
            .args([TEST, "--exact", "--test-threads", "1"])
            .env(MODE, &out)
            .env("FAI_KERNEL_ISA", isa.name())
            .status()
            .unwrap();
        assert!(status.success(), "the {isa:?} copy failed");
        let theirs: Vec<u32> = std::fs::read(&out)
            .unwrap()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(theirs.len(), own.len());
        let differing = own.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{isa:?}: {differing} of {} logits differ from {best:?}'s",
            own.len()
        );
        compared += 1;
    }
    // Scalar is always available, so a second instruction set was compared unless the
    // test was itself forced to scalar.
    assert!(compared >= 1 || best == Isa::Scalar);
}
