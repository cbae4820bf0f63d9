//! The wallet on the inference layer: VM transactions (transfers, contract calls) with
//! the account's next nonce, and inference: a signed request whose answer streams back,
//! ending in the serving node's receipt, checked against the answer.

use anyhow::{bail, Context, Result};
use fai_api::blocking::Client as Node;
use fai_primitives::Address;

use crate::keystore::Wallet;

/// Signs a VM transaction of the inference layer with the wallet's next nonce (the
/// account's, past the transactions already waiting) and submits it; returns its id.
pub fn vm_send(
    node: &Node,
    w: &Wallet,
    payload: fai_inference_chain::vmtx::VmPayload,
    fee: fai_primitives::Amount,
) -> Result<String> {
    let chain_id = node.info()?.chain_id;
    let nonce = next_nonce(node, &w.address)?;
    let tx = fai_inference_chain::vmtx::SignedVmTx::new(&w.key, nonce, chain_id, fee, payload);
    let answer = node.submit_vm_transaction(&fai_primitives::codec::Encode::to_bytes(&tx))?;
    Ok(answer.txid)
}

/// A call of a boot contract's public function with Clarity arguments.
pub fn boot_call(
    contract: &str,
    function: &str,
    args: &[fai_clarity::Value],
) -> fai_inference_chain::vmtx::VmPayload {
    fai_inference_chain::vmtx::VmPayload::Call {
        issuer: fai_primitives::Hash160([0; 20]),
        name: contract.into(),
        function: function.into(),
        args: args
            .iter()
            .map(fai_inference_chain::vmtx::value_bytes)
            .collect(),
    }
}

/// What `wallet infer` asks for.
pub struct InferRequest {
    pub system: String,
    /// Earlier turns of the conversation.
    pub context: Vec<fai_inference_chain::types::Turn>,
    pub prompt: String,
    /// Hex model id; none: the node's first model.
    pub model: Option<String>,
    pub max_fee: fai_primitives::Amount,
    pub max_tokens: u32,
    pub temperature: f32,
    pub seed: u64,
    pub nonce: u64,
}

/// The next free nonce of `address` on the inference layer, as the node counts it: the
/// account's nonce past every VM transaction and inference of it still waiting.
pub fn next_nonce(node: &Node, address: &Address) -> Result<u64> {
    Ok(node.inference_account(&address.to_string())?.next_nonce)
}

/// What `wallet infer` gets back: the receipt (with the answer's text, its signature
/// checked against the answer) and, when the node relayed the request, where to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub receipt: fai_api::Receipt,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed: Option<fai_api::Relayed>,
}

/// Signs an inference transaction, posts it to the node, calls `on_text` with each piece
/// of the answer as it streams, and returns the receipt (JSON, its signature checked).
pub fn infer(
    node: &Node,
    w: &Wallet,
    req: &InferRequest,
    mut on_text: impl FnMut(&str),
) -> Result<Answer> {
    use fai_inference_chain::types::{InferenceStub, InferenceTx, Prompt, ResultReceipt, Sampling};
    use fai_primitives::codec::{Decode, Encode};
    let info = node.info()?;
    let model_hex = match &req.model {
        Some(m) => m.clone(),
        None => info
            .models
            .first()
            .map(|m| m.id.clone())
            .context("the node serves no model")?,
    };
    let model: [u8; 32] = hex::decode(&model_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("--model must be 64 hex digits")?;
    let chain_id = info.chain_id;
    if !(0.0..=5.0).contains(&req.temperature) {
        bail!("--temperature must be between 0 and 5");
    }
    let prompt = Prompt {
        system: req.system.clone(),
        context: req.context.clone(),
        input: req.prompt.clone(),
    };
    let mut stub = InferenceStub {
        sender: w.key.public_key(),
        nonce: req.nonce,
        chain_id,
        model,
        prompt_hash: prompt.hash(),
        sampling: Sampling {
            max_tokens: req.max_tokens,
            temperature_milli: (req.temperature * 1000.0).round() as u32,
            top_p_milli: 1000,
            top_k: 40,
            seed: req.seed,
            stop: vec![],
        },
        max_fee: req.max_fee,
        expiry: u32::MAX,
        signature: fai_primitives::Signature([0; 64]),
    };
    stub.sign(&w.key);
    let tx = InferenceTx { stub, prompt };
    let txid = tx.stub.txid();
    // Sealed to the node that will serve it: only that node reads the prompt, and only
    // this wallet the answer.
    let (to, key) = serving_node(node, &info, &tx.stub)?;
    let (sealed, reply) = fai_inference_chain::sealed_request::SealedRequest::seal(&tx, to, &key)
        .context("cannot seal the request")?;
    let mut receipt = None;
    let mut failure = None;
    let mut relayed = None;
    let mut opened = 0u64;
    node.inference_sealed(&sealed.to_bytes(), |event| {
        let event = match event {
            fai_api::InferenceEvent::Sealed(e) => {
                let inner = hex::decode(&e.sealed)
                    .ok()
                    .and_then(|bytes| reply.open(opened, &bytes).ok())
                    .ok_or_else(|| "a sealed event that does not open".to_string())
                    .and_then(|plain| fai_api::InferenceEvent::from_sealed_plaintext(&plain));
                opened = opened.saturating_add(1);
                match inner {
                    Ok(inner) => inner,
                    Err(why) => {
                        failure = Some(format!("the answer is not the serving node's: {why}"));
                        return false;
                    }
                }
            }
            // From the serving node an answer comes sealed: text or a receipt in the
            // clear is someone else's.
            fai_api::InferenceEvent::Token(_) | fai_api::InferenceEvent::Receipt(_) => {
                failure = Some("an answer event in the clear, refused".into());
                return false;
            }
            other => other,
        };
        match event {
            fai_api::InferenceEvent::Token(t) => on_text(&t.text),
            fai_api::InferenceEvent::Receipt(r) => receipt = Some(r),
            fai_api::InferenceEvent::Relayed(r) => relayed = Some(r),
            fai_api::InferenceEvent::Error(e) => failure = Some(e.error),
            fai_api::InferenceEvent::Sealed(_) => {
                failure = Some("a sealed event inside one".into())
            }
        }
        true
    })?;
    // A relay's error in the clear after the serving node's sealed receipt does not
    // undo the answer.
    let receipt = match (receipt, failure) {
        (Some(receipt), _) => receipt,
        (None, Some(e)) => bail!("the inference failed: {e}"),
        (None, None) => bail!("the node closed the stream without a receipt"),
    };
    let r = hex::decode(&receipt.receipt)
        .ok()
        .and_then(|b| ResultReceipt::from_bytes(&b).ok())
        .context("the node's receipt does not decode")?;
    let text = receipt.text.as_deref().unwrap_or_default();
    if !r.signature_valid() || r.tx != txid || r.output_hash != ResultReceipt::hash_output(text) {
        bail!("the node's receipt does not match the answer");
    }
    Ok(Answer { receipt, relayed })
}

/// The node to seal `stub`'s request to, with its sealing key, as the node the wallet
/// talks to (`here`) would route it: itself when the registry lists it for the model,
/// else the cheapest registered node for the model whose price fits the max fee (and that
/// published a sealing key), else itself (it serves the model unregistered, or refuses
/// the request with the reason).
fn serving_node(
    node: &Node,
    here: &fai_api::NodeInfo,
    stub: &fai_inference_chain::types::InferenceStub,
) -> Result<(fai_primitives::Hash160, fai_primitives::seal::SealingKey)> {
    let prefix = hex::encode(stub.model.get(..8).unwrap_or_default());
    let mut best: Option<(bool, u64, fai_primitives::Hash160, [u8; 32])> = None;
    let mut without_key = 0usize;
    for n in node.inference_nodes()? {
        if !n.models.contains(&prefix) {
            continue;
        }
        // Leaving: no longer served (the relay would refuse it).
        if !n.registry["withdraw-at"].is_null() {
            continue;
        }
        let price = n.registry["price"].as_u64().unwrap_or(u64::MAX);
        let owed = fai_inference_chain::settlement::fee(u64::MAX, price, stub.sampling.max_tokens);
        if owed > stub.max_fee.units() {
            continue;
        }
        let Some(key) = n
            .sealing_key
            .as_deref()
            .and_then(|k| hex::decode(k).ok())
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            without_key += 1;
            continue;
        };
        let Ok(address) = n.address.parse::<Address>() else {
            continue;
        };
        // This node first, then the cheapest.
        let rank = (n.address != here.address, price);
        if best.as_ref().is_none_or(|b| rank < (b.0, b.1)) {
            best = Some((rank.0, rank.1, address.key_hash, key));
        }
    }
    if let Some((_, _, to, key)) = best {
        return Ok((to, fai_primitives::seal::SealingKey(key)));
    }
    let model_hex = hex::encode(stub.model);
    if without_key > 0 && !here.models.iter().any(|m| m.id == model_hex) {
        bail!(
            "no node serving this model within the max fee has published its sealing key yet (it does with its registration: wait a few blocks)"
        );
    }
    // Else this node, which serves it or says why it does not.
    let address = here
        .address
        .parse::<Address>()
        .context("the node's address does not parse")?;
    let key = hex::decode(&here.sealing_key)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .context("the node's sealing key is not 32 bytes of hex")?;
    Ok((address.key_hash, fai_primitives::seal::SealingKey(key)))
}
