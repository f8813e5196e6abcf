//! The command line: `georeg [--config FILE] COMMAND [ARGS]`.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::registry::token::Scope;
use crate::store::Selector;

pub const USAGE: &str = "\
georeg: keeps a secondary container registry in step with a primary one

usage: georeg [--config FILE] COMMAND [ARGS]

commands:
  backfill                 one backfill pass now: scan the primary's catalog and
                           sync every repository not synced yet, with progress
  check                    check the configuration, the key, the registries, the
                           primary georeg and the state file, one line each
  deletions [--json]       deletions held back (replication.delete_delay_hours)
  deletions --apply ID...|--all
                           apply held deletions now
  deletions --cancel ID...|--all
                           keep them on the secondary for good
  demo [--once]            run a throwaway primary and secondary on loopback and
                           show an image replicating (needs docker-registry)
  export --output FILE.tar [--inventory FILE] [REPO...]
                           write a transfer bundle of the primary's repositories
                           (with --inventory: only what that secondary lacks)
  export --inventory FILE --dry-run [REPO...]
                           say what that secondary lacks, writing nothing
  import FILE.tar [--force-primary] [--force-older]
                           apply a transfer bundle to this node's registry
  inventory --output FILE  write what this node's registry holds, signed, for an
                           incremental export
  drill [--sample N]       pull a random sample of tags from the secondary as a
                           client would, hashing every blob
  failover-check [--json]  what would be lost if the primary vanished now; exit 1
                           when anything would
  serve                    run the daemon: notification endpoint, event log
                           (primary), replication workers (secondary)
  status [--json]          this node's replication status, read from the state file
                           (works while the daemon is stopped)
  sync REPO...             copy the repositories from the primary registry now
  verify [--blobs] [--bundle FILE.tar] [REPO...]
                           compare checksums of the repositories (default: all)
                           on both registries, or with --bundle against what the
                           bundle says; --blobs also re-reads every blob
  token --scope SCOPE...   print a token for this node's registry, for debugging
                           (SCOPE like repository:group/app:pull or registry:catalog:*)
  version                  print the version

options:
  --config FILE            configuration file (default: $GEOREG_CONFIG, else
                           /etc/georeg/georeg.toml)
  -h, --help               this text; `georeg help COMMAND` or `georeg COMMAND --help`
                           for one command

Logging goes to stderr; RUST_LOG=debug shows every registry request.
";

/// What `georeg deletions` does with the held deletions.
#[derive(Debug, PartialEq, Eq)]
pub enum DeletionsAction {
    List,
    Apply(Selector),
    Cancel(Selector),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Backfill,
    Check,
    Deletions {
        action: DeletionsAction,
        json: bool,
    },
    Drill {
        sample: Option<usize>,
    },
    FailoverCheck {
        json: bool,
    },
    Demo {
        once: bool,
    },
    Verify {
        blobs: bool,
        /// Compare with this transfer bundle instead of the primary.
        bundle: Option<PathBuf>,
        repositories: Vec<String>,
    },
    Export {
        output: PathBuf,
        inventory: Option<PathBuf>,
        repositories: Vec<String>,
    },
    /// `export --inventory FILE --dry-run`: what the secondary lacks.
    Lacks {
        inventory: PathBuf,
        repositories: Vec<String>,
    },
    Import {
        bundle: PathBuf,
        force_primary: bool,
        force_older: bool,
    },
    Inventory {
        output: PathBuf,
    },
    Serve,
    Status {
        json: bool,
    },
    Sync {
        repositories: Vec<String>,
    },
    Token {
        scopes: Vec<Scope>,
    },
    Version,
    /// The general usage, or one command's help.
    Help {
        topic: Option<String>,
    },
    /// `georeg help --man`: the man page, for the package.
    Man,
}

#[derive(Debug)]
pub struct Cli {
    pub config: Option<PathBuf>,
    pub command: Command,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli> {
    let mut config = None;
    let mut help = false;
    let mut words = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let file = args.next().ok_or_else(|| Error::Usage("--config needs a file".into()))?;
                config = Some(PathBuf::from(file));
            }
            a if a.starts_with("--config=") => config = Some(PathBuf::from(&a["--config=".len()..])),
            "-h" | "--help" => help = true,
            "-V" | "--version" => return Ok(Cli { config, command: Command::Version }),
            _ => words.push(arg),
        }
    }
    if help {
        // `georeg sync --help`: the help of the command named, if any.
        let topic = words.into_iter().next();
        return help_for(topic).map(|command| Cli { config, command });
    }
    if let Some(option) = words.first().filter(|w| w.starts_with('-')) {
        return Err(Error::Usage(format!(
            "unknown option {option:?} (georeg's own options: --config FILE, --help, --version)"
        )));
    }
    let mut words = words.into_iter();
    let command = match words.next().as_deref() {
        None => Command::Help { topic: None },
        Some("help") => match words.next().as_deref() {
            Some("--man") => Command::Man,
            topic => help_for(topic.map(String::from))?,
        },
        Some("version") => no_arguments("version", words, Command::Version)?,
        Some("status") => Command::Status { json: one_flag("status", "--json", words)? },
        Some("backfill") => no_arguments("backfill", words, Command::Backfill)?,
        Some("check") => no_arguments("check", words, Command::Check)?,
        Some("verify") => {
            let (mut blobs, mut bundle) = (false, None);
            let mut repositories = Vec::new();
            while let Some(w) = words.next() {
                if let Some(file) = value("verify", "--bundle", &w, &mut words)? {
                    bundle = Some(file);
                    continue;
                }
                match w.as_str() {
                    "--blobs" => blobs = true,
                    flag if flag.starts_with('-') => {
                        return Err(Error::Usage(format!("verify: unknown option {flag}")))
                    }
                    _ => repositories.push(w),
                }
            }
            Command::Verify { blobs, bundle, repositories }
        }
        Some("export") => {
            let (mut output, mut inventory, mut repositories, mut dry_run) = (None, None, Vec::new(), false);
            while let Some(w) = words.next() {
                if let Some(file) = value("export", "--output", &w, &mut words)? {
                    output = Some(file);
                } else if let Some(file) = value("export", "--inventory", &w, &mut words)? {
                    inventory = Some(file);
                } else if w == "--dry-run" {
                    dry_run = true;
                } else if w.starts_with('-') {
                    return Err(Error::Usage(format!("export: unknown option {w}")));
                } else {
                    repositories.push(w);
                }
            }
            if dry_run {
                let inventory = inventory.ok_or_else(|| {
                    Error::Usage("export --dry-run needs --inventory FILE: it says what that secondary lacks".into())
                })?;
                if output.is_some() {
                    return Err(Error::Usage("export --dry-run writes no bundle: leave out --output".into()));
                }
                Command::Lacks { inventory, repositories }
            } else {
                let output = output.ok_or_else(|| Error::Usage("export needs --output FILE.tar".into()))?;
                Command::Export { output, inventory, repositories }
            }
        }
        Some("import") => {
            let (mut bundle, mut force_primary, mut force_older) = (None, false, false);
            for w in words.by_ref() {
                match w.as_str() {
                    "--force-primary" => force_primary = true,
                    "--force-older" => force_older = true,
                    flag if flag.starts_with('-') => {
                        return Err(Error::Usage(format!("import: unknown option {flag}")))
                    }
                    _ if bundle.is_some() => {
                        return Err(Error::Usage(format!("import: one bundle at a time ({w:?} is a second)")))
                    }
                    _ => bundle = Some(PathBuf::from(w)),
                }
            }
            let bundle = bundle.ok_or_else(|| Error::Usage("import needs the bundle FILE.tar".into()))?;
            Command::Import { bundle, force_primary, force_older }
        }
        Some("inventory") => {
            let mut output = None;
            while let Some(w) = words.next() {
                match value("inventory", "--output", &w, &mut words)? {
                    Some(file) => output = Some(file),
                    None => return Err(Error::Usage(format!("inventory: unexpected argument {w:?}"))),
                }
            }
            let output = output.ok_or_else(|| Error::Usage("inventory needs --output FILE".into()))?;
            Command::Inventory { output }
        }
        Some("demo") => Command::Demo { once: one_flag("demo", "--once", words)? },
        Some("deletions") => deletions(words)?,
        Some("failover-check") => Command::FailoverCheck { json: one_flag("failover-check", "--json", words)? },
        Some("drill") => {
            let mut sample = None;
            while let Some(w) = words.next() {
                let value = match w.as_str() {
                    "--sample" => words.next().ok_or_else(|| Error::Usage("--sample needs a number".into()))?,
                    s if s.starts_with("--sample=") => s["--sample=".len()..].to_string(),
                    other => return Err(Error::Usage(format!("drill: unexpected argument {other:?}"))),
                };
                match value.parse::<usize>() {
                    Ok(n @ 1..=10_000) => sample = Some(n),
                    _ => {
                        return Err(Error::Usage(format!("drill: --sample {value:?} is not a number from 1 to 10000")))
                    }
                }
            }
            Command::Drill { sample }
        }
        Some("serve") => no_arguments("serve", words, Command::Serve)?,
        Some("sync") => {
            let repositories: Vec<String> = words.collect();
            if repositories.is_empty() {
                return Err(Error::Usage("sync needs at least one repository name".into()));
            }
            if let Some(flag) = repositories.iter().find(|r| r.starts_with('-')) {
                return Err(Error::Usage(format!("sync: unknown option {flag}")));
            }
            Command::Sync { repositories }
        }
        Some("token") => {
            let mut scopes: Vec<Scope> = Vec::new();
            while let Some(w) = words.next() {
                let value = match w.as_str() {
                    "--scope" => words.next().ok_or_else(|| Error::Usage("--scope needs a value".into()))?,
                    s if s.starts_with("--scope=") => s["--scope=".len()..].to_string(),
                    other => return Err(Error::Usage(format!("token: unexpected argument {other:?}"))),
                };
                let scope = Scope::parse(&value)
                    .ok_or_else(|| Error::Usage(format!("{value:?} is not a scope like repository:NAME:pull")))?;
                scopes.push(scope);
            }
            if scopes.is_empty() {
                return Err(Error::Usage(
                    "token needs at least one --scope, e.g. --scope repository:group/app:pull".into(),
                ));
            }
            Command::Token { scopes }
        }
        Some(other) => return Err(Error::Usage(format!("unknown command {other:?}"))),
    };
    Ok(Cli { config, command })
}

/// `deletions [--json]`, `deletions --apply ID...|--all`, `deletions --cancel ID...|--all`.
fn deletions(words: impl Iterator<Item = String>) -> Result<Command> {
    let (mut action, mut all, mut json, mut ids) = (None, false, false, Vec::new());
    for w in words {
        match w.as_str() {
            "--json" => json = true,
            "--all" => all = true,
            "--apply" | "--cancel" if action.is_none() => action = Some(w),
            "--apply" | "--cancel" => {
                return Err(Error::Usage("deletions: --apply and --cancel cannot go together".into()))
            }
            id => match id.parse::<i64>() {
                Ok(id) if id > 0 => ids.push(id),
                _ => {
                    return Err(Error::Usage(format!(
                        "deletions: {id:?} is not a deletion ID (the ID column of georeg deletions)"
                    )))
                }
            },
        }
    }
    let which = match (all, ids.is_empty()) {
        (true, true) => Some(Selector::All),
        (false, false) => Some(Selector::Ids(ids)),
        (true, false) => return Err(Error::Usage("deletions: give IDs or --all, not both".into())),
        (false, true) => None,
    };
    let action = match (action.as_deref(), which) {
        (None, None) => DeletionsAction::List,
        (None, Some(_)) => {
            return Err(Error::Usage("deletions: IDs and --all go with --apply or --cancel".into()));
        }
        (Some(flag), None) => return Err(Error::Usage(format!("deletions: {flag} needs IDs or --all"))),
        (Some("--apply"), Some(which)) => DeletionsAction::Apply(which),
        (Some(_), Some(which)) => DeletionsAction::Cancel(which),
    };
    if json && action != DeletionsAction::List {
        return Err(Error::Usage("deletions: --json goes with the listing only".into()));
    }
    Ok(Command::Deletions { action, json })
}

/// Help on `topic` (a command), or the general usage; an unknown topic is
/// a usage error.
fn help_for(topic: Option<String>) -> Result<Command> {
    match topic {
        None => Ok(Command::Help { topic: None }),
        Some(t) if crate::help::page(&t).is_some() => Ok(Command::Help { topic: Some(t) }),
        Some(t) => Err(Error::Usage(format!("there is no command {t:?}"))),
    }
}

/// The file of `--flag FILE` or `--flag=FILE` when `word` is that option.
fn value(name: &str, flag: &str, word: &str, rest: &mut impl Iterator<Item = String>) -> Result<Option<PathBuf>> {
    if word == flag {
        let file = rest.next().ok_or_else(|| Error::Usage(format!("{name}: {flag} needs a file")))?;
        return Ok(Some(PathBuf::from(file)));
    }
    Ok(word.strip_prefix(flag).and_then(|v| v.strip_prefix('=')).map(PathBuf::from))
}

/// Whether `flag`, the one option `name` takes, was given.
fn one_flag(name: &str, flag: &str, mut rest: impl Iterator<Item = String>) -> Result<bool> {
    let given = match rest.next() {
        None => false,
        Some(f) if f == flag => true,
        Some(other) => return Err(Error::Usage(format!("{name}: unexpected argument {other:?}"))),
    };
    no_arguments(name, rest, given)
}

/// `command` when no (further) argument follows.
fn no_arguments<T>(name: &str, mut rest: impl Iterator<Item = String>, command: T) -> Result<T> {
    match rest.next() {
        Some(extra) => Err(Error::Usage(format!("{name}: unexpected argument {extra:?}"))),
        None => Ok(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_commands_and_config() {
        let cli = p(&["--config", "/x.toml", "sync", "a", "b/c"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/x.toml")));
        assert_eq!(cli.command, Command::Sync { repositories: vec!["a".into(), "b/c".into()] });
        let cli = p(&["token", "--scope", "repository:a:pull", "--scope=registry:catalog:*"]).unwrap();
        assert_eq!(cli.command, Command::Token { scopes: vec![Scope::repository("a", &["pull"]), Scope::catalog()] });
        assert_eq!(p(&[]).unwrap().command, Command::Help { topic: None });
        assert_eq!(p(&["help", "sync"]).unwrap().command, Command::Help { topic: Some("sync".into()) });
        assert_eq!(p(&["sync", "--help"]).unwrap().command, Command::Help { topic: Some("sync".into()) });
        assert_eq!(p(&["-h"]).unwrap().command, Command::Help { topic: None });
        assert_eq!(p(&["help", "--man"]).unwrap().command, Command::Man);
        assert_eq!(
            p(&["verify", "--blobs", "a"]).unwrap().command,
            Command::Verify { blobs: true, bundle: None, repositories: vec!["a".into()] }
        );
        assert_eq!(
            p(&["verify", "--bundle=b.tar", "a"]).unwrap().command,
            Command::Verify { blobs: false, bundle: Some("b.tar".into()), repositories: vec!["a".into()] }
        );
        assert_eq!(p(&["backfill"]).unwrap().command, Command::Backfill);
        assert_eq!(p(&["check"]).unwrap().command, Command::Check);
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
        let e = p(&["--frob", "status"]).unwrap_err().to_string();
        assert!(e.contains("unknown option \"--frob\""), "{e}");
        let e = p(&["sync", "--frob"]).unwrap_err().to_string();
        assert!(e.ends_with("(see georeg help sync)"), "{e}");
        assert!(p(&["version", "extra"]).is_err());
        let d = |action, json| Command::Deletions { action, json };
        assert_eq!(p(&["deletions"]).unwrap().command, d(DeletionsAction::List, false));
        assert_eq!(p(&["deletions", "--json"]).unwrap().command, d(DeletionsAction::List, true));
        assert_eq!(
            p(&["deletions", "--apply", "3", "5"]).unwrap().command,
            d(DeletionsAction::Apply(Selector::Ids(vec![3, 5])), false)
        );
        assert_eq!(
            p(&["deletions", "--cancel", "--all"]).unwrap().command,
            d(DeletionsAction::Cancel(Selector::All), false)
        );
        assert_eq!(p(&["failover-check", "--json"]).unwrap().command, Command::FailoverCheck { json: true });
        assert_eq!(p(&["drill"]).unwrap().command, Command::Drill { sample: None });
        assert_eq!(p(&["drill", "--sample", "3"]).unwrap().command, Command::Drill { sample: Some(3) });
        assert_eq!(p(&["drill", "--sample=7"]).unwrap().command, Command::Drill { sample: Some(7) });
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(p(&["sync"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["token", "--scope", "nonsense"]).is_err());
        assert!(p(&["--config"]).is_err());
        assert!(p(&["help", "frob"]).is_err());
        assert!(p(&["frob", "--help"]).is_err());
        assert!(p(&["token"]).is_err(), "a token needs a scope");
        assert!(p(&["sync", "a", "--json"]).is_err());
        assert!(p(&["backfill", "--json"]).is_err());
        assert!(p(&["status", "--frob"]).is_err());
        assert!(p(&["export", "a"]).is_err(), "export needs --output");
        assert_eq!(
            p(&["export", "--inventory", "i.json", "--dry-run", "g/a"]).unwrap().command,
            Command::Lacks { inventory: "i.json".into(), repositories: vec!["g/a".into()] }
        );
        assert!(p(&["export", "--dry-run"]).is_err(), "a dry run compares with an inventory");
        assert!(p(&["export", "--dry-run", "--inventory", "i", "--output", "b.tar"]).is_err());
        assert!(p(&["export", "--output"]).is_err());
        assert!(p(&["import"]).is_err());
        assert!(p(&["import", "a.tar", "b.tar"]).is_err());
        assert!(p(&["import", "a.tar", "--force"]).is_err(), "say which refusal to override");
        assert!(p(&["inventory"]).is_err());
        assert!(p(&["inventory", "--output", "f", "extra"]).is_err());
        assert!(p(&["verify", "--bundle"]).is_err());
    }

    #[test]
    fn parses_the_bundle_commands() {
        assert_eq!(
            p(&["export", "--output", "b.tar", "--inventory=i.json", "g/a", "g/b"]).unwrap().command,
            Command::Export {
                output: "b.tar".into(),
                inventory: Some("i.json".into()),
                repositories: vec!["g/a".into(), "g/b".into()]
            }
        );
        assert_eq!(
            p(&["export", "--output=b.tar"]).unwrap().command,
            Command::Export { output: "b.tar".into(), inventory: None, repositories: vec![] }
        );
        assert_eq!(
            p(&["import", "--force-older", "b.tar"]).unwrap().command,
            Command::Import { bundle: "b.tar".into(), force_primary: false, force_older: true }
        );
        assert_eq!(
            p(&["inventory", "--output", "i.json"]).unwrap().command,
            Command::Inventory { output: "i.json".into() }
        );
        assert_eq!(p(&["import", "--help"]).unwrap().command, Command::Help { topic: Some("import".into()) });
        for bad in [
            &["deletions", "--apply"][..],
            &["deletions", "--apply", "--cancel", "1"],
            &["deletions", "3"],
            &["deletions", "--cancel", "x"],
            &["deletions", "--apply", "--all", "3"],
            &["deletions", "--apply", "3", "--json"],
            &["drill", "--sample", "0"],
            &["drill", "--sample"],
            &["failover-check", "now"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
