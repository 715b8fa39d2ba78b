// The one command-line option both peers take: `--bind HOST:PORT` (default 127.0.0.1:7402).
'use strict';

function bindAddress(argv) {
  const i = argv.indexOf('--bind');
  const value = i >= 0 ? argv[i + 1] : '127.0.0.1:7402';
  const match = /^(.+):(\d+)$/.exec(value || '');
  if (!match) {
    console.error(`--bind wants HOST:PORT, got ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return { host: match[1], port: Number(match[2]) };
}

module.exports = { bindAddress };
