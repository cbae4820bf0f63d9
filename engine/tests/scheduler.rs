//! The scheduler: shared model, streamed events, cancellation, and "busy" instead of an
//! ever-growing queue.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use fai_engine::scheduler::{Event, Scheduler};
use fai_engine::tiny::{ensure_fai_tiny, write_gguf, TinySpec};
use fai_engine::{
    generate, EngineError, FinishReason, GenerateRequest, LoadedModel, SamplingParams,
};

fn request(input: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        input: input.into(),
        sampling: SamplingParams {
            max_tokens,
            temperature: 0.9,
            seed: 5,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }
}

/// Tokens a "long" request asks for: seconds of fai-tiny's time on [`long_model`], so
/// that no stall of a loaded machine between two steps of a test lets it finish first
/// (1,900 tokens of the default fai-tiny now take about a tenth of a second).
const LONG: u32 = 60_000;

/// Prompts whose greedy answers on [`long_model`] do not meet the end-of-text token for
/// tens of thousands of tokens (`long a` and `a long answer 4` run to 60,000, the others
/// past 20,000: seconds of work). Most prompts' answers, and sampled ones, meet it within
/// a few thousand (`long 0`'s greedy answer ends at 2,382 tokens, in 65 ms; `a long
/// answer` sampled at 0.9 at 127, in 4 ms): tests that raced such answers failed on a
/// loaded machine. [`long_prompts_run_long`] checks the first stretch of each.
const LONG_PROMPTS: [&str; 4] = [
    "long a",
    "a long answer 4",
    "a long answer 1",
    "a long answer 2",
];

/// The `i`th long request: greedy, [`LONG`] tokens, on [`LONG_PROMPTS`].
fn long_request(i: usize) -> GenerateRequest {
    let mut r = request(LONG_PROMPTS[i % LONG_PROMPTS.len()], LONG);
    r.sampling.temperature = 0.0;
    r
}

/// fai-tiny with a context of 64K positions, for [`LONG`] requests.
fn long_model() -> (tempfile::TempDir, Arc<LoadedModel>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        name: "fai-tiny-long".into(),
        context_length: 1 << 16,
        ..TinySpec::fai_tiny()
    };
    let path = dir.path().join("long.gguf");
    write_gguf(&spec, &path).unwrap();
    let m = LoadedModel::load(&path, &Device::Cpu).unwrap();
    (dir, Arc::new(m))
}

fn model() -> (tempfile::TempDir, Arc<LoadedModel>) {
    let dir = tempfile::tempdir().unwrap();
    let m = LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &Device::Cpu).unwrap();
    (dir, Arc::new(m))
}

#[test]
fn jobs_stream_their_text_and_finish() {
    let (_dir, model) = model();
    let scheduler = Scheduler::start(model.clone(), 2, 8);
    let jobs: Vec<_> = (0..4)
        .map(|i| scheduler.submit(request(&format!("q{i}"), 30)).unwrap())
        .collect();
    for job in jobs {
        let (streamed, result) = job.wait();
        let g = result.unwrap();
        assert_eq!(streamed, g.text);
    }
}

#[test]
fn a_full_queue_answers_busy_and_cancelled_jobs_end() {
    let (_dir, model) = long_model();
    // One worker decoding one request at a time, room for one waiting request: the third
    // long request cannot fit.
    let scheduler = Scheduler::start_batched(model, 1, 1, 1);
    let mut jobs = Vec::new();
    let mut busy = None;
    for i in 0..3 {
        match scheduler.submit(long_request(i)) {
            Ok(job) => jobs.push(job),
            Err(e) => {
                busy = Some(e);
                break;
            }
        }
    }
    let err = busy.expect("the queue never filled");
    assert!(matches!(err, EngineError::Busy { capacity: 1 }), "{err}");
    assert!(err.to_string().contains("busy"));
    for job in &jobs {
        job.cancel();
    }
    for job in jobs {
        let (_, result) = job.wait();
        let g = result.unwrap();
        assert!(matches!(
            g.finish,
            FinishReason::Cancelled | FinishReason::EndOfText | FinishReason::Length
        ));
    }
    // With the queue drained, work is accepted again.
    assert!(scheduler.submit(request("again", 5)).is_ok());
}

#[test]
fn a_worker_decodes_up_to_its_batch_and_the_queue_holds_the_rest() {
    let (_dir, model) = long_model();
    // One worker decoding two at once, one waiting: the fourth long request is refused.
    let scheduler = Scheduler::start_batched(model, 1, 1, 2);
    // Each waits until the worker has taken the one before (the queue holds one).
    let running_at_least = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while scheduler.stats().running < n {
            assert!(std::time::Instant::now() < deadline, "never {n} running");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let first = scheduler.submit(long_request(0)).unwrap();
    running_at_least(1);
    let second = scheduler.submit(long_request(1)).unwrap();
    running_at_least(2);
    let running = [first, second];
    let waiting = scheduler.submit(request("waits", 5)).unwrap();
    let err = scheduler
        .submit(request("refused", 5))
        .err()
        .expect("a fourth fits nowhere");
    assert!(matches!(err, EngineError::Busy { capacity: 1 }), "{err}");
    for job in &running {
        job.cancel();
    }
    assert!(waiting.wait().1.is_ok());
    for job in running {
        let (_, result) = job.wait();
        assert!(result.is_ok());
    }
}

#[test]
fn invalid_requests_are_refused_before_queueing() {
    let (_dir, model) = model();
    let scheduler = Scheduler::start(model, 1, 1);
    let mut bad = request("x", 5);
    bad.sampling.top_p = 0.0;
    assert!(matches!(
        scheduler.submit(bad),
        Err(EngineError::InvalidSampling(_))
    ));
}

#[test]
fn async_code_reads_a_job_as_a_stream() {
    use futures_util::StreamExt;
    let (_dir, model) = model();
    let scheduler = Scheduler::start(model, 1, 4);
    let job = scheduler.submit(request("stream me", 40)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let events: Vec<Event> = runtime.block_on(job.collect());
    let (last, pieces) = events.split_last().unwrap();
    let Event::Done(g) = last else {
        panic!("the last event is {last:?}")
    };
    let text: String = pieces
        .iter()
        .map(|e| match e {
            Event::Text(t) => t.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(text, g.text);
    assert!(!g.tokens.is_empty());
}

#[test]
fn dropping_a_job_cancels_its_generation() {
    let (_dir, model) = long_model();
    let scheduler = Scheduler::start(model, 1, 1);
    let mut job = scheduler.submit(long_request(0)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Wait until it is generating, then hang up.
    let first = runtime.block_on(job.next()).unwrap();
    assert!(matches!(first, Event::Text(_)), "{first:?}");
    drop(job);
    // One worker, first in first out: when the next job is done, the dropped one ended.
    let (_, result) = scheduler.submit(request("next", 5)).unwrap().wait();
    assert!(result.is_ok());
    let stats = scheduler.stats();
    assert_eq!((stats.cancelled, stats.finished, stats.running), (1, 1, 0));
}

/// The long requests the tests race against are long: none of their greedy answers meets
/// the end-of-text token in its first 4,000 tokens (a change to the kernels or the model
/// generator that shortened one would make the tests above race again; pick others then).
#[test]
fn long_prompts_run_long() {
    let (_dir, model) = long_model();
    for (i, prompt) in LONG_PROMPTS.iter().enumerate() {
        let mut r = long_request(i);
        r.sampling.max_tokens = 4_000;
        let g = generate(&model, &r, &AtomicBool::new(false), |_| {}).unwrap();
        assert_eq!(
            (g.finish, g.tokens.len()),
            (FinishReason::Length, 4_000),
            "{prompt}"
        );
    }
}
