#!/bin/sh
# Front for this environment's python, python3, pip and pip3, written by kfpd.
# A `pip install` whose exact arguments already succeeded here exits at once (no pip start-up,
# no network) when every file its marker lists is still in place; other installs and
# uninstalls go through .kfpd/pip_shim.py, which serialises changes to the environment and
# runs pip on the environment alone. Everything else runs the real interpreter.
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
    marker=$venv/.kfpd/pip/$key
    if [ -n "$key" ] && [ -f "$marker" ]; then
        # What the install provided must still be there: a missing file means pip runs again.
        present=yes
        while IFS= read -r path; do
            case $path in
            '' | '#'*) continue ;;
            esac
            if ! [ -e "$venv/$path" ]; then
                present=
                break
            fi
        done <"$marker"
        if [ -n "$present" ]; then
            exit 0
        fi
    fi
    exec "$venv/bin/.kfpd-python" "$venv/.kfpd/pip_shim.py" "$key" install "$@"
fi
for arg; do
    case $arg in
    install | uninstall) exec "$venv/bin/.kfpd-python" "$venv/.kfpd/pip_shim.py" "" "$@" ;;
    esac
done
exec "$venv/bin/.kfpd-python" -m pip "$@"
