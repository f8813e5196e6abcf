//! The README's quick start: `georeg demo` replicates an image end to end.

use std::process::Command;

#[test]
fn demo_replicates_an_image_end_to_end_and_cleans_up() {
    crate::support::registry::registry_binary();
    let out = Command::new(crate::support::georeg_bin()).args(["demo", "--once"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("replicated demo/hello:v1 to the secondary in"), "{stdout}");
    let dir = stdout.lines().next().and_then(|l| l.strip_prefix("georeg demo: setting up in ")).unwrap().trim();
    assert!(!std::path::Path::new(dir).exists(), "the demo removed {dir}");
}
