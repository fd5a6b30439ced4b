#!/bin/sh
# Front for this environment's python, python3, pip and pip3, written by kfpd.
# A `pip install` whose exact arguments already succeeded here exits at once (no pip start-up,
# no network); other installs and uninstalls go through .kfpd/pip_shim.py, which serialises
# changes to the environment. Everything else runs the real interpreter.
venv=@VENV@
case ${0##*/} in
pip*) ;;
*)
    if [ "$1" != -m ] || [ "$2" != pip ]; then
        exec "$venv/bin/.kfpd-python" "$@"
    fi
    shift 2
    ;;
esac
key=
if [ "$1" = install ]; then
    shift
    if command -v sha256sum >/dev/null 2>&1; then
        key=$(printf '%s\0' "$@" | sha256sum)
    else
        key=c$(printf '%s\0' "$@" | cksum)
    fi
    key=${key%% *}
    if [ -n "$key" ] && [ -e "$venv/.kfpd/pip/$key" ]; then
        exit 0
    fi
    exec "$venv/bin/.kfpd-python" "$venv/.kfpd/pip_shim.py" "$key" install "$@"
fi
for arg; do
    case $arg in
    install | uninstall) exec "$venv/bin/.kfpd-python" "$venv/.kfpd/pip_shim.py" "" "$@" ;;
    esac
done
exec "$venv/bin/.kfpd-python" -m pip "$@"
