// Web mode: the engine serves the built UI and the protocol (a WebSocket at
// /ws) on 127.0.0.1 only, on a free port, with a random per-start token:
//   - the URL printed at start carries ?token=…; that first page load sets an
//     HttpOnly, SameSite=Strict cookie so the page's own assets and socket
//     carry it; every request without the token (query or cookie) gets 401;
//   - requests from another Origin are refused (403), so a web page open in the
//     same browser cannot drive the engine.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import type { EngineEvent, RequestFrame, ServerFrame } from '../protocol/protocol';
import { RequestError, type EngineService } from './service';

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

export async function startWebServer(service: EngineService, opts: { staticDir: string; port?: number }): Promise<WebServer> {
  const token = crypto.randomBytes(24).toString('base64url');
  let origin = '';
  const allowedOrigins = () => [origin, origin.replace('127.0.0.1', 'localhost')];

  const authorized = (req: http.IncomingMessage, url: URL) => safeEqual(url.searchParams.get('token'), token) || safeEqual(cookieToken(req), token);
  const originOk = (req: http.IncomingMessage) => !req.headers.origin || allowedOrigins().includes(req.headers.origin);

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (!originOk(req)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden origin\n');
      return;
    }
    if (!authorized(req, url)) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('missing or wrong token: open the URL printed when the engine started\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const headers: Record<string, string> = {
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-cache',
    };
    if (url.searchParams.get('token')) headers['set-cookie'] = `mlw_token=${token}; HttpOnly; SameSite=Strict; Path=/`;
    let rel = decodeURIComponent(url.pathname);
    if (rel === '/' || !path.extname(rel)) rel = '/index.html'; // single-page app
    const file = path.resolve(opts.staticDir, '.' + rel);
    if (!file.startsWith(path.resolve(opts.staticDir) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(rel === '/index.html' ? 'the UI is not built: run `npm run build`\n' : 'not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    if (req.method === 'HEAD') res.end();
    else fs.createReadStream(file).pipe(res);
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', origin);
    const reject = (status: number, text: string) => {
      socket.write(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n\r\n`);
      socket.destroy();
    };
    if (url.pathname !== '/ws') return reject(404, 'Not Found');
    if (!originOk(req)) return reject(403, 'Forbidden');
    if (!authorized(req, url)) return reject(401, 'Unauthorized');
    wss.handleUpgrade(req, socket, head, (ws) => serveSocket(service, ws));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/?token=${token}`,
    port,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One UI connection: requests in, responses and every engine event out. */
export function serveSocket(service: EngineService, ws: WebSocket): void {
  const send = (frame: ServerFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  const onEvent = (event: EngineEvent) => send({ event });
  service.events.on('event', onEvent);
  ws.on('close', () => service.events.off('event', onEvent));
  ws.on('message', async (data) => {
    let frame: RequestFrame;
    try {
      frame = JSON.parse(String(data));
      if (typeof frame?.id !== 'number' || typeof frame.method !== 'string') throw new Error('bad frame');
    } catch {
      return ws.close(1003, 'malformed request frame');
    }
    try {
      send({ id: frame.id, result: await service.handle(frame.method, frame.params) });
    } catch (err) {
      const e = err instanceof RequestError ? err : new RequestError(String(err));
      send({ id: frame.id, error: { message: e.message, code: e.code } });
    }
  });
}
