//! Which kernel this CPU runs: the best instruction set it has, detected once.
//!
//! `FAI_KERNEL_ISA=avx2` (or `scalar`) picks a lesser one, for tests and for comparing
//! speeds; the result is the same bits whichever runs. `scalar` also turns off the AVX2
//! builds of the activation quantiser and of attention's loops ([`crate::vector`]).

use std::sync::OnceLock;

/// The instruction sets the kernels are written for, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 with VNNI (`vpdpbusd`): 16 weight rows per instruction.
    Avx512Vnni,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// Plain Rust: the reference every other kernel is held to.
    Scalar,
}

impl Isa {
    /// Every instruction set, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512Vnni, Isa::Avx2, Isa::Scalar];

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && Isa::Avx2.available()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The instruction sets this CPU runs, best first.
    pub fn available_all() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// The best instruction set this CPU runs, or the one `FAI_KERNEL_ISA` names when
    /// the CPU runs it.
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let asked = std::env::var("FAI_KERNEL_ISA")
                .ok()
                .and_then(|s| Isa::parse(&s));
            match asked {
                Some(isa) if isa.available() => isa,
                _ => Isa::available_all()
                    .into_iter()
                    .next()
                    .unwrap_or(Isa::Scalar),
            }
        })
    }

    /// `avx512vnni`, `avx2` or `scalar`.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim() {
            "avx512vnni" => Some(Isa::Avx512Vnni),
            "avx2" => Some(Isa::Avx2),
            "scalar" => Some(Isa::Scalar),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }
}
