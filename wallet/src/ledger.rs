//! The wallet's ledger transactions: payments, peg-ins to the inference layer, and an
//! inference node's register and commit ops. Each spends the wallet's oldest spendable
//! coins (as the node lists them), pays change back to the wallet, is signed here and
//! submitted through the node's RPC.

use anyhow::{bail, Context, Result};
use fai_api::blocking::Client as Node;
use fai_primitives::{Address, Network, SecretKey};

use crate::keystore::Wallet;

/// Builds, signs and submits a ledger transaction paying `amount` to `to` from the
/// wallet's spendable outputs (oldest first), with change back to the wallet.
pub fn send(
    node: &Node,
    network: Network,
    w: &Wallet,
    to: Address,
    amount: fai_primitives::Amount,
    fee: fai_primitives::Amount,
) -> Result<String> {
    let output = fai_ledger::TxOut::pay(amount, to.key_hash);
    pay(node, network, w, vec![output], fee)
}

/// Moves `amount` from the ledger to the inference layer: a ledger transaction whose data
/// output holds the peg-in op (naming `to`, the wallet itself by default) and the amount,
/// which can never be spent again on the ledger. The inference layer credits it six
/// ledger blocks later.
pub fn peg_in(
    node: &Node,
    network: Network,
    w: &Wallet,
    to: Address,
    amount: fai_primitives::Amount,
    fee: fai_primitives::Amount,
) -> Result<String> {
    if amount.units() == 0 {
        bail!("a peg-in of zero does nothing");
    }
    let op = fai_inference_chain::ops::Op::PegIn {
        address: to.key_hash,
    };
    pay(
        node,
        network,
        w,
        vec![fai_ledger::TxOut::data(amount, op.encode())],
        fee,
    )
}

/// Registers the wallet's key as an inference node on the ledger: a register op with its
/// VRF key (derived from the wallet key, as a node derives its own), its address and the
/// models it serves. Returns the ledger transaction id; the register reference a commit
/// names is (the height of the block that mines it, its index there).
pub fn register(
    node: &Node,
    network: Network,
    w: &Wallet,
    models: &[[u8; 32]],
    fee: fai_primitives::Amount,
) -> Result<String> {
    let vrf = fai_inference_chain::sortition::vrf_key(&w.key);
    let op = fai_inference_chain::ops::build_register(vrf.public().0, w.address.key_hash, models)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    pay(
        node,
        network,
        w,
        vec![fai_ledger::TxOut::data(
            fai_primitives::Amount::ZERO,
            op.encode(),
        )],
        fee,
    )
}

/// Bids `bid` for the sortition of the next ledger block: a commit op naming `register`,
/// the node's inference tip and the wallet's VRF output over the tip's seed, paying the
/// bid equally to the verifier set the next block requires, but the wallet itself (burnt
/// while there is no set, or a set of the wallet alone).
pub fn commit(
    node: &Node,
    network: Network,
    w: &Wallet,
    register: fai_inference_chain::ops::RegisterRef,
    bid: fai_primitives::Amount,
    fee: fai_primitives::Amount,
) -> Result<String> {
    use fai_ledger::TxOut;
    let info = node.inference_chain()?;
    let hex32 = |v: Option<&str>, what: &str| -> Result<[u8; 32]> {
        hex::decode(v.with_context(|| format!("the node gave no {what}"))?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("the node's {what} is not 32 bytes of hex"))
    };
    let seed = hex32(info.next_commit.seed.as_deref(), "seed to prove")?;
    let after = hex32(Some(&info.next_commit.after), "ledger tip")?;
    let parent = hex32(Some(&info.tip.id), "inference tip")?;
    let set: Vec<Address> = info
        .next_commit
        .pays
        .iter()
        .map(|a| Address::parse_for(a, network))
        .collect::<Result<_, _>>()?;
    let vrf = fai_inference_chain::sortition::vrf_key(&w.key);
    let proof = vrf.prove(&seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    let output = fai_vrf::proof_to_hash(&proof).map_err(|e| anyhow::anyhow!("{e}"))?;
    let op = fai_inference_chain::ops::Op::Commit {
        register,
        parent,
        seed: fai_inference_chain::sortition::next_seed(&output),
        after: fai_inference_chain::ops::commit_after(&fai_primitives::Hash256(after)),
    };
    // The committer does not pay itself.
    let set: Vec<Address> = set.into_iter().filter(|a| *a != w.address).collect();
    let mut outputs = Vec::new();
    if set.is_empty() {
        outputs.push(TxOut::data(bid, op.encode()));
    } else {
        let each = fai_primitives::Amount::from_units(bid.units() / set.len() as u64)?;
        outputs.extend(set.iter().map(|a| TxOut::pay(each, a.key_hash)));
        outputs.push(TxOut::data(fai_primitives::Amount::ZERO, op.encode()));
    }
    pay(node, network, w, outputs, fee)
}

/// Pays `output` from the wallet's oldest spendable coins, change back to the wallet,
/// signs and submits the transaction; returns its id.
fn pay(
    node: &Node,
    network: Network,
    w: &Wallet,
    mut outputs: Vec<fai_ledger::TxOut>,
    fee: fai_primitives::Amount,
) -> Result<String> {
    use fai_ledger::{OutPoint, Transaction, TxIn, TxOut, Txid, Unlock};
    let amount = outputs
        .iter()
        .try_fold(fai_primitives::Amount::ZERO, |sum, o| {
            sum.checked_add(o.value)
        })
        .context("the amounts overflow")?;
    let utxos = node.utxos(&w.address.to_string())?;
    let mut coins: Vec<&fai_api::Utxo> = utxos.iter().filter(|u| u.spendable).collect();
    coins.sort_by_key(|u| u.height);
    let need = amount
        .checked_add(fee)
        .context("amount plus fee overflows")?
        .units();
    let (mut picked, mut total) = (Vec::new(), 0u64);
    for u in coins {
        if total >= need {
            break;
        }
        let txid: fai_primitives::Hash256 = u.txid.parse().context("a UTXO's txid")?;
        let value = u.value_units;
        picked.push((OutPoint::new(Txid(txid), u.vout), value));
        total = total.saturating_add(value);
    }
    if total < need {
        bail!(
            "not enough spendable FAI: {} available, {} needed with the fee",
            fai_primitives::Amount::from_units(total).unwrap_or(fai_primitives::Amount::ZERO),
            fai_primitives::Amount::from_units(need).unwrap_or(fai_primitives::Amount::ZERO)
        );
    }
    let change = total - need;
    if change > 0 {
        outputs.push(TxOut::pay(
            fai_primitives::Amount::from_units(change)?,
            w.address.key_hash,
        ));
    }
    let mut tx = Transaction {
        version: 1,
        inputs: picked
            .iter()
            .map(|(op, _)| TxIn {
                prevout: *op,
                sequence: fai_ledger::tx::SEQUENCE_FINAL,
                unlock: Unlock::Key {
                    pubkey: w.key.public_key(),
                    signature: fai_primitives::Signature([0; 64]),
                },
            })
            .collect(),
        outputs,
        lock_time: 0,
    };
    let spent: Vec<(TxOut, SecretKey)> = picked
        .iter()
        .map(|(_, v)| {
            Ok((
                TxOut::pay(fai_primitives::Amount::from_units(*v)?, w.address.key_hash),
                w.key.clone(),
            ))
        })
        .collect::<Result<_>>()?;
    let magic = fai_ledger::ChainParams::for_network(network).magic;
    fai_ledger::sighash::sign_transaction(&mut tx, magic, &spent)
        .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
    let answer = node.submit_transaction(&fai_primitives::codec::Encode::to_bytes(&tx))?;
    Ok(answer.txid)
}
