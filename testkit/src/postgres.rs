//! A throwaway PostgreSQL 15 cluster with pgvector.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Url;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::process::{ChildGuard, Shutdown, spawn_logged_with};
use crate::{
    Scratch, StartError, env_nonempty, register_exit_hook, require_file, start_on_free_port,
    wait_ready,
};

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A PostgreSQL server: either a throwaway cluster this process started, or (for
/// [`Postgres::shared`] with `RADIO24_TEST_PG_URL` set) a server started by someone else.
///
/// The cluster runs with Postgres's durability defaults (fsync on) so that tests and
/// benchmarks see production-like write costs; only `shared_buffers` (128MB) and
/// `max_connections` (300, for many parallel test pools) are set. Authentication is `trust`
/// for the `postgres` user, and only 127.0.0.1 is listened on.
///
/// Dropping it stops the server (SIGQUIT, like `pg_ctl stop -m immediate`) and deletes its
/// directory.
#[derive(Debug)]
pub struct Postgres {
    /// URL of the server's maintenance database, used to create test databases.
    admin_url: Url,
    port: u16,
    local: Option<Local>,
}

#[derive(Debug)]
struct Local {
    server: ChildGuard,
    scratch: Scratch,
}

static SHARED: OnceCell<Postgres> = OnceCell::const_new();

impl Postgres {
    /// Creates a new cluster with `initdb` in a temporary directory and starts it on a free
    /// port, returning once it accepts connections.
    pub async fn start() -> Result<Self> {
        let bin = env_nonempty("RADIO24_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from);
        for tool in ["initdb", "postgres", "pg_config"] {
            require_file(&bin.join(tool), "PostgreSQL 15")?;
        }
        let sharedir = Command::new(bin.join("pg_config"))
            .arg("--sharedir")
            .output()
            .context("running pg_config --sharedir")?;
        let sharedir = PathBuf::from(String::from_utf8_lossy(&sharedir.stdout).trim());
        require_file(
            &sharedir.join("extension").join("vector.control"),
            "pgvector",
        )?;

        let scratch = Scratch::new("pg")?;
        let owner = server_owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(scratch.path(), Some(uid), Some(gid))
                .context("handing the cluster directory to the postgres user")?;
        }
        let data = scratch.path().join("data");
        let initdb_log = scratch.path().join("initdb.log");
        let log = std::fs::File::create(&initdb_log).context("creating initdb.log")?;
        // --no-sync only skips flushing the freshly created template files; the server itself
        // keeps fsync on.
        let mut initdb = tokio::process::Command::new(bin.join("initdb"));
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let status = initdb
            .current_dir(scratch.path())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await
            .context("running initdb")?;
        if !status.success() {
            bail!(
                "initdb failed ({status}):\n{}",
                crate::process::log_tail(&initdb_log, 30)
            );
        }

        let server = start_on_free_port("postgres", |port| {
            let mut cmd = Command::new(bin.join("postgres"));
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
            cmd.current_dir(scratch.path())
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(scratch.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=on"])
                .args(["-c", "shared_buffers=128MB"])
                .args(["-c", "max_connections=300"]);
            let log_path = scratch.path().join("postgres.log");
            async move {
                let server = spawn_logged_with(
                    cmd,
                    log_path,
                    Shutdown::Signal {
                        signal: libc::SIGQUIT,
                        grace: Duration::from_secs(5),
                    },
                )?;
                let admin_url = local_url(port);
                wait_ready(
                    &format!("postgres on port {port}"),
                    &server,
                    READY_DEADLINE,
                    || accepts_connections(&admin_url),
                )
                .await?;
                Ok::<_, StartError>((server, port))
            }
        })
        .await?;
        let (server, port) = server;
        Ok(Self {
            admin_url: local_url(port),
            port,
            local: Some(Local { server, scratch }),
        })
    }

    /// A handle on a server that is already running (started by a script or by hand), given
    /// the URL of a database to connect to for creating test databases. Nothing is stopped on
    /// drop.
    pub fn external(url: &str) -> Result<Self> {
        let admin_url = Url::parse(url).with_context(|| format!("invalid Postgres URL {url}"))?;
        let port = admin_url.port().unwrap_or(5432);
        Ok(Self {
            admin_url,
            port,
            local: None,
        })
    }

    /// The process-wide server: started on first use, then shared by every test in this test
    /// binary (a cluster costs ~1-2 s to create; a database ~0.1 s). Each test should call
    /// [`Postgres::create_database`] for isolation.
    ///
    /// With `RADIO24_TEST_PG_URL` set, that server is used instead of starting one.
    ///
    /// Safe to call concurrently from many `#[tokio::test]`s, each on its own runtime: only the
    /// process handle and port are kept here, never a runtime-bound object such as a pool. The
    /// server is stopped and its directory removed when the process exits.
    pub async fn shared() -> Result<&'static Postgres> {
        SHARED
            .get_or_try_init(|| async {
                if let Some(url) = env_nonempty("RADIO24_TEST_PG_URL") {
                    return Postgres::external(&url);
                }
                let pg = Postgres::start().await?;
                register_exit_hook();
                Ok(pg)
            })
            .await
    }

    /// Port the server listens on (127.0.0.1, or the external URL's host).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `db` on this server:
    /// `postgres://postgres@127.0.0.1:PORT/db` for a cluster started here.
    pub fn url(&self, db: &str) -> String {
        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{db}"));
        url.to_string()
    }

    /// Creates a new, empty database with a unique name (`radio24_<uuid>`) and returns its URL.
    ///
    /// Databases give tests isolation while sharing one server; `CREATE EXTENSION vector` works
    /// in them (migrations are expected to run it).
    pub async fn create_database(&self) -> Result<String> {
        let name = format!("radio24_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(self.admin_url.as_str())
            .await
            .with_context(|| format!("connecting to {}", self.admin_url))?;
        // The name is generated above from a UUID, never from input.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        Ok(self.url(&name))
    }

    /// Directory with the cluster's data and logs (`postgres.log`), if started here.
    pub fn dir(&self) -> Option<PathBuf> {
        self.local.as_ref().map(|l| l.scratch.path().to_path_buf())
    }

    /// Stops a server started here and removes its directory. Idempotent; a no-op for an
    /// external server.
    fn shutdown(&self) {
        if let Some(local) = &self.local {
            local.server.kill();
            local.scratch.remove();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn shutdown_shared() {
    if let Some(pg) = SHARED.get() {
        pg.shutdown();
    }
}

/// PostgreSQL refuses to run as root. When tests run as root (CI, containers), the cluster is
/// owned by and runs as the `postgres` system user that the Debian package creates; otherwise
/// it runs as the current user.
fn server_owner() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .context(
            "running as root, PostgreSQL needs a 'postgres' user to run as: run dev/install-tools",
        )
}

fn local_url(port: u16) -> Url {
    Url::parse(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .expect("a valid literal URL")
}

async fn accepts_connections(url: &Url) -> bool {
    let connect = PgConnection::connect(url.as_str());
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            true
        }
        _ => false,
    }
}
