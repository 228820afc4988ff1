//! The record of what the CERT reported, and of every export: both append-only.
//!
//! A [`SubmittedReport`] is one report of an incident as it was submitted to the authority: its
//! stage and version, who submitted it and when, the texts written for it, and the STIX bundle
//! made from the incident at that moment. It is never changed; a new report of the same stage
//! is a new version. An [`ExportRecord`] is one export of an incident (a download or a
//! `varde report` run): who took which format of which incident, for the audit log.

use std::future::Future;

use crate::Result;
use crate::incident::Tlp;

/// One submitted report (immutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedReport {
    /// Random id.
    pub report_id: [u8; 16],
    /// The incident.
    pub incident_id: [u8; 16],
    /// Its stage (`early-warning`, `notification`, `intermediate`, `final`, `progress`).
    pub stage: String,
    /// 1 for the first report of this stage, then 2, …
    pub version: u32,
    /// When it was submitted, µs since the epoch.
    pub at_us: i64,
    /// Who submitted it.
    pub actor: String,
    /// The label it was submitted under.
    pub tlp: Tlp,
    /// What happened, the assessment so far.
    pub summary: String,
    /// Severity and impact: users or services affected, where known.
    pub impact: String,
    /// Mitigation applied and ongoing.
    pub mitigation: String,
    /// Cross-border or cross-sector impact.
    pub cross_border: String,
    /// The STIX 2.1 bundle made from the incident when it was submitted.
    pub stix: String,
}

/// One export of an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRecord {
    /// Random id.
    pub export_id: [u8; 16],
    /// When, µs since the epoch.
    pub at_us: i64,
    /// Who.
    pub actor: String,
    /// The municipality whose part was exported; empty for the CERT's whole incident.
    pub tenant: String,
    /// The incident.
    pub incident_id: [u8; 16],
    /// The stage.
    pub stage: String,
    /// The format (`stix`, `misp`, `csv`, `html`, `pdf`, or `submitted` for a stored report).
    pub format: String,
}

/// The report log of a store.
pub trait ReportLog {
    /// Appends submitted reports.
    fn write_reports(
        &self,
        reports: &[SubmittedReport],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The submitted reports (of `incident`, when given), oldest first.
    fn reports(
        &self,
        incident: Option<[u8; 16]>,
    ) -> impl Future<Output = Result<Vec<SubmittedReport>>> + Send;

    /// Appends export records.
    fn write_exports(&self, exports: &[ExportRecord]) -> impl Future<Output = Result<u64>> + Send;

    /// The newest export records, newest first, at most `limit`.
    fn exports(&self, limit: u64) -> impl Future<Output = Result<Vec<ExportRecord>>> + Send;
}
