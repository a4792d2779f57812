//! Spawning untrusted work: an empty environment, its own process group, death with the parent,
//! and rlimits.

use crate::ChildLimits;
use std::ffi::OsStr;
use std::io;

/// The only environment a child gets.
const CHILD_PATH: &str = "/usr/bin:/bin";
/// Seconds of CPU time between `SIGXCPU` (soft limit) and `SIGKILL` (hard limit).
const CPU_HARD_MARGIN_SECS: u64 = 5;

/// A command for `program args…` that runs sandboxed:
///
/// - the environment is cleared (only `PATH=/usr/bin:/bin` and `RUST_BACKTRACE=0`), so none of
///   the server's secrets reach it;
/// - it is the leader of a new session and process group (`setsid`), so the whole group can be
///   killed with one signal to `-pid`;
/// - it gets `SIGKILL` when the thread that spawned it dies (`PR_SET_PDEATHSIG`), and refuses
///   to start if its parent is already gone;
/// - `RLIMIT_AS`, `RLIMIT_CPU` and `RLIMIT_FSIZE` come from `limits` (0 = no limit) and
///   `RLIMIT_CORE` is 0.
///
/// The caller sets stdio, the working directory and `kill_on_drop`.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits: spawn from a long-lived thread
/// (a runtime worker thread, not a `spawn_blocking` thread).
pub fn sandboxed_command(
    program: &OsStr,
    args: &[impl AsRef<OsStr>],
    limits: &ChildLimits,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("RUST_BACKTRACE", "0");
    let limits = *limits;
    // SAFETY: the closure runs between fork and exec, and only makes async-signal-safe system
    // calls (getppid, setsid, prctl, setrlimit) and builds `io::Error`s from raw OS codes,
    // which does not allocate. It captures only `Copy` data.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            set_limit(libc::RLIMIT_AS, limits.address_space_bytes, 0)?;
            // The kernel sends SIGKILL, not SIGXCPU, at the hard limit: keep it a little above
            // the soft one so that running out of CPU time is recognizable as such.
            set_limit(libc::RLIMIT_CPU, limits.cpu_seconds, CPU_HARD_MARGIN_SECS)?;
            set_limit(libc::RLIMIT_FSIZE, limits.output_file_bytes, 0)?;
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &no_core) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Sets the soft limit `resource` to `value` and the hard limit to `value + hard_margin`, both
/// clamped to the inherited hard limit (0 leaves the limit as inherited). Async-signal-safe.
fn set_limit(resource: Resource, value: u64, hard_margin: u64) -> io::Result<()> {
    if value == 0 {
        return Ok(());
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid pointers to locals.
    unsafe {
        if libc::getrlimit(resource, &mut current) == -1 {
            return Err(io::Error::last_os_error());
        }
        let max = (value.saturating_add(hard_margin) as libc::rlim_t).min(current.rlim_max);
        let limit = libc::rlimit {
            rlim_cur: (value as libc::rlim_t).min(max),
            rlim_max: max,
        };
        if libc::setrlimit(resource, &limit) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `SIGKILL` to the process group led by `pid` (the child and anything it started).
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: a plain system call. ESRCH (group already gone) is fine.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[tokio::test]
    async fn runs_with_an_empty_environment_and_limits() {
        let args: Vec<OsString> = vec![
            "-c".into(),
            "echo \"$PATH|$HOME|$(ulimit -c)|$(ulimit -v)|$(ulimit -t)\"".into(),
        ];
        let limits = ChildLimits {
            address_space_bytes: 1 << 30,
            cpu_seconds: 7,
            output_file_bytes: 0,
        };
        let output = sandboxed_command(OsStr::new("sh"), &args, &limits)
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "/usr/bin:/bin||0|1048576|7"
        );
    }
}
