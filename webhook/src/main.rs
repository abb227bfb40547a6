//! `cca-webhook`: a Lambda when `AWS_LAMBDA_RUNTIME_API` is set, otherwise
//! `cca-webhook serve --listen HOST:PORT`. Both run the same router; the Lambda also runs the
//! sweeper on an EventBridge scheduled event.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use cca_webhook::serve::{LimitArgs, Limits};
use cca_webhook::sweep::{SweepSettings, SweeperArgs};
use cca_webhook::{App, Config, WebhookArgs, init_logging, router};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cca-webhook",
    version,
    about = "Claude Cloud Agent webhook intake"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: WebhookArgs,
    #[command(flatten)]
    sweep: SweeperArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhook over HTTP.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    init_logging(in_lambda || std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"));
    let config = Config::from_args(cli.settings).context("invalid configuration")?;
    let sweep = SweepSettings::from_args(&cli.sweep).context("invalid configuration")?;
    let app = Arc::new(App::from_config(config).await.context("cannot start")?);
    match cli.command {
        Some(Command::Serve { listen, limits }) => serve(app, listen, limits.limits()).await,
        None if in_lambda => {
            let sweeper = cca_webhook::sweep::sweeper(&app, &sweep).await;
            cca_webhook::lambda::run(app, sweeper)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }
        None => anyhow::bail!("not running in Lambda: use `cca-webhook serve --listen HOST:PORT`"),
    }
}

async fn serve(app: Arc<App>, listen: SocketAddr, limits: Limits) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, ?limits, "cca-webhook serving");
    let (_stop_turns, turns_stop) = tokio::sync::watch::channel(false);
    let _turns = cca_webhook::act::spawn_turns(app.clone(), turns_stop);
    cca_webhook::serve::serve(listener, router(app), limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("server failed")
}
