//! Postgres: the connection pool and the embedded migrations.
//!
//! The migrations in `migrations/` are compiled into every binary, so a service can bring
//! its database up to date at start-up (`RUN_MIGRATIONS`) and the production migrations job
//! runs exactly the same set. sqlx takes an advisory lock, so concurrent starters are safe.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{ConfigError, Env};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub run_migrations: bool,
}

impl DbConfig {
    /// `DATABASE_URL` (required), `DATABASE_MAX_CONNECTIONS`, `DATABASE_ACQUIRE_TIMEOUT`,
    /// `RUN_MIGRATIONS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url: String = env.required("DATABASE_URL")?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "DATABASE_URL",
                "<redacted>",
                "must start with postgres:// or postgresql://",
            ));
        }
        url.parse::<PgConnectOptions>()
            .map_err(|e| ConfigError::invalid("DATABASE_URL", "<redacted>", e))?;
        Ok(DbConfig {
            url,
            max_connections: env.or("DATABASE_MAX_CONNECTIONS", 16)?,
            acquire_timeout: env.duration_or("DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(3))?,
            run_migrations: env.flag_or("RUN_MIGRATIONS", true)?,
        })
    }
}

/// Opens the pool (lazily: the service starts even if the database is briefly away, and
/// `/readyz` tells the truth) and runs migrations when configured.
pub async fn connect(cfg: &DbConfig) -> Result<PgPool, sqlx::Error> {
    let opts: PgConnectOptions = cfg.url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        .connect_lazy_with(opts.application_name("radio24"));
    if cfg.run_migrations {
        MIGRATOR.run(&pool).await?;
    }
    Ok(pool)
}

/// The migrations job: brings the database up to date and returns how many migrations it
/// applied (0 when it already was). Needs only `DATABASE_URL`.
pub async fn migrate(cfg: &DbConfig) -> Result<usize, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(cfg.acquire_timeout.max(Duration::from_secs(30)))
        .connect_with(
            cfg.url
                .parse::<PgConnectOptions>()?
                .application_name("radio24-migrate"),
        )
        .await?;
    let applied = || async {
        // Unchecked: the migrator's own table is not part of the schema in migrations/.
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            // Before the first migration the table does not exist.
            .unwrap_or(0)
    };
    let before = applied().await;
    MIGRATOR.run(&pool).await?;
    let after = applied().await;
    pool.close().await;
    Ok(usize::try_from(after - before).unwrap_or(0))
}

/// A cheap round trip for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(pool)
        .await
        .map(|_| ())
}

/// Whether `e` means the database is away or overloaded (not a bug, not the caller's
/// fault): the answer is 503, or a retry.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    )
}

/// How an HTTP handler answers a database error: `None` (logged here) when the database is
/// away or overloaded, so the client comes back instead of being blamed (503); otherwise
/// the error, which is a bug or a broken invariant (500).
pub fn unless_unavailable(e: sqlx::Error) -> Option<sqlx::Error> {
    if is_unavailable(&e) {
        tracing::warn!(error = %e, "database unavailable");
        None
    } else {
        Some(e)
    }
}
