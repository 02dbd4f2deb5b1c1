// The server, as the page sees it: DICOMweb (QIDO-RS, WADO-RS, STOW-RS, DELETE) under the
// root path the page was served with, and the non-standard resources of the study browser.

export const ROOT = document.querySelector('meta[name="webpacs-root"]').content;

/** An error answer of the server, with its status and the server's own words. */
export class ServerError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(response) {
  let text = '';
  try {
    text = (await response.text()).trim();
    const json = JSON.parse(text);
    text = json.detail || json.error || json.message || text;
  } catch (_) { /* plain text, or nothing */ }
  return new ServerError(response.status, `${response.status} ${response.statusText}${text ? `: ${text}` : ''}`);
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: 'application/dicom+json, application/json' } });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return [];
  return response.json();
}

export const paths = {
  study: (s) => `${ROOT}/studies/${s}`,
  series: (s, x) => `${ROOT}/studies/${s}/series/${x}`,
  instance: (s, x, i) => `${ROOT}/studies/${s}/series/${x}/instances/${i}`,
};

/** QIDO-RS: ``path`` under the root ("studies", "studies/S/series", ...), query ``params``. */
export function qido(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of [].concat(value)) if (v !== '' && v != null) query.append(key, v);
  }
  const q = query.toString();
  return getJSON(`${ROOT}/${path}${q ? `?${q}` : ''}`);
}

export const instanceMetadata = async (s, x, i) => (await getJSON(`${paths.instance(s, x, i)}/metadata`))[0];
export const browserSettings = () => getJSON(`${ROOT}/webpacs/browser`);
export const thumbnailUrl = (s, x) => `${paths.series(s, x)}/thumbnail`;
export const zipUrl = (path) => `${path}?accept=${encodeURIComponent('application/zip')}`;
export const fileUrl = (s, x, i) =>
  `${ROOT}/wado?requestType=WADO&studyUID=${s}&seriesUID=${x}&objectUID=${i}&contentType=application%2Fdicom`;

/** DELETE a study or series (``path`` from ``paths``). */
export async function remove(path) {
  const response = await fetch(path, { method: 'DELETE' });
  if (!response.ok) throw await failure(response);
}

let dictionary = null;
/** Attribute keywords by tag and UID names (pydicom's dictionaries, from the server). */
export function loadDictionary() {
  dictionary ??= fetch('ui/dictionary.json').then((r) => (r.ok ? r.json() : { tags: {}, uids: {} }));
  return dictionary;
}

/**
 * STOW-RS of one file (one part). ``onProgress(fraction)`` follows the upload. Resolves to
 * ``{ok, status, json, warning}`` whatever the status; rejects only when the request failed.
 */
export function stow(file, onProgress) {
  const boundary = `webpacs-${crypto.randomUUID()}`;
  const body = new Blob([
    `--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${boundary}--\r\n`,
  ]);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${ROOT}/studies`);
    xhr.setRequestHeader('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader('Accept', 'application/dicom+json');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new Error('the connection to the server failed'));
    xhr.onload = () => {
      let json = null;
      try { json = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({
        ok: xhr.status === 200,
        status: xhr.status,
        statusText: xhr.statusText,
        json,
        text: xhr.responseText,
        warning: xhr.getResponseHeader('Warning') || '',
      });
    };
    xhr.send(body);
  });
}

/**
 * Send a study or series (``path`` of ``paths``, ``series`` optional) to the AE named ``ae``
 * by C-STORE; ``onEvent`` gets each progress event the server streams (one JSON a line).
 */
export async function send(study, series, ae, onEvent) {
  const url = series ? `${ROOT}/webpacs/studies/${study}/series/${series}/send` : `${ROOT}/webpacs/studies/${study}/send`;
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
    body: JSON.stringify({ ae }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) { last = JSON.parse(line); onEvent(last); }
    }
  }
  if (!last || last.event !== 'end') throw new Error('the server stopped answering before the send ended');
  return last;
}
