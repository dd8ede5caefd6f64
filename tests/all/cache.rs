//! The precompiled-artifact cache: reused when authentic, rejected and rebuilt otherwise.

use palisade_runtime::{CacheOutcome, Config, Decision, Engine, WasmPolicy};
use palisade_test_artifacts::HEADERS_ONLY;

use crate::fixtures::{ctx, get};

fn entry(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry")
}

fn load(engine: &Engine) -> WasmPolicy {
    let policy = WasmPolicy::from_file(engine, HEADERS_ONLY).unwrap();
    assert!(matches!(
        policy.on_request(&ctx("t"), get("/")).result,
        Ok(Decision::Continue(_))
    ));
    policy
}

#[test]
fn cache_hits_when_authentic_and_rejects_corrupt_or_foreign_entries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(&Config::new().pool(8, 4 << 30).cache_dir(dir.path())).unwrap();
    assert_eq!(load(&engine).cache_outcome(), CacheOutcome::Miss);
    assert_eq!(load(&engine).cache_outcome(), CacheOutcome::Hit);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("cache.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // One flipped bit in the artifact.
    let path = entry(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(load(&engine).cache_outcome(), CacheOutcome::Rejected);
    assert_eq!(
        load(&engine).cache_outcome(),
        CacheOutcome::Hit,
        "the entry was rewritten"
    );

    // An entry written under another key (another cache, or someone without the key).
    let other = tempfile::tempdir().unwrap();
    let engine2 = Engine::new(&Config::new().pool(8, 4 << 30).cache_dir(other.path())).unwrap();
    load(&engine2);
    std::fs::copy(entry(other.path()), entry(dir.path())).unwrap();
    assert_eq!(load(&engine).cache_outcome(), CacheOutcome::Rejected);

    // A truncated entry.
    let path = entry(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert_eq!(load(&engine).cache_outcome(), CacheOutcome::Rejected);
}
