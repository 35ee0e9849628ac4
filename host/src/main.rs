//! The `authhost` command: serve, check, and user management (SPEC section 5).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use authhost::loader::Schemes;
use authhost::services::token_digest;
use authhost::store::{self, NewToken, NewUser, TokenSet};
use authhost::tokens::{self, TokenSecret};
use authhost::{App, AppSlot, Config};
use clap::{Parser, Subcommand};
use tracing::info;

const DEFAULT_CONFIG: &str = "config/authhost.toml";

#[derive(Debug, Parser)]
#[command(name = "authhost", version, about = "An HTTP authentication host with plugin schemes")]
struct Cli {
    /// The config file [default: $AUTHHOST_CONFIG, else config/authhost.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP on the configured address.
    Serve {
        /// Listen here instead of [server] listen (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate the config, load every plugin and print each route's chain.
    Check,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage tokens. The store keeps only digests: a key is shown once, when created.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print USER's key, creating a token if they have none (DRF's drf_create_token).
    Create {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        /// Replace the user's tokens with a new one (every client using the old key is out).
        #[arg(short = 'r', long)]
        regenerate: bool,
        /// Import this key (migrating from DRF's authtoken) instead of generating one.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Create a token for every user that has none; prints `USER KEY` lines.
        #[arg(long, conflicts_with_all = ["regenerate", "key"])]
        all: bool,
    },
    /// Delete USER's tokens.
    Revoke { user: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is prompted for, or read from standard input.
    Add {
        name: String,
        #[arg(long)]
        staff: bool,
        #[arg(long)]
        inactive: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Deactivate a user: every scheme refuses them from then on.
    Deactivate { name: String },
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("AUTHHOST_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

fn run(cli: Cli) -> Result<()> {
    let path = config_path(&cli);
    let config = Config::load(&path)?;
    match cli.command {
        Command::Serve { listen } => serve(&config, listen),
        Command::Check => check(&config),
        Command::User { command } => user(&config, command),
        Command::Token { command } => token(&config, command),
    }
}

fn serve(config: &Config, listen: Option<std::net::SocketAddr>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Inside the runtime, so that the app can start its background tasks.
    let slot = Arc::new(AppSlot::new(runtime.block_on(async { App::build(config) })?));
    runtime.block_on(async {
        let addr = listen.unwrap_or(config.listen);
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let file = config.file.clone();
        let reload = authhost::reload_on_hangup(Arc::clone(&slot), move || App::build(&Config::load(&file)?));
        tokio::spawn(reload);
        info!(config = %config.file.display(), "listening on http://{local}");
        authhost::serve(listener, slot, authhost::shutdown_signal(), config.shutdown_timeout).await;
        Ok(())
    })
}

#[allow(clippy::print_stdout)] // `check` reports to the terminal
fn check(config: &Config) -> Result<()> {
    let schemes = Schemes::load(config)?;
    store::open(&config.store_url)?;
    println!("{}: ok", config.file.display());
    println!("schemes:");
    for scheme in schemes.iter() {
        println!("  {:<16} {}", scheme.name(), scheme.file().display());
    }
    println!("routes:");
    for route in &config.routes {
        let chain: Vec<&str> = route.schemes.iter().map(|&i| config.schemes[i].name.as_str()).collect();
        let chain = if chain.is_empty() { "(no schemes)".to_owned() } else { chain.join(" -> ") };
        let path = if route.prefix { format!("{}*", route.path) } else { route.path.clone() };
        println!("  {path:<24} {:<13} {:<30} {chain}", route.handler.name(), route.permission);
    }
    Ok(())
}

fn user(config: &Config, command: UserCommand) -> Result<()> {
    let store = store::open(&config.store_url)?;
    let mut conn = store.connect()?;
    match command {
        UserCommand::Add { name, staff, inactive, password_stdin } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("a username cannot be blank");
            }
            let password = read_password(password_stdin, true)?;
            let hash = authhost::pool::hash_password(&password);
            let new =
                NewUser { username: name, password_hash: Some(&hash), is_active: !inactive, is_staff: staff };
            if conn.create_user(&new)?.is_none() {
                bail!(
                    "user {name:?} already exists; use `authhost user passwd {name}` to change the password"
                );
            }
            info!(user = name, "user added");
            if config.token_for_new_users {
                let secret = TokenSecret::load(&config.token_secret_file)?;
                if let Some(key) = tokens::get_or_create(conn.as_mut(), &secret, name)? {
                    print_key(&key);
                }
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            if conn.find_user(&name)?.is_none() {
                bail!("no user {name:?}");
            }
            let password = read_password(password_stdin, true)?;
            conn.set_password(&name, &authhost::pool::hash_password(&password))?;
            info!(user = %name, "password changed");
        }
        UserCommand::Deactivate { name } => {
            if !conn.set_active(&name, false)? {
                bail!("no user {name:?}");
            }
            info!(user = %name, "user deactivated");
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // keys go to stdout, for the caller to capture, never to the log
fn token(config: &Config, command: TokenCommand) -> Result<()> {
    let store = store::open(&config.store_url)?;
    let mut conn = store.connect()?;
    let secret = || TokenSecret::load(&config.token_secret_file);
    match command {
        TokenCommand::Create { all: true, .. } => {
            let secret = secret()?;
            for name in conn.users_without_token()? {
                if let Some(key) = tokens::get_or_create(conn.as_mut(), &secret, &name)? {
                    println!("{name} {key}");
                }
            }
        }
        TokenCommand::Create { user, regenerate, key: Some(key), .. } => {
            let name = user.unwrap_or_default();
            if key.is_empty() || key.len() > 256 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("--key must be 1 to 256 visible ASCII characters with no spaces");
            }
            let token = NewToken { digest: &token_digest(&key), nonce: None };
            match conn.create_token(&name, &token, regenerate)? {
                TokenSet::Created => println!("{key}"),
                TokenSet::NoSuchUser => bail!("no user {name:?}"),
                TokenSet::Exists => {
                    bail!("user {name:?} already has a token; add -r to replace it with this key")
                }
            }
        }
        TokenCommand::Create { user, regenerate, key: None, .. } => {
            let name = user.unwrap_or_default();
            let secret = secret()?;
            let key = if regenerate {
                tokens::regenerate(conn.as_mut(), &secret, &name)?
            } else {
                tokens::get_or_create(conn.as_mut(), &secret, &name)?
            };
            match key {
                Some(key) => println!("{key}"),
                None => bail!("no user {name:?}"),
            }
        }
        TokenCommand::Revoke { user } => {
            if conn.find_user(&user)?.is_none() {
                bail!("no user {user:?}");
            }
            let deleted = conn.delete_tokens(&user)?;
            info!(user = %user, deleted, "tokens revoked");
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // a key goes to stdout, for the caller to capture, never to the log
fn print_key(key: &str) {
    println!("{key}");
}

/// From the first line of stdin, or prompted twice without echo. Never from argv.
fn read_password(from_stdin: bool, confirm: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to prompt for a password: pass --password-stdin and pipe it in");
        }
        let first = rpassword::prompt_password("Password: ")?;
        if confirm && rpassword::prompt_password("Password (again): ")? != first {
            bail!("the passwords do not match");
        }
        first
    };
    if password.is_empty() {
        bail!("a password cannot be blank");
    }
    Ok(password)
}
