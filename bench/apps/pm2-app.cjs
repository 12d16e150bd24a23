// PM2 cluster-mode app (CommonJS entry so PM2's ProcessContainer can require it;
// the handler itself is the shared ESM one). Signals readiness with
// process.send('ready') for wait_ready, drains gracefully on SIGINT (PM2's
// reload/stop signal): answers in-flight requests with Connection: close,
// closes idle keep-alive sockets, exits once the server has closed.
'use strict';
(async () => {
  const { startServer, envConfig } = await import('./handler.js');
  const cfg = envConfig();
  const { listening, drain } = startServer({ ...cfg, configVersion: cfg.message });
  await listening;
  if (process.send) process.send('ready');
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await drain(5000);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
})();
