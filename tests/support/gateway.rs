//! The real `ehrgate` binary for tests: a config written to a temporary directory, the
//! process started on 127.0.0.1 ports, its log kept for assertions, and SIGTERM on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// A free port on 127.0.0.1 (the OS picks; the listener is closed before use).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The `ehrgate` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ehrgate"))
}

impl GatewayProcess {
    /// Writes `config` (with `{listen}` and `{admin}` filled in) and starts the gateway,
    /// waiting until it accepts connections.
    pub fn start(config: &str) -> Self {
        Self::start_with_nofile(config, None)
    }

    /// As [`start`](Self::start), with the process's descriptor limit set to `nofile`.
    pub fn start_with_nofile(config: &str, nofile: Option<u32>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = free_port();
        let admin = free_port();
        let config = config
            .replace("{listen}", &addr.to_string())
            .replace("{admin}", &admin.to_string());
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).expect("write config");
        let child = spawn(&path, dir.path(), nofile);
        let mut gateway = GatewayProcess {
            addr,
            admin,
            dir,
            child,
        };
        gateway.wait_until_listening();
        gateway
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's resident memory, from `/proc/<pid>/status` (Linux), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Sends a signal (`HUP`, `TERM`) to the gateway.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Kills the gateway with SIGKILL, as a crash would (no draining, nothing flushed), and
    /// reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (bounded) for the process to exit and returns whether it exited successfully.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the gateway exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not listen within 60 s:\n{}", self.log());
    }
}

fn spawn(config: &Path, dir: &Path, nofile: Option<u32>) -> Child {
    let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
    let mut command = match nofile {
        // The shell lowers the limit for itself and the gateway it becomes.
        Some(limit) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(binary());
            shell
        }
        None => Command::new(binary()),
    };
    command
        .args(["serve", "--config"])
        .arg(config)
        .args(["--log-format", "json", "--workers", "2"])
        .env("EHRGATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ehrgate")
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if self.wait_for_exit(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
