"""Slow path of kfpd's pip front: runs pip for changes to this environment.

Called by bin/.kfpd-shim as `pip_shim.py <key> <pip args...>`, where <key> names the marker of
an `install` (empty for anything else). Holds an exclusive lock on .kfpd/pip.lock while pip runs,
so concurrent tasks of one image never install into the environment at the same time.

pip runs with the host's site directories hidden (KFPD_HOST_PACKAGES=hidden), so what a
component installs is installed here, never "already satisfied" by a host package that may go
away. Without a pip of its own the environment uses the host's pip package alone, through
.kfpd/borrowed on PYTHONPATH.

A marker is written only after pip succeeded, only for installs whose result depends on their
arguments alone, and only when every distribution the arguments name is installed here. It
lists the files that make those distributions (and any this install added) importable: their
.dist-info directories, which carry the version, and their top-level modules. The shim replays
the install only while all of them exist. Every real change first drops all markers, since it
may have replaced what they vouched for.
"""

import csv
import fcntl
import json
import os
import re
import subprocess
import sys
import sysconfig

STATE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.dirname(STATE)
MARKERS = os.path.join(STATE, "pip")
PYTHON = os.path.join(VENV, "bin", ".kfpd-python")
BORROWED = os.path.join(STATE, "borrowed")
SITE = sysconfig.get_paths()["purelib"]
# Files listed per distribution at most: a big package is vouched for by its first ones.
MAX_TOP_LEVEL = 32

# Options that make the outcome depend on files or places other than the arguments.
UNCACHEABLE = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable",
    "-t", "--target", "--prefix", "--root", "--src", "--user",
}
# Long options whose value is the next argument.
TAKES_VALUE = {
    "--index-url", "--extra-index-url", "--find-links", "--trusted-host", "--cache-dir",
    "--log", "--log-file", "--proxy", "--retries", "--timeout", "--cert", "--client-cert",
    "--platform", "--python-version", "--implementation", "--abi", "--upgrade-strategy",
    "--progress-bar", "--no-binary", "--only-binary", "--config-settings", "--global-option",
    "--exists-action", "--report", "--use-feature", "--use-deprecated", "--keyring-provider",
    "--root-user-action", "--python",
}
# Short options (after the uncacheable ones) whose value is the rest of the argument or the next.
SHORT_UNCACHEABLE = "rcet"
SHORT_VALUE = "ifC"
ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


def cacheable(args):
    """Whether a later identical `pip install` may be answered from the marker."""
    it = iter(args)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name in UNCACHEABLE:
            return False
        if arg.startswith("--"):
            if name in TAKES_VALUE and "=" not in arg:
                next(it, None)
            continue
        if arg.startswith("-") and len(arg) > 1:
            for i, ch in enumerate(arg[1:], start=1):
                if ch in SHORT_UNCACHEABLE:
                    return False
                if ch in SHORT_VALUE:
                    if i == len(arg) - 1:
                        next(it, None)
                    break
            continue
        # A requirement: names and version pins are stable; paths, URLs and archives are not.
        if "/" in arg or arg.startswith(".") or arg.endswith(ARCHIVES) or os.path.exists(arg):
            return False
    return True


def requirement_names(args):
    """Distribution names of the requirements among `install` arguments (options skipped)."""
    names = []
    it = iter(args)
    for arg in it:
        name = arg.split("=", 1)[0]
        if arg.startswith("--"):
            if name in TAKES_VALUE and "=" not in arg:
                next(it, None)
            continue
        if arg.startswith("-") and len(arg) > 1:
            for i, ch in enumerate(arg[1:], start=1):
                if ch in SHORT_VALUE:
                    if i == len(arg) - 1:
                        next(it, None)
                    break
            continue
        if not applies(arg):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", arg.strip())
        if match:
            names.append(canonical(match.group(0)))
    return names


def applies(requirement):
    """Whether a requirement's environment marker (`; python_version<"3.9"`) holds here;
    pip installs nothing for one that does not."""
    if ";" not in requirement:
        return True
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        # Cannot tell: vouch for nothing on its behalf, rather than never remembering.
        return False
    try:
        marker = Requirement(requirement).marker
    except Exception:
        return False
    return marker is None or marker.evaluate()


def canonical(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def installed():
    """Canonical name -> .dist-info directory names in this environment's site-packages."""
    found = {}
    try:
        entries = os.listdir(SITE)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.endswith(".dist-info"):
            name = entry[: -len(".dist-info")].rsplit("-", 1)[0]
            found.setdefault(canonical(name), []).append(entry)
    return found


def vouching_files(dist_info):
    """Paths relative to the environment that must exist for a distribution to be importable."""
    relative_site = os.path.relpath(SITE, VENV)
    paths = [os.path.join(relative_site, dist_info)]
    tops = []
    try:
        with open(os.path.join(SITE, dist_info, "RECORD"), newline="") as f:
            for row in csv.reader(f):
                if not row:
                    continue
                top = row[0].replace("\\", "/").split("/", 1)[0]
                if top in tops or top.startswith("..") or top.endswith(".dist-info"):
                    continue
                if top in ("", "__pycache__", "."):
                    continue
                tops.append(top)
    except OSError:
        pass
    for top in tops[:MAX_TOP_LEVEL]:
        paths.append(os.path.join(relative_site, top))
    return paths


def marker_lines(args, before):
    """What the marker of a successful install lists, or None when it must not be remembered."""
    after = installed()
    lines = []
    for name in requirement_names(args):
        entries = after.get(name)
        if not entries:
            # Named but not installed here (a dry run, an odd name): nothing to vouch for.
            return None
        for entry in entries:
            lines.extend(vouching_files(entry))
    for entries in after.values():
        for entry in entries:
            if entry not in before:
                lines.extend(vouching_files(entry))
    unique = []
    for line in lines:
        if line not in unique and "\n" not in line:
            unique.append(line)
    return unique


def still_provided(marker):
    try:
        with open(marker) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return False
    paths = [line for line in lines if line and not line.startswith("#")]
    return all(os.path.exists(os.path.join(VENV, path)) for path in paths)


def pip_environment():
    env = dict(os.environ)
    env["KFPD_HOST_PACKAGES"] = "hidden"
    env["PYTHONNOUSERSITE"] = "1"
    if not os.path.isdir(os.path.join(SITE, "pip")) and os.path.isdir(BORROWED):
        inherited = env.get("PYTHONPATH")
        env["PYTHONPATH"] = BORROWED + (os.pathsep + inherited if inherited else "")
    return env


def drop_markers():
    for name in os.listdir(MARKERS):
        try:
            os.unlink(os.path.join(MARKERS, name))
        except FileNotFoundError:
            pass


def main():
    key, args = sys.argv[1], sys.argv[2:]
    os.makedirs(MARKERS, exist_ok=True)
    marker = None
    if key.isalnum() and args[:1] == ["install"] and cacheable(args[1:]):
        marker = os.path.join(MARKERS, key)
    with open(os.path.join(STATE, "pip.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker and still_provided(marker):
            return 0
        drop_markers()
        before = {entry for entries in installed().values() for entry in entries}
        code = subprocess.call([PYTHON, "-m", "pip"] + args, env=pip_environment())
        lines = marker_lines(args[1:], before) if code == 0 and marker else None
        if lines is not None:
            tmp = "%s.%d.tmp" % (marker, os.getpid())
            with open(tmp, "w") as f:
                f.write("# pip %s\n" % json.dumps(args))
                f.write("".join(line + "\n" for line in lines))
            os.replace(tmp, marker)
        return code


if __name__ == "__main__":
    sys.exit(main())
