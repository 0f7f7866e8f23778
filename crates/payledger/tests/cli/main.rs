//! The `payledger` binary, driven as an operator would: real processes, real PostgreSQL.

mod admin;
mod bench;
mod checkpoints;
mod crash;
mod journal;
mod logs;
mod partition;
mod privacy;
mod reconcile;
mod refund_discrepancies;
mod reliability;
mod serve;
mod settings;
mod soak;
mod topology;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_payledger");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `payledger serve` process, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The first keys `serve` created (from `DATA_DIR/api-keys.txt`).
    pub admin_key: String,
    pub client_key: String,
}

impl Server {
    /// An HTTP client that sends the client key with every request.
    pub fn http(&self) -> reqwest::Client {
        authed_client(&self.client_key)
    }

    /// An HTTP client that sends the admin key (admin GETs are not audited; POSTs are).
    pub fn admin_http(&self) -> reqwest::Client {
        authed_client(&self.admin_key)
    }
}

pub fn authed_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The keys `serve` wrote to `DATA_DIR/api-keys.txt` on its first start: (admin, client).
pub fn first_keys(data_dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(data_dir.join("api-keys.txt")).ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(str::to_string)
    };
    Some((
        value("PAYLEDGER_ADMIN_KEY")?,
        value("PAYLEDGER_CLIENT_KEY")?,
    ))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn payledger(data_dir: &Path, database: Option<(&str, &str)>) -> Command {
    let mut command = Command::new(BIN);
    command.arg("--data-dir").arg(data_dir);
    command
        .env_remove("DATABASE_URL")
        .env_remove("PAYLEDGER_MIGRATE_DATABASE_URL");
    command.env("RUST_LOG", "warn");
    if let Some((app_url, owner_url)) = database {
        command
            .env("DATABASE_URL", app_url)
            .env("PAYLEDGER_MIGRATE_DATABASE_URL", owner_url);
    }
    command
}

pub async fn serve(data_dir: &Path, database: Option<(&str, &str)>) -> Server {
    let mut command = payledger(data_dir, database);
    command.stderr(Stdio::null());
    serve_command(command, data_dir).await
}

/// Starts `payledger serve` from a prepared command (extra environment, captured stderr, …).
pub async fn serve_command(mut command: Command, data_dir: &Path) -> Server {
    let port = free_port();
    let child = command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("start payledger serve");
    // Owned by the guard from here on, so a failed wait still kills it.
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        admin_key: String::new(),
        client_key: String::new(),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{}/readyz", server.url)).send().await {
            if response.status().is_success() {
                // Keys are created before the server listens, so the file exists by now (unless
                // keys existed before the first serve: then there is no file).
                if let Some((admin, client)) = first_keys(data_dir) {
                    (server.admin_key, server.client_key) = (admin, client);
                }
                return server;
            }
        }
        assert!(
            Instant::now() < deadline,
            "payledger serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("run payledger")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}
