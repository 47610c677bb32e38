//! The architecture invariants of ARCHITECTURE.md, checked against the real dependency graph
//! (`cargo metadata`), so a change that breaks one fails here rather than in review.

use std::collections::BTreeMap;
use std::process::Command;

/// Direct normal (non-dev) dependencies of every workspace crate, by crate name.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null())
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn the_workspace_has_the_designed_crates() {
    let crates: Vec<String> = dependencies().into_keys().collect();
    for name in ["clawnet-crypto", "clawnet-protocol", "clawnet-storage", "clawnet-node", "clawnet-bootstrap"] {
        assert!(crates.contains(&name.to_owned()), "{name} missing from {crates:?}");
    }
}

#[test]
fn only_storage_imports_redb() {
    for (name, deps) in dependencies() {
        if name != "clawnet-storage" {
            assert!(!deps.contains(&"redb".to_owned()), "{name} depends on redb");
        }
    }
}

#[test]
fn crypto_and_protocol_do_no_io_and_no_async() {
    let deps = dependencies();
    for name in ["clawnet-crypto", "clawnet-protocol"] {
        for forbidden in ["tokio", "redb", "libp2p", "reqwest", "futures"] {
            assert!(!deps[name].contains(&forbidden.to_owned()), "{name} depends on {forbidden}");
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let deps = dependencies();
    // crypto <- protocol <- storage <- node; bootstrap uses crypto and protocol only.
    let allowed: [(&str, &[&str]); 5] = [
        ("clawnet-crypto", &[]),
        ("clawnet-protocol", &["clawnet-crypto"]),
        ("clawnet-storage", &["clawnet-crypto", "clawnet-protocol"]),
        ("clawnet-node", &["clawnet-crypto", "clawnet-protocol", "clawnet-storage"]),
        ("clawnet-bootstrap", &["clawnet-crypto", "clawnet-protocol"]),
    ];
    for (name, may_use) in allowed {
        for dep in deps[name].iter().filter(|dep| dep.starts_with("clawnet-")) {
            assert!(may_use.contains(&dep.as_str()), "{name} must not depend on {dep}");
        }
    }
}

#[test]
fn nothing_depends_on_node() {
    // The end-to-end test crate drives whole nodes; nothing else may build on the node.
    for (name, deps) in dependencies() {
        if name != "clawnet-tests" {
            assert!(!deps.contains(&"clawnet-node".to_owned()), "{name} depends on clawnet-node");
        }
    }
}
