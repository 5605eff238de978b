//! Noticing that the config file changed, so it can be reloaded as on SIGHUP.
//!
//! The watch is on the file's directory, not the file: editors write a new file and rename it over
//! the old one, and Kubernetes ConfigMaps swap a `..data` symlink, so a watch on the file itself
//! would go quiet after the first change. An event that names the file, or a name starting with
//! `..` (the kubelet's `..data` and its timestamped directories), starts a short debounce;
//! afterwards the file is read and compared with what was last seen, so only a real content change
//! (not a touch) triggers a reload. Events for other files in the directory are dropped on the
//! watcher's thread: a log written beside the config would otherwise wake the server's loop on
//! every write and, written more often than the debounce, hold a reload off for as long as it
//! went on. This module does not parse or apply configs: `main` does that, on the same path as
//! SIGHUP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event in the directory before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

pub struct ConfigWatch {
    path: PathBuf,
    last: Option<Vec<u8>>,
    events: mpsc::UnboundedReceiver<()>,
    // Dropping the watcher stops the watch, so it lives as long as this.
    _watcher: notify::RecommendedWatcher,
}

impl ConfigWatch {
    /// Starts watching `path`'s directory; `path`'s current content counts as already loaded.
    pub fn start(path: &Path) -> Result<ConfigWatch, notify::Error> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let (tx, events) = mpsc::unbounded_channel();
        let name = path.file_name().map(|n| n.to_os_string());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access() && concerns(&e, name.as_deref())) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(ConfigWatch {
            last: std::fs::read(&path).ok(),
            path,
            events,
            _watcher: watcher,
        })
    }

    /// Completes when the file's content differs from the last one seen (after the debounce).
    /// A file that is missing for a moment (mid-replace) is not a change.
    pub async fn changed(&mut self) {
        loop {
            if self.events.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
            // Debounce: wait until the directory has been quiet for `DEBOUNCE`.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {}
            let Ok(now) = tokio::fs::read(&self.path).await else {
                continue;
            };
            if self.last.as_deref() != Some(now.as_slice()) {
                self.last = Some(now);
                return;
            }
        }
    }

    /// Records content loaded by other means (SIGHUP), so the watch does not reload it again.
    pub fn seen(&mut self) {
        self.last = std::fs::read(&self.path).ok();
    }
}

/// Whether `event` may have changed what the config's name points at: an event for that name,
/// for a `..` name (a kubelet-style symlink swap), or one that names nothing (a rescan).
fn concerns(event: &notify::Event, name: Option<&std::ffi::OsStr>) -> bool {
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|p| match p.file_name() {
            Some(n) => Some(n) == name || n.as_encoded_bytes().starts_with(b".."),
            None => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("syncgate-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn fires(watch: &mut ConfigWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(1500), watch.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_file_replaced_by_rename_is_a_change_and_a_touch_is_not() {
        let dir = temp_dir("rename");
        let path = dir.join("syncgate.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut watch = ConfigWatch::start(&path).unwrap();

        // The editor / ConfigMap way: write a sibling, rename it over the file.
        std::fs::write(dir.join(".syncgate.yaml.tmp"), "a: 2\n").unwrap();
        std::fs::rename(dir.join(".syncgate.yaml.tmp"), &path).unwrap();
        assert!(fires(&mut watch).await, "rename over the file was missed");

        // Same content again, and an unrelated sibling: no reload.
        std::fs::write(&path, "a: 2\n").unwrap();
        std::fs::write(dir.join("other.txt"), "x").unwrap();
        assert!(
            !fires(&mut watch).await,
            "unchanged content must not reload"
        );

        // In-place write, twice in a row: one change after the debounce.
        std::fs::write(&path, "a: 3\n").unwrap();
        std::fs::write(&path, "a: 4\n").unwrap();
        assert!(fires(&mut watch).await);
        assert!(!fires(&mut watch).await, "one burst, one reload");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A log beside the config, written more often than the debounce: the config's change is
    /// still noticed, and the log's writes alone are not changes.
    #[tokio::test]
    async fn a_busy_sibling_neither_holds_off_a_reload_nor_is_one() {
        let dir = temp_dir("busy");
        let path = dir.join("syncgate.yaml");
        std::fs::write(&path, "a: 1\n").unwrap();
        let mut watch = ConfigWatch::start(&path).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, log) = (std::sync::Arc::clone(&stop), dir.join("app.log"));
            std::thread::spawn(move || {
                use std::io::Write;
                let mut log = std::fs::File::create(log).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = writeln!(log, "a line");
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        assert!(!fires(&mut watch).await, "the log is not the config");
        std::fs::write(&path, "a: 2\n").unwrap();
        assert!(
            fires(&mut watch).await,
            "the config's change waited for the log to go quiet"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The kubelet's atomic writer: the file is a symlink through `..data`, which is swapped to a
    /// new timestamped directory; no event names the file itself.
    #[tokio::test]
    async fn a_kubelet_style_data_swap_is_a_change() {
        let dir = temp_dir("kubelet");
        let version = |tag: &str, body: &str| {
            let d = dir.join(format!("..{tag}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("syncgate.yaml"), body).unwrap();
            let tmp = dir.join("..data_tmp");
            std::os::unix::fs::symlink(format!("..{tag}"), &tmp).unwrap();
            std::fs::rename(&tmp, dir.join("..data")).unwrap();
        };
        version("2026_12_01_1", "a: 1\n");
        let path = dir.join("syncgate.yaml");
        std::os::unix::fs::symlink("..data/syncgate.yaml", &path).unwrap();
        let mut watch = ConfigWatch::start(&path).unwrap();
        version("2026_12_01_2", "a: 2\n");
        assert!(fires(&mut watch).await, "the ..data swap was missed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
