//! The inference layer over the RPC: the chain's tip and verifier set, accounts (balance,
//! nonce, stake, reputation), the served models with their registry status, and
//! read-only contract calls. Everything is read as of the inference tip that the ledger's
//! active tip sees.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use clarity::vm::types::{CharType, SequenceData};
use fai_api as api;
use fai_clarity::Value;
use fai_inference_chain::chain::InferenceChain;
use fai_inference_chain::vmtx::{value_bytes, value_from_bytes, SignedVmTx};
use fai_ledger::Chainstate;
use fai_primitives::codec::Decode;
use fai_primitives::Address;
use serde_json::{json, Value as JsonValue};

use super::{bad, ApiError, RpcState};
use fai_node::chain_task::ChainState;

/// Contract calls take at most this many arguments.
const MAX_ARGS: usize = 16;

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the inference chain is not open",
    )
}

fn vm_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("contract call failed: {e}"),
    )
}

/// A Clarity value as JSON: integers as numbers when they fit in 64 bits (else strings),
/// buffers as hex, optionals as the value or null, responses as `{"ok": ..}` or `{"err": ..}`.
pub fn value_json(v: &Value) -> JsonValue {
    match v {
        Value::UInt(n) => u64::try_from(*n).map_or_else(|_| json!(n.to_string()), |n| json!(n)),
        Value::Int(n) => i64::try_from(*n).map_or_else(|_| json!(n.to_string()), |n| json!(n)),
        Value::Bool(b) => json!(b),
        Value::Optional(o) => o.data.as_deref().map_or(JsonValue::Null, value_json),
        Value::Response(r) => {
            let key = if r.committed { "ok" } else { "err" };
            json!({ key: value_json(&r.data) })
        }
        Value::Tuple(t) => JsonValue::Object(
            t.data_map
                .iter()
                .map(|(k, v)| (k.to_string(), value_json(v)))
                .collect(),
        ),
        Value::Sequence(SequenceData::List(l)) => {
            JsonValue::Array(l.data.iter().map(value_json).collect())
        }
        Value::Sequence(SequenceData::Buffer(b)) => json!(hex::encode(&b.data)),
        Value::Sequence(SequenceData::String(CharType::ASCII(s))) => {
            json!(String::from_utf8_lossy(&s.data))
        }
        Value::Sequence(SequenceData::String(CharType::UTF8(s))) => {
            json!(String::from_utf8_lossy(&s.data.concat()))
        }
        Value::Principal(_) | Value::CallableContract(_) => json!(v.to_string()),
    }
}

/// The inference nodes registered by register ops on the active ledger chain (newest
/// last, one per address): address, model id prefixes, registration height.
pub fn registered_nodes(
    chain: &InferenceChain,
    ledger: &Chainstate,
) -> Vec<(fai_primitives::Hash160, Vec<[u8; 8]>, u32)> {
    let mut nodes: Vec<(fai_primitives::Hash160, Vec<[u8; 8]>, u32)> = Vec::new();
    for height in 0..=ledger.height() {
        let Some(record) = ledger
            .hash_at(height)
            .and_then(|h| chain.tracker().record(&h))
        else {
            continue;
        };
        for r in &record.registers {
            nodes.retain(|(a, _, _)| *a != r.address);
            nodes.push((r.address, r.models.clone(), r.at.height));
        }
    }
    nodes
}

/// Whether the model registry approves `model` as of the tip (true when the inference
/// chain is not open: the node then has no registry to consult).
pub fn model_approved(st: &ChainState, model: [u8; 32]) -> bool {
    let Ok(id) = Value::buff_from(model.to_vec()) else {
        return false;
    };
    let Some(chain) = st.inference.as_ref() else {
        return true;
    };
    read(
        chain,
        &st.ledger,
        [0; 20],
        "model-registry",
        "is-approved",
        &[id],
    )
    .is_ok_and(|v| v == Value::Bool(true))
}

/// Runs `f` on the inference chain and the ledger, as of the ledger's tip, on the
/// chain task.
async fn with_chain<T: Send + 'static>(
    s: &RpcState,
    f: impl FnOnce(&InferenceChain, &Chainstate) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    s.node
        .chain
        .call(move |st| {
            let chain = st.inference.as_ref().ok_or_else(unavailable)?;
            f(chain, &st.ledger)
        })
        .await
        .map_err(super::stopping)?
}

fn read(
    chain: &InferenceChain,
    ledger: &Chainstate,
    issuer: [u8; 20],
    contract: &str,
    function: &str,
    args: &[Value],
) -> Result<Value, ApiError> {
    let tip = chain.tip(ledger).exec_id;
    chain
        .vm()
        .call_read_only(&tip, ledger, [0; 20], issuer, contract, function, args)
        .map(|(v, _)| v)
        .map_err(vm_error)
}

#[utoipa::path(get, path = "/v2/inference-chain", tag = "inference", responses((status = 200, description = "the tip (id, height, ledger anchor, cycle, producer), genesis id, the current cycle's verifier set, the liquid supply, and what a commit in the next ledger block proves (seed), pays (addresses) and follows (after: the ledger tip)", body = api::InferenceChainInfo), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn chain_info(
    State(s): State<Arc<RpcState>>,
) -> Result<Json<api::InferenceChainInfo>, ApiError> {
    let network = s.network;
    with_chain(&s, move |chain, ledger| {
        let tip = chain.tip(ledger);
        let set = chain.verifier_set(ledger, tip, tip.cycle);
        let ledger_tip = ledger.tip_hash();
        let next_seed = chain.seed_after(&ledger_tip).map(hex::encode);
        let pays: Vec<String> = chain
            .commit_set(ledger, &ledger_tip)
            .iter()
            .map(|h| Address::new(network, *h).to_string())
            .collect();
        let supply = chain
            .vm()
            .liquid_supply(&tip.exec_id, ledger)
            .map_err(vm_error)?;
        Ok(Json(api::InferenceChainInfo {
            tip: api::InferenceTip {
                id: hex::encode(tip.id),
                height: tip.height,
                ledger_anchor: tip.anchor.to_string(),
                ledger_anchor_height: tip.anchor_height,
                cycle: tip.cycle,
                producer: Address::new(network, fai_primitives::Hash160(tip.producer)).to_string(),
            },
            genesis: hex::encode(chain.genesis_id()),
            verifier_set: set
                .iter()
                .map(|h| Address::new(network, *h).to_string())
                .collect(),
            liquid_supply_units: u64::try_from(supply).unwrap_or(u64::MAX),
            next_commit: api::NextCommit {
                seed: next_seed,
                pays,
                after: hex::encode(ledger_tip.0),
            },
        }))
    })
    .await
}

#[utoipa::path(get, path = "/v2/inference-chain/blocks/{id}", tag = "inference", params(("id" = String, Path, description = "a height on the canonical inference chain, or a block id (hex)", pattern = "^([0-9]{1,10}|[0-9a-fA-F]{64})$")), responses((status = 200, description = "the header fields, VM transaction ids, inferences, vote commitments and votes carried", body = api::InferenceBlock), (status = 400, description = "neither a height nor an id", body = api::ErrorBody), (status = 404, description = "no such block", body = api::ErrorBody), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn block(
    State(s): State<Arc<RpcState>>,
    Path(id): Path<String>,
) -> Result<Json<api::InferenceBlock>, ApiError> {
    let network = s.network;
    let by_height = !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit());
    let wanted: Option<[u8; 32]> = if by_height {
        None
    } else {
        Some(
            hex::decode(&id)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(format!("{id:?} is neither a height nor a block id")))?,
        )
    };
    with_chain(&s, move |chain, ledger| {
        let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no inference block {id}"));
        let record = match wanted {
            Some(block_id) => chain.block(&block_id).cloned().ok_or_else(not_found)?,
            None => {
                let height: u32 = id.parse().map_err(|_| bad("height out of range"))?;
                let mut at = chain.tip(ledger).clone();
                while at.height > height {
                    let parent = at.block.as_ref().map(|b| b.header.parent);
                    match parent.and_then(|p| chain.block(&p)) {
                        Some(p) => at = p.clone(),
                        None => break,
                    }
                }
                if at.height != height {
                    return Err(not_found());
                }
                at
            }
        };
        let body = record.block.as_ref();
        Ok(Json(api::InferenceBlock {
            id: hex::encode(record.id),
            height: record.height,
            parent: body.map(|b| hex::encode(b.header.parent)),
            ledger_anchor: record.anchor.to_string(),
            ledger_anchor_height: record.anchor_height,
            cycle: record.cycle,
            producer: Address::new(network, fai_primitives::Hash160(record.producer)).to_string(),
            state_root: body.map(|b| hex::encode(b.header.state_root)),
            vm_transactions: body.map_or(Vec::new(), |b| {
                b.vm_txs.iter().map(|t| t.txid().to_string()).collect()
            }),
            inferences: body.map_or(0, |b| b.inferences.len()),
            commits: body.map_or(0, |b| b.commits.len()),
            votes: body.map_or(0, |b| b.votes.len()),
            votes_by_block: body.map_or(Vec::new(), votes_by_block),
        }))
    })
    .await
}

/// The commitments and votes a block carries, counted per block voted on, in the order
/// they come.
fn votes_by_block(block: &fai_inference_chain::block::InferenceBlock) -> Vec<api::VotesOnBlock> {
    let mut out: Vec<api::VotesOnBlock> = Vec::new();
    let on = block
        .commits
        .iter()
        .map(|c| (c.block, true))
        .chain(block.votes.iter().map(|v| (v.block, false)));
    for (voted, commit) in on {
        let id = hex::encode(voted.0);
        let at = match out.iter().position(|v| v.block == id) {
            Some(at) => at,
            None => {
                out.push(api::VotesOnBlock {
                    block: id,
                    commits: 0,
                    votes: 0,
                });
                out.len().saturating_sub(1)
            }
        };
        if let Some(entry) = out.get_mut(at) {
            if commit {
                entry.commits = entry.commits.saturating_add(1);
            } else {
                entry.votes = entry.votes.saturating_add(1);
            }
        }
    }
    out
}

#[utoipa::path(get, path = "/v2/inference-nodes", tag = "inference", responses((status = 200, description = "inference nodes registered on the active ledger chain: address, models served (id prefixes), node-registry entry (price, bond), reputation, and the sealing key requests to it are sealed to", body = Vec<api::InferenceNode>), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn inference_nodes(
    State(s): State<Arc<RpcState>>,
) -> Result<Json<Vec<api::InferenceNode>>, ApiError> {
    // The list changes only with a block of either chain: while both tips are the ones
    // it was read at, it is answered again without the chain task (a wallet asks before
    // every request, and each read waited behind the blocks the task was accepting).
    let snapshot = s.node.snapshot();
    let now = (snapshot.ledger_tip, snapshot.inference_tip);
    if let Some(known) = s.inference_nodes_at(&now) {
        return Ok(Json(known));
    }
    let network = s.network;
    let (at, out) = with_chain(&s, move |chain, ledger| {
        let at = (ledger.tip_hash(), Some(chain.tip(ledger).id));
        let mut out = Vec::new();
        for (address, models, height) in registered_nodes(chain, ledger) {
            let who = Value::Principal(chain.vm().principal(address.0));
            let entry = read(
                chain,
                ledger,
                [0; 20],
                "node-registry",
                "get-node",
                std::slice::from_ref(&who),
            )?;
            let score = read(chain, ledger, [0; 20], "reputation", "get-score", &[who])?;
            out.push(api::InferenceNode {
                address: Address::new(network, address).to_string(),
                registered_at: height,
                models: models.iter().map(hex::encode).collect(),
                registry: value_json(&entry),
                reputation: value_json(&score),
                sealing_key: chain
                    .sealing_key(ledger, chain.tip(ledger), address)
                    .map(|k| hex::encode(k.0)),
            });
        }
        Ok((at, out))
    })
    .await?;
    s.keep_inference_nodes(at, out.clone());
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v2/inference-chain/accounts/{address}", tag = "inference", params(("address" = String, Path, description = "an address of this network")), responses((status = 200, description = "balance, nonce, stake and reputation on the inference layer", body = api::InferenceAccount), (status = 400, description = "not an address of this network", body = api::ErrorBody), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn account(
    State(s): State<Arc<RpcState>>,
    Path(text): Path<String>,
) -> Result<Json<api::InferenceAccount>, ApiError> {
    let address = Address::parse_for(&text, s.network).map_err(|e| bad(e.to_string()))?;
    let key_hash = address.key_hash.0;
    let call = s.node.chain.call(move |st| {
        let (chain, ledger) = (st.inference.as_ref().ok_or_else(unavailable)?, &st.ledger);
        let tip = chain.tip(ledger).exec_id;
        let (balance, nonce) = chain
            .vm()
            .account(&tip, ledger, key_hash)
            .map_err(vm_error)?;
        let who = Value::Principal(chain.vm().principal(key_hash));
        let stake = read(
            chain,
            ledger,
            [0; 20],
            "staking",
            "get-stake",
            std::slice::from_ref(&who),
        )?;
        let reputation = read(
            chain,
            ledger,
            [0; 20],
            "reputation",
            "get-record",
            std::slice::from_ref(&who),
        )?;
        let node = read(chain, ledger, [0; 20], "node-registry", "get-node", &[who])?;
        let next_nonce = st.next_nonce(key_hash, nonce);
        Ok(Json(api::InferenceAccount {
            address: address.to_string(),
            balance_units: u64::try_from(balance).unwrap_or(u64::MAX),
            nonce,
            next_nonce,
            stake: value_json(&stake),
            reputation: value_json(&reputation),
            inference_node: value_json(&node),
        }))
    });
    call.await.map_err(super::stopping)?
}

#[utoipa::path(post, path = "/v2/inference-chain/transactions", tag = "inference", request_body(content = api::TxSubmission, description = "a signed VM transaction in hex"), responses((status = 200, description = "the transaction id; it waits for an inference block", body = api::TxAccepted), (status = 400, description = "malformed, badly signed, wrong chain, nonce used, fee too low or unpayable", body = api::ErrorBody), (status = 409, description = "already waiting", body = api::ErrorBody), (status = 413, description = "body over rpc.max_body_bytes", body = api::ErrorBody), (status = 503, description = "the pool is full, or the inference chain is not open", body = api::ErrorBody)))]
pub async fn submit_vm_transaction(
    State(s): State<Arc<RpcState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::TxAccepted>, ApiError> {
    use fai_node::vm_mempool::VmMempoolError as E;
    let bytes = super::hex_field(
        body,
        "the body must be {\"tx\": \"<hex of a signed VM transaction>\"}",
    )?;
    let tx = SignedVmTx::from_bytes(&bytes).map_err(|e| bad(format!("bad VM transaction: {e}")))?;
    let chain_id = s.network.chain_id();
    let id = s
        .node
        .chain
        .call(move |st| {
            let chain = st.inference.as_ref().ok_or_else(unavailable)?;
            let id = st
                .vm_pool
                .accept(tx, chain_id, chain, &st.ledger, &st.results)
                .map_err(|e| match e {
                    E::Known(_) | E::NonceTaken(_) => {
                        ApiError::new(StatusCode::CONFLICT, e.to_string())
                    }
                    E::Full => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                    _ => bad(format!("VM transaction refused: {e}")),
                })?;
            st.publish(fai_node::p2p::Topic::VmTx, bytes);
            Ok(id)
        })
        .await
        .map_err(super::stopping)??;
    Ok(Json(api::TxAccepted {
        txid: id.to_string(),
    }))
}

#[utoipa::path(get, path = "/v2/models", tag = "inference", responses((status = 200, description = "the models this node serves, with their registry entry (null when not registered) and whether they are approved", body = Vec<api::ModelEntry>), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn models(
    State(s): State<Arc<RpcState>>,
) -> Result<Json<Vec<api::ModelEntry>>, ApiError> {
    let engines = s.engines.clone();
    with_chain(&s, move |chain, ledger| {
        let mut out = Vec::new();
        for e in &engines.engines {
            let model = &e.model;
            let id = Value::buff_from(model.id.0.to_vec()).map_err(vm_error)?;
            let entry = read(
                chain,
                ledger,
                [0; 20],
                "model-registry",
                "get-model",
                std::slice::from_ref(&id),
            )?;
            let approved = read(
                chain,
                ledger,
                [0; 20],
                "model-registry",
                "is-approved",
                &[id],
            )?;
            out.push(api::ModelEntry {
                name: model.name.clone(),
                id: model.id.to_string(),
                context_length: model.model.config.context_length,
                served_here: true,
                registry: value_json(&entry),
                approved: value_json(&approved),
            });
        }
        Ok(Json(out))
    })
    .await
}

#[utoipa::path(post, path = "/v2/contracts/call-read", tag = "inference", request_body(content = api::CallReadRequest, description = "the contract (a boot contract's name, or ADDRESS.NAME), the function and its arguments"), responses((status = 200, description = "the result, as hex and as JSON", body = api::CallReadResult), (status = 400, description = "malformed request, unknown contract or function, or a failing call", body = api::ErrorBody), (status = 503, description = "the inference chain is not open", body = api::ErrorBody)))]
pub async fn call_read(
    State(s): State<Arc<RpcState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::CallReadResult>, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let v: JsonValue =
        serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
    let usage = "the body must be {\"contract\": \"...\", \"function\": \"...\", \"args\": [\"<hex>\", ...]}";
    if !v.is_object() {
        return Err(bad(usage));
    }
    let api::CallReadRequest {
        contract,
        function,
        args: raw_args,
    } = serde_json::from_value(v).map_err(|_| bad(usage))?;
    if raw_args.len() > MAX_ARGS {
        return Err(bad(format!("at most {MAX_ARGS} arguments")));
    }
    let mut args = Vec::with_capacity(raw_args.len());
    for (i, a) in raw_args.iter().enumerate() {
        let bytes = hex::decode(a).map_err(|_| bad(format!("argument {i} is not hex")))?;
        args.push(value_from_bytes(&bytes).map_err(|e| bad(format!("argument {i}: {e}")))?);
    }
    let (issuer, name) = match contract.split_once('.') {
        None => ([0; 20], contract.as_str()),
        Some((address, name)) => (
            Address::parse_for(address, s.network)
                .map_err(|e| bad(format!("contract issuer: {e}")))?
                .key_hash
                .0,
            name,
        ),
    };
    let name = name.to_owned();
    with_chain(&s, move |chain, ledger| {
        let result = read(chain, ledger, issuer, &name, &function, &args)?;
        Ok(Json(api::CallReadResult {
            result: hex::encode(value_bytes(&result)),
            json: value_json(&result),
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clarity::vm::types::PrincipalData;

    #[test]
    fn clarity_values_become_readable_json() {
        assert_eq!(value_json(&Value::UInt(5)), json!(5));
        assert_eq!(
            value_json(&Value::UInt(u128::MAX)),
            json!(u128::MAX.to_string())
        );
        assert_eq!(value_json(&Value::none()), JsonValue::Null);
        assert_eq!(
            value_json(&Value::some(Value::Bool(true)).unwrap()),
            json!(true)
        );
        assert_eq!(
            value_json(&Value::okay(Value::Int(-3)).unwrap()),
            json!({"ok": -3})
        );
        assert_eq!(
            value_json(&Value::buff_from(vec![0xab, 0x01]).unwrap()),
            json!("ab01")
        );
        let text = Value::string_ascii_from_bytes(b"replay".to_vec()).unwrap();
        assert_eq!(value_json(&text), json!("replay"));
        let p = PrincipalData::parse("ST000000000000000000002AMW42H").unwrap();
        assert!(value_json(&Value::Principal(p))
            .as_str()
            .unwrap()
            .starts_with("ST"));
    }
}
