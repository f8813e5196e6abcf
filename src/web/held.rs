//! The secondary's deletions held back (replication.delete_delay_hours),
//! as the dashboard lists them: what each removes and why, with Apply now
//! and Keep buttons, and the confirmation after either.

use std::fmt::Write;

use super::html::{escape, when};

/// The Apply now and Keep buttons of a held deletion.
pub const DELETION_PATH: &str = "/admin/geo/replication/deletions";

/// What a button did, from the redirect after it (`deletion-12-applied`).
pub fn confirmation(done: &str) -> Option<String> {
    let rest = done.strip_prefix("deletion-")?;
    let (id, what) = rest.split_once('-')?;
    let id: i64 = id.parse().ok()?;
    match what {
        "applied" => Some(format!("Deletion {id} is due now: georeg removes it from the secondary within seconds.")),
        "kept" => Some(format!("Deletion {id} is cancelled: the secondary keeps it, and verification expects it.")),
        _ => None,
    }
}

/// Deletions held back (replication.delete_delay_hours) and cancelled,
/// each with what it removes and, while held, Apply now and Keep buttons.
pub fn section(deletions: &[crate::store::Deletion], csrf: &str) -> String {
    use crate::store::DeletionState;
    let mut out = String::from("<section id=\"deletions\"><h2>Deletions held back</h2>");
    if deletions.is_empty() {
        out.push_str("<p class=\"muted\">None: nothing the primary lost waits to be removed here.</p></section>");
        return out;
    }
    out.push_str(
        "<div class=\"scroll\"><table><tr><th>ID</th><th>Repository</th><th>Removes</th><th>Why</th>\
         <th>Applies</th><th></th></tr>",
    );
    for d in deletions {
        let held = d.state != DeletionState::Cancelled;
        let applies = if held { when(Some(&d.applies_at), "") } else { "never (kept)".into() };
        let buttons = if held {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"{path}\"><input type=\"hidden\" name=\"csrf\" \
                 value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><button name=\"action\" \
                 value=\"apply\" type=\"submit\">Apply now</button> <button name=\"action\" value=\"keep\" \
                 type=\"submit\">Keep</button></form>",
                path = DELETION_PATH,
                id = d.id
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            d.id,
            escape(&d.repository),
            escape(&d.what()),
            escape(d.cause.as_str()),
            d.last_error.as_ref().map(|e| format!("<div class=\"msg\">{}</div>", escape(e))).unwrap_or_default(),
            applies,
            buttons
        );
    }
    out.push_str("</table></div></section>");
    out
}
