//! The Geo nodes dashboard, served by georeg itself: plain server-rendered
//! HTML with inline CSS, no scripts, fonts or images from anywhere (hosts
//! are air-gapped), readable without JavaScript and refreshing itself.
//! Colour means something: green synced or verified, red failed, amber
//! queued, blue in progress.

use std::fmt::Write;

use super::bars::{sync_bar, verification_bar};
use super::html::{encode, escape, when};
use crate::format::{human_age, human_bytes};
use crate::health::snapshot::NodeInfo;
use crate::health::Status;
use crate::store::{Key, Page, RepositoryFilter, Total};

pub const NODES_PATH: &str = "/admin/geo/nodes";
pub const REPOSITORIES_PATH: &str = "/admin/geo/replication/container_repositories";
/// Rows per page of the repository list.
pub const PAGE_SIZE: usize = 50;
/// Seconds between automatic refreshes.
const REFRESH: u32 = 10;

const CSS: &str = "
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--green:#1a7f37;--red:#cf222e;--amber:#bf8700;--blue:#0969da}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:14px 28px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header nav a{margin-right:14px;color:var(--blue);text-decoration:none}header .meta{color:var(--muted);margin-left:auto;font-size:13px}
main{max-width:1280px;margin:24px auto;padding:0 28px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin-bottom:18px;overflow-x:auto}
h2{font-size:16px;margin:0 0 12px}h3{font-size:14px;margin:16px 0 6px;color:var(--muted);font-weight:600}
.bar{display:flex;height:14px;border-radius:7px;overflow:hidden;background:#e6eaef;margin:4px 0 6px}.bar span{display:block;height:100%}
.ok{background:var(--green)}.bad{background:var(--red)}.wait{background:var(--amber)}.run{background:var(--blue)}
.legend{font-size:13px;color:var(--muted)}.legend b{color:var(--fg);font-weight:600}
.tree{font-size:13px;margin:4px 0 8px 0;padding-left:20px}.tree li{margin:2px 0}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin:0 4px 0 10px;vertical-align:baseline}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px}
.kv{border:1px solid var(--line);border-radius:6px;padding:10px 12px}.kv div:first-child{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}.kv div:last-child{font-size:20px;font-weight:600}
table{width:100%;border-collapse:collapse;font-size:14px}th,td{text-align:left;padding:7px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase}
td.t{white-space:nowrap;font-size:13px}td.reason{min-width:260px;max-width:420px;word-break:break-word;color:var(--muted);font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;border:1px solid var(--line);color:var(--muted)}
.badge.synced,.badge.succeeded,.badge.healthy{color:var(--green);border-color:var(--green)}.badge.failed,.badge.unhealthy{color:var(--red);border-color:var(--red)}
.badge.pending{color:var(--amber);border-color:var(--amber)}.badge.started{color:var(--blue);border-color:var(--blue)}.badge.offline{color:#fff;background:var(--muted);border-color:var(--muted)}
.msg{color:var(--red)}.done{color:var(--green);font-weight:600}.muted{color:var(--muted)}.scroll{overflow-x:auto}button{font:inherit;font-size:13px;padding:3px 10px;border:1px solid var(--line);border-radius:6px;background:#f6f8fa;cursor:pointer}
form.inline{display:inline}.filters{display:flex;gap:8px;align-items:center;margin-bottom:12px;flex-wrap:wrap}.filters input,.filters select{font:inherit;padding:3px 8px;border:1px solid var(--line);border-radius:6px}
.pages{margin-top:12px;display:flex;gap:12px;align-items:center}.pages a{color:var(--blue)}
.axis{display:flex;gap:6px}.axis .y{display:flex;flex-direction:column;justify-content:space-between;font-size:11px;color:var(--muted);text-align:right;min-width:72px}
.x{display:flex;justify-content:space-between;font-size:11px;color:var(--muted);margin:2px 0 8px 78px}.grid-line{stroke:var(--line);stroke-dasharray:4 4}
.chart{width:100%;height:120px;display:block}.chart-bg{fill:#f6f8fa}.line-lag{stroke:var(--amber);stroke-width:2}.line-rate{stroke:var(--blue);stroke-width:2}
";

/// A whole page. `refresh`: reload every REFRESH seconds (not on pages
/// with a form an operator may be typing into).
fn page(title: &str, node: &NodeInfo, body: &str, refresh: bool) -> String {
    let (meta, note) = if refresh {
        (format!("<meta http-equiv=\"refresh\" content=\"{REFRESH}\">"), format!(" · refreshes every {REFRESH} s"))
    } else {
        (String::new(), String::new())
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         {meta}<title>{title} · georeg</title><style>{CSS}</style></head><body>\
         <header><h1>georeg</h1><nav><a href=\"{NODES_PATH}\">Geo nodes</a><a href=\"{REPOSITORIES_PATH}\">Container repositories</a></nav>\
         <span class=\"meta\">{name} · {role} · georeg {version}{note}</span></header><main>{body}</main></body></html>",
        title = escape(title),
        name = escape(&node.name),
        role = node.role.as_str(),
        version = escape(&node.version),
    )
}

fn kv(label: &str, value: &str) -> String {
    format!("<div class=\"kv\"><div>{}</div><div>{}</div></div>", escape(label), value)
}

fn health(s: &Status) -> String {
    if s.healthy {
        "<span class=\"badge healthy\">Healthy</span>".into()
    } else {
        format!(
            "<span class=\"badge unhealthy\">Unhealthy</span> <span class=\"msg\">{}</span>",
            escape(s.health_message.as_deref().unwrap_or(""))
        )
    }
}

/// `/admin/geo/nodes`.
pub fn nodes(
    s: &Status,
    samples: &[crate::store::Sample],
    deletions: &[crate::store::Deletion],
    csrf: &str,
    done: Option<&str>,
) -> String {
    let mut body = String::new();
    if let Some(done) = done.and_then(super::held::confirmation) {
        let _ = write!(body, "<p class=\"done\">{}</p>", escape(&done));
    }
    if s.node.role == crate::config::Role::Primary {
        let _ = write!(
            body,
            "<section><h2>Primary node: {}</h2>{}<div class=\"grid\" style=\"margin-top:12px\">{}{}{}</div></section>",
            escape(&s.node.name),
            health(s),
            kv("Events stored", &s.events.stored.to_string()),
            kv("Last event ID", &s.events.last_event_id.to_string()),
            kv("Events per minute (10 min)", &format!("{:.1}", s.events.per_minute)),
        );
        body.push_str(&super::tree::section(s, "Secondary nodes"));
        return page("Geo nodes", &s.node, &body, true);
    }
    let r = &s.repositories;
    let _ = write!(
        body,
        "<section><h2>Secondary node: {}</h2>{} &nbsp; Replication <span class=\"badge {}\">{}</span>\
         <div class=\"legend\">Follows {}{} · replicates {}</div></section>",
        escape(&s.node.name),
        health(s),
        if s.node.replication_enabled { "synced" } else { "pending" },
        if s.node.replication_enabled { "Enabled" } else { "Paused" },
        escape(s.node.follows.as_deref().unwrap_or("no primary configured")),
        super::tree::chain(s),
        escape(s.node.selection.as_deref().unwrap_or("every repository")),
    );
    if s.nodes.is_some() {
        body.push_str(&super::tree::section(s, "Nodes following this one"));
    }
    let _ = write!(
        body,
        "<section><h2>Container repositories</h2><h3>Synchronization</h3>{}<h3>Verification</h3>{}{}</section>",
        sync_bar(r),
        verification_bar(r),
        if r.unsupported_tags > 0 {
            format!(
                "<p class=\"msg\">{} tags are not replicated: the secondary registry refuses Docker schema 1 manifests \
                 (set compatibility.schema1.enabled: true in its config.yml). They are listed in the state file's \
                 unsupported_tags table.</p>",
                r.unsupported_tags
            )
        } else {
            String::new()
        }
    );
    if s.last_bundle.is_some() || s.unfinished_bundle.is_some() {
        body.push_str(&bundles(s));
    }
    let e = &s.events;
    let _ = write!(
        body,
        "<section><h2>Events</h2><div class=\"grid\">{}{}{}{}</div>{}</section>",
        kv("Last event ID from primary", &e.last_event_id.to_string()),
        kv("Last event ID processed", &e.cursor_last_event_id.unwrap_or(0).to_string()),
        kv("Lag", &format!("{} s", e.lag_seconds)),
        kv(
            "Cursor updated",
            &match (e.cursor_age_seconds, &e.cursor_updated_at) {
                (Some(age), Some(at)) => format!("<span title=\"{}\">{age} s ago</span>", escape(at)),
                _ => "never".into(),
            }
        ),
        e.cursor_error.as_ref().map(|m| format!("<p class=\"msg\">{}</p>", escape(m))).unwrap_or_default()
            + &e.cursor_gap
                .as_ref()
                .map(|g| format!("<p class=\"msg\">Lost its place in the primary's event log at {}</p>", escape(g)))
                .unwrap_or_default(),
    );
    body.push_str(&super::failover::section(s));
    body.push_str(&super::held::section(deletions, csrf));
    body.push_str("<section><h2>Now</h2>");
    match &s.oldest_unsynced {
        Some(o) => {
            let _ = write!(
                body,
                "<p>Oldest unsynced repository: <b>{}</b> <span class=\"muted\">since {}</span></p>",
                escape(&o.repository),
                when(Some(&o.since), "")
            );
        }
        None => body.push_str("<p class=\"muted\">Every repository is synced.</p>"),
    }
    if s.copying.is_empty() {
        body.push_str("<p class=\"muted\">Nothing is being copied right now.</p>");
    } else {
        body.push_str("<table><tr><th>Copying</th><th>Bytes so far</th><th>Rate</th><th>Running for</th></tr>");
        for c in &s.copying {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}/s</td><td>{:.0} s</td></tr>",
                escape(&c.repository),
                human_bytes(c.bytes),
                human_bytes(c.bytes_per_second as u64),
                c.seconds
            );
        }
        body.push_str("</table>");
    }
    if !s.uploads.is_empty() {
        body.push_str(
            "<table><tr><th>Large blob (in chunks)</th><th>Copied</th><th>Resumed at</th><th>Updated</th></tr>",
        );
        for u in &s.uploads {
            let _ = write!(
                body,
                "<tr><td>{} <span class=\"muted\">{}</span></td><td>{} of {}</td><td>{}</td><td>{}</td></tr>",
                escape(&u.repository),
                escape(u.digest.get(..19).unwrap_or(&u.digest)),
                human_bytes(u.bytes_done),
                human_bytes(u.size),
                u.resumed_from.map(human_bytes).unwrap_or_else(|| "-".into()),
                when(Some(&u.updated_at), "")
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    if !s.recent_failures.is_empty() {
        body.push_str("<section><h2>Recent failures</h2><table><tr><th>Repository</th><th>Reason</th><th>Retries</th><th>Next retry</th></tr>");
        for f in &s.recent_failures {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"reason\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.name),
                escape(f.last_sync_failure.as_deref().unwrap_or("")),
                f.retry_count,
                when(f.retry_at.as_deref(), "")
            );
        }
        body.push_str("</table></section>");
    }
    body.push_str(&super::chart::last_day(samples));
    page("Geo nodes", &s.node, &body, true)
}

/// One page of the repository list, the list's filter and what matches it.
pub struct RepositoryList<'a> {
    pub page: &'a Page,
    pub filter: &'a RepositoryFilter,
    pub total: Total,
}

/// `/admin/geo/replication/container_repositories`. `events_stored`: what
/// a primary says instead of a list.
pub fn repositories(
    node: &NodeInfo,
    events_stored: i64,
    list: &RepositoryList,
    csrf: &str,
    done: Option<&str>,
) -> String {
    let (rows, filter) = (&list.page.rows, list.filter);
    if node.role == crate::config::Role::Primary {
        let body = format!(
            "<section><h2>Container repositories</h2><p class=\"muted\">A primary node replicates nothing itself: \
             it keeps the primary registry's notifications ({} events stored) for its secondaries, and each \
             secondary's own dashboard lists its repositories and their states. Their progress is on \
             <a href=\"{NODES_PATH}\">Geo nodes</a>.</p></section>",
            events_stored
        );
        return page("Container repositories", node, &body, false);
    }
    let state = filter.state.clone().unwrap_or_default();
    let name = filter.name.clone().unwrap_or_default();
    let mut body = String::from("<section><h2>Container repositories</h2>");
    match done {
        Some("resync") => {
            body.push_str("<p class=\"done\">Resync queued: a worker takes it before other work, within seconds.</p>")
        }
        Some("resync-failed") => {
            body.push_str("<p class=\"done\">Every failed repository is queued for a full sync again.</p>")
        }
        _ => {}
    }
    body.push_str("<form class=\"filters\" method=\"get\">");
    body.push_str("<select name=\"state\">");
    for (value, label) in [
        ("", "All states"),
        ("synced", "Synced"),
        ("failed", "Failed"),
        ("pending", "Queued"),
        ("started", "Syncing"),
        ("verification_succeeded", "Verified"),
        ("verification_failed", "Verification failed"),
        ("verification_pending", "Verification pending"),
    ] {
        let selected = if value == state { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    let _ = write!(
        body,
        "</select><input name=\"name\" placeholder=\"Filter by name\" value=\"{}\"><button type=\"submit\">Filter</button></form>\
         <form class=\"inline\" method=\"post\" action=\"{REPOSITORIES_PATH}/resync_failed\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Resync all failed</button></form>",
        escape(&name)
    );
    body.push_str(
        "<p class=\"muted\">Failing repositories first. This page does not refresh by itself: reload it to see \
         new states.</p><table style=\"margin-top:12px\"><tr><th>Repository</th><th>Tags</th><th>Sync</th>\
         <th>Retries</th><th>Next retry</th><th>Last synced</th><th>Verification</th><th>Last verified</th>\
         <th>Last failure</th><th></th></tr>",
    );
    for r in rows {
        let failure = r.last_sync_failure.as_deref().or(r.verification_failure.as_deref()).unwrap_or("");
        let _ = write!(
            body,
            "<tr><td>{name}</td><td>{tags}</td><td><span class=\"badge {s}\">{s_label}</span>{held}</td><td>{retries}</td>\
             <td class=\"t\">{retry_at}</td><td class=\"t\">{synced}</td><td><span class=\"badge {v}\">{v_label}</span></td>\
             <td class=\"t\">{verified}</td>\
             <td class=\"reason\">{failure}</td><td><form class=\"inline\" method=\"post\" action=\"{REPOSITORIES_PATH}/resync\">\
             <input type=\"hidden\" name=\"name\" value=\"{name}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Resync</button></form></td></tr>",
            name = escape(&r.name),
            s = r.sync_state.as_str(),
            // The words of the bars and the filter: one word per state.
            s_label = match r.sync_state.as_str() {
                "pending" => "queued",
                "started" => "syncing",
                other => other,
            },
            v = r.verification_state.as_str(),
            v_label = match r.verification_state.as_str() {
                "succeeded" => "verified",
                other => other,
            },
            synced = when(r.last_synced_at.as_deref(), "never"),
            failure = escape(failure),
            tags = r.tag_count,
            held = if r.held_deletions > 0 {
                format!(
                    " <a class=\"badge pending\" href=\"{NODES_PATH}#deletions\" title=\"the primary no longer has \
                     these; the secondary keeps them until replication.delete_delay_hours runs out\">{} held</a>",
                    crate::format::count(r.held_deletions as u64, "deletion", "deletions")
                )
            } else {
                String::new()
            },
            retries = r.retry_count,
            retry_at = when(r.retry_at.as_deref(), ""),
            verified = when(r.verified_at.as_deref(), "never"),
        );
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"10\" class=\"muted\">No repository matches.</td></tr>");
    }
    body.push_str("</table>");
    body.push_str(&pages(list, &state, &name));
    body.push_str("</section>");
    page("Container repositories", node, &body, false)
}

/// The list's links (first, previous, next, last: each carries the key of
/// the row it continues from, the filter kept) and which rows are shown.
fn pages(list: &RepositoryList, state: &str, name: &str) -> String {
    let p = list.page;
    let link = |rest: &str| escape(&format!("{REPOSITORIES_PATH}?state={}&name={}{rest}", encode(state), encode(name)));
    let key = |word: &str, k: Option<Key>| {
        k.map(|k| format!("&{word}={}&group={}", encode(&k.name), k.group)).unwrap_or_default()
    };
    let filtered = !state.is_empty() || !name.is_empty();
    let total = match list.total {
        Total::Exactly(n) => format!("{n}{}", if filtered { " matching" } else { "" }),
        Total::MoreThan(n) => format!("more than {n} matching"),
    };
    let n = p.rows.len();
    let shown = match (p.is_first, p.more_after, list.total) {
        _ if n == 0 => format!("{total} repositories"),
        (true, _, _) => format!("Rows 1–{n} of {total} repositories"),
        (false, false, Total::Exactly(all)) => {
            format!("Rows {}–{all} of {total} repositories", (all - n as i64 + 1).max(1))
        }
        (false, false, _) => format!("The last {n} rows of {total} repositories"),
        _ => {
            format!("{n} rows, {} to {}, of {total} repositories", escape(&p.rows[0].name), escape(&p.rows[n - 1].name))
        }
    };
    let mut out = String::from("<div class=\"pages\">");
    if !p.is_first {
        let _ = write!(out, "<a href=\"{}\">« First</a>", link(""));
    }
    if p.more_before {
        let _ = write!(out, "<a href=\"{}\">← Previous</a>", link(&key("before", p.first_key())));
    }
    let _ = write!(out, "<span class=\"muted\">{shown} · failing ones first</span>");
    if p.more_after {
        let _ = write!(out, "<a href=\"{}\">Next →</a>", link(&key("after", p.last_key())));
        let _ = write!(out, "<a href=\"{}\">Last »</a>", link("&last=1"));
    }
    out.push_str("</div>");
    out
}

/// The transfer bundles of an air-gapped secondary: the last one imported
/// and its age, and an import that has not finished.
fn bundles(s: &Status) -> String {
    let mut out = String::from("<section><h2>Transfer bundles</h2>");
    match &s.last_bundle {
        Some(b) => {
            let _ = write!(
                out,
                "<div class=\"grid\">{}{}{}{}</div>",
                kv(
                    "Last bundle imported",
                    &format!("<span title=\"{}\">{}</span>", escape(&b.id), escape(b.id.get(..12).unwrap_or(&b.id)))
                ),
                kv(
                    "Exported",
                    &format!(
                        "<span title=\"{}\">{} ago</span>",
                        escape(&b.created_at),
                        escape(&human_age(b.age_seconds))
                    )
                ),
                kv("Imported", &escape(b.imported_at.as_deref().unwrap_or(""))),
                kv("From", &escape(&b.primary_url)),
            );
        }
        None => out.push_str("<p class=\"muted\">No bundle imported completely yet.</p>"),
    }
    if let Some(b) = &s.unfinished_bundle {
        let _ = write!(
            out,
            "<p class=\"msg\">The import of bundle {} (begun {}) has not finished: run <code>georeg import {}</code> again.</p>",
            escape(&b.id),
            escape(&b.started_at),
            escape(&b.file)
        );
    }
    out.push_str("</section>");
    out
}
