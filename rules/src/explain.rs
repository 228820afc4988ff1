//! What an alert shows an analyst about why a rule fired: the fields the rule tests, with the
//! event's values.
//!
//! The matcher answers "which rules match which rows" and nothing more, to stay fast; an alert is
//! rare next to events, so its evidence is gathered afterwards, only for matching rows. A rule's
//! fields are those of its detection (Sigma names, in first-seen order); the logsource routing
//! tests (`@column` conditions) and keyword searches are left out, since they name no field of
//! the rule. A field with several values (a list) gives one pair per value; an absent field
//! gives none.

use varde_core::BatchReader;

use crate::engine::RuleSet;
use crate::fields::row_values;
use crate::mapping::FieldSpec;

/// The fields of every rule of a [`RuleSet`], resolved once.
#[derive(Debug, Clone, Default)]
pub struct Explainer {
    per_rule: Vec<Vec<(String, FieldSpec)>>,
}

impl Explainer {
    /// Resolves the fields of every rule of `rules`.
    pub fn new(rules: &RuleSet) -> Self {
        let per_rule = (0..rules.rules().len())
            .map(|r| {
                let Some((expr, atoms, mapping)) = rules.compiled(r) else {
                    return Vec::new();
                };
                let mut used = Vec::new();
                expr.atoms(&mut used);
                let mut fields: Vec<(String, FieldSpec)> = Vec::new();
                for a in used {
                    let Some(field) = atoms.atoms().get(a).and_then(|a| a.field.as_deref()) else {
                        continue;
                    };
                    if field.starts_with('@') || fields.iter().any(|(f, _)| f == field) {
                        continue;
                    }
                    fields.push((field.to_owned(), mapping.spec(field)));
                }
                fields
            })
            .collect();
        Explainer { per_rule }
    }

    /// The Sigma field names rule `rule` tests.
    pub fn fields(&self, rule: usize) -> impl Iterator<Item = &str> {
        self.per_rule
            .get(rule)
            .into_iter()
            .flatten()
            .map(|(f, _)| f.as_str())
    }

    /// The fields rule `rule` tests, with their values in row `row` of `reader`.
    pub fn matched_fields(
        &self,
        rule: usize,
        reader: &BatchReader<'_>,
        row: usize,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, spec) in self.per_rule.get(rule).into_iter().flatten() {
            for value in row_values(reader, spec, row) {
                out.push((field.clone(), value.into_owned()));
            }
        }
        out
    }
}
