#!/usr/bin/env bash
# The container image's numbers: its size, and `kfpd serve` started from the image's
# root filesystem (chroot into it as user 65532, an empty environment but the
# settings given, /etc/hosts, /etc/resolv.conf and /dev's usual nodes added as the kubelet and the
# container runtime add them):
# start time until both ports are announced, and memory after start and after a
# burst of requests, on SQLite, MySQL/MariaDB and PostgreSQL (by host name
# `localhost`, so the static binary's resolver is exercised). Prints a markdown
# table; asserts nothing. Needs root (chroot) and the image from scripts/build-image.
#
#   bench/image.sh [TAG]      # default TAG: localhost/kfpd:dev
set -euo pipefail

cd "$(dirname "$0")/.."
tag="${1:-localhost/kfpd:dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kfpd-target}"
storage="${BUILDAH_ROOT:-$CARGO_TARGET_DIR/buildah}"
buildah_flags=(--root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
runs="${KFPD_BENCH_STARTS:-5}"

container="$(buildah "${buildah_flags[@]}" from "$tag")"
root="$(mktemp -d)"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
  buildah "${buildah_flags[@]}" rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mounted="$(buildah "${buildah_flags[@]}" mount "$container")"
cp -a "$mounted/." "$root/"
buildah "${buildah_flags[@]}" umount "$container" >/dev/null
cp /etc/hosts /etc/resolv.conf "$root/etc/"
mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"
# The device nodes every container runtime creates (kfpd reads /dev/urandom).
mkdir -p "$root/dev"
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 666 "$root/dev/zero" c 1 5
mknod -m 666 "$root/dev/random" c 1 8
mknod -m 666 "$root/dev/urandom" c 1 9

# What a workflow pod's kfpd-init container does: copy kfpd into a shared volume.
mkdir -p "$root/proc" "$root/kfpd" && chown 65532:65532 "$root/kfpd"
mount -t proc proc "$root/proc"
env -i "$(command -v chroot)" --userspec=65532:65532 "$root" /usr/local/bin/kfpd launcher --copy /kfpd/kfpd
copied="$(du -b "$root/kfpd/kfpd" | cut -f1)"
echo "launcher --copy from the image: $copied bytes copied" >&2

size="$(buildah "${buildah_flags[@]}" images --format '{{.Size}}' "$tag")"
archive="$CARGO_TARGET_DIR/kfpd-image.oci.tar"
binary_size="$(du -b "$root/usr/local/bin/kfpd" | cut -f1)"

python3 - "$root" "$runs" "$size" "$archive" "$binary_size" <<'EOF'
import json, os, shutil, statistics, subprocess, sys, time, urllib.request, uuid

root, runs, size, archive, binary_size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])

def kib(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0

def start(env):
    data = f"/var/lib/kfpd/bench-{uuid.uuid4().hex[:8]}"
    os.makedirs(root + data)
    os.chown(root + data, 65532, 65532)
    command = [shutil.which("chroot"), "--userspec=65532:65532", root, "/usr/local/bin/kfpd", "serve",
               "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--data-dir", data,
               "--executor", "none"]
    began = time.monotonic()
    child = subprocess.Popen(command, env={"KFPD_LOG": "warn", **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    http = grpc = None
    for line in child.stdout:
        if line.startswith("kfpd listening on http://"):
            http = line.split("on ", 1)[1].strip()
        if line.startswith("kfpd listening on grpc://"):
            grpc = line
        if http and grpc:
            break
    elapsed = time.monotonic() - began
    if not http:
        raise SystemExit(f"kfpd did not start: {child.stderr.read()}")
    return child, http, elapsed

def request(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/apis/v2beta1" + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status

def stop(child):
    child.terminate()
    child.wait(timeout=30)

backends = [("SQLite", {}, None)]
for name, env, drop in [
    ("MariaDB (localhost:3306)", {"DBCONFIG_HOST": "localhost", "DBCONFIG_PORT": "3306",
                                  "DBCONFIG_USER": "root"}, "mysql"),
    ("PostgreSQL (localhost:5432)", {"DB_DRIVER_NAME": "postgres",
                                     "DBCONFIG_POSTGRESQLCONFIG_HOST": "localhost",
                                     "DBCONFIG_POSTGRESQLCONFIG_USER": "postgres"}, "postgres"),
]:
    backends.append((name, env, drop))

rows = []
for name, env, kind in backends:
    times = []
    for attempt in range(runs):
        run_env = dict(env)
        database = f"kfpd_image_{uuid.uuid4().hex[:10]}"
        if kind == "mysql":
            run_env["DBCONFIG_DBNAME"] = database
        elif kind == "postgres":
            run_env["DBCONFIG_POSTGRESQLCONFIG_DBNAME"] = database
        child, base, elapsed = start(run_env)
        times.append(elapsed)
        if attempt == runs - 1:
            time.sleep(1)
            started_rss = kib(child.pid, "VmRSS")
            for i in range(200):
                request(base, "POST", "/experiments", {"display_name": f"e{i}"})
                request(base, "GET", "/experiments?page_size=50")
            loaded_rss = kib(child.pid, "VmRSS")
            peak = kib(child.pid, "VmHWM")
        stop(child)
        if kind == "mysql":
            subprocess.run(["mysql", "-h", "127.0.0.1", "-uroot", "-e", f"DROP DATABASE `{database}`"], check=False)
        elif kind == "postgres":
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE "{database}"'], check=False,
                           stdout=subprocess.DEVNULL)
    rows.append((name, statistics.median(times), min(times), started_rss, loaded_rss, peak))

archive_size = os.path.getsize(archive) if os.path.exists(archive) else 0
print(f"| image | value |\n|---|---:|")
print(f"| image size (uncompressed, buildah) | {size} |")
print(f"| OCI archive (compressed layer) | {archive_size / 1e6:.1f} MB |")
print(f"| kfpd binary (static, stripped) | {binary_size / 1e6:.1f} MB |")
print()
print(f"| backend (fresh database, migrations included) | start to both ports, median of {runs} (min) | RSS after start | RSS after 400 requests | peak RSS |")
print("|---|---:|---:|---:|---:|")
for name, median, low, started_rss, loaded_rss, peak in rows:
    print(f"| {name} | {median * 1000:.0f} ms ({low * 1000:.0f} ms) | {started_rss / 1024:.1f} MiB | {loaded_rss / 1024:.1f} MiB | {peak / 1024:.1f} MiB |")
EOF
