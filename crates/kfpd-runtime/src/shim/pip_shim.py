"""Slow path of kfpd's pip front: runs pip for changes to this environment.

Called by bin/.kfpd-shim as `pip_shim.py <key> <pip args...>`, where <key> names the marker of
an `install` (empty for anything else). Holds an exclusive lock on .kfpd/pip.lock while pip runs,
so concurrent tasks of one image never install into the environment at the same time. A marker
is written only after pip succeeded and only for installs whose result depends on their
arguments alone; every real change first drops all markers, since it may have replaced what
they vouched for.
"""

import fcntl
import os
import subprocess
import sys

STATE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.dirname(STATE)
MARKERS = os.path.join(STATE, "pip")
PYTHON = os.path.join(VENV, "bin", ".kfpd-python")

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
        if marker and os.path.exists(marker):
            return 0
        drop_markers()
        code = subprocess.call([PYTHON, "-m", "pip"] + args)
        if code == 0 and marker:
            tmp = "%s.%d.tmp" % (marker, os.getpid())
            with open(tmp, "w") as f:
                f.write("\n".join(args) + "\n")
            os.replace(tmp, marker)
        return code


if __name__ == "__main__":
    sys.exit(main())
