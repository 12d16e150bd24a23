// An Express 5 app served by baton.
//
// baton imports this module in every worker and calls createApp(ctx) once per
// worker. The Express app is itself a (req, res) request listener, so it can
// be returned as the handler directly: baton owns the listening socket,
// keep-alive and draining; Express only routes.
//
// Run it:  cp .env.example .env && npm start   (or just `npm start`)
// Reload:  edit MESSAGE in .env, then `kill -HUP <primary pid>` (or `npx baton reload`)
import express from 'express';

/** @type {import('baton').AppFactory} */
export function createApp({ config, generation, workerId, log }) {
  const app = express();
  app.disable('x-powered-by');

  // MESSAGE is one of baton's own keys (config.message); a reload with a new
  // .env changes it.
  app.get('/', (req, res) => {
    res.type('text/plain').send(`${config.message} (express, generation ${generation}, worker ${workerId})\n`);
  });

  // A deliberately slow endpoint: a reload or shutdown lets it finish.
  app.get('/slow', async (req, res) => {
    const ms = clampMs(req.query.ms);
    await new Promise((resolve) => setTimeout(resolve, ms));
    res.type('text/plain').send(`slept ${ms} ms (generation ${generation})\n`);
  });

  log.info(`express app ready (generation ${generation}, worker ${workerId})`);
  return app;
}

function clampMs(value) {
  const ms = Number.parseInt(String(value ?? '1000'), 10);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
