#!/usr/bin/env bash
# Install the Debian packages ecopark needs, when they are missing and we are allowed to.
#   system-deps.sh demo  – mosquitto (optional: the demo can use an embedded broker)
#   system-deps.sh test  – mosquitto, chromium, chromium-driver (the tests need all three)
set -euo pipefail
want=(mosquitto)
[ "${1:-test}" = "test" ] && want+=(chromium chromium-driver fonts-wqy-microhei)
missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    mosquitto) command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=("$pkg") ;;
    chromium) command -v chromium >/dev/null || missing+=("$pkg") ;;
    chromium-driver) command -v chromedriver >/dev/null || missing+=("$pkg") ;;
    fonts-wqy-microhei) [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=("$pkg") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "ecopark: missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  [ "${1:-test}" = "demo" ] && exit 0 || exit 1
fi
echo "ecopark: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian enables and starts the packaged mosquitto service; ecopark starts its own instances.
