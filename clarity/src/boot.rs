//! The contracts deployed in the genesis block, all by the boot principal:
//!
//! - `costs-3` and `cost-voting`: the VM's cost functions (the sources shipped with
//!   clarity-repl); every cost-limited execution reads them.
//! - the network's own rules, in `clarity/contracts/`: `staking`, `model-registry`,
//!   `node-registry`, `reputation` (each file documents its functions and error codes).
//!
//! Then the genesis settings: reward cycle length and minimum stake, minimum bond and
//! withdrawal delay, and the models approved from the start (`fai-tiny` on the devnet).

use clarity::vm::types::Value;
use clarity::vm::ClarityVersion;
use clarity_repl::repl::boot::{
    BOOT_CODE_COSTS_3, STACKS_BOOT_CODE_MAINNET, STACKS_BOOT_CODE_TESTNET,
};

use crate::error::{ClarityError, Result};
use crate::tx::BlockOp;
use crate::vm::Genesis;

pub const STAKING: &str = include_str!("../contracts/staking.clar");
pub const MODEL_REGISTRY: &str = include_str!("../contracts/model-registry.clar");
pub const NODE_REGISTRY: &str = include_str!("../contracts/node-registry.clar");
pub const REPUTATION: &str = include_str!("../contracts/reputation.clar");

/// The network's boot contracts by name, in deployment order (each may call the ones
/// before it).
pub const NETWORK_CONTRACTS: [(&str, &str); 4] = [
    ("staking", STAKING),
    ("model-registry", MODEL_REGISTRY),
    ("node-registry", NODE_REGISTRY),
    ("reputation", REPUTATION),
];

/// Every genesis contract: name, source, Clarity version.
pub fn contracts(mainnet: bool) -> Vec<(&'static str, String, ClarityVersion)> {
    let table = if mainnet {
        &*STACKS_BOOT_CODE_MAINNET
    } else {
        &*STACKS_BOOT_CODE_TESTNET
    };
    let voting = table
        .iter()
        .find(|(name, _)| *name == "cost-voting")
        .map(|(_, code)| code.to_string())
        .unwrap_or_default();
    let mut out = vec![
        (
            "costs-3",
            BOOT_CODE_COSTS_3.to_string(),
            ClarityVersion::Clarity2,
        ),
        ("cost-voting", voting, ClarityVersion::Clarity1),
    ];
    out.extend(
        NETWORK_CONTRACTS
            .iter()
            .map(|(name, code)| (*name, code.to_string(), ClarityVersion::Clarity2)),
    );
    out
}

fn ascii(s: &str) -> Result<Value> {
    Value::string_ascii_from_bytes(s.as_bytes().to_vec())
        .map_err(|e| ClarityError::Vm(format!("genesis text {s:?}: {e}")))
}

fn system(contract: &str, function: &str, args: Vec<Value>) -> BlockOp {
    BlockOp::System {
        contract: contract.into(),
        function: function.into(),
        args,
    }
}

/// The consensus calls that write the genesis settings.
pub fn settings(genesis: &Genesis) -> Result<Vec<BlockOp>> {
    let mut ops = vec![
        system(
            "staking",
            "configure",
            vec![
                Value::UInt(genesis.cycle_length),
                Value::UInt(genesis.min_stake),
            ],
        ),
        system(
            "node-registry",
            "configure",
            vec![
                Value::UInt(genesis.min_bond),
                Value::UInt(genesis.withdraw_delay),
            ],
        ),
    ];
    for m in &genesis.models {
        let id = Value::buff_from(m.id.to_vec())
            .map_err(|e| ClarityError::Vm(format!("genesis model id: {e}")))?;
        ops.push(system(
            "model-registry",
            "approve-genesis-model",
            vec![
                id,
                ascii(&m.name)?,
                ascii(&m.arch)?,
                Value::UInt(m.context_length),
                ascii(&m.method)?,
            ],
        ));
    }
    Ok(ops)
}
