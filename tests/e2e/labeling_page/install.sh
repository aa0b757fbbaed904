#!/usr/bin/env bash
# Installs what the labeling page's browser test needs, once: Debian's chromium (apt) and
# Playwright's driver library `playwright-core` (npm, into a cache dir). Playwright never
# downloads a browser here: the test launches /usr/bin/chromium.
set -euo pipefail

PLAYWRIGHT_CORE_VERSION="${PLAYWRIGHT_CORE_VERSION:-1.65.1}"
CACHE_DIR="${HONE_E2E_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hone-e2e/node}"

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (apt)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi

if ! command -v node >/dev/null 2>&1; then
    echo "node is required (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi

installed="$(node -p "try { require('$CACHE_DIR/node_modules/playwright-core/package.json').version } catch { '' }")"
if [ "$installed" != "$PLAYWRIGHT_CORE_VERSION" ]; then
    echo "installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $CACHE_DIR"
    mkdir -p "$CACHE_DIR"
    # playwright-core has no install script and downloads nothing; only the npm registry is used.
    npm install --prefix "$CACHE_DIR" --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi

echo "chromium: $(chromium --version 2>/dev/null || echo '?')"
echo "playwright-core: $CACHE_DIR/node_modules/playwright-core"
