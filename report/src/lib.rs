//! Varde's reports (work in progress: the taxonomies).
pub mod taxonomy;
