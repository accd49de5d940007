//! Sets of field paths and their `FieldsV1` form (`{"f:spec":{"f:replicas":{}}}`), as
//! structured-merge-diff writes them: `f:<name>` for a field or map key, `k:<json>` for an
//! item of a map-keyed list, `v:<json>` for an item of a set list, `i:<n>` for a position, and
//! `.` for the node itself when it has children too.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The derived order (fields, then keys, values, positions) is the order
/// FieldsV1 lists them in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An item of a map-keyed list: its key fields as a JSON object with sorted keys.
    Key(String),
    /// An item of a set list: its value as JSON.
    Value(String),
    /// A position in a list that has no keys.
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(text: &str) -> Result<Self, String> {
        let (kind, rest) =
            text.split_once(':').ok_or_else(|| format!("invalid path element {text:?}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_owned())),
            "k" => {
                let keys: Map<String, Value> = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid key path element {text:?}: {e}"))?;
                Ok(PathElement::Key(Value::Object(keys).to_string()))
            }
            "v" => {
                let value: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value path element {text:?}: {e}"))?;
                Ok(PathElement::Value(value.to_string()))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index path element {text:?}")),
            _ => Err(format!("unknown path element kind {kind:?} in {text:?}")),
        }
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="app"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<PathElement>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.0 {
            match element {
                PathElement::Field(name) => write!(f, ".{name}")?,
                PathElement::Key(json) => {
                    let keys: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
                    let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?;
                }
                PathElement::Value(json) => write!(f, "[={json}]")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A set of paths, as a tree: a node is a member when the path to it is in the set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    pub fn is_member(&self) -> bool {
        self.member
    }

    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// The subtree at `element`, created when missing.
    pub fn child_mut(&mut self, element: PathElement) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    pub fn mark(&mut self) {
        self.member = true;
    }

    /// The subtree at `path`.
    pub fn child_path(&self, path: &[PathElement]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.children.get(first)?.child_path(rest),
        }
    }

    /// Whether `path` is in the set.
    #[cfg(test)]
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.child_mut(first.clone()).insert(rest),
        }
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.child_mut(element.clone()).union(child);
        }
    }

    /// Removes every path of `other`.
    pub fn difference(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                mine.difference(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    /// The paths in both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { member: self.member && other.member, children: BTreeMap::new() };
        for (element, mine) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = mine.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Every path in the set, depth first.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        if self.member {
            out.push(Path(prefix.clone()));
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            map.insert(element.encode(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Reads FieldsV1 JSON.
    pub fn from_fields_v1(value: &Value) -> Result<Self, String> {
        let mut set = FieldSet::new();
        set.read(value, 0)?;
        // The root is never a member of its own set.
        set.member = false;
        Ok(set)
    }

    fn read(&mut self, value: &Value, depth: usize) -> Result<(), String> {
        if depth > 128 {
            return Err("fieldsV1 nests too deep".into());
        }
        let Value::Object(map) = value else {
            return Err(format!("expected an object in fieldsV1, got {value}"));
        };
        if map.is_empty() {
            self.member = true;
        }
        for (key, child) in map {
            if key == "." {
                self.member = true;
                continue;
            }
            let element = PathElement::decode(key)?;
            self.child_mut(element).read(child, depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let v1 = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}},
                }}},
                "f:finalizers": {"v:\"a\"": {}},
            },
        });
        let set = FieldSet::from_fields_v1(&v1).expect("parses");
        assert_eq!(set.to_fields_v1(), v1);
        assert!(
            set.has(&[PathElement::Field("spec".into()), PathElement::Field("replicas".into())])
        );
        assert!(!set.has(&[PathElement::Field("spec".into())]));
    }

    #[test]
    fn paths_print_as_upstream() {
        let path = Path(vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(json!({"name": "app"}).to_string()),
            PathElement::Field("image".into()),
        ]);
        assert_eq!(path.to_string(), ".spec.containers[name=\"app\"].image");
        let port = Path(vec![PathElement::Key(
            json!({"containerPort": 80, "protocol": "TCP"}).to_string(),
        )]);
        assert_eq!(port.to_string(), "[containerPort=80,protocol=\"TCP\"]");
    }

    #[test]
    fn bad_fields_v1_is_refused() {
        assert!(FieldSet::from_fields_v1(&json!({"x:spec": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:spec": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_err());
    }

    fn element() -> impl Strategy<Value = PathElement> {
        prop_oneof![
            "[a-c]{1,2}".prop_map(PathElement::Field),
            "[a-c]{1,2}".prop_map(|k| PathElement::Key(json!({"name": k}).to_string())),
            (0usize..3).prop_map(PathElement::Index),
        ]
    }

    fn set() -> impl Strategy<Value = FieldSet> {
        prop::collection::vec(prop::collection::vec(element(), 1..4), 0..8).prop_map(|paths| {
            let mut s = FieldSet::new();
            for p in paths {
                s.insert(&p);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn set_algebra_holds(a in set(), b in set()) {
            let mut union = a.clone();
            union.union(&b);
            let both = a.intersection(&b);
            let mut only_a = a.clone();
            only_a.difference(&b);
            for p in a.paths() {
                prop_assert!(union.has(&p.0));
                prop_assert_eq!(both.has(&p.0), b.has(&p.0));
                prop_assert_eq!(only_a.has(&p.0), !b.has(&p.0));
            }
            prop_assert_eq!(FieldSet::from_fields_v1(&a.to_fields_v1()).expect("parses"), a);
        }
    }
}
