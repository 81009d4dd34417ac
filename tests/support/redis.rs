//! A real `redis-server` on a free 127.0.0.1 port, without persistence, stopped (and its
//! directory removed) when dropped. `tests/run.sh` installs the Debian package; a machine
//! without it fails the test with that hint.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::gateway::free_port;

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `addr` (to bring one back where a stopped one was).
    pub fn start_on(addr: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/run.sh installs the `redis-server` package)");
        let server = RedisServer {
            addr,
            child: Some(child),
            _dir: dir,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if server.command(&["PING"]).trim() == "PONG" {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer on {addr}");
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Runs `redis-cli` against the server; its standard output.
    pub fn command(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A number the server reports in `INFO` (`used_memory`), or `DBSIZE`.
    pub fn info_number(&self, field: &str) -> u64 {
        let info = self.command(&["INFO", "memory"]);
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{field}` in INFO: {info}"))
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
