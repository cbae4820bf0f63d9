//! `infer-node start`: runs the node until Ctrl-C or SIGTERM (see `fai_node::daemon`).

use anyhow::Result;
use fai_node::daemon;

use crate::{init_logging, invocation, load_config, Cli};

pub fn run(cli: &Cli) -> Result<()> {
    let config = load_config(cli)?;
    init_logging(&config.log.level.as_str().to_ascii_lowercase());
    daemon::run(
        config,
        daemon::StartOptions::new(invocation(cli), fai_rpc::start),
    )
}
