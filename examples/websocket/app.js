// WebSockets (ws) in an app written as it would be without baton, plus the
// one thing a long-lived connection needs to drain well: listen for baton's
// drain signal on each connection and send a close frame, so the client
// reconnects (to the new generation) at once instead of being cut at the
// drain deadline. Each connection hears at its own moment, spread over
// DRAIN_SPREAD_UPGRADED_MS, so thousands of clients do not reconnect in the
// same instant. Outside baton, drainSignal() never aborts.
//
// Run it:  npm start   then   npx wscat -c ws://127.0.0.1:8080/  (or any WebSocket client)
import http from 'node:http';
import { drainSignal } from 'baton';
import { WebSocketServer } from 'ws';

const greeting = process.env.GREETING ?? 'Hello over WebSocket';
const generation = process.env.BATON_GENERATION ?? '-';

const server = http.createServer((req, res) => {
  res.end(`${greeting} (http, generation ${generation})\n`);
});
const wss = new WebSocketServer({ server });

wss.on('connection', (ws, req) => {
  ws.send(`${greeting} (generation ${generation})`);
  ws.on('message', (data) => ws.send(`echo: ${data}`));
  // 1012 Service Restart on a reload, 1001 Going Away on a shutdown: either
  // way the client should reconnect.
  drainSignal(req).addEventListener('abort', (event) => {
    const { reason } = event.target.reason;
    ws.close(reason === 'shutdown' ? 1001 : 1012, 'server restarting');
  });
});

const port = Number(process.env.PORT ?? 3000);
server.listen(port, () => console.log(`websocket app listening on port ${port}`));
