//! `kubefence-webhook`: serve the admission webhook, generate keys, decode
//! and verify decisions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kubefence_shared::decision::{unix_now, Freshness, NodeView};
use kubefence_shared::envelope::{ParsedToken, Signer, TrustSet};
use kubefence_shared::profile::Catalog;

use kubefence_webhook::admission::Admission;
use kubefence_webhook::config::{ConfigFile, DEFAULT_CERT_RELOAD_SECS};
use kubefence_webhook::keyfiles;
use kubefence_webhook::metrics::Metrics;
use kubefence_webhook::namespaces::{KubeNamespaces, NamespaceSource, StaticNamespaces};
use kubefence_webhook::pods::{KubePods, PodLookup, StaticPods};
use kubefence_webhook::policy::Policy;
use kubefence_webhook::server::{self, AppState};
use kubefence_webhook::tls::CertStore;

// A review is hundreds of small, short-lived allocations (the pod's strings
// and maps, the reply); mimalloc does them in a fraction of glibc's
// instructions (docs/performance.md, "Where the time goes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The dev configuration used by `serve --dev` without `--config`.
const BUILTIN_DEV_CONFIG: &str = include_str!("../examples/dev.toml");

#[derive(Parser)]
#[command(
    name = "kubefence-webhook",
    version,
    about = "kubefence admission webhook"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Write a new decision signing key (decision-signing.pem, mode 0600)
    /// and its public key (decision-public.pem) into a directory; print the key id.
    Keygen {
        /// Directory to write the keys into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a decision token's header key id and claims, WITHOUT verifying
    /// its signature.
    Decode {
        /// The value of a pod's nono.sh/decision annotation.
        token: String,
    },
    /// Verify a decision exactly as a node does: signature against trusted
    /// public keys, then namespace, pod name and runtime handler. Prints
    /// the claims and exits 0 when it verifies, names the reason and exits 1
    /// when it does not.
    Verify {
        /// A public key file, or a directory of *.pem / *.pub files.
        #[arg(long)]
        public_keys: PathBuf,
        /// The pod's namespace.
        #[arg(long)]
        namespace: String,
        /// The pod's final name (for generateName pods, the generated one).
        #[arg(long)]
        pod: String,
        /// The CRI runtime handler the pod runs under.
        #[arg(long)]
        handler: String,
        /// The value of the pod's nono.sh/decision annotation.
        token: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (required unless --dev).
    #[arg(long, env = "KUBEFENCE_CONFIG")]
    config: Option<PathBuf>,
    /// Run without a cluster: self-signed TLS, generated signing key,
    /// namespaces from the config's [[dev.namespaces]], built-in catalog.
    #[arg(long)]
    dev: bool,
    /// Where --dev keeps its certificate (tls.crt, usable as curl's CA),
    /// key and decision keys; reused across runs.
    #[arg(long, default_value = "kubefence-dev", requires = "dev")]
    dev_dir: PathBuf,
    /// Catalog directory for --dev instead of the built-in catalog
    /// (overrides the config's catalog_dir).
    #[arg(long, requires = "dev")]
    catalog: Option<PathBuf>,
    /// Override the config's listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(args))
        }
        Command::Keygen { out } => {
            let signer = keyfiles::keygen(&out)
                .with_context(|| format!("writing keys into {}", out.display()))?;
            println!("{}", signer.kid());
            Ok(())
        }
        Command::Decode { token } => decode(token.trim()),
        Command::Verify {
            public_keys,
            namespace,
            pod,
            handler,
            token,
        } => verify(&public_keys, &namespace, &pod, &handler, token.trim()),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs to stderr; stdout carries only audit records.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn verify(keys: &Path, namespace: &str, pod: &str, handler: &str, token: &str) -> Result<()> {
    let trust = TrustSet::load(keys).context("loading the public keys")?;
    let view = NodeView {
        namespace,
        pod_name: pod,
        handler,
    };
    let verified = trust
        .verify(token, &view, &Freshness::at(unix_now()))
        .map_err(|e| anyhow::anyhow!("{e} ({})", e.reason()))?;
    let out = serde_json::json!({
        "verified": true,
        "kid": verified.kid().as_str(),
        "claims": verified.claims(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn decode(token: &str) -> Result<()> {
    let parsed = ParsedToken::parse(token).context("decoding the token")?;
    let claims = parsed
        .unverified_claims()
        .context("decoding the token's claims")?;
    let out = serde_json::json!({
        "verified": false,
        "kid": parsed.kid().as_str(),
        "claims": claims,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None if args.dev => ConfigFile::parse(BUILTIN_DEV_CONFIG, "built-in dev config".as_ref())?,
        None => bail!("--config is required (or --dev for a local run)"),
    };
    let config = if args.dev {
        let catalog = match args.catalog.as_ref().or(file.catalog_dir.as_ref()) {
            Some(dir) => Catalog::load(dir)
                .with_context(|| format!("loading the catalog from {}", dir.display()))?,
            None => keyfiles::builtin_catalog(),
        };
        file.validate(catalog)?
    } else {
        file.validate_with_catalog_dir()?
    };
    let listen = args.listen.unwrap_or(config.listen);

    let (signer, cert, key, reload_secs, extra_keys): (
        Signer,
        PathBuf,
        PathBuf,
        u64,
        Vec<PathBuf>,
    ) = if args.dev {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "kubefence-webhook.kubefence-system.svc".to_string(),
        ];
        let dev = keyfiles::prepare_dev_dir(&args.dev_dir, &names)
            .with_context(|| format!("preparing {}", args.dev_dir.display()))?;
        tracing::info!(
            kid = %dev.signer.kid(),
            public_key = %dev.public_key.display(),
            ca = %dev.cert.display(),
            "dev mode"
        );
        (
            dev.signer,
            dev.cert,
            dev.key,
            DEFAULT_CERT_RELOAD_SECS,
            Vec::new(),
        )
    } else {
        let keys = config
            .keys
            .clone()
            .context("config section [keys] is required outside --dev")?;
        let tls = config
            .tls
            .clone()
            .context("config section [tls] is required outside --dev")?;
        let signer = Signer::load(&keys.signing_key).context("loading the signing key")?;
        (
            signer,
            tls.cert,
            tls.key,
            tls.reload_interval_secs,
            keys.public_keys,
        )
    };
    let trust = keyfiles::trust_set(&signer, &extra_keys).context("loading public keys")?;
    tracing::info!(kid = %signer.kid(), trusted = trust.len(), "signing key loaded");

    let (namespaces, pods): (Arc<dyn NamespaceSource>, Arc<dyn PodLookup>) = if args.dev {
        // No cluster: exec into any pod fails closed (pod not found).
        (
            Arc::new(StaticNamespaces::new(&config.dev.namespaces)),
            Arc::new(StaticPods::default()),
        )
    } else {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API")?;
        (
            KubeNamespaces::start(client.clone()),
            Arc::new(KubePods::new(client, config.pod_lookup_timeout)),
        )
    };
    tracing::info!(
        exec_mode = config.policy.exec.mode.as_str(),
        break_glass_users = config.policy.exec.break_glass_users.len(),
        break_glass_groups = config.policy.exec.break_glass_groups.len(),
        "exec policy"
    );

    let certs = CertStore::load(&cert, &key).context("loading the serving certificate")?;
    let metrics = Arc::new(Metrics::new());
    let _reloader = certs.spawn_reloader(Duration::from_secs(reload_secs), metrics.clone());
    let admission = Arc::new(Admission::new(
        Policy::new(config.policy.clone(), trust),
        signer,
        namespaces,
        pods,
        Arc::new(kubefence_shared::decision::unix_now),
    ));
    let state = AppState {
        admission,
        metrics,
        limits: Arc::new(server::Limits::from_config(&config)),
    };
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, "serving");
    server::serve(
        listener,
        state,
        certs,
        server::shutdown_signal(),
        Duration::from_secs(config.shutdown_grace_secs),
    )
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
