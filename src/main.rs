//! `taskflow`: the server (`serve`, the default) and its command-line tools.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use taskflow_server::auth::{Keys, Role};
use taskflow_server::config::{Config, LogFormat, Overrides};
use taskflow_server::domain::UserId;
use taskflow_server::store::Store;
use taskflow_server::{telemetry, Server};

#[derive(Parser)]
#[command(
    name = "taskflow",
    version,
    about = "Task management with a real-time hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, also accepted without the subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a user token (JWT) signed with this database's key.
    Token(TokenArgs),
    /// Print task events live from a server; reconnects by itself.
    Client(ClientArgs),
    /// Load a server on this machine and measure it.
    Bench(taskflow_bench::cli::BenchArgs),
    /// Show the ten concepts at work, against --target or a server of its own; exits non-zero
    /// if any chapter did not behave as it says.
    Demo(taskflow_demo::DemoArgs),
}

#[derive(Args)]
struct ClientArgs {
    /// The server's WebSocket endpoint (`wss://` for a server with TLS).
    #[arg(long, default_value = "ws://localhost:3000/ws/tasks")]
    url: String,
    /// Trust this CA (PEM) for wss:// instead of the built-in roots (a private CA).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// A room to subscribe to (repeatable): project:<id>, user:<id>, tasks. Default: tasks.
    #[arg(long = "room")]
    rooms: Vec<String>,
    /// Bearer token [default: $TASKFLOW_TOKEN, else $TASKFLOW_ADMIN_TOKEN].
    #[arg(long)]
    token: Option<String>,
    /// Print every frame as one raw JSON line, for scripts.
    #[arg(long)]
    json: bool,
    /// Do not offer permessage-deflate: plain frames even from a server that compresses.
    #[arg(long)]
    no_compression: bool,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, short = 'c', env = "TASKFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3000].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// sqlite://PATH or postgres://... [default: sqlite://taskflow.db].
    #[arg(long)]
    database: Option<String>,
    /// Log format: pretty or json.
    #[arg(long, value_parser = ["pretty", "json"])]
    log_format: Option<String>,
    /// `local` or redis://host:port/ to join a cluster [default: local].
    #[arg(long)]
    broker: Option<String>,
    /// This node's id in a cluster [default: generated at start].
    #[arg(long)]
    node_id: Option<String>,
    /// Share the listening port with other nodes on this machine (SO_REUSEPORT).
    #[arg(long)]
    reuse_port: bool,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key) [env: TASKFLOW_TLS_CERT].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env: TASKFLOW_TLS_KEY].
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen: self.listen,
            database: self.database.clone(),
            log_format: self.log_format.as_deref().map(|f| {
                if f == "json" {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                }
            }),
            broker: self.broker.clone(),
            node_id: self.node_id.clone(),
            reuse_port: self.reuse_port.then_some(true),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        };
        Config::load(self.config.as_deref(), &overrides).context("invalid configuration")
    }
}

#[derive(Args)]
struct TokenArgs {
    /// The user the token speaks for.
    #[arg(long)]
    user: String,
    /// member or admin.
    #[arg(long, default_value = "member", value_parser = ["member", "admin"])]
    role: String,
    /// Lifetime in seconds [default: the server's token_ttl_secs].
    #[arg(long)]
    ttl_secs: Option<u64>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Token(args)) => token(args).await,
        Some(Command::Client(args)) => client(args).await,
        Some(Command::Bench(args)) => bench(args).await,
        Some(Command::Demo(args)) => demo(args).await,
    }
}

async fn demo(args: taskflow_demo::DemoArgs) -> anyhow::Result<()> {
    let summary = taskflow_demo::run(args).await?;
    anyhow::ensure!(
        summary.all_ok(),
        "{} of {} chapters failed",
        summary.failed(),
        summary.chapters.len()
    );
    Ok(())
}

async fn bench(args: taskflow_bench::cli::BenchArgs) -> anyhow::Result<()> {
    Ok(taskflow_bench::cli::run(args).await?)
}

async fn client(args: ClientArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .or_else(|| std::env::var("TASKFLOW_TOKEN").ok())
        .or_else(|| std::env::var("TASKFLOW_ADMIN_TOKEN").ok())
        .context("no token: pass --token, or set TASKFLOW_TOKEN or TASKFLOW_ADMIN_TOKEN")?;
    let options = taskflow_client::ClientOptions {
        url: args.url,
        ca_cert: args.ca_cert,
        token,
        rooms: args.rooms,
        json: args.json,
        backoff_base: std::time::Duration::from_millis(500),
        backoff_cap: std::time::Duration::from_secs(30),
        compression: !args.no_compression,
    };
    taskflow_client::run(options, std::io::stdout(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    telemetry::init_logging(config.log_format, &config.log_level);
    let listener = taskflow_server::listener::bind(config.listen, config.reuse_port)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let database = config.database.clone();
    let broker = config.broker.clone();
    let server = Server::open(config).await?;
    let scheme = if server.tls().is_some() {
        "https"
    } else {
        "http"
    };
    // Printed to the terminal, not logged: tokens never go to the logs.
    match server.state().cluster() {
        Some(cluster) => println!(
            "Taskflow listening on {scheme}://{address} (store: {database}, broker: {broker}, node: {})",
            cluster.node()
        ),
        None => println!("Taskflow listening on {scheme}://{address} (store: {database})"),
    }
    match server.generated_admin_token() {
        Some(token) => {
            println!("Admin token (generated now, shown only this once; only its hash is stored):");
            println!("  export TASKFLOW_ADMIN_TOKEN={}", token.expose());
        }
        None => {
            println!("Admin token: TASKFLOW_ADMIN_TOKEN, or the one printed on the first start.")
        }
    }
    println!("User tokens: taskflow token --user alice   (or POST /auth/tokens as admin)");
    println!("{}", sign_in_link(&server, address));
    server.serve(listener, shutdown_signal()).await
}

/// The board's address for a server listening on `address`, `https://` when it speaks TLS:
/// `localhost` for a loopback or unspecified address (what a person on this machine opens).
fn board_origin(address: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if address.ip().is_loopback() || address.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", address.port())
    } else {
        format!("{scheme}://{address}")
    }
}

/// The board's sign-in link for the local admin: a short-lived admin-role JWT, minted on every
/// start (the admin token itself is shown only on the first), in the URL's fragment, which the
/// browser never sends to the server. Printed to the terminal only, never logged.
fn sign_in_link(server: &Server, address: std::net::SocketAddr) -> String {
    let admin = UserId::parse("admin", "user").expect("a valid user id");
    let ttl = server.state().config().token_ttl_secs;
    let minted = server.state().keys().mint(&admin, Role::Admin, Some(ttl));
    let lifetime = if ttl >= 3600 {
        format!("{} h", ttl / 3600)
    } else {
        format!("{} min", ttl.div_ceil(60))
    };
    format!(
        "Board (signed in as admin for {lifetime}; keep this link private):\n  {}/#token={}",
        board_origin(address, server.tls().is_some()),
        minted.token
    )
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = args.serve.load()?;
    let user = UserId::parse(&args.user, "user").map_err(|e| anyhow::anyhow!("--user {e}"))?;
    let store = Store::connect(&config.database).await?;
    let secrets = Keys::load(&config, &store).await?;
    if let Some(admin) = secrets.generated_admin_token {
        eprintln!("This database was new; its admin token: {}", admin.expose());
    }
    let role = if args.role == "admin" {
        Role::Admin
    } else {
        Role::Member
    };
    let minted = secrets.keys.mint(&user, role, args.ttl_secs);
    store.close().await;
    // The token alone on stdout, for scripts; the link for a person on stderr.
    println!("{}", minted.token);
    eprintln!(
        "Board for {user}: {}/#token={}",
        board_origin(config.listen, config.tls_cert.is_some()),
        minted.token
    );
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
