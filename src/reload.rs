//! Noticing that the config file changed, so it can be reloaded as on SIGHUP.
//!
//! The watch is on the file's directory, not the file: editors write a new file and rename it over
//! the old one, and Kubernetes ConfigMaps swap a `..data` symlink, so a watch on the file itself
//! would go quiet after the first change. Every event in the directory starts a short debounce;
//! afterwards the file is read and compared with what was last seen, so only a real content change
//! (not a touch, not a sibling file) triggers a reload. This module does not parse or apply
//! configs: `main` does that, on the same path as SIGHUP.

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
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
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
}
