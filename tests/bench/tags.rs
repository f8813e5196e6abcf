//! One repository of 1,000,000 tags (10,000 at smoke size): the peak
//! memory and time of `georeg sync` comparing it, with nothing to copy.
//! No registry holds a million tags cheaply, so both sides are a small
//! keep-alive server here that answers the registry API's reads (the tag
//! list, generated as it is sent, and a HEAD per tag) with one digest for
//! every tag: what is measured is georeg's listing and comparison, which
//! is what grows with the tag count.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use crate::report::{self, Report, Table};
use crate::scenarios::Sizes;
use crate::support::hostile_registry::Listing;
use crate::support::{run_measured, Env};

const REPO: &str = "many/tags";
const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

pub fn many_tags(sizes: &Sizes, report: &mut Report) {
    let count: u64 = if sizes.smoke { 10_000 } else { 1_000_000 };
    let env = Env::new("bench-tags");
    let primary = serve(count);
    let secondary = serve(count);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text
        .replace(&format!("\"{}/\"", env.primary.url), &format!("\"{primary}/\""))
        .replace(&format!("\"{}\"", env.secondary.url), &format!("\"{secondary}\""));
    std::fs::write(&env.config, text).unwrap();
    let started = Instant::now();
    let (run, peak_kib) = run_measured(&env, &["sync", REPO]);
    let took = started.elapsed();
    run.assert_ok();
    report.tables.push(Table {
        title: format!("One repository of {count} tags, both sides identical: `georeg sync`"),
        header: vec!["tags".into(), "peak RSS".into(), "took".into(), "HEADs per second".into()],
        rows: vec![vec![
            count.to_string(),
            format!("{:.1} MiB", peak_kib as f64 / 1024.0),
            report::seconds(took),
            format!("{:.0}", 2.0 * count as f64 / took.as_secs_f64()),
        ]],
    });
}

/// Starts the server; its base URL.
fn serve(count: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || answer_all(conn, count));
        }
    });
    url
}

/// Answers requests on one connection until the client closes it.
fn answer_all(conn: TcpStream, count: u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = std::io::BufWriter::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        if path == "/v2/" {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}")?;
        } else if path == format!("/v2/{REPO}/tags/list") {
            let (length, mut body) = Listing::tags(REPO, count);
            write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")?;
            std::io::copy(&mut body.by_ref(), &mut out)?;
        } else if method == "HEAD" && path.starts_with(&format!("/v2/{REPO}/manifests/")) {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                 Docker-Content-Digest: {DIGEST}\r\nContent-Length: 400\r\n\r\n"
            )?;
        } else {
            let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#;
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
        }
        out.flush()?;
    }
}
