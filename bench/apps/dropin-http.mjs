// A drop-in node:http app for the bench (it calls listen() itself, as apps
// do). OWN_RESPONSE=1 gives its server its own ServerResponse subclass, so
// that baton cannot hand it its tracked response class and tracks each
// response by its events instead: the cost of that, per request.
import http from 'node:http';

const body = `${process.env.MESSAGE ?? 'hello'}\n`;
const options = process.env.OWN_RESPONSE === '1' ? { ServerResponse: class AppResponse extends http.ServerResponse {} } : {};
http.createServer(options, (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}).listen(process.env.PORT);
