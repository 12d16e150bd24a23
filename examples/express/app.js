// An Express 5 app, written as it would be without baton: it calls
// app.listen() itself. Under baton that listen is captured (the primary owns
// the port) and this server is fed the connections; nothing here is
// baton-specific, and `node app.js` runs it alone just the same.
//
// Run it:  npm start            (creates .env from .env.example on first run)
// Reload:  edit GREETING in .env, then `npx baton reload` (or kill -HUP <primary pid>)
import express from 'express';

const app = express();
app.disable('x-powered-by');

// GREETING is the app's own setting: baton passes .env's keys it does not
// know to the app in process.env, and a reload brings the new values.
const greeting = process.env.GREETING ?? 'Hello from Express';
// Set by baton in each worker (absent when run alone).
const generation = process.env.BATON_GENERATION ?? '-';

app.get('/', (req, res) => {
  res.type('text/plain').send(`${greeting} (express, generation ${generation}, pid ${process.pid})\n`);
});

// A deliberately slow endpoint: a reload or shutdown lets it finish.
app.get('/slow', async (req, res) => {
  const ms = clampMs(req.query.ms);
  await new Promise((resolve) => setTimeout(resolve, ms));
  res.type('text/plain').send(`slept ${ms} ms (generation ${generation})\n`);
});

const port = Number(process.env.PORT ?? 3000);
app.listen(port, () => console.log(`express app listening on port ${port}`));

function clampMs(value) {
  const ms = Number.parseInt(String(value ?? '1000'), 10);
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000;
}
