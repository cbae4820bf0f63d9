//! An address's recent history on both layers, read from the blocks themselves (the node
//! keeps no per-address index): ledger transactions that pay the address or spend with
//! its key, and the inference layer's VM transactions it sent or received, in the last
//! `blocks` ledger blocks (default 1,000, at most 10,000) and the inference blocks
//! anchored in them.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use fai_api as api;
use fai_inference_chain::ops::Op;
use fai_inference_chain::vmtx::VmPayload;
use fai_ledger::{OutputKind, Unlock};
use fai_primitives::{Address, Amount, Hash160, Network};
use serde::Deserialize;

use super::{bad, ApiError, RpcState};
use fai_node::chain_task::ChainState;

/// Ledger blocks scanned by default and at most.
const DEFAULT_BLOCKS: u32 = 1_000;
const MAX_BLOCKS: u32 = 10_000;

#[derive(Deserialize)]
pub struct HistoryQuery {
    blocks: Option<u32>,
}

fn units(a: Amount) -> u64 {
    a.units()
}

#[utoipa::path(get, path = "/v2/accounts/{address}/history", tag = "ledger", params(("address" = String, Path, description = "an address of this network"), ("blocks" = Option<u32>, Query, description = "ledger blocks to look back (default 1000, at most 10000)")), responses((status = 200, description = "the ledger and inference-layer transactions, newest first", body = api::History), (status = 400, description = "not an address, or too many blocks", body = api::ErrorBody)))]
pub async fn history(
    State(s): State<Arc<RpcState>>,
    Path(text): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<api::History>, ApiError> {
    let Query(q) = query.map_err(|e| bad(format!("bad query: {}", e.body_text())))?;
    let address = Address::parse_for(&text, s.network).map_err(|e| bad(e.to_string()))?;
    let blocks = q.blocks.unwrap_or(DEFAULT_BLOCKS);
    if blocks == 0 || blocks > MAX_BLOCKS {
        return Err(bad(format!("blocks must be 1 to {MAX_BLOCKS}")));
    }
    let network = s.network;
    // Reading thousands of blocks from disk: on the chain task, off the async runtime.
    s.node
        .chain
        .call(move |st| scan(st, network, address, blocks))
        .await
        .map_err(super::stopping)
}

fn scan(st: &ChainState, network: Network, address: Address, blocks: u32) -> Json<api::History> {
    let who = address.key_hash;
    let ledger = &st.ledger;
    let tip = ledger.height();
    let from = tip.saturating_sub(blocks.saturating_sub(1));

    let mut ledger_items = Vec::new();
    for height in (from..=tip).rev() {
        let Some(block) = ledger
            .hash_at(height)
            .and_then(|h| ledger.block(&h).ok().flatten())
        else {
            continue;
        };
        for tx in &block.transactions {
            let received: u64 = tx
                .outputs
                .iter()
                .filter(|o| o.kind == OutputKind::PayToKeyHash(who))
                .map(|o| units(o.value))
                .sum();
            let spends = tx.inputs.iter().any(
                |i| matches!(&i.unlock, Unlock::Key { pubkey, .. } if pubkey.hash160() == who),
            );
            if received == 0 && !spends {
                continue;
            }
            let kind = if tx.is_coinbase() {
                "coinbase"
            } else if spends
                && tx.outputs.iter().any(|o| {
                    matches!(&o.kind, OutputKind::Data(d)
                        if matches!(Op::parse(d), Some(Op::PegIn { .. })))
                })
            {
                "peg-in"
            } else if spends {
                "sent"
            } else {
                "received"
            };
            ledger_items.push(api::LedgerHistoryItem {
                height,
                txid: tx.txid().to_string(),
                kind: kind.to_string(),
                received_units: received,
            });
        }
    }

    let mut inference_items = Vec::new();
    if let Some(chain) = st.inference.as_ref() {
        let mut at = chain.tip(ledger).clone();
        while at.anchor_height >= from {
            let Some(block) = at.block.clone() else {
                break;
            };
            for tx in block.vm_txs.iter().rev() {
                let sender = tx.sender.hash160();
                let (to, amount) = match &tx.payload {
                    VmPayload::Transfer { to, amount, .. } => (Some(*to), units(*amount)),
                    _ => (None, 0),
                };
                if sender != who && to != Some(who) {
                    continue;
                }
                let what = match &tx.payload {
                    VmPayload::Transfer { .. } if sender == who => "sent".to_string(),
                    VmPayload::Transfer { .. } => "received".to_string(),
                    VmPayload::Deploy { name, .. } => format!("deployed {name}"),
                    VmPayload::Call { name, function, .. } => format!("called {name}.{function}"),
                    VmPayload::Evidence(_) => "reported an equivocation".to_string(),
                };
                inference_items.push(api::InferenceHistoryItem {
                    inference_height: block.header.height,
                    txid: tx.txid().to_string(),
                    kind: what,
                    amount_units: amount,
                    counterparty: to
                        .filter(|t| *t != who)
                        .or((sender != who).then_some(sender))
                        .map(|h: Hash160| Address::new(network, h).to_string()),
                    nonce: tx.nonce,
                });
            }
            match chain.block(&block.header.parent) {
                Some(parent) => at = parent.clone(),
                None => break,
            }
        }
    }
    Json(api::History {
        address: address.to_string(),
        from_height: from,
        to_height: tip,
        ledger: ledger_items,
        inference: inference_items,
    })
}
