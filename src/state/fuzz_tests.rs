//! Bounded fuzzing of the state file: any bytes decode to a state or an
//! error (a damaged file is ignored, never fatal), and what decodes lays
//! over a config without a panic.

use super::saved::{Saved, SavedBackend, decode, encode};
use crate::fuzz;

fn sample() -> Saved {
    Saved {
        saved_ms: u64::MAX,
        overlay: vec![
            ("api".into(), Some(r#"{"bind":"127.0.0.1:3100","discovery":{"kind":"static","static_list":["127.0.0.1:1"]}}"#.into())),
            ("gone".into(), None),
            ("bad".into(), Some("{not json".into())),
        ],
        backends: vec![SavedBackend {
            server: "web".into(),
            key: "127.0.0.1:80".into(),
            admin: 255,
            healthy: true,
            score: u32::MAX,
            since_ms: 0,
        }],
    }
}

/// `payload` wrapped with a valid header and checksum, so that mutations
/// reach the postcard decoder.
fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut empty = encode(&Saved::default()).expect("encode");
    let sum_of = |p: &[u8]| {
        p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    empty.truncate(5);
    empty.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    empty.extend_from_slice(payload);
    empty.extend_from_slice(&sum_of(payload).to_le_bytes());
    empty
}

#[test]
fn fuzz_state_files() {
    crate::config::NO_LOOKUP.with(|n| n.set(true));
    let file = encode(&sample()).expect("encode");
    let payload = file[9..file.len() - 8].to_vec();
    assert_eq!(decode(&wrap(&payload)), Ok(sample()));
    let loaded = crate::config::parse(
        "[servers.web]\nbind = \"127.0.0.1:3000\"\n[servers.web.discovery]\nkind = \"static\"\nstatic_list = []\n",
        crate::config::Format::Toml,
    )
    .expect("config");
    let mut n = 0;
    fuzz::run("state file", 71, 750, &[&file, &payload], |bytes| {
        n += 1;
        // Half the cases as they are (the checksum mostly fails), half
        // with a fresh checksum over them.
        let bytes = if n % 2 == 0 {
            bytes.to_vec()
        } else {
            wrap(bytes)
        };
        if let Ok(saved) = decode(&bytes) {
            let overlay = crate::api::control::saved_overlay(&saved);
            let _ = crate::api::overlay::merge(&loaded.raw, &overlay);
        }
    });
}
