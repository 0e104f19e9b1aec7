//! The state file: API-made servers, backend admin states and last known
//! health, kept across restarts (`[api] state_file`).
//!
//! Format: `BTWX` magic, a format version byte, the postcard payload length
//! (u32 LE), the payload, and its FNV-1a 64 checksum (u64 LE). Written to a
//! temp file in the same directory, fsynced, renamed over the old one, and
//! the directory fsynced: a power cut leaves the old file or the new one.
//! Anything that does not check out is reported and ignored, never fatal.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"BTWX";
const VERSION: u8 = 1;

/// What is kept. Compare without `saved_ms` to decide whether to write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Unix ms of the write (for the health age check).
    pub saved_ms: u64,
    /// Server name -> section as JSON text, or `None` for deleted.
    pub overlay: Vec<(String, Option<String>)>,
    pub backends: Vec<SavedBackend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedBackend {
    pub server: String,
    /// `host:port`.
    pub key: String,
    pub admin: u8,
    pub healthy: bool,
    pub score: u32,
    pub since_ms: u64,
}

impl Saved {
    /// Same content, ignoring when it was written.
    pub fn same(&self, other: &Saved) -> bool {
        self.overlay == other.overlay && self.backends == other.backends
    }
}

pub fn encode(saved: &Saved) -> io::Result<Vec<u8>> {
    let payload = postcard::to_stdvec(saved).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(payload.len() + 17);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a betwixt state file")?;
    let (&version, rest) = rest.split_first().ok_or("truncated")?;
    if version != VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated")?;
    // On a 32-bit target `4 + len` can overflow: such a length is truncated.
    let end = usize::try_from(u32::from_le_bytes(len_bytes))
        .ok()
        .and_then(|len| len.checked_add(4))
        .ok_or("truncated")?;
    let payload = rest.get(4..end).ok_or("truncated")?;
    let sum: [u8; 8] = rest
        .get(end..)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated or trailing bytes")?;
    if u64::from_le_bytes(sum) != fnv1a(payload) {
        return Err("checksum mismatch".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("undecodable: {e}"))
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Read the file: `Ok(None)` when it does not exist, `Err` when it is unusable.
pub fn read(path: &Path) -> Result<Option<Saved>, String> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Replace the file atomically (temp file, fsync, rename, fsync the
/// directory); it is readable by its owner only.
pub fn write(path: &Path, saved: &Saved) -> io::Result<()> {
    let bytes = encode(saved)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(dir).join(tmp_name);
    {
        // Owner only: API-made servers may carry passwords and tokens. A
        // temp file left by a crash goes first, so its mode is not kept.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Saved {
        Saved {
            saved_ms: 42,
            overlay: vec![
                ("api1".into(), Some("{\"bind\":\":1\"}".into())),
                ("old".into(), None),
            ],
            backends: vec![SavedBackend {
                server: "web".into(),
                key: "127.0.0.1:80".into(),
                admin: 1,
                healthy: false,
                score: 20,
                since_ms: 7,
            }],
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_flip_is_rejected() {
        let bytes = encode(&sample()).unwrap();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flipped byte {i}");
        }
    }

    #[test]
    fn only_the_owner_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        // A temp file left by a crash, readable by all.
        std::fs::write(dir.path().join("state.tmp"), b"old").unwrap();
        write(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), Some(sample()));
        assert!(!dir.path().join("state.tmp").exists());
        std::fs::write(&path, b"BTWX\x01garbage").unwrap();
        assert!(read(&path).is_err());
    }
}
