// The only bridge between the sandboxed page and the app: the transport of
// the typed engine client, native file dialogs, the folder picked from the
// File menu. Nothing else of Electron or Node is reachable from the page.
import { contextBridge, ipcRenderer } from 'electron';
import type { DesktopBridge } from '../renderer/src/lib/client';

const bridge: DesktopBridge = {
  send: (frame) => ipcRenderer.send('mlw:send', frame),
  onFrame: (cb) => ipcRenderer.on('mlw:frame', (_e, frame) => cb(frame)),
  onConnection: (cb) => ipcRenderer.on('mlw:connection', (_e, up) => cb(Boolean(up))),
  onImportFolder: (cb) => ipcRenderer.on('mlw:import-folder', (_e, dir) => cb(String(dir))),
  pickFolder: (title) => ipcRenderer.invoke('mlw:pick-folder', title),
  pickFile: (title, extensions) => ipcRenderer.invoke('mlw:pick-file', title, extensions),
  saveFile: (name, content) => ipcRenderer.invoke('mlw:save-file', name, content),
};
contextBridge.exposeInMainWorld('mlwDesktop', bridge);
