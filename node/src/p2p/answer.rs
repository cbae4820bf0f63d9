//! What this node answers peers' sync requests with, read from the chain state on the
//! chain task (the network loop sends the answer on once it is ready).

use fai_inference_chain::block::InferenceBlock;
use fai_primitives::{Encode, Hash256};

use super::protocol::{
    Request, Response, Status, MAX_BLOCKS_PER_REQUEST, MAX_HEADERS,
    MAX_INFERENCE_BLOCKS_PER_RESPONSE, SERVE_BYTES,
};
use crate::chain_task::ChainState;

/// The answer to `request` (`status`: this node's, for a status request).
pub fn answer(s: &ChainState, request: Request, status: Status) -> Response {
    match request {
        Request::Status => Response::Status(status),
        Request::LedgerHeaders { locator } => Response::LedgerHeaders(headers_after(s, &locator)),
        Request::LedgerBlocks { hashes } => Response::LedgerBlocks(blocks(s, &hashes)),
        Request::InferenceBlocks { from_height } => {
            Response::InferenceBlocks(inference_blocks(s, from_height))
        }
        Request::Payloads { block } => Response::Payloads(payloads(s, &block)),
    }
}

/// Headers of our active chain after the first locator hash on it (genesis when none).
pub fn headers_after(s: &ChainState, locator: &[Hash256]) -> Vec<fai_ledger::BlockHeader> {
    let chain = &s.ledger;
    let fork = locator
        .iter()
        .find(|h| chain.is_active(h))
        .and_then(|h| chain.entry(h))
        .map_or(0, |e| e.height);
    let mut headers = Vec::new();
    let mut height = fork.saturating_add(1);
    while headers.len() < MAX_HEADERS && height <= chain.height() {
        match chain.hash_at(height).and_then(|h| chain.entry(&h)) {
            Some(entry) => headers.push(entry.header),
            None => break,
        }
        height = height.saturating_add(1);
    }
    headers
}

/// The inferences of inference block `id` whose sealed text we still keep, with it.
pub fn payloads(s: &ChainState, id: &Hash256) -> Vec<fai_inference_chain::served::SealedServed> {
    let Some(chain) = s.inference.as_ref() else {
        return Vec::new();
    };
    let (Some(block), Some(store)) = (
        chain.block(&id.0).and_then(|r| r.block.as_ref()),
        chain.payloads(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for inf in &block.inferences {
        let txid = inf.stub.txid();
        let receipt = inf.receipt.signing_digest();
        if let Ok(Some(sealed)) = store.sealed(&txid, &receipt) {
            bytes = bytes.saturating_add(sealed.sealed.ciphertext.len());
            out.push(sealed);
        }
        if bytes >= SERVE_BYTES {
            break;
        }
    }
    out
}

pub fn blocks(s: &ChainState, hashes: &[Hash256]) -> Vec<fai_ledger::Block> {
    let chain = &s.ledger;
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for hash in hashes.iter().take(MAX_BLOCKS_PER_REQUEST) {
        match chain.block(hash) {
            Ok(Some(block)) => {
                bytes = bytes.saturating_add(block.size());
                blocks.push(block);
            }
            _ => break,
        }
        if bytes >= SERVE_BYTES {
            break;
        }
    }
    blocks
}

/// Our canonical inference blocks from `from_height` on (as of the ledger tip), at
/// most a response's worth, read from the index of the canonical branch by height: the
/// cost is what is returned, however far back the peer asks from.
pub fn inference_blocks(s: &ChainState, from_height: u32) -> Vec<InferenceBlock> {
    let Some(chain) = s.inference.as_ref() else {
        return Vec::new();
    };
    let mut bytes = 0usize;
    s.heights
        .blocks_from(chain, from_height, MAX_INFERENCE_BLOCKS_PER_RESPONSE)
        .into_iter()
        .take_while(|b| {
            bytes = bytes.saturating_add(b.to_bytes().len());
            bytes <= SERVE_BYTES
        })
        .cloned()
        .collect()
}
