//! `kubefence-nri`: the kubefence NRI plugin for containerd and CRI-O.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use kubefence_nri::checks;
use kubefence_nri::config::{self, Config, FileConfig, LogFormat};
use kubefence_nri::connection::{self, ConnectOptions};
use kubefence_nri::decide::OnInvalid;
use kubefence_nri::plugin::Core;

const ABOUT: &str = "kubefence NRI plugin: wraps every container of sandbox RuntimeClass \
handlers in the nono Landlock sandbox, under the profile the kubefence webhook decided and \
signed.";

const AFTER_HELP: &str = "\
CONFIG FILE (TOML, every key optional; flags win over the file):
  socket             = \"/var/run/nri/nri.sock\"   runtime NRI socket
  plugin_name        = \"kubefence\"              name registered with the runtime; must match
                                                the webhook's required-plugins annotation
  plugin_index       = \"10\"                     two digits; plugins run in ascending order
  sandbox_handlers   = [\"nono-runc\"]            RuntimeClass handlers that are sandboxed
  host_dir           = \"/opt/kubefence\"         holds nono and profiles/ (catalog.json, <p>.json)
  container_dir      = \"/nono\"                  where host_dir is mounted read-only in containers
  public_keys        = \"/etc/kubefence/keys\"    PEM file or directory of *.pem / *.pub
  on_invalid         = \"reject\"                 or \"confine\": strictest profile instead
  max_age_seconds    = <unset>                  oldest decision accepted; unset = any age
  max_skew_seconds   = 300                      allowed future skew of a decision
  validator          = true                     also validate the merged adjustment (NRI v0.10+)
  log_format         = \"json\"                   or \"compact\" (stderr; level from RUST_LOG)
  assume_nri_version = <unset>                  e.g. \"v0.11.0\" when detection fails

Audit records go to stdout, one JSON object per line. Example file:
nri-plugin/examples/config.toml.

EXIT STATUS: 0 on clean shutdown (SIGTERM/SIGINT) or passed checks; 1 when a startup check
fails; 2 for a configuration error.";

#[derive(Debug, Parser)]
#[command(name = "kubefence-nri", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Config file (TOML). A missing default file is fine; a missing
    /// explicit one is an error.
    #[arg(short, long, env = "KUBEFENCE_NRI_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The runtime's NRI socket [default: /var/run/nri/nri.sock].
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Plugin name to register [default: kubefence].
    #[arg(long, global = true)]
    plugin_name: Option<String>,
    /// Two-digit plugin index [default: 10].
    #[arg(long, global = true)]
    plugin_index: Option<String>,
    /// A sandboxed RuntimeClass handler; repeat for several
    /// [default: nono-runc].
    #[arg(long = "sandbox-handler", global = true)]
    sandbox_handlers: Vec<String>,
    /// Host directory with `nono` and `profiles/` [default: /opt/kubefence].
    #[arg(long, global = true)]
    host_dir: Option<PathBuf>,
    /// Mount point of the host directory in containers [default: /nono].
    #[arg(long, global = true)]
    container_dir: Option<String>,
    /// Trusted public keys: a PEM file or a directory of them
    /// [default: /etc/kubefence/keys].
    #[arg(long, global = true)]
    public_keys: Option<PathBuf>,
    /// Without a valid decision: refuse the container, or confine it under
    /// the strictest profile [default: reject].
    #[arg(long, value_enum, global = true)]
    on_invalid: Option<OnInvalid>,
    /// Oldest decision accepted, seconds [default: any age].
    #[arg(long, global = true)]
    max_age_seconds: Option<i64>,
    /// Allowed clock skew for a decision's issue time, seconds [default: 300].
    #[arg(long, global = true)]
    max_skew_seconds: Option<i64>,
    /// Act as NRI validator too [default: true].
    #[arg(long, global = true)]
    validator: Option<bool>,
    /// Log format on stderr [default: json].
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// Treat the runtime as having this NRI version (when it does not
    /// report one and is not recognised).
    #[arg(long, global = true)]
    assume_nri_version: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the runtime and serve (the default).
    Run,
    /// Run the startup checks only, print the results and exit.
    Check,
    /// Copy nono and the profile catalog from an image directory to the
    /// host directory (the DaemonSet's init container). Checks the catalog
    /// first and replaces each file atomically.
    Install {
        /// Directory holding `nono` and `profiles/` (in the image).
        #[arg(long, default_value = "/opt/kubefence")]
        from: PathBuf,
        /// Host directory to install into (a hostPath mount).
        #[arg(long)]
        to: PathBuf,
    },
}

impl Cli {
    fn flags(&self) -> FileConfig {
        FileConfig {
            socket: self.socket.clone(),
            plugin_name: self.plugin_name.clone(),
            plugin_index: self.plugin_index.clone(),
            sandbox_handlers: (!self.sandbox_handlers.is_empty())
                .then(|| self.sandbox_handlers.clone()),
            host_dir: self.host_dir.clone(),
            container_dir: self.container_dir.clone(),
            public_keys: self.public_keys.clone(),
            on_invalid: self.on_invalid,
            max_age_seconds: self.max_age_seconds,
            max_skew_seconds: self.max_skew_seconds,
            validator: self.validator,
            log_format: self.log_format,
            assume_nri_version: self.assume_nri_version.clone(),
        }
    }

    fn load_config(&self) -> anyhow::Result<Config> {
        let (path, required) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(config::DEFAULT_CONFIG), false),
        };
        let file = config::read_file(&path, required)?;
        Config::from_file(file.overlay(self.flags()))
            .with_context(|| format!("invalid configuration (file {})", path.display()))
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Compact => builder.compact().init(),
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let report = checks::run(&config);
    for c in &report.checks {
        match &c.result {
            Ok(detail) => tracing::info!(check = c.name, "{detail}"),
            Err(e) => tracing::error!(check = c.name, "{e}"),
        }
    }
    let (Some(trust), Some(catalog)) = (report.trust.clone(), report.catalog.clone()) else {
        bail!("startup checks failed: {}", report.failures());
    };
    if !report.ok() {
        bail!("startup checks failed: {}", report.failures());
    }
    let core = Arc::new(Core::new(&config, trust, catalog));
    let opts = ConnectOptions::new(&config.socket);
    let signals = async {
        if let Err(e) = shutdown_signal().await {
            tracing::error!("{e:#}");
            // Without signal handling, serve until killed.
            std::future::pending::<()>().await;
        }
    };
    connection::run(core, opts, signals).await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Install { from, to }) = &cli.command {
        return match kubefence_nri::install::install(from, to) {
            Ok(files) => {
                for f in files {
                    println!("installed {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kubefence-nri install: {e}");
                ExitCode::from(1)
            }
        };
    }
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubefence-nri: {e:#}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Some(Command::Check)) {
        let report = checks::run(&config);
        print!("{}", report.render());
        return if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    init_logging(config.log_format);
    // One thread: the plugin is a handful of tasks passing small messages
    // through in-memory pipes, and every hop between worker threads would
    // cost a futex wake and a context switch on the create path.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubefence-nri: {e:#}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kubefence-nri: {e:#}");
            ExitCode::from(1)
        }
    }
}
