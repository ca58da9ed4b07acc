//! Replays the committed corpora (and any crash artifacts) through the fuzz checks on stable,
//! without libFuzzer: `cargo test` in fuzz/.

use std::path::{Path, PathBuf};

fn files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "empty corpus {}", dir.display());
    v
}

fn replay(target: &str, check: fn(&[u8])) {
    for p in files(target) {
        let data = std::fs::read(&p).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            std::panic::resume_unwind(Box::new(format!("{}: {e:?}", p.display())));
        }
    }
}

/// Every frame of the `valid-*` seeds (named by make-seeds.py) decodes as a request: the seeds
/// follow the wire format, so the fuzzer starts from requests the daemons really handle.
fn seeds_decode<T: for<'de> serde::Deserialize<'de>>(target: &str, max: usize) {
    let mut n = 0;
    for p in files(target) {
        if !p.file_name().unwrap().to_string_lossy().starts_with("valid-") {
            continue;
        }
        let mut dec = proto::frame::FrameDecoder::new(max);
        dec.push(&std::fs::read(&p).unwrap());
        let mut frames = 0;
        while let Some(body) = dec.next_frame().unwrap() {
            if let Err(e) = serde_json::from_slice::<T>(&body) {
                panic!("{}: {e}: {}", p.display(), String::from_utf8_lossy(&body));
            }
            frames += 1;
        }
        assert!(frames > 0, "{}", p.display());
        n += 1;
    }
    assert!(n >= 5, "{target}: only {n} valid seeds");
}

#[test]
fn lockd_request_corpus() {
    replay("lockd_request", daemons_fuzz::lockd_request);
}

#[test]
fn wdmd_request_corpus() {
    replay("wdmd_request", daemons_fuzz::wdmd_request);
}

#[test]
fn lockd_seeds_are_requests() {
    seeds_decode::<proto::lockd::protocol::Request>("lockd_request", proto::lockd::protocol::MAX_FRAME);
}

#[test]
fn wdmd_seeds_are_requests() {
    seeds_decode::<proto::wdmd::protocol::Request>("wdmd_request", proto::wdmd::protocol::MAX_FRAME);
}
