//! The `leadline` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use leadline_core::api_key::KeyKind;
use leadline_core::tenant::{NewTenantRequest, SettingsPatch, TenantPatch, TenantStatus};
use leadline_store::Store;

use crate::app::{Application, StartError, admin_key, open_store};
use crate::config::Config;
use crate::effects::Effects;
use crate::error::ApiError;
use crate::usecases::tenants as ops;

/// Leadline: leads, quotes and bookings for yacht charter companies.
#[derive(Parser)]
#[command(name = "leadline", version, about)]
pub struct Cli {
    /// Configuration file (default: ./leadline.toml when it exists).
    #[arg(long, global = true, env = "LEADLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Also seed a demo charter company and print its keys and a curl line.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Validate the configuration and exit.
    CheckConfig,
    /// Print the OpenAPI document.
    Openapi,
    /// Run a maintenance action (as POST /admin/maintenance) and print its outcome.
    Maintenance {
        /// cleanup_expired_keys, cleanup_old_audit, cleanup_old_dead_letters,
        /// cleanup_old_deliveries or backup_database.
        action: String,
        /// Override the retention of a cleanup, in days.
        #[arg(long)]
        older_than_days: Option<u32>,
    },
    /// Write a checked backup of the SQLite database to <data_dir>/backups/.
    Backup,
    /// Restore a backup file into the configured SQLite database.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace an existing database (stop the server first).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant and print it with its first keys (shown once).
    Create {
        /// Company name.
        #[arg(long)]
        name: String,
        /// Unique short name.
        #[arg(long)]
        slug: Option<String>,
        /// Staff address for new-lead notifications (repeatable).
        #[arg(long = "notification-email")]
        notification_emails: Vec<String>,
    },
    /// List tenants.
    List,
    /// Suspend a tenant: its keys answer 403.
    Suspend {
        /// Tenant id.
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Secret,
    Publishable,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Issue a key (printed once).
    Issue {
        /// Tenant id.
        tenant: String,
        /// Kind of key.
        #[arg(long, value_enum, default_value = "secret")]
        kind: Kind,
    },
    /// Revoke a key.
    Revoke {
        /// Tenant id.
        tenant: String,
        /// Key id.
        key: String,
    },
}

/// Errors of a command, printed to stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Start-up failure.
    #[error(transparent)]
    Start(#[from] StartError),
    /// An operation was refused.
    #[error("{}", api_message(.0))]
    Api(#[from] ApiError),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Output.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A refusal explained.
    #[error("{0}")]
    Message(String),
}

fn api_message(e: &ApiError) -> String {
    match e {
        ApiError::Validation(v) => v.to_string(),
        e => e.problem().detail,
    }
}

async fn maintenance_cmd(config: &Config, req: crate::maintenance::MaintenanceRequest) -> Result<(), CliError> {
    let store = open_store(config).await?;
    let fx = Effects::system("cli", &format!("maintenance.{}", req.action));
    let r = match crate::maintenance::run(&fx, store.as_ref(), config, &req, crate::clock::now()).await {
        Ok(outcome) => {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
        Err(e) => Err(e.into()),
    };
    store.close().await;
    r
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Openapi = cli.command {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::http::document()).map_err(std::io::Error::other)?
        );
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    crate::telemetry::init(config.log_format);
    match cli.command {
        Command::Openapi => Ok(()),
        Command::Maintenance {
            action,
            older_than_days,
        } => {
            maintenance_cmd(
                &config,
                crate::maintenance::MaintenanceRequest {
                    action,
                    older_than_days,
                },
            )
            .await
        }
        Command::Backup => {
            maintenance_cmd(
                &config,
                crate::maintenance::MaintenanceRequest {
                    action: "backup_database".into(),
                    older_than_days: None,
                },
            )
            .await
        }
        Command::Restore { file, force } => {
            use secrecy::ExposeSecret;
            let url = config.database_url.expose_secret();
            let Some(path) = crate::claims::sqlite_path(url) else {
                return Err(CliError::Message(
                    "restore is for SQLite; restore PostgreSQL with pg_restore or from its base backups".into(),
                ));
            };
            // Never under a running server: it would keep writing to the old file.
            let _lock = crate::claims::ServeLock::acquire(&path)
                .map_err(|e| CliError::Message(format!("{e}; stop it before restoring")))?;
            let version = crate::maintenance::restore(&file, &path, force)
                .await
                .map_err(CliError::Message)?;
            println!(
                "restored {} into {} (schema version {version})",
                file.display(),
                path.display()
            );
            Ok(())
        }
        Command::CheckConfig => {
            println!(
                "configuration is valid (listening on {}, data in {})",
                config.bind,
                config.data_dir.display()
            );
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve { demo } => serve(config, demo).await,
        Command::Tenant(cmd) => {
            let store = open_store(&config).await?;
            let r = tenant_cmd(store.as_ref(), cmd).await;
            store.close().await;
            r
        }
        Command::Key(cmd) => {
            let store = open_store(&config).await?;
            let r = key_cmd(store.as_ref(), cmd).await;
            store.close().await;
            r
        }
    }
}

async fn tenant_cmd(store: &dyn Store, cmd: TenantCmd) -> Result<(), CliError> {
    match cmd {
        TenantCmd::Create {
            name,
            slug,
            notification_emails,
        } => {
            let req = NewTenantRequest {
                name,
                slug,
                settings: SettingsPatch {
                    notification_emails: Some(notification_emails),
                    ..Default::default()
                },
            };
            let c = ops::create_tenant(&Effects::system("cli", "tenant.create"), store, req).await?;
            let out = serde_json::json!({
                "tenant": c.tenant, "secret_key": c.secret.plaintext, "publishable_key": c.publishable.plaintext,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        TenantCmd::List => {
            let page = leadline_core::page::PageRequest {
                after: None,
                limit: leadline_core::page::MAX_LIMIT,
            };
            let mut after = None;
            loop {
                let p = leadline_core::page::PageRequest {
                    after: after.clone(),
                    ..page.clone()
                };
                let rows = store.list_tenants(&p).await.map_err(ApiError::from)?;
                for t in rows.iter().take(p.limit as usize) {
                    println!("{}\t{}\t{}\t{}", t.id, t.status.as_str(), t.slug, t.name);
                }
                if rows.len() <= p.limit as usize {
                    break;
                }
                after = rows.get(p.limit as usize - 1).map(|t| t.id.to_string());
            }
        }
        TenantCmd::Suspend { id } => {
            let patch = TenantPatch {
                name: None,
                status: Some(TenantStatus::Suspended),
                settings: SettingsPatch::default(),
            };
            let t = ops::patch_tenant(&Effects::system("cli", "tenant.update"), store, &id, patch).await?;
            println!("{} is now {}", t.id, t.status.as_str());
        }
    }
    Ok(())
}

async fn key_cmd(store: &dyn Store, cmd: KeyCmd) -> Result<(), CliError> {
    match cmd {
        KeyCmd::Issue { tenant, kind } => {
            let kind = match kind {
                Kind::Secret => KeyKind::Secret,
                Kind::Publishable => KeyKind::Publishable,
            };
            let k = ops::issue_key(&Effects::system("cli", "key.issue"), store, &tenant, kind).await?;
            println!("{}\t{}", k.key.id, k.plaintext);
        }
        KeyCmd::Revoke { tenant, key } => {
            let k = ops::revoke_key(&Effects::system("cli", "key.revoke"), store, &tenant, &key).await?;
            println!("{} revoked", k.id);
        }
    }
    Ok(())
}

async fn serve(config: Config, demo: bool) -> Result<(), CliError> {
    let admin = admin_key(&config)?;
    let store = open_store(&config).await?;
    let seeded = if demo {
        Some(crate::demo::seed(store.as_ref()).await?)
    } else {
        None
    };
    let key_source = if config.admin_key.is_some() {
        "LEADLINE_ADMIN_KEY".to_owned()
    } else {
        config.data_dir.join("admin.key").display().to_string()
    };
    let app = Application::with_store(config, store, &admin).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, "leadline listening");
    if let Some(d) = seeded {
        let _ = app.state().demo_key.set(d.publishable_key.clone());
        // One write, and a closed stdout (the reader went away) is no reason to stop.
        let banner = format!("{}\n", crate::demo::banner(&d, &format!("http://{addr}"), &key_source));
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes());
    }
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
