//! The wallet: keys, and everything a holder of FAI does through a node's RPC.
//!
//! Owns: the keystore (a BIP39 mnemonic encrypted under a passphrase, `keystore`), the
//! ledger transactions a wallet signs (payments, peg-ins, an inference node's register
//! and commit, `ledger`), the inference layer's VM transactions and inference itself
//! (`inference`), and `wallet serve`, an OpenAI-compatible server that signs each
//! request with the wallet (`serve`).
//!
//! A client of `fai-api` and of the protocol crates' encodings: it must never depend on
//! the daemon (`fai-node`), so that a wallet runs against any node.

pub mod inference;
pub mod keystore;
pub mod ledger;
pub mod serve;

pub use inference::*;
pub use keystore::*;
pub use ledger::*;
