//! `infer-node wallet`: keystores, payments on both layers, inference, and the
//! OpenAI-compatible proxy; everything but the keystore goes through a node's RPC.

use anyhow::{Context, Result};
use clap::Subcommand;
use fai_api::blocking::Client as Node;
use fai_node::config::Config;
use fai_node::models;
use fai_primitives::Address;
use fai_wallet::{self as wallet, serve as wallet_serve};

use crate::{load_config, Cli};

#[derive(Subcommand)]
pub enum WalletCommand {
    /// Make a wallet with a fresh 24-word mnemonic (write it down: it is the wallet).
    New {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a wallet from a mnemonic read from standard input.
    Import {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Sign a message with the wallet's key, to prove that you hold the address.
    SignMessage {
        message: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The wallet's balance on the ledger, from the node's RPC.
    Balance {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Send FAI on the ledger: `wallet send ADDRESS "1.5 FAI"`.
    Send {
        to: String,
        amount: String,
        /// The fee paid to the miner.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Register this wallet's key as an inference node on the ledger (its VRF key, derived
    /// from the wallet key, its address, the models it serves). A node with
    /// `inference.produce` does this for its own key.
    Register {
        /// Model ids (hex) served; default: the node's first model.
        #[arg(long)]
        model: Vec<String>,
        #[arg(long, default_value = "0.0001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Bid for the sortition of the next ledger block, as the inference node registered
    /// at HEIGHT:INDEX (the register transaction's block height and position there).
    Commit {
        register: String,
        #[arg(long, default_value = "0.001 FAI")]
        bid: String,
        #[arg(long, default_value = "0.0001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Move FAI from the ledger to the inference layer (credited six ledger blocks later).
    PegIn {
        amount: String,
        /// The inference-layer address credited; default: this wallet's.
        #[arg(long)]
        to: Option<String>,
        /// The fee paid to the miner.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Pay FAI on the inference layer.
    Transfer {
        to: String,
        amount: String,
        #[arg(long, default_value = "")]
        memo: String,
        /// The fee paid to the block producer.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stake FAI in the staking contract for whole reward cycles (the five largest stakes
    /// are the verifier set).
    Stake {
        amount: String,
        #[arg(long, default_value_t = 1)]
        cycles: u32,
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw the whole stake once its lock has ended.
    Unstake {
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Rate an inference you paid for, 1 to 5.
    Rate {
        txid: String,
        score: u32,
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Ask for an inference: the answer streams to the terminal, then the signed receipt.
    Infer {
        prompt: String,
        /// Model id (hex); default: the first model the node serves.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value = "0.001 FAI")]
        max_fee: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Sampling seed; default: random.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "")]
        system: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models) on loopback that
    /// signs each request with this wallet and sends it to the node.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7081")]
        listen: String,
        /// The most one request may cost.
        #[arg(long, default_value = "0.001 FAI")]
        max_fee: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// The wallet's recent transactions on both layers.
    History {
        /// Ledger blocks to look back.
        #[arg(long, default_value_t = 1000)]
        blocks: u32,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a wallet's address.
    Address {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Cli, cmd: &WalletCommand) -> Result<()> {
    let config = load_config(cli)?;
    let network = config.network();
    let dir = config.data_dir();
    let (name, address, mnemonic, json) = match cmd {
        WalletCommand::New { name, json } => {
            let pass = wallet::passphrase(true)?;
            let (w, m) = wallet::create(&dir, name, network, &pass)?;
            (name, w.address, Some(m.to_string()), *json)
        }
        WalletCommand::Import { name, json } => {
            let mut phrase = String::new();
            std::io::stdin().read_line(&mut phrase)?;
            let pass = wallet::passphrase(true)?;
            (
                name,
                wallet::import(&dir, name, network, &phrase, &pass)?.address,
                None,
                *json,
            )
        }
        WalletCommand::Address { name, json } => {
            (name, wallet::address(&dir, name, network)?, None, *json)
        }
        WalletCommand::Balance { name, json } => {
            let address = wallet::address(&dir, name, network)?;
            let node = node(&config)?;
            let ledger = node.ledger_account(&address.to_string())?;
            let layer2 = node.inference_account(&address.to_string())?;
            if *json {
                let mut v = serde_json::to_value(&ledger)?;
                v["inference"] = serde_json::to_value(&layer2)?;
                println!("{v}");
            } else {
                println!(
                    "ledger:          {} spendable, {} base units maturing, {} outputs, at height {}",
                    ledger.balance, ledger.immature_units, ledger.utxos, ledger.height
                );
                println!(
                    "inference layer: {}, nonce {}, stake {}",
                    fai_primitives::Amount::from_units(layer2.balance_units)
                        .unwrap_or(fai_primitives::Amount::ZERO),
                    layer2.nonce,
                    if layer2.stake.is_null() {
                        "none".to_string()
                    } else {
                        layer2.stake.to_string()
                    }
                );
                println!("address:         {address}");
            }
            return Ok(());
        }
        WalletCommand::Send {
            to,
            amount,
            fee,
            name,
            json,
        } => {
            let to = Address::parse_for(to, network)?;
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let txid = wallet::send(&node(&config)?, network, &w, to, amount, fee)?;
            if *json {
                println!("{}", serde_json::json!({"txid": txid}));
            } else {
                println!("sent {amount} to {to}: transaction {txid}");
            }
            return Ok(());
        }
        WalletCommand::Transfer {
            name, fee, json, ..
        }
        | WalletCommand::Stake {
            name, fee, json, ..
        }
        | WalletCommand::Unstake { name, fee, json }
        | WalletCommand::Rate {
            name, fee, json, ..
        } => {
            let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
            let (payload, what) = vm_payload(cmd, network)?;
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let txid = wallet::vm_send(&node(&config)?, &w, payload, fee)?;
            if *json {
                println!("{}", serde_json::json!({"txid": txid}));
            } else {
                println!("{what}: inference-layer transaction {txid} (it runs in the next inference block)");
            }
            return Ok(());
        }
        WalletCommand::History { blocks, name, json } => {
            let address = wallet::address(&dir, name, network)?;
            let history = node(&config)?.history(&address.to_string(), *blocks)?;
            if *json {
                println!("{}", serde_json::to_string(&history)?);
                return Ok(());
            }
            println!(
                "{address}, ledger blocks {} to {}:",
                history.from_height, history.to_height
            );
            let line = |layer: &str, height: u32, kind: &str, txid: &str, units: u64| {
                println!(
                    "  {layer:<9} height {height:>7}  {kind:<9} {txid}  {}",
                    fai_primitives::Amount::from_units(units)
                        .unwrap_or(fai_primitives::Amount::ZERO)
                );
            };
            for item in &history.ledger {
                line(
                    "ledger",
                    item.height,
                    &item.kind,
                    &item.txid,
                    item.received_units,
                );
            }
            for item in &history.inference {
                line(
                    "inference",
                    item.inference_height,
                    &item.kind,
                    &item.txid,
                    item.amount_units,
                );
            }
            return Ok(());
        }
        WalletCommand::Register {
            model,
            fee,
            name,
            json,
        } => {
            let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
            let rpc = node(&config)?;
            let mut models = Vec::new();
            for m in model {
                let id: [u8; 32] = hex::decode(m)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .context("--model must be 64 hex digits")?;
                models.push(id);
            }
            if models.is_empty() {
                let info = rpc.info()?;
                let id = info
                    .models
                    .first()
                    .and_then(|m| hex::decode(&m.id).ok())
                    .and_then(|b| b.try_into().ok())
                    .context("the node serves no model; name one with --model")?;
                models.push(id);
            }
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let txid = wallet::register(&rpc, network, &w, &models, fee)?;
            if *json {
                println!("{}", serde_json::json!({"txid": txid}));
            } else {
                println!("register sent: ledger transaction {txid}; once mined, commit with `wallet commit HEIGHT:INDEX` (its block height and position)");
            }
            return Ok(());
        }
        WalletCommand::Commit {
            register,
            bid,
            fee,
            name,
            json,
        } => {
            let (height, index) = register
                .split_once(':')
                .context("the register reference is HEIGHT:INDEX")?;
            let register = fai_inference_chain::ops::RegisterRef {
                height: height.parse().context("the register height")?,
                tx_index: index.parse().context("the register index")?,
            };
            let bid: fai_primitives::Amount = bid.parse().context("--bid")?;
            anyhow::ensure!(bid.units() > 0, "--bid must be more than zero");
            let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let txid = wallet::commit(&node(&config)?, network, &w, register, bid, fee)?;
            if *json {
                println!("{}", serde_json::json!({"txid": txid}));
            } else {
                println!("commit sent: ledger transaction {txid}, bidding {bid} for the next ledger block");
            }
            return Ok(());
        }
        WalletCommand::PegIn {
            amount,
            to,
            fee,
            name,
            json,
        } => {
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let to = match to {
                Some(t) => Address::parse_for(t, network)?,
                None => w.address,
            };
            let txid = wallet::peg_in(&node(&config)?, network, &w, to, amount, fee)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"txid": txid, "to": to.to_string()})
                );
            } else {
                println!("pegged in {amount} for {to}: ledger transaction {txid}; the inference layer credits it six ledger blocks after it is mined");
            }
            return Ok(());
        }
        WalletCommand::Infer {
            prompt,
            model,
            max_fee,
            max_tokens,
            temperature,
            seed,
            system,
            name,
            json,
        } => {
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let rpc = node(&config)?;
            let request = wallet::InferRequest {
                system: system.clone(),
                context: Vec::new(),
                prompt: prompt.clone(),
                model: model.clone(),
                max_fee: max_fee.parse().context("--max-fee")?,
                max_tokens: *max_tokens,
                temperature: *temperature,
                seed: seed.unwrap_or_else(rand::random),
                nonce: wallet::next_nonce(&rpc, &w.address)?,
            };
            let mut out = std::io::stdout().lock();
            let quiet = *json;
            let result = wallet::infer(&rpc, &w, &request, |piece| {
                if !quiet {
                    use std::io::Write;
                    let _ = out.write_all(models::printable(piece).as_bytes());
                    let _ = out.flush();
                }
            })?;
            drop(out);
            if *json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!(
                    "\n[receipt: transaction {}, {} tokens, node {}]",
                    result.receipt.txid, result.receipt.tokens, result.receipt.node
                );
            }
            return Ok(());
        }
        WalletCommand::Serve {
            listen,
            max_fee,
            name,
        } => {
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let (key, new) = wallet_serve::api_key(&dir, name)?;
            let key_path = wallet_serve::api_key_path(&dir, name)?;
            if new {
                eprintln!(
                    "API key of this server (shown once; kept in {}): {key}",
                    key_path.display()
                );
            } else {
                eprintln!("API key of this server: in {}", key_path.display());
            }
            let proxy = wallet_serve::Proxy::new(
                config.rpc.listen.to_string(),
                w,
                name.clone(),
                max_fee.parse().context("--max-fee")?,
                key,
            )?;
            return wallet_serve::run(proxy, listen);
        }
        WalletCommand::SignMessage {
            message,
            name,
            json,
        } => {
            let pass = wallet::passphrase(false)?;
            let w = wallet::open(&dir, name, network, &pass)?;
            let signature = w.key.sign(&wallet::message_digest(message));
            let public_key = w.key.public_key().to_string();
            let signature = hex::encode(signature.0);
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"address": w.address.to_string(), "public_key": public_key, "signature": signature})
                );
            } else {
                println!(
                    "address:    {}\npublic key: {public_key}\nsignature:  {signature}",
                    w.address
                );
            }
            return Ok(());
        }
    };
    if json {
        let mut v = serde_json::json!({"name": name, "address": address.to_string()});
        if let Some(m) = &mnemonic {
            v["mnemonic"] = serde_json::json!(m);
        }
        println!("{v}");
    } else {
        println!("wallet:  {name}");
        println!("address: {address}");
        if let Some(m) = mnemonic {
            println!("mnemonic (write it down; anyone who has it owns the wallet):\n  {m}");
        }
    }
    Ok(())
}

/// The VM payload of a wallet command of the inference layer, and a phrase saying it.
fn vm_payload(
    cmd: &WalletCommand,
    network: fai_primitives::Network,
) -> Result<(fai_inference_chain::vmtx::VmPayload, String)> {
    use fai_clarity::Value;
    Ok(match cmd {
        WalletCommand::Transfer {
            to, amount, memo, ..
        } => {
            let to = Address::parse_for(to, network)?;
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            anyhow::ensure!(memo.len() <= 34, "--memo may have at most 34 bytes");
            (
                fai_inference_chain::vmtx::VmPayload::Transfer {
                    to: to.key_hash,
                    amount,
                    memo: memo.as_bytes().to_vec(),
                },
                format!("sent {amount} to {to}"),
            )
        }
        WalletCommand::Stake { amount, cycles, .. } => {
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            anyhow::ensure!((1..=12).contains(cycles), "--cycles must be 1 to 12");
            (
                wallet::boot_call(
                    "staking",
                    "stake",
                    &[
                        Value::UInt(u128::from(amount.units())),
                        Value::UInt(u128::from(*cycles)),
                    ],
                ),
                format!("staked {amount} for {cycles} cycle(s)"),
            )
        }
        WalletCommand::Unstake { .. } => (
            wallet::boot_call("staking", "unstake", &[]),
            "unstaked".to_string(),
        ),
        WalletCommand::Rate { txid, score, .. } => {
            anyhow::ensure!((1..=5).contains(score), "the score must be 1 to 5");
            let tx: fai_primitives::Hash256 = txid.parse().context("the inference txid")?;
            let tx = Value::buff_from(tx.0.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?;
            (
                wallet::boot_call("reputation", "rate", &[tx, Value::UInt(u128::from(*score))]),
                format!("rated {txid} {score}/5"),
            )
        }
        _ => anyhow::bail!("not an inference-layer command"),
    })
}

/// The client of the node the configuration names (`rpc.listen`).
fn node(config: &Config) -> Result<Node> {
    Ok(Node::new(&config.rpc.listen.to_string())?)
}
