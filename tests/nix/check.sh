#!/usr/bin/env bash
# Evaluate the flake offline, with nixpkgs replaced by tests/nix/nixpkgs-stub, and check it
# against pyproject.toml, profiles/ and models.lock.json (tests/nix/consistency.py).
#
# What this proves: the flake evaluates; every package, app, check, dev shell and formatter
# instantiates for every system; each model package fetches exactly its lock-file pins; every
# pin is a hash Nix accepts; apps hold only models of the default group; checks.tests leaves
# out the tests marked for network and TensorFlow. What it does not prove: that anything builds or runs against the
# real nixpkgs (the stub's builders all fail; nothing is built here).
#
# Needs nix (2.8 or later) and python3 >= 3.11. Usage: tests/nix/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

export NIX_CONFIG=$'experimental-features = nix-command flakes\nbuild-users-group =\nsubstituters =\nsandbox = false'
python=${PYTHON:-python3}
stub=(--no-write-lock-file --override-input nixpkgs path:./tests/nix/nixpkgs-stub)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A git checkout shows Nix only tracked files: refuse to check a flake Nix would not see whole.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  untracked=$(git ls-files --others --exclude-standard -- flake.nix flake.lock nix tests/nix \
    models.lock.json profiles pyproject.toml)
  if [ -n "$untracked" ]; then
    echo "error: untracked files Nix cannot see (git add them):" $untracked >&2
    exit 1
  fi
fi

step() { echo "== $*"; }
quiet() { grep -v -e '^warning: Git tree' -e '^warning: not writing modified lock file' \
  -e '^evaluating flake\.\.\.$' -e "^• Updated input 'nixpkgs'" -e "^    'github:NixOS/nixpkgs/" -e '^  → ' >&2 || true; }

step "nix flake check --no-build (nixpkgs stubbed)"
nix flake check --no-build "${stub[@]}" . 2> >(quiet)

systems=$(nix eval --json "${stub[@]}" .#packages --apply builtins.attrNames 2> >(quiet))
step "systems: $systems"
for system in $(echo "$systems" | "$python" -c 'import json, sys; print(*json.load(sys.stdin))'); do
  step "$system: every app's program and every package's, check's, dev shell's derivation"
  nix eval --json "${stub[@]}" ".#apps.$system" \
    --apply 'as: builtins.mapAttrs (n: a: assert a.type == "app"; a.program) as' \
    >"$work/programs-$system.json" 2> >(quiet)
  for output in packages checks devShells; do
    nix eval --json "${stub[@]}" ".#$output.$system" \
      --apply 'ps: builtins.mapAttrs (n: p: p.drvPath) ps' >"$work/$output-$system.json" 2> >(quiet)
  done
  nix eval --raw "${stub[@]}" ".#formatter.$system.drvPath" >/dev/null 2> >(quiet)
  "$python" - "$work/programs-$system.json" <<'EOF'
import json, sys
programs = json.load(open(sys.argv[1]))
bad = [f"{name}: {path}" for name, path in programs.items()
       if not (path.startswith("/nix/store/") and path.endswith(f"/bin/{name}"))]
bad = [b for b in bad if not b.startswith("default:")]
if bad:
    sys.exit("error: app programs that are not their wrapper's bin/<app>: " + "; ".join(bad))
EOF
  cp "$work/programs-$system.json" "$work/apps.json"
done

step "each model package's fixed-output downloads against models.lock.json"
system=$(echo "$systems" | "$python" -c 'import json, sys; print(json.load(sys.stdin)[0])')
"$python" - "$work/packages-$system.json" >"$work/models.txt" <<'EOF'
import json, sys
print(*sorted(n[len("model-"):] for n in json.load(open(sys.argv[1])) if n.startswith("model-")))
EOF
echo '{' >"$work/model-drvs.json"
sep=""
for model in $(cat "$work/models.txt"); do
  printf '%s"%s": ' "$sep" "$model" >>"$work/model-drvs.json"
  nix show-derivation -r "${stub[@]}" ".#packages.$system.model-$model" \
    >>"$work/model-drvs.json" 2> >(quiet)
  sep=","
done
echo '}' >>"$work/model-drvs.json"

step "the models in each app's closure; the tests check's selection"
nix eval --json "${stub[@]}" ".#apps.$system" \
  --apply 'as: builtins.mapAttrs (n: a: builtins.attrNames (builtins.getContext a.program)) as' \
  >"$work/app-programs.json" 2> >(quiet)
echo '{' >"$work/app-closures.json"
sep=""
for app in $("$python" -c 'import json, sys; print(*json.load(open(sys.argv[1])))' "$work/app-programs.json"); do
  drv=$("$python" -c 'import json, sys; print(*json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$work/app-programs.json" "$app")
  printf '%s"%s": ' "$sep" "$app" >>"$work/app-closures.json"
  nix show-derivation -r $drv >>"$work/app-closures.json" 2> >(quiet)
  sep=","
done
echo '}' >>"$work/app-closures.json"
nix show-derivation "${stub[@]}" ".#checks.$system.tests" 2> >(quiet) | "$python" -c \
  'import json, sys; print(*[d["env"]["buildCommand"] for d in json.load(sys.stdin).values()])' \
  >"$work/tests-command.txt"

step "apps vs console scripts vs built-in profiles; lock and wheel pins; app models; test selection"
"$python" tests/nix/consistency.py --apps "$work/apps.json" \
  --model-derivations "$work/model-drvs.json" --app-closures "$work/app-closures.json" \
  --tests-command "$work/tests-command.txt"
