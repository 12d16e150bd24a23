// A Fastify 5 app served by baton.
//
// baton owns the listening socket, so Fastify never calls listen(). Instead
// `serverFactory` hands us Fastify's internal (req, res) handler; we give
// Fastify back an http.Server that never listens (Fastify only needs an object
// to hang itself on). After `await app.ready()` every plugin and route is
// loaded, and baton reports the worker ready once createApp resolves.
//
// Run it:  npm start               (creates .env from .env.example on first run)
// Reload:  edit GREETING in .env, then `kill -HUP <primary pid>` (or `npx baton reload`)
import http from 'node:http';
import Fastify from 'fastify';

/** @type {import('baton').AppFactory} */
export async function createApp({ config, generation, workerId, log }) {
  // GREETING is not a baton key: it is the app's own setting from .env,
  // found in config.env (and in process.env of the worker).
  const greeting = config.env.GREETING ?? config.message;

  /** @type {import('node:http').RequestListener | undefined} */
  let handler;
  const app = Fastify({
    logger: false,
    serverFactory(fastifyHandler) {
      handler = fastifyHandler;
      return http.createServer(); // never listens: baton's worker owns the socket
    },
    // Draining is baton's job: it calls close() only once this worker's
    // in-flight requests are done. Fastify's own drain behaviour (answer 503
    // to requests that arrive while closing) could only turn a keep-alive
    // straggler into an error, so it is switched off.
    return503OnClosing: false,
  });

  app.get('/', async (request, reply) => {
    reply.type('text/plain');
    return `${greeting} (fastify, generation ${generation}, worker ${workerId})\n`;
  });

  // A deliberately slow endpoint: a reload or shutdown lets it finish.
  app.get('/slow', async (request, reply) => {
    const ms = clampMs(request.query.ms);
    await new Promise((resolve) => setTimeout(resolve, ms));
    reply.type('text/plain');
    return `slept ${ms} ms (generation ${generation})\n`;
  });

  await app.ready();
  if (!handler) throw new Error('fastify did not call serverFactory');

  log.info(`fastify app ready (generation ${generation}, worker ${workerId})`);
  // close() runs once this worker's in-flight requests are done (after a
  // reload or on shutdown): it runs Fastify's onClose hooks, where plugins
  // close their pools (e.g. @fastify/postgres).
  return { handler, close: () => app.close() };
}

function clampMs(value) {
  const ms = Number.parseInt(String(value ?? '1000'), 10);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
