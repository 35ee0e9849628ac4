//! The `authhost` command: serve, check, and user management (SPEC section 5).

use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use authhost::bench::{human, BenchRequest, Limits};
use authhost::loader::Schemes;
use authhost::services::token_digest;
use authhost::store::{self, Backend, NewToken, NewUser, TokenSet};
use authhost::tokens::{self, TokenSecret};
use authhost::{App, AppSlot, Config};
use clap::{Parser, Subcommand};
use tracing::{info, warn};

const DEFAULT_CONFIG: &str = "config/authhost.toml";

#[derive(Debug, Parser)]
#[command(name = "authhost", version, about = "An HTTP authentication host with plugin schemes")]
struct Cli {
    /// The config file [default: $AUTHHOST_CONFIG, else config/authhost.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// How log lines (the access log among them) are written: text, or one JSON object
    /// per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP on the configured address.
    Serve {
        /// Listen here instead of [server] listen (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Write this process's id here once listening (removed on exit), for `authhost
        /// reload` and process managers.
        #[arg(long, value_name = "PATH")]
        pid_file: Option<PathBuf>,
    },
    /// Send SIGHUP to the authhost whose pid file this is: it re-reads its config.
    Reload {
        #[arg(long, value_name = "PATH", default_value = "authhost.pid")]
        pid_file: PathBuf,
    },
    /// Validate the config, load every plugin and print each route's chain.
    Check,
    /// Time a route's chain in-process on a request you describe: each scheme's cost and
    /// the chain's (median, p99). Uses the config's plugins and store, as serving does.
    Bench {
        /// The path to request; its route's chain is timed.
        #[arg(long, value_name = "PATH")]
        route: String,
        /// A request header, `Name: value`; repeat for more.
        #[arg(long = "header", short = 'H', value_name = "HEADER")]
        headers: Vec<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request body (for CSRF form fields, for example).
        #[arg(long)]
        body: Option<String>,
        /// The peer address the schemes see (RemoteUser's trusted proxies).
        #[arg(long, default_value = "127.0.0.1:40000")]
        peer: std::net::SocketAddr,
        /// Stop after this many timed requests...
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// ...or after this many seconds, whichever comes first.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Load one plugin library in this process and build the config's schemes from it:
    /// the trial a serving host runs in a child before it maps a new library.
    #[command(hide = true)]
    TrialLoad {
        /// The library as the config names it (with --config: its schemes are built too).
        #[arg(long)]
        library: Option<PathBuf>,
        /// The private copy to map.
        #[arg(long)]
        copy: PathBuf,
    },
    /// Look at plugin libraries.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Write a new scheme's plugin crate (Cargo.toml, a skeleton, a test, a README) that
    /// builds as generated, outside this repository.
    NewScheme {
        /// The scheme's name: lowercase letters, digits and dashes.
        name: String,
        /// The folder to create it in.
        #[arg(long, default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage tokens. The store keeps a key's digest (and, for a key derived from the token
    /// secret, its nonce), never the key: `token create` prints a derived key again, an
    /// imported or per-client one never.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Move users and tokens from another system into the config's store.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// A Django project's users (auth_user: username, e-mail, password hash, is_active,
    /// is_staff) and DRF's tokens (authtoken_token). Passwords keep working with their
    /// Django hashes (pbkdf2_sha256, pbkdf2_sha1, argon2, bcrypt_sha256, bcrypt, scrypt) and
    /// become argon2id at each user's first login; tokens keep their keys (stored as
    /// digests); unusable passwords stay unusable; users already in the store are left alone.
    Django {
        /// The Django database: sqlite://PATH (or a plain path) or
        /// postgres://USER@HOST:PORT/DB (password from the URL or $PGPASSWORD).
        #[arg(long, value_name = "DATABASE")]
        from: String,
        /// The user table, for a custom AUTH_USER_MODEL with Django's columns.
        #[arg(long, default_value = "auth_user", value_name = "TABLE")]
        user_table: String,
        /// Print what would be imported and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Create the config's store (or bring an existing one up to date): the command line
    /// refuses to work on a store that does not exist.
    Init,
    /// Copy every user, token (digests), session and change from a SQLite store into a
    /// PostgreSQL one, ids kept, counts checked; the password comes from
    /// $AUTHHOST_STORE_PASSWORD.
    Migrate {
        /// The SQLite store: sqlite://PATH.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL store: postgres://USER@HOST:PORT/DB (migrated first if need be).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Empty the target first when it already holds users, tokens or sessions.
        #[arg(long)]
        replace: bool,
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
    /// Delete USER's tokens, or only the one with --id.
    Revoke {
        user: String,
        #[arg(long)]
        id: Option<i64>,
    },
    /// List USER's tokens: id, client, created, expiry, last use (never the keys).
    List { user: String },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// A library's plugin name, plugin-api version, whether this host can load it (and
    /// why not), and the options its schemes take.
    Info { file: PathBuf },
}

/// `authhost plugin info FILE`.
#[allow(clippy::print_stdout)] // a report for the terminal
fn plugin_info(file: &std::path::Path) -> Result<()> {
    let info = authhost::loader::describe_library(file);
    println!("file:        {}", file.display());
    let host_api = authhost_plugin_api::VERSION;
    match &info.plugin_api {
        Some(version) => println!("plugin-api:  {version} (this host: {host_api})"),
        None => println!("plugin-api:  unknown (this host: {host_api})"),
    }
    let (name, options) = match info.loaded {
        Ok(loaded) => loaded,
        Err(why) => {
            println!("loadable:    no: {why}");
            bail!("{} cannot be loaded by this host", file.display());
        }
    };
    println!("plugin:      {name}");
    println!("loadable:    yes");
    if options.is_empty() {
        println!("options:     none declared (the plugin checks its own)");
        return Ok(());
    }
    println!("options:");
    let width = options.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for option in &options {
        let default =
            if option.default.is_empty() { "-".to_owned() } else { format!("{:?}", option.default.as_str()) };
        println!(
            "  {:width$}  {:8}  {:14}  {}",
            option.name.as_str(),
            option.kind.as_str(),
            default,
            option.help.as_str()
        );
    }
    Ok(())
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
        /// The user's e-mail address.
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
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
    /// Activate a user again.
    Activate { name: String },
    /// Change a user's e-mail address or staff status.
    Set {
        name: String,
        /// The new e-mail address ("" for none).
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
        /// Make the user staff (is_admin routes let them in).
        #[arg(long, conflicts_with = "no_staff")]
        staff: bool,
        /// Make the user no longer staff.
        #[arg(long)]
        no_staff: bool,
    },
    /// List users: id, name, e-mail, active, staff.
    List,
    /// Delete a user with their tokens and sessions.
    Delete { name: String },
}

/// An e-mail address as the store keeps it: trimmed, "" for none, refused when it is not
/// `local@domain` (Django's EmailField is stricter; this catches typos like a missing @).
fn email_arg(email: Option<&str>) -> Result<String> {
    let email = email.unwrap_or_default().trim();
    if !email.is_empty() {
        let (local, domain) = email.split_once('@').unwrap_or_default();
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || email.chars().any(char::is_whitespace)
        {
            bail!("{email:?} is not an e-mail address (local@domain)");
        }
    }
    Ok(email.to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Lines are written by a thread of their own; the guard flushes them at exit.
    let _log_writer = init_logging(cli.log_format);
    // A panic anywhere in the host is one log line with its location; a request's answer
    // then becomes a 500 (server::guarded), a pool job's an error for that job alone.
    std::panic::set_hook(Box::new(|info| {
        let cause = authhost_plugin_api::export::payload_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(target: "authhost::panic", thread, location, "the host panicked: {cause}");
    }));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through tracing-appender's non-blocking writer: a request formats its
/// line and queues it, and a thread of its own writes what has queued, a batch per write(2),
/// so that the access log costs the reactor no system call. Nothing is dropped: a full
/// queue waits.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // Flushed whenever the queue runs dry: one write(2) per batch of lines.
        .finish(Batches(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr())));
    if format == LogFormat::Json {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(writer).init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    guard
}

/// How long the log thread rests after writing a batch.
const LOG_BATCH_PAUSE: Duration = Duration::from_millis(5);

/// stderr as the log thread writes it: tracing-appender's thread writes every line it finds
/// queued, then flushes; here a flush also rests a few milliseconds. Under load the thread
/// woke for nearly every access-log line, each wake a futex call and spinning `sched_yield`s
/// on the request's side and a write(2) on the thread's (per request: 0.6 write, 0.5
/// sched_yield, 0.23 futex); resting, it finds hundreds of lines queued and writes them at
/// once. A lone line (an idle host's error) is written as soon as it comes: the rest is
/// taken after the write.
struct Batches(std::io::BufWriter<std::io::Stderr>);

impl std::io::Write for Batches {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(LOG_BATCH_PAUSE);
        Ok(())
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("AUTHHOST_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

#[allow(clippy::print_stdout)] // what new-scheme made, and the next steps, for the terminal
fn run(cli: Cli) -> Result<()> {
    if let Command::TrialLoad { library: None, copy } = &cli.command {
        if let Err(err) = Schemes::trial_library(copy) {
            eprintln!("{err}");
            std::process::exit(authhost::trial::REPORTED);
        }
        return Ok(());
    }
    if let Command::Plugin { command: PluginCommand::Info { file } } = &cli.command {
        return plugin_info(file);
    }
    if let Command::Reload { pid_file } = &cli.command {
        return reload(pid_file);
    }
    if let Command::Store { command: StoreCommand::Migrate { from, to, replace } } = &cli.command {
        return store_migrate(from, to, *replace);
    }
    if let Command::NewScheme { name, dir } = &cli.command {
        let root = authhost::new_scheme::generate(name, dir)?;
        let file = authhost::config::library_file_name(name);
        println!("created {}", root.display());
        println!("  cd {} && cargo test && cargo build --release", root.display());
        println!("  then [[scheme]] path = \"{}/target/release/{file}\" (see its README.md)", root.display());
        return Ok(());
    }
    let path = config_path(&cli);
    let config = Config::load(&path)?;
    // Once per run (a reload re-reads the file but does not repeat them).
    for moved in &config.moved {
        warn!("{moved}");
    }
    match cli.command {
        Command::Serve { listen, pid_file } => serve(&config, listen, pid_file.as_deref()),
        Command::Check => check(&config),
        Command::Bench { route, headers, method, body, peer, requests, seconds } => {
            let (path, query) = route.split_once('?').unwrap_or((&route, ""));
            let headers = headers
                .iter()
                .map(|h| {
                    let (name, value) =
                        h.split_once(':').with_context(|| format!("--header {h:?} is not `Name: value`"))?;
                    Ok((name.trim().to_ascii_lowercase(), value.trim().as_bytes().to_vec()))
                })
                .collect::<Result<Vec<_>>>()?;
            let request = BenchRequest {
                method: method.to_ascii_uppercase(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers,
                body: body.unwrap_or_default().into_bytes(),
                peer,
            };
            let time = Duration::try_from_secs_f64(seconds).context("--seconds must be a positive number")?;
            bench(&config, &request, Limits { requests, time, warmup: 100 })
        }
        Command::NewScheme { .. } => Ok(()),
        Command::TrialLoad { library: Some(library), copy } => {
            // Errors are reported by the host's own load; a crash is what the trial is for.
            if let Err(err) = Schemes::trial(&config, &library, &copy) {
                eprintln!("{err}");
                std::process::exit(authhost::trial::REPORTED);
            }
            Ok(())
        }
        Command::Store { command: StoreCommand::Init } => store_init(&config),
        Command::TrialLoad { library: None, .. }
        | Command::Plugin { .. }
        | Command::Store { .. }
        | Command::Reload { .. } => Ok(()),
        Command::User { command } => user(&config, command),
        Command::Token { command } => token(&config, command),
        Command::Import { command: ImportCommand::Django { from, user_table, dry_run } } => {
            let data = authhost::django_import::read(&from, &user_table)?;
            let (runtime, store) = command_store(&config)?;
            let report = runtime.block_on(authhost::django_import::import(store.as_ref(), &data, dry_run))?;
            println!("{report}");
            Ok(())
        }
    }
}

/// The authhost process a pid file names: its pid, when the file holds one and that
/// process is an authhost (a stale file's pid may belong to anything by now).
fn running_authhost(pid_file: &std::path::Path) -> Result<Option<i32>> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", pid_file.display())),
    };
    let pid: i32 =
        text.trim().parse().with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_authhost = cmdline.split(|&b| b == 0).next().is_some_and(|exe| exe.ends_with(b"authhost"));
    Ok(is_authhost.then_some(pid))
}

/// `authhost reload`: SIGHUP to the one process the pid file names.
#[allow(clippy::print_stdout)] // what was signalled, for the operator
fn reload(pid_file: &std::path::Path) -> Result<()> {
    let Some(pid) = running_authhost(pid_file)? else {
        bail!(
            "no running authhost has the pid file {}; start it with `authhost serve --pid-file {}`",
            pid_file.display(),
            pid_file.display()
        );
    };
    // SAFETY: kill(2) with a pid read from the file and checked to be an authhost.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        bail!("cannot signal pid {pid}: {}", std::io::Error::last_os_error());
    }
    println!("sent SIGHUP to authhost (pid {pid})");
    Ok(())
}

/// The pid file of a serving host, removed when the host exits.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile> {
        if let Some(pid) = running_authhost(path)? {
            bail!("another authhost (pid {pid}) runs with the pid file {}", path.display());
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn serve(
    config: &Config,
    listen: Option<std::net::SocketAddr>,
    pid_file: Option<&std::path::Path>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Inside the runtime, so that the app can start its background tasks.
    let slot = Arc::new(AppSlot::new(runtime.block_on(async { App::build(config) })?));
    let served = runtime.block_on(async {
        let addr = listen.unwrap_or(config.listen);
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let running = config.clone();
        let reload = authhost::reload_on_hangup(Arc::clone(&slot), move || App::reload(&running));
        tokio::spawn(reload);
        let shutdown = authhost::shutdown_signal();
        let _pid_file = pid_file.map(PidFile::write).transpose()?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let schemes: Vec<String> =
            config.schemes.iter().map(|s| format!("{}={}", s.name, s.library.display())).collect();
        info!(
            config = %config.file.display(),
            pid = std::process::id(),
            schemes = %schemes.join(" "),
            "listening on {scheme}://{local}"
        );
        authhost::server::process_manager::ready(&format!("listening on {scheme}://{local}"));
        authhost::serve(listener, slot, shutdown, config.shutdown_timeout, config.max_connections).await;
        Ok(())
    });
    // Requests are done (or their grace is over): a reload still loading (a plugin whose
    // constructor never returns, say) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(500));
    served
}

#[allow(clippy::print_stdout)] // `bench` reports to the terminal
fn bench(config: &Config, request: &BenchRequest, limits: Limits) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let app = runtime.block_on(async { App::build(config) })?;
    let Some(chain) = app.chain_for(&request.path) else {
        bail!("no route in {} matches {:?}", config.file.display(), request.path);
    };
    let names: Vec<&str> = chain.names().collect();
    println!(
        "{} {}: {}",
        request.method,
        request.path,
        if names.is_empty() { "(no schemes)".to_owned() } else { names.join(" -> ") }
    );
    let report = authhost::bench::run(&app, &runtime, request, limits, authhost::bench::progress_bar)
        .context("the route vanished")?;
    use authhost::Verdict;
    let verdict = match &report.verdict {
        Verdict::Authenticated { user, position, .. } => {
            format!(
                "authenticated as {:?} by {}",
                user.username.as_str(),
                names.get(*position).unwrap_or(&"?")
            )
        }
        Verdict::Anonymous => "anonymous".to_owned(),
        // The detail as the response carries it.
        Verdict::Failed { detail } => format!("failed: {detail:?}"),
        Verdict::Forbidden { detail } => format!("forbidden: {detail:?}"),
        Verdict::Busy => "busy (a queue was full)".to_owned(),
        Verdict::Unavailable => "the store did not answer within busy_timeout".to_owned(),
        Verdict::Throttled { .. } => "throttled by [throttle] failures".to_owned(),
        Verdict::Fault => bail!(
            "the chain faulted, so it cannot be timed: the log line above names the scheme, its plugin file and the cause"
        ),
    };
    println!("verdict: {verdict}; {} requests in {:.2} s\n", report.requests, report.elapsed.as_secs_f64());
    println!("  {:<20} {:<14} {:>10} {:>10}", "scheme", "outcome", "median", "p99");
    for s in &report.schemes {
        println!("  {:<20} {:<14} {:>10} {:>10}", s.name, s.outcome, human(s.median), human(s.p99));
    }
    let per_second = if report.median.is_zero() { 0.0 } else { 1.0 / report.median.as_secs_f64() };
    println!(
        "  {:<20} {:<14} {:>10} {:>10}   (about {per_second:.0} chains/s on one core)",
        "chain",
        "total",
        human(report.median),
        human(report.p99)
    );
    Ok(())
}

#[allow(clippy::print_stdout)] // `check` reports to the terminal
fn check(config: &Config) -> Result<()> {
    let schemes = Schemes::load(config)?;
    // Everything serving would check: the store, the token secret, each route's schemes.
    App::with_schemes(config, &schemes)?;
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
        if let Some(upstream) = &route.upstream {
            println!("  {:<24} -> {}", "", upstream.url());
        }
    }
    Ok(())
}

/// `authhost store migrate`: SQLite into PostgreSQL.
#[allow(clippy::print_stdout)] // the counts, for the operator
fn store_migrate(from: &str, to: &str, replace: bool) -> Result<()> {
    let Some(path) = from.strip_prefix("sqlite://").filter(|p| !p.is_empty()) else {
        bail!("--from must be a SQLite store: sqlite://PATH");
    };
    if !store::is_postgres(to) {
        bail!("--to must be a PostgreSQL store: postgres://USER@HOST:PORT/DB");
    }
    let path = std::path::Path::new(path);
    if !path.is_file() {
        bail!("no SQLite store at {}", path.display());
    }
    let dump = store::SqliteStore::dump(path)?;
    let options = store::PgOptions {
        password: std::env::var(store::PASSWORD_ENV).ok(),
        busy_timeout: Duration::from_secs(30),
        max_connections: 1,
        change_log_keep: store::CHANGE_LOG_KEEP,
    };
    let target = store::PgBackend::open(to, &options)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let [users, tokens, sessions, changes] = runtime.block_on(target.import(&dump, replace))?;
    println!(
        "copied {users} users, {tokens} tokens, {sessions} sessions and {changes} changes into {}",
        store::redacted(to)
    );
    Ok(())
}

/// `authhost store init`: the config's store, created or brought up to date.
#[allow(clippy::print_stdout)] // what was made, for the operator
fn store_init(config: &Config) -> Result<()> {
    let password = config.store_password()?;
    let store = store::open_for_command(&config.store_url, config.change_log_keep, password)?;
    drop(store);
    println!("store ready: {}", store::redacted(&config.store_url));
    Ok(())
}

/// A runtime for one command, and the config's store.
fn command_store(config: &Config) -> Result<(tokio::runtime::Runtime, Arc<dyn Backend>)> {
    // Never an empty store made where the command happens to run.
    if let Some(path) = config.store_url.strip_prefix("sqlite://") {
        if !std::path::Path::new(path).exists() {
            bail!("no store at {path}; run `authhost serve` or `authhost store init` first");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let password = config.store_password()?;
    let store = runtime
        .block_on(async { store::open_for_command(&config.store_url, config.change_log_keep, password) })?;
    Ok((runtime, store))
}

fn user(config: &Config, command: UserCommand) -> Result<()> {
    let (runtime, store) = command_store(config)?;
    runtime.block_on(user_command(config, store.as_ref(), command))
}

async fn user_command(config: &Config, store: &dyn Backend, command: UserCommand) -> Result<()> {
    // Django's normalize_username (NFKC): `ａｌｉｃｅ` names alice.
    let normal = |name: &str| authhost::usernames::normalize(name).into_owned();
    match command {
        UserCommand::Add { name, staff, inactive, email, password_stdin } => {
            let name = normal(name.trim());
            let name = name.as_str();
            if name.is_empty() {
                bail!("a username cannot be blank");
            }
            let email = email_arg(email.as_deref())?;
            let password = read_password(password_stdin, true)?;
            let hash = authhost::pool::hash_password(&password);
            let new = NewUser {
                username: name,
                password_hash: Some(&hash),
                is_active: !inactive,
                is_staff: staff,
                email: &email,
            };
            if store.create_user(&new).await?.is_none() {
                bail!(
                    "user {name:?} already exists; use `authhost user passwd {name}` to change the password"
                );
            }
            info!(user = name, "user added");
            if config.token_for_new_users {
                let secret = TokenSecret::load(&config.token_secret_file)?;
                if let Some(key) = tokens::get_or_create(store, &secret, name).await? {
                    print_key(&key);
                }
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let name = normal(&name);
            if store.find_user(&name).await?.is_none() {
                bail!("no user {name:?}");
            }
            let password = read_password(password_stdin, true)?;
            store.set_password(&name, &authhost::pool::hash_password(&password)).await?;
            info!(user = %name, "password changed");
        }
        UserCommand::Deactivate { name } => {
            let name = normal(&name);
            if !store.set_active(&name, false).await? {
                bail!("no user {name:?}");
            }
            info!(user = %name, "user deactivated");
        }
        UserCommand::Activate { name } => {
            let name = normal(&name);
            if !store.set_active(&name, true).await? {
                bail!("no user {name:?}");
            }
            info!(user = %name, "user activated");
        }
        UserCommand::Set { name, email, staff, no_staff } => {
            let name = normal(&name);
            if email.is_none() && !staff && !no_staff {
                bail!("nothing to set: give --email ADDR, --staff or --no-staff");
            }
            if store.find_user(&name).await?.is_none() {
                bail!("no user {name:?}");
            }
            if let Some(email) = email {
                let email = email_arg(Some(&email))?;
                store.set_email(&name, &email).await?;
            }
            if staff || no_staff {
                store.set_staff(&name, staff).await?;
            }
            info!(user = %name, "user changed");
        }
        UserCommand::List => {
            let mut out = std::io::stdout().lock();
            for u in store.list_users().await? {
                let email = if u.email.is_empty() { "-" } else { u.email.as_str() };
                let status = if u.is_active { "active" } else { "inactive" };
                let staff = if u.is_staff { "staff" } else { "-" };
                writeln!(out, "{}\t{}\t{email}\t{status}\t{staff}", u.id, u.username)?;
            }
        }
        UserCommand::Delete { name } => {
            let name = normal(&name);
            if !store.delete_user(&name).await? {
                bail!("no user {name:?}");
            }
            info!(user = %name, "user deleted");
        }
    }
    Ok(())
}

fn token(config: &Config, command: TokenCommand) -> Result<()> {
    let (runtime, store) = command_store(config)?;
    runtime.block_on(token_command(config, store.as_ref(), command))
}

#[allow(clippy::print_stdout)] // keys go to stdout, for the caller to capture, never to the log
async fn token_command(config: &Config, store: &dyn Backend, command: TokenCommand) -> Result<()> {
    let secret = || TokenSecret::load(&config.token_secret_file);
    match command {
        TokenCommand::Create { all: true, .. } => {
            let secret = secret()?;
            for name in store.users_without_token().await? {
                if let Some(key) = tokens::get_or_create(store, &secret, &name).await? {
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
            match store.create_token(&name, &token, regenerate).await? {
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
                tokens::regenerate(store, &secret, &name).await?
            } else {
                tokens::get_or_create(store, &secret, &name).await?
            };
            match key {
                Some(key) => println!("{key}"),
                None => bail!("no user {name:?}"),
            }
        }
        TokenCommand::Revoke { user, id } => {
            let Some(found) = store.find_user(&user).await? else { bail!("no user {user:?}") };
            let deleted = match id {
                Some(id) if store.delete_token(found.id, id).await? => 1,
                Some(id) => bail!("user {user:?} has no token {id}; `authhost token list {user}` shows them"),
                None => store.delete_tokens(&user).await?,
            };
            info!(user = %user, deleted, "tokens revoked");
        }
        TokenCommand::List { user } => {
            if store.find_user(&user).await?.is_none() {
                bail!("no user {user:?}");
            }
            let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), tokens::rfc3339);
            println!(
                "{:>6}  {:<24} {:<21} {:<21} {:<21} kind",
                "id", "client", "created", "expires", "last use"
            );
            for t in store.list_tokens(&user).await? {
                let client: String = t.client.as_deref().unwrap_or("-").chars().take(24).collect();
                let kind = match (t.derived, &t.client) {
                    (true, _) => "obtain_token",
                    (false, Some(_)) => "login_token",
                    (false, None) => "imported",
                };
                println!(
                    "{:>6}  {client:<24} {:<21} {:<21} {:<21} {kind}",
                    t.id,
                    t.created,
                    when(t.expires),
                    when(t.last_used)
                );
            }
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
