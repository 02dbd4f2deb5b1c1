// The study list: a search form (patient name and ID, study date range, modality, accession,
// description) over QIDO-RS, paged with limit/offset. The search lives in the URL's hash, so
// that back, forward and bookmarks work.

import { qido } from './api.js';
import { date, text, values } from './dicom.js';
import { h, show } from './dom.js';

const PAGE_SIZES = [10, 25, 50, 100];
const MODALITIES = ['CR', 'CT', 'DX', 'ECG', 'IO', 'MG', 'MR', 'NM', 'OT', 'PR', 'PT', 'PX', 'RF', 'RG', 'RTDOSE',
  'RTIMAGE', 'RTPLAN', 'RTSTRUCT', 'SC', 'SEG', 'SM', 'SR', 'US', 'XA', 'XC'];
const FIELDS = [
  ['name', 'Patient name', 'e.g. Smith'],
  ['id', 'Patient ID', ''],
  ['accession', 'Accession number', ''],
  ['description', 'Study description', ''],
];

const hasWildcard = (v) => /[*?]/.test(v);
const compactDate = (v) => v.replaceAll('-', '');

/** QIDO-RS parameters for a search (what the form holds). */
export function qidoParams(search) {
  const p = {};
  if (search.name) {
    p.PatientName = hasWildcard(search.name) ? search.name : `*${search.name}*`;
    p.fuzzymatching = 'true'; // person names: case-insensitive
  }
  if (search.id) p.PatientID = hasWildcard(search.id) ? search.id : `${search.id}*`;
  if (search.accession) p.AccessionNumber = hasWildcard(search.accession) ? search.accession : `${search.accession}*`;
  if (search.description) p.StudyDescription = hasWildcard(search.description) ? search.description : `*${search.description}*`;
  if (search.modality) p.ModalitiesInStudy = search.modality;
  if (search.from || search.to) p.StudyDate = `${compactDate(search.from || '')}-${compactDate(search.to || '')}`;
  return p;
}

function searchForm(search) {
  const input = (name, label, placeholder) => h('label.field', {},
    h('span', {}, label),
    h('input', { name, value: search[name] || '', placeholder, autocomplete: 'off', type: 'search' }));
  const modality = h('select', { name: 'modality' },
    h('option', { value: '' }, 'Any'),
    MODALITIES.map((m) => h('option', { value: m, selected: search.modality === m }, m)));
  const form = h('form.card.search', { role: 'search' },
    h('div.fields', {},
      FIELDS.map(([name, label, placeholder]) => input(name, label, placeholder)),
      h('label.field', {}, h('span', {}, 'Modality'), modality),
      h('label.field', {}, h('span', {}, 'Study date from'), h('input', { name: 'from', type: 'date', value: search.from || '' })),
      h('label.field', {}, h('span', {}, 'to'), h('input', { name: 'to', type: 'date', value: search.to || '' }))),
    h('div.form-actions', {},
      h('button.primary', { type: 'submit' }, 'Search'),
      h('button.secondary', { type: 'button', onclick: () => { location.hash = '#/'; } }, 'Clear'),
      h('span.hint', {}, 'Names: any part, any case. Descriptions: any part, case as typed. IDs and accession numbers: from the start. * and ? are wildcards.')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const [key, value] of data) if (String(value).trim()) next.set(key, String(value).trim());
    if (search.limit) next.set('limit', search.limit);
    location.hash = `#/?${next}`;
  });
  return form;
}

function studyRow(study, viewer) {
  const uid = text(study, 'StudyInstanceUID');
  const href = `#/studies/${uid}`;
  const open = (e) => { if (!e.target.closest('a')) location.hash = href; };
  return h('tr.clickable', { onclick: open, dataset: { study: uid } },
    h('td', {}, h('a.strong', { href }, text(study, 'PatientName') || '(no name)')),
    h('td.nowrap', {}, text(study, 'PatientID')),
    h('td.nowrap', {}, date(text(study, 'PatientBirthDate'))),
    h('td.nowrap', {}, date(text(study, 'StudyDate'))),
    h('td', {}, text(study, 'StudyDescription')),
    h('td', {}, values(study, 'ModalitiesInStudy').join(', ')),
    h('td', {}, text(study, 'AccessionNumber')),
    h('td.num', {}, text(study, 'NumberOfStudyRelatedSeries')),
    h('td.num', {}, text(study, 'NumberOfStudyRelatedInstances')),
    h('td.actions', {}, viewer
      ? h('a.button.small.secondary', { href: `${viewer}viewer?StudyInstanceUIDs=${uid}`, target: '_blank', rel: 'noopener', title: 'Open in the viewer' }, 'View')
      : null));
}

function pager(search, shown, more) {
  const limit = Number(search.limit) || 25;
  const offset = Number(search.offset) || 0;
  const go = (newOffset, newLimit = limit) => {
    const next = new URLSearchParams(search);
    next.set('offset', String(Math.max(0, newOffset)));
    next.set('limit', String(newLimit));
    location.hash = `#/?${next}`;
  };
  const size = h('select', { 'aria-label': 'Studies per page', onchange: (e) => go(0, Number(e.target.value)) },
    PAGE_SIZES.map((n) => h('option', { value: n, selected: n === limit }, `${n} per page`)));
  const range = shown ? `Studies ${offset + 1}–${offset + shown}${more ? '' : ` of ${offset + shown}`}` : 'No studies';
  return h('div.pager', {},
    h('span.range', {}, range),
    h('span.spacer'),
    size,
    h('button.secondary', { type: 'button', disabled: offset === 0, onclick: () => go(offset - limit) }, '‹ Previous'),
    h('button.secondary', { type: 'button', disabled: !more, onclick: () => go(offset + limit) }, 'Next ›'));
}

export async function studiesView(search, settings) {
  const limit = Number(search.limit) || 25;
  const offset = Number(search.offset) || 0;
  const results = h('section.card.results', {}, h('p.muted.pad', {}, 'Searching…'));
  show(h('div.page-head', {}, h('h1', {}, 'Studies')), searchForm(search), results);
  let rows;
  try {
    rows = await qido('studies', { ...qidoParams(search), limit: limit + 1, offset });
  } catch (e) {
    results.replaceChildren(h('p.error.pad', {}, `The search failed: ${e.message}`));
    return;
  }
  const more = rows.length > limit;
  const page = rows.slice(0, limit);
  const head = ['Patient name', 'Patient ID', 'Birth date', 'Study date', 'Description', 'Modality', 'Accession',
    'Series', 'Instances', ''];
  const table = page.length
    ? h('table.grid', {},
      h('thead', {}, h('tr', {}, head.map((c, i) => h(i === 7 || i === 8 ? 'th.num' : 'th', {}, c)))),
      h('tbody', {}, page.map((s) => studyRow(s, settings.viewer))))
    : h('p.muted.pad', {}, offset ? 'No more studies.' : 'No study matches this search.');
  results.replaceChildren(table, pager(search, page.length, more));
}
