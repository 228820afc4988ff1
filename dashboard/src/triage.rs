//! Where a group of alerts stands, derived from its append-only triage history.
//!
//! Nothing about a group is ever updated in place: every analyst action is a new
//! [`TriageAction`] row, and the status shown is computed from the rows each time. Two rules
//! keep the queue from hiding anything new:
//!
//! - a **resolved** group in which detection found an alert in or after the second of the
//!   resolution is **new** again (the store keeps detection times in whole seconds, so an alert
//!   of that same second counts as newer: the safe side);
//! - a **suppressed** group whose suppression has expired is **new** again.

use varde_store::{Resolution, TriageAction, TriageKind};

/// The status of an alert group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nobody has looked at it (or it came back).
    New,
    /// Someone is on it.
    Acknowledged,
    /// Given to an analyst.
    Assigned(String),
    /// Closed, with how it ended.
    Resolved(Resolution),
    /// Out of the queue until `until_us`; still stored and counted.
    Suppressed {
        /// µs since the epoch.
        until_us: i64,
    },
}

/// The status filters of the queue, by name: every status and `open` (new, acknowledged or
/// assigned: what still needs someone).
pub const FILTERS: [&str; 6] = [
    "open",
    "new",
    "acknowledged",
    "assigned",
    "resolved",
    "suppressed",
];

impl Status {
    /// The name used in filters, forms and the audit trail.
    pub fn key(&self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Acknowledged => "acknowledged",
            Status::Assigned(_) => "assigned",
            Status::Resolved(_) => "resolved",
            Status::Suppressed { .. } => "suppressed",
        }
    }

    /// Whether the status passes the filter `name` (one of [`FILTERS`]).
    pub fn passes(&self, name: &str) -> bool {
        match name {
            "open" => matches!(
                self,
                Status::New | Status::Acknowledged | Status::Assigned(_)
            ),
            other => self.key() == other,
        }
    }

    /// What the audit trail records as the status before an action: the name, with the
    /// assignee or resolution.
    pub fn audit(&self) -> String {
        match self {
            Status::Assigned(who) => format!("assigned:{who}"),
            Status::Resolved(r) => format!("resolved:{}", r.as_str()),
            other => other.key().to_owned(),
        }
    }
}

/// The status of one group from its `history` (the group's actions, oldest first), when
/// detection last added an alert to it, and the time now (all µs since the epoch).
pub fn status(history: &[&TriageAction], last_detect_us: i64, now_us: i64) -> Status {
    let mut status = Status::New;
    let mut resolved_at = 0;
    for a in history {
        status = match a.kind {
            TriageKind::Acknowledge => Status::Acknowledged,
            TriageKind::Assign => Status::Assigned(a.assignee.clone()),
            TriageKind::Resolve => {
                resolved_at = a.at_us;
                match a.resolution {
                    Some(r) => Status::Resolved(r),
                    // A resolution row without its resolution is not one the dashboard
                    // writes; it does not close the group.
                    None => status,
                }
            }
            TriageKind::Suppress => Status::Suppressed {
                until_us: a.until_us,
            },
            TriageKind::Reopen => Status::New,
        };
    }
    match status {
        Status::Resolved(_)
            if last_detect_us >= resolved_at - resolved_at.rem_euclid(1_000_000) =>
        {
            Status::New
        }
        Status::Suppressed { until_us } if until_us <= now_us => Status::New,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn action(at_s: i64, kind: TriageKind) -> TriageAction {
        TriageAction {
            action_id: [at_s as u8; 16],
            at_us: at_s * S + 250_000,
            tenant: "0301".into(),
            dedup_key: [1; 16],
            kind,
            actor: "analyst".into(),
            assignee: if kind == TriageKind::Assign {
                "kari".into()
            } else {
                String::new()
            },
            resolution: (kind == TriageKind::Resolve).then_some(Resolution::FalsePositive),
            reason: String::new(),
            until_us: if kind == TriageKind::Suppress {
                200 * S
            } else {
                0
            },
            before: String::new(),
        }
    }

    #[test]
    fn the_newest_action_decides() {
        let h = [
            action(10, TriageKind::Acknowledge),
            action(11, TriageKind::Assign),
        ];
        let refs: Vec<&TriageAction> = h.iter().collect();
        assert_eq!(status(&[], 5 * S, 100 * S), Status::New);
        assert_eq!(status(&refs[..1], 5 * S, 100 * S), Status::Acknowledged);
        assert_eq!(
            status(&refs, 5 * S, 100 * S),
            Status::Assigned("kari".into())
        );
    }

    #[test]
    fn a_resolved_group_with_a_newer_alert_is_new_again() {
        let h = [action(10, TriageKind::Resolve)];
        let refs: Vec<&TriageAction> = h.iter().collect();
        assert_eq!(
            status(&refs, 9 * S, 100 * S),
            Status::Resolved(Resolution::FalsePositive)
        );
        // Detected in the second of the resolution: it may be newer, so the group is new.
        assert_eq!(status(&refs, 10 * S, 100 * S), Status::New);
        assert_eq!(status(&refs, 30 * S, 100 * S), Status::New);
    }

    #[test]
    fn an_expired_suppression_is_new_again_and_reopen_undoes() {
        let h = [
            action(10, TriageKind::Suppress),
            action(20, TriageKind::Reopen),
        ];
        let refs: Vec<&TriageAction> = h.iter().collect();
        assert_eq!(
            status(&refs[..1], 50 * S, 100 * S),
            Status::Suppressed { until_us: 200 * S }
        );
        assert_eq!(status(&refs[..1], 50 * S, 200 * S), Status::New);
        assert_eq!(status(&refs, 5 * S, 100 * S), Status::New);
    }

    #[test]
    fn filters_name_every_status() {
        assert!(Status::New.passes("open"));
        assert!(Status::Assigned("kari".into()).passes("open"));
        assert!(!Status::Resolved(Resolution::Legitimate).passes("open"));
        assert!(!Status::Suppressed { until_us: 0 }.passes("open"));
        assert!(Status::Suppressed { until_us: 0 }.passes("suppressed"));
        for s in [
            Status::New,
            Status::Acknowledged,
            Status::Assigned(String::new()),
            Status::Resolved(Resolution::NotApplicable),
            Status::Suppressed { until_us: 0 },
        ] {
            assert!(FILTERS.contains(&s.key()));
        }
        assert_eq!(
            Status::Resolved(Resolution::FalsePositive).audit(),
            "resolved:false_positive"
        );
    }
}
