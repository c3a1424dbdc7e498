//! Replays a cargo-fuzz target's inputs as an ordinary test (docs/HARDENING.md "Fuzzing"):
//! every file of `fuzz/corpus/<target>/` (the committed `seed-*` files, plus whatever a local
//! fuzzing run added) and of `fuzz/regressions/<target>/` (minimised crashes, committed), each
//! through the same property-checking body the fuzz target runs (`<crate>::fuzzing`).
//!
//! No fuzzer build is needed: CI runs these under `cargo nextest run --workspace`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The workspace's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `body` on every input of fuzz target `target` (see the module docs) and returns how
/// many ran. Panics (failing the test) when the corpus has no committed `seed-*` file, or
/// after the run, naming every input on which `body` panicked.
pub fn replay(target: &str, body: impl Fn(&[u8])) -> usize {
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut inputs = files(&corpus);
    let seeds = inputs
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .count();
    assert!(
        seeds > 0,
        "no seed-* input in {} (regenerate with python3 fuzz/seed.py)",
        corpus.display()
    );
    inputs.extend(files(&fuzz_dir().join("regressions").join(target)));
    let mut failed = Vec::new();
    for path in &inputs {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target}: {} of {} inputs failed (panic messages above):\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
    inputs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_body_fails_the_replay() {
        let r = catch_unwind(|| replay("cd_line", |_| panic!("property broken")));
        assert!(r.is_err());
        assert!(replay("cd_line", |_| {}) > 0);
    }

    #[test]
    fn a_target_without_seeds_fails_the_replay() {
        assert!(catch_unwind(|| replay("no_such_target", |_| {})).is_err());
    }
}
