//! `infer-node devnet`: a local network of node processes (see `fai_node::devnet`).

use anyhow::{Context, Result};
use fai_node::devnet;

use crate::{init_logging, Cli};

pub fn run(cli: &Cli, nodes: usize, rpc_port: u16, p2p_port: u16) -> Result<()> {
    init_logging("info");
    let base = match &cli.datadir {
        Some(dir) => dir.clone(),
        None => fai_node::config::expand_home("~/.infer-node/devnet-nodes"),
    };
    let program = std::env::current_exe().context("cannot find this program's path")?;
    devnet::run(
        &devnet::Options {
            nodes,
            base,
            rpc_port,
            p2p_port,
        },
        &program,
    )
}
