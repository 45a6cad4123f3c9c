//! The `multilangd` command line: parse arguments, set up logging, load the configuration,
//! turn SIGTERM/SIGINT into a [`multilangd::shutdown::Shutdown`] request, call [`multilangd::run`] and map the outcome to an
//! exit code.
//!
//! Exit codes: 0 clean stop, 78 configuration or command-line error (`EX_CONFIG`), 1 runtime
//! failure, 128 + signal number when a second SIGINT/SIGTERM forced an immediate stop (record
//! processors killed, one bounded lease release).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use multilangd::config::{Config, Loaded};
use multilangd::shutdown::Shutdown;
use tokio::signal::unix::{signal, SignalKind};

/// `--version`: the crate version and the git commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("MULTILANGD_COMMIT"), ")");

const EXIT_CONFIG: u8 = 78;
const EXIT_RUNTIME: u8 = 1;

/// A native drop-in replacement for the Amazon KCL MultiLangDaemon.
///
/// Runs the record processor named by `executableName` once per shard lease, reading the same
/// `.properties` file as the Java daemon.
#[derive(Debug, Parser)]
#[command(name = "multilangd", version = VERSION, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The properties file (wins over a positional FILE, as in Java).
    #[arg(short = 'p', long = "properties-file", value_name = "FILE")]
    properties_file: Option<PathBuf>,
    /// The properties file (the Java daemon's positional form).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Accepted for compatibility with the Java daemon's logback option and ignored: use
    /// --log-level / RUST_LOG and --log-format.
    #[arg(short = 'l', long = "log-configuration", value_name = "FILE")]
    log_configuration: Option<PathBuf>,
    /// Serve /metrics, /healthz, /readyz and /status on HOST:PORT (a bare PORT binds
    /// 127.0.0.1); wins over `multilangd.httpAddress`.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_http_address)]
    http_address: Option<std::net::SocketAddr>,
    #[command(flatten)]
    logging: LogArgs,
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log filter, e.g. `info` or `multilangd=debug,aws=warn` (default: RUST_LOG, else info).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log line format (logs go to stderr; stdout stays empty).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a properties file: print the resolved configuration (with where each value came
    /// from) and the warnings; exit 78 when it is invalid.
    Validate {
        /// The properties file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show the application's lease table (owners, counters, checkpoints, the 2.x leader).
    ///
    /// Per shard: the owner, leaseCounter, checkpoint (`SEQUENCE/SUB` when the sub-sequence
    /// number is not 0), parent and child shards. Then the lease count per owner and which
    /// owner is the KCL 2.x leader (the one that runs the periodic shard-sync audit), the
    /// KCL 3.x migration state (Migration3.0) and the malformed items workers skip.
    ///
    /// A worker is alive while the counters of its leases keep changing (each renewal, every
    /// failoverTimeMillis/3, increments them). With --watch the table is read again every
    /// SECONDS and the UNCHANGED column tells how long each counter has stayed the same
    /// between reads (a lower bound); an owned lease unchanged for longer than
    /// failoverTimeMillis is marked EXPIRED: peers take it at their next taker round.
    ///
    /// Uses the properties file's applicationName/tableName, region, dynamoDBEndpoint and
    /// DynamoDB credentials; only reads. Exit codes: 0 ok, 78 configuration error, 1 lease
    /// table missing or DynamoDB error. See docs/operations.md.
    #[command(verbatim_doc_comment)]
    Leases {
        /// The properties file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON instead of a table (one object per read, one per line with --watch).
        #[arg(long)]
        json: bool,
        /// Read the table again every SECONDS (until interrupted, or --count reads).
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        watch: Option<Duration>,
        /// With --watch: stop after this many reads.
        #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Show what the running daemon of this properties file is doing: phase, health and
    /// readiness (with reasons), the last lease renewal, and per held shard its state,
    /// records, bytes, behind-latest, processor starts, restarts, checkpoint and stalls.
    ///
    /// Asks the daemon's HTTP server (`multilangd.httpAddress` in the file, or --http-address)
    /// for GET /status. Exit codes: 0 ready, 3 answering but not ready, 1 not reachable,
    /// 78 configuration error (including no HTTP address).
    #[command(verbatim_doc_comment)]
    Status {
        /// The properties file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The daemon's HTTP address (wins over multilangd.httpAddress).
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_http_address)]
        http_address: Option<std::net::SocketAddr>,
    },
}

fn parse_http_address(text: &str) -> Result<std::net::SocketAddr, String> {
    multilangd::config::parse_listen_address(text).ok_or_else(|| {
        format!("`{text}`: expected IP:PORT, [IPv6]:PORT, localhost:PORT or a bare PORT (binds 127.0.0.1)")
    })
}

/// A positive number of seconds (fractions allowed).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("`{text}`: expected seconds between 0 (exclusive) and 86400"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            // Printing --help or a usage error can only fail if stdout/stderr are gone.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(message) = init_tracing(&cli.logging) {
        eprintln!("multilangd: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Some(Command::Validate { ref file }) => validate(file),
        Some(Command::Leases { ref file, json, watch, count }) => leases(file, json, watch, count),
        Some(Command::Status { ref file, http_address }) => status(file, http_address),
        None => daemon(&cli),
    }
}

fn init_tracing(args: &LogArgs) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let (source, directives) = match (&args.log_level, std::env::var("RUST_LOG")) {
        (Some(level), _) => ("--log-level", level.clone()),
        (None, Ok(env)) if !env.trim().is_empty() => ("RUST_LOG", env),
        _ => ("default", "info".to_owned()),
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| format!("invalid {source} `{directives}`: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

/// The error and all its sources, once each.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Java's rules: `-p` wins over a positional file (with a warning); more than one positional
/// file is an error.
fn properties_path(cli: &Cli) -> Result<PathBuf, String> {
    if cli.files.len() > 1 {
        let names: Vec<String> = cli.files.iter().map(|f| f.display().to_string()).collect();
        return Err(format!("expected a single properties file, but found several: {}", names.join(", ")));
    }
    match (&cli.properties_file, cli.files.first()) {
        (Some(p), Some(positional)) => {
            tracing::warn!(
                ignored = %positional.display(),
                "overriding the properties file with the --properties-file option"
            );
            Ok(p.clone())
        }
        (Some(p), None) | (None, Some(p)) => Ok(p.clone()),
        (None, None) => Err("no properties file given: use `multilangd -p FILE`, `multilangd FILE` or \
             `multilangd validate FILE`"
            .to_owned()),
    }
}

fn daemon(cli: &Cli) -> ExitCode {
    let path = match properties_path(cli) {
        Ok(path) => path,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(file) = &cli.log_configuration {
        tracing::info!(
            file = %file.display(),
            "--log-configuration is ignored: multilangd logs to stderr; use --log-level, RUST_LOG and --log-format"
        );
    }
    raise_open_file_limit();
    let loaded = match Config::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("{}", chain(&e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut config = loaded.config;
    if let Some(address) = cli.http_address {
        config.http_address = Some(address);
    }
    tracing::info!(
        file = %path.display(),
        application = %config.application_name,
        stream = %config.stream_name,
        processing_language = config.processing_language.as_deref().unwrap_or("-"),
        "configuration loaded"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {}", chain(&e));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        let shutdown = Shutdown::new();
        let forced_code = Arc::new(AtomicU8::new(0));
        let signals = match watch_signals(shutdown.clone(), forced_code.clone()) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!("cannot install signal handlers: {}", chain(&e));
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let result = multilangd::run(config, shutdown).await;
        signals.abort();
        let forced = forced_code.load(Ordering::Relaxed);
        match result {
            Ok(()) if forced != 0 => {
                tracing::warn!(code = forced, "stopped by a second signal");
                ExitCode::from(forced)
            }
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{}", chain(&e));
                ExitCode::from(if e.is_config_error() { EXIT_CONFIG } else { EXIT_RUNTIME })
            }
        }
    })
}

/// Installs SIGTERM/SIGINT handlers now (so no signal is missed) and returns the task that
/// requests a graceful stop on the first signal and forces an immediate one on the second
/// (every record processor killed, one bounded lease release; `forced_code` gets 128 + the
/// signal number for the exit status).
fn watch_signals(shutdown: Shutdown, forced_code: Arc<AtomicU8>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "shutting down gracefully; send the signal again to exit at once");
        shutdown.request();
        let (name, code) = tokio::select! {
            _ = term.recv() => ("SIGTERM", 128 + 15),
            _ = int.recv() => ("SIGINT", 128 + 2),
        };
        tracing::warn!(signal = name, code, "second signal: killing the record processors and exiting");
        forced_code.store(code, Ordering::Relaxed);
        shutdown.force();
    }))
}

/// `multilangd validate FILE`: refuses what the daemon would refuse at start (an invalid file,
/// or one this version cannot run), else prints the report.
fn validate(path: &Path) -> ExitCode {
    match Config::load(path).and_then(|loaded| loaded.config.check_runnable().map(|()| loaded)) {
        Ok(loaded) => {
            print!("{}", report(path, &loaded));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("multilangd: {}", chain(&e));
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The `validate` report: resolved values with their origin, unused keys, warnings.
fn report(path: &Path, loaded: &Loaded) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let width = loaded.resolved.iter().map(|r| r.key.len() + 3 + r.value.len()).max().unwrap_or(0);
    let _ = writeln!(out, "{}: valid\n\nResolved configuration:", path.display());
    for r in &loaded.resolved {
        let assignment = format!("{} = {}", r.key, r.value);
        let _ = writeln!(out, "  {assignment:<width$}  # {}", r.origin);
    }
    let c = &loaded.config;
    let _ = writeln!(out, "\nCredentials:");
    let dynamodb = c.credentials_dynamodb.as_ref().unwrap_or(&c.credentials);
    for (client, spec) in [("Kinesis", &c.credentials), ("DynamoDB", dynamodb)] {
        let chain: Vec<String> = spec.providers.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  {client}: {}", chain.join(", then "));
    }
    if !c.unused_keys.is_empty() {
        let _ = writeln!(out, "\nAccepted but not used:");
        for (key, line) in &c.unused_keys {
            let _ = writeln!(out, "  {key}  # line {line}");
        }
    }
    let _ = writeln!(out, "\nWarnings ({}):", loaded.warnings.len());
    for w in &loaded.warnings {
        let _ = writeln!(out, "  {w}");
    }
    out
}

/// `multilangd status FILE`: prints the running daemon's `/status` page.
fn status(path: &Path, http_address: Option<std::net::SocketAddr>) -> ExitCode {
    const EXIT_NOT_READY: u8 = 3;
    let config = match Config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("multilangd: {}", chain(&e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(mut address) = http_address.or(config.http_address) else {
        eprintln!(
            "multilangd: {} has no multilangd.httpAddress and no --http-address was given: the daemon serves its \
             status over HTTP (see docs/operations.md); `multilangd leases {}` shows the lease table instead",
            path.display(),
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    // A server bound to every interface is asked on loopback.
    if address.ip().is_unspecified() {
        let loopback: std::net::IpAddr =
            if address.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        address.set_ip(loopback);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multilangd: cannot start the async runtime: {}", chain(&e));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        use multilangd::ops::http::get;
        let within = Duration::from_secs(5);
        let page = match get(address, "/status", within).await {
            Ok((200, body)) => body,
            Ok((code, body)) => {
                eprintln!("multilangd: {address}/status answered {code}: {}", body.trim_end());
                return ExitCode::from(EXIT_RUNTIME);
            }
            Err(e) => {
                eprintln!("multilangd: no daemon answers at {address}: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        print!("{page}");
        match get(address, "/readyz", within).await {
            Ok((200, _)) => ExitCode::SUCCESS,
            _ => ExitCode::from(EXIT_NOT_READY),
        }
    })
}

/// `multilangd leases FILE`: prints the lease table once, or every `watch` until
/// interrupted or `count` reads were printed.
fn leases(path: &Path, json: bool, watch: Option<Duration>, count: Option<u64>) -> ExitCode {
    use multilangd::lease::dynamodb::DynamoLeaseStore;
    use multilangd::lease::kcl3::coordinator::DynamoCoordinatorStore;
    use multilangd::lease::kcl3::default_side_table_names;
    use multilangd::lease::kcl3::worker_metrics::DynamoWorkerMetricsStore;
    use multilangd::leases_report::{ChangeTracker, Kcl3Sources, Snapshot};
    use std::io::Write;

    let config = match Config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("multilangd: {}", chain(&e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multilangd: cannot start the async runtime: {}", chain(&e));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        let clients = match multilangd::aws::clients(&config).await {
            Ok(clients) => clients,
            Err(e) => {
                eprintln!("multilangd: {}", chain(&e));
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let (coordinator_table, metrics_table) = default_side_table_names(&config.application_name);
        let store =
            DynamoLeaseStore::new(clients.dynamodb.clone(), config.table_name.clone(), coordinator_table.clone());
        let coordinator = DynamoCoordinatorStore::new(clients.dynamodb.clone(), coordinator_table);
        let metrics = DynamoWorkerMetricsStore::new(clients.dynamodb, metrics_table);
        let mut tracker = ChangeTracker::new();
        let mut reads = 0_u64;
        let mut next = tokio::time::Instant::now();
        loop {
            let snapshot = match Snapshot::read(&store, config.failover_time, &mut tracker).await {
                Ok(snapshot) => Some(snapshot),
                Err(e) => {
                    let hint = if matches!(e, multilangd::lease::LeaseError::TableMissing { .. }) {
                        format!(
                            " (has the application `{}` never run, or are tableName/applicationName and the \
                             DynamoDB region/endpoint right?)",
                            config.application_name
                        )
                    } else {
                        String::new()
                    };
                    eprintln!("multilangd: cannot read the lease table: {}{hint}", chain(&e));
                    // A watch that has worked once rides out transient errors.
                    if watch.is_none() || reads == 0 {
                        return ExitCode::from(EXIT_RUNTIME);
                    }
                    None
                }
            };
            if let Some(mut snapshot) = snapshot {
                snapshot
                    .read_kcl3(&Kcl3Sources { coordinator: &coordinator, metrics: &metrics, lease_table: &store })
                    .await;
                reads += 1;
                let text = if json {
                    format!("{}\n", snapshot.to_json())
                } else if watch.is_some() {
                    format!("--- read {reads} ---\n{}\n", snapshot.render_text())
                } else {
                    snapshot.render_text()
                };
                let mut stdout = std::io::stdout().lock();
                // A closed stdout (e.g. `| head`) ends the command quietly.
                if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            let Some(every) = watch else { return ExitCode::SUCCESS };
            if count.is_some_and(|n| reads >= n) {
                return ExitCode::SUCCESS;
            }
            next += every;
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

/// Raises the soft limit on open files to the hard limit, as the JVM does for the Java
/// daemon (`-XX:+MaxFDLimit`): every shard holds a child's three pipes plus sockets, about
/// 5.5 descriptors per shard (BENCHMARKS.md, many-shards), so a 1 024 soft limit would stop
/// a worker near 180 shards. Failure only costs head-room; it is logged, never fatal.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}
