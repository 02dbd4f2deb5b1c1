// The study browser's routes (in the URL's hash): #/ (studies, the search in the query),
// #/studies/<uid> (a study), #/upload.

import { browserSettings } from './api.js';
import { h, show } from './dom.js';
import { studiesView } from './studies.js';
import { studyView } from './study.js';
import { uploadView } from './upload.js';

let settings = null;

function highlight(name) {
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === name);
}

async function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = hash.split('?');
  const study = /^\/studies\/([0-9.]+)$/.exec(path);
  document.title = 'webpacs · Studies';
  if (study) {
    highlight('studies');
    await studyView(study[1], settings);
  } else if (path === '/upload') {
    highlight('upload');
    document.title = 'webpacs · Upload';
    uploadView();
  } else {
    highlight('studies');
    await studiesView(Object.fromEntries(new URLSearchParams(query)), settings);
  }
}

async function start() {
  try {
    settings = await browserSettings();
  } catch (e) {
    show(h('p.error', {}, `The server did not answer: ${e.message}`));
    return;
  }
  document.getElementById('server-info').textContent = `AE ${settings.aeTitle} · webpacs ${settings.version}`;
  const viewer = document.getElementById('nav-viewer');
  if (settings.viewer) { viewer.href = settings.viewer; viewer.hidden = false; }
  window.addEventListener('hashchange', route);
  await route();
}

start();
