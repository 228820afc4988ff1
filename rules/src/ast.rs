//! Sigma documents as parsed from YAML, before compilation: rules and meta filters.

use serde_yaml::Value as Yaml;

use crate::condition::{self, Cond};
use crate::{Error, Result};

/// A value in a detection item, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A string (wildcards and escapes not yet interpreted).
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`, or an empty YAML value.
    Null,
}

/// One `field|mod|mod: value(s)` entry of a search map. `field` is `None` for the field-less
/// `'|all'` keyword form.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The field name.
    pub field: Option<String>,
    /// Modifiers, in the order written.
    pub modifiers: Vec<String>,
    /// The value(s); several are OR-ed unless `all` is among the modifiers.
    pub values: Vec<RawValue>,
}

/// A search identifier's definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// Maps OR-ed together; the items of one map are AND-ed.
    Maps(Vec<Vec<Item>>),
    /// Keywords searched in every field (OR-ed).
    Keywords(Vec<RawValue>),
}

/// The `logsource` of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogSource {
    /// e.g. `windows`.
    pub product: Option<String>,
    /// e.g. `process_creation`.
    pub category: Option<String>,
    /// e.g. `security`.
    pub service: Option<String>,
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("product", &self.product),
            ("category", &self.category),
            ("service", &self.service),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// The detection of a rule or filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Search identifiers in document order.
    pub searches: Vec<(String, Search)>,
    /// The condition(s); several are OR-ed.
    pub conditions: Vec<Cond>,
}

impl Detection {
    /// Every string value of every search, as written (wildcards not interpreted): the rule's
    /// vocabulary, e.g. for generating test events that make it fire.
    pub fn string_values(&self) -> impl Iterator<Item = &str> {
        self.searches.iter().flat_map(|(_, search)| {
            let values: Box<dyn Iterator<Item = &RawValue>> = match search {
                Search::Maps(maps) => {
                    Box::new(maps.iter().flatten().flat_map(|item| item.values.iter()))
                }
                Search::Keywords(values) => Box::new(values.iter()),
            };
            values.filter_map(|v| match v {
                RawValue::Str(s) => Some(s.as_str()),
                _ => None,
            })
        })
    }
}

/// Descriptive fields of a rule, carried to alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// `id` (a UUID in SigmaHQ).
    pub id: String,
    /// `title`.
    pub title: String,
    /// `level`: informational, low, medium, high, critical.
    pub level: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `author` (credited when the rule is shown, per the Detection Rule License).
    pub author: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `references`.
    pub references: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// `name`: how correlation rules may reference the rule (besides its id).
    pub name: Option<String>,
}

/// A Sigma detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Descriptive fields.
    pub meta: Meta,
    /// Where it applies.
    pub logsource: LogSource,
    /// What it looks for.
    pub detection: Detection,
}

/// A Sigma meta filter: an extra condition AND-ed to the rules it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Descriptive fields.
    pub meta: Meta,
    /// The filter applies to rules whose logsource it contains.
    pub logsource: LogSource,
    /// Rule ids or titles it applies to; empty means every rule of the logsource.
    pub rules: Vec<String>,
    /// Its searches and condition.
    pub detection: Detection,
}

/// A parsed YAML document.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A detection rule.
    Rule(Rule),
    /// A meta filter.
    Filter(Filter),
    /// A correlation rule.
    Correlation(crate::correlation::Correlation),
}

fn key<'a>(map: &'a serde_yaml::Mapping, k: &str) -> Option<&'a Yaml> {
    map.get(Yaml::String(k.to_owned()))
}

fn string(v: Option<&Yaml>) -> Option<String> {
    match v? {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    match v {
        Some(Yaml::Sequence(items)) => items.iter().filter_map(|i| string(Some(i))).collect(),
        Some(other) => string(Some(other)).into_iter().collect(),
        None => Vec::new(),
    }
}

fn raw_value(v: &Yaml) -> Result<RawValue> {
    Ok(match v {
        Yaml::Null => RawValue::Null,
        Yaml::Bool(b) => RawValue::Bool(*b),
        Yaml::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => RawValue::Int(i),
            (None, Some(f)) => RawValue::Float(f),
            _ => return Err(Error::invalid(format!("number {n} is out of range"))),
        },
        Yaml::String(s) => RawValue::Str(s.clone()),
        Yaml::Tagged(t) => raw_value(&t.value)?,
        Yaml::Sequence(_) | Yaml::Mapping(_) => {
            return Err(Error::invalid("a list or map where a value was expected"));
        }
    })
}

fn values(v: &Yaml) -> Result<Vec<RawValue>> {
    match v {
        Yaml::Sequence(items) => items.iter().map(raw_value).collect(),
        other => Ok(vec![raw_value(other)?]),
    }
}

fn search_map(ident: &str, map: &serde_yaml::Mapping) -> Result<Vec<Item>> {
    map.iter()
        .map(|(k, v)| {
            let Some(k) = k.as_str() else {
                return Err(Error::invalid(format!(
                    "search '{ident}': a field name that is not text"
                )));
            };
            let mut pieces = k.split('|');
            let field = pieces.next().unwrap_or_default();
            let modifiers: Vec<String> = pieces.map(str::to_owned).collect();
            if modifiers.iter().any(String::is_empty) {
                return Err(Error::invalid(format!(
                    "search '{ident}': empty modifier in '{k}'"
                )));
            }
            Ok(Item {
                field: (!field.is_empty()).then(|| field.to_owned()),
                modifiers,
                values: values(v)
                    .map_err(|e| e.context(format!("search '{ident}', field '{k}'")))?,
            })
        })
        .collect()
}

fn search(ident: &str, v: &Yaml) -> Result<Search> {
    match v {
        Yaml::Mapping(m) => Ok(Search::Maps(vec![search_map(ident, m)?])),
        Yaml::Sequence(items)
            if items.iter().all(|i| matches!(i, Yaml::Mapping(_))) && !items.is_empty() =>
        {
            let maps = items
                .iter()
                .filter_map(Yaml::as_mapping)
                .map(|m| search_map(ident, m))
                .collect::<Result<Vec<_>>>()?;
            Ok(Search::Maps(maps))
        }
        Yaml::Sequence(items) => Ok(Search::Keywords(
            items
                .iter()
                .map(raw_value)
                .collect::<Result<_>>()
                .map_err(|e| e.context(format!("keywords '{ident}'")))?,
        )),
        Yaml::String(_) | Yaml::Number(_) => Ok(Search::Keywords(vec![raw_value(v)?])),
        _ => Err(Error::invalid(format!(
            "search '{ident}' is neither a map, a list of maps nor a keyword list"
        ))),
    }
}

fn detection(v: Option<&Yaml>, what: &str) -> Result<Detection> {
    let map = v
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| Error::invalid(format!("'{what}' is missing or not a map")))?;
    let mut searches = Vec::new();
    let mut conditions = Vec::new();
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            return Err(Error::invalid(format!("a key of '{what}' is not text")));
        };
        match name {
            "condition" => {
                let texts = match v {
                    Yaml::Sequence(items) => items.iter().filter_map(|i| string(Some(i))).collect(),
                    other => string(Some(other)).into_iter().collect::<Vec<_>>(),
                };
                for text in texts {
                    conditions.push(condition::parse(&text)?);
                }
            }
            "timeframe" => {
                return Err(Error::Unsupported(
                    "'timeframe' in detection (aggregation): use a correlation rule".into(),
                ));
            }
            // Part of a meta filter, handled by the caller.
            "rules" if what == "filter" => {}
            _ => searches.push((name.to_owned(), search(name, v)?)),
        }
    }
    if conditions.is_empty() {
        return Err(Error::invalid(format!("'{what}' has no condition")));
    }
    Ok(Detection {
        searches,
        conditions,
    })
}

fn logsource(v: Option<&Yaml>) -> Result<LogSource> {
    let map = v
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| Error::invalid("'logsource' is missing or not a map"))?;
    let lower = |k| string(key(map, k)).map(|s| s.to_ascii_lowercase());
    Ok(LogSource {
        product: lower("product"),
        category: lower("category"),
        service: lower("service"),
    })
}

fn meta(map: &serde_yaml::Mapping) -> Meta {
    Meta {
        id: string(key(map, "id")).unwrap_or_default(),
        title: string(key(map, "title")).unwrap_or_default(),
        level: string(key(map, "level")).map(|s| s.to_ascii_lowercase()),
        status: string(key(map, "status")),
        tags: strings(key(map, "tags")),
        author: string(key(map, "author")),
        description: string(key(map, "description")),
        references: strings(key(map, "references")),
        falsepositives: strings(key(map, "falsepositives")),
        name: string(key(map, "name")),
    }
}

/// Parses every YAML document in `text`: rules, meta filters and correlation rules.
pub fn parse_documents(text: &str) -> Vec<Result<Document>> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let doc = match <Yaml as serde::Deserialize>::deserialize(de) {
            Ok(d) => d,
            Err(e) => {
                out.push(Err(Error::Yaml(e.to_string())));
                // A syntax error ends the stream.
                break;
            }
        };
        if doc.is_null() {
            continue;
        }
        out.push(parse_document(&doc));
    }
    out
}

fn parse_document(doc: &Yaml) -> Result<Document> {
    let map = doc
        .as_mapping()
        .ok_or_else(|| Error::invalid("the document is not a map"))?;
    let meta = meta(map);
    if key(map, "correlation").is_some() {
        return crate::correlation::parse(map).map(Document::Correlation);
    }
    if let Some(filter) = key(map, "filter") {
        let rules = strings(filter.as_mapping().and_then(|m| key(m, "rules")));
        return Ok(Document::Filter(Filter {
            meta,
            logsource: logsource(key(map, "logsource"))?,
            rules,
            detection: detection(Some(filter), "filter")?,
        }));
    }
    if meta.title.is_empty() {
        return Err(Error::invalid("'title' is missing"));
    }
    Ok(Document::Rule(Rule {
        logsource: logsource(key(map, "logsource"))?,
        detection: detection(key(map, "detection"), "detection")?,
        meta,
    }))
}
