//! `varde admin collector`: the CERT's side of collector identity from the command line, on the
//! dashboard's configuration (its store and `[enrolment]`). The same calls as the dashboard's
//! collectors page ([`varde_dashboard::enrol`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use varde_core::{CollectorId, Kommunenummer, PublicKey};
use varde_dashboard::enrol;
use varde_store::collectors::{CollectorRegistry, Collectors, IdentityRecord};

#[derive(Subcommand)]
pub enum CollectorCommand {
    /// Make a one-time enrolment token for a new collector of a municipality and print it with
    /// the command the municipality runs (`varde-collector enrol <token>`).
    Add {
        /// The dashboard's configuration (its store, and `[enrolment]`: URL, certificate,
        /// brokers).
        #[arg(long)]
        config: PathBuf,
        /// The municipality (kommunenummer).
        #[arg(long)]
        tenant: String,
        /// The collector's name ("Oslo DMZ").
        #[arg(long)]
        name: String,
        /// How long the token is valid, in minutes (default: `[enrolment] token_hours`).
        #[arg(long)]
        valid_minutes: Option<u64>,
    },
    /// List the enrolled collectors, their keys and state.
    List {
        /// The dashboard's configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Revoke a collector: its next batch is refused.
    Revoke {
        /// The dashboard's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The collector's id.
        id: String,
        /// Why (kept in the registry).
        #[arg(long)]
        reason: String,
    },
    /// Register a collector whose key was made with `varde-collector key new`, without a token
    /// (the public key copied from `varde-collector key show`).
    Register {
        /// The dashboard's configuration.
        #[arg(long)]
        config: PathBuf,
        /// The collector's id (as in its configuration).
        #[arg(long)]
        id: String,
        /// The municipality (kommunenummer).
        #[arg(long)]
        tenant: String,
        /// The collector's name.
        #[arg(long)]
        name: String,
        /// Its public key (64 hexadecimal digits).
        #[arg(long)]
        public_key: String,
    },
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn run(cmd: CollectorCommand) -> Result<()> {
    let path = match &cmd {
        CollectorCommand::Add { config, .. }
        | CollectorCommand::List { config }
        | CollectorCommand::Revoke { config, .. }
        | CollectorCommand::Register { config, .. } => config.clone(),
    };
    let config = varde_dashboard::DashboardConfig::load(&path)?;
    let store = crate::migrated_store(&config.clickhouse).await?;
    let now = varde_collector::sources::now_us();
    match cmd {
        CollectorCommand::Add {
            tenant,
            name,
            valid_minutes,
            ..
        } => {
            let enrolment = config
                .enrolment()
                .map_err(anyhow::Error::msg)?
                .with_context(|| format!("{}: no [enrolment] section", path.display()))?;
            let tenant = Kommunenummer::parse(&tenant)?;
            let minutes = valid_minutes.unwrap_or(enrolment.config.token_hours * 60);
            let valid = i64::try_from(minutes)
                .unwrap_or(i64::MAX / 60_000_000)
                .saturating_mul(60_000_000);
            let (token, text) =
                enrol::issue_token(&store, &enrolment, tenant, &name, valid, &actor(), now).await?;
            eprintln!(
                "enrolment token for {:?} of {} {}, valid until {}; on the municipality's machine run:",
                token.name,
                tenant,
                tenant.name(),
                varde_core::time::format_rfc3339(token.expires_us)
            );
            eprintln!("  sudo varde-collector enrol <token>");
            println!("{text}");
        }
        CollectorCommand::List { .. } => {
            let registry = CollectorRegistry::fold(&store.identity_log().await?);
            println!(
                "{:<40} {:<6} {:<24} {:<10} keys",
                "collector", "tenant", "name", "state"
            );
            for c in registry.collectors.values() {
                let state = if c.revoked_us.is_some() {
                    "revoked"
                } else if c.active_at(now) {
                    "active"
                } else {
                    "no key"
                };
                let keys: Vec<String> = c
                    .keys
                    .iter()
                    .map(|k| {
                        let valid = if k.valid_at(now) { "" } else { " (invalid)" };
                        format!("{}{valid}", k.key_id)
                    })
                    .collect();
                println!(
                    "{:<40} {:<6} {:<24} {:<10} {}",
                    c.collector_id,
                    c.tenant,
                    c.name,
                    state,
                    keys.join(", ")
                );
            }
            for why in &registry.refused {
                eprintln!("not applied: {why}");
            }
        }
        CollectorCommand::Revoke { id, reason, .. } => {
            let id = CollectorId::new(id)?;
            enrol::revoke(&store, &id, &actor(), &reason, now).await?;
            println!("collector {id} revoked; its next batch is refused");
        }
        CollectorCommand::Register {
            id,
            tenant,
            name,
            public_key,
            ..
        } => {
            let id = CollectorId::new(id)?;
            let tenant = Kommunenummer::parse(&tenant)?;
            let key = PublicKey::parse(&public_key)?;
            let registry = CollectorRegistry::fold(&store.identity_log().await?);
            if let Some(c) = registry.get(&id) {
                anyhow::ensure!(
                    c.tenant == tenant,
                    "collector {id} is enrolled for {}, not {tenant}",
                    c.tenant
                );
            }
            anyhow::ensure!(
                registry
                    .collectors
                    .values()
                    .all(|c| c.key(key.key_id()).is_none()),
                "key {} is enrolled already",
                key.key_id()
            );
            store
                .write_identity(&[IdentityRecord::key_added(
                    now,
                    &id,
                    tenant,
                    &name,
                    &key,
                    &actor(),
                    "registered by hand",
                )])
                .await?;
            println!(
                "collector {id} of {tenant}: key {} registered",
                key.key_id()
            );
        }
    }
    Ok(())
}
