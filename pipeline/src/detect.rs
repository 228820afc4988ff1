//! Enrichment and detection, carried by DataFusion.
//!
//! Every accepted envelope becomes a one-batch DataFusion table; a projection adds, per row,
//! the ids of the Sigma rules that match it (`sigma_match`, varde-rules' vectorised engine as a
//! UDF) and the shared component the row concerns (`shared_component`, from host names and
//! addresses of [`varde_core::ComponentRegistry`]). Rows with matches become [`Alert`]s.
//!
//! **Alert identity:** the alert id is derived from the rule id and the event id
//! ([`varde_core::AlertId`]), so re-detecting a replayed batch yields the same ids and the store
//! collapses them. The dedup key groups repeats of a rule for the dashboard: it is derived from
//! (rule id, tenant, component, host), so one noisy host shows as one group with a count.
//!
//! **Rules** are read from the configured paths at start and re-read when a rule file changes
//! (checked every `reload_interval_s`); a reload swaps the whole set between two batches, so no
//! event is matched against half a rule set and none is skipped. Rules that fail to load are
//! logged with file and reason and counted; the rules beside them still load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, col,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Deserialize;
use tracing::{info, warn};
use varde_core::id::digest16;
use varde_core::{AlertId, BatchReader, ComponentRegistry, Envelope, EventId, SourceKind};
use varde_rules::compile::Placeholders;
use varde_rules::datafusion::{RuleSetHandle, SigmaMatch, rule_key, sigma_match_expr};
use varde_rules::explain::Explainer;
use varde_rules::{LoadError, RuleSet, RuleSetBuilder};
use varde_store::Alert;

/// The `[detection]` section of the pipeline's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Whether Varde's own rule pack (`rules/sigma/`, built into the binary) is used; default
    /// true.
    #[serde(default = "yes")]
    pub builtin_pack: bool,
    /// Rule files or folders (searched for `.yml`/`.yaml`), e.g. a SigmaHQ checkout.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Values of `expand` placeholders, e.g. `municipal_oidc_clients = ["…"]`.
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Seconds between checks of the rule files for changes (default 10; 0 turns reloading off).
    #[serde(default = "default_reload")]
    pub reload_interval_s: u64,
    /// Extra shared components (TOML in the format of varde-core's `components.toml`), added to
    /// the built-in registry.
    #[serde(default)]
    pub components: Option<PathBuf>,
    /// Correlation windows: bounds, lateness and the replay at start
    /// (`[detection.correlation]`).
    #[serde(default)]
    pub correlation: crate::correlate::CorrelationSettings,
}

fn default_reload() -> u64 {
    10
}

fn yes() -> bool {
    true
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            builtin_pack: true,
            rules: Vec::new(),
            placeholders: BTreeMap::new(),
            reload_interval_s: default_reload(),
            components: None,
            correlation: Default::default(),
        }
    }
}

/// Why detection could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rule path could not be listed.
    #[error("rules at {path}: {source}")]
    RulePath {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rule set could not be built (a mapping problem, not a rule's).
    #[error("rule set: {0}")]
    Rules(#[from] varde_rules::Error),
    /// The components file could not be read or parsed.
    #[error("components {path}: {message}")]
    Components {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// DataFusion failed on a batch.
    #[error("datafusion: {0}")]
    DataFusion(#[from] DataFusionError),
    /// The plan returned another number of rows than the batch had.
    #[error("detection returned {got} rows for a batch of {expected}")]
    RowCount {
        /// Rows in.
        expected: usize,
        /// Rows out.
        got: usize,
    },
}

/// The columns whose values name the shared component an event of a kind concerns, most telling
/// first. Every name is a column of the kind's schema (a test checks).
pub fn component_columns(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::WebAccess => &["vhost", "host"],
        SourceKind::Flow => &["component", "tls_sni", "http_host", "dns_query", "dst_ip"],
        SourceKind::OidcLogin => &["service", "host"],
        SourceKind::WindowsEvent => &["computer", "host"],
        _ => &["host"],
    }
}

/// `shared_component(name_or_address, ...)`: the id of the first shared component any argument
/// names (a host name or subdomain of one, or an address in one of its networks), else null.
#[derive(Debug)]
pub struct SharedComponent {
    registry: Arc<ComponentRegistry>,
    signature: Signature,
}

impl PartialEq for SharedComponent {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for SharedComponent {}

impl Hash for SharedComponent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "shared_component".hash(state);
        (Arc::as_ptr(&self.registry) as usize).hash(state);
    }
}

impl SharedComponent {
    /// The function over `registry`.
    pub fn udf(registry: Arc<ComponentRegistry>) -> ScalarUDF {
        ScalarUDF::new_from_impl(SharedComponent {
            registry,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }

    fn lookup(&self, value: &str) -> Option<&str> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return self.registry.match_ip(ip).map(|c| c.id.as_str());
        }
        self.registry.match_host(value).map(|c| c.id.as_str())
    }
}

impl ScalarUDFImpl for SharedComponent {
    fn name(&self) -> &str {
        "shared_component"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        for (a, f) in arrays.iter().zip(&args.arg_fields) {
            if a.data_type() != &DataType::Utf8 {
                return datafusion::common::exec_err!(
                    "shared_component: '{}' is {}, expected text",
                    f.name(),
                    a.data_type()
                );
            }
        }
        let strings: Vec<_> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            let found = strings
                .iter()
                .filter(|s| s.is_valid(row))
                .find_map(|s| self.lookup(s.value(row)));
            out.append_option(found);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The rule files under the configured paths, with modification time and size: when this
/// changes, the rules are reloaded.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

fn fingerprint(paths: &[PathBuf]) -> Result<Fingerprint, DetectError> {
    let mut out = Vec::new();
    for path in paths {
        let files =
            varde_rules::load::rule_files(path).map_err(|source| DetectError::RulePath {
                path: path.clone(),
                source,
            })?;
        for f in files {
            let meta = std::fs::metadata(&f).ok();
            out.push((
                f,
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            ));
        }
    }
    Ok(out)
}

/// What one load of the rules gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Rules loaded.
    pub loaded: usize,
    /// Documents that did not load, with file and reason.
    pub errors: Vec<LoadError>,
}

/// Detection and enrichment of envelopes.
pub struct Detector {
    ctx: SessionContext,
    sigma: Arc<ScalarUDF>,
    component: Arc<ScalarUDF>,
    rules: RuleSetHandle,
    explainer: Explainer,
    by_key: HashMap<String, usize>,
    source: Option<RuleSource>,
    /// Rules turned off from the dashboard: still matched, their alerts not raised.
    disabled: BTreeSet<String>,
    /// The rule set's correlations and their open windows (see [`crate::correlate`]).
    correlator: std::sync::Mutex<crate::correlate::Correlator>,
    correlation_settings: crate::correlate::CorrelationSettings,
}

struct RuleSource {
    builtin_pack: bool,
    paths: Vec<PathBuf>,
    placeholders: Placeholders,
    interval: Duration,
    checked: Instant,
    fingerprint: Fingerprint,
}

fn session() -> SessionContext {
    // One partition keeps rows in batch order (alerts are tied to rows by position) and fits
    // the pipeline's model: parallelism comes from more instances and partitions, not threads
    // inside one batch.
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(65_536);
    SessionContext::new_with_config(config)
}

fn build_rules(
    builtin_pack: bool,
    paths: &[PathBuf],
    placeholders: &Placeholders,
) -> Result<RuleSet, DetectError> {
    let mut builder = RuleSetBuilder::new(placeholders.clone())?;
    if builtin_pack {
        varde_rules::pack::add_pack(&mut builder);
    }
    for path in paths {
        varde_rules::load::add_paths(&mut builder, std::slice::from_ref(path)).map_err(
            |source| DetectError::RulePath {
                path: path.clone(),
                source,
            },
        )?;
    }
    Ok(builder.build()?)
}

fn report_of(rules: &RuleSet) -> LoadReport {
    for e in rules.errors() {
        warn!(file = %e.source, rule_id = e.rule_id.as_deref().unwrap_or(""),
            class = e.class, reason = %e.reason, "rule not loaded");
    }
    LoadReport {
        loaded: rules.rules().len(),
        errors: rules.errors().to_vec(),
    }
}

/// What the pipeline loop needs of detection. [`Detector`] is the implementation Varde runs;
/// the trait is there so that a test can make detection fail on purpose, which real rules on
/// real batches cannot be made to do on demand.
pub trait Detect {
    /// Reloads the rules when they changed; `Some(report)` when it reloaded.
    fn reload_if_changed(&mut self) -> Option<LoadReport>;

    /// The rules in use and the files that did not load, for the store's catalog (none by
    /// default).
    fn catalog(&self) -> Vec<varde_store::RuleEntry> {
        Vec::new()
    }

    /// Turns rules off (by catalog id) until the next call: their alerts are not raised.
    fn set_disabled(&mut self, disabled: BTreeSet<String>);

    /// The correlator's counts (none by default).
    fn correlation_stats(&self) -> crate::correlate::CorrelatorStats {
        crate::correlate::CorrelatorStats::default()
    }

    /// How far back the correlation hit log is replayed at start (µs); `None`: not at all.
    fn correlation_restore_horizon_us(&self) -> Option<i64> {
        None
    }

    /// Replays the correlation hit log into the windows (see
    /// [`crate::correlate::Correlator::restore`]).
    fn restore_correlations(
        &mut self,
        _hits: &[varde_store::CorrelationHit],
    ) -> crate::correlate::RestoreReport {
        crate::correlate::RestoreReport::default()
    }

    /// The correlation hits taken since the last call, to be logged with their batch.
    fn take_correlation_log(&self) -> Vec<varde_store::CorrelationHit> {
        Vec::new()
    }

    /// The alerts of one envelope, detected at `detect_time_us`.
    fn detect(
        &self,
        envelope: &Envelope,
        detect_time_us: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Alert>, DetectError>> + Send;
}

impl Detect for Detector {
    fn reload_if_changed(&mut self) -> Option<LoadReport> {
        Detector::reload_if_changed(self)
    }

    fn catalog(&self) -> Vec<varde_store::RuleEntry> {
        Detector::catalog(self)
    }

    fn set_disabled(&mut self, disabled: BTreeSet<String>) {
        Detector::set_disabled(self, disabled);
    }

    fn correlation_stats(&self) -> crate::correlate::CorrelatorStats {
        self.correlator
            .lock()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    fn correlation_restore_horizon_us(&self) -> Option<i64> {
        self.correlator
            .lock()
            .ok()
            .and_then(|c| c.restore_horizon_us())
    }

    fn restore_correlations(
        &mut self,
        hits: &[varde_store::CorrelationHit],
    ) -> crate::correlate::RestoreReport {
        self.correlator
            .get_mut()
            .map(|c| c.restore(hits))
            .unwrap_or_default()
    }

    fn take_correlation_log(&self) -> Vec<varde_store::CorrelationHit> {
        self.correlator
            .lock()
            .map(|mut c| c.take_log())
            .unwrap_or_default()
    }

    fn detect(
        &self,
        envelope: &Envelope,
        detect_time_us: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Alert>, DetectError>> + Send {
        Detector::detect(self, envelope, detect_time_us)
    }
}

impl Detector {
    /// A detector over an already built rule set (no reloading) and component registry.
    pub fn new(rules: RuleSet, components: ComponentRegistry) -> Self {
        Detector::with_correlation(rules, components, Default::default())
    }

    /// A detector over an already built rule set, with correlation windows as `settings` say.
    pub fn with_correlation(
        rules: RuleSet,
        components: ComponentRegistry,
        settings: crate::correlate::CorrelationSettings,
    ) -> Self {
        let correlator =
            std::sync::Mutex::new(crate::correlate::Correlator::new(&rules, &settings));
        let explainer = Explainer::new(&rules);
        let by_key = rule_index(&rules);
        let handle = RuleSetHandle::new(rules);
        let ctx = session();
        let sigma = Arc::new(SigmaMatch::udf(handle.clone()));
        let component = Arc::new(SharedComponent::udf(Arc::new(components)));
        ctx.register_udf(sigma.as_ref().clone());
        ctx.register_udf(component.as_ref().clone());
        Detector {
            ctx,
            sigma,
            component,
            rules: handle,
            explainer,
            by_key,
            source: None,
            disabled: BTreeSet::new(),
            correlator,
            correlation_settings: settings,
        }
    }

    /// A detector with the rules and components of `config`, reloading rules as they change.
    pub fn from_config(config: &DetectionConfig) -> Result<(Self, LoadReport), DetectError> {
        let placeholders: Placeholders = config
            .placeholders
            .iter()
            .map(|(k, v)| (k.trim_matches('%').to_owned(), v.clone()))
            .collect();
        let mut components = ComponentRegistry::builtin();
        if let Some(path) = &config.components {
            let text = std::fs::read_to_string(path).map_err(|e| DetectError::Components {
                path: path.clone(),
                message: e.to_string(),
            })?;
            components
                .extend_from_toml(&text)
                .map_err(|e| DetectError::Components {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        }
        let fingerprint = fingerprint(&config.rules)?;
        let rules = build_rules(config.builtin_pack, &config.rules, &placeholders)?;
        let report = report_of(&rules);
        let mut detector = Detector::with_correlation(rules, components, config.correlation);
        if config.reload_interval_s > 0 {
            detector.source = Some(RuleSource {
                builtin_pack: config.builtin_pack,
                paths: config.rules.clone(),
                placeholders,
                interval: Duration::from_secs(config.reload_interval_s),
                checked: Instant::now(),
                fingerprint,
            });
        }
        Ok((detector, report))
    }

    /// The rule set in use.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.current()
    }

    /// The DataFusion session, with `sigma_match` and `shared_component` registered: for hunts
    /// over batches in memory with the same matcher.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The rules in use and the documents that did not load, with each rule's YAML (read again
    /// from its file, or from the built-in pack; at most 64 KiB), for the store's catalog.
    pub fn catalog(&self) -> Vec<varde_store::RuleEntry> {
        const TEXT_MAX: usize = 64 * 1024;
        let text_of = |source: &str| -> String {
            let text = source
                .strip_prefix("rules/sigma/")
                .and_then(|name| {
                    varde_rules::pack::PACK
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, t)| (*t).to_owned())
                })
                .or_else(|| std::fs::read_to_string(source).ok())
                .unwrap_or_default();
            if text.len() > TEXT_MAX {
                String::new()
            } else {
                text
            }
        };
        let set = self.rules();
        let mut out: Vec<varde_store::RuleEntry> = set
            .rules()
            .iter()
            .map(|r| varde_store::RuleEntry {
                rule_id: varde_rules::datafusion::rule_key(r),
                source: r.source.clone(),
                title: r.meta.title.clone(),
                level: r.meta.level.clone().unwrap_or_default(),
                status: r.meta.status.clone().unwrap_or_default(),
                tags: r.meta.tags.clone(),
                author: r.meta.author.clone().unwrap_or_default(),
                description: r.meta.description.clone().unwrap_or_default(),
                references: r.meta.references.clone(),
                falsepositives: r.meta.falsepositives.clone(),
                kind: r.kind.to_string(),
                text: text_of(&r.source),
                error: String::new(),
            })
            .collect();
        // Correlation rules: the evaluated ones as rules of kind `correlation`, the others with
        // why they are not evaluated, so the dashboard never shows one as watching that is not.
        let skipped: BTreeMap<String, String> = self
            .correlator
            .lock()
            .map(|c| c.skipped().iter().cloned().collect())
            .unwrap_or_default();
        out.extend(set.correlations().iter().map(|(source, c)| {
            let key = c.key();
            varde_store::RuleEntry {
                error: skipped.get(&key).cloned().unwrap_or_default(),
                rule_id: key,
                source: source.clone(),
                title: c.title.clone(),
                level: c.level.clone().unwrap_or_default(),
                kind: "correlation".into(),
                text: text_of(source),
                ..varde_store::RuleEntry::default()
            }
        }));
        out.extend(set.errors().iter().map(|e| varde_store::RuleEntry {
            rule_id: e.rule_id.clone().unwrap_or_default(),
            source: e.source.clone(),
            title: e.title.clone().unwrap_or_default(),
            error: format!("{}: {}", e.class, e.reason),
            ..varde_store::RuleEntry::default()
        }));
        out
    }

    /// Turns rules off (by catalog id, as alerts carry it) until the next call: they are still
    /// matched, but their alerts are not raised. Switches of rules not loaded are kept, so a
    /// rule stays off across reloads.
    pub fn set_disabled(&mut self, disabled: BTreeSet<String>) {
        if disabled != self.disabled {
            info!(
                disabled = disabled.len(),
                "rules turned off from the dashboard"
            );
            self.disabled = disabled;
        }
    }

    /// Replaces the rule set (between two batches).
    pub fn replace_rules(&mut self, rules: RuleSet) {
        // Correlations whose definition did not change keep their open windows; the counts
        // go on.
        let mut correlator = crate::correlate::Correlator::new(&rules, &self.correlation_settings);
        if let Ok(prev) = self.correlator.get_mut() {
            correlator.carry(prev);
        }
        self.correlator = std::sync::Mutex::new(correlator);
        self.explainer = Explainer::new(&rules);
        self.by_key = rule_index(&rules);
        self.rules.replace(rules);
    }

    /// Reloads the rules when a rule file changed since the last load and the check interval
    /// has passed; `Some(report)` when it reloaded. A rule path that cannot be read keeps the
    /// rules in use (logged).
    pub fn reload_if_changed(&mut self) -> Option<LoadReport> {
        let source = self.source.as_mut()?;
        if source.checked.elapsed() < source.interval {
            return None;
        }
        source.checked = Instant::now();
        let now = match fingerprint(&source.paths) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "rule files unreadable; keeping the rules in use");
                return None;
            }
        };
        if now == source.fingerprint {
            return None;
        }
        let rules = match build_rules(source.builtin_pack, &source.paths, &source.placeholders) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "rules could not be rebuilt; keeping the rules in use");
                return None;
            }
        };
        source.fingerprint = now;
        let report = report_of(&rules);
        info!(
            loaded = report.loaded,
            errors = report.errors.len(),
            "rules reloaded"
        );
        self.replace_rules(rules);
        Some(report)
    }

    fn projection(&self, kind: SourceKind) -> Vec<Expr> {
        let candidates: Vec<Expr> = component_columns(kind).iter().map(|c| col(*c)).collect();
        vec![
            sigma_match_expr(&self.sigma, kind).alias("rule_ids"),
            self.component.call(candidates).alias("component"),
        ]
    }

    /// The alerts of one envelope, detected at `detect_time_us`.
    pub async fn detect(
        &self,
        envelope: &Envelope,
        detect_time_us: i64,
    ) -> Result<Vec<Alert>, DetectError> {
        let h = &envelope.header;
        let rows = envelope.batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        // The rule set of this batch: the UDF reads the same handle, and reloads happen only
        // between batches (`reload_if_changed` takes `&mut self`).
        let rules = self.rules.current();
        let df = self.ctx.read_batch(envelope.batch.clone())?;
        let out = df.select(self.projection(h.kind))?.collect().await?;
        let got: usize = out.iter().map(|b| b.num_rows()).sum();
        if got != rows {
            return Err(DetectError::RowCount {
                expected: rows,
                got,
            });
        }
        let reader = BatchReader::new(h.kind, &envelope.batch)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        let by_key = &self.by_key;
        let mut alerts = Vec::new();
        let mut row = 0usize;
        // Held for the rest of this (synchronous) loop: batches are detected one at a time.
        let mut correlator = self.correlator.lock().ok().filter(|c| !c.is_empty());
        for batch in &out {
            let ids = batch.column(0).as_list::<i32>();
            let components = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                let list = ids.value(i);
                let list = list.as_string::<i32>();
                if !list.is_empty() {
                    let batch_row = u32::try_from(row).unwrap_or(u32::MAX);
                    let event_id = EventId::derive(h.collector_id.as_str(), h.batch_seq, batch_row);
                    let component = if components.is_valid(i) {
                        components.value(i)
                    } else {
                        ""
                    };
                    let host = reader.host(row).unwrap_or("");
                    for rule_id in list.iter().flatten() {
                        let Some(&r) = by_key.get(rule_id) else {
                            continue;
                        };
                        if self.disabled.contains(rule_id) {
                            continue;
                        }
                        let meta = &rules.rules()[r].meta;
                        alerts.push(Alert {
                            alert_id: AlertId::derive(rule_id, event_id),
                            dedup_key: digest16(
                                b"varde/dedup/v1\0",
                                &[
                                    rule_id.as_bytes(),
                                    h.tenant.as_str().as_bytes(),
                                    component.as_bytes(),
                                    host.as_bytes(),
                                ],
                            ),
                            tenant: h.tenant.as_str().to_owned(),
                            component: component.to_owned(),
                            rule_id: rule_id.to_owned(),
                            rule_title: meta.title.clone(),
                            rule_level: meta.level.clone().unwrap_or_default(),
                            rule_tags: meta.tags.clone(),
                            event_id,
                            event_time_us: reader.event_time_us(row),
                            detect_time_us,
                            source_kind: h.kind.name().to_owned(),
                            host: host.to_owned(),
                            matched: self.explainer.matched_fields(r, &reader, row),
                        });
                        if let Some(correlator) = correlator.as_mut()
                            && correlator.wants(rule_id)
                            && let Some(hit) = alerts.pop()
                        {
                            let field = |name: &str| field_of(&reader, row, name);
                            let fired = correlator.observe(&hit, &field, detect_time_us);
                            // `generate: false`: the rule's match only feeds its correlations.
                            if !correlator.hides(rule_id) {
                                alerts.push(hit);
                            }
                            alerts.extend(fired.into_iter().filter(|a| {
                                !self.disabled.contains(&a.rule_id) && !correlator.hides(&a.rule_id)
                            }));
                        }
                    }
                }
                row += 1;
            }
        }
        Ok(alerts)
    }
}

/// The value of field `name` of row `row`, as text: a typed column of that name, else an
/// attribute.
pub fn field_of(reader: &BatchReader<'_>, row: usize, name: &str) -> Option<String> {
    varde_core::schema::typed_columns(reader.kind())
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| reader.typed(i, row))
        .map(|v| v.to_string())
        .or_else(|| {
            reader
                .attrs(row)
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
}

/// Rule index by [`rule_key`]; with duplicate ids the first rule wins (and is the one reported).
fn rule_index(rules: &RuleSet) -> HashMap<String, usize> {
    let mut by_key = HashMap::with_capacity(rules.rules().len());
    for (i, r) in rules.rules().iter().enumerate() {
        by_key.entry(rule_key(r)).or_insert(i);
    }
    by_key
}
