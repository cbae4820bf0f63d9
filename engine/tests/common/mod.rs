//! Models and requests shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use fai_engine::tiny::{ensure_fai_tiny, write_gguf, TinySpec};
use fai_engine::{GenerateRequest, LoadedModel, SamplingParams};

/// fai-tiny and a model 8x wider ([`TinySpec::wide`]), loaded on the CPU.
pub fn models(dir: &Path) -> Vec<Arc<LoadedModel>> {
    let tiny = LoadedModel::load(&ensure_fai_tiny(dir).unwrap(), &Device::Cpu).unwrap();
    let path = dir.join("wide.gguf");
    write_gguf(&TinySpec::wide(), &path).unwrap();
    let wide = LoadedModel::load(&path, &Device::Cpu).unwrap();
    vec![Arc::new(tiny), Arc::new(wide)]
}

/// [`models`], and the 512-wide model stored as Q4_0 (the engine's own kernel on x86).
pub fn models_with_q4_0(dir: &Path) -> Vec<Arc<LoadedModel>> {
    let mut all = models(dir);
    all.push(Arc::new(wide_q4_0(dir)));
    all
}

/// The 512-wide model stored as Q4_0, loaded on the CPU.
pub fn wide_q4_0(dir: &Path) -> LoadedModel {
    let path = dir.join("wide-q4_0.gguf");
    let spec = TinySpec {
        name: "fai-wide-512-q4_0".into(),
        dtype: candle_core::quantized::GgmlDType::Q4_0,
        ..TinySpec::wide()
    };
    write_gguf(&spec, &path).unwrap();
    LoadedModel::load(&path, &Device::Cpu).unwrap()
}

/// Request `i` of a set: greedy or sampled (temperature, top-k and top-p varying with
/// `i`), `max_tokens` long at most.
pub fn request(i: usize, sampled: bool, max_tokens: u32) -> GenerateRequest {
    let sampling = if sampled {
        SamplingParams {
            max_tokens,
            temperature: [0.3, 0.7, 1.0, 1.3][i % 4],
            top_k: [0, 40, 8, 0][i % 4],
            top_p: [1.0, 0.95, 1.0, 0.9][i % 4],
            seed: 1000 + i as u64,
            ..SamplingParams::default()
        }
    } else {
        SamplingParams {
            max_tokens,
            ..SamplingParams::default()
        }
    };
    GenerateRequest {
        system: if i % 3 == 0 {
            "You answer briefly.".into()
        } else {
            String::new()
        },
        context: Vec::new(),
        input: format!(
            "request {i}: what does node {} see at height {}?",
            i * 7,
            i * 13 + 5
        ),
        sampling,
    }
}
