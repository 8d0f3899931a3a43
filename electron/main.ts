// The desktop shell: one window showing the built UI (renderer/dist) through a
// custom app:// protocol with a strict Content-Security-Policy, a preload that
// exposes only the typed client's transport, native file dialogs, a menu, and
// the engine as a separate Node process (restarted with a visible notice if it
// dies). No engine code runs in this process.
import path from 'node:path';
import fs from 'node:fs';
import { fork, type ChildProcess } from 'node:child_process';
import { app, BrowserWindow, dialog, ipcMain, Menu, net, protocol, shell, type IpcMainInvokeEvent, type IpcMainEvent } from 'electron';

const ROOT = path.resolve(__dirname, '../..');
const UI_DIR = path.join(ROOT, 'renderer/dist');
const ORIGIN = 'app://workbench';
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

protocol.registerSchemesAsPrivileged([{ scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } }]);

let win: BrowserWindow | null = null;
let engine: ChildProcess | null = null;
let quitting = false;
let restarts = 0;

/** Only our own page may use the bridge. */
function fromOurPage(e: IpcMainEvent | IpcMainInvokeEvent): boolean {
  return !!e.senderFrame && e.senderFrame.url.startsWith(ORIGIN + '/');
}

function toRenderer(channel: string, payload: unknown): void {
  if (win && !win.isDestroyed()) win.webContents.send(channel, payload);
}

function startEngine(): void {
  // The engine runs on Electron's own Node (ELECTRON_RUN_AS_NODE), speaking the protocol over IPC.
  engine = fork(path.join(ROOT, 'bin/mlw.js'), ['serve', '--ipc'], {
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  engine.on('message', (frame) => toRenderer('mlw:frame', frame));
  engine.once('spawn', () => toRenderer('mlw:connection', true));
  engine.once('exit', (code, signal) => {
    engine = null;
    toRenderer('mlw:connection', false);
    if (quitting) return;
    restarts += 1;
    const delay = Math.min(10_000, 500 * 2 ** Math.min(restarts, 5));
    const why = signal ? `was killed (${signal})` : `exited with code ${code}`;
    setTimeout(() => {
      startEngine();
      toRenderer('mlw:frame', { event: { type: 'notice', level: 'warning', message: `The engine ${why} and was restarted.` } });
    }, delay);
  });
}

function createWindow(): void {
  win = new BrowserWindow({
    width: 1280,
    height: 820,
    title: 'MobileLLM Workbench',
    webPreferences: {
      preload: path.join(__dirname, 'preload.cjs'),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
      webSecurity: true,
    },
  });
  // Links open in the user's browser, never inside the app.
  win.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https?:/.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  win.webContents.on('will-navigate', (e, url) => {
    if (!url.startsWith(ORIGIN + '/')) e.preventDefault();
  });
  void win.loadURL(`${ORIGIN}/index.html`);
}

async function pickFolder(title: string): Promise<string | null> {
  if (!win) return null;
  const r = await dialog.showOpenDialog(win, { title, properties: ['openDirectory'] });
  return r.canceled ? null : r.filePaths[0];
}

/** File › Import Model Folder…: the folder is picked here and handed to the Models page, which imports it. */
async function importModelFolder(): Promise<void> {
  const dir = await pickFolder('Import a Hugging Face model folder');
  if (dir) toRenderer('mlw:import-folder', dir);
}

function buildMenu(): void {
  const template: Electron.MenuItemConstructorOptions[] = [
    {
      label: 'File',
      submenu: [{ label: 'Import Model Folder…', accelerator: 'CmdOrCtrl+O', click: () => void importModelFolder() }, { type: 'separator' }, { role: 'quit' }],
    },
    { role: 'editMenu' },
    { role: 'viewMenu' },
    { role: 'windowMenu' },
    {
      role: 'help',
      submenu: [{ label: 'About MobileLLM Workbench', click: () => dialog.showMessageBox({ message: `MobileLLM Workbench ${app.getVersion()}` }) }],
    },
  ];
  Menu.setApplicationMenu(Menu.buildFromTemplate(template));
}

ipcMain.on('mlw:send', (e, frame) => {
  if (!fromOurPage(e)) return;
  if (engine?.connected) engine.send(frame);
  else e.sender.send('mlw:frame', { id: frame?.id, error: { message: 'the engine is restarting', code: 'engine_restarted' } });
});
ipcMain.handle('mlw:pick-folder', (e, title: string) => (fromOurPage(e) ? pickFolder(String(title)) : null));
ipcMain.handle('mlw:pick-file', async (e, title: string, extensions: string[]) => {
  if (!fromOurPage(e) || !win) return null;
  const r = await dialog.showOpenDialog(win, {
    title: String(title),
    properties: ['openFile'],
    filters: [{ name: 'Files', extensions: extensions.map(String) }],
  });
  return r.canceled ? null : r.filePaths[0];
});
ipcMain.handle('mlw:save-file', async (e, name: string, content: string) => {
  if (!fromOurPage(e) || !win) return false;
  const r = await dialog.showSaveDialog(win, { defaultPath: path.basename(String(name)) });
  if (r.canceled || !r.filePath) return false;
  fs.writeFileSync(r.filePath, String(content));
  return true;
});

void app.whenReady().then(() => {
  protocol.handle('app', async (request) => {
    const url = new URL(request.url);
    const file = path.resolve(UI_DIR, '.' + decodeURIComponent(url.pathname));
    if (!file.startsWith(UI_DIR + path.sep) || !fs.existsSync(file)) return new Response('not found', { status: 404 });
    const res = await net.fetch(`file://${file}`);
    const headers = new Headers(res.headers);
    headers.set('Content-Security-Policy', CSP);
    return new Response(res.body, { status: res.status, headers });
  });
  buildMenu();
  startEngine();
  createWindow();
});

app.on('before-quit', () => {
  quitting = true;
  engine?.disconnect();
});
app.on('window-all-closed', () => app.quit());
