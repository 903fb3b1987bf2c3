//! Network namespaces for tests that need a real, non-loopback address.
//!
//! livekit-server never offers loopback addresses as ICE candidates, so a LiveKit server and
//! its peers cannot talk over 127.0.0.1. A test that needs them runs in a network namespace
//! of its own, made here: a veth pair with one end inside (`10.224.N.2/24`) and one in the
//! namespace the test started in (`10.224.N.1/24`), and `lo` up inside. Nothing outside the
//! machine is reachable from it, and nothing on the machine sees its ports.
//!
//! The simplest way to use it is to run the whole test inside, with [`reexec_inside`]: the
//! test binary runs itself again, for that one test, under `ip netns exec`. Everything the
//! test then starts, including the 127.0.0.1 servers of this crate (Postgres, the Pub/Sub
//! emulator, fake-gcs-server), lives in the namespace: its loopback is its own.
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip` (iproute2, from
//! `dev/install-tools`).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Set in the re-executed test: the namespace it runs in.
pub const INSIDE_ENV: &str = "RADIO24_NETNS";
/// Set in the re-executed test: its address inside the namespace.
pub const ADDR_ENV: &str = "RADIO24_NETNS_ADDR";

/// Namespaces are `r24-<pid of the creating process>-<N>`; the pid lets a later run remove
/// those of a process that died without cleaning up.
const PREFIX: &str = "r24-";
/// Lines of the re-executed test's output quoted when it fails.
const TAIL_LINES: usize = 30;

/// A network namespace with a veth pair into the namespace that made it. Deleted on drop,
/// which also removes both veth ends.
#[derive(Debug)]
pub struct Netns {
    name: String,
    index: u8,
}

/// What a test re-executed by [`reexec_inside`] learns about where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside {
    /// This end's address (`10.224.N.2`): bind servers here, not to 127.0.0.1, when peers
    /// must see a non-loopback address.
    pub addr: Ipv4Addr,
    /// The namespace's name (`r24-<pid>-<N>`).
    pub name: String,
}

impl Netns {
    /// Creates `r24-<pid>-<N>` with its veth pair on the first `10.224.N.0/24` that no
    /// namespace of this machine uses, after removing namespaces left behind by dead
    /// processes.
    pub fn create() -> Result<Netns> {
        // One creator at a time machine-wide, so two test processes never pick the same N.
        let _lock = Lock::take()?;
        sweep_stale();
        let used = used_indices()?;
        let index = (1..=254u8)
            .find(|n| !used.contains(n))
            .context("all 254 test network namespaces (10.224.N.0/24) are in use")?;
        let name = format!("{PREFIX}{}-{index}", std::process::id());
        ip(&["netns", "add", &name])?;
        // From here on, dropping `ns` undoes whatever was made.
        let ns = Netns { name, index };
        let outer = ns.outer_veth();
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", "veth0", "netns", &ns.name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.outer_addr()),
            "dev",
            &outer,
        ])?;
        ip(&["link", "set", &outer, "up"])?;
        let inside = format!("{}/24", ns.inside_addr());
        ip(&["-n", &ns.name, "addr", "add", &inside, "dev", "veth0"])?;
        ip(&["-n", &ns.name, "link", "set", "veth0", "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `r24-<pid>-<N>`, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `10.224.N.2`, the address inside.
    pub fn inside_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 224, self.index, 2)
    }

    /// `10.224.N.1`, the other end, in the namespace that created this one.
    pub fn outer_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 224, self.index, 1)
    }

    /// A command that runs `program` inside (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    fn outer_veth(&self) -> String {
        format!("r24h{}", self.index)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the veth first removes both ends at once; a namespace's own devices are
        // otherwise only reclaimed some time after the namespace is gone.
        let _ = ip(&["link", "del", &self.outer_veth()]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Where this process runs, if it was re-executed by [`reexec_inside`].
pub fn inside() -> Option<Inside> {
    let name = std::env::var(INSIDE_ENV).ok()?;
    let addr = std::env::var(ADDR_ENV).ok()?.parse().ok()?;
    Some(Inside { addr, name })
}

/// Runs the calling test again, alone, inside a new network namespace.
///
/// Outside (the usual case): creates a [`Netns`], runs this test binary under
/// `ip netns exec` with `--exact <test_name> --nocapture --test-threads=1`, forwards its
/// output (so libtest shows it with the outer test's output), deletes the namespace and
/// returns `Ok(None)`: the caller returns at once, its work having been done inside. Fails
/// with the end of the inner run's output if it failed or did not run exactly that test.
///
/// Inside (the re-executed run): returns `Ok(Some(Inside))` and the caller does the work.
///
/// `test_name` is the name libtest prints for the test (`module::name` in a module).
///
/// ```no_run
/// # async fn f() -> anyhow::Result<()> {
/// let Some(inside) = testkit::netns::reexec_inside("hears_the_station")? else {
///     return Ok(());
/// };
/// let server = testkit::livekit::LiveKitServer::start(inside.addr).await?;
/// # Ok(()) }
/// ```
pub fn reexec_inside(test_name: &str) -> Result<Option<Inside>> {
    if let Some(inside) = inside() {
        return Ok(Some(inside));
    }
    let ns = Netns::create()?;
    let exe = std::env::current_exe().context("finding the test binary")?;
    let (reader, writer) = std::io::pipe().context("making a pipe for the inner test's output")?;
    let mut cmd = ns.command(&exe);
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        // Ignored tests run only when asked; being asked here is that request.
        .arg("--include-ignored")
        .env(INSIDE_ENV, ns.name())
        .env(ADDR_ENV, ns.inside_addr().to_string())
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    // SAFETY: prctl is async-signal-safe. The inner test dies with this thread (which waits
    // for it below), so nothing outlives an interrupted outer test.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {} inside {}", exe.display(), ns.name()))?;
    // The command holds the pipe's write ends; drop it so the reader sees the end.
    drop(cmd);
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut ran_one = false;
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_else(|e| format!("(unreadable output: {e})"));
        // println! goes through libtest's capture: shown for failures or --nocapture.
        println!("{line}");
        ran_one |= line.starts_with("test result: ok. 1 passed");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child.wait().context("waiting for the inner test")?;
    let tail = Vec::from(tail).join("\n");
    if !status.success() {
        bail!(
            "{test_name} failed inside network namespace {} ({status}); its output ends:\n{tail}",
            ns.name()
        );
    }
    if !ran_one {
        bail!(
            "the inner run did not run test {test_name} (is that its exact name?); its output ends:\n{tail}"
        );
    }
    Ok(None)
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2): run dev/install-tools")?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {} (creating network namespaces needs root)",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of this machine's test namespaces with the pid and N in them.
fn test_namespaces() -> Vec<(String, u32, u8)> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    list.lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let (pid, index) = name.strip_prefix(PREFIX)?.split_once('-')?;
            Some((name.to_string(), pid.parse().ok()?, index.parse().ok()?))
        })
        .collect()
}

/// Deletes test namespaces whose creating process is gone (killed before its drop ran).
fn sweep_stale() {
    for (name, pid, index) in test_namespaces() {
        if !std::path::Path::new("/proc").join(pid.to_string()).exists() {
            let _ = ip(&["link", "del", &format!("r24h{index}")]);
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Every N in use: by a test namespace, or by any address in 10.224.N.0/24 on this side.
fn used_indices() -> Result<Vec<u8>> {
    let mut used: Vec<u8> = test_namespaces().into_iter().map(|(_, _, n)| n).collect();
    for word in ip(&["-o", "-4", "addr", "show"])?.split_whitespace() {
        if let Some(rest) = word.strip_prefix("10.224.")
            && let Some(n) = rest.split('.').next().and_then(|n| n.parse().ok())
        {
            used.push(n);
        }
    }
    Ok(used)
}

/// An exclusive `flock` on a file in the temp dir, released on drop or when the process dies.
/// Each call opens the file anew, and flock locks belong to the open file, so threads of one
/// process exclude each other as well as other processes.
struct Lock {
    _file: File,
}

impl Lock {
    fn take() -> Result<Lock> {
        let path = std::env::temp_dir().join("radio24-netns.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: plain system call on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == -1 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking {}", path.display()));
        }
        Ok(Lock { _file: file })
    }
}
