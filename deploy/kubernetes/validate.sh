#!/usr/bin/env bash
# Validates every manifest (*.yaml) in DIR (default: this script's directory) against
# Kubernetes' OpenAPI schemas with kubernetes-validate (requirements.txt), offline and in
# strict mode: a field the schema does not know is an error, as are a kind or apiVersion it
# has no schema for, a duplicate key and a file with no resource in it.
#
#   bash deploy/kubernetes/validate.sh [DIR]
#
# Exit code: 0 when every manifest is valid, 1 when one is not, 2 when kubernetes-validate
# is not installed.
set -euo pipefail

dir=${1:-$(dirname "$0")}
# The oldest Kubernetes these manifests are for (the preStop `sleep` action is on by default
# from 1.30) and the newest whose schemas kubernetes-validate ships.
versions=(1.30.0 1.37.0)

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "kubernetes-validate is not installed: python3 -m pip install -r deploy/kubernetes/requirements.txt" >&2
  exit 2
fi

shopt -s nullglob
files=("$dir"/*.yaml)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no manifests (*.yaml) in $dir" >&2
  exit 1
fi

exec python3 - "${versions[*]}" "${files[@]}" <<'PY'
import sys

import kubernetes_validate
import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; kubectl refuses them, and so does this."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


versions = sys.argv[1].split()
failed = 0
for path in sys.argv[2:]:
    try:
        with open(path) as f:
            resources = [r for r in yaml.load_all(f, Loader=UniqueKeyLoader) if r is not None]
    except yaml.YAMLError as err:
        print(f"FAIL {path}: not valid YAML: {err}")
        failed += 1
        continue
    if not resources:
        print(f"FAIL {path}: no resource in it")
        failed += 1
        continue
    for resource in resources:
        if not isinstance(resource, dict):
            print(f"FAIL {path}: a document is not a mapping")
            failed += 1
            continue
        name = f"{resource.get('kind')}/{(resource.get('metadata') or {}).get('name')}"
        problems = []
        for version in versions:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path) or "(top level)"
                problems.append(f"Kubernetes {version}: {where}: {err.message}")
            except (kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError) as err:
                problems.append(f"Kubernetes {version}: {err.message}")
        if problems:
            failed += 1
            for problem in problems:
                print(f"FAIL {path}: {name}: {problem}")
        else:
            print(f"ok   {path}: {name} (Kubernetes {', '.join(versions)})")

print(f"kubernetes-validate {kubernetes_validate.__version__}, strict: "
      + ("all manifests valid" if failed == 0 else f"{failed} invalid"))
sys.exit(1 if failed else 0)
PY
