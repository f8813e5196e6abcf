//! `GET /api/v1/fingerprints`: the fingerprints of this node's registry,
//! which its followers' reconciliation compares with their own. Without
//! parameters, the pages (1,000 repositories each, with a digest over
//! their entries); with `?first=NAME&last=NAME`, the entries of one page.
//! A JWT signed with the shared key, as for the event log.

use super::app::App;
use super::auth::check_node_token;
use super::http::{Incoming, Reply};
use crate::peer::{FingerprintEntries, Fingerprints, FINGERPRINT_PAGE};

/// Entries one request may ask for (a page, with room to spare).
const MAX_ENTRIES: usize = 10 * FINGERPRINT_PAGE;

pub fn serve(app: &App, req: &mut Incoming) -> Reply {
    if let Err(reply) = check_node_token(app, req) {
        return reply;
    }
    let answer = match (req.query("first"), req.query("last")) {
        (Some(first), Some(last)) => app.reader.read(|s| s.fingerprints_in(&first, &last)).map(|mut entries| {
            entries.truncate(MAX_ENTRIES);
            serde_json::to_value(FingerprintEntries { entries })
        }),
        _ => app
            .reader
            .read(|s| s.fingerprint_pages(FINGERPRINT_PAGE))
            .map(|(pages, complete)| serde_json::to_value(Fingerprints { pages, complete })),
    };
    match answer {
        Ok(Ok(json)) => Reply::json(200, &json),
        Ok(Err(e)) => Reply::error(500, &format!("cannot write the answer: {e}")),
        Err(e) => Reply::error(503, &format!("cannot read the state file: {e}")),
    }
}
