#!/bin/sh
# goldsmith: resolve a relative PULUMI_RUNTIME_VIRTUALENV against the project root (pulumi/pulumi#7061), then
# run the upstream dynamic-provider script from libexec/.
case ${PULUMI_RUNTIME_VIRTUALENV:-} in
    "" | /*) ;;
    *)
        if [ ! -d "$PWD/$PULUMI_RUNTIME_VIRTUALENV" ]; then
            dir=$PWD
            while [ "$dir" != / ]; do
                if [ -f "$dir/Pulumi.yaml" ] || [ -f "$dir/Pulumi.yml" ]; then
                    PULUMI_RUNTIME_VIRTUALENV=$dir/$PULUMI_RUNTIME_VIRTUALENV
                    export PULUMI_RUNTIME_VIRTUALENV
                    break
                fi
                dir=$(dirname "$dir")
            done
        fi
        ;;
esac
self=$(readlink -f "$0" 2>/dev/null || printf '%s' "$0")
exec "$(dirname "$self")/libexec/pulumi-resource-pulumi-python" "$@"
