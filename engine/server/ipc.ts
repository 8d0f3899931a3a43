// The engine as a child process of the Electron shell: the same frames as web
// mode, over Node's IPC channel (process.send / 'message').
import type { EngineEvent, RequestFrame, ServerFrame } from '../protocol/protocol';
import type { EngineService } from './service';

export function serveIpc(service: EngineService): void {
  if (!process.send) throw new Error('serve --ipc needs to be started with an IPC channel (by the desktop shell)');
  // After the shell went away (the engine is closing), frames go nowhere: process.send would throw.
  const send = (frame: ServerFrame) => {
    if (process.connected) process.send!(frame);
  };
  service.events.on('event', (event: EngineEvent) => send({ event }));
  process.on('message', async (frame: RequestFrame) => {
    if (typeof frame?.id !== 'number' || typeof frame.method !== 'string') return;
    send(await service.respond(frame));
  });
  // The shell going away ends the engine.
  process.on('disconnect', () => void service.close().finally(() => process.exit(0)));
  send({ event: { type: 'notice', level: 'info', message: 'engine ready' } });
}
