//! Requests and replies as georeg's handlers see them: plain values with
//! no socket behind them, so every route is testable in-process, and the
//! form and query decoding they share.

use std::io::Read;

/// A request as handlers see it.
pub struct Incoming<'a> {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<u64>,
    pub body: &'a mut dyn Read,
    /// The client's address, for log lines.
    pub remote: String,
}

impl Incoming<'_> {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        form_value(&self.query, name)
    }
}

/// A response: status, content type, body and extra headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply { status, content_type: "application/json", body: value.to_string().into_bytes(), headers: vec![] }
    }

    /// `{"error": message}`, the shape of every error georeg answers.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: text.as_bytes().to_vec(), headers: vec![] }
    }

    pub fn html(html: String) -> Reply {
        Reply { status: 200, content_type: "text/html; charset=utf-8", body: html.into_bytes(), headers: vec![] }
    }

    pub fn redirect(to: &str) -> Reply {
        Reply { status: 303, content_type: "text/plain", body: vec![], headers: vec![("Location", to.to_string())] }
    }
}

/// A value from `application/x-www-form-urlencoded` text (or a query string).
pub fn form_value(text: &str, name: &str) -> Option<String> {
    text.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(form_value("name=group%2Fapp&csrf=ab+c", "name").as_deref(), Some("group/app"));
        assert_eq!(form_value("name=group%2Fapp&csrf=ab+c", "csrf").as_deref(), Some("ab c"));
        assert_eq!(form_value("a=%zz&b=%4", "a").as_deref(), Some("%zz"));
        assert_eq!(form_value("a=%zz&b=%4", "b").as_deref(), Some("%4"));
        assert_eq!(form_value("a=1", "b"), None);
    }
}
