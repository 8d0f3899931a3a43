// The engine as a child process of the Electron shell: the same frames as web
// mode, over Node's IPC channel (process.send / 'message').
import type { EngineEvent, RequestFrame, ServerFrame } from '../protocol/protocol';
import { RequestError, type EngineService } from './service';

export function serveIpc(service: EngineService): void {
  if (!process.send) throw new Error('serve --ipc needs to be started with an IPC channel (by the desktop shell)');
  const send = (frame: ServerFrame) => process.send!(frame);
  service.events.on('event', (event: EngineEvent) => send({ event }));
  process.on('message', async (frame: RequestFrame) => {
    if (typeof frame?.id !== 'number' || typeof frame.method !== 'string') return;
    try {
      send({ id: frame.id, result: await service.handle(frame.method, frame.params) });
    } catch (err) {
      const e = err instanceof RequestError ? err : new RequestError(String(err));
      send({ id: frame.id, error: { message: e.message, code: e.code } });
    }
  });
  // The shell going away ends the engine.
  process.on('disconnect', () => void service.close().finally(() => process.exit(0)));
  send({ event: { type: 'notice', level: 'info', message: 'engine ready' } });
}
