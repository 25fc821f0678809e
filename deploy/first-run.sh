#!/bin/sh
# The first run of a fresh deployment (docker-compose.yml's `first-run` service, or by hand):
# the schema, the players, slots and sessions of a folder, and one pipeline run, so the API has a
# model to serve before the daily run at RECSYS_PIPELINE_AT. Safe to repeat: imports are upserts and
# a pipeline run with nothing new is skipped.
#
#   deploy/first-run.sh [FOLDER]    FOLDER (default /import) holds players, slots and sessions files
#                                   named KIND.csv, KIND.csv.gz or KIND.parquet (docs/import-format.md)
set -eu
folder="${1:-/import}"
recsys db upgrade
for kind in players slots sessions; do
    file=""
    for candidate in "$folder/$kind.csv" "$folder/$kind.csv.gz" "$folder/$kind.parquet"; do
        if [ -f "$candidate" ]; then file="$candidate"; break; fi
    done
    if [ -z "$file" ]; then
        echo "first-run: no $kind file in $folder ($kind.csv, $kind.csv.gz or $kind.parquet)" >&2
        exit 2
    fi
    recsys import "$kind" "$file"
done
recsys pipeline run
