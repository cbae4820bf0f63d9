//! Wallets: a 24-word BIP39 mnemonic is the wallet; everything else is derived from it.
//!
//! - Key: the first 32 bytes of HMAC-SHA512(key "fai wallet seed", BIP39 seed of the
//!   mnemonic with an empty BIP39 passphrase). The same key signs on both layers and has
//!   the same address on both.
//! - Keystore `wallets/NAME.json`, readable by its owner only (0600): the address in the
//!   clear, and the mnemonic encrypted with ChaCha20-Poly1305 under a key stretched from
//!   the passphrase by Argon2id (64 MiB, 3 passes; parameters and salt stored, so a later
//!   build can raise them for new files and still open old ones).
//! - A keystore is never overwritten, and a wrong passphrase is told apart from a damaged
//!   file only by the authentication tag: both say the file cannot be opened with it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use bip39::Mnemonic;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fai_api::blocking::Client as Node;
use fai_primitives::{Address, Network, SecretKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha512;

/// The environment variable a passphrase may come from (for scripts).
pub const PASSPHRASE_ENV: &str = "FAI_WALLET_PASSPHRASE";
/// The shortest passphrase accepted for a new keystore.
pub const MIN_PASSPHRASE: usize = 8;

/// Argon2id memory (KiB) and passes for new keystores.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfParams {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherParams {
    algorithm: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keystore {
    version: u32,
    network: String,
    address: String,
    kdf: KdfParams,
    cipher: CipherParams,
}

/// An opened wallet.
pub struct Wallet {
    pub key: SecretKey,
    pub address: Address,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address)
    }
}

/// The key of a mnemonic.
pub fn derive_key(mnemonic: &Mnemonic) -> Result<SecretKey> {
    let seed = mnemonic.to_seed("");
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(b"fai wallet seed").context("HMAC key")?;
    mac.update(&seed);
    let out = mac.finalize().into_bytes();
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&out[..32]);
    SecretKey::from_bytes(&secret).context("the mnemonic derives an invalid key; make another")
}

/// The path of wallet `name` in `data_dir`.
pub fn wallet_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("wallet name {name:?} may use only letters, digits, '-' and '_' (at most 64)");
    }
    Ok(data_dir.join("wallets").join(format!("{name}.json")))
}

fn stretch(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    let params =
        Params::new(m, t, p, Some(32)).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(key)
}

fn write_keystore(path: &Path, store: &Keystore) -> Result<()> {
    let dir = path.parent().context("wallet path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (a wallet is never overwritten; choose another --name)",
            path.display()
        )
    })?;
    file.write_all(serde_json::to_string_pretty(store)?.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Encrypts `mnemonic` under `passphrase` into a new keystore `name`.
pub fn save(
    data_dir: &Path,
    name: &str,
    network: Network,
    mnemonic: &Mnemonic,
    passphrase: &str,
) -> Result<Wallet> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        bail!("the passphrase must have at least {MIN_PASSPHRASE} characters");
    }
    let path = wallet_path(data_dir, name)?;
    if path.exists() {
        bail!(
            "wallet {} already exists; choose another --name",
            path.display()
        );
    }
    let key = derive_key(mnemonic)?;
    let address = Address::from_public_key(network, &key.public_key());
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let secret = stretch(passphrase, &salt, M_COST_KIB, T_COST, 1)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&secret));
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), mnemonic.to_string().as_bytes())
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let store = Keystore {
        version: 1,
        network: network.to_string(),
        address: address.to_string(),
        kdf: KdfParams {
            algorithm: "argon2id".into(),
            m_cost_kib: M_COST_KIB,
            t_cost: T_COST,
            p_cost: 1,
            salt: hex::encode(salt),
        },
        cipher: CipherParams {
            algorithm: "chacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        },
    };
    write_keystore(&path, &store)?;
    Ok(Wallet { key, address })
}

/// A new wallet: a fresh 24-word mnemonic, saved under `passphrase`. Returns the wallet
/// and the mnemonic, which the user must write down.
pub fn create(
    data_dir: &Path,
    name: &str,
    network: Network,
    passphrase: &str,
) -> Result<(Wallet, Mnemonic)> {
    let mut entropy = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut entropy);
    let mnemonic = Mnemonic::from_entropy(&entropy).context("mnemonic")?;
    let wallet = save(data_dir, name, network, &mnemonic, passphrase)?;
    Ok((wallet, mnemonic))
}

/// Imports a mnemonic as wallet `name`.
pub fn import(
    data_dir: &Path,
    name: &str,
    network: Network,
    phrase: &str,
    passphrase: &str,
) -> Result<Wallet> {
    let mnemonic = Mnemonic::parse_normalized(phrase.trim())
        .map_err(|e| anyhow::anyhow!("not a valid BIP39 mnemonic: {e}"))?;
    save(data_dir, name, network, &mnemonic, passphrase)
}

fn read_keystore(data_dir: &Path, name: &str) -> Result<(PathBuf, Keystore)> {
    let path = wallet_path(data_dir, name)?;
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read wallet {}; make one with `infer-node wallet new`",
            path.display()
        )
    })?;
    let store: Keystore = serde_json::from_str(&text)
        .with_context(|| format!("wallet {} is damaged", path.display()))?;
    if store.version != 1
        || store.kdf.algorithm != "argon2id"
        || store.cipher.algorithm != "chacha20poly1305"
    {
        bail!(
            "wallet {} uses a format this build cannot read",
            path.display()
        );
    }
    Ok((path, store))
}

/// The address of wallet `name` (no passphrase needed).
pub fn address(data_dir: &Path, name: &str, network: Network) -> Result<Address> {
    let (path, store) = read_keystore(data_dir, name)?;
    Address::parse_for(&store.address, network)
        .with_context(|| format!("wallet {}", path.display()))
}

/// Opens wallet `name` with `passphrase`.
pub fn open(data_dir: &Path, name: &str, network: Network, passphrase: &str) -> Result<Wallet> {
    let (path, store) = read_keystore(data_dir, name)?;
    let damaged = || format!("wallet {} is damaged", path.display());
    let salt = hex::decode(&store.kdf.salt).with_context(damaged)?;
    let nonce = hex::decode(&store.cipher.nonce).with_context(damaged)?;
    let ciphertext = hex::decode(&store.cipher.ciphertext).with_context(damaged)?;
    if nonce.len() != 12 || store.kdf.m_cost_kib > 4 * 1024 * 1024 || store.kdf.t_cost > 100 {
        bail!("{}", damaged());
    }
    let secret = stretch(
        passphrase,
        &salt,
        store.kdf.m_cost_kib,
        store.kdf.t_cost,
        store.kdf.p_cost,
    )?;
    let plain = ChaCha20Poly1305::new(Key::from_slice(&secret))
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| {
            anyhow::anyhow!(
                "wrong passphrase for wallet {} (or the file is damaged)",
                path.display()
            )
        })?;
    let phrase = String::from_utf8(plain).map_err(|_| anyhow::anyhow!("{}", damaged()))?;
    let mnemonic =
        Mnemonic::parse_normalized(&phrase).map_err(|_| anyhow::anyhow!("{}", damaged()))?;
    let key = derive_key(&mnemonic)?;
    let address = Address::from_public_key(network, &key.public_key());
    if address.to_string() != store.address {
        bail!(
            "wallet {} holds a key for another address or network",
            path.display()
        );
    }
    Ok(Wallet { key, address })
}

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
    let mut receipt = None;
    let mut failure = None;
    let mut relayed = None;
    node.inference(&tx.to_bytes(), |event| {
        match event {
            fai_api::InferenceEvent::Token(t) => on_text(&t.text),
            fai_api::InferenceEvent::Receipt(r) => receipt = Some(r),
            fai_api::InferenceEvent::Relayed(r) => relayed = Some(r),
            fai_api::InferenceEvent::Error(e) => failure = Some(e.error),
        }
        true
    })?;
    if let Some(e) = failure {
        bail!("the inference failed: {e}");
    }
    let receipt = receipt.context("the node closed the stream without a receipt")?;
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

/// What `wallet sign-message` signs: sha256d("FAI signed message:\n" ‖ message).
pub fn message_digest(message: &str) -> fai_primitives::Hash256 {
    fai_primitives::Hash256::sha256d_parts(&[b"FAI signed message:\n", message.as_bytes()])
}

/// The passphrase: from [`PASSPHRASE_ENV`], or asked on the terminal (twice for a new one).
pub fn passphrase(confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    let first = rpassword::prompt_password("wallet passphrase: ")
        .with_context(|| format!("cannot read a passphrase; set {PASSPHRASE_ENV}"))?;
    if confirm {
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            bail!("the passphrases differ");
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art";

    #[test]
    fn a_wallet_is_its_mnemonic_and_its_keystore_needs_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mnemonic) = create(dir.path(), "main", Network::Devnet, "correct horse").unwrap();
        assert_eq!(mnemonic.word_count(), 24);
        let path = wallet_path(dir.path(), "main").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&mnemonic.to_string()[..20]),
            "the mnemonic is not in the clear"
        );
        assert_eq!(
            address(dir.path(), "main", Network::Devnet).unwrap(),
            w.address
        );
        let opened = open(dir.path(), "main", Network::Devnet, "correct horse").unwrap();
        assert_eq!(opened.address, w.address);
        let err = open(dir.path(), "main", Network::Devnet, "wrong horse").unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        // Never overwritten; short passphrases and bad names refused.
        assert!(create(dir.path(), "main", Network::Devnet, "correct horse").is_err());
        assert!(create(dir.path(), "short", Network::Devnet, "1234567").is_err());
        assert!(create(dir.path(), "../escape", Network::Devnet, "correct horse").is_err());
        // The same mnemonic imported elsewhere gives the same key and address.
        let other = tempfile::tempdir().unwrap();
        let again = import(
            other.path(),
            "copy",
            Network::Devnet,
            &mnemonic.to_string(),
            "another one",
        )
        .unwrap();
        assert_eq!(again.address, w.address);
        assert!(import(
            other.path(),
            "bad",
            Network::Devnet,
            "not a mnemonic at all",
            "another one"
        )
        .is_err());
    }

    #[test]
    fn the_derivation_is_fixed() {
        let m = Mnemonic::parse_normalized(PHRASE).unwrap();
        let a = derive_key(&m).unwrap();
        let b = derive_key(&m).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        // A damaged keystore is refused, not a panic.
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), "w", Network::Regtest, &m, "passphrase!").unwrap();
        let path = wallet_path(dir.path(), "w").unwrap();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"nonce\": \"", "\"nonce\": \"zz");
        fs::write(&path, text).unwrap();
        assert!(open(dir.path(), "w", Network::Regtest, "passphrase!")
            .unwrap_err()
            .to_string()
            .contains("damaged"));
    }
}
