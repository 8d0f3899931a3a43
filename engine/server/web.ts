// Web mode: the engine serves the built UI and the protocol (a WebSocket at
// /ws) on 127.0.0.1 only, on a free port, with a random per-start token:
//   - the URL printed at start carries ?token=…; that first page load sets an
//     HttpOnly, SameSite=Strict cookie so the page's own assets and socket
//     carry it; every request without the token (query or cookie) gets 401;
//   - requests from another Origin are refused (403), so a web page open in the
//     same browser cannot drive the engine;
//   - requests whose Host is not this engine's own address are refused (403)
//     before the token is looked at: a DNS-rebinding page (attacker.example
//     resolving to 127.0.0.1) is same-origin to itself and would pass the
//     Origin check.
// Nothing a client sends ends the process: a request target that is no URL
// or does not decode gets 400, a WebSocket frame over MAX_FRAME_BYTES or not
// UTF-8 closes that socket (1009, 1007).
import fs from 'node:fs';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import path from 'node:path';
import crypto from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { MAX_FRAME_BYTES, type EngineEvent, type RequestFrame, type ResponseFrame } from '../protocol/protocol';
import type { EngineService } from './service';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** The same strict policy the Electron window uses (see electron/main.ts). */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export interface WebServer {
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

function cookieToken(req: http.IncomingMessage): string | undefined {
  const m = /(?:^|;\s*)mlw_token=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '');
  return m?.[1];
}

function safeEqual(a: string | undefined | null, b: string): boolean {
  if (!a || a.length !== b.length) return false;
  return crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

/** A request the checks let through (its target parsed), or the status and one-line reason it is refused with. */
type Checked = { url: URL } | { status: number; reason: string };

export async function startWebServer(service: EngineService, opts: { staticDir: string; port?: number }): Promise<WebServer> {
  const token = crypto.randomBytes(24).toString('base64url');
  let port = 0;
  const origin = () => `http://127.0.0.1:${port}`;
  const hosts = () => [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];

  const check = (req: http.IncomingMessage): Checked => {
    const host = req.headers.host ?? '';
    if (!hosts().includes(host.toLowerCase())) {
      return { status: 403, reason: `forbidden host ${JSON.stringify(host)}: this engine answers only 127.0.0.1, localhost and [::1] on port ${port}` };
    }
    if (req.headers.origin && ![origin(), `http://localhost:${port}`].includes(req.headers.origin)) return { status: 403, reason: 'forbidden origin' };
    let url: URL;
    try {
      url = new URL(req.url ?? '/', origin());
    } catch {
      return { status: 400, reason: 'malformed request target' };
    }
    if (!safeEqual(url.searchParams.get('token'), token) && !safeEqual(cookieToken(req), token)) {
      return { status: 401, reason: 'missing or wrong token: open the URL printed when the engine started' };
    }
    return { url };
  };

  const server = http.createServer((req, res) => {
    const checked = check(req);
    if ('status' in checked) {
      const text = `${checked.reason}\n`;
      res.writeHead(checked.status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
      return;
    }
    const { url } = checked;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('malformed path: it does not decode to UTF-8\n');
      return;
    }
    const headers: Record<string, string> = {
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
    };
    if (url.searchParams.get('token')) headers['set-cookie'] = `mlw_token=${token}; HttpOnly; SameSite=Strict; Path=/`;
    if (rel === '/' || !path.extname(rel)) rel = '/index.html'; // single-page app
    const file = path.resolve(opts.staticDir, '.' + rel);
    if (!file.startsWith(path.resolve(opts.staticDir) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(rel === '/index.html' ? 'the UI is not built: run `npm run build`\n' : 'not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    if (req.method === 'HEAD') res.end();
    else pipeline(fs.createReadStream(file), res, () => {}); // a file gone meanwhile, or a client gone: the response ends there
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  server.on('upgrade', (req, socket: Duplex, head) => {
    // Node hands the socket over without its error handler; ws adds its own in handleUpgrade.
    socket.on('error', () => socket.destroy());
    const reject = (status: number, reason: string) => {
      const text = `${reason}\n`;
      const head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}`;
      socket.end(`${head}\r\n\r\n${text}`);
    };
    const checked = check(req);
    if ('status' in checked) return reject(checked.status, checked.reason);
    if (checked.url.pathname !== '/ws') return reject(404, 'not found');
    wss.handleUpgrade(req, socket, head, (ws) => serveSocket(service, ws));
  });

  // Every connection gets every engine event: one listener for all of them, each event serialized once.
  const broadcast = (event: EngineEvent) => {
    const text = JSON.stringify({ event });
    for (const ws of wss.clients) if (ws.readyState === ws.OPEN) ws.send(text);
  };
  service.events.on('event', broadcast);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as { port: number }).port;
  return {
    url: `${origin()}/?token=${token}`,
    port,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        service.events.off('event', broadcast);
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One UI connection's requests: each answered on it (the server sends it every engine event). */
function serveSocket(service: EngineService, ws: WebSocket): void {
  const send = (frame: ResponseFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  // A frame over maxPayload or not UTF-8: ws closes the socket (1009, 1007) and reports it here; nothing else to do.
  ws.on('error', () => {});
  ws.on('message', async (data) => {
    let frame: RequestFrame;
    try {
      frame = JSON.parse(String(data));
      if (typeof frame?.id !== 'number' || typeof frame.method !== 'string') throw new Error('bad frame');
    } catch {
      return ws.close(1003, 'malformed request frame');
    }
    send(await service.respond(frame));
  });
}
