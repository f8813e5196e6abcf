//! Notifications while the catalog scan runs, for the scale scenario: a
//! node started on a fresh state file scans the primary's catalog at its
//! start, every repository new to it, and meanwhile the registry's
//! notifications arrive, one every `notify_every` on one kept-alive
//! connection as in contention.rs. georeg answers a notification once its
//! events are committed, through the one writer connection the scan
//! writes through: a long write of the scan shows here. Bounded: at most
//! `sc.notifications`, until the node logs the end of its scan, and
//! `sc.notify_deadline`.

use std::time::{Duration, Instant};

use crate::contention::{envelope, Run};
use crate::lab::Lab;
use crate::scale::{node, remove_state, Scale};
use crate::support::oci::describe;
use crate::support::registry::Registry;
use crate::support::SECRET;
use crate::synthetic::{self, Synthetic};

/// The notifications answered while the scan ran, and how long the node
/// took from its start to the end of its scan.
pub fn measure(lab: &Lab, sc: &Scale, n: usize, secondary: &Registry, primary: &Synthetic) -> (Run, Duration) {
    let node = node(lab, &format!("scale-{n}-scan-notify"), secondary, primary, sc.workers);
    let log = lab.path(&format!("{}-serve.log", node.name));
    let started = Instant::now();
    let serve = node.serve(lab);
    let scanned = || std::fs::read_to_string(&log).unwrap_or_default().contains("catalog of");
    let url = format!("{}/api/v4/container_registry_event/events", node.url());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let holds = sc.first_pass.min(n).max(1);
    let mut out = Run::default();
    let deadline = Instant::now() + sc.notify_deadline;
    let begin = Instant::now();
    let mut scan_wall = None;
    for k in 0..sc.notifications {
        if scanned() {
            scan_wall = Some(started.elapsed());
            break;
        }
        if Instant::now() >= deadline {
            out.cut_short = true;
            break;
        }
        let due = begin + sc.notify_every * k as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let body = envelope(
            &primary.url,
            &format!("scan-{n}-{k}"),
            &synthetic::name(k % holds),
            &synthetic::small_tag(k % sc.tags),
        );
        let t = Instant::now();
        let sent = agent
            .post(&url)
            .set("Authorization", SECRET)
            .set("Content-Type", "application/vnd.docker.distribution.events.v1+json")
            .send_string(&body);
        match sent {
            Ok(_) => out.samples.push(t.elapsed()),
            Err(e) => {
                out.failed += 1;
                out.first_failure.get_or_insert(describe(e));
            }
        }
    }
    out.wall = begin.elapsed();
    // The scan's end, if the notifications did not see it (all sent first).
    let until = Instant::now() + Duration::from_secs(900);
    while scan_wall.is_none() && Instant::now() < until {
        if scanned() {
            scan_wall = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    serve.stop();
    remove_state(&node);
    (out, scan_wall.unwrap_or_else(|| panic!("georeg {} logged no catalog scan", node.name)))
}
