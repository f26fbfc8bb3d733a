#!/usr/bin/env bash
# Build the production image with buildah and check that it serves /healthz.
#
#   npm run container-check            (or: bash scripts/container-check.sh)
#
# Works without a Docker engine: buildah with --isolation chroot. When the
# Dockerfile's base image (ARG NODE_IMAGE) is neither in local storage nor
# pullable, a local stand-in of the same name is made: Debian bookworm
# (debootstrap, minbase) plus this machine's node and npm, with the `node`
# user (uid 1000) the official image has. Prints PASS or FAIL last; exit 0/1.
#
# Settings: KCOVD_IMAGE (tag to build, default localhost/kcovd:check),
# KCOVD_BASE_ROOTFS (debootstrap cache dir), KCOVD_CHECK_PORT (default: a free one),
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE=${KCOVD_IMAGE:-localhost/kcovd:check}
ROOTFS=${KCOVD_BASE_ROOTFS:-/var/tmp/kcovd-base-rootfs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=$(sed -n 's/^ARG NODE_IMAGE=//p' Dockerfile | head -n1)
WORK=$(mktemp -d)
CTR=""
RUN_PID=""

log() { printf '[container-check] %s\n' "$*" >&2; }
result() {
  local verdict=$1; shift
  printf 'container-check: %s: %s\n' "$verdict" "$*"
  [ "$verdict" = PASS ] && exit 0 || exit 1
}

# Stop the server (the buildah run we started and what it started, by pid), drop the container.
cleanup() {
  if [ -n "$RUN_PID" ]; then
    local pids="$RUN_PID" all="" p
    while [ -n "$pids" ]; do
      all="$all $pids"
      local next=""
      for p in $pids; do next="$next $(pgrep -P "$p" 2>/dev/null | tr '\n' ' ')"; done
      pids=$(echo $next)
    done
    for p in $all; do kill -TERM "$p" 2>/dev/null; done
    sleep 1
    for p in $all; do kill -KILL "$p" 2>/dev/null; done
    wait "$RUN_PID" 2>/dev/null
  fi
  [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v buildah >/dev/null || result FAIL "buildah is not installed (apt-get install -y buildah)"
[ -n "$BASE" ] || result FAIL "Dockerfile has no ARG NODE_IMAGE=<base image>"

# 1. The base image: local, pulled, or a stand-in made here.
make_base() {
  command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install -y debootstrap)"; return 1; }
  local node_bin npm_dir
  node_bin=$(command -v node) || { log "no node on this machine"; return 1; }
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  if [ ! -x "$ROOTFS/bin/sh" ]; then
    log "debootstrap bookworm (minbase) into $ROOTFS from $MIRROR"
    rm -rf "$ROOTFS.tmp"
    debootstrap --variant=minbase bookworm "$ROOTFS.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log" >&2; return 1; }
    rm -rf "$ROOTFS.tmp/var/cache/apt/archives/"*.deb "$ROOTFS.tmp/var/lib/apt/lists/"*
    mv "$ROOTFS.tmp" "$ROOTFS"
  fi
  log "stand-in $BASE: bookworm + $("$node_bin" --version) from $node_bin"
  local c
  c=$(buildah from scratch) || return 1
  buildah copy --quiet "$c" "$ROOTFS" / >/dev/null \
    && buildah copy --quiet "$c" "$node_bin" /usr/local/bin/node >/dev/null \
    && buildah copy --quiet "$c" "$npm_dir" /usr/local/lib/node_modules/npm >/dev/null \
    && buildah run --isolation chroot "$c" -- sh -c '
         ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm &&
         ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx &&
         groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node &&
         node --version && npm --version' >&2 \
    && buildah config --env NODE_VERSION="$("$node_bin" --version | tr -d v)" --cmd node "$c" \
    && buildah commit --quiet --format docker "$c" "$BASE" >/dev/null
  local rc=$?
  buildah rm "$c" >/dev/null 2>&1
  return $rc
}

if buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  log "base $BASE: in local storage"
elif timeout 60 buildah pull --quiet "$BASE" >/dev/null 2>"$WORK/pull.log"; then
  log "base $BASE: pulled"
else
  log "base $BASE: cannot pull ($(tail -n1 "$WORK/pull.log" | cut -c1-120)); making a local stand-in"
  make_base || result FAIL "could not make a local base image $BASE"
fi

# 2. Build. npm in the build talks to the registry through this machine's CA
#    bundle (an egress proxy may re-sign TLS): mounted for RUN steps only, never in a layer.
VOLS=()
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  printf 'cafile=/run/kcovd-ca.crt\n' >"$WORK/npmrc"
  VOLS=(--volume "/etc/ssl/certs/ca-certificates.crt:/run/kcovd-ca.crt:ro" --volume "$WORK/npmrc:/root/.npmrc:ro")
fi
log "building $IMAGE"
START=$(date +%s)
if ! buildah build --isolation chroot --format docker --layers "${VOLS[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log" >&2
  result FAIL "image build failed"
fi
log "built in $(( $(date +%s) - START ))s"

# 3. The image's configuration (docker format keeps HEALTHCHECK).
buildah inspect --type image "$IMAGE" >"$WORK/inspect.json" || result FAIL "cannot inspect $IMAGE"
conf() { node -e "const c=JSON.parse(require('fs').readFileSync('$WORK/inspect.json','utf8')).Docker.config; $1"; }
USER_=$(conf "console.log(c.User||'root')")
HOSTENV=$(conf "console.log((c.Env||[]).includes('HOST=0.0.0.0'))")
PORTS=$(conf "console.log(Object.keys(c.ExposedPorts||{}).join(' '))")
mapfile -t CMD < <(conf "for (const a of [...(c.Entrypoint||[]), ...(c.Cmd||[])]) console.log(a)")
mapfile -t HC < <(conf "const t=(c.Healthcheck||{}).Test||[]; const a=t[0]==='CMD-SHELL'?['sh','-c',t[1]]:t.slice(1); for (const x of a) console.log(x)")
SIZE=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n1)
BASE_SIZE=$(buildah images --format '{{.Size}}' "$BASE" | head -n1)
log "user=$USER_ ports=$PORTS cmd=${CMD[*]} size=$SIZE (base $BASE_SIZE)"
[ "$USER_" != root ] && [ "$USER_" != 0 ] || result FAIL "image runs as root"
[ "$HOSTENV" = true ] || result FAIL "HOST=0.0.0.0 not set in the image"
case " $PORTS " in *" 5268/tcp "*) ;; *) result FAIL "port 5268 not exposed" ;; esac
[ "${#HC[@]}" -gt 0 ] || result FAIL "no HEALTHCHECK in the image"
[ "${#CMD[@]}" -gt 0 ] || result FAIL "no CMD in the image"

# 4. Run the image's CMD on a free port (chroot isolation shares this host's
#    network) and wait for 200 from /healthz, then run the HEALTHCHECK command itself.
PORT=${KCOVD_CHECK_PORT:-$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")}
CTR=$(buildah from "$IMAGE") || result FAIL "buildah from $IMAGE failed"
log "running ${CMD[*]} with PORT=$PORT"
timeout 120 buildah run --isolation chroot --env PORT="$PORT" --env LOG_LEVEL=warn "$CTR" -- "${CMD[@]}" >"$WORK/run.log" 2>&1 &
RUN_PID=$!

STATUS=000
for _ in $(seq 1 60); do
  STATUS=$(node -e "require('http').get('http://127.0.0.1:$PORT/healthz',r=>{console.log(r.statusCode);process.exit(0)}).on('error',()=>{console.log('000')})")
  [ "$STATUS" = 200 ] && break
  kill -0 "$RUN_PID" 2>/dev/null || break
  sleep 0.5
done
if [ "$STATUS" != 200 ]; then
  tail -n 20 "$WORK/run.log" >&2
  result FAIL "/healthz on port $PORT never answered 200 (last: $STATUS)"
fi
log "GET /healthz -> 200"

if ! buildah run --isolation chroot --env PORT="$PORT" "$CTR" -- "${HC[@]}"; then
  result FAIL "the image's HEALTHCHECK command failed against the running server"
fi
log "HEALTHCHECK command -> exit 0"
UID_=$(buildah run --isolation chroot "$CTR" -- node -p 'process.getuid()' 2>/dev/null)
[ -n "$UID_" ] && [ "$UID_" != 0 ] || result FAIL "processes in the container run as uid '${UID_:-?}'"
log "processes run as uid $UID_"

result PASS "$IMAGE ($SIZE; base $BASE $BASE_SIZE) runs as $USER_ (uid $UID_) and answers 200 on /healthz (port $PORT)"
