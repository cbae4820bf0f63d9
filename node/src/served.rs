//! The models this node runs: each name of `engine.serve` resolved in the model store
//! (fai-tiny is built in), loaded once on the engine's device, and given its own
//! scheduler when the RPC starts. The RPC sells inference on them; the verifier replays
//! inferences on them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fai_engine::scheduler::{Scheduler, SchedulerStats};
use fai_engine::{DeviceInfo, LoadedModel};
use tracing::info;

use crate::config::EngineSection;

/// The loaded models and the device they are on.
pub struct LoadedModels {
    pub device: DeviceInfo,
    pub models: Vec<Arc<LoadedModel>>,
}

impl LoadedModels {
    /// Opens the configured device and loads every model of `engine.serve` on it.
    ///
    /// Errors: a device that cannot be opened, a name that is neither fai-tiny nor in the
    /// store, a file that fails to load or does not fit, or no model at all.
    pub fn load(data_dir: &Path, engine: &EngineSection) -> Result<Self> {
        let choice = engine.device()?;
        let device = choice.open().context("engine.device")?;
        let info = fai_engine::device::describe(&device);
        info!(target: "infer_node", asked = %choice, device = %info, "engine device");
        if engine.serve.is_empty() {
            bail!("engine.serve lists no model: give at least one (\"fai-tiny\" is built in)");
        }
        let mut models: Vec<Arc<LoadedModel>> = Vec::new();
        for name in &engine.serve {
            let files = crate::models::resolve(data_dir, name)
                .with_context(|| format!("engine.serve: model {name:?}"))?;
            let model = files
                .load_on(&device)
                .with_context(|| format!("engine.serve: cannot load model {name:?}"))?;
            if let Some(entry) = crate::model_store::ModelStore::load(data_dir)?.find(name) {
                if entry.id != model.id.to_string() {
                    bail!(
                        "engine.serve: model {name:?}: {} has changed since it was imported (id {} now, {} in models.toml)",
                        files.path.display(),
                        model.id,
                        entry.id
                    );
                }
            }
            if models.iter().any(|m| m.id == model.id) {
                continue;
            }
            info!(target: "infer_node", model = %name, id = %model.id, "model loaded");
            models.push(Arc::new(model));
        }
        Ok(LoadedModels {
            device: info,
            models,
        })
    }

    /// The ids of the models, in the order served.
    pub fn ids(&self) -> Vec<[u8; 32]> {
        self.models.iter().map(|m| m.id.0).collect()
    }
}

/// A served model with the workers that generate on it.
pub struct Engine {
    pub model: Arc<LoadedModel>,
    pub scheduler: Arc<Scheduler>,
}

/// The engines of the RPC, one per served model.
pub struct Engines {
    pub device: DeviceInfo,
    pub engines: Vec<Engine>,
}

impl Engines {
    /// Starts a scheduler on each model.
    pub fn start(models: &LoadedModels, engine: &EngineSection) -> Self {
        Engines {
            device: models.device.clone(),
            engines: models
                .models
                .iter()
                .map(|m| Engine {
                    model: m.clone(),
                    scheduler: Arc::new(Scheduler::start_batched(
                        m.clone(),
                        engine.workers(),
                        engine.queue(),
                        engine.max_batch,
                    )),
                })
                .collect(),
        }
    }

    /// The engine of model `id`.
    pub fn get(&self, id: &[u8; 32]) -> Option<&Engine> {
        self.engines.iter().find(|e| e.model.id.0 == *id)
    }

    /// The models served, comma-separated as "name (id)".
    pub fn describe(&self) -> String {
        self.engines
            .iter()
            .map(|e| format!("{} ({})", e.model.name, e.model.id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The jobs of every scheduler, added up.
    pub fn stats(&self) -> SchedulerStats {
        let mut total = SchedulerStats {
            running: 0,
            finished: 0,
            cancelled: 0,
            failed: 0,
        };
        for e in &self.engines {
            let s = e.scheduler.stats();
            total.running += s.running;
            total.finished += s.finished;
            total.cancelled += s.cancelled;
            total.failed += s.failed;
        }
        total
    }
}
