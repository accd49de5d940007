//! The Kubernetes API's shared machinery, free of any I/O: the resource catalog (what the API
//! server serves and how, as upstream 1.35's discovery lists it), label selectors, field
//! selectors with the fields each built-in kind can be selected by, the name rules of object
//! names, label keys and label values, and CustomResourceDefinitions' structural schemas
//! (pruning, defaulting, validation), all with upstream's exact error messages.
//!
//! Entry points: [`Catalog::builtin`], [`labels::Selector::parse`] and
//! [`labels::Selector::from_label_selector`], [`fields::Selector::parse`] and
//! [`fields::field_value`], [`names::name_rule`], [`schema::Schema::new`]. Every component may
//! depend on this crate; it depends on none of them, and it never does I/O, spawns tasks or keeps
//! global state.

pub mod catalog;
pub mod convert;
pub mod fields;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod schema;
pub mod strategic;
pub mod validation;

pub use catalog::{Catalog, Resource, Subresource};
pub use fields::FieldError;
pub use labels::SelectorError;
pub use names::NameRule;
