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

/// The copy the demo suggests, done as printed: the demo says when it
/// reached the secondary, and Ctrl-C cleans up.
#[test]
fn the_demo_reports_the_image_copied_with_the_skopeo_command_it_prints() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    crate::support::registry::registry_binary();
    assert!(
        Command::new("skopeo").arg("--version").output().is_ok_and(|o| o.status.success()),
        "skopeo is needed: apt-get install -y skopeo (.ci/run installs it)"
    );
    let mut demo = Command::new(crate::support::georeg_bin())
        .arg("demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let next = |what: &str, seen: &mut Vec<String>| -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("the demo never printed {what:?}:\n{}", seen.join("\n")),
            }
        }
    };
    let token_line = next("TOKEN=$(", &mut seen);
    let copy_line = next("skopeo copy", &mut seen);
    let args_line = next("docker://", &mut seen);
    let script = format!("{}\n{} {}", token_line.trim(), copy_line.trim().trim_end_matches('\\'), args_line.trim());
    let copied = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(copied.status.success(), "{script}\n{}", String::from_utf8_lossy(&copied.stderr));
    next("replicated demo/app:v1 (copied with skopeo) to the secondary, digest identical", &mut seen);
    let _ = Command::new("kill").arg("-INT").arg(demo.id().to_string()).status();
    let status = demo.wait().unwrap();
    assert!(status.success(), "the demo stopped with {status}:\n{}", seen.join("\n"));
}
