// Upload: files and folders, dropped or chosen, each stored by its own STOW-RS request (a few
// at a time), with its progress and, when the server refuses it, the reason in words.

import { qido, stow } from './api.js';
import { TAG, bytes, date, failureReason, statusHex, text, warningText } from './dicom.js';
import { h, progressBar, setProgress, show } from './dom.js';

const PARALLEL = 3;
const SKIPPED = /(^|\/)(\.|__MACOSX\/|Thumbs\.db$|desktop\.ini$)/i;

/** Every file of a dropped entry (a file, or a folder read recursively). */
async function entryFiles(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, '') });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await entryFiles(child, out);
    }
  }
  return out;
}

async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  const out = [];
  for (const entry of entries) await entryFiles(entry, out);
  return out;
}

/** What the server said about one file, in words: [outcome, message, study UID]. */
export function outcome(result) {
  const json = result.json ?? {};
  const failed = json[TAG.FailedSOPSequence]?.Value ?? [];
  const stored = json[TAG.ReferencedSOPSequence]?.Value ?? [];
  if (failed.length) {
    const item = failed[0];
    const code = item[TAG.FailureReason]?.Value?.[0] ?? 0x0110;
    const detail = warningText(result.warning) || text(item, 'ErrorComment');
    return ['failed', `${failureReason(code)} (${statusHex(code)})${detail ? `: ${detail}` : ''}`, null];
  }
  if (result.ok && stored.length) {
    const url = stored[0][TAG.RetrieveURL]?.Value?.[0] ?? '';
    const study = /\/studies\/([^/]+)/.exec(url)?.[1] ?? null;
    return ['stored', 'Stored', study];
  }
  const why = json.error || warningText(result.warning) || result.text?.slice(0, 200) || result.statusText;
  return ['failed', `The server answered ${result.status}${why ? `: ${why}` : ''}`, null];
}

/** A link to a study the files went into, named by patient, description and date. */
function studyLink(uid) {
  const link = h('a', { href: `#/studies/${uid}`, dataset: { study: uid } }, `Study ${uid}`);
  qido('studies', { StudyInstanceUID: uid }).then(([study]) => {
    if (!study) return;
    const what = [text(study, 'PatientName') || '(no name)', text(study, 'StudyDescription'), date(text(study, 'StudyDate'))];
    link.textContent = what.filter(Boolean).join(' — ');
  }).catch(() => { /* the UID is name enough */ });
  return h('li', {}, link);
}

export function uploadView() {
  const rows = h('tbody');
  const summary = h('p.summary', { id: 'upload-summary' }, 'No files yet.');
  const studies = h('ul.study-links', { 'aria-label': 'Studies the files went into' });
  const table = h('table.grid.compact.upload-table', { hidden: true },
    h('thead', {}, h('tr', {}, ['File', 'Size', 'Progress', 'Result'].map((c) => h('th', {}, c)))), rows);
  const counts = { total: 0, stored: 0, failed: 0, running: 0 };
  const seenStudies = new Set();
  const queue = [];

  const refresh = () => {
    const pending = counts.total - counts.stored - counts.failed;
    summary.textContent = `${counts.total} file(s): ${counts.stored} stored, ${counts.failed} failed`
      + (pending ? `, ${pending} to go…` : '.');
    summary.dataset.done = String(pending === 0);
  };

  const pump = async () => {
    while (counts.running < PARALLEL && queue.length) {
      const job = queue.shift();
      counts.running += 1;
      job.result.textContent = 'Uploading…';
      (async () => {
        try {
          const result = await stow(job.file, (f) => setProgress(job.bar, f * 0.95));
          const [kind, message, study] = outcome(result);
          job.row.dataset.outcome = kind;
          job.result.textContent = message;
          setProgress(job.bar, 1, kind === 'stored' ? 'done' : 'failed');
          counts[kind] += 1;
          if (study && !seenStudies.has(study)) {
            seenStudies.add(study);
            studies.append(studyLink(study));
          }
        } catch (e) {
          job.row.dataset.outcome = 'failed';
          job.result.textContent = e.message;
          setProgress(job.bar, 1, 'failed');
          counts.failed += 1;
        } finally {
          counts.running -= 1;
          refresh();
          pump();
        }
      })();
    }
  };

  const add = (items) => {
    const files = items.filter(({ path }) => !SKIPPED.test(path))
      .sort((a, b) => a.path.localeCompare(b.path, undefined, { numeric: true }));
    if (!files.length) return;
    table.hidden = false;
    for (const { file, path } of files) {
      const bar = progressBar(0);
      const result = h('td.result', {}, 'Waiting');
      const row = h('tr', { dataset: { file: path } }, h('td.path', {}, path), h('td.nowrap.num', {}, bytes(file.size)), h('td', {}, bar), result);
      rows.append(row);
      queue.push({ file, bar, result, row });
      counts.total += 1;
    }
    refresh();
    pump();
  };

  const fromInput = (input) => () => {
    add([...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    input.value = '';
  };
  const filesInput = h('input.visually-hidden', { type: 'file', multiple: true, id: 'upload-files' });
  const folderInput = h('input.visually-hidden', { type: 'file', multiple: true, webkitdirectory: true, id: 'upload-folder' });
  filesInput.addEventListener('change', fromInput(filesInput));
  folderInput.addEventListener('change', fromInput(folderInput));

  const zone = h('div.dropzone', { tabindex: '0' },
    h('p.big', {}, 'Drop DICOM files or folders here'),
    h('p.muted', {}, 'Each file is stored with STOW-RS; folders are read with all their subfolders.'),
    h('div.toolbar.center', {},
      h('label.button.primary', { for: 'upload-files' }, 'Choose files…'),
      h('label.button.secondary', { for: 'upload-folder' }, 'Choose a folder…')),
    filesInput, folderInput);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    add(await droppedFiles(e.dataTransfer));
  });

  show(
    h('div.page-head', {}, h('h1', {}, 'Upload')),
    h('section.card', {}, zone),
    h('section.card', {}, h('h2', {}, 'Files'), summary, studies, table),
  );
}
