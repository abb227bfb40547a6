//! `cca-uat-proxy serve --listen HOST:PORT`: routes `<session>.<UAT_DOMAIN_SUFFIX>` to the
//! session's container. This file only wires: configuration, store, listeners, signals.

use std::net::SocketAddr;

use anyhow::Context as _;
use cca_uat_proxy::{Config, Proxy, ProxyArgs, init_logging, metrics};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "cca-uat-proxy",
    version,
    about = "Claude Cloud Agent preview proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    settings: ProxyArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the proxy over HTTP.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"));
    let config = Config::from_args(cli.settings).context("invalid configuration")?;
    let Command::Serve { listen } = cli.command;
    let store = cca_settings::open_store(&config.store, &cca_settings::Aws::default()).await?;
    let mut proxy = Proxy::new(store, config.settings);

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    if let Some(addr) = config.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (PROXY_METRICS_LISTEN)"))?;
        proxy.refuse_listener(listener.local_addr()?);
        tracing::info!(%addr, "metrics serving");
        tokio::spawn(metrics::serve(
            proxy.metrics(),
            listener,
            stopped(stop_rx.clone()),
        ));
    }
    let listener = cca_uat_proxy::proxy::listener(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    proxy
        .serve_workers(listener, config.workers, stop_rx)
        .await
        .context("proxy failed")
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT (Ctrl-C).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
