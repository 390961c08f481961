//! The rig lock: one advisory lock per rig so two jobs never drive one board.
//!
//! The lock is an exclusive `flock` on the file named in the rig config. The kernel drops it
//! when its holder exits, however it exits, so a lock left by a dead process is taken over at
//! once. The file's text names the holder (pid, command, start time) so a waiting job can say
//! who it waits for.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::LockError;

/// How often a waiting job retries.
const POLL: Duration = Duration::from_millis(100);

/// A held rig lock; released on drop.
#[derive(Debug)]
pub struct RigLock {
    file: File,
    path: PathBuf,
    /// The previous holder, if it died without releasing the lock text.
    pub took_over: Option<Holder>,
}

/// Who holds (or held) a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// When it took the lock (seconds since the epoch).
    pub since: u64,
}

impl Holder {
    fn me(command: &str) -> Holder {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Holder { pid: std::process::id(), command: command.to_string(), since }
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut pid = None;
        let mut command = String::new();
        let mut since = 0;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => pid = v.trim().parse().ok(),
                Some(("command", v)) => command = v.trim().to_string(),
                Some(("since", v)) => since = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        Some(Holder { pid: pid?, command, since })
    }

    fn render(&self) -> String {
        format!("pid={}\ncommand={}\nsince={}\n", self.pid, self.command, self.since)
    }

    /// Whether the process still exists.
    pub fn alive(&self) -> bool {
        // kill(pid, 0) checks existence without sending a signal.
        let pid = self.pid as libc::pid_t;
        pid > 0 && nix_kill0(pid)
    }
}

#[allow(unsafe_code)]
fn nix_kill0(pid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 performs only the existence and permission check.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(self.since);
        write!(f, "pid {} (`{}`, for {} s)", self.pid, self.command, age)
    }
}

impl RigLock {
    /// Take the lock at `path`, waiting up to `timeout` for another holder. `command` is written
    /// into the lock file for other jobs to read. `on_wait` is called once, when waiting starts,
    /// with a message naming the holder.
    pub async fn acquire(
        path: &Path,
        timeout: Duration,
        command: &str,
        mut on_wait: impl FnMut(&str),
    ) -> Result<RigLock, LockError> {
        let open_err = |source| LockError::Open { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(open_err)?;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(open_err)?;
        let start = tokio::time::Instant::now();
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder =
                        read_holder(&mut file).map(|h| h.to_string()).unwrap_or_else(|| "an unknown process".into());
                    if start.elapsed() >= timeout {
                        return Err(LockError::Timeout { path: path.to_path_buf(), holder, waited: start.elapsed() });
                    }
                    if !announced {
                        on_wait(&format!(
                            "rig lock {} is held by {holder}; waiting up to {} s",
                            path.display(),
                            timeout.as_secs()
                        ));
                        announced = true;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
            }
        }
        // We hold it. Anything still written in the file is from a holder that is gone.
        let took_over = read_holder(&mut file).filter(|h| h.pid != std::process::id());
        if let Some(h) = &took_over {
            tracing::warn!("took over rig lock {} left by {h}, which is no longer running", path.display());
        }
        let me = Holder::me(command);
        file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).map_err(open_err)?;
        file.write_all(me.render().as_bytes()).and_then(|()| file.sync_all()).map_err(open_err)?;
        Ok(RigLock { file, path: path.to_path_buf(), took_over })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    Holder::parse(&text)
}

impl Drop for RigLock {
    fn drop(&mut self) {
        // Clear the holder text so nobody reports a stale holder, then unlock.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_job_waits_names_the_holder_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rig.lock");
        let first = RigLock::acquire(&path, Duration::from_secs(1), "bootproof suite", |_| {}).await.unwrap();
        let mut waited = Vec::new();
        let e =
            RigLock::acquire(&path, Duration::from_millis(300), "bootproof power on", |m| waited.push(m.to_string()))
                .await
                .unwrap_err()
                .to_string();
        assert_eq!(waited.len(), 1);
        assert!(
            waited[0].contains(&format!("pid {}", std::process::id())) && waited[0].contains("bootproof suite"),
            "{}",
            waited[0]
        );
        assert!(
            e.contains("still held by") && e.contains("bootproof suite") && e.contains("another bootproof job"),
            "{e}"
        );
        drop(first);
        let again = RigLock::acquire(&path, Duration::from_millis(300), "bootproof power on", |_| {}).await.unwrap();
        assert!(again.took_over.is_none(), "a cleanly released lock is not a takeover");
    }

    #[tokio::test]
    async fn waiting_job_gets_the_lock_when_the_holder_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rig.lock");
        let first = RigLock::acquire(&path, Duration::from_secs(1), "first", |_| {}).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            drop(first);
        });
        let t0 = std::time::Instant::now();
        let second = RigLock::acquire(&path, Duration::from_secs(5), "second", |_| {}).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(200));
        release.await.unwrap();
        drop(second);
    }

    #[tokio::test]
    async fn lock_of_a_killed_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rig.lock");
        // A child shell takes the lock with flock(1)-compatible semantics via python, writes a
        // holder record, and is SIGKILLed while holding it.
        let script = format!(
            "import fcntl,os,time\nf=open({p:?},'a+')\nfcntl.flock(f,fcntl.LOCK_EX)\nf.truncate(0)\nf.write('pid=%d\\ncommand=doomed job\\nsince=1\\n'%os.getpid())\nf.flush()\nprint('locked',flush=True)\ntime.sleep(60)\n",
            p = path.to_str().unwrap()
        );
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test");
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 7];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"locked\n");
        // While it lives, we cannot take the lock, and we are told who holds it.
        let e = RigLock::acquire(&path, Duration::from_millis(200), "me", |_| {}).await.unwrap_err().to_string();
        assert!(e.contains("doomed job"), "{e}");
        let child_pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        let lock = RigLock::acquire(&path, Duration::from_secs(2), "me", |_| {}).await.unwrap();
        let prev = lock.took_over.clone().expect("takeover reported");
        assert_eq!(prev.pid, child_pid);
        assert!(!prev.alive());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("pid={}", std::process::id())), "{text}");
    }

    #[tokio::test]
    async fn unwritable_lock_directory_says_what_to_do() {
        let e = RigLock::acquire(Path::new("/proc/bootproof/rig.lock"), Duration::from_millis(10), "x", |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc/bootproof/rig.lock") && e.contains("set `lock`"), "{e}");
    }
}
