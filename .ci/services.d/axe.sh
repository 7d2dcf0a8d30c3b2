# Sourced by .ci/run: axe-core (pinned) from npm for the accessibility tests (tests/e2e/test_accessibility.py).
# Installs into a cache dir (default ~/.cache/carepath-axe/<version>) once; exports CAREPATH_AXE_JS,
# the path of axe.min.js that the tests inject into each page. Needs node and npm: installs Debian's `npm` when npm is missing (as root).
# By hand:  source .ci/services.d/axe.sh && python -m pytest tests/e2e/test_accessibility.py
_axe_version=4.14.1
_axe_dir=${CAREPATH_AXE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/carepath-axe}/$_axe_version
if [ ! -f "$_axe_dir/node_modules/axe-core/axe.min.js" ]; then
  if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "axe.sh: apt-get install npm"  # Debian's npm (and nodejs); a machine with Node.js's own npm skips this
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null || true
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "axe.sh: npm not found (apt-get install npm)" >&2
    return 1 2>/dev/null || exit 1
  fi
  mkdir -p "$_axe_dir"
  npm install --prefix "$_axe_dir" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
    "axe-core@$_axe_version" >/dev/null \
    || { echo "axe.sh: npm install axe-core@$_axe_version failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export CAREPATH_AXE_JS="$_axe_dir/node_modules/axe-core/axe.min.js"
echo "axe.sh: axe-core $_axe_version at $CAREPATH_AXE_JS"
