#!/usr/bin/env bash
# The main job: sets up the machine (idempotent, see scripts/setup.sh) and runs codebox.
# With no arguments: the Discord bot when DISCORD_TOKEN is configured (environment or .env),
# otherwise a demo run through the sandbox on the embedded defaults. With arguments, they
# go to codebox, e.g. `bash scripts/run.sh run -c "print(1)"` or `bash scripts/run.sh doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
has_token() { [ -n "${DISCORD_TOKEN:-}" ] || grep -qs '^DISCORD_TOKEN=.' .env; }
if [ $# -eq 0 ] && has_token; then
  set -- bot
elif [ $# -eq 0 ]; then
  echo "No DISCORD_TOKEN configured: running a demo in the sandbox instead of the bot." >&2
  set -- run -c 'import platform, pandas as pd
df = pd.DataFrame({"x": range(5), "y": [v * v for v in range(5)]})
print(df.describe())
df.plot(x="x", y="y").get_figure().savefig("squares.png")
print("python", platform.python_version(), "in a sandbox with no network")'
fi
exec target/debug/codebox "$@"
