//! The vocabulary every other crate of infer-node speaks: hashes, FAI amounts, secp256k1
//! keys and signatures, bech32m addresses, the network list and the canonical binary codec.
//!
//! This crate depends on no other crate of the workspace. Everything that decodes bytes
//! here is bounded and returns an error, never panics: these types arrive from peers,
//! wallets and the disk.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod address;
pub mod amount;
pub mod codec;
pub mod hash;
pub mod keys;
pub mod network;
pub mod seal;
pub mod sig_cache;
pub mod supply;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError};
pub use codec::{CodecError, Decode, Encode, Reader};
pub use hash::{Hash160, Hash256, HashParseError};
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use network::Network;
