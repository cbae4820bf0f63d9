//! The start-up banner: in a few lines, what this node runs, where its RPC and p2p
//! listen, and the exact command that submits a first inference to it.

use fai_primitives::Amount;

/// What the banner shows, gathered at start.
pub struct Banner {
    pub version: &'static str,
    pub network: String,
    pub data_dir: String,
    /// Mining threads, when mining.
    pub mining: Option<usize>,
    /// The bid per ledger block, when an inference node.
    pub produce: Option<Amount>,
    /// The price per million output tokens.
    pub price: Amount,
    /// The stake, when a verifier.
    pub stake: Option<Amount>,
    /// The models served: name and id.
    pub models: Vec<(String, String)>,
    /// The engine's device and its memory.
    pub device: String,
    /// `host:port` of the RPC.
    pub rpc: String,
    /// The p2p listen address and peer id, when the network is on.
    pub p2p: Option<(String, String)>,
    pub wallet: Option<DevWallet>,
    /// How this node was started (the program, `--config`, `--datadir`): what the
    /// wallet commands need to reach it.
    pub invocation: String,
}

/// The dev wallet, as the banner names it.
pub struct DevWallet {
    pub name: String,
    pub address: String,
    pub passphrase: String,
    pub ledger: Amount,
    pub inference: Amount,
}

impl Banner {
    pub fn render(&self) -> String {
        let mut roles = Vec::new();
        if let Some(threads) = self.mining {
            let s = if threads == 1 { "" } else { "s" };
            roles.push(format!("miner ({threads} thread{s})"));
        }
        if let Some(bid) = self.produce {
            roles.push(format!(
                "inference node (bid {bid} per ledger block, price {} per million tokens)",
                self.price
            ));
        }
        if let Some(stake) = self.stake {
            roles.push(format!("verifier (stake {stake})"));
        }
        for (name, id) in &self.models {
            roles.push(format!("model {name} ({id})"));
        }
        roles.push(format!("engine on {}", self.device));
        let mut out = format!(
            "infer-node {} on {}, data in {}\n  runs:  {}\n  rpc:   http://{}/v2/info\n",
            self.version,
            self.network,
            self.data_dir,
            roles.join(", "),
            self.rpc
        );
        if let Some((listen, peer)) = &self.p2p {
            out.push_str(&format!("  p2p:   {listen}/p2p/{peer}\n"));
        }
        let name_flag = |name: &str| {
            if name == "default" {
                String::new()
            } else {
                format!(" --name {name}")
            }
        };
        match &self.wallet {
            Some(w) => {
                out.push_str(&format!(
                    "  wallet: {} ({}), funded by this node with {} and {} on the inference layer once its rewards mature\n",
                    w.name, w.address, w.ledger, w.inference
                ));
                out.push_str(&format!(
                    "  first inference:\n    FAI_WALLET_PASSPHRASE={} {} wallet infer \"hello\"{}\n",
                    w.passphrase,
                    self.invocation,
                    name_flag(&w.name)
                ));
            }
            None => {
                out.push_str(&format!(
                    "  first inference: {0} wallet new, fund it, {0} wallet peg-in \"1 FAI\", then\n    {0} wallet infer \"hello\"\n",
                    self.invocation
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banner() -> Banner {
        Banner {
            version: "0.1.0",
            network: "devnet".into(),
            data_dir: "/home/me/.infer-node/devnet".into(),
            mining: Some(1),
            produce: Some("0.001 FAI".parse().unwrap()),
            price: "0.01 FAI".parse().unwrap(),
            stake: Some("1 FAI".parse().unwrap()),
            models: vec![("fai-tiny".into(), "ab12".into())],
            device: "cpu (23.4 GiB, 20.1 GiB free)".into(),
            rpc: "127.0.0.1:7080".into(),
            p2p: Some(("/ip4/127.0.0.1/tcp/27090".into(), "12D3Koo".into())),
            wallet: Some(DevWallet {
                name: "default".into(),
                address: "dfai1xyz".into(),
                passphrase: "devnet-wallet".into(),
                ledger: "10 FAI".parse().unwrap(),
                inference: "5 FAI".parse().unwrap(),
            }),
            invocation: "./target/release/infer-node".into(),
        }
    }

    #[test]
    fn the_banner_names_the_roles_the_addresses_and_the_first_command() {
        let text = banner().render();
        assert!(text.contains("miner (1 thread)"), "{text}");
        assert!(text.contains("inference node (bid 0.001 FAI"), "{text}");
        assert!(text.contains("verifier (stake 1 FAI)"), "{text}");
        assert!(text.contains("model fai-tiny (ab12)"), "{text}");
        assert!(text.contains("engine on cpu (23.4 GiB"), "{text}");
        assert!(text.contains("http://127.0.0.1:7080/v2/info"), "{text}");
        assert!(
            text.contains("/ip4/127.0.0.1/tcp/27090/p2p/12D3Koo"),
            "{text}"
        );
        assert!(
            text.contains(
                "FAI_WALLET_PASSPHRASE=devnet-wallet ./target/release/infer-node wallet infer \"hello\"\n"
            ),
            "{text}"
        );
        assert!(text.lines().count() <= 8, "a few lines: {text}");

        let mut other = banner();
        other.wallet.as_mut().unwrap().name = "dev".into();
        other.mining = None;
        other.stake = None;
        let text = other.render();
        assert!(text.contains("wallet infer \"hello\" --name dev"), "{text}");
        assert!(!text.contains("miner"), "{text}");
        assert!(!text.contains("verifier"), "{text}");

        other.wallet = None;
        let text = other.render();
        assert!(text.contains("wallet new"), "{text}");
    }
}
