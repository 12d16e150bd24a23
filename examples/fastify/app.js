// A Fastify 5 app, written as it would be without baton: it calls
// `await app.listen()` itself, on Fastify's default host. Under baton that
// listen is captured (the primary owns the port) and Fastify's server is fed
// the connections; `node app.js` runs it alone just the same.
//
// Run it:  npm start            (creates .env from .env.example on first run)
// Reload:  edit GREETING in .env, then `npx baton reload` (or kill -HUP <primary pid>)
import Fastify from 'fastify';

// GREETING is the app's own setting, from .env through process.env.
const greeting = process.env.GREETING ?? 'Hello from Fastify';
// Set by baton in each worker (absent when run alone).
const generation = process.env.BATON_GENERATION ?? '-';

const app = Fastify({ logger: false });

app.get('/', async (request, reply) => {
  reply.type('text/plain');
  return `${greeting} (fastify, generation ${generation}, pid ${process.pid})\n`;
});

// A deliberately slow endpoint: a reload or shutdown lets it finish.
app.get('/slow', async (request, reply) => {
  const ms = clampMs(request.query.ms);
  await new Promise((resolve) => setTimeout(resolve, ms));
  reply.type('text/plain');
  return `slept ${ms} ms (generation ${generation})\n`;
});

await app.listen({ port: Number(process.env.PORT ?? 3000) });

// The usual shutdown hook: close Fastify (its onClose hooks close plugins'
// pools). Under baton it does not run when the signal arrives (the worker
// would stop mid-request) but once this worker has drained.
process.on('SIGTERM', async () => {
  await app.close();
  process.exit(0);
});

function clampMs(value) {
  const ms = Number.parseInt(String(value ?? '1000'), 10);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
