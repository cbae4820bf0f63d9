//! Errors of the Clarity bridge. Each says what was wrong in words a wallet user or an
//! operator can act on.

use clarity::vm::costs::ExecutionCost;

/// Errors of the Clarity bridge.
#[derive(Debug, thiserror::Error)]
pub enum ClarityError {
    #[error("contract state storage: {0}")]
    Storage(#[from] fai_storage::StorageError),
    #[error("unknown inference block {0}")]
    UnknownBlock(String),
    #[error("invalid name {0:?}: {1}")]
    BadName(String, String),
    #[error("contract {name} is {size} bytes; the limit is {max}")]
    ContractTooLarge {
        name: String,
        size: usize,
        max: usize,
    },
    #[error("contract {0} already exists")]
    ContractExists(String),
    #[error("contract {name} does not parse or type-check: {detail}")]
    BadContract { name: String, detail: String },
    #[error("no contract {0}")]
    NoSuchContract(String),
    #[error("contract call failed: {0}")]
    CallFailed(String),
    #[error("transfer failed: {0}")]
    TransferFailed(String),
    #[error("nonce {got} is not the account's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("execution cost {used} exceeds the transaction limit {limit}")]
    CostLimit { used: String, limit: String },
    #[error("the block's execution budget is spent ({used} used of {limit})")]
    BlockFull { used: String, limit: String },
    #[error("the VM failed: {0}")]
    Vm(String),
}

pub type Result<T, E = ClarityError> = std::result::Result<T, E>;

/// `ExecutionCost` in one line.
pub fn show_cost(c: &ExecutionCost) -> String {
    format!(
        "runtime {} reads {}/{}B writes {}/{}B",
        c.runtime, c.read_count, c.read_length, c.write_count, c.write_length
    )
}
