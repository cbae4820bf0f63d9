//! `infer-node devnet --nodes N`: a local network to watch. N nodes, each its own
//! process with its own data directory, RPC port and p2p port, all on the built-in
//! devnet configuration (every node mines, stakes and serves as an inference node);
//! nodes 1.. bootstrap from node 0, which alone keeps the dev wallet. Their logs are
//! interleaved, each line prefixed with the node's name. Ctrl-C or SIGTERM stops them
//! all; a node that stops on its own stops the rest.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::info;

use crate::config::{Config, DEVNET_TOML};

/// The most nodes one machine is asked to run.
pub const MAX_NODES: usize = 32;

/// Where and how many.
pub struct Options {
    pub nodes: usize,
    /// Node i keeps its data in `base/node-i`.
    pub base: PathBuf,
    /// Node i's RPC listens on `rpc_port + i`, its p2p on `p2p_port + i`.
    pub rpc_port: u16,
    pub p2p_port: u16,
}

/// One node of the devnet, as configured.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub config: PathBuf,
    pub rpc: String,
    pub p2p: String,
}

/// Changes node i's configuration (a TOML table) before it is written.
pub type Tweak<'a> = &'a dyn Fn(usize, &mut toml::Table);

/// Writes each node's data directory, node key and configuration file: the built-in
/// devnet configuration with the node's own directory, ports and bootstrap peer, then
/// `tweak`.
pub fn prepare(o: &Options, tweak: Tweak<'_>) -> Result<Vec<Member>> {
    if o.nodes == 0 || o.nodes > MAX_NODES {
        bail!("--nodes must be between 1 and {MAX_NODES}");
    }
    let last = o.nodes - 1;
    let ports_fit = |base: u16| {
        usize::from(base)
            .checked_add(last)
            .is_some_and(|p| p <= 65_535)
    };
    if !ports_fit(o.rpc_port) || !ports_fit(o.p2p_port) {
        bail!("the ports of {} nodes do not fit below 65536", o.nodes);
    }
    let mut members = Vec::new();
    let mut first_address = None;
    for i in 0..o.nodes {
        let name = format!("node-{i}");
        let dir = o.base.join(&name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (key, _) = crate::keys::load_or_create(&dir, crate::keys::NODE_KEY)?;
        let peer = crate::p2p::identity(&key)?.public().to_peer_id();
        // Checked above: base + i stays below 65536.
        let rpc = format!("127.0.0.1:{}", usize::from(o.rpc_port) + i);
        let p2p = format!("/ip4/127.0.0.1/tcp/{}", usize::from(o.p2p_port) + i);
        let bootstrap: Vec<String> = first_address.iter().cloned().collect();
        let text = member_config(i, o.nodes, &dir, &rpc, &p2p, &bootstrap, tweak)?;
        let config = dir.join("infer-node.toml");
        std::fs::write(&config, text)
            .with_context(|| format!("cannot write {}", config.display()))?;
        if i == 0 {
            first_address = Some(format!("{p2p}/p2p/{peer}"));
        }
        members.push(Member {
            name,
            config,
            rpc,
            p2p: format!("{p2p}/p2p/{peer}"),
        });
    }
    Ok(members)
}

/// The engine threads of each of `nodes` nodes sharing this machine: its cores split
/// between them, at least one each.
pub fn engine_threads_per_node(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / nodes.max(1)).max(1)
}

/// The built-in devnet configuration with this node's data directory, ports, bootstrap
/// peers and share of the machine's cores (`engine.threads`); the dev wallet only on the
/// first node.
fn member_config(
    i: usize,
    nodes: usize,
    dir: &Path,
    rpc: &str,
    p2p: &str,
    bootstrap: &[String],
    tweak: Tweak<'_>,
) -> Result<String> {
    let mut table: toml::Table = DEVNET_TOML
        .parse()
        .context("the built-in devnet configuration")?;
    let mut set = |section: &str, key: &str, value: toml::Value| -> Result<()> {
        table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("the devnet configuration has no [{section}]"))?
            .insert(key.to_string(), value);
        Ok(())
    };
    set("node", "data_dir", dir.display().to_string().into())?;
    set("rpc", "listen", rpc.into())?;
    set("p2p", "listen", p2p.into())?;
    set(
        "p2p",
        "bootstrap",
        toml::Value::Array(bootstrap.iter().map(|b| b.as_str().into()).collect()),
    )?;
    let threads = i64::try_from(engine_threads_per_node(nodes)).unwrap_or(1);
    set("engine", "threads", threads.into())?;
    if i > 0 {
        set("dev_wallet", "name", "".into())?;
    }
    tweak(i, &mut table);
    let text = toml::to_string(&table).context("cannot write a node's configuration")?;
    // What a node would refuse is refused here, before any process starts.
    Config::parse(&text, "a devnet node's configuration")?;
    Ok(text)
}

/// Starts the nodes (the first, then the rest once its RPC answers) and waits.
pub fn run(o: &Options, program: &Path) -> Result<()> {
    let members = prepare(o, &|_, _| {})?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut interrupt, mut term) = crate::daemon::stop_signals(&runtime)?;
    let mut children: Vec<(String, Child)> = Vec::new();
    let outcome = runtime.block_on(async {
        for (i, m) in members.iter().enumerate() {
            let child = spawn(program, m, None)?;
            children.push((m.name.clone(), child));
            if i == 0 {
                wait_for_rpc(&m.rpc, Duration::from_secs(120)).await?;
            }
        }
        print_summary(&members, program);
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    for (name, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!("{name} stopped ({status}); stopping the others");
                        }
                    }
                }
            }
        }
    });
    stop(&mut children);
    outcome
}

/// Starts a member: its output goes to `log` (a file), or else to this program's
/// standard output, each line prefixed with its name.
pub fn spawn(program: &Path, m: &Member, log: Option<&Path>) -> Result<Child> {
    let mut command = Command::new(program);
    command
        .args(["start", "--config"])
        .arg(&m.config)
        .stdin(Stdio::null());
    if let Some(path) = log {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let copy = file.try_clone()?;
        return command
            .stdout(file)
            .stderr(copy)
            .spawn()
            .with_context(|| format!("cannot start {}", m.name));
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", m.name))?;
    let streams: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let name = m.name.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                println!("{name} | {line}");
            }
        });
    }
    Ok(child)
}

pub async fn wait_for_rpc(address: &str, limit: Duration) -> Result<()> {
    let started = Instant::now();
    let node = fai_api::Client::new(address)?;
    while started.elapsed() < limit {
        if node.info().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the first node's RPC at {address} did not answer within {limit:?}")
}

fn print_summary(members: &[Member], program: &Path) {
    let program = program.display();
    let mut out = format!("devnet of {} nodes:\n", members.len());
    for m in members {
        out.push_str(&format!(
            "  {}  rpc http://{}/v2/info  p2p {}\n",
            m.name, m.rpc, m.p2p
        ));
    }
    if let Some(first) = members.first() {
        out.push_str(&format!(
            "first inference, once node-0 has funded its dev wallet:\n    FAI_WALLET_PASSPHRASE=devnet-wallet {program} --config {} wallet infer \"hello\"\n",
            first.config.display()
        ));
    }
    println!("{out}");
}

/// Asks every node to stop (SIGTERM), then kills those still running after 30 s.
pub fn stop(children: &mut [(String, Child)]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (_, child) in children.iter() {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    info!(target: "infer_node::devnet", "{name} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_directory_ports_and_the_first_as_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options {
            nodes: 3,
            base: dir.path().to_path_buf(),
            rpc_port: 7300,
            p2p_port: 27300,
        };
        let members = prepare(&o, &|_, _| {}).unwrap();
        assert_eq!(members.len(), 3);
        let configs: Vec<Config> = members
            .iter()
            .map(|m| Config::load(Some(&m.config)).unwrap())
            .collect();
        for (i, (m, c)) in members.iter().zip(&configs).enumerate() {
            assert_eq!(c.data_dir(), dir.path().join(format!("node-{i}")));
            assert_eq!(c.rpc.listen.to_string(), format!("127.0.0.1:{}", 7300 + i));
            assert_eq!(m.rpc, c.rpc.listen.to_string());
            let p2p = c.p2p.listen.as_ref().map(ToString::to_string);
            assert_eq!(p2p, Some(format!("/ip4/127.0.0.1/tcp/{}", 27300 + i)));
            assert!(c.mining.enabled && c.inference.produce);
            assert_eq!(
                c.engine.threads,
                Some(engine_threads_per_node(3)),
                "the nodes split the cores"
            );
            assert_eq!(
                c.dev_wallet.name.is_empty(),
                i != 0,
                "only node-0 keeps the dev wallet"
            );
        }
        assert!(configs[0].p2p.bootstrap.is_empty());
        for c in &configs[1..3] {
            let bootstrap: Vec<String> = c.p2p.bootstrap.iter().map(ToString::to_string).collect();
            assert_eq!(bootstrap, vec![members[0].p2p.clone()]);
        }
        // Prepared again (a restart), the keys and so the peer ids stay.
        let again = prepare(&o, &|_, _| {}).unwrap();
        assert_eq!(again[0].p2p, members[0].p2p);

        let with = |nodes: usize, rpc_port: u16| Options {
            nodes,
            base: dir.path().to_path_buf(),
            rpc_port,
            p2p_port: 27300,
        };
        for bad in [0, MAX_NODES + 1] {
            let err = prepare(&with(bad, 7300), &|_, _| {}).unwrap_err();
            assert!(err.to_string().contains("--nodes"), "{err}");
        }
        let err = prepare(&with(3, 65_534), &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    #[test]
    fn nodes_on_one_machine_split_its_cores_at_least_one_thread_each() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(engine_threads_per_node(1), cores);
        assert_eq!(engine_threads_per_node(cores), 1);
        assert_eq!(engine_threads_per_node(cores * 4 + 1), 1);
        assert_eq!(engine_threads_per_node(0), cores);
    }
}
