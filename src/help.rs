//! Help for each command (`georeg help sync`, `georeg sync --help`), and
//! the `georeg(1)` man page the package ships, made from the same texts.

/// One command's help: usage, what it does, its options, an example and
/// what its exit codes mean.
pub struct Page {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
    pub options: &'static [(&'static str, &'static str)],
    pub example: &'static str,
    pub exit: &'static str,
}

const CONFIG_EXIT: &str = "2 when the configuration or the command line is invalid (one line names the key or option)";

pub const PAGES: &[Page] = &[
    Page {
        name: "backfill",
        usage: "georeg backfill",
        about: "One backfill pass now: scans the primary registry's catalog, then fully syncs every repository \
                not synced yet (failed ones too, whatever their retry time), with a progress line on stderr. \
                While georeg serve runs, it asks the daemon for the syncs and follows them.",
        options: &[],
        example: "runuser -u georeg -- georeg backfill",
        exit: "0 when every repository to replicate is synced; 1 listing those that are not; 130 when \
               interrupted (what was claimed is handed back)",
    },
    Page {
        name: "check",
        usage: "georeg check",
        about: "Checks the configuration, the key, this node's registry (on a secondary: a push opened and \
                cancelled and a delete of a manifest that cannot exist; on a primary: reads only), the primary \
                registry and the georeg it follows (on a secondary: the primary, or a relay and its chain) and the \
                state file: one ok or FAILED line each, with a hint. Each registry's line names the authentication it found (GitLab-style token, Basic, Bearer with \
                its realm, anonymous) and what georeg may do there.",
        options: &[],
        example: "georeg --config /etc/georeg/georeg.toml check",
        exit: "0 when every check passed; 1 when any failed",
    },
    Page {
        name: "deletions",
        usage: "georeg deletions [--json] | --apply ID...|--all | --cancel ID...|--all",
        about: "The deletions held back by replication.delete_delay_hours: every tag, manifest or emptied \
                repository the primary lost waits that long before georeg removes it from the secondary. Without \
                options: one line each (ID, repository, tag or digest, seen at, applies at), cancelled ones last. \
                --apply removes them now (what the primary has again is dropped instead; while georeg serve runs, \
                it does the work and this command follows it). --cancel keeps them on the secondary for good: \
                verification expects the difference.",
        options: &[
            ("--json", "the listing as JSON"),
            ("--apply ID...", "apply these held deletions now; --all: every held one"),
            ("--cancel ID...", "keep these on the secondary; --all: every held one"),
        ],
        example: "georeg deletions --apply 12 13",
        exit: "0 when every deletion named was listed, applied or cancelled; 1 when one failed or no held deletion \
               has an ID given; 130 when interrupted",
    },
    Page {
        name: "demo",
        usage: "georeg demo [--once]",
        about: "Runs a throwaway primary and secondary (registries and georeg nodes) on loopback, pushes an image \
                and shows it replicating. Needs docker-registry and openssl.",
        options: &[("--once", "stop after the first image arrived")],
        example: "georeg demo",
        exit: "0 when stopped with Ctrl-C (or after the first image with --once); 1 when a part could not start",
    },
    Page {
        name: "export",
        usage: "georeg export --output FILE.tar [--inventory FILE] [REPO...]\n       georeg export --inventory FILE \
                --dry-run [REPO...]",
        about: "Writes a transfer bundle for an air-gapped secondary, on a host that reaches the primary registry, \
                with that secondary's configuration (pull-only tokens; registry.url is never contacted): one tar \
                file, an OCI image layout with every manifest and blob of the repositories (the primary's whole \
                catalog by default, selective sync applied) plus georeg-bundle.json, signed, naming every tag \
                and digest. With --inventory, only what that secondary lacks, and the tags to remove. Blobs \
                stream with their digests checked; a progress line shows how far it got. FILE.tar.sha256 is \
                written beside it for carrying.",
        options: &[
            ("--output FILE.tar", "the bundle to write (written as FILE.tar.partial, renamed when complete)"),
            ("--inventory FILE", "the secondary's signed inventory: an incremental bundle"),
            (
                "--dry-run",
                "with --inventory, write nothing: one line per repository the secondary lacks anything of (tags \
                 missing, at another digest, to remove; manifests and blob bytes a bundle would carry), then the \
                 totals",
            ),
        ],
        example: "georeg export --inventory inventory.json --output /media/usb/bundle.tar",
        exit: "0 when the bundle is complete (a dry run: when the secondary lacks nothing); 1 when anything failed \
               (a dry run: when it lacks anything); 130 when interrupted (no bundle is left, but \
               FILE.tar.partial and FILE.tar.resume: the same command run again goes on from there, other \
               arguments start over)",
    },
    Page {
        name: "import",
        usage: "georeg import FILE.tar [--force-primary] [--force-older]",
        about: "Applies a transfer bundle to this node's registry: every blob streamed in with its digest checked, \
                then manifests (children before indexes), then tags, then deletions (sibling tags kept), recorded \
                in the state file as syncs are. Run again after a crash or Ctrl-C, it finishes without copying \
                twice. Refuses a bundle whose bytes do not match (naming the file), one exported from another \
                primary registry, or one exported before the last bundle imported. Takes the state file: stop \
                georeg serve first.",
        options: &[
            ("--force-primary", "import a bundle exported from another primary registry"),
            ("--force-older", "import a bundle exported before the last one imported"),
        ],
        example: "sha256sum -c bundle.tar.sha256 && georeg import bundle.tar",
        exit: "0 when every repository was imported; 1 when any failed (run it again once fixed); 2 when the \
               bundle is refused (cut short, no georeg-bundle.json, not signed with the shared key, edited, too \
               large, written by an older georeg, from another primary, older than the last) or georeg serve \
               runs; 130 when interrupted (run it again to finish)",
    },
    Page {
        name: "inventory",
        usage: "georeg inventory --output FILE",
        about: "Writes what this node's registry holds (repositories, tags and digests, the manifests and blobs \
                each holds), read through the registry API and signed with the shared key, for georeg export \
                --inventory on the other side of the air gap.",
        options: &[("--output FILE", "the inventory to write")],
        example: "georeg inventory --output /media/usb/inventory.json",
        exit: "0 when written; 1 when the registry could not be read; 130 when interrupted",
    },
    Page {
        name: "drill",
        usage: "georeg drill [--sample N]",
        about: "Pulls a random sample of tags from the secondary registry now, as a client would, with a pull-only \
                token: the manifest by tag, every child manifest and every blob read in full and hashed, referrers \
                included. One line per tag; the result is recorded in the state file. A tag that cannot be pulled \
                whole queues a full sync of its repository, which copies the failing blob or manifest again. Runs \
                beside georeg serve, which drills every replication.drill_interval_seconds by itself.",
        options: &[("--sample N", "tags to pull (default: replication.drill_sample, 10)")],
        example: "georeg drill --sample 50",
        exit: "0 when every tag pulled whole (or nothing is synced yet); 1 when any failed; 130 when interrupted",
    },
    Page {
        name: "failover-check",
        usage: "georeg failover-check [--json]",
        about: "What would be lost if the primary vanished now, one line per finding: events received but not \
                applied, repositories not synced or failing, never verified, failed or stale verifications, tags \
                the secondary refuses, failed drills (LOSS lines); held deletions, the oldest unapplied change and \
                recent lag (note lines). Reads the state file only. The same as the failover object of \
                /api/v1/status and georeg_failover_ready in /metrics.",
        options: &[("--json", "the findings as JSON")],
        example: "georeg failover-check || echo 'not ready to fail over'",
        exit: "0 when nothing would be lost; 1 when anything would",
    },
    Page {
        name: "serve",
        usage: "georeg serve",
        about: "The daemon: the notification endpoint, the event log (primary), the replication workers, \
                backfill, drills and the event-log cursor (secondary), the dashboard, status API and metrics. It owns \
                the state file while it runs; SIGTERM or SIGINT stops it within 10 s.",
        options: &[],
        example: "systemctl enable --now georeg",
        exit: "0 after a clean stop; 2 when another georeg owns the state file, or it is missing, empty, deleted or \
               replaced (see docs/guarantees.md, the state file)",
    },
    Page {
        name: "status",
        usage: "georeg status [--json]",
        about: "This node's status, read from the state file: whether a daemon runs, health, repositories by \
                state, verification, lag, failing repositories. Works while the daemon is stopped and before the \
                key is in place.",
        options: &[("--json", "the same numbers as GET /api/v1/status")],
        example: "georeg status --json | jq .repositories",
        exit: "0",
    },
    Page {
        name: "sync",
        usage: "georeg sync REPO...",
        about: "A full sync of the named repositories now: every tag compared with the primary, what differs \
                copied or removed. One result line each. While georeg serve runs, it asks the daemon for the \
                syncs and follows them.",
        options: &[],
        example: "georeg sync group/app group/other",
        exit: "0 when all synced; 1 when any failed; 130 when interrupted",
    },
    Page {
        name: "verify",
        usage: "georeg verify [--blobs] [--bundle FILE.tar] [REPO...]",
        about: "Compares each repository's checksum (its tags and digests, and referrers where the primary lists \
                them) on both registries; a mismatch queues a full sync. Every repository by default. With \
                --bundle, compares this node's registry with what a transfer bundle says instead, without the \
                primary.",
        options: &[
            ("--blobs", "also read every blob back from the secondary and check its digest"),
            ("--bundle FILE.tar", "compare with the tags and digests of this bundle (air-gapped secondaries)"),
        ],
        example: "georeg verify --blobs group/app",
        exit: "0 when all verified; 1 when any differed or could not be verified; 2 when the --bundle file is \
               refused (cut short, no georeg-bundle.json, not signed with the shared key, edited, too large, \
               written by an older georeg); 130 when interrupted",
    },
    Page {
        name: "token",
        usage: "georeg token --scope SCOPE...",
        about: "Prints a token for this node's registry signed with the shared key, for debugging with curl.",
        options: &[("--scope SCOPE", "repository:NAME:ACTIONS or registry:catalog:*; at least one, repeatable")],
        example: "curl -H \"Authorization: Bearer $(georeg token --scope repository:group/app:pull)\" \\\n    \
                  http://127.0.0.1:5000/v2/group/app/tags/list",
        exit: "0",
    },
    Page {
        name: "version",
        usage: "georeg version",
        about: "Prints the version.",
        options: &[],
        example: "georeg version",
        exit: "0",
    },
];

/// The page of `command`, if there is such a command.
pub fn page(command: &str) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.name == command)
}

/// A command's help as the terminal shows it.
pub fn text(p: &Page) -> String {
    let mut out = format!("usage: {}\n\n{}\n", p.usage, wrap(p.about, 78));
    let config = reads_config(p).then_some(CONFIG_OPTION);
    let options: Vec<(&str, &str)> = p.options.iter().copied().chain(config).collect();
    if !options.is_empty() {
        let width = options.iter().map(|(flag, _)| flag.len()).max().unwrap_or(0);
        out.push_str("\noptions:\n");
        for (flag, what) in options {
            out.push_str(&format!("  {flag:<width$}  {what}\n"));
        }
    }
    out.push_str(&format!("\nexample:\n  {}\n\nexit codes:\n", p.example));
    for (code, when) in exit_codes(p) {
        out.push_str(&format!("  {code:<3}  {when}\n"));
    }
    out
}

/// A page's exit codes, one entry per code in increasing order, with the
/// code for an invalid command line (or configuration) merged in.
pub fn exit_codes(p: &Page) -> Vec<(u8, String)> {
    let mut codes: Vec<(u8, String)> = Vec::new();
    let invalid = if reads_config(p) { CONFIG_EXIT } else { USAGE_EXIT };
    for part in p.exit.split("; ").chain([invalid]) {
        let (code, when) = part.split_once(' ').unwrap_or((part, ""));
        let Ok(code) = code.parse::<u8>() else { continue };
        match codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, text)) => {
                text.push_str("; or ");
                text.push_str(when);
            }
            None => codes.push((code, when.to_string())),
        }
    }
    codes.sort_by_key(|(code, _)| *code);
    codes
}

const CONFIG_OPTION: (&str, &str) =
    ("--config FILE", "the configuration (default: $GEOREG_CONFIG, else /etc/georeg/georeg.toml)");
const USAGE_EXIT: &str = "2 when the command line is invalid (one line names the option)";

/// Whether the command reads the configuration (`version` and `demo` do not).
fn reads_config(p: &Page) -> bool {
    !matches!(p.name, "version" | "demo")
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// `georeg(1)` in roff, from the same texts.
pub fn man_page() -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('-', "\\-");
    let mut out = format!(
        ".TH GEOREG 1 \"\" \"georeg {}\" \"User Commands\"\n.SH NAME\ngeoreg \\- keeps a secondary container \
         registry in step with a primary one\n.SH SYNOPSIS\n.B georeg\n[\\-\\-config FILE] COMMAND [ARGS]\n\
         .SH DESCRIPTION\ngeoreg replicates every image pushed to a primary container registry into the registry \
         of each secondary, byte for byte, through the registry HTTP API. The manual is \
         /usr/share/doc/georeg/README.md and the guides beside it in /usr/share/doc/georeg/docs.\n.SH COMMANDS\n",
        env!("CARGO_PKG_VERSION")
    );
    for p in PAGES {
        out.push_str(&format!(".TP\n.B {}\n{}\n", esc(p.usage), esc(p.about)));
        for (flag, what) in p.options {
            out.push_str(&format!(".RS\n.TP\n.B {}\n{}\n.RE\n", esc(flag), esc(what)));
        }
        let codes: Vec<String> = exit_codes(p).iter().map(|(code, when)| format!("{code} {when}")).collect();
        out.push_str(&format!(".RS\nExample: {}\n.br\nExit codes: {}.\n.RE\n", esc(p.example), esc(&codes.join("; "))));
    }
    out.push_str(&format!(
        ".SH OPTIONS\n.TP\n.B \\-\\-config FILE\nthe configuration file (default: $GEOREG_CONFIG, else \
         /etc/georeg/georeg.toml)\n.SH EXIT STATUS\n{}.\n.SH FILES\n.TP\n/etc/georeg/georeg.toml\nthe \
         configuration\n.TP\n/var/lib/georeg/state.sqlite3\nthe state file (see schema.sql)\n",
        esc(CONFIG_EXIT)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_with_usage_example_and_exit_codes() {
        for name in [
            "backfill",
            "check",
            "deletions",
            "demo",
            "drill",
            "export",
            "failover-check",
            "import",
            "inventory",
            "serve",
            "status",
            "sync",
            "verify",
            "token",
            "version",
        ] {
            let p = page(name).unwrap_or_else(|| panic!("no help for {name}"));
            let t = text(p);
            assert!(t.starts_with(&format!("usage: georeg {name}")) && t.contains("example:"), "{t}");
            assert!(t.contains("exit codes:"), "{t}");
        }
        let man = man_page();
        assert!(man.starts_with(".TH GEOREG 1") && man.contains("georeg sync REPO"), "{man}");
    }
}
