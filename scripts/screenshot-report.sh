#!/bin/sh
# Screenshots of a run report with headless Chromium, to look at it as a reader would.
#
#   scripts/screenshot-report.sh REPORT.html OUT_PREFIX [WIDTH] [HEIGHT]
#
# Writes OUT_PREFIX-top.png (the first screen) and OUT_PREFIX-full.png (the whole page, HEIGHT tall).
set -eu
report="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
prefix="$2"
width="${3:-1280}"
height="${4:-4200}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome)"
shot() {
    profile="$(mktemp -d)"
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
        --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" \
        --screenshot="$1" --window-size="$width,$2" "file://$report" 2>/dev/null
    rm -rf "$profile"
}
shot "$prefix-top.png" 900
shot "$prefix-full.png" "$height"
echo "$prefix-top.png $prefix-full.png"
