//! Where the engine runs: the operator's choice (`auto`, `cpu`, `cuda`, `cuda:N`), the
//! device it opens, and what the node reports about it (kind, name, memory).
//!
//! `auto` takes the first CUDA GPU when the binary was built with the `cuda` feature and
//! a GPU answers, else the CPU. Asking for CUDA from a CPU-only binary, or for a GPU that
//! is not there, is an error that says what to do; it never falls back silently.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{EngineError, Result};

/// The device an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA GPU 0 when the binary has CUDA and a GPU is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The CUDA GPU of this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            EngineError::Device(format!(
                "{s:?} is not a device: use auto, cpu, cuda or cuda:N (N the GPU's number)"
            ))
        };
        match s.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                let n: usize = n.parse().map_err(|_| bad())?;
                if n > 255 {
                    return Err(bad());
                }
                Ok(DeviceChoice::Cuda(n))
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this binary was built with the CUDA engine.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

impl DeviceChoice {
    /// Opens the device.
    ///
    /// Errors: CUDA asked of a binary built without it, or a GPU that cannot be opened.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => {
                if CUDA_BUILT && candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
            DeviceChoice::Cuda(n) => {
                if !CUDA_BUILT {
                    return Err(EngineError::Device(format!(
                        "cuda:{n} asked for, but this infer-node was built without CUDA \
                         (build it with `make build-cuda`, or set engine.device = \"cpu\")"
                    )));
                }
                Device::new_cuda(n).map_err(|e| {
                    // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
                    let e = e.to_string();
                    let first = e.lines().next().unwrap_or_default();
                    EngineError::Device(format!("cannot open CUDA GPU {n}: {first}"))
                })
            }
        }
    }
}

/// What a device is, for the banner, `/v2/info` and the benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub kind: String,
    /// Memory of the device in bytes (system memory for the CPU), when known.
    pub memory_total: Option<u64>,
    /// Memory free now, when known.
    pub memory_free: Option<u64>,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        match (self.memory_total, self.memory_free) {
            (Some(t), Some(free)) => write!(
                f,
                "{} ({:.1} GiB, {:.1} GiB free)",
                self.kind,
                gib(t),
                gib(free)
            ),
            (Some(t), None) => write!(f, "{} ({:.1} GiB)", self.kind, gib(t)),
            _ => f.write_str(&self.kind),
        }
    }
}

/// A `/proc/meminfo` value in bytes.
fn meminfo(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The kind and memory of `device`.
pub fn describe(device: &Device) -> DeviceInfo {
    match device {
        Device::Cuda(_) => cuda_info(device),
        _ => DeviceInfo {
            kind: "cpu".into(),
            memory_total: meminfo("MemTotal:"),
            memory_free: meminfo("MemAvailable:"),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_info(device: &Device) -> DeviceInfo {
    let (kind, memory) = match device {
        Device::Cuda(d) => {
            let ordinal = match device.location() {
                candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
                _ => 0,
            };
            let stream = d.cuda_stream();
            let memory = stream
                .context()
                .bind_to_thread()
                .ok()
                .and_then(|()| candle_core::cuda::cudarc::driver::result::mem_get_info().ok());
            (format!("cuda:{ordinal}"), memory)
        }
        _ => ("cpu".to_string(), None),
    };
    DeviceInfo {
        kind,
        memory_total: memory.map(|(_, total)| total as u64),
        memory_free: memory.map(|(free, _)| free as u64),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_info(_device: &Device) -> DeviceInfo {
    DeviceInfo {
        kind: "cuda".into(),
        memory_total: None,
        memory_free: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print_back() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:999", ""] {
            let err = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(err.contains("auto, cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_cpu_is_always_there_and_auto_falls_back_to_it_without_a_gpu() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        let auto = DeviceChoice::Auto.open().unwrap();
        if !CUDA_BUILT {
            assert!(auto.is_cpu());
            let err = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
            assert!(err.contains("make build-cuda"), "{err}");
        }
        let info = describe(&Device::Cpu);
        assert_eq!(info.kind, "cpu");
        assert!(info.memory_total.unwrap() > 0);
    }
}
