// A series' instances (QIDO-RS) and an instance's metadata (WADO-RS), shown as a table of
// tag, keyword, VR and value, with nested sequences.

import { fileUrl, instanceMetadata, loadDictionary, qido } from './api.js';
import { text, values } from './dicom.js';
import { dialog, h } from './dom.js';

const MAX_VALUE = 300;

function valueText(attr, uids) {
  if (attr.BulkDataURI) return { text: 'bulk data', href: attr.BulkDataURI };
  if (attr.InlineBinary) return { text: `binary, ${Math.floor((attr.InlineBinary.length * 3) / 4)} bytes` };
  const list = (attr.Value ?? []).map((v) => {
    if (v && typeof v === 'object') return v.Alphabetic ?? JSON.stringify(v);
    const s = String(v);
    return attr.vr === 'UI' && uids[s] ? `${s} (${uids[s]})` : s;
  });
  const joined = list.join('\\');
  return { text: joined.length > MAX_VALUE ? `${joined.slice(0, MAX_VALUE)}…` : joined };
}

function metadataRows(obj, dict, depth = 0, out = []) {
  for (const tag of Object.keys(obj).sort()) {
    const attr = obj[tag];
    const keyword = dict.tags[tag] ?? (parseInt(tag.slice(0, 4), 16) % 2 ? 'private' : '');
    const indent = '› '.repeat(depth);
    const tagText = `(${tag.slice(0, 4)},${tag.slice(4)})`;
    if (attr.vr === 'SQ') {
      const items = attr.Value ?? [];
      out.push(h('tr', { dataset: { depth } }, h('td.mono', {}, indent + tagText), h('td', {}, keyword), h('td', {}, 'SQ'),
        h('td.muted', {}, `${items.length} item${items.length === 1 ? '' : 's'}`)));
      items.forEach((item, i) => {
        out.push(h('tr.item', {}, h('td.mono', {}, `${'› '.repeat(depth + 1)}item ${i + 1}`), h('td'), h('td'), h('td')));
        metadataRows(item, dict, depth + 1, out);
      });
    } else {
      const v = valueText(attr, dict.uids);
      out.push(h('tr', { dataset: { depth } }, h('td.mono', {}, indent + tagText), h('td', {}, keyword), h('td', {}, attr.vr),
        h('td.value', {}, v.href ? h('a', { href: v.href, target: '_blank', rel: 'noopener' }, v.text) : v.text)));
    }
  }
  return out;
}

export async function showMetadata(study, series, sop) {
  const body = h('div.metadata', {}, h('p.muted', {}, 'Loading…'));
  const shown = dialog('Instance metadata', [h('p.uid', {}, sop), body], [{ label: 'Close', kind: 'secondary', value: null }], { wide: true });
  try {
    const [meta, dict] = await Promise.all([instanceMetadata(study, series, sop), loadDictionary()]);
    const rows = metadataRows(meta, dict);
    const filter = h('input', { type: 'search', placeholder: 'Filter by tag, keyword or value', 'aria-label': 'Filter' });
    const tbody = h('tbody', {}, rows);
    filter.addEventListener('input', () => {
      const q = filter.value.trim().toLowerCase();
      for (const row of rows) row.hidden = Boolean(q) && !row.textContent.toLowerCase().includes(q);
    });
    body.replaceChildren(filter, h('table.grid.compact.meta-table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Tag'), h('th', {}, 'Keyword'), h('th', {}, 'VR'), h('th', {}, 'Value'))), tbody));
    filter.focus();
  } catch (e) {
    body.replaceChildren(h('p.error', {}, `Could not load the metadata: ${e.message}`));
  }
  return shown;
}

/** Fill ``box`` with the instances of a series. */
export async function instanceTable(box, study, series) {
  box.replaceChildren(h('p.muted', {}, 'Loading the instances…'));
  let rows;
  let dict;
  try {
    [rows, dict] = await Promise.all([qido(`studies/${study}/series/${series}/instances`), loadDictionary()]);
  } catch (e) {
    box.replaceChildren(h('p.error', {}, `Could not list the instances: ${e.message}`));
    return;
  }
  rows.sort((a, b) => Number(text(a, 'InstanceNumber') || 0) - Number(text(b, 'InstanceNumber') || 0));
  box.replaceChildren(h('table.grid.compact', {},
    h('thead', {}, h('tr', {}, ['#', 'SOP Class', 'Size', 'Frames', 'SOP Instance UID', ''].map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((row) => {
      const sop = text(row, 'SOPInstanceUID');
      const cls = text(row, 'SOPClassUID');
      const size = values(row, 'Rows').length ? `${text(row, 'Columns')} × ${text(row, 'Rows')}` : '';
      return h('tr', { dataset: { sop } },
        h('td.num', {}, text(row, 'InstanceNumber')),
        h('td', { title: cls }, dict.uids[cls] ?? cls),
        h('td.nowrap', {}, size),
        h('td.num', {}, text(row, 'NumberOfFrames') || (size ? '1' : '')),
        h('td.uid', {}, sop),
        h('td.actions', {},
          h('button.secondary.small', { type: 'button', onclick: () => showMetadata(study, series, sop) }, 'Metadata'),
          h('a.button.secondary.small', { href: fileUrl(study, series, sop), download: `${sop}.dcm` }, '.dcm')));
    }))));
}
