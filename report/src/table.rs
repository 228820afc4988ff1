//! A report as CSV (RFC 4180, UTF-8): one file with a `section` column, the incident's
//! indicators first, then its alerts. Cells that a spreadsheet would run as a formula (starting
//! with `=`, `+`, `-`, `@`, a tab or a carriage return) are prefixed with `'`, as OWASP advises,
//! so a hostile rule title or host name cannot run in the analyst's spreadsheet.

use crate::model::{IncidentReport, stix_time};

/// A cell made safe for spreadsheets.
pub fn cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    }
}

/// The CSV of `r`.
pub fn csv(r: &IncidentReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "section",
        "time_first",
        "time_last",
        "kind",
        "value",
        "count",
        "municipality",
        "rule",
        "level",
        "host",
        "component",
        "id",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for i in &r.indicators {
        rows.push(vec![
            "indicator".into(),
            stix_time(i.first_us),
            stix_time(i.last_us),
            i.kind.as_str().into(),
            i.value.clone(),
            i.count.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    for a in &r.alerts {
        rows.push(vec![
            "alert".into(),
            stix_time(a.event_time_us),
            stix_time(a.event_time_us),
            a.source_kind.clone(),
            String::new(),
            "1".into(),
            a.tenant.clone(),
            a.rule_title.clone(),
            a.rule_level.clone(),
            a.host.clone(),
            a.component.clone(),
            a.alert_id.to_string(),
        ]);
    }
    // Writing into memory cannot fail; a failure would leave the rows out, never panic.
    let _ = w.write_record(header);
    for row in rows {
        let _ = w.write_record(row.iter().map(|c| cell(c)));
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("Oslo"), "Oslo");
        assert_eq!(cell(""), "");
    }
}
