#!/usr/bin/env python3
"""Generate crates/apiserver/src/protobuf/table.rs: the message table the API server's protobuf
body decoder walks (see crates/apiserver/src/protobuf/mod.rs).

Three inputs, each for what it knows best:

* k8s-pb 0.9 (prost code generated from upstream's generated.proto files): every message, its
  fields' tags, wire kinds, repeated/map shapes and message types, and the kinds with their
  apiVersion (`impl crate::Resource`). Found in the cargo registry (`cargo fetch` puts it there:
  it is a dev-dependency of krust-apiserver).
* upstream's Go API types at the matching release (k8s.io/api, apimachinery,
  apiextensions-apiserver, kube-aggregator, metrics at v0.35.x): the exact JSON name of each
  protobuf tag, `,inline` embeddings (Volume.volumeSource, ...), whether a field is a Go pointer
  and `omitempty` (a non-pointer field is always on the wire, a zero one must not appear in the
  JSON, just as Go's encoding/json leaves it out), `type X []string` list wrappers, group names.
* k8s-openapi 0.29 (`v1_35`): the JSON property names of every definition, to cross-check the
  Go names and to name fields the Go sources miss (then lowerCamelCase of the prost name).

Usage (from the repository root):

    mkdir -p /tmp/k8s-go
    for r in api apimachinery apiextensions-apiserver kube-aggregator metrics; do
      git clone -q --depth 1 --branch v0.35.7 https://github.com/kubernetes/$r /tmp/k8s-go/$r
    done
    python3 scripts/gen-protobuf-table.py --go-src /tmp/k8s-go \\
      > crates/apiserver/src/protobuf/table.rs

Diagnostics (unmatched fields, name disagreements) go to stderr.
"""

import argparse
import glob
import os
import re
import sys
from collections import defaultdict

# ---------------------------------------------------------------------------------------------
# inputs


def registry_crate(name):
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    hits = sorted(glob.glob(os.path.join(home, "registry/src/*", name)))
    if not hits:
        sys.exit(f"{name} not in the cargo registry: run `cargo fetch` first")
    return hits[-1]


PROST_ATTR = re.compile(r"#\[prost\((.*)\)\]")
FIELD_LINE = re.compile(r"pub (?:r#)?(\w+): (.+),$")
STRUCT_LINE = re.compile(r"pub struct (\w+) \{")
RESOURCE_IMPL = re.compile(r"impl crate::Resource for (\w+) \{")
API_VERSION = re.compile(r'const API_VERSION: &\'static str = "([^"]*)";')


def proto_package(module):
    """k8s-pb module path (list) -> upstream proto package."""
    return "k8s.io." + ".".join(module)


def resolve_type(module, rust_type):
    """A prost field type -> (module, message name) of the message it names."""
    t = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::boxed::Box<", "::prost::alloc::vec::Vec<"):
        if t.startswith(wrapper):
            t = t[len(wrapper) : -1]
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = t[len("::prost::alloc::collections::BTreeMap<") : -1]
        t = inner.split(",", 1)[1].strip()
    parts = t.split("::")
    here = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        here.pop()
    if parts and parts[0] == "crate":
        parts.pop(0)
        here = []
    return here + parts[:-1], parts[-1]


def parse_k8s_pb(src):
    """-> messages {full name: {...}}, resource api versions {package: apiVersion}"""
    messages = {}
    api_versions = {}
    for path in sorted(glob.glob(os.path.join(src, "**/mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), src).split(os.sep)
        lines = open(path, encoding="utf-8").read().splitlines()
        current = None
        attr = None
        pending = ""
        resource = False
        for line in lines:
            s = line.strip()
            m = STRUCT_LINE.match(s) if line.startswith("pub struct") else None
            if m:
                current = {"module": module, "rust": m.group(1), "fields": []}
                messages[proto_package(module) + "." + m.group(1)] = current
                continue
            if line.startswith("}"):
                current = None
                resource = False
                continue
            if RESOURCE_IMPL.match(line):
                resource = True
                continue
            if resource:
                m = API_VERSION.search(s)
                if m:
                    old = api_versions.setdefault(proto_package(module), m.group(1))
                    if old != m.group(1):
                        sys.exit(f"two apiVersions in {module}: {old}, {m.group(1)}")
                continue
            if current is None:
                continue
            m = PROST_ATTR.match(s)
            if m:
                attr = m.group(1)
                continue
            if attr is not None:
                # rustfmt splits long field declarations over several lines
                pending = (pending + " " + s).strip() if pending else s
                if not pending.endswith(",") or pending.count("<") != pending.count(">"):
                    continue
                pending = pending.replace("< ", "<").replace(", >", ">")
                m = FIELD_LINE.match(pending)
                if not m:
                    sys.exit(f"cannot parse field {pending!r} in {module}")
                current["fields"].append(parse_field(module, attr, m.group(1), m.group(2)))
                attr = None
                pending = ""
    return messages, api_versions


SCALARS = {"string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "Int32", "int64": "Int64", "double": "Double"}


def parse_field(module, attr, name, rust_type):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    field = {"tag": tag, "prost": name, "shape": "one", "ty": None, "msg": None}
    m = re.match(r'btree_map = "string, (\w+)"', attr)
    if m:
        field["shape"] = "map"
        kind = m.group(1)
    else:
        kind = attr.split(",")[0].strip()
        kind = kind.split("=")[0].strip()
        if re.search(r"\brepeated\b", attr):
            field["shape"] = "repeated"
    if kind == "message":
        field["ty"] = "Msg"
        field["msg"] = resolve_type(module, rust_type)
    elif kind in SCALARS:
        field["ty"] = SCALARS[kind]
    else:
        sys.exit(f"unknown prost kind {kind!r} in {module} {name}")
    return field


GO_STRUCT = re.compile(r"^type (\w+) struct \{")
GO_LIST_TYPE = re.compile(r"^type (\w+) \[\](\w+)\s*$")
GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")
GO_GROUP = re.compile(r"\+groupName=([\w.\-]*)")
GO_GROUP_CONST = re.compile(r'GroupName\s*=\s*"([^"]*)"')


def go_dir(go_src, module):
    """k8s-pb module -> directory of the Go package (api/core/v1, apimachinery/pkg/apis/meta/v1)."""
    return os.path.join(go_src, module[0].replace("_", "-"), *module[1:])


def parse_go_package(directory):
    """-> structs {lower name: (Go name, {tag: info})}, list wrappers {lower name: Go name},
    group name or None"""
    structs = {}
    lists = {}
    group = None
    if not os.path.isdir(directory):
        return structs, lists, group
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        base = os.path.basename(path)
        if base.endswith("_test.go") or base.startswith("zz_generated") or base.endswith(".pb.go"):
            continue
        text = open(path, encoding="utf-8").read()
        m = GO_GROUP.search(text)
        if m and group is None:
            group = m.group(1)
        m = GO_GROUP_CONST.search(text)
        if m and group is None and base == "register.go":
            group = m.group(1)
        current = None
        for line in text.splitlines():
            if current is None:
                m = GO_STRUCT.match(line)
                if m:
                    current = {}
                    structs[m.group(1).lower()] = (m.group(1), current)
                    continue
                m = GO_LIST_TYPE.match(line)
                if m:
                    lists[m.group(1).lower()] = m.group(1)
                continue
            if line.startswith("}"):
                current = None
                continue
            if line.lstrip().startswith("//"):
                continue
            m = GO_FIELD.match(line)
            if not m:
                continue
            go_type, tags = m.group(2), m.group(3)
            pb = re.search(r'protobuf:"([^"]*)"', tags)
            js = re.search(r'json:"([^"]*)"', tags)
            if not pb or pb.group(1) == "-":
                continue
            parts = pb.group(1).split(",")
            tag = int(parts[1])
            proto_name = next((p[5:] for p in parts if p.startswith("name=")), "")
            json_opts = js.group(1).split(",") if js else [""]
            current[tag] = {
                # no json tag: Go would use the field name; the proto name is the closest we have
                "json": json_opts[0] or proto_name,
                "inline": "inline" in json_opts[1:],
                "omitempty": "omitempty" in json_opts[1:],
                "pointer": go_type.startswith("*"),
            }
    return structs, lists, group


OPENAPI_DEF = re.compile(r"^// Generated from definition ([\w.\-]+)")
OPENAPI_KEY = re.compile(r'^\s*"([^"]+)" => Field::Key_')


def parse_openapi(src):
    """-> {definition name lowercased: set of JSON keys}"""
    defs = {}
    for path in glob.glob(os.path.join(src, "**/*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            m = OPENAPI_DEF.match(first)
            if not m:
                continue
            keys = set()
            for line in f:
                k = OPENAPI_KEY.match(line)
                if k:
                    keys.add(k.group(1))
        defs[m.group(1).lower()] = keys
    return defs


def openapi_name(module, rust):
    return ("io.k8s." + module[0].replace("_", "-") + "." + ".".join(module[1:]) + "." + rust).lower()


def normalise(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# ---------------------------------------------------------------------------------------------
# special messages: upstream types whose JSON form is not their protobuf structure (keyed by
# upstream name; the walker reads their fields by tag, so the layouts are checked here)

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
SPECIAL = {
    META + "Time": ("Time", {1: "Int64", 2: "Int32"}),
    META + "MicroTime": ("MicroTime", {1: "Int64", 2: "Int32"}),
    META + "Duration": ("Duration", {1: "Int64"}),
    META + "FieldsV1": ("RawJson", {1: "Bytes"}),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": ("Quantity", {1: "Str"}),
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": ("Quantity", {1: "Str"}),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": ("IntOrString", {1: "Int64", 2: "Int32", 3: "Str"}),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": ("RawJson", {1: "Bytes"}),
}
for v in ("v1", "v1beta1"):
    ext = f"k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{v}."
    SPECIAL[ext + "JSON"] = ("RawJson", {1: "Bytes"})
    SPECIAL[ext + "JSONSchemaPropsOrArray"] = ("SchemaOrArray", {1: "Msg", 2: "Msg"})
    SPECIAL[ext + "JSONSchemaPropsOrBool"] = ("SchemaOrBool", {1: "Bool", 2: "Msg"})
    SPECIAL[ext + "JSONSchemaPropsOrStringArray"] = ("SchemaOrStringArray", {1: "Msg", 2: "Str"})


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-pb", help="k8s-pb-0.9.x/src (default: the cargo registry)")
    ap.add_argument("--k8s-openapi", help="k8s-openapi-0.29.x/src/v1_35 (default: the cargo registry)")
    ap.add_argument(
        "--go-src",
        required=True,
        help="folder with api/, apimachinery/, apiextensions-apiserver/, kube-aggregator/, metrics/ at v0.35.x",
    )
    args = ap.parse_args()
    pb_src = args.k8s_pb or os.path.join(registry_crate("k8s-pb-0.9.*"), "src")
    openapi_src = args.k8s_openapi or os.path.join(registry_crate("k8s-openapi-0.29.*"), "src", "v1_35")

    pb_messages, resource_versions = parse_k8s_pb(pb_src)
    openapi = parse_openapi(openapi_src)
    go_cache = {}

    def go_package(module):
        key = tuple(module)
        if key not in go_cache:
            go_cache[key] = parse_go_package(go_dir(args.go_src, module))
        return go_cache[key]

    # Upstream message names (prost changed their case: APIService -> ApiService, JSON -> Json).
    stats = defaultdict(int)
    upstream = {}
    for pb_name, msg in pb_messages.items():
        structs, lists, _ = go_package(msg["module"])
        go = structs.get(msg["rust"].lower())
        go_name = go[0] if go else lists.get(msg["rust"].lower())
        if go_name is None:
            stats["message-without-go"] += 1
            print(f"note: {pb_name}: no Go type, keeping the prost name", file=sys.stderr)
        upstream[pb_name] = proto_package(msg["module"]) + "." + (go_name or msg["rust"])
    names = sorted(upstream.values())
    if len(set(names)) != len(names):
        sys.exit("two messages with one upstream name")
    index = {n: i for i, n in enumerate(names)}
    by_upstream = {upstream[n]: m for n, m in pb_messages.items()}

    rows = []
    for name in names:
        msg = by_upstream[name]
        module, rust = msg["module"], msg["rust"]
        structs, lists, _ = go_package(module)
        go_fields = structs.get(rust.lower(), (None, None))[1]
        keys = openapi.get(openapi_name(module, rust))
        by_norm = {normalise(k): k for k in (keys or ())}
        special = "Plain"
        if name in SPECIAL:
            special, layout = SPECIAL[name]
            got = {f["tag"]: f["ty"] for f in msg["fields"]}
            if got != layout:
                sys.exit(f"{name}: expected fields {layout}, k8s-pb has {got}")
        elif rust.lower() in lists:
            if [(f["tag"], f["shape"]) for f in msg["fields"]] != [(1, "repeated")]:
                sys.exit(f"{name}: a Go list type whose message is not one repeated field 1")
            special = "List"
        fields = []
        for f in sorted(msg["fields"], key=lambda f: f["tag"]):
            go = (go_fields or {}).get(f["tag"])
            flags = []
            if f["shape"] == "repeated":
                flags.append("REPEATED")
            elif f["shape"] == "map":
                flags.append("MAP")
            if special != "Plain":
                json = ""  # read by tag
            elif go is not None:
                stats["go"] += 1
                json = go["json"]
                if go["inline"]:
                    flags.append("INLINE")
                    json = ""
                elif go["omitempty"] and not go["pointer"] and f["shape"] == "one" and f["ty"] != "Msg":
                    flags.append("OMIT_EMPTY")
                if keys is not None and json and json not in keys:
                    stats["go-name-not-in-openapi"] += 1
                    print(f"note: {name}.{json} (tag {f['tag']}) is not a k8s-openapi property", file=sys.stderr)
            elif normalise(f["prost"]) in by_norm:
                stats["openapi"] += 1
                json = by_norm[normalise(f["prost"])]
            else:
                stats["guessed"] += 1
                json = lower_camel(f["prost"])
                print(f"note: {name} tag {f['tag']}: no Go or OpenAPI name, using {json!r}", file=sys.stderr)
            if f["ty"] == "Msg":
                target = upstream.get(proto_package(f["msg"][0]) + "." + f["msg"][1])
                if target is None:
                    sys.exit(f"{name}.{f['prost']}: unknown message {f['msg']}")
                ty = f"Msg({index[target]})"
            else:
                ty = f["ty"]
            fields.append((f["tag"], json, ty, " | ".join(flags) or "0"))
        rows.append((name, special, fields))

    # apiVersion of each package: the kinds k8s-pb marks as resources, else the Go group name.
    versions = {}
    for name in names:
        module = by_upstream[name]["module"]
        package = proto_package(module)
        if package in versions:
            continue
        api_version = resource_versions.get(package)
        _, _, group = go_package(module)
        if group is not None and re.fullmatch(r"v\d+((alpha|beta)\d+)?", module[-1]):
            from_go = f"{group}/{module[-1]}" if group else module[-1]
            if api_version is not None and api_version != from_go:
                sys.exit(f"{package}: k8s-pb says {api_version}, Go says {from_go}")
            api_version = from_go
        if api_version is not None:
            versions[package] = api_version
    version_rows = sorted((v, p) for p, v in versions.items())
    seen = [v for v, _ in version_rows]
    if len(set(seen)) != len(seen):
        sys.exit("an apiVersion served by two packages")

    print(
        f"fields: {stats['go']} named from Go, {stats['openapi']} from k8s-openapi, {stats['guessed']} guessed; "
        f"{stats['go-name-not-in-openapi']} Go names missing in k8s-openapi; "
        f"{stats['message-without-go']} messages without a Go type; "
        f"{len(rows)} messages, {len(version_rows)} apiVersions",
        file=sys.stderr,
    )
    emit(rows, version_rows)


HEADER = """\
// @generated by scripts/gen-protobuf-table.py from k8s-pb 0.9 (message structure), upstream's Go
// API types v0.35.x (JSON names, inline, omitempty; v0.35.0 and v0.35.7 give the same table)
// and k8s-openapi 0.29 v1_35 (names cross-checked: all agree).
// Do not edit by hand. To regenerate (from the repository root):
//
//     mkdir -p /tmp/k8s-go
//     for r in api apimachinery apiextensions-apiserver kube-aggregator metrics; do
//       git clone -q --depth 1 --branch v0.35.7 https://github.com/kubernetes/$r /tmp/k8s-go/$r
//     done
//     python3 scripts/gen-protobuf-table.py --go-src /tmp/k8s-go \\
//       > crates/apiserver/src/protobuf/table.rs
//
// (k8s-pb and k8s-openapi are read from the cargo registry; `cargo fetch` puts them there.)

//! The message table: every upstream protobuf message, sorted by full name, with its fields
//! sorted by tag. `Msg(n)` is the index of a field's message type in [`MESSAGES`].

use super::schema::Ty::*;
use super::schema::{INLINE, MAP, Message, OMIT_EMPTY, REPEATED, Special, field, message};
"""


def emit(rows, version_rows):
    out = [HEADER]
    out.append(f"/// apiVersion → protobuf package of its kinds.")
    out.append(f"pub(super) static API_VERSIONS: [(&str, &str); {len(version_rows)}] = [")
    for v, p in version_rows:
        out.append(f'    ("{v}", "{p}"),')
    out.append("];")
    out.append("")
    out.append(f"pub(super) static MESSAGES: [Message; {len(rows)}] = [")
    for i, (name, special, fields) in enumerate(rows):
        if not fields:
            out.append(f'    message("{name}", Special::{special}, &[]), // {i}')
            continue
        out.append(f'    message("{name}", Special::{special}, &[ // {i}')
        for tag, json, ty, flags in fields:
            out.append(f'        field({tag}, "{json}", {ty}, {flags}),')
        out.append("    ]),")
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
