// The only bridge between the sandboxed page and the app: the transport of
// the typed engine client, native file dialogs, menu commands. Nothing else
// of Electron or Node is reachable from the page.
import { contextBridge, ipcRenderer } from 'electron';

type Frame = unknown;

contextBridge.exposeInMainWorld('mlwDesktop', {
  send: (frame: Frame) => ipcRenderer.send('mlw:send', frame),
  onFrame: (cb: (frame: Frame) => void) => ipcRenderer.on('mlw:frame', (_e, frame) => cb(frame)),
  onConnection: (cb: (up: boolean) => void) => ipcRenderer.on('mlw:connection', (_e, up) => cb(Boolean(up))),
  onMenu: (cb: (command: string) => void) => ipcRenderer.on('mlw:menu', (_e, command) => cb(String(command))),
  pickFolder: (title: string): Promise<string | null> => ipcRenderer.invoke('mlw:pick-folder', title),
  pickFile: (title: string, extensions: string[]): Promise<string | null> => ipcRenderer.invoke('mlw:pick-file', title, extensions),
  saveFile: (name: string, content: string): Promise<boolean> => ipcRenderer.invoke('mlw:save-file', name, content),
});
