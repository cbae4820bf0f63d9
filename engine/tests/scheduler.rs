//! The scheduler: shared model, streamed events, cancellation, and "busy" instead of an
//! ever-growing queue.

use std::sync::Arc;

use candle_core::Device;
use fai_engine::scheduler::Scheduler;
use fai_engine::tiny::ensure_fai_tiny;
use fai_engine::{EngineError, FinishReason, GenerateRequest, LoadedModel, SamplingParams};

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
    let (_dir, model) = model();
    // One worker, room for one waiting request: the third long request cannot fit.
    let scheduler = Scheduler::start(model, 1, 1);
    let mut jobs = Vec::new();
    let mut busy = None;
    for i in 0..3 {
        match scheduler.submit(request(&format!("long {i}"), 1900)) {
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
