//! The Sigma matcher as a DataFusion scalar function, so that Varde's streaming plan and SQL hunts
//! over Arrow data use the very same compiled rules and the very same vectorised engine.
//!
//! ```sql
//! SELECT event_id, sigma_match('windows_event', event_time, receive_time, tenant, ...) AS rules
//! FROM events
//! ```
//!
//! `sigma_match(kind, columns...)` takes the source kind as a constant string (`windows_event`,
//! `web_access`, …) and the columns of that kind's schema ([`varde_core::schema::schema`]), found
//! by **name** in any order. Nullable columns may be left out (they count as null); leaving out
//! a required one, or passing a column of the wrong type, is an error that names the column. It
//! returns, for every row, the list of ids of the rules that match it ([`rule_key`]), in rule
//! order; an empty list when none do. [`sigma_match_expr`] builds the call with every column of a
//! kind, which is what the pipeline uses.
//!
//! The rules behind the function can be replaced while queries run ([`RuleSetHandle::replace`]):
//! each batch is matched against one rule set, the one current when the batch arrived.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field};
use datafusion_common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, col,
    lit,
};
use varde_core::SourceKind;

use crate::engine::{LoadedRule, RuleSet};

/// The function's SQL name.
pub const SIGMA_MATCH: &str = "sigma_match";

/// The id under which a rule's matches are reported: its Sigma `id`, or `title:<title>` for a
/// rule without one (the id is optional in the Sigma specification).
pub fn rule_key(rule: &LoadedRule) -> String {
    if rule.meta.id.is_empty() {
        format!("title:{}", rule.meta.title)
    } else {
        rule.meta.id.clone()
    }
}

/// The rules current at one moment, with each rule's [`rule_key`] computed once.
type Current = (Arc<RuleSet>, Arc<[String]>);

/// A shared, replaceable rule set: the pipeline reloads rules from disk into it while the
/// function keeps running.
#[derive(Clone)]
pub struct RuleSetHandle(Arc<RwLock<Current>>);

impl std::fmt::Debug for RuleSetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSetHandle")
            .field("rules", &self.current().rules().len())
            .finish()
    }
}

fn current_of(rules: RuleSet) -> Current {
    let keys: Arc<[String]> = rules.rules().iter().map(rule_key).collect();
    (Arc::new(rules), keys)
}

impl RuleSetHandle {
    /// A handle holding `rules`.
    pub fn new(rules: RuleSet) -> Self {
        RuleSetHandle(Arc::new(RwLock::new(current_of(rules))))
    }

    fn snapshot(&self) -> Current {
        // A writer only swaps two Arcs, so even a poisoned lock holds a whole rule set.
        let guard = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (Arc::clone(&guard.0), Arc::clone(&guard.1))
    }

    /// The rule set current now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.snapshot().0
    }

    /// Replaces the rule set; batches already being matched finish with the old one.
    pub fn replace(&self, rules: RuleSet) {
        let next = current_of(rules);
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = next;
    }
}

/// The `sigma_match` scalar function over a [`RuleSetHandle`].
#[derive(Debug)]
pub struct SigmaMatch {
    rules: RuleSetHandle,
    signature: Signature,
}

impl PartialEq for SigmaMatch {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rules.0, &other.rules.0)
    }
}

impl Eq for SigmaMatch {}

impl Hash for SigmaMatch {
    fn hash<H: Hasher>(&self, state: &mut H) {
        SIGMA_MATCH.hash(state);
        (Arc::as_ptr(&self.rules.0) as usize).hash(state);
    }
}

impl SigmaMatch {
    /// The function over `rules`.
    pub fn new(rules: RuleSetHandle) -> Self {
        SigmaMatch {
            rules,
            // Stable, not immutable: the answer changes when the rules are reloaded.
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }

    /// The function, ready to register with a DataFusion session.
    pub fn udf(rules: RuleSetHandle) -> ScalarUDF {
        ScalarUDF::new_from_impl(SigmaMatch::new(rules))
    }
}

/// The type `sigma_match` returns: a list of rule ids.
pub fn return_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false)))
}

/// A call of `udf` (made by [`SigmaMatch::udf`]) over every column of `kind`'s schema.
pub fn sigma_match_expr(udf: &Arc<ScalarUDF>, kind: SourceKind) -> Expr {
    let schema = varde_core::schema::schema(kind);
    let mut args = vec![lit(kind.to_string())];
    args.extend(schema.fields().iter().map(|f| col(f.name().as_str())));
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(udf), args))
}

fn kind_argument(arg: Option<&ColumnarValue>) -> Result<SourceKind> {
    let name = match arg {
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        )) => s,
        _ => {
            return plan_err!(
                "{SIGMA_MATCH}: the first argument must be the source kind as a constant string, e.g. 'windows_event'"
            );
        }
    };
    name.parse::<SourceKind>()
        .map_err(|e| DataFusionError::Plan(format!("{SIGMA_MATCH}: {e}")))
}

/// Puts the function's arguments into a batch of `kind`'s schema, by column name.
fn batch_of(kind: SourceKind, args: &ScalarFunctionArgs) -> Result<RecordBatch> {
    let schema = varde_core::schema::schema(kind);
    let rows = args.number_rows;
    let given: Vec<(&str, &ColumnarValue)> = args
        .arg_fields
        .iter()
        .zip(&args.args)
        .skip(1)
        .map(|(f, v)| (f.name().as_str(), v))
        .collect();
    for (name, _) in &given {
        if schema.field_with_name(name).is_err() {
            return exec_err!("{SIGMA_MATCH}: '{name}' is not a column of {kind} events");
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let mut missing = Vec::new();
    for field in schema.fields() {
        match given.iter().find(|(n, _)| *n == field.name().as_str()) {
            Some((_, value)) => {
                let array = value.to_array(rows)?;
                if array.data_type() != field.data_type() {
                    return exec_err!(
                        "{SIGMA_MATCH}: column '{}' has type {}, {kind} events have {}",
                        field.name(),
                        array.data_type(),
                        field.data_type()
                    );
                }
                columns.push(array);
            }
            None if field.is_nullable() => columns.push(new_null_array(field.data_type(), rows)),
            None => {
                missing.push(field.name().as_str());
                columns.push(new_null_array(field.data_type(), 0));
            }
        }
    }
    if !missing.is_empty() {
        return exec_err!(
            "{SIGMA_MATCH}: {kind} events need the column(s) {}",
            missing.join(", ")
        );
    }
    RecordBatch::try_new(schema, columns)
        .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}

impl ScalarUDFImpl for SigmaMatch {
    fn name(&self) -> &str {
        SIGMA_MATCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let kind = kind_argument(args.args.first())?;
        let batch = batch_of(kind, &args)?;
        let (rules, keys) = self.rules.snapshot();
        let mut matches = rules
            .match_batch(kind, &batch)
            .map_err(|e| DataFusionError::Execution(format!("{SIGMA_MATCH}: {e}")))?;
        matches.sort_unstable_by_key(|m| (m.row, m.rule));
        let mut out = ListBuilder::new(StringBuilder::new())
            .with_field(Arc::new(Field::new_list_field(DataType::Utf8, false)));
        let mut next = matches.iter().peekable();
        for row in 0..batch.num_rows() {
            while let Some(m) = next.next_if(|m| m.row as usize == row) {
                out.values().append_value(&keys[m.rule as usize]);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
