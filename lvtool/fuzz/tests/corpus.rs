//! Replays the committed corpora (and any crash artifacts) through the fuzz checks on stable,
//! without libFuzzer: `cargo test` in lvtool/fuzz.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        check(&std::fs::read(&p).unwrap());
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn config_text_corpus() {
    replay("config_text", lvtool_fuzz::config_text);
}

#[test]
fn vg_text_corpus() {
    replay("vg_text", lvtool_fuzz::vg_text);
}

#[test]
fn pv_image_corpus() {
    replay("pv_image", lvtool_fuzz::pv_image);
}

/// The seeds made by make-seeds.sh reach VG reading, and the ones flagged for it a commit.
#[test]
fn pv_image_seeds_reach_commit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/pv_image");
    let (mut read, mut committed) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let r = lvtool_fuzz::pv_image_stats(&std::fs::read(e.unwrap().path()).unwrap());
        read += r.vgs_read;
        committed += r.committed;
    }
    assert!(read >= 5 && committed >= 3, "read {read}, committed {committed}");
}

/// Deep nesting once overflowed the parser's stack (found while fuzzing); it is now refused at
/// `MAX_SECTION_DEPTH`.
#[test]
fn deep_nesting_is_an_error() {
    let text = "a{".repeat(50_000);
    assert!(lvtool::config::parse(text.as_bytes()).is_err());
}

/// The hand-written seeds are VGs lvtool accepts (so they reach the export round trip), with
/// LVs of unsupported types kept.
#[test]
fn handmade_texts_are_vgs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("handmade");
    let vg = lvtool::vg::Vg::from_text(&std::fs::read(dir.join("unsupported-types.txt")).unwrap()).unwrap();
    assert!(vg.lvs.iter().any(|l| !l.is_supported()));
    assert!(lvtool::vg::Vg::from_text(&std::fs::read(dir.join("float-inf.txt")).unwrap()).is_ok());
}
