//! Field mappings and logsource routing, kept as data in `rules/mappings/*.yml`.
//!
//! A Sigma rule names fields the way its log source does (`Image`, `CommandLine`, `c-uri`); a
//! [`KindMapping`] says where such a field lives in a Varde source kind, and which events of the
//! kind a rule's `logsource` covers. A logsource no mapping routes goes to `generic_json`, whose
//! fields are the attribute keys as they arrived.

use std::collections::HashMap;

use serde::Deserialize;
use varde_core::SourceKind;
use varde_core::schema::typed_columns;

use crate::ast::LogSource;
use crate::{Error, Result};

const BUILTIN: &[(&str, &str)] = &[
    ("windows.yml", include_str!("../mappings/windows.yml")),
    ("linux.yml", include_str!("../mappings/linux.yml")),
    ("auth.yml", include_str!("../mappings/auth.yml")),
    ("web.yml", include_str!("../mappings/web.yml")),
    ("oidc.yml", include_str!("../mappings/oidc.yml")),
];

/// A column of a source kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// `host`.
    Host,
    /// `message`.
    Message,
    /// `severity`.
    Severity,
    /// `event_time` (as RFC 3339 text).
    EventTime,
    /// A typed column of the kind, by index in [`typed_columns`].
    Typed(usize),
}

/// Where one Sigma field is looked up in events of one kind: first the attributes named
/// `attr`, then `column`, then attributes whose name without spaces is `attr`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Attribute key to try first (`None` for `@column` references).
    pub attr: Option<String>,
    /// Column to try next.
    pub column: Option<Column>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    logsource: RawLogSource,
    #[serde(default)]
    when: Vec<HashMap<String, serde_yaml::Value>>,
    #[serde(default)]
    fields: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogSource {
    product: Option<String>,
    category: Option<String>,
    service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    source_kind: String,
    open_fields: bool,
    #[serde(default)]
    fields: HashMap<String, String>,
    #[serde(default)]
    logsources: Vec<RawRoute>,
}

/// A routing entry: rules whose logsource includes `logsource` apply to the events of the kind
/// that satisfy one of the `when` alternatives (all when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The logsource keys this entry covers.
    pub logsource: LogSource,
    /// Alternatives of (field, value) conjunctions.
    pub when: Vec<Vec<(String, String)>>,
    /// Sigma fields read from other attributes on the events of this entry (Sigma name,
    /// attribute name), sorted: the Security log's process creation (4688) calls `Image`
    /// `NewProcessName`.
    pub fields: Vec<(String, String)>,
}

/// How Sigma rules meet one source kind.
#[derive(Debug, Clone)]
pub struct KindMapping {
    /// The kind.
    pub kind: SourceKind,
    /// Whether events may carry fields beyond the mapped ones (in their attributes).
    pub open_fields: bool,
    fields: HashMap<String, Column>,
    /// Routing entries.
    pub routes: Vec<Route>,
}

fn column_by_name(kind: SourceKind, name: &str) -> Option<Column> {
    Some(match name {
        "host" => Column::Host,
        "message" => Column::Message,
        "severity" => Column::Severity,
        "event_time" => Column::EventTime,
        other => Column::Typed(typed_columns(kind).iter().position(|c| c.name == other)?),
    })
}

impl KindMapping {
    /// Where `field` lives in this kind. `@name` names a column directly.
    pub fn spec(&self, field: &str) -> FieldSpec {
        if let Some(col) = field.strip_prefix('@') {
            return FieldSpec {
                attr: None,
                column: column_by_name(self.kind, col),
            };
        }
        FieldSpec {
            attr: Some(field.to_owned()),
            column: self.fields.get(field).copied(),
        }
    }

    /// Whether `field` can ever have a value in events of this kind.
    pub fn can_have(&self, field: &str) -> bool {
        let spec = self.spec(field);
        spec.column.is_some() || (spec.attr.is_some() && self.open_fields)
    }

    fn generic() -> Self {
        KindMapping {
            kind: SourceKind::GenericJson,
            open_fields: true,
            fields: [("message", Column::Message), ("host", Column::Host)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            routes: Vec::new(),
        }
    }
}

/// Every kind's mapping.
#[derive(Debug, Clone)]
pub struct Mappings {
    kinds: Vec<KindMapping>,
    generic: KindMapping,
}

/// Where a rule goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The source kind.
    pub kind: SourceKind,
    /// The events of that kind it covers.
    pub when: Vec<Vec<(String, String)>>,
    /// For each alternative of `when`, the Sigma fields it reads from other attributes
    /// (see [`Route::fields`]).
    pub fields: Vec<Vec<(String, String)>>,
}

impl Mappings {
    /// The mappings shipped in `rules/mappings/`.
    pub fn builtin() -> Result<Self> {
        let mut kinds = Vec::new();
        for (name, text) in BUILTIN {
            kinds.push(parse_mapping(text).map_err(|e| e.context(format!("mapping {name}")))?);
        }
        Ok(Mappings {
            kinds,
            generic: KindMapping::generic(),
        })
    }

    /// The mapping of a kind.
    pub fn kind(&self, kind: SourceKind) -> &KindMapping {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .unwrap_or(&self.generic)
    }

    /// Routes a rule's logsource: the most specific covering entry of any kind, else
    /// `generic_json` with no restriction.
    pub fn route(&self, ls: &LogSource) -> Routing {
        let covers = |r: &Route| {
            let key = |want: &Option<String>, have: &Option<String>| {
                want.as_ref()
                    .is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
            };
            key(&r.logsource.product, &ls.product)
                && key(&r.logsource.category, &ls.category)
                && key(&r.logsource.service, &ls.service)
        };
        let specificity = |r: &Route| {
            [
                &r.logsource.product,
                &r.logsource.category,
                &r.logsource.service,
            ]
            .iter()
            .filter(|k| k.is_some())
            .count()
        };
        let best = self
            .kinds
            .iter()
            .flat_map(|k| k.routes.iter().map(move |r| (k, r)))
            .filter(|(_, r)| covers(r))
            .max_by_key(|(_, r)| specificity(r));
        match best {
            // Entries of the kind for the same logsource add alternatives (Sysmon and Security
            // process creation).
            Some((k, best)) => {
                let mut when = Vec::new();
                let mut fields = Vec::new();
                for r in k.routes.iter().filter(|r| r.logsource == best.logsource) {
                    when.extend(r.when.iter().cloned());
                    fields.extend(r.when.iter().map(|_| r.fields.clone()));
                }
                Routing {
                    kind: k.kind,
                    when,
                    fields,
                }
            }
            None => Routing {
                kind: SourceKind::GenericJson,
                when: Vec::new(),
                fields: Vec::new(),
            },
        }
    }
}

fn yaml_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_mapping(text: &str) -> Result<KindMapping> {
    let raw: RawMapping = serde_yaml::from_str(text).map_err(|e| Error::Yaml(e.to_string()))?;
    let kind: SourceKind = raw
        .source_kind
        .parse()
        .map_err(|e: varde_core::kind::UnknownSourceKind| Error::invalid(e.to_string()))?;
    let mut fields = HashMap::new();
    for (sigma, target) in raw.fields {
        let col = target
            .strip_prefix('@')
            .and_then(|c| column_by_name(kind, c))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "field '{sigma}': '{target}' is not a column of {kind}"
                ))
            })?;
        fields.insert(sigma, col);
    }
    let mut routes = Vec::new();
    for r in raw.logsources {
        let mut when = Vec::new();
        for alt in r.when {
            let mut conj = Vec::new();
            for (k, v) in alt {
                let col = k.strip_prefix('@').and_then(|c| column_by_name(kind, c));
                if col.is_none() {
                    return Err(Error::invalid(format!(
                        "route condition '{k}' is not an @column of {kind}"
                    )));
                }
                let v = yaml_text(&v).ok_or_else(|| {
                    Error::invalid(format!("route condition '{k}' needs a scalar"))
                })?;
                conj.push((k, v));
            }
            conj.sort();
            when.push(conj);
        }
        let mut renames: Vec<(String, String)> = Vec::new();
        for (sigma, attr) in r.fields {
            if attr.starts_with('@') || attr.is_empty() {
                return Err(Error::invalid(format!(
                    "route field '{sigma}': '{attr}' must name an attribute"
                )));
            }
            renames.push((sigma, attr));
        }
        renames.sort();
        if !renames.is_empty() && when.is_empty() {
            return Err(Error::invalid(
                "route fields need `when` alternatives to apply to",
            ));
        }
        routes.push(Route {
            fields: renames,
            logsource: LogSource {
                product: r.logsource.product.map(|s| s.to_ascii_lowercase()),
                category: r.logsource.category.map(|s| s.to_ascii_lowercase()),
                service: r.logsource.service.map(|s| s.to_ascii_lowercase()),
            },
            when,
        });
    }
    Ok(KindMapping {
        kind,
        open_fields: raw.open_fields,
        fields,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: Option<&str>, c: Option<&str>, s: Option<&str>) -> LogSource {
        LogSource {
            product: p.map(Into::into),
            category: c.map(Into::into),
            service: s.map(Into::into),
        }
    }

    #[test]
    fn routing_picks_the_most_specific_entry() {
        let m = Mappings::builtin().expect("shipped mappings parse");
        let r = m.route(&ls(Some("windows"), Some("process_creation"), None));
        assert_eq!(r.kind, SourceKind::WindowsEvent);
        assert_eq!(r.when.len(), 2);
        assert_eq!(r.fields.len(), 2);
        assert!(r.fields[0].is_empty());
        assert!(
            r.fields[1].contains(&("Image".to_owned(), "NewProcessName".to_owned())),
            "{:?}",
            r.fields
        );
        let r = m.route(&ls(Some("windows"), None, Some("security")));
        assert_eq!(
            r.when,
            vec![vec![("@channel".to_owned(), "Security".to_owned())]]
        );
        assert_eq!(
            m.route(&ls(Some("windows"), Some("brand_new"), None)).when,
            Vec::<Vec<_>>::new()
        );
        assert_eq!(
            m.route(&ls(None, Some("webserver"), None)).kind,
            SourceKind::WebAccess
        );
        assert_eq!(
            m.route(&ls(Some("aws"), None, Some("cloudtrail"))).kind,
            SourceKind::GenericJson
        );
    }

    #[test]
    fn fields_resolve_to_columns_or_attributes() {
        let m = Mappings::builtin().expect("mappings");
        let w = m.kind(SourceKind::WindowsEvent);
        assert_eq!(w.spec("EventID").column, Some(Column::Typed(0)));
        assert_eq!(w.spec("Image").attr.as_deref(), Some("Image"));
        assert!(w.can_have("AnythingInEventData"));
        let web = m.kind(SourceKind::WebAccess);
        assert!(web.can_have("cs-uri-query"));
        assert!(!web.can_have("cs-cookie"));
    }
}
