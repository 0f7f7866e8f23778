//! Operator and auditor commands that run against the database and exit.

use crate::database::Database;
use crate::providers::ProviderSettings;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use payledger_app::clock::SystemClock;
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_connector_toss::TossConfig;
use payledger_store::{EventStore, WriterConfig};
use sqlx::PgPool;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

pub enum OpsCommand {
    Migrate,
    ProjectionStatus,
    Rebuild {
        name: String,
    },
    /// `payledger projections verify [NAME]`
    VerifyProjections {
        name: Option<String>,
    },
    Replay {
        stream_id: String,
    },
    /// `payledger audit verify [--checkpoints FILE [--public-key HEX]]`
    AuditVerify {
        checkpoints: Option<(std::path::PathBuf, Option<String>)>,
    },
    /// `payledger audit checkpoint`: seal one now.
    AuditCheckpoint,
    /// `payledger audit trial-balance [--at POSITION]`
    AuditTrialBalance {
        at: Option<i64>,
    },
    Timeline {
        order_id: String,
    },
    Reconcile {
        older_than_s: i64,
    },
    /// `payledger reconcile settlements --provider P --from D --to D [--as-of T]`
    ReconcileSettlements {
        provider: String,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// `payledger webhooks dlq …` (inbound) and `payledger notifications dlq …` (outbound).
    WebhookDeadLetters {
        command: crate::webhook_jobs::WebhooksCommand,
        outbound: bool,
    },
}

fn projection_named(
    name: &str,
) -> anyhow::Result<std::sync::Arc<dyn payledger_projector::Projection>> {
    payledger_read_models::projection_named(name).with_context(|| {
        let known: Vec<&str> = payledger_read_models::all_projections()
            .iter()
            .map(|p| p.name())
            .collect();
        format!("no projection named '{name}'; known: {}", known.join(", "))
    })
}

pub async fn run(
    command: OpsCommand,
    _database: &Database,
    pool: &PgPool,
    audit_files: &crate::audit_checkpoints::AuditFiles,
    data_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        // Database::open already migrated.
        OpsCommand::Migrate => {
            writeln!(out, "migrations are up to date")?;
        }
        OpsCommand::ProjectionStatus => {
            let statuses = payledger_projector::status(pool).await?;
            writeln!(
                out,
                "{:<16} {:>12} {:>12} {:>10} {:>10}",
                "projection", "position", "head", "lag", "lag_ms"
            )?;
            for s in statuses {
                writeln!(
                    out,
                    "{:<16} {:>12} {:>12} {:>10} {:>10}",
                    s.name, s.position, s.head_position, s.lag_events, s.lag_ms
                )?;
            }
        }
        OpsCommand::Rebuild { name } => {
            let projection = projection_named(&name)?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(format!("rebuilding {name}"));
            let started = std::time::Instant::now();
            let progress_bar = bar.clone();
            let progress = move |position: i64, head: i64| {
                progress_bar.set_length(head.max(0) as u64);
                progress_bar.set_position(position.max(0) as u64);
            };
            let position =
                payledger_projector::rebuild(pool, projection.as_ref(), &progress).await?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            writeln!(
                out,
                "rebuilt {name} up to position {position} in {secs:.2}s and swapped it in"
            )?;
        }
        OpsCommand::VerifyProjections { name } => {
            let projections = match name {
                None => payledger_read_models::all_projections(),
                Some(name) => vec![projection_named(&name)?],
            };
            let mut all_match = true;
            for projection in projections {
                let label = format!("projections verify: {}", projection.name());
                let lines = std::sync::Mutex::new(crate::progress_lines::ProgressLines::new());
                let progress = |position: i64, up_to: i64| {
                    if let Ok(mut lines) = lines.lock() {
                        lines.update(
                            &label,
                            position.max(0) as u64,
                            up_to.max(0) as u64,
                            Some(position),
                        );
                    }
                };
                let report =
                    payledger_projector::verify_with_progress(pool, projection.as_ref(), &progress)
                        .await
                        .with_context(|| {
                            format!("failed to verify the {} read model", projection.name())
                        })?;
                all_match &= report.matches();
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            }
            if !all_match {
                return Ok(ExitCode::from(1));
            }
        }
        OpsCommand::Replay { stream_id } => {
            let store = EventStore::new(pool.clone(), WriterConfig::default());
            let events = store.read_whole_stream(&stream_id).await?;
            if events.is_empty() {
                bail!("stream '{stream_id}' has no events");
            }
            for event in events {
                writeln!(out, "{}", serde_json::to_string(&event)?)?;
            }
        }
        OpsCommand::AuditCheckpoint => {
            let signer = crate::audit_checkpoints::load_signer(audit_files, true)?
                .context("no checkpoint signing key")?;
            match crate::audit_checkpoints::seal_and_export(pool, &signer, &audit_files.export_file)
                .await?
            {
                Some(sealed) => writeln!(out, "{}", serde_json::to_string(&sealed)?)?,
                None => {
                    let last = payledger_store::checkpoint::last_checkpoint(pool).await?;
                    match last {
                        Some(c) => writeln!(
                            out,
                            "nothing new since checkpoint {} at position {}",
                            c.sequence, c.global_position
                        )?,
                        None => writeln!(out, "the log is empty: nothing to seal")?,
                    }
                }
            }
        }
        OpsCommand::AuditVerify { checkpoints } => {
            if let Some((path, public_key)) = checkpoints {
                let key = match public_key {
                    Some(text) => payledger_store::checkpoint::parse_public_key(&text)
                        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
                    None => crate::audit_checkpoints::load_signer(audit_files, false)?
                        .context(
                            "no signing key here to take the public key from: pass --public-key",
                        )?
                        .verifying_key(),
                };
                let saved = crate::audit_checkpoints::read_saved(&path)?;
                let report =
                    payledger_store::checkpoint::verify_against(pool, &saved, &key).await?;
                match &report.first_problem {
                    None => writeln!(
                        out,
                        "ok: the log agrees with {} saved checkpoints up to position {}",
                        report.checkpoints_checked, report.verified_up_to
                    )?,
                    Some(problem) if problem.refused => {
                        writeln!(
                            out,
                            "BROKEN at checkpoint {}: {}",
                            problem.sequence, problem.problem
                        )?;
                        return Ok(ExitCode::from(2));
                    }
                    Some(problem) => {
                        writeln!(
                            out,
                            "BROKEN at checkpoint {} (positions {} to {}): {}",
                            problem.sequence,
                            problem.after_position + 1,
                            problem.global_position,
                            problem.problem
                        )?;
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            let mut lines = crate::progress_lines::ProgressLines::new();
            let report = payledger_store::audit::verify_all_with_progress(pool, |p| {
                let (label, position) = match p.phase {
                    payledger_store::audit::AuditPhase::Links => {
                        ("audit verify: chain links", None)
                    }
                    payledger_store::audit::AuditPhase::Contents => {
                        ("audit verify: positions and hashes", Some(p.position))
                    }
                };
                lines.update(
                    label,
                    p.events_done,
                    p.head_position.max(0) as u64,
                    position,
                );
            })
            .await?;
            match &report.first_problem {
                None => {
                    writeln!(
                        out,
                        "ok: {} events in {} streams verify up to position {}",
                        report.events_checked, report.streams_checked, report.head_position
                    )?;
                    // The books too: every journal entry and the whole book must balance.
                    if !crate::journal_cli::verify_journal(pool, &mut out).await? {
                        return Ok(ExitCode::from(3));
                    }
                }
                Some(problem) => {
                    writeln!(
                        out,
                        "BROKEN at global position {} (stream {}, version {}, event {}): {}",
                        problem.global_position,
                        problem.stream_id,
                        problem.stream_version,
                        problem.event_id,
                        problem.problem
                    )?;
                    return Ok(ExitCode::from(2));
                }
            }
        }
        OpsCommand::AuditTrialBalance { at } => {
            if !crate::journal_cli::print_trial_balance(pool, at, &mut out).await? {
                return Ok(ExitCode::from(3));
            }
        }
        OpsCommand::Timeline { order_id } => {
            let entries =
                payledger_read_models::orders::timeline(pool, &order_id, 0, 10_000).await?;
            if entries.is_empty() {
                bail!("no timeline for order '{order_id}' (unknown, or not projected yet)");
            }
            // Sealed personal fields are revealed for the operator (or shown as erased).
            let vault = crate::privacy_cli::vault(pool, data_dir)?;
            for mut e in entries {
                if let Some(vault) = &vault {
                    e.summary = vault.reveal_text(&e.summary).await?;
                }
                writeln!(
                    out,
                    "{}  #{:<6} {:<28} {:<24} {}",
                    // The one format every route serves (six fraction digits, `Z`).
                    payledger_store::recorded_at_format::format(&e.recorded_at),
                    e.global_position,
                    e.event_type,
                    e.actor.unwrap_or_default(),
                    e.summary
                )?;
            }
        }
        OpsCommand::WebhookDeadLetters { command, outbound } => {
            return crate::webhook_jobs::run_dead_letters(command, outbound, pool, &mut out).await;
        }
        OpsCommand::ReconcileSettlements {
            provider,
            from,
            to,
            as_of,
        } => {
            let provider_settings = crate::providers::ProviderSettings::from_env();
            if matches!(provider_settings, ProviderSettings::EmbeddedSandbox) {
                bail!("reconcile settlements asks the provider that serve talks to: set PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY");
            }
            if from > to
                || (to - from).num_days() >= payledger_gateway::settlements::MAX_IMPORT_DAYS
            {
                bail!(
                    "--from must not be after --to, and a period is at most {} days",
                    payledger_gateway::settlements::MAX_IMPORT_DAYS
                );
            }
            let sandbox_base_url = provider_settings.sandbox_base_url(None);
            let config = match &provider_settings {
                ProviderSettings::Toss {
                    base_url,
                    secret_key,
                } => TossConfig::new(base_url.clone(), secret_key.clone()),
                ProviderSettings::Sandbox { base_url } => TossConfig::sandbox(base_url.clone()),
                ProviderSettings::EmbeddedSandbox => unreachable!("refused above"),
            };
            let providers = crate::startup::registry_from(config, sandbox_base_url.as_deref())?;
            // Every appending process seals personal texts, as serve does.
            let executor = Arc::new(crate::privacy_cli::executor(pool, data_dir)?);
            let payments = Arc::new(Payments::with_providers(
                executor.clone(),
                Arc::new(providers),
                Arc::new(SystemClock),
                PaymentsConfig::default(),
            ));
            let settings =
                crate::reconciliation_jobs::ReconciliationSettings::default().with_env()?;
            let reconciliation = crate::reconciliation_jobs::build(
                &settings,
                &provider_settings,
                sandbox_base_url,
                executor,
                payments,
                Arc::new(SystemClock),
            )?;
            let report = crate::reconciliation_jobs::run_once(
                &reconciliation,
                pool,
                &provider,
                payledger_gateway::settlements::SettlementPeriod { from, to },
                as_of.unwrap_or_else(chrono::Utc::now),
                &payledger_app::context::RequestContext::new(crate::keys::cli_actor(), None),
            )
            .await?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
        OpsCommand::Reconcile { older_than_s } => {
            let config = match crate::providers::ProviderSettings::from_env() {
                ProviderSettings::EmbeddedSandbox => bail!(
                    "reconcile asks the provider that serve talks to: set PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY"
                ),
                ProviderSettings::Sandbox { base_url } => TossConfig::sandbox(base_url),
                ProviderSettings::Toss { base_url, secret_key } => TossConfig::new(base_url, secret_key),
            };
            let sandbox_base_url = match &crate::providers::ProviderSettings::from_env() {
                ProviderSettings::Sandbox { base_url } => Some(base_url.clone()),
                _ => None,
            };
            let providers = crate::startup::registry_from(config, sandbox_base_url.as_deref())?;
            let payments = Payments::with_providers(
                Arc::new(crate::privacy_cli::executor(pool, data_dir)?),
                Arc::new(providers),
                Arc::new(SystemClock),
                PaymentsConfig::default(),
            );
            let report = crate::jobs::reconcile_once(
                &payments,
                pool,
                chrono::Duration::seconds(older_than_s.max(0)),
            )
            .await?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
