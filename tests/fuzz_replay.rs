//! Replays the fuzz seeds and every committed crash input through the fuzz targets' own
//! functions (`corelog::fuzzing`) on stable Rust, so that CI catches a regression of a fixed
//! crash without libFuzzer. The fuzzing itself is `scripts/fuzz.sh`, run by hand.

use std::path::{Path, PathBuf};

use corelog::fuzzing::{seeds, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

/// Files under `tests/fuzz/<kind>/<target>/`, sorted by name.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Every committed seed and regression input of every target runs through its target
/// without a panic, and every target has seeds on disk to start fuzzing from.
#[test]
fn committed_inputs_replay_cleanly() {
    for (target, run) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}; run write_seeds");
        for (path, bytes) in seeds.iter().chain(&inputs("regressions", target)) {
            eprintln!("{target}: {}", path.display());
            run(bytes);
        }
    }
}

/// The seeds as the current encoders make them also run cleanly (they may differ in bytes
/// from the committed ones after an encoder upgrade; rewrite those with write_seeds).
#[test]
fn generated_seeds_replay_cleanly() {
    let all = seeds::all();
    for (target, run) in TARGETS {
        let mine: Vec<_> = all.iter().filter(|seed| seed.target == target).collect();
        assert!(!mine.is_empty(), "no generated seeds for {target}");
        for seed in mine {
            run(&seed.bytes);
        }
    }
}

/// Writes the generated seeds to `tests/fuzz/seeds/<target>/` (run by `scripts/fuzz.sh`, or
/// by hand with `--ignored` after changing the seeds).
#[test]
#[ignore]
fn write_seeds() {
    for seed in seeds::all() {
        let dir = fuzz_dir().join("seeds").join(seed.target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&seed.name), &seed.bytes).unwrap();
    }
}
