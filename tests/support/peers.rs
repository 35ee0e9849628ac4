//! Real third-party proxies in front of authhost: Debian's nginx and caddy, started from a
//! config written into a fresh folder, on a free loopback port. scripts/install-peers
//! installs them; where one is missing the test says so loudly and skips.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy process, killed on drop.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    child: Child,
    pub dir: tempfile::TempDir,
    name: &'static str,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a program is, if it is installed (`PATH`, then /usr/sbin for nginx).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|file| file.is_file())
}

/// Says loudly that a test skips, and why.
pub fn skip(test: &str, program: &str) {
    eprintln!("SKIPPED {test}: {program} is not installed and scripts/install-peers could not install it");
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

impl Peer {
    /// nginx with `http_block` as its `http { }` block, single-process, logging into its
    /// folder. `{port}` in the block is replaced by the port it listens on.
    pub fn nginx(http_block: &str) -> Option<Peer> {
        let program = find("nginx")?;
        let dir = tempfile::tempdir().expect("nginx folder");
        let addr = free_port();
        let prefix = dir.path().display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\nevents {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {prefix}/body;\n    proxy_temp_path {prefix}/proxy;\n    fastcgi_temp_path {prefix}/fastcgi;\n    uwsgi_temp_path {prefix}/uwsgi;\n    scgi_temp_path {prefix}/scgi;\n{}\n}}\n",
            http_block.replace("{port}", &addr.port().to_string())
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new(program)
            .args(["-p", &prefix, "-e", &format!("{prefix}/error.log"), "-c"])
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        Some(Peer::wait_listening(Peer { addr, child, dir, name: "nginx" }, "error.log"))
    }

    /// caddy running `caddyfile` (`{port}` replaced by its port), its storage in its folder.
    pub fn caddy(caddyfile: &str) -> Option<Peer> {
        let program = find("caddy")?;
        let dir = tempfile::tempdir().expect("caddy folder");
        let addr = free_port();
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, caddyfile.replace("{port}", &addr.port().to_string()))
            .expect("write Caddyfile");
        let log = std::fs::File::create(dir.path().join("caddy.log")).expect("caddy log");
        let child = Command::new(program)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn caddy");
        Some(Peer::wait_listening(Peer { addr, child, dir, name: "caddy" }, "caddy.log"))
    }

    /// Polls (at most 15 s) until the proxy accepts connections; panics with its log if it
    /// exits first.
    fn wait_listening(mut peer: Peer, log: &str) -> Peer {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&peer.addr, Duration::from_millis(200)).is_ok() {
                return peer;
            }
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    peer.name,
                    read(&peer.dir.path().join(log))
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} is not listening after 15 s:\n{}",
                peer.name,
                read(&peer.dir.path().join(log))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}
