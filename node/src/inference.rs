//! The proof-of-inference chain inside the node: its database (`<data_dir>/inference`)
//! and following the ledger (the settings of each network are the chain crate's,
//! `ChainConfig::for_network`).
//!
//! The node feeds every ledger block it connects to the chain (sortitions are a function
//! of the ledger), so the chain's tip, verifier sets and contract state are always those
//! as of the ledger's active tip. Producing, verifying and gossiping inference blocks
//! build on this.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use fai_clarity::GenesisModel;
use fai_inference_chain::chain::{ChainConfig, InferenceChain, INFERENCE_BLOCKS_COLUMN};
use fai_inference_chain::payloads::{PayloadStore, PAYLOADS_COLUMN};
use fai_ledger::Chainstate;
use fai_primitives::Network;
use fai_storage::{RocksStore, Schema};
use tracing::info;

/// The columns of the inference database.
pub const SCHEMA: Schema = Schema {
    columns: &[
        fai_clarity::STATE_COLUMN,
        fai_clarity::BLOCKS_COLUMN,
        PAYLOADS_COLUMN,
        INFERENCE_BLOCKS_COLUMN,
    ],
    // 2: the sortition seed chained over ledger blocks and commits bound to their
    // register's key: blocks stored by an older build were accepted under other rules.
    // 3: the node registry punishes equivocating producers and a full staking contract
    // lets a larger stake in (another genesis state), a tenure may hold sibling blocks,
    // and answers' text is kept by receipt.
    // 4: receipts sign the hash of the output's token ids (blocks encode it).
    // 5: the staking contract takes audits (another genesis state).
    // 6: votes on a block count in any block of its vote window, not only its child.
    // 7: a verifier an audit caught is barred from the sets (another genesis state).
    // 8: a node's bond is held through the vote window of every block carrying its
    // inferences (another genesis state, and another operation in each such block).
    // 9: votes come in two phases, a commitment then its reveal (blocks carry both, and
    // votes their salt), and a barred staker gives its staking slot up first (another
    // genesis state).
    // 10: served text is stored sealed to the verifiers, and the node registry holds
    // sealing keys (another genesis state).
    // 11: a commit phase short of a quorum of commitments runs on (up to
    // COMMIT_PHASE_MAX ledger blocks), so blocks stored before may hold votes in
    // places the new rule reads differently.
    // 12: the run of blocks a commit phase needs to run on passes over ledger blocks
    // that carry no commit (they elect nobody).
    // 13: ... and ledger blocks whose only commits were made on another parent (mined a
    // block late) or by another key than their register's (they elect nobody either).
    // 14: a settled block's verdicts go to the reputation contract in one call
    // (record-results; another genesis state).
    format_version: 14,
};

/// Opens (creating at first use) the inference chain in `data_dir` and reads the ledger
/// up to its tip. `configured` are the models approved at genesis besides the network's
/// own (`inference.genesis_models`; regtest only).
pub fn open(
    data_dir: &Path,
    network: Network,
    ledger: &Chainstate,
    tiny: [u8; 32],
    configured: Vec<GenesisModel>,
) -> Result<InferenceChain> {
    let config = ChainConfig::for_network(network, tiny)
        .with_genesis_models(configured)
        .map_err(|e| anyhow::anyhow!("inference.genesis_models: {e}"))?;
    let path = data_dir.join("inference");
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let kv = Arc::new(RocksStore::open(&path, SCHEMA).map_err(|e| {
        let hint = match (&e, network) {
            (
                fai_storage::StorageError::FormatMismatch { .. },
                Network::Devnet | Network::Regtest,
            ) => format!(
                "; on {network} nothing in it is worth keeping: delete {} and start again (the node builds it anew from the ledger and its peers)",
                path.display()
            ),
            _ => String::new(),
        };
        anyhow::anyhow!(
            "cannot open the inference database in {}: {e}{hint}",
            path.display()
        )
    })?);
    let started = std::time::Instant::now();
    let mut chain = InferenceChain::open(kv.clone(), config, ledger)
        .context("cannot open the inference chain")?
        .with_payloads(PayloadStore::new(kv));
    chain
        .on_ledger_block(ledger, &ledger.tip_hash())
        .context("cannot read the ledger into the inference chain")?;
    let tip = chain.tip(ledger);
    info!(
        target: "infer_node::inference",
        height = tip.height,
        id = %hex::encode(tip.id),
        ledger_height = ledger.height(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "inference chain ready"
    );
    Ok(chain)
}

/// A read-only call of a boot contract in the state of the inference tip as of the
/// ledger's tip; none when it fails.
pub fn read_boot(
    chain: &InferenceChain,
    ledger: &Chainstate,
    contract: &str,
    function: &str,
    args: &[fai_clarity::Value],
) -> Option<fai_clarity::Value> {
    let tip = chain.tip(ledger).exec_id;
    chain
        .vm()
        .call_read_only(&tip, ledger, [0; 20], [0; 20], contract, function, args)
        .ok()
        .map(|(v, _)| v)
}

/// [`serves`] remembered at one state (the inference tip's and the ledger tip's): each
/// read runs the node registry's contract, which the VM loads anew every time, and a
/// node checks every result gossiped to it against it (two serving nodes, thousands of
/// results a block). Forgotten when either tip moves.
#[derive(Default)]
pub struct ServesMemo {
    at: Option<([u8; 32], fai_primitives::Hash256)>,
    known: std::collections::HashMap<(fai_primitives::Hash160, [u8; 32]), bool>,
}

/// Pairs of node and model a [`ServesMemo`] holds at most (beyond, it reads).
const MAX_SERVES_KNOWN: usize = 1024;

impl ServesMemo {
    /// [`serves`] at the tips as they are now.
    pub fn serves(
        &mut self,
        chain: &InferenceChain,
        ledger: &Chainstate,
        node: fai_primitives::Hash160,
        model: [u8; 32],
    ) -> bool {
        let at = (chain.tip(ledger).exec_id, ledger.tip_hash());
        self.at_state(at, node, model, || read_serves(chain, ledger, node, model))
    }

    /// What `read` says of `node` and `model` at state `at`, read once per state; a read
    /// that failed (none: a storage error) is not remembered, and says no.
    fn at_state(
        &mut self,
        at: ([u8; 32], fai_primitives::Hash256),
        node: fai_primitives::Hash160,
        model: [u8; 32],
        read: impl FnOnce() -> Option<bool>,
    ) -> bool {
        if self.at != Some(at) {
            self.at = Some(at);
            self.known.clear();
        }
        if let Some(known) = self.known.get(&(node, model)) {
            return *known;
        }
        let Some(read) = read() else {
            return false;
        };
        if self.known.len() < MAX_SERVES_KNOWN {
            self.known.insert((node, model), read);
        }
        read
    }
}

/// Whether the node registry lists `node` for `model` (registered, not leaving).
pub fn serves(
    chain: &InferenceChain,
    ledger: &Chainstate,
    node: fai_primitives::Hash160,
    model: [u8; 32],
) -> bool {
    read_serves(chain, ledger, node, model).unwrap_or(false)
}

/// [`serves`], or none when the registry could not be read.
fn read_serves(
    chain: &InferenceChain,
    ledger: &Chainstate,
    node: fai_primitives::Hash160,
    model: [u8; 32],
) -> Option<bool> {
    let model = fai_clarity::Value::buff_from(model.to_vec()).ok()?;
    let node: fai_clarity::Value = chain.vm().principal(node.0).into();
    read_boot(chain, ledger, "node-registry", "serves", &[node, model])
        .map(|v| v == fai_clarity::Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is read once per node, model and state: again for another pair, and
    /// for every pair once either tip moved (a block may have registered or removed it).
    #[test]
    fn whether_a_node_serves_is_read_once_per_state() {
        use fai_primitives::{Hash160, Hash256};
        let mut memo = ServesMemo::default();
        let reads = std::cell::Cell::new(0);
        let ask_or_fail = |memo: &mut ServesMemo, at, node: u8, says: Option<bool>| {
            memo.at_state(at, Hash160([node; 20]), [7; 32], || {
                reads.set(reads.get() + 1);
                says
            })
        };
        let ask = |memo: &mut ServesMemo, at, node: u8, says: bool| {
            ask_or_fail(memo, at, node, Some(says))
        };
        let first = ([1; 32], Hash256([1; 32]));
        assert!(ask(&mut memo, first, 1, true));
        assert!(
            ask(&mut memo, first, 1, false),
            "remembered at the same state"
        );
        assert!(!ask(&mut memo, first, 2, false));
        assert_eq!(reads.get(), 2);
        // The ledger tip moved: read again, and the new answer holds.
        let ledger_moved = ([1; 32], Hash256([2; 32]));
        assert!(!ask(&mut memo, ledger_moved, 1, false));
        assert!(!ask(&mut memo, ledger_moved, 1, true));
        // The inference tip moved.
        let inference_moved = ([2; 32], Hash256([2; 32]));
        assert!(ask(&mut memo, inference_moved, 1, true));
        assert_eq!(reads.get(), 4);
        // A read that failed says no and is not remembered: the next one reads again.
        assert!(!ask_or_fail(&mut memo, inference_moved, 3, None));
        assert!(ask(&mut memo, inference_moved, 3, true));
        assert_eq!(reads.get(), 6);
    }

    /// An inference database written by a build with other rules is refused with what to
    /// do, not read as if nothing had changed.
    #[test]
    fn an_older_inference_database_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inference");
        std::fs::create_dir_all(&path).unwrap();
        let older = Schema {
            format_version: 13,
            ..SCHEMA
        };
        drop(RocksStore::open(&path, older).unwrap());
        let store =
            Arc::new(fai_storage::MemoryStore::open(fai_ledger::chainstate::SCHEMA).unwrap());
        let ledger =
            Chainstate::open(store, fai_ledger::ChainParams::for_network(Network::Devnet)).unwrap();
        let err = open(dir.path(), Network::Devnet, &ledger, [0; 32], Vec::new())
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains("format version 13"), "{text}");
        assert!(text.contains("version 14"), "{text}");
        assert!(
            text.contains("delete") && text.contains("start again"),
            "{text}"
        );
    }
}
