// Hostile traffic at a running web-mode engine (a real `mlw serve` process):
// request targets that are no URL, paths that do not decode, foreign Host
// headers (a DNS-rebinding page), WebSocket frames over the size limit or not
// UTF-8, method names of Object.prototype. Each gets an answer or a closed
// socket, and the engine answers a normal request afterwards.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES, type ServerFrame } from '../engine/protocol/protocol';
import { startEngine, type Engine } from './helpers/web';

let engine: Engine;
let port: number;
let token: string;

beforeAll(async () => {
  engine = await startEngine();
  const url = new URL(engine.url);
  port = Number(url.port);
  token = url.searchParams.get('token')!;
});
afterAll(() => engine?.stop());

interface RawAnswer {
  /** The status code, or null when the socket closed without an answer. */
  status: number | null;
  body: string;
}

/** Sends `request` as it is over a fresh connection; the answer, once the server closes it. */
function raw(request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 5 s to ${JSON.stringify(request)}`));
    }, 5000);
    socket.on('data', (d) => (got += d));
    socket.on('error', () => {}); // a reset is a closed socket, seen on 'close'
    socket.on('close', () => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve({ status: status ? Number(status[1]) : null, body: got.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
    });
    socket.write(request); // not end(): a half-closed socket may be dropped before a streamed answer
  });
}

type Headers = Record<string, string | undefined>;

/** A GET of `target` with our Host unless `headers` replace it (undefined: the header is left out). */
function get(target: string, headers: Headers = {}, version = '1.1'): Promise<RawAnswer> {
  const all: Headers = { host: `127.0.0.1:${port}`, connection: 'close', ...headers };
  const lines = Object.entries(all).flatMap(([k, v]) => (v === undefined ? [] : [`${k}: ${v}\r\n`]));
  return raw(`GET ${target} HTTP/${version}\r\n${lines.join('')}\r\n`);
}

const UPGRADE: Headers = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };

function openSocket(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function call(ws: WebSocket, id: number, method: string): Promise<ServerFrame> {
  return new Promise((resolve) => {
    const onMessage = (d: WebSocket.RawData) => {
      const frame = JSON.parse(String(d)) as ServerFrame;
      if ('id' in frame && frame.id === id) {
        ws.off('message', onMessage);
        resolve(frame);
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ id, method, params: {} }));
  });
}

function closeCode(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

describe('malformed HTTP requests get an answer', () => {
  it.each<[string, () => string, Headers, number]>([
    ['a target that is no URL, without the token', () => '//[x', {}, 400],
    ['a target that is no URL, with the token', () => `//[x?token=${token}`, {}, 400],
    ['a path that is not UTF-8 once decoded', () => `/%ff.js?token=${token}`, {}, 400],
    ['a WebSocket upgrade to a target that is no URL', () => `//[x?token=${token}`, UPGRADE, 400],
    ['a WebSocket upgrade to a path that does not decode', () => `/ws%ff?token=${token}`, UPGRADE, 404],
  ])('%s', async (_, target, headers, status) => {
    expect((await get(target(), headers)).status).toBe(status);
  });
});

describe('the Host header', () => {
  it.each<[string, (p: number) => Headers]>([
    ['localhost', (p) => ({ host: `localhost:${p}` })],
    ['LOCALHOST (case does not matter)', (p) => ({ host: `LOCALHOST:${p}` })],
    ['127.0.0.1', (p) => ({ host: `127.0.0.1:${p}` })],
    ['[::1]', (p) => ({ host: `[::1]:${p}` })],
  ])('%s with the port is served', async (_, headers) => {
    expect((await get(`/?token=${token}`, headers(port))).status).toBe(200);
  });

  it.each<[string, (p: number) => Headers, string]>([
    ['a rebinding name, without the token', (p) => ({ host: `attacker.example:${p}` }), ''],
    ['a rebinding name, with the token', (p) => ({ host: `attacker.example:${p}` }), 'token'],
    ['our address without the port', () => ({ host: '127.0.0.1' }), 'token'],
    ['our address with another port', (p) => ({ host: `127.0.0.1:${p + 1}` }), 'token'],
    ['a name that only ends like ours', (p) => ({ host: `evil-localhost:${p}` }), 'token'],
    ['a WebSocket upgrade from a rebinding name', (p) => ({ ...UPGRADE, host: `attacker.example:${p}` }), 'token'],
  ])('%s is refused before the token check, with the reason', async (_, headers, withToken) => {
    const target = `${headers(port).upgrade ? '/ws' : '/'}${withToken ? `?token=${token}` : ''}`;
    const answer = await get(target, headers(port));
    expect(answer.status).toBe(403);
    expect(answer.body).toMatch(/^forbidden host "[^"\n]+": this engine answers only 127\.0\.0\.1, localhost and \[::1\] on port \d+\n$/);
  });

  it('is required (HTTP/1.0 may leave it out)', async () => {
    const answer = await get(`/?token=${token}`, { host: undefined }, '1.0');
    expect(answer.status).toBe(403);
    expect(answer.body).toMatch(/^forbidden host "": /);
  });
});

describe('WebSocket frames that break the rules close the socket, not the engine', () => {
  it('a frame over the size limit (a 20 MB upload in one frame)', async () => {
    const ws = await openSocket();
    const closed = closeCode(ws);
    ws.send(JSON.stringify({ id: 1, method: 'datasets.upload', params: { name: 'big.jsonl', content: 'x'.repeat(MAX_FRAME_BYTES + 1) } }));
    expect(await closed).toBe(1009);
  });

  it('a text frame that is not UTF-8', async () => {
    const ws = await openSocket();
    const closed = closeCode(ws);
    ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect(await closed).toBe(1007);
  });

  it('a frame that is not a request', async () => {
    const ws = await openSocket();
    const closed = closeCode(ws);
    ws.send('{"id": "one"}');
    expect(await closed).toBe(1003);
  });
});

describe('method names that are properties of every object', () => {
  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'])('%s is an unknown method', async (method) => {
    const ws = await openSocket();
    expect(await call(ws, 1, method)).toEqual({ id: 1, error: { code: 'bad_request', message: `unknown method "${method}"` } });
    ws.close();
  });
});

describe('after all of it', () => {
  it('the engine is running and answers engine.status', async () => {
    expect(engine.proc.exitCode).toBeNull();
    const ws = await openSocket();
    const answer = await call(ws, 7, 'engine.status');
    expect('result' in answer && answer.result).toMatchObject({ version: expect.any(String), home: engine.home });
    ws.close();
  });
});
