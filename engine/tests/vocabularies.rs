//! Real-model vocabularies and architectures on generated GGUF files: a SentencePiece
//! vocabulary (Llama 2, Mistral, TinyLlama), a byte-level BPE vocabulary (Llama 3, Qwen2),
//! a separate tokenizer.json, chat templates with special tokens, and the qwen2
//! architecture checked against candle-transformers' reference.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use fai_engine::model::Arch;
use fai_engine::tiny::{write_gguf, TinySpec, TinyVocab};
use fai_engine::{generate, EngineError, GenerateRequest, LoadedModel, SamplingParams};

const LLAMA2_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}<<SYS>>{{ m.content }}<</SYS>>{% elif m.role == 'user' %}[INST] {{ m.content }} [/INST]{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}";
const CHATML_TEMPLATE: &str = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then pieces
/// with scores (higher merges first).
fn spm_vocab() -> TinyVocab {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    let mut scores = vec![0f32, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces = [
        ("\u{2581}", -100.0),
        ("h", -101.0),
        ("e", -102.0),
        ("l", -103.0),
        ("o", -104.0),
        ("w", -105.0),
        ("r", -106.0),
        ("d", -107.0),
        ("\u{2581}hello", -3.0),
        ("ll", -5.0),
        ("he", -6.0),
        ("llo", -7.0),
        ("hello", -8.0),
    ];
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(s);
    }
    let size = tokens.len();
    TinyVocab::Metadata {
        size,
        entries: vec![
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            ("tokenizer.ggml.tokens".into(), strings(tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(scores.into_iter().map(Value::F32).collect()),
            ),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ],
    }
}

/// The character GPT-2's byte-level map writes byte `b` as.
fn byte_char(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|x| !printable(*x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte characters (id = byte), merged pieces, then
/// the ChatML control tokens.
fn bpe_vocab() -> TinyVocab {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![1i32; 256];
    for t in ["he", "ll", "llo", "hello", "\u{120}w"] {
        tokens.push(t.into());
        types.push(1);
    }
    for t in ["<|im_start|>", "<|im_end|>", "<|endoftext|>"] {
        tokens.push(t.into());
        types.push(3);
    }
    let merges = ["l l", "h e", "ll o", "he llo", "\u{120} w"].map(String::from);
    TinyVocab::Metadata {
        size: tokens.len(),
        entries: vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
            ("tokenizer.ggml.tokens".into(), strings(tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            ("tokenizer.ggml.merges".into(), strings(merges)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(263)),
        ],
    }
}

fn spec(name: &str, arch: Arch, vocab: TinyVocab, template: &str) -> TinySpec {
    TinySpec {
        name: name.into(),
        arch,
        vocab,
        chat_template: template.into(),
        ..TinySpec::fai_tiny()
    }
}

fn write_and_load(dir: &Path, spec: &TinySpec) -> LoadedModel {
    let path = dir.join(format!("{}.gguf", spec.name));
    write_gguf(spec, &path).unwrap();
    LoadedModel::load(&path, &Device::Cpu).unwrap()
}

#[test]
fn a_sentencepiece_vocabulary_merges_by_score_and_falls_back_to_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_and_load(
        dir.path(),
        &spec("spm", Arch::Llama, spm_vocab(), LLAMA2_TEMPLATE),
    );
    let t = &m.tokenizer;
    let id = |s: &str| t.token_of(&[s]).unwrap();
    // BOS first, then "▁hello" merged through ll, he, llo, hello; "▁world" has no merges.
    let ids = t.encode("hello world").unwrap();
    let sp = id(" ");
    assert_eq!(
        ids,
        vec![
            1,
            id(" hello"),
            sp,
            id("w"),
            id("o"),
            id("r"),
            id("l"),
            id("d")
        ]
    );
    assert_eq!(t.decode(&ids), " hello world");
    // Characters outside the vocabulary fall back to their UTF-8 bytes.
    let ids = t.encode("zé").unwrap();
    assert_eq!(ids, vec![1, sp, 3 + 0x7A, 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(t.decode(&ids), " zé");
    // Control-token text in a rendered template becomes the token, and ends generation.
    let ids = t.encode("hello</s>").unwrap();
    assert_eq!(ids.last(), Some(&2));
    assert!(t.is_end(2) && !t.is_end(1));
    assert_eq!((t.bos_text(), t.eos_text()), ("<s>", "</s>"));
    // The chat prompt: the template's BOS text is the BOS token, not a second one.
    let prompt = m.chat_tokens("", &[], "hello").unwrap();
    assert_eq!(prompt.iter().filter(|x| **x == 1).count(), 1);
    assert_eq!(prompt[0], 1);
    assert_eq!(t.decode(&prompt), " [INST] hello [/INST]");
}

#[test]
fn a_byte_level_vocabulary_follows_its_merge_list_and_chatml_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_and_load(
        dir.path(),
        &spec("bpe", Arch::Llama, bpe_vocab(), CHATML_TEMPLATE),
    );
    let t = &m.tokenizer;
    // No BOS for this vocabulary; "hello" is one token, " world" is "Ġw" + bytes.
    let ids = t.encode("hello world").unwrap();
    assert_eq!(ids, vec![259, 260, u32::from(b'o'), 114, 108, 100]);
    assert_eq!(t.decode(&ids), "hello world");
    let ids = t.encode("<|im_start|>user\nhé<|im_end|>").unwrap();
    assert_eq!(ids, vec![261, 117, 115, 101, 114, 10, 104, 0xC3, 0xA9, 262]);
    assert_eq!(t.decode(&ids), "user\nhé");
    // End of text and end of turn both end generation.
    assert!(t.is_end(262) && t.is_end(263) && !t.is_end(261));
    let prompt = m.chat_tokens("sys", &[], "hi").unwrap();
    assert_eq!(prompt.first(), Some(&261));
    assert_eq!(prompt.iter().filter(|x| **x == 262).count(), 2);
}

#[test]
fn a_model_with_a_real_vocabulary_generates_reproducibly_and_stops_at_end_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_and_load(
        dir.path(),
        &spec("bpe-gen", Arch::Qwen2, bpe_vocab(), CHATML_TEMPLATE),
    );
    let req = GenerateRequest {
        system: "be brief".into(),
        input: "hello world".into(),
        sampling: SamplingParams {
            max_tokens: 40,
            temperature: 0.9,
            seed: 11,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    let mut streamed = String::new();
    let a = generate(&m, &req, &AtomicBool::new(false), |p| streamed.push_str(p)).unwrap();
    let b = generate(&m, &req, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(a, b);
    assert!(!a.tokens.is_empty());
    assert_eq!(streamed, a.text);
    assert_eq!(a.text, m.tokenizer.decode(&a.tokens));
    assert!(a.tokens.iter().all(|t| !m.tokenizer.is_end(*t)));
}

#[test]
fn the_qwen2_forward_pass_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let s = TinySpec {
        dtype: GgmlDType::Q8_0,
        ..spec("qwen", Arch::Qwen2, bpe_vocab(), CHATML_TEMPLATE)
    };
    let m = write_and_load(dir.path(), &s);
    assert_eq!(m.model.config.arch, Arch::Qwen2);
    let tokens = m.chat_tokens("", &[], "hello world, hello").unwrap();
    let path = dir.path().join("qwen.gguf");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_qwen2::ModelWeights::from_gguf(
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
    let mut cache = m.model.new_cache();
    let ours: Vec<f32> = m
        .model
        .forward_last(&tokens, &mut cache, 1)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    common::assert_close_to_reference(&ours, &expected);
}

#[test]
fn a_tokenizer_json_beside_the_model_replaces_its_vocabulary_and_changes_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_and_load(
        dir.path(),
        &spec("with-json", Arch::Llama, bpe_vocab(), CHATML_TEMPLATE),
    );
    let vocab: serde_json::Map<String, serde_json::Value> = (0..=255u8)
        .map(|b| (byte_char(b).to_string(), serde_json::json!(b)))
        .chain([("ab".to_string(), serde_json::json!(256))])
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 257, "content": "<|im_end|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": [["a", "b"]]},
    });
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, serde_json::to_vec(&json).unwrap()).unwrap();
    let with = LoadedModel::load_with(&m.path, Some(&json_path), &Device::Cpu).unwrap();
    assert_ne!(with.id, m.id);
    assert_eq!(with.tokenizer.kind(), "tokenizer.json");
    let ids = with.tokenizer.encode("abc<|im_end|>").unwrap();
    assert_eq!(ids, vec![256, u32::from(b'c'), 257]);
    assert_eq!(with.tokenizer.decode(&ids), "abc");

    // A broken tokenizer.json is an error naming the file.
    std::fs::write(&json_path, b"{\"model\": 5").unwrap();
    let err = LoadedModel::load_with(&m.path, Some(&json_path), &Device::Cpu).unwrap_err();
    assert!(matches!(err, EngineError::BadTokenizer { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn broken_vocabularies_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, vocab: TinyVocab| {
        let s = spec(name, Arch::Llama, vocab, "");
        let path = dir.path().join(format!("{name}.gguf"));
        write_gguf(&s, &path).unwrap();
        LoadedModel::load(&path, &Device::Cpu).unwrap_err()
    };
    let TinyVocab::Metadata { size, mut entries } = spm_vocab() else {
        unreachable!()
    };
    entries.retain(|(k, _)| k != "tokenizer.ggml.scores");
    let err = load("no-scores", TinyVocab::Metadata { size, entries });
    assert!(err.to_string().contains("one score per token"), "{err}");
    assert!(err.to_string().contains("no-scores.gguf"), "{err}");

    let err = load(
        "bert",
        TinyVocab::Metadata {
            size: 10,
            entries: vec![("tokenizer.ggml.model".into(), Value::String("bert".into()))],
        },
    );
    assert!(
        matches!(err, EngineError::UnsupportedTokenizer { .. }),
        "{err}"
    );

    let TinyVocab::Metadata { mut entries, .. } = bpe_vocab() else {
        unreachable!()
    };
    entries.retain(|(k, _)| k != "tokenizer.ggml.merges");
    let err = load("no-merges", TinyVocab::Metadata { size: 264, entries });
    assert!(err.to_string().contains("merges"), "{err}");

    // A vocabulary larger than the model's embedding table.
    let TinyVocab::Metadata { entries, .. } = bpe_vocab() else {
        unreachable!()
    };
    let err = load("too-big", TinyVocab::Metadata { size: 100, entries });
    assert!(err.to_string().contains("embeddings have 100"), "{err}");
}
