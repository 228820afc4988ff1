//! Incidents: the CERT's record of what happened, kept as an append-only list of changes.
//!
//! An incident is never updated in place. Opening it, every status, severity or TLP change,
//! every linked group of alerts, every comment is one [`IncidentChange`] row; the incident as
//! shown is [`Incident::fold`] of its rows, oldest first. So the history *is* the record, as an
//! NSM or NIS2 report needs it (who knew what when), and nothing can be changed silently.
//!
//! **Municipalities see only what concerns them.** An incident concerns a municipality when one
//! of its alert groups is linked, or when the latest list of further affected municipalities
//! names it. For such a municipality the store returns the incident's opening, title, status,
//! severity, TLP and awareness rows and the links of *its own* groups; comments, other
//! municipalities' links and the list of further municipalities stay with the CERT. This
//! filter is in the store query ([`crate::EventStore::incident_changes`]), not in a page.

use std::collections::BTreeSet;

/// Where an incident stands (the CERT's workflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IncidentStatus {
    /// Opened, nobody working on it yet.
    New,
    /// Being assessed.
    Triage,
    /// Limiting the damage.
    Containment,
    /// Removing the cause.
    Eradication,
    /// Restoring service.
    Recovery,
    /// Lessons learned, report.
    PostIncident,
    /// Done.
    Closed,
}

/// How bad an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// Traffic Light Protocol 2.0 label: who the incident's information may be shared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tlp {
    /// TLP:CLEAR, no limit.
    Clear,
    /// TLP:GREEN, the community.
    Green,
    /// TLP:AMBER, the recipient's organisation and its clients.
    Amber,
    /// TLP:AMBER+STRICT, the recipient's organisation only.
    AmberStrict,
    /// TLP:RED, the named recipients only.
    Red,
}

macro_rules! names {
    ($ty:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s),+ }
            }

            /// The value of a stored name.
            pub fn parse(s: &str) -> Option<$ty> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

names!(IncidentStatus {
    New => "new",
    Triage => "triage",
    Containment => "containment",
    Eradication => "eradication",
    Recovery => "recovery",
    PostIncident => "post_incident",
    Closed => "closed",
});

names!(Severity {
    Low => "low",
    Medium => "medium",
    High => "high",
    Critical => "critical",
});

names!(Tlp {
    Clear => "CLEAR",
    Green => "GREEN",
    Amber => "AMBER",
    AmberStrict => "AMBER+STRICT",
    Red => "RED",
});

/// What one change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Opened the incident with its title.
    Opened(String),
    /// A new title.
    Title(String),
    /// A new status.
    Status(IncidentStatus),
    /// A new severity.
    Severity(Severity),
    /// A new TLP label.
    Tlp(Tlp),
    /// When the CERT became aware of it, µs since the epoch (reporting deadlines run from here).
    AwareAt(i64),
    /// A group of alerts (see [`crate::Alert::dedup_key`]) linked, with what the group is.
    LinkGroup {
        /// The group.
        dedup_key: [u8; 16],
        /// Kommunenummer of the group's alerts.
        tenant: String,
        /// Shared component of the group, empty when none.
        component: String,
        /// The group's rule, as shown.
        rule_title: String,
    },
    /// Further affected municipalities beyond the linked groups' (the whole list, replacing
    /// the previous one).
    Municipalities(Vec<String>),
    /// Further affected shared components beyond the linked groups' (the whole list).
    Components(Vec<String>),
    /// A comment.
    Comment(String),
    /// The classification, ENISA's RSIT `category/type` (`varde_report::taxonomy`); empty:
    /// none.
    Category(String),
    /// The root cause, one of the NIS Cooperation Group's categories; empty: none.
    RootCause(String),
    /// How many users are affected, where known (`None`: not known).
    UsersAffected(Option<u64>),
}

impl Change {
    /// The stored name of the change's kind.
    pub fn field(&self) -> &'static str {
        match self {
            Change::Opened(_) => "opened",
            Change::Title(_) => "title",
            Change::Status(_) => "status",
            Change::Severity(_) => "severity",
            Change::Tlp(_) => "tlp",
            Change::AwareAt(_) => "aware_at",
            Change::LinkGroup { .. } => "link_group",
            Change::Municipalities(_) => "municipalities",
            Change::Components(_) => "components",
            Change::Comment(_) => "comment",
            Change::Category(_) => "category",
            Change::RootCause(_) => "root_cause",
            Change::UsersAffected(_) => "users_affected",
        }
    }
}

/// One row of an incident's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentChange {
    /// Random id of the change: a retried write collapses into one row.
    pub change_id: [u8; 16],
    /// The incident (random id, made when it is opened).
    pub incident_id: [u8; 16],
    /// When, µs since the epoch.
    pub at_us: i64,
    /// The account that made the change.
    pub actor: String,
    /// What changed.
    pub change: Change,
}

/// A linked group of alerts, as the incident shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedGroup {
    /// The group.
    pub dedup_key: [u8; 16],
    /// Its municipality.
    pub tenant: String,
    /// Its shared component, empty when none.
    pub component: String,
    /// Its rule's title.
    pub rule_title: String,
}

/// An incident as its history makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Its id.
    pub incident_id: [u8; 16],
    /// Title.
    pub title: String,
    /// Status.
    pub status: IncidentStatus,
    /// Severity.
    pub severity: Severity,
    /// TLP label.
    pub tlp: Tlp,
    /// When the CERT became aware, µs since the epoch.
    pub aware_at_us: i64,
    /// When it was opened, and by whom.
    pub opened_at_us: i64,
    /// Who opened it.
    pub opened_by: String,
    /// When it last changed.
    pub changed_at_us: i64,
    /// Linked groups, in the order linked (each once).
    pub groups: Vec<LinkedGroup>,
    /// Further municipalities named by the CERT.
    pub extra_municipalities: Vec<String>,
    /// Further components named by the CERT.
    pub extra_components: Vec<String>,
    /// Comments: (when, who, text), oldest first.
    pub comments: Vec<(i64, String, String)>,
    /// The RSIT classification `category/type`, empty when none.
    pub category: String,
    /// The root cause (NIS Cooperation Group), empty when none.
    pub root_cause: String,
    /// Users affected, where known.
    pub users_affected: Option<u64>,
}

impl Incident {
    /// The incidents of `changes` (any order, any mix of incidents), each folded from its rows
    /// oldest first; an incident whose opening row is missing (not visible) is left out. Most
    /// recently changed first.
    pub fn fold(changes: &[IncidentChange]) -> Vec<Incident> {
        let mut sorted: Vec<&IncidentChange> = changes.iter().collect();
        sorted.sort_by_key(|c| (c.incident_id, c.at_us, c.change_id));
        let mut out: Vec<Incident> = Vec::new();
        for c in sorted {
            if let Change::Opened(title) = &c.change {
                if out.last().is_none_or(|i| i.incident_id != c.incident_id) {
                    out.push(Incident {
                        incident_id: c.incident_id,
                        title: title.clone(),
                        status: IncidentStatus::New,
                        severity: Severity::Medium,
                        tlp: Tlp::Amber,
                        aware_at_us: c.at_us,
                        opened_at_us: c.at_us,
                        opened_by: c.actor.clone(),
                        changed_at_us: c.at_us,
                        groups: Vec::new(),
                        extra_municipalities: Vec::new(),
                        extra_components: Vec::new(),
                        comments: Vec::new(),
                        category: String::new(),
                        root_cause: String::new(),
                        users_affected: None,
                    });
                }
                continue;
            }
            let Some(i) = out.last_mut().filter(|i| i.incident_id == c.incident_id) else {
                continue;
            };
            i.changed_at_us = i.changed_at_us.max(c.at_us);
            match &c.change {
                Change::Opened(_) => {}
                Change::Title(t) => i.title = t.clone(),
                Change::Status(s) => i.status = *s,
                Change::Severity(s) => i.severity = *s,
                Change::Tlp(t) => i.tlp = *t,
                Change::AwareAt(t) => i.aware_at_us = *t,
                Change::LinkGroup {
                    dedup_key,
                    tenant,
                    component,
                    rule_title,
                } => {
                    if !i
                        .groups
                        .iter()
                        .any(|g| g.dedup_key == *dedup_key && g.tenant == *tenant)
                    {
                        i.groups.push(LinkedGroup {
                            dedup_key: *dedup_key,
                            tenant: tenant.clone(),
                            component: component.clone(),
                            rule_title: rule_title.clone(),
                        });
                    }
                }
                Change::Municipalities(m) => i.extra_municipalities = m.clone(),
                Change::Components(m) => i.extra_components = m.clone(),
                Change::Comment(text) => i.comments.push((c.at_us, c.actor.clone(), text.clone())),
                Change::Category(k) => i.category = k.clone(),
                Change::RootCause(k) => i.root_cause = k.clone(),
                Change::UsersAffected(n) => i.users_affected = *n,
            }
        }
        out.sort_by(|a, b| {
            b.changed_at_us
                .cmp(&a.changed_at_us)
                .then(a.incident_id.cmp(&b.incident_id))
        });
        out
    }

    /// Affected municipalities: those of the linked groups and those the CERT added, sorted.
    pub fn municipalities(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.groups.iter().map(|g| g.tenant.clone()).collect();
        all.extend(self.extra_municipalities.iter().cloned());
        all.into_iter().collect()
    }

    /// Affected shared components: those of the linked groups and those the CERT added, sorted.
    pub fn components(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|g| !g.component.is_empty())
            .map(|g| g.component.clone())
            .collect();
        all.extend(self.extra_components.iter().cloned());
        all.into_iter().collect()
    }
}

/// The kinds of change a municipality sees of an incident that concerns it (besides the links
/// of its own groups).
pub const SHARED_FIELDS: [&str; 9] = [
    "opened",
    "title",
    "status",
    "severity",
    "tlp",
    "aware_at",
    "category",
    "root_cause",
    "users_affected",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn change(incident: u8, n: u8, at: i64, change: Change) -> IncidentChange {
        IncidentChange {
            change_id: [n; 16],
            incident_id: [incident; 16],
            at_us: at,
            actor: "kari".into(),
            change,
        }
    }

    fn link(key: u8, tenant: &str, component: &str) -> Change {
        Change::LinkGroup {
            dedup_key: [key; 16],
            tenant: tenant.into(),
            component: component.into(),
            rule_title: "rule".into(),
        }
    }

    #[test]
    fn an_incident_is_its_history_folded() {
        let rows = vec![
            change(1, 5, 50, Change::Status(IncidentStatus::Containment)),
            change(1, 1, 10, Change::Opened("Credential stuffing".into())),
            change(1, 2, 20, link(7, "0301", "idporten")),
            change(1, 3, 30, link(8, "4601", "")),
            change(1, 4, 40, link(7, "0301", "idporten")),
            change(
                1,
                6,
                60,
                Change::Municipalities(vec!["5001".into(), "0301".into()]),
            ),
            change(1, 7, 70, Change::Comment("blocked at the edge".into())),
            change(1, 8, 80, Change::Tlp(Tlp::Red)),
            // Another incident, and one whose opening this reader cannot see.
            change(2, 9, 15, Change::Opened("Phishing".into())),
            change(3, 10, 90, Change::Title("hidden".into())),
        ];
        let incidents = Incident::fold(&rows);
        assert_eq!(incidents.len(), 2);
        let i = &incidents[0];
        assert_eq!(i.incident_id, [1; 16]);
        assert_eq!(i.title, "Credential stuffing");
        assert_eq!(i.status, IncidentStatus::Containment);
        assert_eq!((i.severity, i.tlp), (Severity::Medium, Tlp::Red));
        assert_eq!(
            (i.opened_at_us, i.aware_at_us, i.changed_at_us),
            (10, 10, 80)
        );
        assert_eq!(i.groups.len(), 2, "a group linked twice is linked once");
        assert_eq!(i.municipalities(), ["0301", "4601", "5001"]);
        assert_eq!(i.components(), ["idporten"]);
        assert_eq!(
            i.comments,
            [(70, "kari".into(), "blocked at the edge".into())]
        );
        assert_eq!(incidents[1].title, "Phishing");
    }

    #[test]
    fn names_round_trip() {
        for s in IncidentStatus::ALL {
            assert_eq!(IncidentStatus::parse(s.as_str()), Some(*s));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(*s));
        }
        for t in Tlp::ALL {
            assert_eq!(Tlp::parse(t.as_str()), Some(*t));
        }
        assert_eq!(Tlp::parse("AMBER+STRICT"), Some(Tlp::AmberStrict));
        assert_eq!(Tlp::parse("amber"), None);
    }
}
