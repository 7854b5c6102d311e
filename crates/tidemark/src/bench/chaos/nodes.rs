//! The `tidemark serve` processes of a chaos run: started, killed with `SIGKILL` and restarted
//! on the same port, paused with `SIGSTOP`, stopped with `SIGTERM` at the end.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;

/// How the nodes are started.
#[derive(Debug, Clone)]
pub(super) struct NodeSettings {
    /// The `tidemark` executable.
    pub exe: PathBuf,
    /// The PostgreSQL database they share.
    pub db_url: String,
    /// `--bootstrap-api-key` of every node (the application's key).
    pub api_key: String,
    /// `--lease-ttl-secs`.
    pub lease_ttl_secs: u64,
    /// `--webhook-read-timeout-secs`.
    pub webhook_read_timeout_secs: u64,
    /// `--webhook-claim-ttl-secs`.
    pub webhook_claim_ttl_secs: u64,
    /// `TIDEMARK_LOG` of the nodes.
    pub log_filter: String,
    /// Where each node process writes its output (`node-<i>-<generation>.log`).
    pub log_dir: PathBuf,
}

/// One node's place: its port, and the process running there, if any.
#[derive(Debug)]
struct Slot {
    port: u16,
    node_id: String,
    generation: u32,
    child: Option<Child>,
}

/// The nodes of one run. Dropping it kills whatever still runs.
#[derive(Debug)]
pub(super) struct Nodes {
    settings: NodeSettings,
    slots: Vec<Slot>,
    http: reqwest::Client,
    /// Every log file this run's processes wrote.
    logs: Vec<PathBuf>,
}

/// A port that is free now and below the kernel's ephemeral range, so that while a node is
/// down no outgoing connection (a reader's, a node's) can be given its port and keep it from
/// restarting there. Falls back to any free port.
fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > 11_000 {
        for _ in 0..200 {
            let port = rand::rng().random_range(10_000..ephemeral_low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Nodes {
    /// Places for `count` nodes on free ports; nothing is started yet.
    pub fn new(settings: NodeSettings, count: usize) -> anyhow::Result<Nodes> {
        let mut slots: Vec<Slot> = Vec::with_capacity(count);
        while slots.len() < count {
            let port = free_port()?;
            if slots.iter().any(|slot| slot.port == port) {
                continue;
            }
            slots.push(Slot {
                port,
                node_id: format!("chaos-n{}", slots.len()),
                generation: 0,
                child: None,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(Nodes {
            settings,
            slots,
            http,
            logs: Vec::new(),
        })
    }

    /// How many node places there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The HTTP base URL of node `index`.
    pub fn base_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots[index].port)
    }

    /// Every node's base URL.
    pub fn base_urls(&self) -> Vec<String> {
        (0..self.slots.len()).map(|i| self.base_url(i)).collect()
    }

    /// Starts node `index` on its port. With `new_identity`, it comes back under a new node id
    /// (as a replacement machine would); otherwise under the one it had.
    pub fn spawn(&mut self, index: usize, new_identity: bool) -> anyhow::Result<()> {
        let settings = &self.settings;
        let slot = &mut self.slots[index];
        anyhow::ensure!(slot.child.is_none(), "node {index} is already running");
        slot.generation += 1;
        if new_identity {
            slot.node_id = format!("chaos-n{index}-g{}", slot.generation);
        }
        let log_path = settings
            .log_dir
            .join(format!("node-{index}-{}.log", slot.generation));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        self.logs.push(log_path);
        let child = Command::new(&settings.exe)
            .arg("serve")
            .args(["--db", &settings.db_url])
            .args(["--listen", &format!("127.0.0.1:{}", slot.port)])
            .args(["--node-id", &slot.node_id])
            .args(["--bootstrap-api-key", &settings.api_key])
            .args(["--lease-ttl-secs", &settings.lease_ttl_secs.to_string()])
            .args([
                "--webhook-read-timeout-secs",
                &settings.webhook_read_timeout_secs.to_string(),
            ])
            .args([
                "--webhook-claim-ttl-secs",
                &settings.webhook_claim_ttl_secs.to_string(),
            ])
            .env("TIDEMARK_LOG", &settings.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", settings.exe.display()))?;
        tracing::debug!(index, pid = child.id(), node_id = %slot.node_id, "node started");
        slot.child = Some(child);
        Ok(())
    }

    /// Waits until node `index` answers `/healthz`.
    ///
    /// # Errors
    /// If it does not within `timeout`, or its process exits first.
    pub async fn wait_healthy(&mut self, index: usize, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base_url(index));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(child) = self.slots[index].child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.slots[index].child = None;
                    anyhow::bail!(
                        "node {index} exited with {status} before answering (see {})",
                        self.settings.log_dir.display()
                    );
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {index} did not answer {url} within {timeout:?} (see {})",
                self.settings.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` of node `index`, reaped at once.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let Some(mut child) = self.slots[index].child.take() else {
            anyhow::bail!("node {index} is not running");
        };
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        child.kill().context("kill -9")?;
        child.wait().context("reaping a killed node")?;
        tracing::debug!(index, "node killed");
        Ok(())
    }

    /// How many lines of this run's node logs contain `text`.
    pub fn count_log_lines(&self, text: &str) -> usize {
        self.logs
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|log| log.lines().filter(|line| line.contains(text)).count())
            .sum()
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `index`.
    fn signal(&self, index: usize, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.slots[index].child else {
            anyhow::bail!("node {index} is not running");
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .with_context(|| format!("kill -{signal}"))?;
        anyhow::ensure!(status.success(), "kill -{signal} of node {index} failed");
        Ok(())
    }

    /// Freezes node `index` (`SIGSTOP`): it holds its connections, leases and claims but does
    /// nothing, as in a long GC pause or a VM migration.
    pub fn pause(&self, index: usize) -> anyhow::Result<()> {
        self.signal(index, "STOP")
    }

    /// Lets a paused node go on (`SIGCONT`).
    pub fn resume(&self, index: usize) -> anyhow::Result<()> {
        self.signal(index, "CONT")
    }

    /// Nodes whose process ended without being killed, with how it ended (each is reported
    /// once: its slot becomes empty).
    pub fn unexpected_exits(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut exits = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(child) = slot.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    slot.child = None;
                    exits.push((index, status));
                }
            }
        }
        exits
    }

    /// Sends `SIGTERM` to every running node and waits for them to exit.
    ///
    /// # Returns
    /// One message per node that did not exit cleanly within `timeout` (it is then killed).
    pub async fn stop_all(&mut self, timeout: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(child) = &slot.child {
                let sent = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                if !matches!(sent, Ok(status) if status.success()) {
                    problems.push(format!("node {index}: could not send SIGTERM"));
                }
            }
        }
        let deadline = Instant::now() + timeout;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(mut child) = slot.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        problems.push(format!("node {index} exited with {status} on SIGTERM"));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(None) | Err(_) => {
                        problems.push(format!(
                            "node {index} did not stop within {timeout:?} of SIGTERM"
                        ));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        problems
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
