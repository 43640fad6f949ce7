//! Reads the sled spool that agents up to 0.2 wrote in the same directory, once, converting
//! its batches to batch files (the only code that touches sled in the agent).
//!
//! ```text
//! sled files: conf, db, blobs/, snap.*     tree "batches": seq (u64 BE) → bincode(Batch)
//! ```
//!
//! Each batch keeps its bytes, so its epoch and sequence number too: the aggregator still
//! recognises the ones it merged. A sled spool that cannot be opened (damaged) is moved into
//! `sled.damaged-<unix seconds>/` in the spool directory, logged at error and counted as one
//! damaged batch: what it held is lost.

use std::fs;
use std::path::Path;

use tracing::{error, info};

use super::{SpoolError, io_err, write_batch_file};

const SLED_FILES: [&str; 3] = ["conf", "db", "blobs"];

/// True when `dir` holds a sled spool.
pub(super) fn present(dir: &Path) -> bool {
    dir.join("conf").exists() || dir.join("db").exists()
}

fn sled_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = SLED_FILES.iter().map(|f| dir.join(f)).collect();
    if let Ok(list) = fs::read_dir(dir) {
        for entry in list.flatten() {
            if entry.file_name().to_string_lossy().starts_with("snap.") {
                out.push(entry.path());
            }
        }
    }
    out.retain(|p| p.exists());
    out
}

fn remove(path: &Path) {
    let _gone = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
}

/// Converts the sled spool in `dir`; returns how many batches were lost to damage.
pub(super) fn migrate(dir: &Path) -> Result<u64, SpoolError> {
    let opened = sled::Config::new().path(dir).open();
    let db = match opened {
        Ok(db) => db,
        Err(sled::Error::Io(e)) if e.to_string().contains("lock") => {
            return Err(SpoolError::Locked(dir.to_path_buf()));
        }
        Err(e) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("sled.damaged-{secs}"));
            fs::create_dir_all(&aside).map_err(io_err("creating", &aside))?;
            for path in sled_entries(dir) {
                if let Some(name) = path.file_name() {
                    let _moved = fs::rename(&path, aside.join(name));
                }
            }
            error!(
                error = %e,
                moved_to = %aside.display(),
                "The 0.2 spool cannot be read; what it held is lost. Starting an empty spool."
            );
            return Ok(1);
        }
    };
    let mut converted = 0u64;
    let mut damaged = 0u64;
    if let Ok(batches) = db.open_tree("batches") {
        for entry in batches.iter() {
            let Ok((k, v)) = entry else {
                damaged += 1;
                continue;
            };
            let Ok(seq) = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes) else {
                damaged += 1;
                continue;
            };
            write_batch_file(dir, seq, seq, &v)?;
            converted += 1;
        }
    }
    drop(db);
    for path in sled_entries(dir) {
        remove(&path);
    }
    info!(
        batches = converted,
        damaged, "Converted the 0.2 sled spool to batch files."
    );
    Ok(damaged)
}
