//! `infer-node keys`: creates or shows the key files of the data directory.

use anyhow::Result;
use clap::Subcommand;
use fai_node::keys;
use fai_primitives::Address;

use crate::{load_config, Cli};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a new key file (keys/NAME.key); an existing key is never overwritten.
    New {
        #[arg(long, default_value = "wallet")]
        name: String,
    },
    /// Show a key's address and public key.
    Show {
        #[arg(long, default_value = keys::NODE_KEY)]
        name: String,
    },
}

pub fn run(cli: &Cli, cmd: &KeysCommand) -> Result<()> {
    let config = load_config(cli)?;
    let network = config.network();
    let dir = config.data_dir();
    let (name, key, created) = match cmd {
        KeysCommand::New { name } => (name, keys::create(&dir, name)?, true),
        KeysCommand::Show { name } => (name, keys::load(&dir, name)?, false),
    };
    if created {
        println!("created {}", keys::key_path(&dir, name)?.display());
    }
    println!("name:       {name}");
    println!(
        "address:    {}",
        Address::from_public_key(network, &key.public_key())
    );
    println!("public key: {}", key.public_key());
    Ok(())
}
