//! A Redis server of a test's own: the machine's `redis-server` on a free loopback port,
//! keeping nothing on disk, killed when the test ends. A test can stop it (an outage) and
//! start it again on the same port. Where redis-server is missing, the test skips loudly.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peers::{find, free_port, skip};

#[derive(Debug)]
pub struct TestRedis {
    pub addr: SocketAddr,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    child: Option<Child>,
}

impl TestRedis {
    /// A running server; `None` (after saying so) when redis-server is not installed.
    pub fn start(test: &str) -> Option<TestRedis> {
        if find("redis-server").is_none() {
            skip(test, "redis-server");
            return None;
        }
        let addr = free_port();
        let mut redis = TestRedis { addr, url: format!("redis://{addr}/0"), child: None };
        redis.start_again();
        Some(redis)
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(find("redis-server").expect("redis-server"))
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server on {} does not answer PING", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server: every connection drops, and nothing answers on its port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What `redis-cli` prints for `args` against this server, trimmed; None when it fails.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(find("redis-cli")?)
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
