//! The Prometheus text exposition format: a metric's help, type and
//! samples, and label values escaped.

use std::fmt::Write;

pub(super) fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

pub(super) fn one(value: impl Into<f64>) -> Vec<(String, f64)> {
    vec![(String::new(), value.into())]
}

pub(super) fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
