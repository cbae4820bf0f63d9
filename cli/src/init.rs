//! `infer-node init`: creates the data directory, its node key and the genesis block.

use anyhow::{Context, Result};
use fai_node::{keys, node};
use fai_primitives::Address;

use crate::{load_config, Cli};

pub fn run(cli: &Cli) -> Result<()> {
    let config = load_config(cli)?;
    let network = config.network();
    let dir = config.data_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let (key, created) = keys::load_or_create(&dir, keys::NODE_KEY)?;
    let chain = node::open_chain(&dir, network)?;
    println!("data directory: {}", dir.display());
    println!("network:        {network}");
    println!("genesis:        {}", chain.params().genesis_hash());
    println!("ledger height:  {}", chain.height());
    println!(
        "node key:       {} ({})",
        Address::from_public_key(network, &key.public_key()),
        if created { "created" } else { "existing" }
    );
    Ok(())
}
