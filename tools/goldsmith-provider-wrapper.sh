#!/bin/sh
# goldsmith's dynamic-provider plugin (installed by scripts/setup.sh as .venv/bin/pulumi-resource-pulumi-python,
# next to a hard link of the pulumi CLI, so the CLI takes it as its bundled plugin). It runs the provider as
# `python -u -m goldsmith_provider.dynamic.serve`: the pulumi.dynamic server plus a real Cancel and SIGINT/SIGTERM
# handling that clean up running builds (see provider/goldsmith_provider/dynamic/serve.py); `exec`, so the python
# process is the plugin process the engine signals. Without goldsmith in the project's virtualenv it runs plain
# `pulumi.dynamic`; uv and poetry toolchains go to the upstream script.
UPSTREAM=@UPSTREAM@
case ${PULUMI_RUNTIME_TOOLCHAIN:-pip} in
    pip | "") ;;
    *) exec "$UPSTREAM" "$@" ;;
esac
if [ -n "${PULUMI_RUNTIME_VIRTUALENV:-}" ]; then
    venv=${PULUMI_RUNTIME_VIRTUALENV%/}
    case $venv in
        /*) ;;
        *)
            # relative to the project root, not the program directory (pulumi/pulumi#7061)
            dir=$PWD
            while [ "$dir" != / ] && [ ! -f "$dir/Pulumi.yaml" ] && [ ! -f "$dir/Pulumi.yml" ]; do dir=$(dirname "$dir"); done
            if [ -d "$PWD/$venv" ] || [ "$dir" = / ]; then venv=$PWD/$venv; else venv=$dir/$venv; fi
            ;;
    esac
    [ -f "$venv/bin/python" ] || { PULUMI_RUNTIME_VIRTUALENV=$venv; export PULUMI_RUNTIME_VIRTUALENV; exec "$UPSTREAM" "$@"; }
    PATH=$venv/bin:$PATH
    export PATH
    unset PYTHONHOME
    python=$venv/bin/python
else
    python=${PULUMI_PYTHON_CMD:-python3}
fi
exec "$python" -u -c '
import importlib.util, runpy
try:
    found = importlib.util.find_spec("goldsmith_provider.dynamic.serve") is not None
except ImportError:
    found = False
runpy.run_module("goldsmith_provider.dynamic.serve" if found else "pulumi.dynamic", run_name="__main__", alter_sys=True)
' "$@"
