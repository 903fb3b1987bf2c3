//! Child processes that cannot outlive the test process that started them.
//!
//! Servers run in a process group of their own so that one signal reaches every process they
//! fork (Postgres backends), and are killed when the [`ChildGuard`] is dropped. Because
//! process-wide shared servers live in statics, which Rust never drops, each child also gets a
//! parent-death signal: if the test binary dies in any way (panic=abort, SIGKILL, normal exit),
//! the kernel signals its servers, so nothing is left running between test runs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// How a [`ChildGuard`] ends its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGKILL to the whole process group: instant, for servers whose state is throwaway.
    Kill,
    /// Send `signal` to the leader, give it `grace` to exit, then SIGKILL the group.
    /// Postgres uses SIGQUIT (what `pg_ctl stop -m immediate` sends): it is as quick as a kill
    /// but the postmaster still removes its shared-memory segments, which SIGKILL would leak.
    Signal {
        /// Signal number (`libc::SIGQUIT`, `libc::SIGTERM`, ...).
        signal: i32,
        /// How long to wait for the process to exit before SIGKILL.
        grace: Duration,
    },
}

impl Shutdown {
    fn first_signal(self) -> i32 {
        match self {
            Shutdown::Kill => libc::SIGKILL,
            Shutdown::Signal { signal, .. } => signal,
        }
    }
}

#[derive(Debug)]
struct State {
    /// `None` once the process has been reaped by [`ChildGuard::kill`].
    child: Option<Child>,
    /// Set when the process has been reaped; after that its pid (and group id) may be reused by
    /// an unrelated process, so no more signals are sent.
    status: Option<ExitStatus>,
}

/// Owns a spawned server process (leader of its own process group) and ends it, with every
/// process it forked, when dropped or on [`ChildGuard::kill`].
///
/// All methods take `&self` so that guards kept in process-wide statics can still be shut down
/// from an exit hook.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    /// Also the process group id (the child is spawned as a group leader).
    pid: libc::pid_t,
    log_path: PathBuf,
    shutdown: Shutdown,
    state: Mutex<State>,
}

/// Runs a one-shot command (a service's sub-command) to completion; its stdout, or a panic
/// with its stderr if it failed. For tests.
pub async fn run_ok(mut cmd: tokio::process::Command) -> String {
    let out = cmd.output().await.expect("the command starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Spawns `cmd` with stdin closed and stdout+stderr appended to `log_path`, in a new process
/// group, ended by SIGKILL to the group on drop. See [`spawn_logged_with`].
pub fn spawn_logged(cmd: Command, log_path: impl Into<PathBuf>) -> Result<ChildGuard> {
    spawn_logged_with(cmd, log_path, Shutdown::Kill)
}

/// Spawns `cmd` like [`spawn_logged`] with an explicit way to shut it down.
///
/// Output goes to a file, not the terminal, so a failing test shows its own output rather than
/// server chatter; errors quote the end of that file. The log is opened for appending so a
/// restarted server keeps the earlier run's lines. The parent-death signal is the first signal
/// of `shutdown`, so an abandoned server is ended the same way as a dropped one.
pub fn spawn_logged_with(
    mut cmd: Command,
    log_path: impl Into<PathBuf>,
    shutdown: Shutdown,
) -> Result<ChildGuard> {
    let log_path = log_path.into();
    let name = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening log file {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating log file handle")?;
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let death_signal =
        libc::c_ulong::try_from(shutdown.first_signal()).context("invalid shutdown signal")?;
    let parent = libc::pid_t::try_from(std::process::id()).context("pid out of range")?;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (prctl, getppid) and builds an io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = spawn_on_keeper_thread(cmd).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow!("{name} not found ({e}): run dev/install-tools")
        } else {
            anyhow!(e).context(format!("spawning {name}"))
        }
    })?;
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("{name} got a pid out of range");
    };
    Ok(ChildGuard {
        name,
        pid,
        log_path,
        shutdown,
        state: Mutex::new(State {
            child: Some(child),
            status: None,
        }),
    })
}

/// The parent-death signal fires when the *thread* that forked the child exits, not the
/// process. Test threads, tokio workers and blocking-pool threads all come and go, so every
/// server is forked from one thread that lives as long as the process.
fn spawn_on_keeper_thread(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // The requester may have gone away; the child is then dropped unreaped,
                    // which cannot happen in practice as requesters block on the reply.
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the testkit spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    keeper
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread did not answer"))?
}

impl ChildGuard {
    /// Short program name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id of the leader (also its process group id).
    pub fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// File receiving the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exit status if the process has ended (or was killed), without waiting. Used while
    /// waiting for readiness to fail fast instead of running into the deadline.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut state = self.state();
        if state.status.is_none()
            && let Some(child) = state.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            state.status = Some(status);
            state.child = None;
        }
        state.status
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// The last `max_lines` lines of the log, for error messages.
    pub fn log_tail(&self, max_lines: usize) -> String {
        log_tail(&self.log_path, max_lines)
    }

    /// Freezes the process group (SIGSTOP): it keeps its sockets and state but does nothing,
    /// the way a hung server behaves. [`ChildGuard::thaw`] resumes it.
    pub fn freeze(&self) {
        self.signal_group(libc::SIGSTOP);
    }

    /// Resumes a process group frozen by [`ChildGuard::freeze`].
    pub fn thaw(&self) {
        self.signal_group(libc::SIGCONT);
    }

    fn signal_group(&self, signal: libc::c_int) {
        if self.is_running() {
            // SAFETY: plain system call to the process group we started and have not reaped.
            unsafe { libc::killpg(self.pid as libc::pid_t, signal) };
        }
    }

    /// Ends the process and everything in its process group, then reaps it. Idempotent.
    pub fn kill(&self) {
        let mut state = self.state();
        let Some(mut child) = state.child.take() else {
            return;
        };
        let pid = self.pid;
        if let Shutdown::Signal { signal, grace } = self.shutdown {
            // SAFETY: plain system call; the child is not reaped yet, so `pid` is still ours.
            unsafe { libc::kill(pid, signal) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    state.status = Some(status);
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        // SAFETY: plain system call; the leader is not reaped yet, so the group id is still ours.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        state.status = child.wait().ok();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max_lines` lines of a (log) file; empty if it cannot be read.
pub(crate) fn log_tail(path: &Path, max_lines: usize) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if file
        .seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))
        .is_err()
    {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}
