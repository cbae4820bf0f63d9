//! The engine on real GGUF files: the built-in model is deterministic, loads through the
//! same path as any model, matches candle-transformers' reference Llama, generates
//! reproducibly with streaming, stop strings and cancellation, and bad files get errors
//! that name them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{Device, Tensor};
use fai_engine::tiny::{ensure_fai_tiny, write_gguf, TinySpec};
use fai_engine::{
    generate, EngineError, FinishReason, GenerateRequest, LoadedModel, SamplingParams, Verifier,
};

/// The largest difference between two rows of logits.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn tiny(dir: &Path) -> LoadedModel {
    LoadedModel::load(&ensure_fai_tiny(dir).unwrap(), &Device::Cpu).unwrap()
}

fn request(input: &str, sampling: SamplingParams) -> GenerateRequest {
    GenerateRequest {
        system: "you are a test".into(),
        context: vec![],
        input: input.into(),
        sampling,
    }
}

fn run(model: &LoadedModel, req: &GenerateRequest) -> (fai_engine::Generation, String) {
    let mut streamed = String::new();
    let g = generate(model, req, &AtomicBool::new(false), |piece| {
        streamed.push_str(piece)
    })
    .unwrap();
    (g, streamed)
}

#[test]
fn fai_tiny_is_the_same_file_and_id_everywhere() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pa = ensure_fai_tiny(a.path()).unwrap();
    let pb = ensure_fai_tiny(b.path()).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
    let ma = LoadedModel::load(&pa, &Device::Cpu).unwrap();
    let mb = LoadedModel::load(&pb, &Device::Cpu).unwrap();
    assert_eq!(ma.id, mb.id);
    assert_eq!(ma.name, "fai-tiny");
    assert_eq!(ma.model.config.vocab_size, 258);

    let other = TinySpec {
        seed: 99,
        ..TinySpec::fai_tiny()
    };
    let pc = a.path().join("other.gguf");
    write_gguf(&other, &pc).unwrap();
    assert_ne!(LoadedModel::load(&pc, &Device::Cpu).unwrap().id, ma.id);
}

#[test]
fn the_forward_pass_matches_the_reference_llama() {
    let dir = tempfile::tempdir().unwrap();
    let path = ensure_fai_tiny(dir.path()).unwrap();
    let model = LoadedModel::load(&path, &Device::Cpu).unwrap();
    let tokens = model.chat_tokens("", &[], "what is a block?").unwrap();

    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    let input = Tensor::new(tokens.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let expected: Vec<f32> = reference
        .forward(&input, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();

    let mut cache = model.model.new_cache();
    let all = model.model.forward(&tokens, &mut cache).unwrap();
    assert_eq!(all.dims(), &[tokens.len(), 258]);
    let ours: Vec<f32> = all.get(tokens.len() - 1).unwrap().to_vec1().unwrap();
    common::assert_close_to_reference(&ours, &expected);

    // Decoding token by token with the KV cache gives the same logits as one pass.
    let mut cache = model.model.new_cache();
    let half = tokens.len() / 2;
    model.model.forward(&tokens[..half], &mut cache).unwrap();
    for (i, t) in tokens[half..].iter().enumerate() {
        let step: Vec<f32> = model
            .model
            .forward(&[*t], &mut cache)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let full: Vec<f32> = all.get(half + i).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&step, &full);
        assert!(d < 1e-3, "position {}: {d}", half + i);
    }
}

#[test]
fn generation_is_reproducible_and_streams_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let greedy = request(
        "hello",
        SamplingParams {
            max_tokens: 40,
            ..Default::default()
        },
    );
    let (a, streamed) = run(&model, &greedy);
    let (b, _) = run(&model, &greedy);
    assert_eq!(a, b);
    assert_eq!(streamed, a.text);
    assert!(!a.tokens.is_empty());

    let seeded = |seed| {
        request(
            "hello",
            SamplingParams {
                max_tokens: 40,
                temperature: 1.0,
                top_p: 0.95,
                top_k: 50,
                seed,
                stop: vec![],
            },
        )
    };
    let (s1, _) = run(&model, &seeded(1));
    let (s1b, _) = run(&model, &seeded(1));
    let (s2, _) = run(&model, &seeded(2));
    assert_eq!(s1.tokens, s1b.tokens);
    assert_ne!(s1.tokens, s2.tokens);
}

#[test]
fn stop_strings_cut_the_answer_and_cancellation_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let (full, _) = run(
        &model,
        &request(
            "abc",
            SamplingParams {
                max_tokens: 60,
                ..Default::default()
            },
        ),
    );
    // Stop on a piece of what the model will say (two characters from the eleventh on,
    // neither of them U+FFFD, which a stop string may not hold).
    let chars: Vec<(usize, char)> = full.text.char_indices().collect();
    let at = (10..chars.len() - 2)
        .find(|i| {
            chars[*i..*i + 2]
                .iter()
                .all(|(_, c)| *c != char::REPLACEMENT_CHARACTER)
        })
        .unwrap();
    let stop = full.text[chars[at].0..chars[at + 2].0].to_string();
    let cut = full.text.find(&stop).unwrap();
    let (g, streamed) = run(
        &model,
        &request(
            "abc",
            SamplingParams {
                max_tokens: 60,
                stop: vec![stop],
                ..Default::default()
            },
        ),
    );
    assert_eq!(g.finish, FinishReason::Stop);
    assert_eq!(g.text, full.text[..cut]);
    assert_eq!(streamed, g.text);

    let cancel = AtomicBool::new(false);
    let mut pieces = 0;
    let g = generate(
        &model,
        &request(
            "abc",
            SamplingParams {
                max_tokens: 60,
                ..Default::default()
            },
        ),
        &cancel,
        |_| {
            pieces += 1;
            if pieces == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
    )
    .unwrap();
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert!(g.tokens.len() < 10, "{}", g.tokens.len());
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let long = "x".repeat(3000);
    let err = generate(
        &model,
        &request(&long, SamplingParams::default()),
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, EngineError::PromptTooLong { context: 2048, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("context window"));
    // A verifier handed a claim longer than the window says so too (one longer than
    // max_tokens is rejected unread).
    let claim = vec![b'a' as u32; 2100];
    let sampling = SamplingParams {
        max_tokens: 4000,
        ..SamplingParams::default()
    };
    let err = fai_engine::Replay::default()
        .verify(&model, &request("hi", sampling), &claim)
        .unwrap_err();
    assert!(
        matches!(err, EngineError::PromptTooLong { context: 2048, .. }),
        "{err}"
    );
}

fn load_err(path: &Path) -> EngineError {
    LoadedModel::load(path, &Device::Cpu).unwrap_err()
}

#[test]
fn bad_model_files_get_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let e = load_err(&missing);
    assert!(
        matches!(e, EngineError::Io { .. }) && e.to_string().contains("nope.gguf"),
        "{e}"
    );

    let good = ensure_fai_tiny(dir.path()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated: PathBuf = dir.path().join("cut.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let e = load_err(&truncated);
    assert!(
        matches!(e, EngineError::Truncated { .. }) && e.to_string().contains("cut.gguf"),
        "{e}"
    );

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let e = load_err(&junk);
    assert!(
        matches!(e, EngineError::NotGguf { .. }) && e.to_string().contains("junk.gguf"),
        "{e}"
    );

    let foreign = dir.path().join("mamba.gguf");
    let arch = Value::String("mamba".into());
    let mut w = std::fs::File::create(&foreign).unwrap();
    gguf_file::write(&mut w, &[("general.architecture", &arch)], &[]).unwrap();
    drop(w);
    let e = load_err(&foreign);
    assert!(
        matches!(e, EngineError::UnknownArchitecture { ref arch, .. } if arch == "mamba"),
        "{e}"
    );
    assert!(e.to_string().contains("mamba.gguf"));
}

#[test]
fn the_kv_cache_grows_past_its_first_buffer_without_changing_the_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let tokens: Vec<u32> = (0..300u32).map(|i| (i * 37) % 256).collect();
    let full = model
        .model
        .forward(&tokens, &mut model.model.new_cache())
        .unwrap();
    let mut cache = model.model.new_cache();
    model.model.forward(&tokens[..250], &mut cache).unwrap();
    for (i, t) in tokens.iter().enumerate().skip(250) {
        let step: Vec<f32> = model
            .model
            .forward(&[*t], &mut cache)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = full.get(i).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&step, &want);
        assert!(d < 1e-3, "position {i}: {d}");
    }
    assert_eq!(cache.len(), 300);
}
