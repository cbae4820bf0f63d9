//! The Clarity VM bridge of infer-node: the real Clarity VM (clarity-vm, epoch 2.1,
//! Clarity 2) running the inference chain's contracts on the node's own storage.
//!
//! - [`store`]: contract state in a versioned key space addressed by inference block, so
//!   state follows the surviving chain across reorganisations and `at-block` reads the
//!   past; [`ancestry`]: the chains of block ids such reads look through, cached.
//! - [`views`]: the ledger seen from contracts (`burn-block-height`,
//!   `get-burn-block-info?`) and the inference block index (`get-block-info?`).
//! - [`vm`]: block execution (transfers, deploys, calls, mints, consensus calls) with
//!   per-transaction and per-block cost limits, read-only calls, account queries, genesis.
//! - [`bench`]: what `infer-node bench clarity` measures (contract calls per second on
//!   RocksDB against memory).
//! - [`boot`]: the boot contracts (`clarity/contracts/*.clar`) and their genesis settings.
//!
//! FAI on the inference layer is the VM's native token (base units = the VM's micro
//! units). It is created only by [`tx::BlockOp::Mint`], which only the consensus emits
//! (the inference subsidy and peg-ins), so the supply cap holds across both layers.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod ancestry;
pub mod bench;
pub mod boot;
pub mod error;
pub mod store;
pub mod tx;
pub mod views;
pub mod vm;

use clarity::types::StacksEpochId;
use clarity::vm::ClarityVersion;

pub use error::{ClarityError, Result};
pub use store::{BlockInfo, ClarityStore, BLOCKS_COLUMN, STATE_COLUMN};
pub use tx::{BlockOp, Payload, Receipt, VmEvent, VmTransaction};
pub use views::LedgerView;
pub use vm::{BlockResult, ClarityVm, ExecutedBlock, Genesis, GenesisModel, VmConfig};

/// The VM epoch of the inference chain (2.1: Clarity 2, the 2.1 type checker, costs-3).
pub const EPOCH: StacksEpochId = StacksEpochId::Epoch21;
/// The language version of contracts deployed by transactions.
pub const CLARITY_VERSION: ClarityVersion = ClarityVersion::Clarity2;

/// Re-exported VM types that callers need to build arguments and read results.
pub use clarity::vm::costs::ExecutionCost;
pub use clarity::vm::types::Value;
