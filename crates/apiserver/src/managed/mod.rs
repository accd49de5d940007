//! Field ownership (`metadata.managedFields`) and server-side apply, as upstream's field
//! manager and structured-merge-diff define them. Pure: no HTTP, no store; the REST handlers
//! (`rest/managed_fields.rs`, `rest/apply.rs`) call it with decoded objects.
//!
//! Every write records, per manager, operation, apiVersion and subresource, which fields that
//! manager set. An `Update` takes the fields it changed from every other manager; an `Apply`
//! owns exactly the fields of its configuration, conflicts with other managers holding other
//! values there unless forced, and removes the fields it applied before and no longer does
//! when nobody else owns them.

pub mod fieldset;
pub mod typed;

use serde_json::{Map, Value, json};

#[cfg(test)]
use fieldset::PathElement;
pub use fieldset::{FieldSet, Path};
pub use typed::{Kind, ListType, Schema};

/// The operation of a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_owner(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How conflicts name the manager: `"kubectl" using apps/v1`.
    pub fn describe(&self) -> String {
        match self.operation {
            Operation::Apply => format!("{:?}", self.manager),
            Operation::Update => format!("{:?} using {}", self.manager, self.api_version),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), self.manager.clone().into());
        map.insert("operation".into(), self.operation.as_str().into());
        map.insert("apiVersion".into(), self.api_version.clone().into());
        if let Some(time) = &self.time {
            map.insert("time".into(), time.clone().into());
        }
        map.insert("fieldsType".into(), "FieldsV1".into());
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            map.insert("subresource".into(), self.subresource.clone().into());
        }
        Value::Object(map)
    }
}

/// Why a sent `managedFields` list cannot be used: the field and upstream's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    pub field: String,
    pub detail: String,
}

/// What a write's object says about its managed fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// None sent (or an empty list): the stored ones carry on.
    Keep,
    /// `[{}]`: the client resets them.
    Reset,
    Entries(Vec<Entry>),
}

/// Reads the `managedFields` of an object's metadata.
pub fn decode(metadata: Option<&Map<String, Value>>) -> Result<Sent, InvalidEntry> {
    let list = match metadata.and_then(|m| m.get("managedFields")) {
        None | Some(Value::Null) => return Ok(Sent::Keep),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(InvalidEntry {
                field: "metadata.managedFields".into(),
                detail: format!("Invalid value: {other}: must be a list"),
            });
        }
    };
    if list.is_empty() {
        return Ok(Sent::Keep);
    }
    if let [Value::Object(only)] = list.as_slice()
        && only.is_empty()
    {
        return Ok(Sent::Reset);
    }
    let mut entries = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = |name: &str| format!("metadata.managedFields[{i}].{name}");
        let text = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => {
                return Err(InvalidEntry {
                    field: field("operation"),
                    detail: format!(
                        "Unsupported value: \"{other}\": supported values: \"Apply\", \"Update\""
                    ),
                });
            }
        };
        if text("fieldsType") != "FieldsV1" {
            return Err(InvalidEntry {
                field: field("fieldsType"),
                detail: format!(
                    "Unsupported value: \"{}\": supported values: \"FieldsV1\"",
                    text("fieldsType")
                ),
            });
        }
        let fields = match item.get("fieldsV1") {
            None => FieldSet::new(),
            Some(v1) => FieldSet::from_fields_v1(v1).map_err(|e| InvalidEntry {
                field: field("fieldsV1"),
                detail: format!("Invalid value: {e}"),
            })?,
        };
        entries.push(Entry {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            time: item.get("time").and_then(Value::as_str).map(str::to_owned),
            subresource: text("subresource").to_owned(),
            fields,
        });
    }
    Ok(Sent::Entries(entries))
}

/// The managedFields list of `entries` (None when there are none: upstream omits the field).
pub fn encode(entries: &[Entry]) -> Option<Value> {
    (!entries.is_empty()).then(|| Value::Array(entries.iter().map(Entry::to_value).collect()))
}

/// Who writes, and how.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub time: &'a str,
}

impl Writer<'_> {
    fn entry(&self, operation: Operation, fields: FieldSet) -> Entry {
        Entry {
            manager: self.manager.to_owned(),
            operation,
            api_version: self.api_version.to_owned(),
            time: Some(self.time.to_owned()),
            subresource: self.subresource.to_owned(),
            fields,
        }
    }
}

/// Upstream keeps at most this many `Update` entries; older ones are merged.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Records an `Update`: the writer now owns what it changed (`changed`, fields of the new
/// object) and no longer what it removed; nobody else keeps a field the writer changed.
pub fn record_update(
    entries: &mut Vec<Entry>,
    writer: &Writer<'_>,
    changed: &FieldSet,
    removed: &FieldSet,
) {
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let mine = writer.entry(Operation::Update, FieldSet::new());
    for entry in entries.iter_mut() {
        if !entry.same_owner(&mine) {
            entry.fields.difference(changed);
            entry.fields.difference(removed);
        }
    }
    match entries.iter_mut().find(|e| e.same_owner(&mine)) {
        Some(entry) => {
            entry.fields.difference(removed);
            entry.fields.union(changed);
            entry.time = mine.time.clone();
        }
        None => {
            let mut entry = mine;
            entry.fields.union(changed);
            entries.push(entry);
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    cap_updates(entries);
}

/// Past [`MAX_UPDATE_MANAGERS`] `Update` entries, the two oldest become one
/// `<older>-after-<newer>` entry owning both sets (upstream's capping).
fn cap_updates(entries: &mut Vec<Entry>) {
    loop {
        let mut updates: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update)
            .map(|(i, _)| i)
            .collect();
        if updates.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updates.sort_by(|a, b| entries[*a].time.cmp(&entries[*b].time));
        let (first, second) = (updates[0], updates[1]);
        let older = entries[first].clone();
        let newer = &mut entries[second];
        newer.manager = format!("{}-after-{}", older.manager, newer.manager);
        newer.fields.union(&older.fields);
        entries.remove(first);
    }
}

/// A field another manager holds with another value than the applied one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// The result of an apply: the object to store and its managed fields.
#[derive(Debug)]
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// Server-side apply of `config` (already stripped of server-owned fields) onto `live`.
#[allow(clippy::too_many_arguments)]
pub fn apply<S: Schema>(
    schema: &S,
    root: Option<S::Node>,
    live: &Value,
    config: &Value,
    entries: &[Entry],
    writer: &Writer<'_>,
    force: bool,
) -> Result<Applied, Vec<Conflict>> {
    let applied = typed::fields_of(schema, root, config);
    let mut merged = typed::merge(schema, root, live, config);
    let mine = writer.entry(Operation::Apply, FieldSet::new());

    let mut conflicts = Vec::new();
    let mut taken = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut lost = FieldSet::new();
        if !entry.same_owner(&mine) {
            let overlap = entry.fields.intersection(&applied);
            for path in overlap.paths() {
                let leaf = applied
                    .child_path(&path.0)
                    .is_some_and(|node| node.children().next().is_none());
                if leaf && typed::differs(live, &merged, &path.0) {
                    lost.insert(&path.0);
                    conflicts.push(Conflict { manager: entry.describe(), path });
                }
            }
        }
        taken.push(lost);
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }

    let previous = entries.iter().find(|e| e.same_owner(&mine));
    if let Some(previous) = previous {
        let mut dropped = previous.fields.clone();
        dropped.difference(&applied);
        for other in entries.iter().filter(|e| !e.same_owner(&mine)) {
            dropped.difference(&other.fields);
        }
        typed::remove(&mut merged, &dropped);
    }

    let mut out: Vec<Entry> = Vec::with_capacity(entries.len() + 1);
    for (entry, lost) in entries.iter().zip(&taken) {
        if entry.same_owner(&mine) {
            let mut updated = entry.clone();
            if updated.fields != applied {
                updated.fields = applied.clone();
                updated.time = mine.time.clone();
            }
            out.push(updated);
            continue;
        }
        let mut kept = entry.clone();
        kept.fields.difference(lost);
        if !kept.fields.is_empty() {
            out.push(kept);
        }
    }
    if previous.is_none() {
        let mut entry = mine;
        entry.fields = applied;
        out.push(entry);
    }
    out.retain(|e| !e.fields.is_empty() || e.operation == Operation::Apply);
    Ok(Applied { object: merged, entries: out })
}

/// Upstream's 409 message for `conflicts`: `Apply failed with 1 conflict: conflict with
/// "m" using apps/v1: .spec.replicas`, and one cause per conflicting field.
pub fn conflict_message(conflicts: &[Conflict]) -> (String, Vec<Value>) {
    let n = conflicts.len();
    let detail = match conflicts {
        [one] => format!("conflict with {}: {}", one.manager, one.path),
        _ => {
            let mut managers: Vec<&str> = Vec::new();
            for c in conflicts {
                if !managers.contains(&c.manager.as_str()) {
                    managers.push(&c.manager);
                }
            }
            let mut text = String::from("conflicts with");
            if let [only] = managers.as_slice() {
                text.push_str(&format!(" {only}"));
                for c in conflicts {
                    text.push_str(&format!("\n- {}", c.path));
                }
            } else {
                for manager in managers {
                    text.push_str(&format!("\n{manager}:"));
                    for c in conflicts.iter().filter(|c| c.manager == manager) {
                        text.push_str(&format!("\n- {}", c.path));
                    }
                }
            }
            text
        }
    };
    let message =
        format!("Apply failed with {n} conflict{}: {detail}", if n == 1 { "" } else { "s" });
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager),
                "field": c.path.to_string(),
            })
        })
        .collect();
    (message, causes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::typed::tests::schema;
    use super::*;

    fn writer<'a>(manager: &'a str, time: &'a str) -> Writer<'a> {
        Writer { manager, api_version: "apps/v1", subresource: "", time }
    }

    #[test]
    fn apply_creates_owns_and_conflicts() {
        let schema = schema();
        let config = json!({"spec": {"replicas": 1, "containers": [{"name": "a", "image": "1"}]}});
        let first =
            apply(&schema, Some("root"), &json!({}), &config, &[], &writer("kubectl", "t1"), false)
                .expect("no conflicts on create");
        assert_eq!(first.object, config);
        assert_eq!(first.entries.len(), 1);

        // The same configuration again changes nothing, not even the time.
        let again = apply(
            &schema,
            Some("root"),
            &first.object,
            &config,
            &first.entries,
            &writer("kubectl", "t2"),
            false,
        )
        .expect("no conflicts");
        assert_eq!(again.entries, first.entries);

        // Another manager updates replicas: it takes the field.
        let mut entries = first.entries.clone();
        let mut updated = first.object.clone();
        updated["spec"]["replicas"] = json!(3);
        let set = typed::fields_of(&schema, Some("root"), &updated);
        let changed = typed::changed(&set, Some(&first.object), &updated);
        record_update(&mut entries, &writer("hpa", "t3"), &changed, &FieldSet::new());
        assert_eq!(entries.len(), 2);
        assert!(
            !entries[0]
                .fields
                .has(&[PathElement::Field("spec".into()), PathElement::Field("replicas".into())])
        );

        // Applying replicas 1 again conflicts with the updater...
        let conflicts = apply(
            &schema,
            Some("root"),
            &updated,
            &config,
            &entries,
            &writer("kubectl", "t4"),
            false,
        )
        .expect_err("conflicts");
        assert_eq!(conflicts.len(), 1);
        let (message, causes) = conflict_message(&conflicts);
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
        );
        assert_eq!(causes[0]["reason"], "FieldManagerConflict");
        // ...unless forced, which takes the field over.
        let forced = apply(
            &schema,
            Some("root"),
            &updated,
            &config,
            &entries,
            &writer("kubectl", "t4"),
            true,
        )
        .expect("forced");
        assert_eq!(forced.object["spec"]["replicas"], 1);
        assert_eq!(forced.entries.len(), 1, "the updater owned nothing else");

        // Applying without the container removes it (nobody else owns it).
        let smaller = json!({"spec": {"replicas": 1}});
        let shrunk = apply(
            &schema,
            Some("root"),
            &forced.object,
            &smaller,
            &forced.entries,
            &writer("kubectl", "t5"),
            false,
        )
        .expect("no conflicts");
        assert_eq!(shrunk.object, json!({"spec": {"replicas": 1, "containers": []}}));
    }

    #[test]
    fn equal_values_are_shared() {
        let schema = schema();
        let config = json!({"spec": {"replicas": 2}});
        let a = apply(&schema, Some("root"), &json!({}), &config, &[], &writer("a", "t1"), false)
            .expect("first");
        let b =
            apply(&schema, Some("root"), &a.object, &config, &a.entries, &writer("b", "t2"), false)
                .expect("same value: no conflict");
        assert_eq!(b.entries.len(), 2);
        // `a` stops applying replicas: `b` still owns it, so it stays.
        let a2 = apply(
            &schema,
            Some("root"),
            &b.object,
            &json!({"spec": {}}),
            &b.entries,
            &writer("a", "t3"),
            false,
        )
        .expect("no conflict");
        assert_eq!(a2.object["spec"]["replicas"], 2);
    }

    #[test]
    fn managed_fields_decode_and_validate() {
        let meta = json!({"managedFields": [{"manager": "m", "operation": "Update",
            "apiVersion": "v1", "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}}}}]});
        let Ok(Sent::Entries(entries)) = decode(meta.as_object()) else { panic!("decodes") };
        assert_eq!(encode(&entries), Some(meta["managedFields"].clone()));
        let reset = json!({"managedFields": [{}]});
        assert_eq!(decode(reset.as_object()), Ok(Sent::Reset));
        let bad = json!({"managedFields": [{"manager": "m", "operation": "Merge", "fieldsType": "FieldsV1"}]});
        assert_eq!(
            decode(bad.as_object()).map(|_| ()).map_err(|e| e.field),
            Err("metadata.managedFields[0].operation".to_owned())
        );
    }

    #[test]
    fn update_managers_are_capped() {
        let mut entries = Vec::new();
        for i in 0..12 {
            let mut set = FieldSet::new();
            set.insert(&[PathElement::Field(format!("f{i}"))]);
            let name = format!("m{i}");
            let time = format!("t{i:02}");
            record_update(&mut entries, &writer(&name, &time), &set, &FieldSet::new());
        }
        assert_eq!(entries.len(), 10);
        assert!(entries.iter().any(|e| e.manager == "m0-after-m1-after-m2"));
    }
}
